//! The models the page offers: what the picker shows (name, size, licence, what sets them apart) and
//! where the file is. `make model` puts both files in `www/models/`; a user's own GGUF file is
//! [`ModelId::Local`] and has no entry.

use serde::Serialize;

use super::state::ModelId;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ModelEntry {
    pub id: ModelId,
    pub name: &'static str,
    /// Path relative to the page.
    pub url: &'static str,
    /// File size in bytes (what a first visit downloads).
    pub bytes: u64,
    pub licence: &'static str,
    pub licence_url: &'static str,
    /// One line on what the model is, for the picker.
    pub about: &'static str,
}

pub const CATALOGUE: [ModelEntry; 2] = [
    ModelEntry {
        id: ModelId::Smollm2,
        name: "SmolLM2-135M-Instruct",
        url: "models/SmolLM2-135M-Instruct.Q4_1.gguf",
        bytes: 98_362_432,
        licence: "Apache-2.0",
        licence_url: "https://www.apache.org/licenses/LICENSE-2.0",
        about: "Hugging Face, Llama architecture, no QK-norm, no BOS added; 30 layers x 9 heads; Q4_1",
    },
    ModelEntry {
        id: ModelId::Gemma3,
        name: "Gemma 3 270M",
        url: "models/gemma-3-270m-q4_k_m.gguf",
        bytes: 253_113_024,
        licence: "Gemma Terms of Use",
        licence_url: "https://ai.google.dev/gemma/terms",
        about: "Google, base model, QK-norm, <bos> added; 18 layers x 4 heads, sliding-window attention; Q4_K_M",
    },
];

/// The catalogue entry of `id` (`None` for a local file).
pub fn entry(id: ModelId) -> Option<&'static ModelEntry> {
    CATALOGUE.iter().find(|e| e.id == id)
}

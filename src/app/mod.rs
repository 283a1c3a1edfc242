//! Layer 5: what the page and the CLI share above the engine: loading, prompt formats, view state,
//! the URL codec, the frames the page draws (figures with `plotters`, bitmaps, captions), the
//! guided tour and exports.

pub mod draw;
pub mod export;
pub mod figures;
pub mod lab;
pub mod models;
pub mod plot;
pub mod probe;
pub mod prompt;
pub mod session;
pub mod state;
pub mod tokens;
pub mod tour;

use crate::gguf::{Gguf, GgufError};
use crate::model::{Engine, Model, ModelError};
use crate::tokenizer::{Tokenizer, TokenizerError};
use burn::prelude::Device;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("this is not a model sinkscope can read: {0}")]
    File(#[from] GgufError),
    #[error("{0}")]
    Tokenizer(#[from] TokenizerError),
    #[error("{0}")]
    Model(#[from] ModelError),
}

/// A loaded model: its tokenizer, the engine, and its name (`general.name`, else "model").
pub struct Loaded {
    pub tok: Tokenizer,
    pub engine: Engine,
    pub name: String,
}

/// Parse GGUF bytes and build the tokenizer and the engine on `device`.
pub fn load(bytes: &[u8], device: &Device) -> Result<Loaded, LoadError> {
    let g = Gguf::parse(bytes)?;
    // The architecture, tensor types and size first: an unsupported model is named as such, not by
    // its tokenizer, and an oversized one costs no tokenizer.
    crate::model::Config::from_gguf(&g)?;
    crate::model::check_memory(&g, crate::model::MAX_WEIGHT_BYTES)?;
    let tok = Tokenizer::from_gguf(&g)?;
    let model = Model::from_gguf(&g, device)?;
    let name = g.get_str("general.name").map(|s| s.chars().take(80).collect()).unwrap_or_else(|_| "model".to_string());
    Ok(Loaded { tok, engine: Engine::new(model), name })
}

/// The sinks of one model on `text` (as typed, with the model's own BOS convention; cut at
/// [`state::MAX_TOKENS`]) for the QK-norm comparison.
pub async fn prompt_sinks(tok: &Tokenizer, engine: &Engine, name: &str, text: &str, rule: crate::analysis::sinks::SinkRule) -> Result<crate::analysis::compare::ModelSinks, String> {
    let mut ids = prompt::encode(tok, text, prompt::PromptFormat::Raw).map_err(|e| e.to_string())?;
    ids.truncate(state::MAX_TOKENS);
    let opts = crate::model::TraceOptions { layers: None, keep_z: true, keep_resid: false, all_logits: false };
    let trace = engine.forward(&ids, &opts).await.map_err(|e| e.to_string())?;
    let bos = tok.add_bos && tok.bos_id.is_some();
    Ok(crate::analysis::compare::model_sinks(name, engine.model.config.qk_norm, bos, &trace, rule))
}

impl Loaded {
    pub fn into_session(self) -> session::Session {
        session::Session::new(self.tok, self.engine, self.name)
    }
}

//! Layer 5: what the page and the CLI share above the engine: loading, prompt formats, view state,
//! the URL codec, the frames the page draws (figures with `plotters`, bitmaps, captions), the
//! guided tour and exports.

pub mod draw;
pub mod export;
pub mod figures;
pub mod lab;
pub mod plot;
pub mod prompt;
pub mod session;
pub mod state;
pub mod tokens;
pub mod tour;

use crate::gguf::{Gguf, GgufError};
use crate::model::{Engine, Llama, ModelError};
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
    let tok = Tokenizer::from_gguf(&g)?;
    let model = Llama::from_gguf(&g, device)?;
    let name = g.get_str("general.name").map(|s| s.chars().take(80).collect()).unwrap_or_else(|_| "model".to_string());
    Ok(Loaded { tok, engine: Engine::new(model), name })
}

impl Loaded {
    pub fn into_session(self) -> session::Session {
        session::Session::new(self.tok, self.engine, self.name)
    }
}

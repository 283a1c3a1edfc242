//! Layer 5: what the page and the CLI share above the engine: loading, prompt formats, view state,
//! the URL codec and scheduling.

pub mod draw;
pub mod lab;
pub mod prompt;
pub mod session;
pub mod state;

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

/// Parse GGUF bytes and build the tokenizer and the engine on `device`.
pub fn load(bytes: &[u8], device: &Device) -> Result<(Tokenizer, Engine), LoadError> {
    let g = Gguf::parse(bytes)?;
    let tok = Tokenizer::from_gguf(&g)?;
    let model = Llama::from_gguf(&g, device)?;
    Ok((tok, Engine::new(model)))
}

//! How a typed prompt becomes token ids: as typed, with a leading BOS, or inside the chat template.

use serde::{Deserialize, Serialize};

use crate::tokenizer::{Tokenizer, TokenizerError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PromptFormat {
    /// The model's own default (SmolLM2 adds no BOS).
    #[default]
    Raw,
    /// A leading BOS token ([`Tokenizer::document_start_id`]: `<|endoftext|>` for SmolLM2), as the
    /// paper's models have.
    Bos,
    /// Wrapped as a user turn in the model's chat template, ending in the assistant prompt.
    Chat,
}

impl PromptFormat {
    pub const ALL: [PromptFormat; 3] = [Self::Raw, Self::Bos, Self::Chat];
    pub fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Bos => "bos",
            Self::Chat => "chat",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("the prompt is empty")]
    Empty,
    #[error("this model has no BOS token")]
    NoBos,
    #[error("this model's chat template is not one sinkscope can render (only ChatML-style templates are)")]
    UnsupportedTemplate,
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
}

/// Render a ChatML-style template (`<|im_start|>role\n...<|im_end|>\n`) for one user message,
/// keeping the default system message the template inserts when there is none.
pub fn render_chat(template: &str, user: &str) -> Result<String, PromptError> {
    if !template.contains("<|im_start|>") || !template.contains("<|im_end|>") {
        return Err(PromptError::UnsupportedTemplate);
    }
    let mut out = String::new();
    if let Some(start) = template.find("<|im_start|>system\n") {
        if let Some(len) = template[start..].find("<|im_end|>") {
            out.push_str(&template[start..start + len]);
            out.push_str("<|im_end|>\n");
        }
    }
    out.push_str("<|im_start|>user\n");
    out.push_str(user);
    out.push_str("<|im_end|>\n<|im_start|>assistant\n");
    Ok(out)
}

/// Token ids for `text` in `format`.
pub fn encode(tok: &Tokenizer, text: &str, format: PromptFormat) -> Result<Vec<u32>, PromptError> {
    encode_marked(tok, text, format).map(|e| e.ids)
}

/// Token ids, and for each token whether it comes from the user's text (`true`) or from the format
/// (a BOS, the chat template's markers and system message).
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub from_user: Vec<bool>,
}

/// [`encode`], marking which tokens the user typed. A prompt of only whitespace is empty (as in
/// the CLI).
pub fn encode_marked(tok: &Tokenizer, text: &str, format: PromptFormat) -> Result<Encoded, PromptError> {
    if text.trim().is_empty() {
        return Err(PromptError::Empty);
    }
    Ok(match format {
        PromptFormat::Raw => {
            let ids = tok.encode(text)?;
            Encoded { from_user: vec![true; ids.len()], ids }
        }
        PromptFormat::Bos => {
            let bos = tok.document_start_id().ok_or(PromptError::NoBos)?;
            let mut ids = vec![bos];
            ids.extend(tok.encode(text)?);
            let mut from_user = vec![true; ids.len()];
            from_user[0] = false;
            Encoded { ids, from_user }
        }
        PromptFormat::Chat => {
            let template = tok.chat_template.as_deref().ok_or(PromptError::UnsupportedTemplate)?;
            let rendered = render_chat(template, text)?;
            // The user's text sits right after the last "user\n" marker of the rendered prompt.
            let start = rendered.rfind("<|im_start|>user\n").map(|i| i + "<|im_start|>user\n".len()).unwrap_or(0);
            let end = start + text.len();
            let (ids, offsets) = tok.encode_with_offsets(&rendered)?;
            let from_user = offsets.iter().map(|&(a, b)| a < end && b > start).collect();
            Encoded { ids, from_user }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_with_default_system() {
        let t = "{% if loop.first %}{{ '<|im_start|>system\nYou are nice<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}";
        assert_eq!(
            render_chat(t, "hi").unwrap(),
            "<|im_start|>system\nYou are nice<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(matches!(render_chat("{{ messages }}", "hi"), Err(PromptError::UnsupportedTemplate)));
    }
}

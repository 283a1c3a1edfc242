//! How a typed prompt becomes token ids: as typed, with a leading BOS, or inside the chat template.

use serde::{Deserialize, Serialize};

use crate::tokenizer::{Tokenizer, TokenizerError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PromptFormat {
    /// The model's own default: a BOS where the file asks for one (Gemma 3 adds `<bos>`; SmolLM2
    /// adds none).
    #[default]
    Raw,
    /// A leading BOS token ([`Tokenizer::document_start_id`]: `<|endoftext|>` for SmolLM2), as the
    /// paper's models have; the same as `Raw` for a model that adds one anyway.
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

/// How the page's format menu describes each format for a given model (its BOS convention, its
/// BOS token, whether it has a chat template sinkscope can render).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FormatChoice {
    pub value: &'static str,
    pub label: String,
    pub enabled: bool,
}

pub fn format_choices(tok: &Tokenizer) -> Vec<FormatChoice> {
    let file_bos = tok.bos_id.filter(|_| tok.add_bos).map(|b| tok.symbol(b).to_string());
    let start = tok.document_start_id().map(|b| tok.symbol(b).to_string());
    let chat = tok.chat_template.as_deref().is_some_and(|t| render_chat(t, "x").is_ok());
    vec![
        FormatChoice {
            value: "raw",
            label: match &file_bos {
                Some(b) => format!("as typed (the model's default: {b} first)"),
                None => "as typed (the model's default: no BOS)".into(),
            },
            enabled: true,
        },
        FormatChoice {
            value: "bos",
            label: match (&file_bos, &start) {
                (Some(b), _) => format!("with a leading BOS ({b}, as by default)"),
                (None, Some(s)) => format!("with a leading BOS ({s})"),
                (None, None) => "with a leading BOS (this model has none)".into(),
            },
            enabled: file_bos.is_some() || start.is_some(),
        },
        FormatChoice { value: "chat", label: if chat { "in the chat template".into() } else { "in the chat template (this model has none)".into() }, enabled: chat },
    ]
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
    // The file's own BOS, where it asks for one.
    let file_bos = tok.bos_id.filter(|_| tok.add_bos);
    let with_bos = |bos: u32, enc: Encoded| {
        let mut ids = vec![bos];
        ids.extend(enc.ids);
        let mut from_user = vec![false];
        from_user.extend(enc.from_user);
        Encoded { ids, from_user }
    };
    let typed = |text: &str| -> Result<Encoded, PromptError> {
        let ids = tok.encode(text)?;
        Ok(Encoded { from_user: vec![true; ids.len()], ids })
    };
    Ok(match format {
        PromptFormat::Raw => match file_bos {
            Some(bos) => with_bos(bos, typed(text)?),
            None => typed(text)?,
        },
        PromptFormat::Bos => with_bos(file_bos.or(tok.document_start_id()).ok_or(PromptError::NoBos)?, typed(text)?),
        PromptFormat::Chat => {
            let template = tok.chat_template.as_deref().ok_or(PromptError::UnsupportedTemplate)?;
            let rendered = render_chat(template, text)?;
            // The user's text sits right after the last "user\n" marker of the rendered prompt.
            let start = rendered.rfind("<|im_start|>user\n").map(|i| i + "<|im_start|>user\n".len()).unwrap_or(0);
            let end = start + text.len();
            let (ids, offsets) = tok.encode_with_offsets(&rendered)?;
            let from_user = offsets.iter().map(|&(a, b)| a < end && b > start).collect();
            match file_bos {
                Some(bos) => with_bos(bos, Encoded { ids, from_user }),
                None => Encoded { ids, from_user },
            }
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

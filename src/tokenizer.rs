//! Layer 2: a `tokenizers::Tokenizer` built from the GGUF's own `tokenizer.ggml.*` metadata.
//!
//! Only the GPT-2 style byte-level BPE (`tokenizer.ggml.model = "gpt2"`) is supported. For the
//! pre-tokenizer type `smollm` the original SmolLM2 pre-tokenization is rebuilt: individual digits,
//! then the byte-level GPT-2 regex without a prefix space. Control tokens become special tokens so
//! that `<|im_start|>` in a prompt is one token. No BOS is added: SmolLM2's GGUF says
//! `add_bos_token = false`, and the prompt-format option of the app adds one explicitly.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer as HfTokenizer};

use crate::gguf::{Gguf, GgufError, Value};

/// ggml's token type for control tokens (`<|im_start|>` and friends).
const TOKEN_TYPE_CONTROL: i64 = 3;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer metadata: {0}")]
    Metadata(#[from] GgufError),
    #[error("unsupported tokenizer model {0:?} (only the byte-level BPE \"gpt2\" is supported)")]
    UnsupportedModel(String),
    #[error("malformed tokenizer metadata: {0}")]
    Malformed(String),
    #[error("tokenizer: {0}")]
    Build(String),
}

/// A token as shown to users: id, the vocabulary symbol, and its decoded text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Token {
    pub id: u32,
    /// The vocabulary symbol (byte-level, e.g. "Ġcapital").
    pub symbol: String,
    /// The text this token stands for (e.g. " capital"); may hold U+FFFD for partial UTF-8.
    pub text: String,
}

pub struct Tokenizer {
    inner: HfTokenizer,
    vocab: Vec<String>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token` (false for SmolLM2).
    pub add_bos: bool,
    /// `tokenizer.chat_template`, when the file has one.
    pub chat_template: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("vocab_size", &self.vocab.len()).finish()
    }
}

impl Tokenizer {
    pub fn from_gguf(g: &Gguf) -> Result<Self, TokenizerError> {
        let model = g.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model.to_string()));
        }
        let pre = g.get_str("tokenizer.ggml.pre").unwrap_or("default");
        let tokens = g.get_str_array("tokenizer.ggml.tokens")?;
        let merges = g.get_str_array("tokenizer.ggml.merges")?;
        let types: Vec<i64> = match g.get("tokenizer.ggml.token_type") {
            Some(Value::Array(a)) => a.iter().map(|v| v.as_f64().map(|x| x as i64).unwrap_or(1)).collect(),
            _ => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(TokenizerError::Malformed(format!(
                "{} token types for {} tokens",
                types.len(),
                tokens.len()
            )));
        }
        let vocab_size = tokens.len();
        let optional_id = |key: &str| -> Result<Option<u32>, TokenizerError> {
            match g.get(key) {
                None => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(id) if (id as usize) < vocab_size => Ok(Some(id as u32)),
                    _ => Err(TokenizerError::Malformed(format!("{key} is not a token id below {vocab_size}"))),
                },
            }
        };
        let bos_id = optional_id("tokenizer.ggml.bos_token_id")?;
        let eos_id = optional_id("tokenizer.ggml.eos_token_id")?;
        let add_bos = matches!(g.get("tokenizer.ggml.add_bos_token"), Some(Value::Bool(true)));
        let chat_template = g.get_str("tokenizer.chat_template").ok().map(str::to_string);

        let mut vocab = tokenizers::models::bpe::Vocab::default();
        for (id, t) in tokens.iter().enumerate() {
            vocab.insert(t.to_string(), id as u32);
        }
        let merges = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| TokenizerError::Malformed(format!("merge {m:?} has no space")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| TokenizerError::Build(e.to_string()))?;

        let byte_level = ByteLevel::new(false, true, true);
        let pre_tokenizer: PreTokenizerWrapper = match pre {
            "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
            _ => byte_level.into(),
        };
        let mut inner = HfTokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &ty)| ty == TOKEN_TYPE_CONTROL)
            .map(|(t, _)| AddedToken::from(t.to_string(), true))
            .collect();
        inner.add_special_tokens(&specials);

        Ok(Self {
            inner,
            vocab: tokens.iter().map(|s| s.to_string()).collect(),
            bos_id,
            eos_id,
            add_bos,
            chat_template,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Token ids of `text`, exactly as the original tokenizer (no BOS added, specials matched).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let enc = self.inner.encode(text, false).map_err(|e| TokenizerError::Build(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of `text` with each token's byte range in `text`.
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Vec<(usize, usize)>), TokenizerError> {
        let enc = self.inner.encode(text, false).map_err(|e| TokenizerError::Build(e.to_string()))?;
        Ok((enc.get_ids().to_vec(), enc.get_offsets().to_vec()))
    }

    /// The id of a vocabulary symbol.
    pub fn id_of(&self, symbol: &str) -> Option<u32> {
        self.inner.token_to_id(symbol)
    }

    /// The token that starts a document in pre-training: `<|endoftext|>` where the vocabulary has it
    /// (SmolLM2's GGUF names `<|im_start|>` as BOS, but documents were separated by `<|endoftext|>`),
    /// else the file's BOS.
    pub fn document_start_id(&self) -> Option<u32> {
        self.id_of("<|endoftext|>").or(self.bos_id)
    }

    /// The vocabulary symbol of an id ("" for an id out of range).
    pub fn symbol(&self, id: u32) -> &str {
        self.vocab.get(id as usize).map(String::as_str).unwrap_or("")
    }

    /// The text of a single token (special tokens are shown as their symbol).
    pub fn token_text(&self, id: u32) -> String {
        let symbol = self.symbol(id);
        if symbol.starts_with("<|") && symbol.ends_with("|>") {
            return symbol.to_string();
        }
        self.inner.decode(&[id], false).unwrap_or_else(|_| symbol.to_string())
    }

    pub fn token(&self, id: u32) -> Token {
        Token { id, symbol: self.symbol(id).to_string(), text: self.token_text(id) }
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, false).unwrap_or_default()
    }

    /// The bytes a token stands for (its symbol mapped back through the byte-level alphabet), or
    /// `None` for special tokens and symbols outside that alphabet.
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let symbol = self.symbol(id);
        if symbol.is_empty() || (symbol.starts_with("<|") && symbol.ends_with("|>")) {
            return None;
        }
        symbol.chars().map(byte_of_char).collect()
    }
}

/// The byte that a character of GPT-2's byte-level alphabet stands for. The alphabet maps the 188
/// printable bytes to themselves and the other 68 bytes, in order, to U+0100 onwards. (`tokenizers`
/// keeps its copy of this table private, so it is written out here.)
fn byte_of_char(c: char) -> Option<u8> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let c = c as u32;
    if c < 256 {
        return printable(c).then_some(c as u8);
    }
    let n = (c - 256) as usize;
    (0u32..256).filter(|&b| !printable(b)).nth(n).map(|b| b as u8)
}

#[cfg(test)]
mod tests {
    use super::byte_of_char;

    #[test]
    fn byte_level_alphabet() {
        assert_eq!(byte_of_char('A'), Some(b'A'));
        assert_eq!(byte_of_char('\u{120}'), Some(b' '), "Ġ is the space");
        assert_eq!(byte_of_char('\u{10a}'), Some(b'\n'), "Ċ is the newline");
        assert_eq!(byte_of_char('\u{100}'), Some(0));
        assert_eq!(byte_of_char('\u{ad}'), None, "the soft hyphen byte is remapped, not itself");
        assert_eq!(byte_of_char('\u{143}'), Some(0xad));
        assert_eq!(byte_of_char('\u{144}'), None, "past the 68 remapped bytes");
    }
}

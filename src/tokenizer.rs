//! Layer 2: a `tokenizers::Tokenizer` built from the GGUF's own `tokenizer.ggml.*` metadata.
//!
//! Two tokenizer models are supported, and anything else is refused with its name:
//! * `gpt2`: GPT-2 style byte-level BPE with the file's merges. Pre-tokenizers `smollm` (SmolLM2:
//!   individual digits, then the byte-level GPT-2 regex without a prefix space) and `gpt2`.
//! * `llama`: SentencePiece-style BPE (Gemma 3, Llama 2): scores instead of merges, so the merges are
//!   rebuilt as HF transformers' GGUF loader does (every split of a piece into two vocabulary pieces,
//!   ranked by the piece's score), spaces become `▁` (with a `▁` prefix when `add_space_prefix`), and
//!   characters outside the vocabulary fall back to byte tokens `<0xNN>`. Pre-tokenizer `default` only.
//!
//! Control tokens become special tokens (`<|im_start|>`, `<bos>` in a prompt are one token);
//! user-defined tokens (Gemma's runs of spaces and newlines, HTML tags) are always matched whole.
//! No BOS is added here: [`Tokenizer::add_bos`] says whether the file wants one, and the app's prompt
//! formats add it.

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::prepend::Prepend;
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::{NormalizerWrapper, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer as HfTokenizer};

use crate::gguf::{Gguf, GgufError, Value};

/// ggml's token types.
const TOKEN_TYPE_NORMAL: i64 = 1;
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;
const TOKEN_TYPE_BYTE: i64 = 6;

/// SentencePiece's word-boundary mark, which stands for a space.
const SPM_SPACE: char = '\u{2581}';

/// The two tokenizer families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// GPT-2 byte-level BPE: symbols spell bytes in a printable alphabet.
    ByteLevel,
    /// SentencePiece BPE: `▁` for spaces, `<0xNN>` byte tokens.
    SentencePiece,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer metadata: {0}")]
    Metadata(#[from] GgufError),
    #[error("unsupported tokenizer model {0:?} (supported: \"gpt2\" byte-level BPE and \"llama\" SentencePiece BPE)")]
    UnsupportedModel(String),
    #[error("unsupported pre-tokenizer {pre:?} for the {model:?} tokenizer (supported: {supported})")]
    UnsupportedPreTokenizer { model: String, pre: String, supported: &'static str },
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
    kind: Kind,
    vocab: Vec<String>,
    types: Vec<i64>,
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
        let pre = g.get_str("tokenizer.ggml.pre").unwrap_or("default");
        let tokens = g.get_str_array("tokenizer.ggml.tokens")?;
        let types: Vec<i64> = match g.get("tokenizer.ggml.token_type") {
            Some(Value::Array(a)) => a.iter().map(|v| v.as_f64().map(|x| x as i64).unwrap_or(TOKEN_TYPE_NORMAL)).collect(),
            _ => vec![TOKEN_TYPE_NORMAL; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(TokenizerError::Malformed(format!("{} token types for {} tokens", types.len(), tokens.len())));
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
        let unsupported_pre = |supported| TokenizerError::UnsupportedPreTokenizer { model: model.into(), pre: pre.into(), supported };
        let (kind, mut inner) = match model {
            "gpt2" => {
                let pre_tokenizer: PreTokenizerWrapper = match pre {
                    "smollm" => Sequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]).into(),
                    "gpt2" => ByteLevel::new(false, true, true).into(),
                    _ => return Err(unsupported_pre("smollm, gpt2")),
                };
                let mut t = HfTokenizer::new(byte_level_bpe(g, &tokens)?);
                t.with_pre_tokenizer(Some(pre_tokenizer));
                t.with_decoder(Some(ByteLevelDecoder::default()));
                (Kind::ByteLevel, t)
            }
            "llama" => {
                if pre != "default" {
                    return Err(unsupported_pre("default"));
                }
                // llama.cpp's default for SentencePiece files when the key is missing: true
                let space_prefix = !matches!(g.get("tokenizer.ggml.add_space_prefix"), Some(Value::Bool(false)));
                (Kind::SentencePiece, sentencepiece(g, &tokens, space_prefix)?)
            }
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        let spell = |t: &str| if kind == Kind::SentencePiece { t.replace(' ', "\u{2581}") } else { t.to_string() };
        let added = |ty: i64, special: bool| -> Vec<AddedToken> {
            tokens.iter().zip(&types).filter(|(_, &t)| t == ty).map(|(t, _)| AddedToken::from(spell(t), special)).collect()
        };
        inner.add_special_tokens(&added(TOKEN_TYPE_CONTROL, true));
        inner.add_tokens(&added(TOKEN_TYPE_USER_DEFINED, false));

        Ok(Self {
            inner,
            kind,
            vocab: tokens.iter().map(|s| s.to_string()).collect(),
            types,
            bos_id: optional_id("tokenizer.ggml.bos_token_id")?,
            eos_id: optional_id("tokenizer.ggml.eos_token_id")?,
            // a missing key: llama.cpp adds a BOS for SentencePiece files, not for byte-level ones
            add_bos: match g.get("tokenizer.ggml.add_bos_token") {
                Some(Value::Bool(b)) => *b,
                _ => kind == Kind::SentencePiece,
            },
            chat_template: g.get_str("tokenizer.chat_template").ok().map(str::to_string),
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

    fn is_control(&self, id: u32) -> bool {
        self.types.get(id as usize) == Some(&TOKEN_TYPE_CONTROL)
    }

    /// The text of a single token (control tokens are shown as their symbol).
    pub fn token_text(&self, id: u32) -> String {
        let symbol = self.symbol(id);
        if self.is_control(id) || (symbol.starts_with("<|") && symbol.ends_with("|>")) {
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

    /// The bytes a token stands for, or `None` for control tokens and symbols that spell no bytes.
    /// Byte-level: the symbol mapped back through the byte-level alphabet; SentencePiece: `<0xNN>`
    /// is byte NN, `▁` a space, anything else its UTF-8.
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let symbol = self.symbol(id);
        if symbol.is_empty() || self.is_control(id) || (symbol.starts_with("<|") && symbol.ends_with("|>")) {
            return None;
        }
        match self.kind {
            Kind::ByteLevel => symbol.chars().map(byte_of_char).collect(),
            Kind::SentencePiece if self.types.get(id as usize) == Some(&TOKEN_TYPE_BYTE) => {
                let hex = symbol.strip_prefix("<0x")?.strip_suffix('>')?;
                u8::from_str_radix(hex, 16).ok().map(|b| vec![b])
            }
            Kind::SentencePiece => Some(symbol.replace(SPM_SPACE, " ").into_bytes()),
        }
    }
}

/// GPT-2 byte-level BPE from the file's merges (`"a b"` strings).
fn byte_level_bpe(g: &Gguf, tokens: &[&str]) -> Result<BPE, TokenizerError> {
    let merges = g
        .get_str_array("tokenizer.ggml.merges")?
        .iter()
        .map(|m| m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| TokenizerError::Malformed(format!("merge {m:?} has no space"))))
        .collect::<Result<Vec<_>, _>>()?;
    let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(id, t)| (t.to_string(), id as u32)).collect();
    BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| TokenizerError::Build(e.to_string()))
}

/// Most byte-splits (Σ over pieces of bytes x characters) a SentencePiece vocabulary may need to
/// rebuild its merges: 8x Gemma 3's 15.6 million; bounds the time and the merges' strings (≤ 128 MB).
const MAX_SPLIT_WORK: u64 = 128_000_000;

/// SentencePiece-style BPE: the vocabulary with spaces spelled `▁`, merges rebuilt from the scores
/// (as `transformers`' GGUF loader does, so the reference's ids are reproduced: every split of a piece
/// into two pieces of the vocabulary is a merge, ranked by the piece's score, highest first, ties by
/// the two halves' ids), byte fallback, and a decoder that undoes all three.
fn sentencepiece(g: &Gguf, tokens: &[&str], space_prefix: bool) -> Result<HfTokenizer, TokenizerError> {
    let scores: Vec<f32> = match g.get("tokenizer.ggml.scores") {
        Some(Value::Array(a)) => a.iter().map(|v| v.as_f64().map(|x| x as f32).unwrap_or(0.0)).collect(),
        _ => return Err(TokenizerError::Malformed("a SentencePiece tokenizer needs tokenizer.ggml.scores".into())),
    };
    if scores.len() != tokens.len() {
        return Err(TokenizerError::Malformed(format!("{} scores for {} tokens", scores.len(), tokens.len())));
    }
    let pieces: Vec<String> = tokens.iter().map(|t| t.replace(' ', "\u{2581}")).collect();
    let mut vocab = tokenizers::models::bpe::Vocab::default();
    for (id, p) in pieces.iter().enumerate() {
        vocab.entry(p.clone()).or_insert(id as u32);
    }
    // Rebuilding the merges looks at every split of every piece: work (and the merges' strings)
    // grow with Σ bytes x chars, which a hostile vocabulary ("a", "aa", "aaa", …) makes cubic.
    let work: u64 = pieces.iter().map(|p| p.len() as u64 * p.chars().count() as u64).sum();
    if work > MAX_SPLIT_WORK {
        return Err(TokenizerError::Malformed(format!(
            "the vocabulary's pieces are too long to rebuild its merges ({work} byte-splits; the limit is {MAX_SPLIT_WORK}, Gemma 3 needs 16 million)"
        )));
    }
    // (score, left id, right id, piece id) for every split of every piece into two pieces
    let mut merges: Vec<(f32, u32, u32, u32)> = Vec::new();
    for (id, p) in pieces.iter().enumerate() {
        for (i, _) in p.char_indices().skip(1) {
            if let (Some(&l), Some(&r)) = (vocab.get(&p[..i]), vocab.get(&p[i..])) {
                merges.push((scores[id], l, r, id as u32));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.3.cmp(&b.3)).then((a.1, a.2).cmp(&(b.1, b.2))));
    let merges = merges.into_iter().map(|(_, l, r, _)| (pieces[l as usize].clone(), pieces[r as usize].clone())).collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .build()
        .map_err(|e| TokenizerError::Build(e.to_string()))?;
    let mut t = HfTokenizer::new(bpe);
    let replace = |a: &str, b: &str| Replace::new(a, b).map_err(|e| TokenizerError::Build(e.to_string()));
    let mut norm: Vec<NormalizerWrapper> = Vec::new();
    if space_prefix {
        norm.push(Prepend::new("\u{2581}".into()).into());
    }
    norm.push(replace(" ", "\u{2581}")?.into());
    t.with_normalizer(Some(NormalizerSequence::new(norm)));
    t.with_decoder(Some(DecoderSequence::new(vec![replace("\u{2581}", " ")?.into(), ByteFallback::new().into(), Fuse::new().into()])));
    Ok(t)
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

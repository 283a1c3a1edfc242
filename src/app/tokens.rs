//! How tokens are shown: a byte-level BPE token may hold only part of a character (an emoji, most
//! CJK and Hebrew characters take 2–4 bytes, often split over tokens). Decoded alone such a token is
//! "�"; here it is shown in byte notation, with the character it forms together with its neighbours.

use serde::Serialize;

use crate::tokenizer::Tokenizer;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenLabel {
    /// What to show: the token's text; for part of a character split over tokens, that character
    /// with which piece this is (`我 1/2`), or `\xE6\x97` byte notation when the pieces form more
    /// than a few characters.
    pub text: String,
    /// The token holds part of a character (its bytes are not valid UTF-8 on their own).
    pub partial: bool,
    /// For a partial token: the text that it and its neighbours form together.
    pub joined: Option<String>,
}

fn byte_notation(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\x{b:02X}")).collect()
}

/// Labels for a token sequence.
pub fn labels(tok: &Tokenizer, ids: &[u32]) -> Vec<TokenLabel> {
    let bytes: Vec<Option<Vec<u8>>> = ids.iter().map(|&id| tok.token_bytes(id)).collect();
    let mut out: Vec<TokenLabel> = ids.iter().map(|&id| TokenLabel { text: tok.token_text(id), partial: false, joined: None }).collect();
    // Group consecutive tokens until their bytes end on a character boundary.
    let mut i = 0;
    while i < ids.len() {
        let Some(first) = &bytes[i] else {
            i += 1;
            continue;
        };
        if std::str::from_utf8(first).is_ok() {
            i += 1;
            continue;
        }
        let mut buf = first.clone();
        let mut j = i + 1;
        while j < ids.len() {
            match std::str::from_utf8(&buf) {
                Err(e) if e.error_len().is_none() => {}
                _ => break,
            }
            match &bytes[j] {
                Some(b) => buf.extend_from_slice(b),
                None => break,
            }
            j += 1;
        }
        let joined = String::from_utf8_lossy(&buf).trim().to_string();
        let pieces = j - i;
        for k in i..j {
            if let Some(b) = &bytes[k] {
                if std::str::from_utf8(b).is_err() {
                    let readable = joined.chars().count() <= 3 && !joined.contains('\u{FFFD}') && pieces > 1;
                    let text = if readable { format!("{joined} {}/{pieces}", k - i + 1) } else { byte_notation(b) };
                    out[k] = TokenLabel { text, partial: true, joined: Some(joined.clone()) };
                }
            }
        }
        i = j.max(i + 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notation() {
        assert_eq!(byte_notation(&[0xE6, 0x97]), "\\xE6\\x97");
    }
}

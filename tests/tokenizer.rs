//! The tokenizer built from GGUF metadata reproduces the original SmolLM2 tokenizer exactly.

mod common;

use sinkscope::gguf::Gguf;
use sinkscope::tokenizer::Tokenizer;

fn tokenizer() -> Tokenizer {
    Tokenizer::from_gguf(&Gguf::parse(common::model_bytes()).unwrap()).unwrap()
}

#[test]
fn all_reference_cases() {
    let tok = tokenizer();
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(common::fixture("smollm2/tokenizer_cases.json")).unwrap()).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 37);
    let mut failures = Vec::new();
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let want = common::as_u32_vec(&c["ids"]);
        let got = tok.encode(text).unwrap();
        if got != want {
            failures.push(format!("{text:?}: got {got:?}, want {want:?}"));
        }
        let symbols: Vec<&str> = got.iter().map(|&i| tok.symbol(i)).collect();
        let want_symbols: Vec<&str> = c["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        if got == want {
            assert_eq!(symbols, want_symbols, "{text:?}");
        }
    }
    assert!(failures.is_empty(), "{} of 37 cases differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn metadata_and_text() {
    let tok = tokenizer();
    assert_eq!(tok.vocab_size(), 49152);
    assert!(!tok.add_bos);
    assert_eq!(tok.bos_id, Some(1));
    assert_eq!(tok.token_text(3575), " capital");
    assert_eq!(tok.token_text(1), "<|im_start|>");
    assert!(tok.chat_template.as_deref().unwrap_or("").contains("<|im_start|>"));
    let ids = tok.encode("The capital of France").unwrap();
    assert_eq!(tok.decode(&ids), "The capital of France");
}

#[test]
fn tiny_vocabulary_builds() {
    let bytes = common::gguf_builder::tiny_llama(3);
    let tok = Tokenizer::from_gguf(&Gguf::parse(&bytes).unwrap()).unwrap();
    let ids = tok.encode("hello").unwrap();
    assert_eq!(tok.decode(&ids), "hello");
    assert_eq!(ids.len(), 3, "h+e and l+l merge: {ids:?}");
}

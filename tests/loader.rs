//! Loading any file a user opens: tiny hand-made models of both families run; what the engine does
//! not compute is refused with a sentence naming it; oversized models are refused before allocating;
//! and a fuzzer mutates whole files through the reader, the tokenizer, the loader and a forward pass
//! (no panic, no hang). `PROPTEST_CASES=20000 cargo test --release --test loader fuzz` is the longer
//! run documented in the README.

mod common;

use common::gguf_builder::{tiny_gemma, tiny_gemma_builder, tiny_llama, tiny_llama_builder, Builder, Meta};
use proptest::prelude::*;
use sinkscope::app::prompt::{encode, PromptFormat};
use sinkscope::model::{block_on, TraceOptions};

fn load(bytes: &[u8]) -> Result<sinkscope::app::Loaded, String> {
    sinkscope::app::load(bytes, &burn::prelude::Device::flex()).map_err(|e| e.to_string())
}

fn refused(b: Builder) -> String {
    match load(&b.build()) {
        Ok(_) => panic!("the file was accepted"),
        Err(e) => e,
    }
}

#[test]
fn tiny_gemma_runs_with_bos_window_and_qk_norm() {
    let l = load(&tiny_gemma(1)).expect("tiny gemma loads");
    let c = &l.engine.model.config;
    assert_eq!((c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.hidden), (6, 4, 1, 8, 16));
    assert!(c.qk_norm && c.post_norms && c.embed_scale == 4.0);
    assert!((0..5).all(|l| c.is_sliding(l)) && !c.is_sliding(5));
    // <bos> added as the file asks; spaces become ▁; merges by score: ▁+t, h+e, then ▁t+he
    let ids = encode(&l.tok, " the hell", PromptFormat::Raw).unwrap();
    assert_eq!(ids, vec![2, 269, 260, 268, 270]);
    assert_eq!(l.tok.token_text(269), " the");
    // characters outside the vocabulary fall back to bytes, and decode back
    let ids = l.tok.encode("aé").unwrap();
    assert_eq!(l.tok.decode(&ids), "aé");
    assert_eq!(ids.len(), 3, "a, then é as two byte tokens: {ids:?}");
    assert_eq!(l.tok.token_bytes(ids[1]), Some(vec![0xC3]));
    let ids: Vec<u32> = (0..12).map(|i| [2u32, 269, 270, 271, 260][i % 5]).collect();
    let tr = block_on(l.engine.forward(&ids, &TraceOptions::full())).unwrap();
    assert!(tr.logits.iter().all(|x| x.is_finite()));
    // window of 4 on the sliding layers: query 11 gives nothing to keys 0..=7
    for layer in 0..6 {
        let p = &tr.layer(layer).unwrap().pattern;
        let far: f32 = (0..4).map(|h| (0..=7).map(|k| p[(h * 12 + 11) * 12 + k]).sum::<f32>()).sum();
        assert_eq!(far == 0.0, layer != 5, "layer {layer}: attention beyond the window {far}");
    }
}

#[test]
fn unsupported_files_are_refused_by_name() {
    let cases: Vec<(Builder, &str)> = vec![
        (tiny_llama_builder(1).set("general.architecture", Meta::Str("qwen2".into())), "unsupported architecture \"qwen2\""),
        (tiny_llama_builder(1).meta("llama.rope.scaling.type", Meta::Str("linear".into())), "RoPE scaling"),
        (tiny_llama_builder(1).meta("llama.rope.scaling.factor", Meta::F32(4.0)), "RoPE scaling"),
        (tiny_llama_builder(1).tensor_f32("rope_freqs.weight", &[4], &[1.0; 4]), "rope_freqs"),
        (tiny_llama_builder(1).meta("llama.rope.dimension_count", Meta::U32(4)), "partial rotary embedding"),
        (tiny_llama_builder(1).set("tokenizer.ggml.pre", Meta::Str("qwen2".into())), "unsupported pre-tokenizer \"qwen2\""),
        (tiny_llama_builder(1).set("tokenizer.ggml.model", Meta::Str("bert".into())), "unsupported tokenizer model \"bert\""),
        (tiny_llama_builder(1).meta("llama.expert_count", Meta::U32(8)), "mixture of experts"),
        (tiny_llama_builder(1).tensor_f32("blk.0.attn_q.bias", &[32], &[0.0; 32]), "bias vectors"),
        (tiny_gemma_builder(1).meta("gemma3.final_logit_softcapping", Meta::F32(30.0)), "soft-capping"),
        (tiny_gemma_builder(1).meta("gemma3.attn_logit_softcapping", Meta::F32(50.0)), "soft-capping"),
        (tiny_gemma_builder(1).set("tokenizer.ggml.pre", Meta::Str("gemma4".into())), "unsupported pre-tokenizer \"gemma4\""),
        (tiny_gemma_builder(1).set("gemma3.attention.value_length", Meta::U32(16)), "value heads"),
    ];
    for (b, want) in cases {
        let e = refused(b);
        assert!(e.contains(want), "{want:?} not in: {e}");
    }
    // a file that is not GGUF at all
    let e = load(b"<!doctype html><html>not a model</html>").err().unwrap();
    assert!(e.contains("not a model sinkscope can read"), "{e}");
}

#[test]
fn oversized_models_are_refused_before_allocating() {
    let bytes = common::gemma_bytes();
    let g = sinkscope::gguf::Gguf::parse(bytes).unwrap();
    let need = sinkscope::model::weights_in_memory(&g);
    assert!(need <= bytes.len() && need > bytes.len() * 9 / 10, "Gemma's weights take about its file: {need} of {}", bytes.len());
    let e = sinkscope::model::check_memory(&g, 200 << 20).unwrap_err().to_string();
    assert_eq!(e, "the model needs about 236 MB of memory to load; the limit here is 200 MB");
    sinkscope::model::check_memory(&g, 1 << 30).unwrap();
}

/// Apply `edits` (position, byte) and a truncation to `base`.
fn mutate(base: &[u8], edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    let mut b = base.to_vec();
    for &(i, v) in edits {
        let i = i % b.len();
        b[i] = v;
    }
    b.truncate(b.len() - cut % 64);
    b
}

fn survive(bytes: &[u8]) {
    if let Ok(l) = load(bytes) {
        if let Ok(ids) = encode(&l.tok, "the hell  ab", PromptFormat::Raw) {
            let ids: Vec<u32> = ids.into_iter().filter(|&i| (i as usize) < l.engine.model.config.vocab).take(8).collect();
            if !ids.is_empty() {
                let _ = block_on(l.engine.forward(&ids, &TraceOptions::full()));
            }
        }
    }
}

/// Cases per fuzz test: 1,000 in `make test`, more with `PROPTEST_CASES`.
fn fuzz_cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz_cases(), ..ProptestConfig::default() })]

    /// Random byte edits anywhere in a tiny Llama file: read, tokenizer, load and a forward never panic.
    #[test]
    fn fuzz_llama_files(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in 0usize..200) {
        survive(&mutate(&tiny_llama(1), &edits, if cut < 150 { 0 } else { cut }));
    }

    /// The same for a tiny Gemma file.
    #[test]
    fn fuzz_gemma_files(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in 0usize..200) {
        survive(&mutate(&tiny_gemma(1), &edits, if cut < 150 { 0 } else { cut }));
    }

    /// Edits aimed at the header (counts, lengths, types, dimensions): the first 4 KB.
    #[test]
    fn fuzz_headers(edits in prop::collection::vec((0usize..4096, any::<u8>()), 1..6), gemma in any::<bool>()) {
        let base = if gemma { tiny_gemma(2) } else { tiny_llama(2) };
        survive(&mutate(&base, &edits, 0));
    }
}

/// A vocabulary built to make the merges' rebuild cubic ("a", "aa", "aaa", …: every split of every
/// piece is a merge) is refused at once, not after gigabytes and minutes.
#[test]
fn a_hostile_sentencepiece_vocabulary_is_refused_quickly() {
    let n = 900;
    let tokens: Vec<String> = (1..=n).map(|l| "a".repeat(l)).collect();
    let b = tiny_gemma_builder(1)
        .set("tokenizer.ggml.tokens", Meta::StrArray(tokens))
        .set("tokenizer.ggml.scores", Meta::F32Array(vec![0.0; n]))
        .set("tokenizer.ggml.token_type", Meta::I32Array(vec![1; n]));
    let t0 = std::time::Instant::now();
    let e = refused(b);
    assert!(e.contains("too long to rebuild its merges"), "{e}");
    assert!(t0.elapsed().as_secs_f64() < 5.0, "refused in {:?}", t0.elapsed());
}

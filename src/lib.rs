//! sinkscope: watch a real language model's attention sinks catch, tag and release tokens.
//!
//! Layers, each depending only on those above it:
//! 1. [`gguf`] — file reading and dequantization; [`quant`], [`linear`], [`vmath`] — the CPU
//!    kernels (products on GGUF blocks, the f32 product, vectorised `exp`/SiLU/softmax);
//!    [`offload`] — large block products split across helper workers (the browser's CPU worker);
//! 2. [`tokenizer`] — a `tokenizers` tokenizer built from GGUF metadata;
//! 3. [`model`] — the decoder (Llama and Gemma 3 families) in burn, returning a trace of internals;
//! 4. `analysis` — sinks, catch, tag, release, PCA (plain data in, plain data out);
//! 5. `app` — view state, URL codec, scheduling; 6. `web` (wasm only) — worker and drawing.

pub mod analysis;
pub mod app;
pub mod gguf;
#[cfg(feature = "wgpu")]
pub mod gpu;
pub mod linear;
pub mod model;
pub mod offload;
pub mod quant;
pub mod trace;
pub mod vmath;
pub mod weights;
pub mod tokenizer;
pub mod toy;

#[cfg(target_arch = "wasm32")]
pub mod web;

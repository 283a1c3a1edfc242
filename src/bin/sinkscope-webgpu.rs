//! The browser's WebGPU worker: the same worker as `sinkscope`'s wasm build, compiled with the
//! `wgpu` feature (burn's WebGPU backend and the block kernels of `sinkscope::gpu`).

#[cfg(target_arch = "wasm32")]
fn main() {
    sinkscope::web::start();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("sinkscope-webgpu is the browser's WebGPU worker; natively, use `sinkscope` (built with --features wgpu for WebGPU/Vulkan)");
    std::process::exit(2);
}

//! The browser worker binary (built by Trunk for wasm32). Natively it does nothing.

fn main() {
    #[cfg(target_arch = "wasm32")]
    sinkscope::web::start();
}

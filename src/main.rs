//! The one binary: natively the command-line tool (`sinkscope analyze`, `compare`, `bench`, `toy`);
//! built for wasm32 it is the browser's CPU Web Worker that runs the model.

#[cfg(target_arch = "wasm32")]
fn main() {
    sinkscope::web::start();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    std::process::exit(cli::main(std::env::args().skip(1).collect()));
}

#[cfg(not(target_arch = "wasm32"))]
mod cli;

//! candle's `quantized_llama` on a GGUF file: median forward time (logits of the last position) for
//! given token ids, with every matrix dequantized to f32 (`CANDLE_DEQUANTIZE_ALL=1`, set before
//! loading) or kept quantized. Prints one JSON line per prompt.
//!
//! usage: sinkscope-peers MODEL.gguf f32|quantized RUNS IDS[;IDS...]   (IDS: comma-separated)

use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model, mode, runs, prompts] = args.as_slice() else {
        return Err("usage: sinkscope-peers MODEL.gguf f32|quantized RUNS IDS[;IDS...]".into());
    };
    match mode.as_str() {
        // candle reads the variable when it builds each matrix
        "f32" => std::env::set_var("CANDLE_DEQUANTIZE_ALL", "1"),
        "quantized" => std::env::remove_var("CANDLE_DEQUANTIZE_ALL"),
        other => return Err(format!("mode {other:?}: f32 or quantized").into()),
    }
    let runs: usize = runs.parse()?;
    let device = Device::Cpu;
    let t0 = Instant::now();
    let mut file = std::fs::File::open(model)?;
    let content = gguf_file::Content::read(&mut file)?;
    let mut weights = ModelWeights::from_gguf(content, &mut file, &device)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    for ids in prompts.split(';') {
        let ids: Vec<u32> = ids.split(',').map(|s| s.trim().parse()).collect::<Result<_, _>>()?;
        let input = Tensor::new(ids.as_slice(), &device)?.unsqueeze(0)?;
        let mut times = Vec::with_capacity(runs);
        for i in 0..=runs {
            let t = Instant::now();
            let logits = weights.forward(&input, 0)?;
            let _ = logits.to_vec2::<f32>()?;
            if i > 0 {
                times.push(t.elapsed().as_secs_f64() * 1e3); // the first run is a warm-up
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!("{{\"peer\": \"candle-{mode}\", \"t\": {}, \"median_ms\": {median:.2}, \"min_ms\": {:.2}, \"load_ms\": {load_ms:.0}}}", ids.len(), times[0]);
    }
    Ok(())
}

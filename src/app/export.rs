//! What the page exports and the CLI prints: the analysis as JSON (one schema for both, so that
//! numbers taken from the page can be checked against `sinkscope analyze --json`), and file names.

use serde_json::{json, Value};

use super::prompt::PromptFormat;
use crate::analysis::{self, sinks::SinkRule};
use crate::model::{top_k, Trace};
use crate::tokenizer::Tokenizer;

/// The analysis of `trace` in the schema of `sinkscope analyze --json`.
pub fn analysis_json(model: &str, prompt: &str, format: PromptFormat, tok: &Tokenizer, trace: &Trace, rule: SinkRule) -> Value {
    let report = analysis::report(trace, rule);
    let tokens: Vec<Value> = trace.ids.iter().map(|&id| json!({"id": id, "text": tok.token_text(id), "symbol": tok.symbol(id)})).collect();
    let top_next: Vec<Value> = top_k(trace.last_logits(), 5).iter().map(|&(id, logit)| json!({"id": id, "token": tok.token_text(id), "logit": logit})).collect();
    json!({
        "model": model,
        "prompt": prompt,
        "format": format.name(),
        "tokens": tokens,
        "top_next": top_next,
        "eps": report.eps,
        "min_queries": report.min_queries,
        "min_catch_share": report.min_catch_share,
        "first_token_alpha": report.first_token_alpha,
        "alpha": report.alpha,
        "sink_rate": report.sink_rate,
        "sink_rate_overall": report.sink_rate_overall,
        "sinks": report.sinks,
        "avg_sinks": report.avg_sinks,
        "token_sink_heads": report.token_sink_heads,
        "sink_heads": report.sink_heads,
        "massive": report.massive,
    })
}

/// A short, stable hash of a prompt for file names (FNV-1a, 32 bits: a name tag, not security).
pub fn prompt_hash(prompt: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in prompt.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// `sinkscope_<model>_L<l>H<h>_<view>_<hash>.<ext>`, with the model name reduced to safe characters.
pub fn file_name(model: &str, layer: usize, head: usize, view: &str, prompt: &str, ext: &str) -> String {
    format!("sinkscope_{}_L{layer}H{head}_{view}_{}.{ext}", safe_model(model), prompt_hash(prompt))
}

/// A model name as it may appear in a file name.
fn safe_model(model: &str) -> String {
    let model: String = model.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' }).collect();
    let model: String = model.trim_matches('-').chars().take(40).collect();
    if model.is_empty() { "model".into() } else { model }
}

/// The stem (no extension) of an export of a run over many prompts (Probe, Many prompts): the
/// model, the view and a hash of what identifies the run (data set, n, seed, eps).
pub fn job_file_name(model: &str, view: &str, run: &str) -> String {
    format!("sinkscope_{}_{view}_{}", safe_model(model), prompt_hash(run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(prompt_hash(""), "811c9dc5");
        assert_ne!(prompt_hash("a"), prompt_hash("b"));
        assert_eq!(file_name("SmolLM2 135M / Instruct", 11, 2, "tags", "x", "png"), format!("sinkscope_SmolLM2-135M---Instruct_L11H2_tags_{}.png", prompt_hash("x")));
        assert!(file_name("../../etc", 0, 0, "heatmap", "", "svg").starts_with("sinkscope_..-..-etc_"));
    }
}

//! `sinkscope probe` (the paper's Table 1: do the tags carry the truth of a statement?) and
//! `sinkscope corpus` (Figure 3 and the sink-token taxonomy over many prompts).

use std::io::Write;
use std::time::Instant;

use sinkscope::analysis::corpus::{paragraphs, Corpus};
use sinkscope::analysis::probe::parse_statements;
use sinkscope::analysis::sinks::SinkRule;
use sinkscope::app::probe::{ProbeJob, ProbeReport};
use sinkscope::app::prompt::{encode, PromptFormat};
use sinkscope::app::{self, Loaded};
use sinkscope::model::{block_on, TraceOptions};

use super::{parse_eps, read_model, Args, DEFAULT_MODEL};

/// The bundled corpus (60 paragraphs, CC0).
pub const DEFAULT_CORPUS: &str = "data/corpus/paragraphs.txt";
/// Paragraphs longer than this many tokens are cut (the paper's Appendix B uses 1,024-token
/// prompts; streamed layer by layer, SmolLM2 peaks at 0.28 GB resident there, model included).
pub const CORPUS_MAX_TOKENS: usize = 1024;

fn load(path: &str) -> Result<Loaded, String> {
    let bytes = read_model(path)?;
    app::load(&bytes, &burn::prelude::Device::flex()).map_err(|e| format!("{path}: {e}"))
}

fn progress(done: usize, total: usize, t0: Instant) {
    if done == total || done % 25 == 0 {
        eprint!("\r  {done}/{total} ({:.1} s)", t0.elapsed().as_secs_f64());
        if done == total {
            eprintln!();
        }
        let _ = std::io::stderr().flush();
    }
}

pub fn probe(args: &[String]) -> Result<(), String> {
    let a = Args::parse(args, &["json"])?;
    a.check_known(&["model", "data", "n", "seed", "eps"])?;
    let path = a.get("model").unwrap_or(DEFAULT_MODEL);
    let data = a.get("data").ok_or("--data PATH is required (e.g. ../shared/data/geometry-of-truth/cities.csv)")?;
    let n: usize = a.num("n", 600)?;
    let seed: u64 = a.num("seed", 0)?;
    let rule = SinkRule::new(parse_eps(a.get("eps"))?);
    let text = std::fs::read_to_string(data).map_err(|e| format!("cannot read the data set {data:?}: {e}"))?;
    let statements = parse_statements(&text).map_err(|e| format!("{data}: {e}"))?;
    let Loaded { tok, engine, name } = load(path)?;
    let mut job = ProbeJob::new(statements, n, seed, rule)?;
    let t0 = Instant::now();
    while !job.finished() {
        block_on(job.step(&tok, &engine))?;
        progress(job.done(), job.total(), t0);
    }
    let forward_s = t0.elapsed().as_secs_f64();
    let data_name = std::path::Path::new(data).file_name().map_or(data.to_string(), |f| f.to_string_lossy().into_owned());
    let report = job.report(&name, &data_name)?;
    eprintln!("  {} statements in {forward_s:.1} s; probes fitted in {:.2} s", job.total(), t0.elapsed().as_secs_f64() - forward_s);
    if a.flag("json") {
        println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
    } else {
        print_probe(&report);
    }
    Ok(())
}

fn print_probe(r: &ProbeReport) {
    let pct = |a: f32| if a.is_finite() { format!("{:.1}", 100.0 * a) } else { "-".into() };
    println!("{} on {}: {} statements ({} train / {} held out, twins on one side), seed {}", r.model, r.data, r.n, r.n_train, r.n_test, r.seed);
    println!("read at the {}; prompt {}; sinks at eps = {}", r.read_at, r.format, r.eps);
    println!("held-out accuracy (%), per layer, of the head whose θ_tag fits the training split best:");
    println!("  layer  head  θ_tag  θ_no_tag  θ_activation  control  (head has a sink in % of statements)");
    for l in &r.layers {
        println!(
            "  {:>5}  {:>4}  {:>5}  {:>8}  {:>12}  {:>7}  ({:.0}%)",
            l.layer,
            l.best_head,
            pct(l.acc_tag),
            pct(l.acc_no_tag),
            pct(l.acc_activation),
            pct(l.acc_control),
            100.0 * l.sink_share
        );
    }
    let p = r.paper;
    println!(
        "the paper (Table 1, {}): θ_tag {}–{}, θ_no_tag {}–{}, θ_activation {}–{}",
        p.models, p.acc_tag.0, p.acc_tag.1, p.acc_no_tag.0, p.acc_no_tag.1, p.acc_activation.0, p.acc_activation.1
    );
    for f in r.findings() {
        println!("  * {f}");
    }
}

pub fn corpus(args: &[String]) -> Result<(), String> {
    let a = Args::parse(args, &["json"])?;
    a.check_known(&["model", "corpus", "eps"])?;
    let path = a.get("model").unwrap_or(DEFAULT_MODEL);
    let file = a.get("corpus").unwrap_or(DEFAULT_CORPUS);
    let rule = SinkRule::new(parse_eps(a.get("eps"))?);
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read the corpus {file:?}: {e}"))?;
    let paras = paragraphs(&text);
    if paras.is_empty() {
        return Err(format!("{file}: no paragraphs (paragraphs are separated by blank lines)"));
    }
    let Loaded { tok, engine, name } = load(path)?;
    let opts = TraceOptions { layers: None, keep_z: true, keep_resid: false, all_logits: false };
    let mut c = Corpus::default();
    let (t0, mut cut) = (Instant::now(), 0);
    for (i, p) in paras.iter().enumerate() {
        let mut ids = encode(&tok, p, PromptFormat::Raw).map_err(|e| e.to_string())?;
        if ids.len() > CORPUS_MAX_TOKENS {
            ids.truncate(CORPUS_MAX_TOKENS);
            cut += 1;
        }
        c.begin(ids.iter().map(|&id| tok.token_text(id)).collect(), rule);
        // one layer at a time: memory holds one layer's patterns, not all of them
        block_on(engine.forward_layers(&ids, &opts, &mut |layer| c.layers(layer))).map_err(|e| e.to_string())?;
        c.end();
        progress(i + 1, paras.len(), t0);
    }
    if cut > 0 {
        eprintln!("  {cut} paragraphs were cut at {CORPUS_MAX_TOKENS} tokens");
    }
    let s = c.finish();
    if a.flag("json") {
        let doc = serde_json::json!({ "model": name, "corpus": file, "stats": s });
        println!("{doc}");
        return Ok(());
    }
    println!("{name} on {file}: {} paragraphs, {} tokens, sinks at eps = {} (tokens seen by at least {} queries)", s.prompts, s.tokens, s.eps, rule.min_queries);
    println!("average number of sinks per head: {:.3} ({:.3} beyond the first token); the paper: 1–2 sinks in most heads, 1.125 → 2.196 (Qwen2.5-14B → R1 distill)", s.fig3.avg_sinks, s.avg_sinks_beyond_first);
    let total = s.fig3.n_heads.max(1) as f32;
    println!("heads (over all prompts) by number of sinks:");
    for (k, &n) in s.fig3.sinks_hist.iter().enumerate() {
        let more = if k + 1 == s.fig3.sinks_hist.len() { "+" } else { "" };
        println!("  {k}{more:<2} {n:>7}  {:>5.1}%", 100.0 * n as f32 / total);
    }
    println!("heads with sinks by the share of their output the tags explain (median {}):", s.fig3.median_explained.map_or("-".into(), |m| format!("{m:.3}")));
    for (b, &n) in s.fig3.explained_hist.iter().enumerate() {
        println!("  {:.1}–{:.1} {n:>7}", b as f32 / 10.0, (b + 1) as f32 / 10.0);
    }
    println!("sink tokens beyond the first position (the top {} cover {:.0}% of such sinks):", s.taxonomy.len(), 100.0 * s.taxonomy_share);
    println!("  token            heads  prompts  occurrences");
    for t in &s.taxonomy {
        println!("  {:<16} {:>5}  {:>7}  {:>11}", format!("{:?}", t.token), t.heads, t.prompts, t.occurrences);
    }
    Ok(())
}

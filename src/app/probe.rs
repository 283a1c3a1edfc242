//! Runs the truth probe of `analysis::probe` over a data set, one statement at a time, so the CLI can
//! print progress and the worker can report it, yield between statements and be cancelled.

use serde::Serialize;

use crate::analysis::probe::{self, Dims, CONTROL_SHUFFLES, Features, LayerProbe, Split, Statement, PAPER_ACTIVATION, PAPER_NO_TAG, PAPER_TAG};
use crate::analysis::sinks::SinkRule;
use crate::model::{Engine, TraceOptions};
use crate::tokenizer::Tokenizer;

use super::prompt::{encode, PromptFormat};

/// Share of the statements that train the probes (the paper: 400 of 600).
pub const TRAIN_SHARE: f32 = 2.0 / 3.0;
/// Fewest statements a run accepts (fewer cannot train and hold out both classes).
pub const MIN_STATEMENTS: usize = 20;
/// Longest statement, in tokens (the data sets' statements have 8–20).
pub const MAX_STATEMENT_TOKENS: usize = 64;

/// How the statements are read; stated in every report.
pub const READ_AT: &str = "last token (the statement's end: the only token that has seen all of it)";
pub const FORMAT: &str = "as typed, with the model's own BOS convention";

/// A probe run in progress.
pub struct ProbeJob {
    statements: Vec<Statement>,
    split: Split,
    order: Vec<usize>,
    feats: Vec<Option<Features>>,
    dims: Option<Dims>,
    rule: SinkRule,
    seed: u64,
    done: usize,
}

impl ProbeJob {
    /// Up to `n` statements (whole twin groups, chosen by `seed`), two thirds to train.
    pub fn new(statements: Vec<Statement>, n: usize, seed: u64, rule: SinkRule) -> Result<Self, String> {
        if n < MIN_STATEMENTS {
            return Err(format!("a probe needs at least {MIN_STATEMENTS} statements (asked for {n})"));
        }
        let split = Split::new(&statements, n, TRAIN_SHARE, seed);
        let both = |side: &[usize]| side.iter().any(|&i| statements[i].label) && side.iter().any(|&i| !statements[i].label);
        if !both(&split.train) || !both(&split.test) {
            return Err("the data set needs true and false statements on both sides of the split".into());
        }
        let order = split.all();
        let feats = vec![None; statements.len()];
        Ok(Self { statements, split, order, feats, dims: None, rule, seed, done: 0 })
    }

    pub fn total(&self) -> usize {
        self.order.len()
    }
    pub fn done(&self) -> usize {
        self.done
    }
    pub fn finished(&self) -> bool {
        self.done >= self.order.len()
    }

    /// Runs the next statement (a full forward: the engine's cache, which the page's own prompt
    /// uses, is left alone).
    pub async fn step(&mut self, tok: &Tokenizer, engine: &Engine) -> Result<(), String> {
        let Some(&i) = self.order.get(self.done) else { return Ok(()) };
        let s = &self.statements[i];
        let ids = encode(tok, &s.text, PromptFormat::Raw).map_err(|e| format!("statement {:?}: {e}", s.text))?;
        if ids.len() > MAX_STATEMENT_TOKENS {
            return Err(format!("statement {:?} has {} tokens; statements may have at most {MAX_STATEMENT_TOKENS}", s.text, ids.len()));
        }
        let opts = TraceOptions { layers: None, keep_z: true, keep_resid: true, all_logits: false };
        let trace = engine.forward(&ids, &opts).await.map_err(|e| e.to_string())?;
        let (dims, f) = probe::features(&trace, self.rule).ok_or("the forward pass did not record what the probe needs")?;
        self.dims = Some(dims);
        self.feats[i] = Some(f);
        self.done += 1;
        Ok(())
    }

    /// The probes, once every statement has run.
    pub fn report(&self, model: &str, data: &str) -> Result<ProbeReport, String> {
        let dims = self.dims.filter(|_| self.finished()).ok_or("the probe has not run yet")?;
        let side = |idx: &[usize]| -> Vec<(&Features, bool)> { idx.iter().filter_map(|&i| self.feats[i].as_ref().map(|f| (f, self.statements[i].label))).collect() };
        let r = probe::probe(dims, &side(&self.split.train), &side(&self.split.test), self.seed);
        Ok(ProbeReport {
            model: model.to_string(),
            data: data.to_string(),
            n: self.order.len(),
            n_train: r.n_train,
            n_test: r.n_test,
            seed: self.seed,
            eps: self.rule.eps,
            read_at: READ_AT,
            format: FORMAT,
            paper: Paper::TABLE1,
            dims: r.dims,
            test_labels: r.test_labels,
            layers: r.layers,
        })
    }
}

/// The paper's Table 1 ranges, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Paper {
    pub acc_tag: (f32, f32),
    pub acc_no_tag: (f32, f32),
    pub acc_activation: (f32, f32),
    pub models: &'static str,
}

impl Paper {
    pub const TABLE1: Paper = Paper { acc_tag: PAPER_TAG, acc_no_tag: PAPER_NO_TAG, acc_activation: PAPER_ACTIVATION, models: "3B-14B models (Qwen2.5, Llama 3), Cities, 400 train / 200 validation" };
}

/// What `sinkscope probe --json` prints and the page's Probe view draws (a stable schema: `layers`,
/// each with `layer`, `best_head`, `acc_tag`, `acc_no_tag`, `acc_activation`, `acc_control`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeReport {
    pub model: String,
    pub data: String,
    pub n: usize,
    pub n_train: usize,
    pub n_test: usize,
    pub seed: u64,
    pub eps: f32,
    pub read_at: &'static str,
    pub format: &'static str,
    pub paper: Paper,
    pub dims: Dims,
    pub test_labels: Vec<bool>,
    pub layers: Vec<LayerProbe>,
}

impl ProbeReport {
    /// What the run shows, in sentences computed from the numbers.
    pub fn findings(&self) -> Vec<String> {
        let pct = |a: f32| format!("{:.1}%", 100.0 * a);
        let best = |f: fn(&LayerProbe) -> f32| self.layers.iter().filter(|l| f(l).is_finite()).max_by(|a, b| f(a).total_cmp(&f(b)));
        let mut out = Vec::new();
        let n = self.layers.len();
        if let Some(b) = best(|l| l.acc_tag) {
            out.push(format!(
                "θ_tag is best in layer {} (head {}): {} held out (the best of {n} layers, so a little optimistic); θ_no_tag of that head: {}. The paper: θ_tag {}–{}%, θ_no_tag {}–{}%.",
                b.layer, b.best_head, pct(b.acc_tag), pct(b.acc_no_tag), PAPER_TAG.0, PAPER_TAG.1, PAPER_NO_TAG.0, PAPER_NO_TAG.1
            ));
        }
        if let Some(b) = best(|l| l.acc_no_tag) {
            out.push(format!("θ_no_tag is best in layer {}: {}.", b.layer, pct(b.acc_no_tag)));
        }
        if let Some(b) = best(|l| l.acc_activation) {
            out.push(format!("θ_activation (the whole residual stream) is best in layer {}: {} (the paper: {}–{}%).", b.layer, pct(b.acc_activation), PAPER_ACTIVATION.0, PAPER_ACTIVATION.1));
        }
        let c: Vec<f32> = self.layers.iter().map(|l| l.acc_control).filter(|a| a.is_finite()).collect();
        if !c.is_empty() {
            let (lo, hi) = c.iter().fold((1.0f32, 0.0f32), |(lo, hi), &a| (lo.min(a), hi.max(a)));
            out.push(format!("Control (θ_tag fitted on shuffled labels, mean of {CONTROL_SHUFFLES} shufflings): {}–{} over the layers; chance is 50%.", pct(lo), pct(hi)));
        }
        let held = self.n_test as f32;
        if held > 0.0 {
            // one standard error of an accuracy near 50% on the held-out set
            out.push(format!("{} held-out statements: one standard error of an accuracy near 50% is {:.1} points.", self.n_test, 50.0 / held.sqrt()));
        }
        out
    }
}

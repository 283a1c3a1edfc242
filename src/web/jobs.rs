//! Long runs over many prompts in the worker: the truth probe (Probe view) and the corpus statistics
//! (Corpus view). One statement or paragraph at a time: the session is lent out for each and given
//! back, so the page's own prompt keeps updating, progress is posted, and Cancel is seen between
//! two of them. Results are kept for the session (the same request is answered at once).

use serde::Serialize;

use super::{kick_pending, post, return_session, take_session, yield_now, ExportKind, Reply, WORKER};
use crate::analysis::corpus::{paragraphs, Corpus, CorpusStats};
use crate::analysis::probe::parse_statements;
use crate::analysis::sinks::SinkRule;
use crate::app::plot::{compose, Figure, Style};
use crate::app::probe::{ProbeJob, ProbeReport};
use crate::app::prompt::{encode, PromptFormat};
use crate::app::state::{ModelId, ProbeData, ViewState, MAX_PROBE_N};
use crate::app::{export, figures};
use crate::model::TraceOptions;

/// Paragraphs longer than this are cut: the page's prompt limit, which the session's engine
/// enforces (`sinkscope corpus` takes 1,024).
const CORPUS_MAX_TOKENS: usize = crate::app::state::MAX_TOKENS;

/// What identifies a result: the model, the inputs and eps.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeKey {
    pub model: ModelId,
    pub generation: u64,
    pub data: ProbeData,
    pub n: usize,
    pub seed: u64,
    pub eps: f32,
}

#[derive(Default)]
pub struct Jobs {
    pub running: bool,
    pub cancel: bool,
    pub probed: Option<(ProbeKey, ProbeReport)>,
    /// The layer whose histograms are on screen.
    pub shown_layer: Option<usize>,
    /// (model, generation, eps), the model's name, and the result.
    pub corpus: Option<((ModelId, u64, f32), String, CorpusStats)>,
}

#[derive(Serialize)]
pub struct ProbeSummary<'a> {
    pub data: ProbeData,
    /// As asked for (the key of the kept result).
    pub n: usize,
    /// As used: whole twin groups up to `n`, at most the data set's size.
    pub used: usize,
    pub seed: u64,
    pub eps: f32,
    pub model: &'a str,
    pub n_train: usize,
    pub n_test: usize,
    pub read_at: &'a str,
    pub format: &'a str,
    pub layers: usize,
    pub layer: usize,
    pub findings: Vec<String>,
    pub figures: Vec<Figure>,
}

fn style(projector: bool) -> Style {
    if projector { Style::PROJECTOR } else { Style::default() }
}

fn key_now(data: ProbeData, n: usize, seed: u64, eps: f32) -> ProbeKey {
    WORKER.with_borrow(|w| ProbeKey { model: w.model, generation: w.generation, data, n, seed, eps })
}

/// The layer whose histograms open first: where θ_tag does best.
fn best_layer(r: &ProbeReport) -> usize {
    r.layers.iter().filter(|l| l.acc_tag.is_finite()).max_by(|a, b| a.acc_tag.total_cmp(&b.acc_tag)).map_or(0, |l| l.layer)
}

pub fn post_probe(r: &ProbeReport, key: &ProbeKey, layer: Option<usize>, projector: bool) {
    let st = style(projector);
    let layer = layer.filter(|l| r.layers.iter().any(|x| x.layer == *l)).unwrap_or_else(|| best_layer(r));
    WORKER.with_borrow_mut(|w| w.jobs.shown_layer = Some(layer));
    let mut figs = vec![figures::probe_layers(r, &st)];
    figs.extend(figures::probe_hists(r, layer, &st));
    post(&Reply::Probed(ProbeSummary {
        data: key.data,
        n: key.n,
        used: r.n,
        seed: key.seed,
        eps: key.eps,
        model: &r.model,
        n_train: r.n_train,
        n_test: r.n_test,
        read_at: r.read_at,
        format: r.format,
        layers: r.dims.layers,
        layer,
        findings: r.findings(),
        figures: figs,
    }));
}

/// Start (or answer from the kept result) a probe run on `csv`, the text of the data set.
pub async fn probe(data: ProbeData, csv: String, n: usize, seed: u64, eps: f32, layer: Option<usize>, projector: bool) {
    let key = key_now(data, n, seed, eps);
    if let Some(r) = WORKER.with_borrow(|w| w.jobs.probed.as_ref().filter(|(k, _)| *k == key).map(|(_, r)| r.clone())) {
        return post_probe(&r, &key, layer, projector);
    }
    if !begin() {
        return post(&Reply::JobFailed { kind: "probe", message: "another run is in progress; cancel it first".into() });
    }
    let result = run_probe(&key, &csv).await;
    WORKER.with_borrow_mut(|w| w.jobs.running = false);
    match result {
        Ok(Some(r)) => {
            post_probe(&r, &key, layer, projector);
            WORKER.with_borrow_mut(|w| w.jobs.probed = Some((key, r)));
        }
        Ok(None) => post(&Reply::JobCancelled { kind: "probe" }),
        Err(e) => post(&Reply::JobFailed { kind: "probe", message: format!("the probe failed: {e}") }),
    }
    kick_pending();
}

fn begin() -> bool {
    WORKER.with_borrow_mut(|w| {
        let start = !w.jobs.running;
        if start {
            w.jobs.running = true;
            w.jobs.cancel = false;
        }
        start
    })
}

/// The page's own prompt goes first: while an update waits or computes, the run waits.
fn gives_way() -> bool {
    let waiting = WORKER.with_borrow(|w| w.pending.is_some() || w.busy);
    if waiting {
        kick_pending();
    }
    waiting
}

fn cancelled(generation: u64) -> bool {
    WORKER.with_borrow(|w| w.jobs.cancel || w.generation != generation)
}

async fn run_probe(key: &ProbeKey, csv: &str) -> Result<Option<ProbeReport>, String> {
    if !(crate::app::probe::MIN_STATEMENTS..=MAX_PROBE_N).contains(&key.n) {
        return Err(format!("the number of statements must be between {} and {MAX_PROBE_N}", crate::app::probe::MIN_STATEMENTS));
    }
    let statements = parse_statements(csv)?;
    let mut job = ProbeJob::new(statements, key.n, key.seed, SinkRule::new(key.eps))?;
    let mut model = String::new();
    while !job.finished() {
        yield_now().await;
        if cancelled(key.generation) {
            return Ok(None);
        }
        if gives_way() {
            continue;
        }
        let Some((session, generation)) = take_session() else { continue };
        let r = job.step(&session.tok, &session.engine).await;
        model.clone_from(&session.model_name);
        return_session(session, generation);
        kick_pending();
        r?;
        post(&Reply::JobProgress { kind: "probe", done: job.done(), total: job.total() });
    }
    job.report(&model, &format!("{}.csv", key.data.name())).map(Some)
}

pub fn post_corpus(s: &CorpusStats, model: &str, projector: bool) {
    let mut findings = vec![format!(
        "{model}: {} prompts, {} tokens, {} heads in all: {:.2} sinks per head on average ({:.2} beyond the first token). The paper: 1–2 sinks in most heads (1.125 → 2.196 from Qwen2.5-14B to its R1 distillation).",
        s.prompts,
        s.tokens,
        s.fig3.n_heads,
        s.fig3.avg_sinks,
        s.avg_sinks_beyond_first
    )];
    let one_or_two = s.fig3.sinks_hist.get(1..3).map_or(0, |x| x.iter().sum::<usize>());
    findings.push(format!("{:.0}% of heads have one or two sinks; {:.0}% have none.", 100.0 * one_or_two as f32 / s.fig3.n_heads.max(1) as f32, 100.0 * s.fig3.sinks_hist[0] as f32 / s.fig3.n_heads.max(1) as f32));
    if !s.taxonomy.is_empty() {
        let top: Vec<String> = s.taxonomy.iter().take(8).map(|t| format!("{:?} ({})", t.token, t.heads)).collect();
        findings.push(format!("Sinks beyond the first token, most frequent first: {} — the paper names \"the\", \"to\", \".\", \",\".", top.join(", ")));
    }
    post(&Reply::CorpusDone { findings, figures: figures::corpus(s, &style(projector)) });
}

/// Run (or answer from the kept result) the corpus statistics over `text`'s paragraphs.
pub async fn corpus(text: String, eps: f32, projector: bool) {
    let key = WORKER.with_borrow(|w| (w.model, w.generation, eps));
    if let Some((m, s)) = WORKER.with_borrow(|w| w.jobs.corpus.as_ref().filter(|(k, _, _)| *k == key).map(|(_, m, s)| (m.clone(), s.clone()))) {
        return post_corpus(&s, &m, projector);
    }
    if !begin() {
        return post(&Reply::JobFailed { kind: "corpus", message: "another run is in progress; cancel it first".into() });
    }
    let result = run_corpus(&text, eps, key.1).await;
    WORKER.with_borrow_mut(|w| w.jobs.running = false);
    match result {
        Ok(Some((m, s))) => {
            post_corpus(&s, &m, projector);
            WORKER.with_borrow_mut(|w| w.jobs.corpus = Some((key, m, s)));
        }
        Ok(None) => post(&Reply::JobCancelled { kind: "corpus" }),
        Err(e) => post(&Reply::JobFailed { kind: "corpus", message: format!("the corpus run failed: {e}") }),
    }
    kick_pending();
}

async fn run_corpus(text: &str, eps: f32, generation: u64) -> Result<Option<(String, CorpusStats)>, String> {
    let paras = paragraphs(text);
    if paras.is_empty() {
        return Err("the corpus has no paragraphs".into());
    }
    let rule = SinkRule::new(eps);
    let opts = TraceOptions { layers: None, keep_z: true, keep_resid: false, all_logits: false };
    let mut c = Corpus::default();
    let mut model = String::new();
    let mut i = 0;
    while i < paras.len() {
        yield_now().await;
        if cancelled(generation) {
            return Ok(None);
        }
        if gives_way() {
            continue;
        }
        let Some((session, gen)) = take_session() else { continue };
        let step = async {
            let mut ids = encode(&session.tok, &paras[i], PromptFormat::Raw).map_err(|e| e.to_string())?;
            ids.truncate(CORPUS_MAX_TOKENS);
            c.begin(ids.iter().map(|&id| session.tok.token_text(id)).collect(), rule);
            session.engine.forward_layers(&ids, &opts, &mut |layer| c.layers(layer)).await.map_err(|e| e.to_string())?;
            c.end();
            Ok::<(), String>(())
        }
        .await;
        model.clone_from(&session.model_name);
        return_session(session, gen);
        kick_pending();
        step?;
        i += 1;
        post(&Reply::JobProgress { kind: "corpus", done: i, total: paras.len() });
    }
    Ok(Some((model, c.finish())))
}

/// The Probe or Corpus view's figures as one SVG, or their numbers as JSON.
pub fn export(state: &ViewState, kind: ExportKind) -> Result<Reply<'static>, String> {
    let st = style(state.projector);
    let (name, json, figs) = WORKER.with_borrow(|w| -> Result<_, String> {
        if state.view == crate::app::state::View::Probe {
            let (k, r) = w.jobs.probed.as_ref().ok_or("run the probe first")?;
            let mut figs = vec![figures::probe_layers(r, &st)];
            figs.extend(figures::probe_hists(r, w.jobs.shown_layer.unwrap_or_else(|| best_layer(r)), &st));
            let label = format!("{} n={} seed={} eps={}", k.data.name(), k.n, k.seed, k.eps);
            Ok((export::job_file_name(&r.model, "probe", &label), serde_json::to_string(r).map_err(|e| e.to_string())?, figs))
        } else {
            let ((_, _, eps), m, s) = w.jobs.corpus.as_ref().ok_or("run the corpus statistics first")?;
            let doc = serde_json::json!({ "model": m, "corpus": "paragraphs.txt", "stats": s });
            Ok((export::job_file_name(m, "corpus", &format!("paragraphs.txt eps={eps}")), doc.to_string(), figures::corpus(s, &st)))
        }
    })?;
    let stem = name;
    Ok(match kind {
        ExportKind::Json => Reply::Export { kind: "json", name: format!("{stem}.json"), text: json, width: 0, height: 0 },
        ExportKind::Svg => {
            let fig = compose(state.view.name(), &figs.iter().collect::<Vec<_>>(), 1400);
            Reply::Export { kind: "svg", name: format!("{stem}.svg"), text: fig.svg, width: fig.width, height: fig.height }
        }
    })
}

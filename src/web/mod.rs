//! Layer 6 (wasm only): the Web Worker that runs the model, and its message protocol.
//!
//! The page (www/app.js) posts plain JavaScript objects; the worker answers with objects plus
//! transferable pixel buffers. Both directions go through `serde-wasm-bindgen`, so NaN and
//! infinities arrive as the numbers they are (JSON would turn them into `null`). Everything heavy
//! happens here, off the page's thread:
//! * `init`: fetch one of the catalogue's models with progress (each kept in Cache Storage for the
//!   next visit), pick the backend (a hardware WebGPU adapter when there is one and the link does not
//!   say otherwise, else the CPU), build the session. Sent again to switch models or backends;
//! * `init-file`: the same with the bytes of a GGUF file the user opened (it never leaves the page);
//! * `compare`: the QK-norm comparison — both catalogue models on one prompt (the one not loaded is
//!   loaded for it, then dropped);
//! * `decode`: turn a URL fragment into a view state (with notices for malformed links);
//! * `update`: compute a frame; requests that arrive while one is computed replace each other, so
//!   only the newest is computed next (stale ones are never computed);
//! * `export`: the current view as SVG (the page rasterises it for PNG) or the analysis as JSON.
//!
//! No panic crosses into JavaScript silently: a panic hook reports it as a `fatal` message of kind
//! `panic`; a lost GPU device (the device's lost callback, or the test hook) is kind `device-lost`,
//! after which the page restarts on the CPU worker.
//!
//! The same code is built twice (scripts/build-web.sh): `sinkscope` (the CPU worker) and
//! `sinkscope-webgpu` (with the `wgpu` feature: burn's WebGPU backend); [`device`] holds what
//! differs. The CPU worker starts helper workers of the same build for its large products
//! ([`helpers`]; a worker started with the helpers' name runs only that).

mod device;
mod fetch;
mod helpers;
mod jobs;

use std::cell::RefCell;

use js_sys::{Array, Float32Array, Object, Reflect, Uint8ClampedArray};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use crate::app::draw::Bitmap;
use crate::app::lab::Lab;
use crate::app::plot::Style;
use crate::app::session::{self, Frame, Session, UpdateOptions};
use crate::analysis::compare::{compare, Comparison};
use crate::analysis::sinks::SinkRule;
use crate::app::models::{self, ModelEntry, CATALOGUE};
use crate::app::plot::Figure;
use crate::app::state::{Backend, ModelId, ProbeData, ViewState};
use crate::app::{self, export};

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Request {
    /// `helpers`: how many helper workers to start for the CPU's products (test hook; default:
    /// one per further core, see [`helpers::planned`]). Only the first `init` counts; they start
    /// after the first picture.
    Init { model: ModelId, backend: Option<Backend>, #[serde(default)] helpers: Option<usize> },
    /// A user's own file; its bytes travel beside the message (see [`start`]).
    InitFile { name: String, backend: Option<Backend>, #[serde(default)] helpers: Option<usize> },
    Compare { prompt: String, eps: f32, #[serde(default)] projector: bool },
    Decode { fragment: String },
    Update { seq: u64, state: ViewState, #[serde(default)] opts: UpdateOptions },
    Export { state: ViewState, kind: ExportKind },
    /// Test hook: destroy the GPU device, as a driver reset or a lost GPU would.
    LoseDevice,
    /// Test hook: the next frame carries NaN and infinities in its numbers.
    Poison,
    /// Test hook: panic, as a bug would (the page must report it as the error it is).
    Panic,
    /// Test hook: this build's block kernels against the portable ones (`quant::self_check`).
    KernelCheck,
    /// Test hook: make a helper worker panic, as a bug would.
    CrashHelper,
    /// The Lab: show the current state (the pre-trained checkpoint at first).
    LabShow { #[serde(default)] projector: bool },
    /// Train (from a fresh initialisation with `seed` if the checkpoint is shown).
    LabStart { seed: u64 },
    LabPause,
    /// A fresh random initialisation with `seed`, not yet trained.
    LabReset { seed: u64 },
    /// The truth probe on a data set (its CSV text, fetched by the page from its own origin);
    /// `layer`: the layer whose histograms to show (default: where θ_tag does best).
    Probe { data: ProbeData, csv: String, n: usize, seed: u64, eps: f32, layer: Option<usize>, #[serde(default)] projector: bool },
    /// The corpus statistics over the paragraphs of `text`.
    Corpus { text: String, eps: f32, #[serde(default)] projector: bool },
    /// Stop the probe or corpus run in progress (between two statements or paragraphs).
    JobCancel,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum ExportKind {
    Svg,
    Json,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Reply<'a> {
    /// The worker runs; the models it offers, and the largest file it will try to load.
    Alive { models: &'a [ModelEntry], max_file_bytes: f64 },
    Progress { loaded: f64, total: f64, cached: bool },
    Ready {
        backend: &'a str,
        adapter: String,
        load_ms: f64,
        n_layers: usize,
        n_heads: usize,
        model: String,
        model_id: ModelId,
        formats: Vec<app::prompt::FormatChoice>,
        fallback: Option<String>,
    },
    CompareProgress { text: String },
    Compared { prompt: String, eps: f32, claim: &'a str, findings: Vec<String>, figures: Vec<Figure> },
    Decoded { state: ViewState, notices: Vec<String> },
    JobProgress { kind: &'a str, done: usize, total: usize },
    JobCancelled { kind: &'a str },
    JobFailed { kind: &'a str, message: String },
    Probed(jobs::ProbeSummary<'a>),
    CorpusDone { findings: Vec<String>, figures: Vec<Figure> },
    Export { kind: &'a str, name: String, text: String, width: u32, height: u32 },
    Error { seq: Option<u64>, message: String, retry: bool },
    Fatal { kind: &'a str, message: String },
    /// The answer to `kernel-check`: cases run, the ones that failed, and whether this build uses
    /// relaxed SIMD.
    /// `helpers`: helper workers that answer; `helper_parts`: product parts they computed so far.
    /// `device_cases`: how many of `cases` compared the worker's GPU kernels with the CPU (0 on the CPU).
    KernelCheck { cases: usize, failures: Vec<String>, relaxed_simd: bool, helpers: usize, helper_parts: usize, device_cases: usize },
}

struct Worker {
    session: Option<Session>,
    /// Bumped by each `init`: a session taken out before it is not put back after it.
    generation: u64,
    backend: &'static str,
    /// The newest update not yet computed.
    pending: Option<(u64, ViewState, UpdateOptions)>,
    busy: bool,
    poison: bool,
    lab: Option<Lab>,
    lab_style: Style,
    /// Training is wanted (Start pressed, not paused or reset since).
    lab_running: bool,
    /// The training loop is scheduled (it holds the Lab while it computes).
    lab_loop: bool,
    /// Which model the session runs.
    model: ModelId,
    /// The last QK-norm comparison: (prompt, eps) and its result.
    compared: Option<(String, f32, Comparison)>,
    /// Probe and corpus runs, and their kept results.
    jobs: jobs::Jobs,
}

thread_local! {
    static WORKER: RefCell<Worker> = RefCell::new(Worker {
        session: None,
        generation: 0,
        backend: "cpu",
        pending: None,
        busy: false,
        poison: false,
        lab: None,
        lab_style: Style::default(),
        lab_running: false,
        lab_loop: false,
        model: ModelId::Smollm2,
        compared: None,
        jobs: jobs::Jobs { running: false, cancel: false, probed: None, shown_layer: None, corpus: None },
    });
}

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

pub fn now_ms() -> f64 {
    js_sys::global()
        .dyn_into::<web_sys::WorkerGlobalScope>()
        .ok()
        .and_then(|g| g.performance())
        .map(|p| p.now())
        .unwrap_or_else(js_sys::Date::now)
}

/// A value as a JavaScript object (NaN kept, `None` as `null`, maps as plain objects).
fn to_js<T: Serialize + ?Sized>(value: &T) -> Result<JsValue, String> {
    let ser = serde_wasm_bindgen::Serializer::new().serialize_missing_as_null(true).serialize_maps_as_objects(true);
    value.serialize(&ser).map_err(|e| e.to_string())
}

fn post<T: Serialize + ?Sized>(value: &T) {
    match to_js(value) {
        Ok(v) => {
            let _ = scope().post_message(&v);
        }
        Err(e) => web_sys::console::error_1(&format!("cannot encode a reply: {e}").into()),
    }
}

fn post_error(seq: Option<u64>, message: String, retry: bool) {
    post(&Reply::Error { seq, message, retry });
}

/// Send a reply with bitmaps: the value, the pixels as transferable buffers, and optional values.
fn post_with_bitmaps<T: Serialize>(kind: &'static str, value: &T, bitmaps: &[(String, Bitmap)], heat: &[f32]) {
    let names: Vec<(&str, usize, usize)> = bitmaps.iter().map(|(n, b)| (n.as_str(), b.width, b.height)).collect();
    let (body, names) = match (to_js(value), to_js(&names)) {
        (Ok(b), Ok(n)) => (b, n),
        (Err(e), _) | (_, Err(e)) => return post_error(None, format!("cannot encode a {kind}: {e}"), false),
    };
    let msg = Object::new();
    let transfer = Array::new();
    let pixels = Array::new();
    for (_, b) in bitmaps {
        let arr = Uint8ClampedArray::new_with_length(b.rgba.len() as u32);
        arr.copy_from(&b.rgba);
        transfer.push(&arr.buffer());
        pixels.push(&arr);
    }
    let values = Float32Array::new_with_length(heat.len() as u32);
    values.copy_from(heat);
    transfer.push(&values.buffer());
    let _ = Reflect::set(&msg, &"type".into(), &kind.into());
    let _ = Reflect::set(&msg, &kind.into(), &body);
    let _ = Reflect::set(&msg, &"bitmaps".into(), &names);
    let _ = Reflect::set(&msg, &"pixels".into(), &pixels);
    let _ = Reflect::set(&msg, &"heat".into(), &values);
    if let Err(e) = scope().post_message_with_transfer(&msg, &transfer) {
        web_sys::console::error_1(&e);
    }
}

/// Test hook: put NaN and infinities where the page prints numbers.
fn poison(frame: &mut Frame) {
    if let Some(t) = frame.tokens.first_mut() {
        t.alpha = f32::NAN;
    }
    if let Some(s) = frame.summary.as_mut() {
        s.avg_sinks = f32::INFINITY;
        s.sink_rate_overall = f32::NAN;
    }
    if let Some(h) = frame.head.as_mut() {
        h.variance_explained = f32::NAN;
        h.alpha.iter_mut().for_each(|a| *a = f32::NEG_INFINITY);
    }
    if let Some(n) = frame.top_next.first_mut() {
        n.prob = f32::NAN;
    }
    if let Some(g) = frame.grid.as_mut() {
        g.values.iter_mut().for_each(|v| *v = Some(f32::NAN));
    }
    frame.heat_values.iter_mut().take(1).for_each(|v| *v = f32::INFINITY);
}

fn post_frame(frame: &Frame) {
    post_with_bitmaps("frame", frame, &frame.bitmaps, &frame.heat_values);
}

/// The size of this worker's wasm linear memory (it never shrinks, so this is its peak so far).
fn wasm_memory_bytes() -> f64 {
    wasm_bindgen::memory().dyn_into::<js_sys::WebAssembly::Memory>().map(|m| m.buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length() as f64).unwrap_or(f64::NAN)
}

/// Tell the page, once, that the GPU device is gone: it then moves to the CPU worker. The device's
/// lost callback, a panic and a failed forward may all notice the same loss.
fn report_device_lost(message: String) {
    static REPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !REPORTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        // (in the worker's console too: which path noticed the loss first)
        web_sys::console::warn_1(&format!("sinkscope: {message}").into());
        post(&Reply::Fatal { kind: "device-lost", message });
    }
}

/// Whether an error message describes a GPU device that is gone.
fn is_device_loss(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    device::lost() || m.contains("device lost") || m.contains("devicelost") || m.contains("device is lost") || m.contains("device was lost")
}

/// Entry point of the worker binary.
pub fn start() {
    if !js_sys::global().is_instance_of::<DedicatedWorkerGlobalScope>() {
        web_sys::console::error_1(&"sinkscope: this wasm runs only as the page's Web Worker".into());
        return;
    }
    if scope().name() == helpers::NAME {
        return helpers::serve();
    }
    std::panic::set_hook(Box::new(|info| {
        let message = format!("internal error: {info}");
        web_sys::console::error_1(&message.clone().into());
        let on_gpu = WORKER.try_with(|w| w.try_borrow().map(|w| w.backend == "webgpu").unwrap_or(false)).unwrap_or(false);
        if on_gpu && is_device_loss(&message) {
            report_device_lost(message);
        } else {
            post(&Reply::Fatal { kind: "panic", message });
        }
    }));
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| match serde_wasm_bindgen::from_value::<Request>(ev.data()) {
        Ok(Request::InitFile { name, backend, helpers }) => {
            helpers::request(helpers);
            // the file's bytes: an ArrayBuffer transferred beside the message (not through serde)
            let bytes = Reflect::get(&ev.data(), &"bytes".into()).ok().filter(|b| b.is_instance_of::<js_sys::ArrayBuffer>());
            match bytes {
                Some(b) => wasm_bindgen_futures::spawn_local(init_file(name, js_sys::Uint8Array::new(&b), backend)),
                None => post_error(None, "the opened file's bytes did not reach the model worker".into(), false),
            }
        }
        Ok(req) => handle(req),
        Err(e) => post_error(None, format!("the worker received a malformed request: {e}"), false),
    });
    scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    post(&Reply::Alive { models: &CATALOGUE, max_file_bytes: crate::model::MAX_WEIGHT_BYTES as f64 });
}

fn handle(req: Request) {
    match req {
        Request::Init { model, backend, helpers } => {
            helpers::request(helpers);
            wasm_bindgen_futures::spawn_local(init_catalogue(model, backend))
        }
        Request::InitFile { .. } => {}
        Request::Compare { prompt, eps, projector } => wasm_bindgen_futures::spawn_local(compare_models(prompt, eps, projector)),
        Request::Decode { fragment } => {
            let (mut state, mut notices) = ViewState::from_fragment(&fragment);
            // A local file cannot travel in a link: unless this worker runs one, use the default.
            if state.model == ModelId::Local && WORKER.with_borrow(|w| w.model) != ModelId::Local {
                notices.push("This link was made with a model file opened from its author's computer, which cannot travel in a link: showing SmolLM2 instead. Open the same file with \u{201c}Open a GGUF file\u{2026}\u{201d} to see what they saw.".into());
                state.model = ModelId::default();
            }
            post(&Reply::Decoded { state, notices });
        }
        Request::Update { seq, state, opts } => {
            let start = WORKER.with_borrow_mut(|w| {
                w.pending = Some((seq, state, opts));
                let start = !w.busy && w.session.is_some();
                w.busy |= start;
                start
            });
            if start {
                wasm_bindgen_futures::spawn_local(run_pending());
            }
        }
        Request::Export { state, kind } => wasm_bindgen_futures::spawn_local(export_view(state, kind)),
        Request::Poison => WORKER.with_borrow_mut(|w| w.poison = true),
        Request::Panic => panic!("a deliberate panic (test hook)"),
        Request::KernelCheck => wasm_bindgen_futures::spawn_local(kernel_check()),
        Request::LoseDevice => device::lose(),
        Request::CrashHelper => helpers::crash_one(),
        Request::Probe { data, csv, n, seed, eps, layer, projector } => wasm_bindgen_futures::spawn_local(jobs::probe(data, csv, n, seed, eps, layer, projector)),
        Request::Corpus { text, eps, projector } => wasm_bindgen_futures::spawn_local(jobs::corpus(text, eps, projector)),
        Request::JobCancel => WORKER.with_borrow_mut(|w| w.jobs.cancel = true),
        lab => handle_lab(lab),
    }
}

fn handle_lab(req: Request) {
    let spawn_post = |idle: bool| {
        if idle {
            wasm_bindgen_futures::spawn_local(lab_post());
        }
    };
    match req {
        Request::LabShow { projector } => spawn_post(WORKER.with_borrow_mut(|w| {
            w.lab_style = if projector { Style::PROJECTOR } else { Style::default() };
            !w.lab_loop
        })),
        Request::LabStart { seed } => {
            let start = WORKER.with_borrow_mut(|w| {
                if !w.lab_loop && w.lab.as_ref().is_none_or(|l| l.source == "checkpoint" || l.trainer.done()) {
                    w.lab = Some(Lab::fresh(seed));
                }
                w.lab_running = true;
                let start = !w.lab_loop;
                w.lab_loop = true;
                start
            });
            if start {
                wasm_bindgen_futures::spawn_local(lab_loop());
            }
        }
        Request::LabPause => spawn_post(WORKER.with_borrow_mut(|w| {
            w.lab_running = false;
            !w.lab_loop
        })),
        Request::LabReset { seed } => spawn_post(WORKER.with_borrow_mut(|w| {
            w.lab_running = false;
            w.lab = Some(Lab::fresh(seed));
            !w.lab_loop
        })),
        _ => {}
    }
}

/// Take the session out while it computes (no RefCell borrow may span an await), with the
/// generation it belongs to.
fn take_session() -> Option<(Session, u64)> {
    WORKER.with_borrow_mut(|w| w.session.take().map(|s| (s, w.generation)))
}

/// Put a session back, unless a newer `init` replaced it meanwhile.
fn return_session(session: Session, generation: u64) {
    WORKER.with_borrow_mut(|w| {
        if w.generation == generation {
            w.session = Some(session);
        }
    });
}

/// Start computing a pending update if nothing is computing (after the session was lent out to a
/// comparison or an export, an update may have arrived meanwhile).
fn kick_pending() {
    let start = WORKER.with_borrow_mut(|w| {
        let start = !w.busy && w.pending.is_some() && w.session.is_some();
        w.busy |= start;
        start
    });
    if start {
        wasm_bindgen_futures::spawn_local(run_pending());
    }
}

/// Yield to the event loop so that queued messages are seen (the newest update wins).
async fn yield_now() {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(p).await;
}

async fn run_pending() {
    loop {
        yield_now().await;
        // Take the update only together with the session: when a probe or corpus run holds the
        // session, the update stays pending and that run starts this loop again when it gives the
        // session back (`kick_pending`).
        let next = WORKER.with_borrow_mut(|w| if w.session.is_some() { w.pending.take() } else { None });
        let Some((seq, state, opts)) = next else { break };
        let Some((mut session, generation)) = take_session() else { break };
        let result = session.update(seq, &state, opts, &now_ms).await;
        return_session(session, generation);
        match result {
            Ok(mut frame) => {
                if let Some(t) = frame.timing.as_mut() {
                    t.wasm_memory_bytes = Some(wasm_memory_bytes());
                    t.helper_memory_bytes = helpers::memory_bytes();
                    if let Some([live, peak]) = device::gpu_buffer_bytes() {
                        t.gpu_buffer_bytes = Some(live);
                        t.gpu_buffer_peak_bytes = Some(peak);
                    }
                }
                if WORKER.with_borrow_mut(|w| std::mem::take(&mut w.poison)) {
                    poison(&mut frame);
                }
                post_frame(&frame);
                helpers::start_once();
            }
            Err(e) if WORKER.with_borrow(|w| w.backend) == "webgpu" && is_device_loss(&e.to_string()) => {
                report_device_lost(format!("the GPU device was lost ({e})"));
                break;
            }
            Err(e) => post_error(Some(seq), e.to_string(), true),
        }
    }
    WORKER.with_borrow_mut(|w| w.busy = false);
}

/// The Lab's figures as one SVG, or its numbers as JSON (the schema of `sinkscope toy train --json`).
async fn export_lab(state: &ViewState, kind: ExportKind) -> Result<Reply<'static>, String> {
    let lab = lab_take()?;
    let style = if state.projector { Style::PROJECTOR } else { Style::default() };
    let frame = lab.frame(&style);
    let json = serde_json::json!({"config": lab.trainer.cfg, "losses": frame.losses, "verdict": frame.verdict, "thresholds": {
        "min_catch": frame.thresholds[0], "min_release": frame.thresholds[1], "max_relative_error": frame.thresholds[2]}});
    WORKER.with_borrow_mut(|w| {
        if w.lab.is_none() {
            w.lab = Some(lab);
        }
    });
    let name = |ext: &str| format!("sinkscope_lab_seed{}_epoch{}.{ext}", frame.seed, frame.epoch);
    Ok(match kind {
        ExportKind::Json => Reply::Export { kind: "json", name: name("json"), text: json.to_string(), width: 0, height: 0 },
        ExportKind::Svg => {
            let figs: Vec<&crate::app::plot::Figure> = frame.figures.iter().collect();
            let fig = crate::app::plot::compose("lab", &figs, 1400);
            Reply::Export { kind: "svg", name: name("svg"), text: fig.svg, width: fig.width, height: fig.height }
        }
    })
}

/// The QK-norm comparison on screen as one SVG, or as JSON (the schema of `sinkscope compare --json`).
fn export_comparison(state: &ViewState, kind: ExportKind) -> Result<Reply<'static>, String> {
    let c = WORKER.with_borrow(|w| w.compared.as_ref().filter(|(p, e, _)| *p == state.prompt && *e == state.eps).map(|(_, _, c)| c.clone()));
    let c = c.ok_or("the comparison for this prompt is not ready yet")?;
    let name = |ext: &str| export::file_name("smollm2-vs-gemma3", 0, 0, "qknorm", &state.prompt, ext);
    Ok(match kind {
        ExportKind::Json => Reply::Export { kind: "json", name: name("json"), text: serde_json::to_string(&c).map_err(|e| e.to_string())?, width: 0, height: 0 },
        ExportKind::Svg => {
            let style = if state.projector { Style::PROJECTOR } else { Style::default() };
            let figs = app::figures::compare(&c, &style);
            let fig = crate::app::plot::compose("qknorm", &figs.iter().collect::<Vec<_>>(), 1400);
            Reply::Export { kind: "svg", name: name("svg"), text: fig.svg, width: fig.width, height: fig.height }
        }
    })
}

/// The current view as one SVG figure, or the analysis as JSON, with a file name.
async fn export_view(state: ViewState, kind: ExportKind) {
    if state.view == crate::app::state::View::Lab {
        return match export_lab(&state, kind).await {
            Ok(r) => post(&r),
            Err(e) => post_error(None, format!("export failed: {e}"), false),
        };
    }
    if matches!(state.view, crate::app::state::View::Probe | crate::app::state::View::Corpus) {
        return post(&match jobs::export(&state, kind) {
            Ok(r) => r,
            Err(e) => Reply::Error { seq: None, message: format!("export failed: {e}"), retry: false },
        });
    }
    if state.view == crate::app::state::View::Qknorm {
        return post(&match export_comparison(&state, kind) {
            Ok(r) => r,
            Err(e) => Reply::Error { seq: None, message: format!("export failed: {e}"), retry: false },
        });
    }
    let Some((mut session, generation)) = take_session() else {
        return post_error(None, "the model is busy or not loaded yet; try again".into(), false);
    };
    let model = session.model_name.clone();
    let name = |ext: &str| export::file_name(&model, state.layer, state.head, state.view.name(), &state.prompt, ext);
    let reply = match kind {
        ExportKind::Json => session.analysis_json(&state).await.map(|doc| Reply::Export { kind: "json", name: name("json"), text: doc.to_string(), width: 0, height: 0 }),
        ExportKind::Svg => {
            let opts = UpdateOptions { export: true, ..Default::default() };
            session.update(0, &state, opts, &now_ms).await.map_err(|e| e.to_string()).map(|frame| {
                let fig = session::export_figure(&frame);
                Reply::Export { kind: "svg", name: name("svg"), text: fig.svg, width: fig.width, height: fig.height }
            })
        }
    };
    return_session(session, generation);
    kick_pending();
    match reply {
        Ok(r) => post(&r),
        Err(e) => post_error(None, format!("export failed: {e}"), false),
    }
}

/// Load a catalogue model (from Cache Storage, else downloaded and cached).
async fn init_catalogue(model: ModelId, backend: Option<Backend>) {
    let Some(entry) = models::entry(model) else {
        return post_error(None, "a model file opened from this computer is not in the browser's cache: open it again with \u{201c}Open a GGUF file\u{2026}\u{201d}".into(), false);
    };
    let t0 = now_ms();
    let generation = drop_session();
    let bytes = match fetch::fetch_cached(entry.url, |loaded, total, cached| post(&Reply::Progress { loaded, total, cached })).await {
        Ok(b) => b,
        Err(e) => return post_error(None, e, true),
    };
    // The file's own name (without ".gguf") names the model in export file names.
    let name = entry.url.rsplit('/').next().unwrap_or("model").trim_end_matches(".gguf");
    if let Err(e) = start_session(bytes, name, model, backend, t0, generation).await {
        // A bad file must not stay in the cache, or every visit would fail the same way.
        fetch::forget(entry.url).await;
        post_error(None, e, true);
    }
}

/// Load a GGUF file the user opened (its bytes never leave the page).
async fn init_file(name: String, bytes: js_sys::Uint8Array, backend: Option<Backend>) {
    let t0 = now_ms();
    let generation = drop_session();
    let len = bytes.length() as usize;
    let mut v: Vec<u8> = Vec::new();
    if v.try_reserve_exact(len).is_err() {
        return post_error(None, format!("out of memory: this browser tab cannot hold the {} MB file", len >> 20), false);
    }
    v.resize(len, 0);
    bytes.copy_to(&mut v);
    drop(bytes);
    let stem: String = name.trim_end_matches(".gguf").chars().filter(|c| !c.is_control()).take(80).collect();
    if let Err(e) = start_session(v, &stem, ModelId::Local, backend, t0, generation).await {
        post_error(None, format!("{name}: {e}"), false);
    }
}

/// Before loading another model or backend: the old session (and its device) goes first, so two
/// models never coexist.
/// Returns the new generation: a load started now installs its session only if no later load
/// began meanwhile (the newest choice wins, whichever file arrives first).
fn drop_session() -> u64 {
    let generation = WORKER.with_borrow_mut(|w| {
        w.session = None;
        w.generation += 1;
        w.generation
    });
    device::release();
    generation
}

async fn start_session(bytes: Vec<u8>, name: &str, model: ModelId, backend: Option<Backend>, t0: f64, generation: u64) -> Result<(), String> {
    let superseded = || WORKER.with_borrow(|w| w.generation != generation);
    if superseded() {
        return Ok(());
    }
    let device::Chosen { device, name: backend_name, adapter, fallback } = device::choose(backend, |m| report_device_lost(format!("the GPU device was lost ({m})"))).await;
    helpers::forget();
    let loaded = app::load(&bytes, &device).map_err(|e| e.to_string())?;
    drop(bytes);
    if superseded() {
        return Ok(()); // another model was chosen while this one loaded
    }
    let mut session = loaded.into_session();
    session.model_name = name.to_string();
    let (n_layers, n_heads) = (session.n_layers(), session.n_heads());
    let formats = app::prompt::format_choices(&session.tok);
    let start = WORKER.with_borrow_mut(|w| {
        w.session = Some(session);
        w.backend = backend_name;
        w.model = model;
        let start = !w.busy && w.pending.is_some();
        w.busy |= start;
        start
    });
    let adapter = match helpers::planned() {
        _ if backend_name != "cpu" => adapter,
        0 => format!("{adapter}; one thread"),
        n => format!("{adapter}; {} threads: this worker and {n} helper worker{} (started after the first picture)", n + 1, if n == 1 { "" } else { "s" }),
    };
    post(&Reply::Ready { backend: backend_name, adapter, load_ms: now_ms() - t0, n_layers, n_heads, model: name.to_string(), model_id: model, formats, fallback });
    if start {
        run_pending().await;
    }
    Ok(())
}

/// Both catalogue models on `prompt`: the session's own model reuses the session; the other is
/// loaded on the same device for the comparison and dropped after it.
async fn compare_models(prompt: String, eps: f32, projector: bool) {
    let style = if projector { Style::PROJECTOR } else { Style::default() };
    let cached = WORKER.with_borrow(|w| w.compared.as_ref().filter(|(p, e, _)| *p == prompt && *e == eps).map(|(_, _, c)| c.clone()));
    let result = match cached {
        Some(c) => Ok(c),
        None => {
            // the other model is loaded for a moment: its rows are not sent to the helpers
            helpers::pause(true);
            let c = compute_comparison(&prompt, eps).await;
            helpers::pause(false);
            c
        }
    };
    match result {
        Ok(c) => {
            let figures = app::figures::compare(&c, &style);
            post(&Reply::Compared { prompt: prompt.clone(), eps, claim: c.claim, findings: c.findings.clone(), figures });
            WORKER.with_borrow_mut(|w| w.compared = Some((prompt, eps, c)));
        }
        Err(e) => post_error(None, format!("the QK-norm comparison failed: {e}"), false),
    }
    kick_pending();
}

async fn compute_comparison(prompt: &str, eps: f32) -> Result<Comparison, String> {
    let rule = SinkRule::new(eps);
    let mut sides = Vec::with_capacity(2);
    for entry in &CATALOGUE {
        let Some((session, generation)) = take_session() else {
            return Err("the model is busy or not loaded yet; try again".into());
        };
        let here = WORKER.with_borrow(|w| w.model) == entry.id;
        let device = session.engine.model.device().clone();
        let result = if here {
            app::prompt_sinks(&session.tok, &session.engine, entry.name, prompt, rule).await
        } else {
            post(&Reply::CompareProgress { text: format!("Loading {} for the comparison ({} MB)\u{2026}", entry.name, entry.bytes / 1_000_000) });
            let other = async {
                let bytes = fetch::fetch_cached(entry.url, |loaded, total, _| {
                    post(&Reply::CompareProgress { text: format!("Loading {} for the comparison: {:.0} / {:.0} MB", entry.name, loaded / 1e6, total / 1e6) })
                })
                .await?;
                let loaded = app::load(&bytes, &device).map_err(|e| e.to_string())?;
                drop(bytes);
                post(&Reply::CompareProgress { text: format!("Running {}\u{2026}", entry.name) });
                app::prompt_sinks(&loaded.tok, &loaded.engine, entry.name, prompt, rule).await
            };
            other.await
        };
        return_session(session, generation);
        sides.push(result?);
    }
    let b = sides.pop().ok_or("no second model")?;
    let a = sides.pop().ok_or("no first model")?;
    Ok(compare(a, b))
}

/// The kernel-check test hook: this build's CPU kernels against the portable ones, and on WebGPU the
/// device's dense and attention kernels against the CPU's.
async fn kernel_check() {
    #[allow(unused_mut)]
    let (mut cases, mut failures) = crate::quant::self_check();
    #[cfg(target_feature = "simd128")]
    {
        cases += 1;
        failures.extend(crate::vmath::wasm::self_check());
    }
    let gpu = WORKER.with_borrow(|w| w.session.as_ref().filter(|_| w.backend == "webgpu").map(|s| s.engine.model.device().clone()));
    let mut device_cases = 0;
    if let Some(device) = gpu {
        let (n, f) = crate::weights::device_check(&device).await;
        (device_cases, cases) = (n, cases + n);
        failures.extend(f);
    }
    let (helpers, helper_parts) = helpers::stats();
    post(&Reply::KernelCheck { cases, failures, relaxed_simd: cfg!(target_feature = "relaxed-simd"), helpers, helper_parts, device_cases });
}

/// Batches trained between two pictures of the Lab.
const LAB_BATCHES_PER_FRAME: usize = 8;

fn lab_take() -> Result<Lab, String> {
    WORKER.with_borrow_mut(|w| match w.lab.take() {
        Some(l) => Ok(l),
        None => Lab::from_checkpoint().map_err(|e| e.to_string()),
    })
}

/// Post the Lab's current picture.
async fn lab_post() {
    let mut lab = match lab_take() {
        Ok(l) => l,
        Err(e) => return post_error(None, e, false),
    };
    let style = WORKER.with_borrow(|w| w.lab_style);
    lab.running = WORKER.with_borrow(|w| w.lab_running && w.lab_loop);
    let frame = lab.frame(&style);
    WORKER.with_borrow_mut(|w| {
        if w.lab.is_none() {
            w.lab = Some(lab);
        }
    });
    post_with_bitmaps("lab", &frame, &[], &[]);
}

/// Train while the Lab is running, posting a picture every few batches and yielding between so
/// that Pause, Reset (and model updates) are seen.
async fn lab_loop() {
    loop {
        yield_now().await;
        if !WORKER.with_borrow(|w| w.lab_running) {
            break;
        }
        let Ok(mut lab) = lab_take() else { break };
        if lab.trainer.done() {
            WORKER.with_borrow_mut(|w| w.lab = Some(lab));
            break;
        }
        for _ in 0..LAB_BATCHES_PER_FRAME {
            if lab.trainer.done() {
                break;
            }
            lab.trainer.step();
        }
        lab.running = !lab.trainer.done();
        let style = WORKER.with_borrow(|w| w.lab_style);
        let frame = lab.frame(&style);
        // A reset that arrived meanwhile would have put a fresh Lab in place, and it would win over
        // this run (nothing awaits between the take and here today; the guard keeps it so).
        let reset = WORKER.with_borrow_mut(|w| {
            if w.lab.is_none() {
                w.lab = Some(lab);
                false
            } else {
                true
            }
        });
        if !reset {
            post_with_bitmaps("lab", &frame, &[], &[]);
        }
    }
    WORKER.with_borrow_mut(|w| {
        w.lab_loop = false;
        w.lab_running = false;
    });
    lab_post().await;
}

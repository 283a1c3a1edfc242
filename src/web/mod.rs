//! Layer 6 (wasm only): the Web Worker that runs the model, and its message protocol.
//!
//! The page (www/app.js) sends JSON requests; the worker answers with JSON plus transferable
//! pixel buffers. Everything heavy happens here, off the page's thread:
//! * `init`: fetch the model with progress (kept in Cache Storage for the next visit), pick the
//!   backend (WebGPU when an adapter exists and not overridden, else the CPU), build the session;
//! * `decode`: turn a URL fragment into a view state (with notices for malformed links);
//! * `update`: compute a frame; requests that arrive while one is computed replace each other, so
//!   only the newest is computed next (stale ones are never computed);
//!
//! No panic is allowed to cross into JavaScript silently: a panic hook reports it as a `fatal`
//! message (the page then restarts the worker, on the CPU if the GPU was lost).

mod fetch;

use std::cell::RefCell;

use js_sys::{Array, Float32Array, Object, Reflect, Uint8ClampedArray};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use crate::app::draw::Bitmap;
use crate::app::lab::Lab;
use crate::app::session::{Frame, Session};
use crate::app::state::{Backend, ViewState};
use crate::app;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Request {
    Init { model_url: String, backend: Option<Backend> },
    Decode { fragment: String },
    Update { seq: u64, state: ViewState },
    /// Test hook: destroy the GPU device, as a driver reset or a lost GPU would.
    LoseDevice,
    /// The Lab: show the current state (the pre-trained checkpoint at first).
    LabShow,
    /// Train (from a fresh initialisation with `seed` if the checkpoint is shown).
    LabStart { seed: u64 },
    LabPause,
    /// A fresh random initialisation with `seed`, not yet trained.
    LabReset { seed: u64 },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Reply<'a> {
    Progress { loaded: f64, total: f64, cached: bool },
    Ready { backend: &'a str, adapter: String, load_ms: f64, n_layers: usize, n_heads: usize, fallback: Option<String> },
    Decoded { state: ViewState, notices: Vec<String> },
    Error { seq: Option<u64>, message: String, retry: bool },
}

struct Worker {
    session: Option<Session>,
    backend: &'static str,
    #[cfg(any(feature = "wgpu", target_arch = "wasm32"))]
    gpu: Option<burn::tensor::wgpu::WgpuSetup>,
    /// The newest update not yet computed.
    pending: Option<(u64, ViewState)>,
    busy: bool,
    lab: Option<Lab>,
    /// Training is wanted (Start pressed, not paused or reset since).
    lab_running: bool,
    /// The training loop is scheduled (it holds the Lab while it computes).
    lab_loop: bool,
}

thread_local! {
    static WORKER: RefCell<Worker> = RefCell::new(Worker {
        session: None,
        backend: "cpu",
        #[cfg(any(feature = "wgpu", target_arch = "wasm32"))]
        gpu: None,
        pending: None,
        busy: false,
        lab: None,
        lab_running: false,
        lab_loop: false,
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

fn post_json<T: Serialize>(value: &T) {
    match serde_json::to_string(value) {
        Ok(json) => {
            let msg = Object::new();
            let _ = Reflect::set(&msg, &"json".into(), &json.into());
            let _ = scope().post_message(&msg);
        }
        Err(e) => web_sys::console::error_1(&format!("cannot encode a reply: {e}").into()),
    }
}

fn post_error(seq: Option<u64>, message: String, retry: bool) {
    post_json(&Reply::Error { seq, message, retry });
}

/// Send a reply with bitmaps: JSON, the pixels as transferable buffers, and optional values.
fn post_with_bitmaps<T: Serialize>(kind: &'static str, key: &'static str, value: &T, bitmaps: &[(String, Bitmap)], heat: &[f32], seq: Option<u64>) {
    let names: Vec<(&str, usize, usize)> = bitmaps.iter().map(|(n, b)| (n.as_str(), b.width, b.height)).collect();
    let mut doc = serde_json::json!({"type": kind, "bitmaps": names});
    match serde_json::to_value(value) {
        Ok(v) => doc[key] = v,
        Err(e) => return post_error(seq, format!("cannot encode a {kind}: {e}"), false),
    }
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
    let _ = Reflect::set(&msg, &"json".into(), &doc.to_string().into());
    let _ = Reflect::set(&msg, &"pixels".into(), &pixels);
    let _ = Reflect::set(&msg, &"heat".into(), &values);
    if let Err(e) = scope().post_message_with_transfer(&msg, &transfer) {
        web_sys::console::error_1(&e);
    }
}

fn post_frame(frame: &Frame) {
    post_with_bitmaps("frame", "frame", frame, &frame.bitmaps, &frame.heat_values, Some(frame.seq));
}

/// Entry point of the worker binary.
pub fn start() {
    if !js_sys::global().is_instance_of::<DedicatedWorkerGlobalScope>() {
        web_sys::console::error_1(&"sinkscope: this wasm runs only as the page's Web Worker".into());
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let message = format!("internal error: {info}");
        web_sys::console::error_1(&message.clone().into());
        let msg = Object::new();
        let json = serde_json::json!({"type": "fatal", "message": message}).to_string();
        let _ = Reflect::set(&msg, &"json".into(), &json.into());
        let _ = scope().post_message(&msg);
    }));
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
        let Some(text) = ev.data().as_string() else {
            return post_error(None, "the worker received a message that is not text".into(), false);
        };
        match serde_json::from_str::<Request>(&text) {
            Ok(req) => handle(req),
            Err(e) => post_error(None, format!("the worker received a malformed request: {e}"), false),
        }
    });
    scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    post_json(&serde_json::json!({"type": "alive"}));
}

fn handle(req: Request) {
    match req {
        Request::Init { model_url, backend } => wasm_bindgen_futures::spawn_local(init(model_url, backend)),
        Request::Decode { fragment } => {
            let (state, notices) = ViewState::from_fragment(&fragment);
            post_json(&Reply::Decoded { state, notices });
        }
        Request::Update { seq, state } => {
            let start = WORKER.with_borrow_mut(|w| {
                w.pending = Some((seq, state));
                let start = !w.busy && w.session.is_some();
                if start {
                    w.busy = true;
                }
                start
            });
            if start {
                wasm_bindgen_futures::spawn_local(run_pending());
            }
        }
        Request::LabShow => {
            if !WORKER.with_borrow(|w| w.lab_loop) {
                wasm_bindgen_futures::spawn_local(lab_post());
            }
        }
        Request::LabStart { seed } => {
            let start = WORKER.with_borrow_mut(|w| {
                if !w.lab_loop {
                    let fresh = match &w.lab {
                        None => true,
                        Some(l) => l.source == "checkpoint" || l.trainer.done(),
                    };
                    if fresh {
                        w.lab = Some(Lab::fresh(seed));
                    }
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
        Request::LabPause => {
            let idle = WORKER.with_borrow_mut(|w| {
                w.lab_running = false;
                !w.lab_loop
            });
            if idle {
                wasm_bindgen_futures::spawn_local(lab_post());
            }
        }
        Request::LabReset { seed } => {
            let idle = WORKER.with_borrow_mut(|w| {
                w.lab_running = false;
                w.lab = Some(Lab::fresh(seed));
                !w.lab_loop
            });
            if idle {
                wasm_bindgen_futures::spawn_local(lab_post());
            }
        }
        Request::LoseDevice => {
            #[cfg(any(feature = "wgpu", target_arch = "wasm32"))]
            WORKER.with_borrow(|w| {
                if let Some(setup) = &w.gpu {
                    setup.device.destroy();
                }
            });
        }
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
        let next = WORKER.with_borrow_mut(|w| w.pending.take());
        let Some((seq, state)) = next else { break };
        // The session is taken out while it computes, so no RefCell borrow spans an await.
        let Some(mut session) = WORKER.with_borrow_mut(|w| w.session.take()) else { break };
        let result = session.update(seq, &state, &now_ms).await;
        WORKER.with_borrow_mut(|w| w.session = Some(session));
        match result {
            Ok(frame) => post_frame(&frame),
            // On the GPU a device error means the device is gone: the page restarts on the CPU.
            Err(crate::model::ModelError::Device(e)) if WORKER.with_borrow(|w| w.backend) == "webgpu" => {
                post_json(&serde_json::json!({"type": "fatal", "message": format!("the GPU device was lost ({e})")}));
                break;
            }
            Err(e) => post_error(Some(seq), e.to_string(), true),
        }
    }
    WORKER.with_borrow_mut(|w| w.busy = false);
}

/// Pick the device: WebGPU unless the CPU is asked for or no adapter exists.
async fn choose_device(backend: Option<Backend>) -> (burn::prelude::Device, &'static str, String, Option<String>) {
    #[cfg(any(feature = "wgpu", target_arch = "wasm32"))]
    if backend != Some(Backend::Cpu) {
        match burn::prelude::Device::wgpu_options().init_with_setup_async().await {
            Ok((device, setup)) => {
                let info = setup.adapter.get_info();
                let adapter = format!("{} ({:?})", info.name, info.backend);
                WORKER.with_borrow_mut(|w| w.gpu = Some(setup));
                return (device, "webgpu", adapter, None);
            }
            Err(e) => {
                let detail = e.to_string();
                let reason = if detail.contains("no adapters") || detail.contains("No suitable graphics adapter") {
                    "this browser offers no WebGPU adapter".to_string()
                } else {
                    detail.chars().take(120).collect()
                };
                web_sys::console::warn_1(&format!("WebGPU initialisation failed: {detail}").into());
                let why = format!("WebGPU is not available here ({reason}); running on the CPU.");
                return (burn::prelude::Device::flex(), "cpu", "wasm CPU (burn flex)".into(), Some(why));
            }
        }
    }
    let _ = backend;
    (burn::prelude::Device::flex(), "cpu", "wasm CPU (burn flex)".into(), None)
}

async fn init(model_url: String, backend: Option<Backend>) {
    let t0 = now_ms();
    let bytes = match fetch::fetch_cached(&model_url, |loaded, total, cached| post_json(&Reply::Progress { loaded, total, cached })).await {
        Ok(b) => b,
        Err(e) => return post_error(None, e, true),
    };
    let (device, name, adapter, fallback) = choose_device(backend).await;
    let (tok, engine) = match app::load(&bytes, &device) {
        Ok(x) => x,
        Err(e) => {
            // A bad file must not stay in the cache, or every visit would fail the same way.
            fetch::forget(&model_url).await;
            return post_error(None, e.to_string(), true);
        }
    };
    drop(bytes);
    let session = Session::new(tok, engine);
    let (n_layers, n_heads) = (session.n_layers(), session.n_heads());
    let start = WORKER.with_borrow_mut(|w| {
        w.session = Some(session);
        w.backend = name;
        let start = !w.busy && w.pending.is_some();
        if start {
            w.busy = true;
        }
        start
    });
    post_json(&Reply::Ready { backend: name, adapter, load_ms: now_ms() - t0, n_layers, n_heads, fallback });
    if start {
        run_pending().await;
    }
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
    lab.running = WORKER.with_borrow(|w| w.lab_running && w.lab_loop);
    let frame = lab.frame(&burn::prelude::Device::flex()).await;
    WORKER.with_borrow_mut(|w| {
        if w.lab.is_none() {
            w.lab = Some(lab);
        }
    });
    post_with_bitmaps("lab", "lab", &frame, &frame.bitmaps, &[], None);
}

/// Train while the Lab is running, posting a picture every few batches and yielding between so
/// that Pause, Reset (and model updates) are seen.
async fn lab_loop() {
    let device = burn::prelude::Device::flex();
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
            lab.trainer.step(&device).await;
        }
        lab.running = !lab.trainer.done();
        let frame = lab.frame(&device).await;
        // A reset that arrived meanwhile put a fresh Lab in place: it wins over this run.
        let reset = WORKER.with_borrow_mut(|w| {
            if w.lab.is_none() {
                w.lab = Some(lab);
                false
            } else {
                true
            }
        });
        if !reset {
            post_with_bitmaps("lab", "lab", &frame, &frame.bitmaps, &[], None);
        }
    }
    WORKER.with_borrow_mut(|w| {
        w.lab_loop = false;
        w.lab_running = false;
    });
    lab_post().await;
}

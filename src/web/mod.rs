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
}

thread_local! {
    static WORKER: RefCell<Worker> = RefCell::new(Worker {
        session: None,
        backend: "cpu",
        #[cfg(any(feature = "wgpu", target_arch = "wasm32"))]
        gpu: None,
        pending: None,
        busy: false,
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

/// Send a frame: JSON, the bitmaps as transferable pixel buffers, and the heatmap values.
fn post_frame(frame: &Frame) {
    #[derive(Serialize)]
    struct Envelope<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        frame: &'a Frame,
        bitmaps: Vec<(&'a str, usize, usize)>,
    }
    let env = Envelope { kind: "frame", frame, bitmaps: frame.bitmaps.iter().map(|(n, b)| (n.as_str(), b.width, b.height)).collect() };
    let json = match serde_json::to_string(&env) {
        Ok(j) => j,
        Err(e) => return post_error(Some(frame.seq), format!("cannot encode a frame: {e}"), false),
    };
    let msg = Object::new();
    let transfer = Array::new();
    let pixels = Array::new();
    for (_, b) in &frame.bitmaps {
        let arr = Uint8ClampedArray::new_with_length(b.rgba.len() as u32);
        arr.copy_from(&b.rgba);
        transfer.push(&arr.buffer());
        pixels.push(&arr);
    }
    let heat = Float32Array::new_with_length(frame.heat_values.len() as u32);
    heat.copy_from(&frame.heat_values);
    transfer.push(&heat.buffer());
    let _ = Reflect::set(&msg, &"json".into(), &json.into());
    let _ = Reflect::set(&msg, &"pixels".into(), &pixels);
    let _ = Reflect::set(&msg, &"heat".into(), &heat);
    if let Err(e) = scope().post_message_with_transfer(&msg, &transfer) {
        web_sys::console::error_1(&e);
    }
}

/// Entry point of the worker binary.
pub fn start() {
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
                let why = format!("WebGPU is not available here ({e}); running on the CPU.");
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

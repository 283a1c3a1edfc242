//! Helper workers for the CPU worker's large products ([`crate::offload`]): more cores without wasm
//! threads.
//!
//! Wasm threads need the standard library rebuilt with atomics, which stable Rust cannot do (see
//! the README). What stable Rust can do: start more Web Workers running the same wasm, each with
//! its own memory, and hand them work through a `SharedArrayBuffer` (the page must be
//! cross-origin isolated: `scripts/serve.py` sends COOP and COEP). The model worker splits each
//! large block product by output rows ([`crate::offload`]): it copies x into a helper's buffer,
//! wakes it with `Atomics.notify`, computes its own rows, then waits (`Atomics.wait`, allowed in a
//! worker) for the helper's rows. A helper gets the bytes of its rows of a weight once and keeps
//! them by the weight's id, so later products copy only x and the output.
//!
//! Each helper's buffer: a header of 16 `i32` words, then the data — the weight rows (only when
//! the helper does not hold them yet) and x, and afterwards the output in their place.
//! The header's state word is the handshake: the model worker writes the request and sets it to
//! REQUEST; the helper computes and sets DONE or FAILED (its panic hook too). A helper that does not
//! answer within [`TIMEOUT_MS`] is not used again; its part is computed by the model worker.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use js_sys::{Atomics, Float32Array, Int32Array, SharedArrayBuffer, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::MessageEvent;

use crate::offload::Helpers;
use crate::quant::{self, QType, TILED_FROM_ROWS};

/// The `name` a helper worker is started with (the wasm's entry point checks it).
pub const NAME: &str = "sinkscope-helper";
/// At most this many helpers (besides the model worker).
const MAX_HELPERS: usize = 3;

const HEADER_WORDS: u32 = 16;
const HEADER_BYTES: usize = HEADER_WORDS as usize * 4;
/// Each helper's shared buffer. A product whose weight rows and x, or whose output, do not fit is
/// computed by the model worker alone (at T = 64 with one helper, SmolLM2's largest first request
/// is 0.55 MB of rows and 0.4 MB of x; x and output fit for prompts of ~2,000 tokens).
const BUFFER_BYTES: usize = 16 << 20;
/// How long the model worker waits for a part before computing it itself (a helper that trapped
/// or was killed for memory never answers; a real part takes milliseconds).
const TIMEOUT_MS: f64 = 10_000.0;
/// Both sides poll the state word this long before sleeping in `Atomics.wait`: within a forward the
/// next request (or the answer) usually comes sooner than a sleeping worker wakes up.
const SPIN_MS: f64 = 0.2;

// The header's words.
const STATE: u32 = 0;
const READY: u32 = 1;
const OP: u32 = 2;
const TY: u32 = 3;
const T: u32 = 4;
const K: u32 = 5;
const ROWS: u32 = 6;
const WEIGHT_BYTES: u32 = 7;
const ID_LO: u32 = 8;
const ID_HI: u32 = 9;
/// Written by the helper after each request: its wasm memory, in 64 KiB pages.
const MEM_PAGES: u32 = 10;

// The state word's values.
const REQUEST: i32 = 1;
const DONE: i32 = 2;
const FAILED: i32 = 3;

// Operations.
const OP_PRODUCT: i32 = 1;
const OP_FORGET: i32 = 2;
/// Test hook: panic.
const OP_PANIC: i32 = 3;

/// One helper, seen from the model worker.
struct Helper {
    /// Kept alive with the pool (dropping the handle does not stop a worker; terminating does).
    worker: web_sys::Worker,
    /// Answers the helper's first message with the shared buffer.
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(web_sys::Event)>,
    sab: SharedArrayBuffer,
    ctrl: Int32Array,
    /// The weights (ids) whose rows this helper holds.
    holds: RefCell<HashSet<u64>>,
    ready: Cell<bool>,
    dead: Cell<bool>,
}

impl Helper {
    fn start(script: &str) -> Result<Helper, String> {
        let opts = web_sys::WorkerOptions::new();
        opts.set_type(web_sys::WorkerType::Module);
        opts.set_name(NAME);
        let worker = web_sys::Worker::new_with_options(script, &opts).map_err(|e| format!("cannot start a helper worker: {e:?}"))?;
        let sab = SharedArrayBuffer::new(BUFFER_BYTES as u32);
        // The helper asks for its buffer once its wasm runs (a message sent before it listens
        // could be lost while its module is still loading).
        let (w, b) = (worker.clone(), sab.clone());
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |_ev: MessageEvent| {
            if let Err(e) = w.post_message(&b) {
                web_sys::console::warn_1(&format!("sinkscope: cannot reach a helper worker: {e:?}").into());
            }
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        // A helper's uncaught error (a trap: its part is then computed here) stops at this
        // worker; it would otherwise reach the page as the model worker's own error.
        let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(|ev: web_sys::Event| ev.prevent_default());
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let ctrl = Int32Array::new_with_byte_offset_and_length(&sab, 0, HEADER_WORDS);
        Ok(Helper { worker, _on_message: on_message, _on_error: on_error, sab, ctrl, holds: RefCell::new(HashSet::new()), ready: Cell::new(false), dead: Cell::new(false) })
    }

    /// Not used again (it failed or did not answer); its memory goes with it.
    fn retire(&self) {
        self.dead.set(true);
        self.worker.terminate();
    }

    fn is_ready(&self) -> bool {
        if !self.ready.get() && Atomics::load(&self.ctrl, READY).unwrap_or(0) == 1 {
            self.ready.set(true);
        }
        self.ready.get() && !self.dead.get()
    }

    /// Publish the request written into the buffer and wake the helper.
    fn wake(&self) {
        let _ = Atomics::store(&self.ctrl, STATE, REQUEST);
        let _ = Atomics::notify(&self.ctrl, STATE);
    }

    /// Wait for the answer to the request in flight: true when DONE.
    fn wait(&self) -> bool {
        spin_while(&self.ctrl, REQUEST);
        let t0 = super::now_ms();
        loop {
            match Atomics::load(&self.ctrl, STATE) {
                Ok(DONE) => return true,
                Ok(REQUEST) => {}
                _ => break,
            }
            let left = TIMEOUT_MS - (super::now_ms() - t0);
            if left <= 0.0 {
                web_sys::console::error_1(&"sinkscope: a helper worker did not answer; computing without it".into());
                break;
            }
            let _ = Atomics::wait_with_timeout(&self.ctrl, STATE, REQUEST, left);
        }
        self.retire();
        false
    }
}

/// Views of a helper's shared buffer (both sides read and write through them).
fn bytes(sab: &SharedArrayBuffer, offset: usize, len: usize) -> Uint8Array {
    Uint8Array::new_with_byte_offset_and_length(sab, offset as u32, len as u32)
}

fn floats(sab: &SharedArrayBuffer, offset: usize, len: usize) -> Float32Array {
    Float32Array::new_with_byte_offset_and_length(sab, offset as u32, len as u32)
}

/// Whether a request fits a helper's buffer: the header, the weight rows sent (`w_bytes`, padded
/// to 4) and x [t, k] in, then [t, n_rows] out. In 64 bits: wasm32's `usize` could wrap.
fn fits(w_bytes: usize, t: usize, k: usize, n_rows: usize) -> bool {
    let (w, t, k, n, cap) = (w_bytes as u64, t as u64, k as u64, n_rows as u64, BUFFER_BYTES as u64);
    HEADER_BYTES as u64 + w + t * k * 4 <= cap && HEADER_BYTES as u64 + t * n * 4 <= cap
}

/// Poll the state word while it is `state`, for at most [`SPIN_MS`].
fn spin_while(ctrl: &Int32Array, state: i32) {
    let Some(clock) = js_sys::global().dyn_into::<web_sys::WorkerGlobalScope>().ok().and_then(|g| g.performance()) else { return };
    let t0 = clock.now();
    while Atomics::load(ctrl, STATE).unwrap_or(-1) == state && clock.now() - t0 < SPIN_MS {}
}

// --- The model worker's side: its pool, started once ----------------------------------------------

thread_local! {
    /// The helpers (started after the first picture; none in the WebGPU build).
    static POOL: RefCell<Option<Rc<Pool>>> = const { RefCell::new(None) };
    /// How many helpers the first `init` asked for (`None` inside: one per further core).
    static REQUESTED: Cell<Option<Option<usize>>> = const { Cell::new(None) };
    /// Whether the helpers were started (or found impossible).
    static DECIDED: Cell<bool> = const { Cell::new(false) };
}

fn with_pool<R>(f: impl FnOnce(&Pool) -> R) -> Option<R> {
    POOL.with_borrow(|p| p.as_deref().map(f))
}

/// Remember the first `init`'s request for helpers (the page's test hook; `None`: one per further
/// core).
pub fn request(requested: Option<usize>) {
    if REQUESTED.get().is_none() {
        REQUESTED.set(Some(requested));
    }
}

/// How many helpers run, or will run after the first picture: none in the WebGPU build or where
/// the page is not cross-origin isolated.
pub fn planned() -> usize {
    match with_pool(|p| p.helpers.len()) {
        Some(n) => n,
        None if cfg!(feature = "wgpu") || DECIDED.get() => 0,
        None => wanted(REQUESTED.get().flatten()),
    }
}

/// Start the helpers, once, after the first picture (loading and compiling their wasm would
/// otherwise compete with it for the cores), and hand them to [`crate::offload`]. Without them
/// every product runs on the model worker alone.
pub fn start_once() {
    if cfg!(feature = "wgpu") || DECIDED.replace(true) {
        return;
    }
    let n = wanted(REQUESTED.get().flatten());
    if n == 0 {
        return;
    }
    match Pool::start(n) {
        Ok(pool) => {
            let pool = Rc::new(pool);
            crate::offload::install(Box::new(pool.clone()));
            POOL.with_borrow_mut(|p| *p = Some(pool));
        }
        Err(e) => web_sys::console::warn_1(&format!("sinkscope: running on one thread: {e}").into()),
    }
}

/// Let the helpers drop every weight they hold (the model changed).
pub fn forget() {
    with_pool(Pool::forget);
}

/// Send no parts while `paused` (a model loaded only for a moment: its rows would stay in the
/// helpers' memories, which never shrink).
pub fn pause(paused: bool) {
    with_pool(|p| p.paused.set(paused));
}

/// (helpers that answer, parts they computed so far), for the kernel-check test hook.
pub fn stats() -> (usize, usize) {
    with_pool(|p| (p.helpers.iter().filter(|h| h.is_ready()).count(), p.parts_done.get())).unwrap_or((0, 0))
}

/// The helpers' memory: their wasm memories (as of their last answer) and shared buffers.
pub fn memory_bytes() -> Option<f64> {
    with_pool(|p| p.helpers.iter().map(|h| Atomics::load(&h.ctrl, MEM_PAGES).unwrap_or(0).max(0) as f64 * 65536.0 + BUFFER_BYTES as f64).sum())
}

/// Test hook: make helper 0 panic, as a bug would (its parts are then computed here).
pub fn crash_one() {
    with_pool(|p| {
        if let Some(h) = p.helpers.first().filter(|h| h.is_ready() && Atomics::load(&h.ctrl, STATE).unwrap_or(0) != REQUEST) {
            let _ = Atomics::store(&h.ctrl, OP, OP_PANIC);
            h.wake();
            h.wait();
        }
    });
}

/// The model worker's helpers.
struct Pool {
    helpers: Vec<Helper>,
    /// Parts the helpers computed (for the kernel-check test hook).
    parts_done: Cell<usize>,
    /// No parts are sent (see [`pause`]).
    paused: Cell<bool>,
}

/// Whether this worker may share memory with others (the page is cross-origin isolated).
fn isolated() -> bool {
    js_sys::Reflect::get(&js_sys::global(), &"crossOriginIsolated".into()).map(|v| v.as_bool() == Some(true)).unwrap_or(false)
}

/// How many helpers to start: `requested` (the page's test hook), else one per further core, at
/// most [`MAX_HELPERS`]; none where memory cannot be shared.
fn wanted(requested: Option<usize>) -> usize {
    if !isolated() {
        return 0;
    }
    let cores = js_sys::global().dyn_into::<web_sys::WorkerGlobalScope>().map(|g| g.navigator().hardware_concurrency()).unwrap_or(1.0);
    let auto = (cores as usize).saturating_sub(1);
    requested.unwrap_or(auto).min(MAX_HELPERS)
}

impl Pool {
    /// Start up to `n` helpers running this worker's own script (so the same build of the wasm);
    /// those that could be started (an error if none).
    fn start(n: usize) -> Result<Pool, String> {
        let global: web_sys::WorkerGlobalScope = js_sys::global().dyn_into().map_err(|_| "not running in a worker".to_string())?;
        let script = global.location().href();
        let mut helpers = Vec::with_capacity(n);
        for _ in 0..n {
            match Helper::start(&script) {
                Ok(h) => helpers.push(h),
                Err(e) if helpers.is_empty() => return Err(e),
                Err(e) => {
                    web_sys::console::warn_1(&format!("sinkscope: {e}; running with {} helper(s)", helpers.len()).into());
                    break;
                }
            }
        }
        Ok(Pool { helpers, parts_done: Cell::new(0), paused: Cell::new(false) })
    }

    fn forget(&self) {
        for h in &self.helpers {
            if !h.is_ready() || Atomics::load(&h.ctrl, STATE).unwrap_or(0) == REQUEST {
                continue;
            }
            let _ = Atomics::store(&h.ctrl, OP, OP_FORGET);
            h.wake();
            if h.wait() {
                h.holds.borrow_mut().clear();
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for h in &self.helpers {
            h.worker.terminate();
        }
    }
}

impl Helpers for Pool {
    fn count(&self) -> usize {
        self.helpers.len()
    }

    fn send(&self, h: usize, id: u64, ty: QType, x: &[f32], t: usize, k: usize, rows: &[u8], n_rows: usize) -> bool {
        let Some(helper) = self.helpers.get(h).filter(|h| h.is_ready() && !self.paused.get()) else { return false };
        // (a request still in flight: the model worker trapped between a send and its receive)
        if Atomics::load(&helper.ctrl, STATE).unwrap_or(0) == REQUEST {
            return false;
        }
        let held = helper.holds.borrow().contains(&id);
        let w_bytes = if held { 0 } else { rows.len().div_ceil(4) * 4 };
        if !fits(w_bytes, t, k, n_rows) || x.len() < t * k {
            return false;
        }
        if !held {
            bytes(&helper.sab, HEADER_BYTES, rows.len()).copy_from(rows);
        }
        floats(&helper.sab, HEADER_BYTES + w_bytes, t * k).copy_from(&x[..t * k]);
        let c = &helper.ctrl;
        for (word, value) in [(OP, OP_PRODUCT), (TY, ty.code() as i32), (T, t as i32), (K, k as i32), (ROWS, n_rows as i32), (WEIGHT_BYTES, if held { 0 } else { rows.len() as i32 }), (ID_LO, id as u32 as i32), (ID_HI, (id >> 32) as u32 as i32)] {
            let _ = Atomics::store(c, word, value);
        }
        helper.wake();
        // it holds the rows once it has read them; if it fails, it is not used again
        helper.holds.borrow_mut().insert(id);
        true
    }

    fn receive(&self, h: usize, out: &mut [f32]) -> bool {
        let Some(helper) = self.helpers.get(h) else { return false };
        if !helper.wait() {
            return false;
        }
        floats(&helper.sab, HEADER_BYTES, out.len()).copy_to(out);
        self.parts_done.set(self.parts_done.get() + 1);
        true
    }
}

thread_local! {
    /// The helper's own view of its header (for its panic hook).
    static CTRL: RefCell<Option<Int32Array>> = const { RefCell::new(None) };
}

/// Entry point of a helper worker: ask for the shared buffer, then serve requests forever
/// (blocking in `Atomics.wait`; the model worker terminates it).
pub fn serve() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&format!("sinkscope helper: internal error: {info}").into());
        fail_request();
    }));
    // A trap that is not a panic (memory, stack) fails the request too; the model worker stops
    // the error there.
    let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(|_ev: web_sys::Event| fail_request());
    let _ = super::scope().add_event_listener_with_callback("error", on_error.as_ref().unchecked_ref());
    on_error.forget();
    let on_message = Closure::once(move |ev: MessageEvent| match ev.data().dyn_into::<SharedArrayBuffer>() {
        Ok(sab) => run(sab),
        Err(_) => web_sys::console::error_1(&"sinkscope helper: expected a SharedArrayBuffer".into()),
    });
    super::scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    let _ = super::scope().post_message(&"ready for the buffer".into());
}

/// The request in flight failed (the helper's panic hook and error handler).
fn fail_request() {
    CTRL.with_borrow(|c| {
        if let Some(c) = c.as_ref().filter(|c| Atomics::load(*c, STATE).unwrap_or(0) == REQUEST) {
            let _ = Atomics::store(c, STATE, FAILED);
            let _ = Atomics::notify(c, STATE);
        }
    });
}

fn run(sab: SharedArrayBuffer) {
    let ctrl = Int32Array::new_with_byte_offset_and_length(&sab, 0, HEADER_WORDS);
    CTRL.with_borrow_mut(|c| *c = Some(ctrl.clone()));
    let mut weights: HashMap<u64, Vec<u8>> = HashMap::new();
    let (mut x, mut out) = (Vec::new(), Vec::new());
    let _ = Atomics::store(&ctrl, READY, 1);
    loop {
        let state = Atomics::load(&ctrl, STATE).unwrap_or(0);
        if state != REQUEST {
            spin_while(&ctrl, state);
            let _ = Atomics::wait(&ctrl, STATE, state);
            continue;
        }
        let ok = match Atomics::load(&ctrl, OP).unwrap_or(0) {
            OP_PRODUCT => product(&sab, &ctrl, &mut weights, &mut x, &mut out),
            OP_FORGET => {
                weights = HashMap::new();
                true
            }
            OP_PANIC => panic!("a deliberate panic (test hook)"),
            _ => false,
        };
        let pages = super::wasm_memory_bytes() / 65536.0;
        let _ = Atomics::store(&ctrl, MEM_PAGES, if pages.is_finite() { pages as i32 } else { 0 });
        let _ = Atomics::store(&ctrl, STATE, if ok { DONE } else { FAILED });
        let _ = Atomics::notify(&ctrl, STATE);
    }
}

/// One request: read it from the buffer, compute, write the output where the request was.
fn product(sab: &SharedArrayBuffer, ctrl: &Int32Array, weights: &mut HashMap<u64, Vec<u8>>, x: &mut Vec<f32>, out: &mut Vec<f32>) -> bool {
    let word = |i| Atomics::load(ctrl, i).unwrap_or(-1);
    let (t, k, n_rows, w_len) = (word(T), word(K), word(ROWS), word(WEIGHT_BYTES));
    let id = (word(ID_LO) as u32 as u64) | ((word(ID_HI) as u32 as u64) << 32);
    let Some(ty) = QType::from_code(word(TY) as u32) else { return false };
    if t < 0 || k < 0 || n_rows < 0 || w_len < 0 {
        return false;
    }
    let (t, k, n_rows, w_len) = (t as usize, k as usize, n_rows as usize, w_len as usize);
    let w_bytes = w_len.div_ceil(4) * 4;
    // The model worker checked these; a helper trusts no one's arithmetic with its memory (and
    // never gets fewer than the tiled kernel's rows).
    if t < TILED_FROM_ROWS || !k.is_multiple_of(ty.block().0) || !fits(w_bytes, t, k, n_rows) {
        return false;
    }
    if w_len > 0 {
        let mut rows = vec![0u8; w_len];
        bytes(sab, HEADER_BYTES, w_len).copy_to(&mut rows);
        weights.insert(id, rows);
    }
    let Some(rows) = weights.get(&id).filter(|r| r.len() as u64 == n_rows as u64 * ty.row_bytes(k) as u64) else { return false };
    x.resize(t * k, 0.0);
    floats(sab, HEADER_BYTES + w_bytes, t * k).copy_to(x);
    out.clear();
    out.resize(t * n_rows, 0.0);
    if quant::matmul_nt_q(x, t, k, rows, ty, n_rows, out).is_err() {
        return false;
    }
    floats(sab, HEADER_BYTES, t * n_rows).copy_from(out);
    true
}

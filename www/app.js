// sinkscope page wiring. All numerics, analysis, colours, figures (SVG from plotters), bitmaps, tour
// captions and the URL codec are computed in Rust inside the worker; this file only moves messages
// and pixels, and handles DOM events. Messages are plain objects (serde-wasm-bindgen), so a NaN in a
// frame arrives as NaN: every number shown goes through num(), which prints "–" for it.

const $ = (id) => document.getElementById(id);
// Three builds of the same worker (scripts/build-web.sh): the CPU one with relaxed SIMD (fused
// multiply-add: ~25% faster products) where the browser has it, the CPU one without, and the WebGPU one.
// A test hook (window.sinkscopePlainSimd, set before the page runs) forces the plain CPU build.
const RELAXED_SIMD = !window.sinkscopePlainSimd && relaxedSimdValidates();
const WORKERS = {
  cpu: RELAXED_SIMD ? { loader: "./sinkscope-relaxed_loader.js", name: "sinkscope-relaxed" } : { loader: "./sinkscope_loader.js", name: "sinkscope" },
  webgpu: { loader: "./sinkscope-webgpu_loader.js", name: "sinkscope-webgpu" },
};

// Whether this browser's WebAssembly has relaxed SIMD: a module of one function that uses
// i8x16.relaxed_swizzle (opcode 0xfd 0x100) validates only where it does.
function relaxedSimdValidates() {
  try {
    return WebAssembly.validate(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 15, 1, 13, 0, 65, 1, 253, 15, 65, 2, 253, 15, 253, 128, 2, 11]));
  } catch (e) {
    return false;
  }
}
// How many helper workers the CPU worker may start for its products (null: one per further core,
// where the page is cross-origin isolated). A test hook (window.sinkscopeHelpers) sets it.
const HELPERS = Number.isInteger(window.sinkscopeHelpers) ? Math.max(0, window.sinkscopeHelpers) : null;
const DEBOUNCE_MS = 250; // typing pause before re-analysing
const SLOW_GPU_MS = 8000; // a WebGPU picture slower than this offers the CPU
const VIEWS = ["heatmap", "tags", "release", "heads", "lab", "qknorm", "probe", "corpus"];
const GRID_MODES = ["alpha", "sinks", "explained"];

let worker = null;
let workerKind = null;     // "cpu" | "webgpu": which build runs
let state = null;          // the current ViewState (shape defined by Rust's app::state::ViewState)
let seq = 0;               // last update sent
let ready = false;         // model loaded in the current worker
let backend = null;        // "webgpu" | "cpu" once ready
let frame = null;          // last frame drawn
let heat = null;           // heatmap values (Float32Array, NaN = masked)
let debounce = null;
let gpuLostOnce = false;
let firstVisit = false;    // no link fragment: pick a two-sink head on the first picture
let slowTimer = null;
let labShown = false;
let dirty = false;         // the user edited the prompt or eps since the last update was sent
const figureUrls = new Map(); // container id -> blob URLs to revoke
let catalogue = [];        // the models the worker offers (name, size, licence), from its "alive"
let maxFileBytes = Infinity; // the largest model file the worker will try to load
let localFile = null;      // a GGUF file opened from this computer (kept to reload it on a backend switch)
let loadedModel = null;    // the model id the current worker runs
let compared = null;       // "prompt|eps" of the comparison on screen (or being computed)
let beforeLocal = null;   // the model (and local file) to go back to when an opened file fails
let probeShown = null;     // the probe request ("data|n|seed|eps|model") whose result is on screen
let jobRunning = null;     // "probe" | "corpus" while the worker runs one
let corpusShown = null;    // "model|eps" of the corpus statistics on screen
let probeRun = null;       // the parameters of the probe on screen (a layer change asks the worker for them)

const num = (x, digits = 2) => (typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : "–");
const pct = (x) => (typeof x === "number" && Number.isFinite(x) ? `${(100 * x).toFixed(0)}%` : "–");

function setStatus(kind, text) {
  const s = $("status");
  s.dataset.state = kind;
  s.textContent = text;
}

// Notices with the same key replace each other; an action adds a button.
function notice(text, key = text, action = null) {
  const list = $("notices");
  let li = [...list.children].find((e) => e.dataset.key === key);
  if (!li) {
    li = document.createElement("li");
    li.dataset.key = key;
    list.append(li);
  }
  const span = document.createElement("span");
  span.textContent = text;
  const parts = [span];
  if (action) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = action.label;
    b.onclick = () => { li.remove(); action.run(); };
    parts.push(b);
  }
  const x = document.createElement("button");
  x.type = "button";
  x.textContent = "×";
  x.setAttribute("aria-label", "dismiss");
  x.onclick = () => li.remove();
  parts.push(x);
  li.replaceChildren(...parts);
}

function dropNotice(key) {
  [...$("notices").children].filter((e) => e.dataset.key === key).forEach((e) => e.remove());
}

function fail(message) {
  $("failure").hidden = false;
  $("failure-text").textContent = message;
  setStatus("error", "Error");
}

function send(msg) {
  worker.postMessage(msg);
}

// Which worker a backend choice needs ("cpu", "webgpu" or null for automatic), and why the CPU one
// when WebGPU was not asked for: a hardware adapter gets the WebGPU worker; a software one (WebGPU's
// fallback flag, or SwiftShader: a CPU emulation far slower than the CPU path) is never chosen by itself.
async function workerFor(choice) {
  if (choice === "cpu" || choice === "webgpu") return { kind: choice };
  if (!navigator.gpu) return { kind: "cpu", why: "WebGPU is not available here (this browser has no WebGPU); running on the CPU." };
  let adapter = null;
  try { adapter = await navigator.gpu.requestAdapter(); } catch (e) { /* no adapter */ }
  if (!adapter) return { kind: "cpu", why: "WebGPU is not available here (this browser offers no WebGPU adapter); running on the CPU." };
  const info = adapter.info || {};
  const desc = [info.vendor, info.architecture, info.description].filter(Boolean).join(" ");
  if (adapter.isFallbackAdapter || info.isFallbackAdapter || /swiftshader/i.test(desc)) {
    return { kind: "cpu", why: `This browser offers only a software WebGPU adapter (${desc || "fallback"}), which is much slower than the CPU path; running on the CPU. Choose WebGPU in the Backend menu to use it anyway.` };
  }
  return { kind: "webgpu" };
}

let pendingWhy = null; // the reason for the CPU worker, shown once the page's notices are reset

async function startFor(choice) {
  const { kind, why } = await workerFor(choice);
  pendingWhy = why || null;
  if (why) notice(why, "backend");
  startWorker(kind);
}

// The last worker messages and starts, with times (ms since the page opened): what a failed test or
// a bug report shows of what the page went through (window.sinkscopeEvents).
const events = [];
function logEvent(what) {
  const line = `${Math.round(performance.now())} ${what}`;
  // a run of the same message (download progress) keeps its first and last times
  const last = events.length > 1 && events[events.length - 1].endsWith(` ${what}`) && events[events.length - 2].endsWith(` ${what}`);
  if (last) events[events.length - 1] = line;
  else events.push(line);
  if (events.length > 60) events.shift();
}
window.sinkscopeEvents = events;

// A restarted worker (a backend switch, the CPU after a lost GPU device, Retry) that has not said
// "alive" START_WAIT_MS after its start is started again, once, and then the page says so. Why: three
// times (twice in CI, once here, headless Chromium on SwiftShader) the CPU worker started after a lost
// GPU device never ran its script and never reported an error; the cause is in the browser and was
// not found (README: Not done). The page's first worker is not watched: on a slow connection its
// download alone may take that long. A restarted one's files are usually in the HTTP cache; where
// they are not and the link is that slow, the restart costs a second download and at worst the
// message with Retry.
const START_WAIT_MS = 15_000;
let startTimer = null;
let starts = 0;         // workers started by this page
let silentRestarts = 0; // restarts of a silent worker since the last one that came alive

function startWorker(kind = workerKind || "cpu", { again = false } = {}) {
  if (worker) worker.terminate();
  clearTimeout(startTimer);
  if (!again) silentRestarts = 0;
  logEvent(`start the ${kind} worker`);
  ready = false;
  labShown = false;
  // a run in the old worker is gone with it; its kept results too
  if (jobRunning) jobEnd(jobRunning, "Stopped: the model worker restarted.");
  probeShown = null;
  corpusShown = null;
  workerKind = kind;
  worker = new Worker(WORKERS[kind].loader, { type: "module" });
  document.body.dataset.workers = Number(document.body.dataset.workers || 0) + 1; // for tests
  const mine = worker;
  // a replaced worker's last messages (say, a second report of the same lost GPU) are not ours
  // test hook: the next N workers' messages are dropped, as if they never ran their script
  const muted = window.sinkscopeMuteWorkers > 0;
  if (muted) window.sinkscopeMuteWorkers -= 1;
  worker.onmessage = (ev) => {
    if (worker !== mine || muted) return;
    if (!mine.alive) {
      mine.alive = true;
      clearTimeout(startTimer);
      dropNotice("worker");
    }
    logEvent(`${kind} worker: ${ev.data && ev.data.type}`);
    onMessage(ev.data);
  };
  if (starts++ > 0) {
    const wait = window.sinkscopeStartWaitMs || START_WAIT_MS;
    startTimer = setTimeout(() => {
      if (worker !== mine || mine.alive) return;
      if (silentRestarts++ === 0) {
        logEvent(`the ${kind} worker is silent after ${wait} ms: start it again`);
        notice(`The model worker had not started after ${wait / 1000} s; starting it again.`, "worker");
        startWorker(kind, { again: true });
      } else {
        dropNotice("worker");
        fail(`The model worker has not started after ${(2 * wait) / 1000} s. Press Retry, or reload the page.`);
      }
    }, wait);
  }
  worker.onerror = (ev) => {
    ev.preventDefault();
    if (worker === mine) clearTimeout(startTimer); // (an error is an answer: its message stays)
    // A panic in Rust posts its own message (with its text) before the wasm traps; the trap's
    // error event can overtake it, so wait a moment for the better message.
    if (mine.fatalSeen) return;
    setTimeout(() => { if (!mine.fatalSeen && worker === mine) onFatal({ kind: "panic", message: ev.message || "the model worker stopped" }); }, 500);
  };
  showLoading("Starting the model worker…");
}

function showLoading(text) {
  $("loading").hidden = false;
  $("progress-fill").style.width = "0%"; // (not the last load's bar)
  $("progress").setAttribute("aria-valuenow", "0");
  $("progress-text").textContent = text;
  setStatus("loading", "Loading the model…");
}

let loadedChoice = undefined; // the backend choice the current model was loaded with

function initModel() {
  ready = false;
  loadedChoice = state.backend || null;
  compared = null;
  if (state.model === "local" && localFile) {
    showLoading(`Reading ${localFile.name} from this computer…`);
    localFile.arrayBuffer().then(
      (bytes) => worker.postMessage({ type: "init-file", name: localFile.name, backend: state.backend, helpers: HELPERS, bytes }, [bytes]),
      (e) => fail(`The file ${localFile.name} could not be read: ${e.message || e}`),
    );
    return;
  }
  if (state.model === "local") state.model = "smollm2";
  const entry = catalogue.find((m) => m.id === state.model);
  showLoading(entry ? `Loading ${entry.name}…` : "Loading the model…");
  send({ type: "init", model: state.model, backend: state.backend, helpers: HELPERS });
}

// The model picker and the line under it (name, size, licence), from the worker's catalogue.
function fillModelChoice() {
  const sel = $("model-choice");
  const opts = catalogue.map((m) => {
    const o = document.createElement("option");
    o.value = m.id;
    o.textContent = `${m.name} (${(m.bytes / 1e6).toFixed(0)} MB)`;
    return o;
  });
  if (localFile) {
    const o = document.createElement("option");
    o.value = "local";
    o.textContent = `${localFile.name} (this computer)`;
    opts.push(o);
  }
  sel.replaceChildren(...opts);
  if (state) sel.value = state.model;
}

function showModelAbout() {
  const entry = catalogue.find((m) => m.id === loadedModel);
  const p = $("model-about");
  if (!entry) {
    p.textContent = localFile ? `${localFile.name}: a model file from this computer (${(localFile.size / 1e6).toFixed(0)} MB); it is not uploaded anywhere.` : "";
    return;
  }
  const a = document.createElement("a");
  a.href = entry.licence_url;
  a.textContent = entry.licence;
  a.rel = "noopener";
  p.replaceChildren(`${entry.name}: ${entry.about}. ${(entry.bytes / 1e6).toFixed(0)} MB, downloaded once and kept in this browser. Licence: `, a, ".");
}

// Open a GGUF file from this computer (file input or drag and drop): it runs here, never uploaded.
function openLocal(file) {
  if (!file || !state) return;
  if (file.size > maxFileBytes) {
    notice(`${file.name} is ${(file.size / 1e9).toFixed(1)} GB; a browser tab can hold models up to about ${(maxFileBytes / 1e9).toFixed(1)} GB of weights here.`, "file");
    return;
  }
  dropNotice("file");
  // if this file cannot be loaded, Retry goes back to what ran before
  beforeLocal = { file: localFile, model: state.model };
  localFile = file;
  state.model = "local";
  fillModelChoice();
  initModel();
}

function onFatal(msg) {
  clearTimeout(slowTimer);
  console.info(`sinkscope: the worker stopped (${msg.kind}): ${msg.message}`);
  if (msg.kind === "device-lost" && !gpuLostOnce) {
    // A lost GPU device: fall back to the CPU worker and re-run the current prompt.
    gpuLostOnce = true;
    notice("The GPU device was lost; switched to the CPU and re-ran the prompt.", "backend");
    state.backend = "cpu";
    startWorker("cpu");
    return;
  }
  fail(msg.kind === "device-lost" ? `The GPU device was lost: ${msg.message}` : `The model stopped with an internal error (please report it): ${msg.message}`);
}

function onMessage(msg) {
  switch (msg.type) {
    case "alive":
      catalogue = msg.models;
      maxFileBytes = msg.max_file_bytes;
      fillModelChoice();
      if (state === null) send({ type: "decode", fragment: location.hash });
      else initModel();
      break;
    case "decoded":
      state = msg.state;
      msg.notices.forEach((n) => notice(n));
      applyStateToControls();
      if (ready && (state.backend || null) === loadedChoice && state.model === loadedModel) update();
      else if (ready && (state.backend || null) === loadedChoice) initModel(); // a link with another model
      else switchBackend(); // a link can ask for the other worker build
      break;
    case "progress": {
      const pc = msg.total > 0 ? Math.min(100, (100 * msg.loaded) / msg.total) : 0;
      $("progress-fill").style.width = `${pc.toFixed(1)}%`;
      $("progress").setAttribute("aria-valuenow", pc.toFixed(0));
      const mb = (x) => (x / 1e6).toFixed(1);
      $("progress-text").textContent = msg.cached
        ? `Loading the model from this browser's cache: ${mb(msg.loaded)} / ${mb(msg.total)} MB (${pc.toFixed(0)}%)`
        : `Downloading the model (once): ${mb(msg.loaded)} / ${mb(msg.total)} MB (${pc.toFixed(0)}%)`;
      break;
    }
    case "ready":
      ready = true;
      beforeLocal = null;
      document.body.dataset.loads = Number(document.body.dataset.loads || 0) + 1; // for tests
      backend = msg.backend;
      $("backend").textContent = msg.backend;
      $("backend").title = `${msg.adapter}; loaded in ${(msg.load_ms / 1000).toFixed(1)} s`;
      $("model-name").textContent = msg.model;
      loadedModel = msg.model_id;
      $("gloss-heads").textContent = msg.n_heads;
      $("gloss-layers").textContent = msg.n_layers;
      msg.formats.forEach((f) => {
        const o = $("format").querySelector(`option[value='${f.value}']`);
        if (o) { o.textContent = f.label; o.disabled = !f.enabled; }
      });
      fillModelChoice();
      showModelAbout();
      $("loading").hidden = true;
      $("failure").hidden = true;
      if (msg.fallback) notice(msg.fallback, "backend");
      update(firstVisit ? { pick_two_sink: true } : {});
      firstVisit = false;
      break;
    case "frame":
      if (msg.frame.seq !== seq) return; // stale: a newer request is on its way
      draw(msg.frame, msg.bitmaps, msg.pixels, msg.heat);
      break;
    case "export":
      download(msg);
      break;
    case "error":
      if (msg.seq != null && msg.seq !== seq) return;
      if (/QK-norm comparison failed/.test(msg.message)) {
        compared = null; // a later frame may ask again
        $("qk-progress").textContent = msg.message;
        $("view-qknorm").dataset.state = "stopped";
      }
      if (!ready && beforeLocal) {
        localFile = beforeLocal.file;
        state.model = beforeLocal.model;
        beforeLocal = null;
        fillModelChoice();
      }
      if (!ready) {
        $("loading").hidden = true;
        fail(`The model could not be loaded: ${msg.message}`);
      } else if (msg.seq == null) {
        notice(msg.message, "error");
      } else {
        fail(msg.message);
      }
      break;
    case "lab":
      drawLab(msg.lab);
      break;
    case "compare-progress":
      $("qk-progress").textContent = msg.text;
      break;
    case "compared":
      drawComparison(msg);
      break;
    case "job-progress":
      jobProgress(msg.kind, msg.done, msg.total);
      break;
    case "job-cancelled":
      jobEnd(msg.kind, "Cancelled.");
      break;
    case "job-failed":
      jobEnd(msg.kind, msg.message);
      break;
    case "probed":
      drawProbe(msg);
      break;
    case "corpus-done":
      drawCorpus(msg);
      break;
    case "kernel-check": // test hook (window.sinkscopeKernelCheck)
      document.body.dataset.kernelCheck = JSON.stringify(msg);
      break;
    case "fatal":
      if (worker) worker.fatalSeen = true;
      onFatal(msg);
      break;
  }
}

function update(opts = {}) {
  if (!ready || !state) return;
  dirty = false;
  clearTimeout(debounce);
  seq += 1;
  setStatus("working", "Analysing…");
  send({ type: "update", seq, state, opts });
  clearTimeout(slowTimer);
  if (backend === "webgpu") {
    const mine = seq;
    slowTimer = setTimeout(() => {
      if (seq === mine && $("status").dataset.state === "working") {
        notice("WebGPU is slow on this machine (is it a software adapter?).", "slow-gpu", {
          label: "Switch to the CPU",
          run: () => { state.backend = "cpu"; applyStateToControls(); initModel(); },
        });
      }
    }, window.sinkscopeSlowGpuMs || SLOW_GPU_MS);
  }
}

function applyStateToControls() {
  if (document.activeElement !== $("prompt") || $("prompt").value === "") $("prompt").value = state.prompt;
  $("format").value = state.format;
  $("eps").value = state.eps;
  $("eps-value").value = num(state.eps);
  $("scale").value = state.scale;
  $("drop-first").checked = state.drop_first;
  $("backend-choice").value = state.backend || "";
  $("model-choice").value = state.model;
  $("grid-colour").value = state.grid;
  document.body.classList.toggle("projector", !!state.projector);
  $("projector").setAttribute("aria-pressed", String(!!state.projector));
  showView(state.view);
}

function showView(view) {
  document.querySelectorAll(".tabs button[role=tab]").forEach((b) => {
    const on = b.dataset.view === view;
    b.setAttribute("aria-selected", String(on));
    b.tabIndex = on ? 0 : -1;
  });
  document.querySelectorAll(".view").forEach((v) => (v.hidden = v.dataset.view !== view));
  document.querySelector(".head-only").hidden = ["lab", "heads", "qknorm", "probe", "corpus"].includes(view);
  if (view === "lab" && worker && !labShown) {
    labShown = true;
    send({ type: "lab-show", projector: !!(state && state.projector) });
  }
}

// ---------------------------------------------------------------------------------------------
// Drawing a frame.

function putBitmap(canvas, w, h, pixels) {
  canvas.width = w;
  canvas.height = h;
  canvas.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(pixels), w, h), 0, 0);
}

function clearCanvas(canvas) {
  canvas.width = 1;
  canvas.height = 1;
  canvas.getContext("2d").clearRect(0, 0, 1, 1);
}

// The bitmaps of a reply by name ([name, width, height] with their pixel buffers in order).
function bitmapsByName(names, pixels) {
  const out = {};
  (names || []).forEach(([name, w, h], i) => (out[name] = { w, h, px: pixels[i] }));
  return out;
}

function draw(f, names, pixels, heatValues) {
  clearTimeout(slowTimer);
  dropNotice("slow-gpu");
  frame = f;
  heat = heatValues;
  // A frame answers the last request sent; edits typed since then (still in the debounce) stay.
  const edits = dirty ? { prompt: state.prompt, eps: state.eps } : null;
  const probe = state ? { probe_data: state.probe_data, probe_n: state.probe_n, probe_seed: state.probe_seed } : null;
  state = f.state;
  if (edits) Object.assign(state, edits);
  if (probe) Object.assign(state, probe); // the Probe view's inputs change only there
  if (location.hash !== `#${f.fragment}`) history.replaceState(null, "", `#${f.fragment}`);
  $("share-url").value = location.href;
  f.notices.forEach((n) => notice(n.text, n.key));
  if (!f.notices.some((n) => n.key === "cut")) dropNotice("cut");
  $("failure").hidden = true;
  $("hint").hidden = !f.hint;
  $("hint").textContent = f.hint || "";
  applyStateToControls();
  const bitmaps = bitmapsByName(names, pixels);
  if (bitmaps.legend) putBitmap($("legend"), bitmaps.legend.w, bitmaps.legend.h, bitmaps.legend.px);
  drawTokens(f);
  drawSummary(f);
  drawGrid(f);
  drawHead(f);
  drawHeatmap(f, bitmaps);
  for (const v of ["tags", "release", "heads"]) drawFigures(`figs-${v}`, f.state.view === v ? f.figures : null, f.hint);
  drawLaterChoice(f);
  drawTour(f);
  if (f.state.view === "qknorm") requestComparison(f);
  if (f.state.view === "probe") showProbeParams(state);
  if (f.state.view === "corpus" && !jobRunning && corpusShown !== `${loadedModel}|${state.eps}`) {
    drawFigures("figs-corpus", null, null); // statistics of another model or eps: not this one's
    $("corpus-findings").replaceChildren();
  }
  const st = $("status");
  st.dataset.forwardMs = f.timing ? num(f.timing.forward_ms, 1) : "";
  st.dataset.analysisMs = f.timing ? num(f.timing.analysis_ms, 1) : "";
  st.dataset.computed = f.timing ? f.timing.computed_tokens : "";
  st.dataset.wasmMemory = f.timing && f.timing.wasm_memory_bytes != null ? f.timing.wasm_memory_bytes : "";
  st.dataset.helperMemory = f.timing && f.timing.helper_memory_bytes != null ? f.timing.helper_memory_bytes : "";
  st.dataset.gpuBuffers = f.timing && f.timing.gpu_buffer_peak_bytes != null ? `${f.timing.gpu_buffer_bytes} ${f.timing.gpu_buffer_peak_bytes}` : "";
  setStatus("ready", f.hint ? "Waiting for a prompt" : "Ready");
  keepOfflineCopy();
}

function drawTokens(f) {
  $("tokens").replaceChildren(...f.tokens.map((t) => {
    const el = document.createElement("span");
    el.className = "tok" + (t.from_user ? "" : " tmpl") + (t.partial ? " partial" : "") + (t.candidate ? "" : " nocand");
    el.setAttribute("role", "listitem");
    el.setAttribute("data-testid", "token");
    el.dataset.index = t.index;
    el.dataset.sinkHeads = t.sink_heads;
    el.style.background = t.color;
    el.title = t.title;
    el.textContent = t.text;
    return el;
  }));
  const s = f.summary;
  const notes = ["Shading: how many heads treat the token as a sink."];
  if (s && s.n_candidates < f.tokens.length) {
    const k = f.tokens.length - s.n_candidates;
    notes.push(`The last ${k === 1 ? "token" : `${k} tokens`} (hatched) can't be sinks: fewer than ${s.min_queries} queries see ${k === 1 ? "it" : "them"}, so alpha would be noise.`);
  }
  if (f.tokens.some((t) => !t.from_user)) notes.push("Dashed: added by the prompt format, not typed.");
  if (f.tokens.some((t) => t.partial)) notes.push("\\x..: part of a character split over tokens (hover for the character).");
  $("token-note").textContent = notes.join(" ");
}

function drawSummary(f) {
  const s = f.summary;
  if (!s) {
    $("summary").textContent = "";
    return;
  }
  const top = f.top_next.map((n) => `“${n.text.replace(/\n/g, "\\n")}” ${pct(n.prob)}`).join(", ");
  const cut = f.tokens_before_cut > f.tokens.length ? ` (cut from ${f.tokens_before_cut})` : "";
  const tm = f.timing;
  $("summary").textContent =
    `${f.tokens.length} tokens${cut} · at eps ${num(s.eps)}: ${num(s.avg_sinks)} sinks per head on average, ` +
    `first-token sink in ${pct(s.sink_rate_overall)} of heads · next: ${top}` +
    (tm ? ` · ${backend}: ` + (tm.computed_tokens ? `forward ${num(tm.forward_ms, 0)} ms (${tm.computed_tokens} new tokens), ` : "model output reused, ") + `analysis ${num(tm.analysis_ms, 0)} ms` : "");
  $("min-queries").textContent = s.min_queries;
}

function drawGrid(f) {
  const table = $("overview");
  const g = f.grid;
  const s = f.summary;
  if (!g || !s) {
    table.replaceChildren();
    return;
  }
  const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest("#overview");
  const head = document.createElement("tr");
  const corner = document.createElement("th");
  corner.textContent = "";
  head.append(corner);
  for (let h = 0; h < s.n_heads; h++) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = `H${h}`;
    head.append(th);
  }
  const rows = [head];
  for (let l = 0; l < s.n_layers; l++) {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = `L${l}`;
    tr.append(th);
    for (let h = 0; h < s.n_heads; h++) {
      const i = l * s.n_heads + h;
      const sel = l === f.state.layer && h === f.state.head;
      const c = document.createElement("td");
      c.className = "cell" + (sel ? " sel" : "");
      c.setAttribute("role", "gridcell");
      c.setAttribute("data-testid", "head-cell");
      c.setAttribute("aria-selected", String(sel));
      c.dataset.layer = l;
      c.dataset.head = h;
      c.dataset.value = g.values[i] == null ? "" : g.values[i];
      c.tabIndex = sel ? 0 : -1;
      c.style.background = g.colors[i];
      c.title = g.titles[i];
      c.setAttribute("aria-label", g.titles[i]);
      tr.append(c);
    }
    rows.push(tr);
  }
  table.replaceChildren(...rows);
  $("grid-lo").textContent = g.legend_lo;
  $("grid-hi").textContent = g.legend_hi;
  $("grid-legend-title").textContent = g.legend_title;
  if (focused) table.querySelector(".cell.sel")?.focus();
}

function drawHead(f) {
  const h = f.head;
  const stats = $("head-stats");
  $("head-title").textContent = h ? `Layer ${h.layer}, head ${h.head}` : "";
  stats.textContent = h ? h.text : (f.hint ? "" : "No head selected.");
  stats.dataset.layer = h ? h.layer : "";
  stats.dataset.head = h ? h.head : "";
  stats.dataset.sinks = h ? h.sinks.join(",") : "";
}

function drawHeatmap(f, bitmaps) {
  const canvas = $("heatmap");
  const empty = $("empty-heatmap");
  const b = bitmaps.heatmap;
  if (!b || !f.heat) {
    if (f.state.view === "heatmap" || f.hint) {
      clearCanvas(canvas);
      $("row-labels").replaceChildren();
      $("col-labels").replaceChildren();
      $("heat-marks").replaceChildren();
      canvas.setAttribute("aria-label", "attention heatmap: nothing to show");
      empty.hidden = !f.hint;
      empty.textContent = f.hint || "";
    }
    return;
  }
  empty.hidden = true;
  putBitmap(canvas, b.w, b.h, b.px);
  if (bitmaps.legend) putBitmap($("heat-legend"), bitmaps.legend.w, bitmaps.legend.h, bitmaps.legend.px);
  const t = f.heat.t;
  // Labels: all of them when they fit, else every k-th (a label needs ~1.3 lines of height).
  const px = canvas.getBoundingClientRect().height || 560;
  const fontPx = parseFloat(getComputedStyle($("row-labels")).fontSize) || 11;
  const stride = Math.max(1, Math.ceil((fontPx * 1.3 * t) / px));
  const label = (i) => (i % stride === 0 ? f.tokens[i].text : "");
  const cells = (cls) => f.tokens.map((tk, i) => {
    const d = document.createElement("div");
    d.className = cls + (f.heat.marks.some(([k]) => k === i) ? " sink" : "");
    d.textContent = label(i);
    return d;
  });
  $("row-labels").replaceChildren(...cells("rl"));
  $("col-labels").replaceChildren(...cells("cl"));
  $("heat-marks").replaceChildren(...f.heat.marks.map(([k, colour]) => {
    const m = document.createElement("div");
    m.className = "mark";
    m.style.left = `${(100 * (k + 0.5)) / t}%`;
    m.style.borderTopColor = colour;
    m.title = `sink: token ${k} “${f.tokens[k].text}”`;
    return m;
  }));
  $("heat-lo").textContent = f.heat.log ? "≤10⁻⁴" : "0";
  canvas.setAttribute("aria-label", `Attention heatmap, ${t} by ${t} tokens. ${f.head ? f.head.text : ""}`);
}

// Figures are SVG text shown through <img> (never parsed as HTML). Each keeps its hover geometry.
function drawFigures(id, figures, hint) {
  const box = $(id);
  (figureUrls.get(id) || []).forEach((u) => URL.revokeObjectURL(u));
  figureUrls.set(id, []);
  if (!figures || figures.length === 0) {
    box.replaceChildren();
    if (hint) {
      const p = document.createElement("p");
      p.className = "empty-state";
      p.textContent = hint;
      box.replaceChildren(p);
    }
    return;
  }
  box.replaceChildren(...figures.map((fig) => {
    const el = document.createElement("figure");
    const img = document.createElement("img");
    const url = URL.createObjectURL(new Blob([fig.svg], { type: "image/svg+xml" }));
    figureUrls.get(id).push(url);
    img.src = url;
    img.alt = fig.alt;
    img.width = fig.width;
    img.height = fig.height;
    img.dataset.name = fig.name;
    img.setAttribute("data-testid", fig.name.replace(/_/g, "-")); // e.g. pca-out, lab-loss
    img.addEventListener("mousemove", (ev) => hover(fig, img, ev));
    el.append(img);
    return el;
  }));
}

// The QK-norm view: both models on the prompt on screen, computed (and cached) by the worker.
function requestComparison(f) {
  const key = `${f.state.prompt}|${f.state.eps}|${f.state.projector}`;
  if (f.hint) {
    drawFigures("figs-qknorm", null, f.hint);
    $("qk-findings").replaceChildren();
    compared = null;
    return;
  }
  if (compared === key) return;
  compared = key;
  $("qk-progress").textContent = "Running both models on this prompt…";
  $("view-qknorm").dataset.state = "working";
  send({ type: "compare", prompt: f.state.prompt, eps: f.state.eps, projector: !!f.state.projector });
}

function drawComparison(msg) {
  if (!state || msg.prompt !== state.prompt || msg.eps !== state.eps) return; // stale
  $("qk-claim").textContent = `The paper: ${msg.claim}`;
  $("qk-progress").textContent = "";
  drawFigures("figs-qknorm", msg.figures, null);
  $("qk-findings").replaceChildren(...msg.findings.map((t) => {
    const li = document.createElement("li");
    li.textContent = t;
    return li;
  }));
  $("view-qknorm").dataset.state = "ready";
}

// The Probe and Corpus views: runs over many statements or paragraphs in the worker, with progress
// and Cancel; the data sets are the page's own files (dist/data/).
function probeKey() {
  return `${state.probe_data}|${state.probe_n}|${state.probe_seed}|${state.eps}|${loadedModel}`;
}

function showProbeParams(st) {
  $("probe-data").value = st.probe_data;
  $("probe-n").value = st.probe_n;
  $("probe-seed").value = st.probe_seed;
  // figures of other parameters (or of another model or eps) are not left on screen
  if (probeShown !== probeKey() && !jobRunning) {
    drawFigures("figs-probe", null, null);
    $("probe-layer-label").hidden = true;
    $("probe-findings").replaceChildren(item("Press “Run the probe” (600 statements take a few minutes in the browser)."));
  }
}

function item(text) {
  const li = document.createElement("li");
  li.textContent = text;
  return li;
}

async function fetchText(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.text();
}

function jobStart(kind, text) {
  jobRunning = kind;
  $(`${kind}-progress`).hidden = false;
  $(`${kind}-fill`).style.width = "0%";
  $(`${kind}-progress-text`).textContent = text;
  $(`${kind}-run`).disabled = true;
  $(`${kind}-cancel`).hidden = false;
  $(`view-${kind}`).dataset.state = "working";
}

function jobProgress(kind, done, total) {
  $(`${kind}-fill`).style.width = `${((100 * done) / Math.max(1, total)).toFixed(1)}%`;
  $(`${kind}-progress-text`).textContent = `${done} / ${total} ${kind === "probe" ? "statements" : "paragraphs"}`;
}

function jobEnd(kind, text) {
  if (jobRunning === kind) jobRunning = null;
  $(`${kind}-run`).disabled = false;
  $(`${kind}-cancel`).hidden = true;
  $(`${kind}-progress`).hidden = !text;
  $(`${kind}-progress-text`).textContent = text || "";
  $(`view-${kind}`).dataset.state = text ? "stopped" : "ready";
  if (kind === "probe" && text && state) showProbeParams(state);
}

function readProbeInputs() {
  state.probe_data = $("probe-data").value;
  state.probe_n = Math.max(20, Math.min(1500, Math.round(Number($("probe-n").value) || 600)));
  const seed = Math.round(Number($("probe-seed").value) || 0);
  state.probe_seed = Number.isSafeInteger(seed) ? Math.max(0, Math.min(4294967295, seed)) : 0; // a u32
}

async function runProbe() {
  if (!ready || jobRunning) return;
  readProbeInputs();
  showProbeParams(state);
  update(); // the parameters go into the link
  jobStart("probe", "Starting…");
  try {
    const csv = await fetchText(`data/${state.probe_data}.csv`);
    probeRun = { data: state.probe_data, n: state.probe_n, seed: state.probe_seed, eps: state.eps };
    send({ type: "probe", ...probeRun, csv, layer: null, projector: !!state.projector });
  } catch (e) {
    jobEnd("probe", `The data set could not be read: ${e.message}`);
  }
}

function drawProbe(msg) {
  jobEnd("probe", null);
  probeShown = `${msg.data}|${msg.n}|${msg.seed}|${msg.eps}|${loadedModel}`;
  drawFigures("figs-probe", msg.figures, null);
  const sel = $("probe-layer");
  sel.replaceChildren(...Array.from({ length: msg.layers }, (_, l) => {
    const o = document.createElement("option");
    o.value = l;
    o.textContent = l;
    return o;
  }));
  sel.value = msg.layer;
  $("probe-layer-label").hidden = false;
  $("probe-findings").replaceChildren(
    item(`${msg.model}: ${msg.used} statements (${msg.n_train} to train, ${msg.n_test} held out${msg.used < msg.n ? `; ${msg.n} asked for` : ""}), seed ${msg.seed}, sinks at eps ${num(msg.eps)}; read at the ${msg.read_at}; prompts ${msg.format}.`),
    ...msg.findings.map(item),
  );
}

async function runCorpus() {
  if (!ready || jobRunning) return;
  jobStart("corpus", "Starting…");
  try {
    const text = await fetchText("data/paragraphs.txt");
    send({ type: "corpus", text, eps: state.eps, projector: !!state.projector });
  } catch (e) {
    jobEnd("corpus", `The paragraphs could not be read: ${e.message}`);
  }
}

function drawCorpus(msg) {
  jobEnd("corpus", null);
  corpusShown = `${loadedModel}|${state.eps}`;
  drawFigures("figs-corpus", msg.figures, null);
  $("corpus-findings").replaceChildren(...msg.findings.map(item));
}

function drawLaterChoice(f) {
  const sel = $("later");
  const h = f.head;
  const s = f.summary;
  if (!h || !s) {
    sel.replaceChildren();
    return;
  }
  const opts = [];
  for (let l = h.layer + 1; l < s.n_layers; l++) {
    const o = document.createElement("option");
    o.value = l;
    o.textContent = `layer ${l} (+${l - h.layer})`;
    opts.push(o);
  }
  sel.replaceChildren(...opts);
  sel.disabled = opts.length === 0;
  if (h.later_layer != null) sel.value = h.later_layer;
}

// “text” for a token in read-outs (not JSON: a backslash stays one backslash).
const quote = (text) => `“${text}”`;

$("heatmap").addEventListener("mousemove", (ev) => {
  if (!frame || !heat || !frame.heat) return;
  const t = frame.heat.t;
  const r = $("heatmap").getBoundingClientRect();
  const k = Math.floor(((ev.clientX - r.left) / r.width) * t);
  const q = Math.floor(((ev.clientY - r.top) / r.height) * t);
  if (k < 0 || q < 0 || k >= t || q >= t) return;
  const v = heat[q * t + k];
  const tok = (i) => `${i} ${quote(frame.tokens[i].text)}`;
  $("heat-readout").textContent = Number.isNaN(v)
    ? `query ${tok(q)} → key ${tok(k)}: not shown (${k > q ? "a later token: a query only sees earlier ones" : "first token dropped"})`
    : `query ${tok(q)} → key ${tok(k)}: attention ${num(v, 4)}`;
});

function hover(fig, img, ev) {
  if (!frame) return;
  const r = img.getBoundingClientRect();
  const x = ((ev.clientX - r.left) / r.width) * fig.width;
  const y = ((ev.clientY - r.top) / r.height) * fig.height;
  const out = frame.state.view === "release" ? $("release-readout") : $("tags-readout");
  const tok = (i) => (frame.tokens[i] ? quote(frame.tokens[i].text) : "?");
  if (fig.hit.kind === "points") {
    let best = -1, bd = 100;
    fig.hit.px.forEach(([px, py], i) => {
      const d = (px - x) ** 2 + (py - y) ** 2;
      if (d < bd) { bd = d; best = i; }
    });
    if (best >= 0 && frame.tokens[best]) {
      const t = frame.tokens[best];
      out.textContent = `token ${best} ${tok(best)}` + (t.caught_by != null ? `, caught by token ${t.caught_by} ${tok(t.caught_by)}` : ", not caught");
    }
  } else if (fig.hit.kind === "grid") {
    const g = fig.hit;
    if (x < g.x0 || x >= g.x1 || y < g.y0 || y >= g.y1) return;
    const c = Math.floor(((x - g.x0) / (g.x1 - g.x0)) * g.cols);
    const rr = Math.floor(((y - g.y0) / (g.y1 - g.y0)) * g.rows);
    out.textContent = fig.name === "release_map" ? `token ${c} ${tok(c)}, ${g.rows - rr === g.rows ? "at" : "after"} row ${rr}` : `row ${rr}, column ${c}`;
  }
}

let lastFocusStep = null;
function drawTour(f) {
  const box = $("tour");
  const t = f.tour;
  box.hidden = !t;
  if (!t) lastFocusStep = null;
  document.body.classList.toggle("touring", !!t);
  if (!t) return;
  $("tour-title").textContent = t.title;
  const cap = $("tour-caption");
  cap.textContent = t.caption;
  cap.dataset.step = t.step + 1;
  cap.dataset.steps = t.steps;
  $("tour-count").textContent = `${t.step + 1} / ${t.steps}`;
  $("tour-back").disabled = t.step === 0;
  $("tour-next").textContent = t.step + 1 === t.steps ? "Finish" : "Next →";
  if (t.focus && t.step !== lastFocusStep) {
    lastFocusStep = t.step;
    // bring the figure the step is about into view (once per step; the Lab's arrives later)
    const target = () => (t.focus === "heatmap" ? $("heatmap") : document.querySelector(`img[data-name='${t.focus}']`));
    const show = () => target()?.scrollIntoView({ block: "nearest" });
    requestAnimationFrame(show);
    setTimeout(show, 1500);
  }
}

// ---------------------------------------------------------------------------------------------
// The Lab.

function drawLab(lab) {
  drawFigures("figs-lab", lab.figures);
  const v = lab.verdict;
  const [minCatch, minRelease, maxRel] = lab.thresholds.map((x) => +x.toFixed(3));
  $("lab-epoch").textContent = lab.source === "checkpoint"
    ? `pre-trained checkpoint (seed ${lab.seed}, ${lab.epochs} epochs) — press Start to train a new model`
    : `seed ${lab.seed} · epoch ${lab.epoch} of ${lab.epochs}${lab.running ? " · training…" : ""}` +
      (lab.losses.length ? ` · loss ${lab.losses[lab.losses.length - 1].toExponential(2)}` : "");
  $("lab-epoch").dataset.epoch = lab.epoch;
  $("lab-epoch").dataset.losses = JSON.stringify(lab.losses);
  const item = (ok, text) => {
    const li = document.createElement("li");
    li.className = ok ? "ok" : "no";
    li.textContent = `${ok ? "✓" : "✗"} ${text}`;
    return li;
  };
  const head = document.createElement("li");
  head.className = v.emerged ? "ok" : "no";
  head.textContent = v.emerged ? "catch, tag and release emerged" : "not (yet) the mechanism";
  $("lab-verdict").replaceChildren(
    head,
    item(lab.checks[0], `catch: [SEP] gets ${num(v.catch)} of post-[SEP] attention in layer 1 (needs ≥ ${minCatch})`),
    item(lab.checks[1], `release: the last query puts ${num(v.release)} on post-[SEP] numbers in layer 2 (needs ≥ ${minRelease})`),
    item(lab.checks[2], `test RMSE ${num(v.rmse, 4)} vs ${num(v.baseline_rmse, 4)} for a constant (needs ≤ ${maxRel}×)`));
  $("lab-verdict").dataset.emerged = v.emerged;
  $("lab-tokens").textContent = `Probe sequence (rows and columns of the maps): ${lab.tokens.join(" ")}`;
  $("lab-start").disabled = lab.running;
}

function labSeed() {
  const raw = $("lab-seed").value.trim();
  const n = Number(raw);
  if (raw === "" || !Number.isInteger(n) || n < 0 || n > 100000) {
    $("lab-seed-error").textContent = "The seed must be a whole number from 0 to 100000.";
    return null;
  }
  $("lab-seed-error").textContent = "";
  return n;
}

// ---------------------------------------------------------------------------------------------
// Export: SVG and JSON come from the worker; PNG is the SVG rasterised here at twice the screen's
// resolution (or more on high-density screens), labels and legend included.

let pendingExport = null;

function requestExport(format) {
  if (!ready || !state) return;
  pendingExport = format;
  send({ type: "export", state, kind: format === "json" ? "json" : "svg" });
}

function saveBlob(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

function download(msg) {
  const format = pendingExport || msg.kind;
  pendingExport = null;
  if (msg.kind === "json") {
    saveBlob(new Blob([msg.text], { type: "application/json" }), msg.name);
  } else if (format === "svg") {
    saveBlob(new Blob([msg.text], { type: "image/svg+xml" }), msg.name);
  } else {
    const scale = Math.max(2, 2 * (window.devicePixelRatio || 1));
    const img = new Image();
    const url = URL.createObjectURL(new Blob([msg.text], { type: "image/svg+xml" }));
    img.onload = () => {
      const c = document.createElement("canvas");
      c.width = Math.round(msg.width * scale);
      c.height = Math.round(msg.height * scale);
      const ctx = c.getContext("2d");
      ctx.scale(scale, scale);
      ctx.drawImage(img, 0, 0, msg.width, msg.height);
      URL.revokeObjectURL(url);
      c.toBlob((b) => saveBlob(b, msg.name.replace(/\.svg$/, ".png")), "image/png");
    };
    img.onerror = () => notice("The figure could not be turned into a PNG; try SVG.", "export");
    img.src = url;
  }
}

// ---------------------------------------------------------------------------------------------
// Controls.

function setView(view) {
  state.view = view;
  showView(view);
  update();
}

function tourGo(step, enter = true) {
  if (!state) return;
  state.tour = step;
  update({ enter_tour: enter }); // an empty prompt gets the example (in the worker)
}

function tourExit() {
  if (!state || state.tour == null) return;
  state.tour = null;
  $("tour").hidden = true;
  update();
}

$("prompt").addEventListener("input", () => {
  state.prompt = $("prompt").value;
  dirty = true;
  clearTimeout(debounce);
  debounce = setTimeout(update, DEBOUNCE_MS);
});
$("prompt").addEventListener("paste", (ev) => {
  const ta = $("prompt");
  const pasted = (ev.clipboardData && ev.clipboardData.getData("text")) || "";
  const room = ta.maxLength - (ta.value.length - (ta.selectionEnd - ta.selectionStart));
  if (pasted.length > room) notice(`The pasted text was cut: the prompt holds at most ${ta.maxLength.toLocaleString("en")} characters.`, "paste");
});
$("format").addEventListener("change", () => { state.format = $("format").value; update(); });
$("eps").addEventListener("input", () => {
  state.eps = Number($("eps").value);
  dirty = true;
  $("eps-value").value = num(state.eps);
  clearTimeout(debounce);
  debounce = setTimeout(update, 60);
});
$("eps-paper").onclick = () => { state.eps = 0.2; applyStateToControls(); update(); };
$("eps-gu").onclick = () => { state.eps = 0.3; applyStateToControls(); update(); };
$("scale").addEventListener("change", () => { state.scale = $("scale").value; update(); });
$("drop-first").addEventListener("change", () => { state.drop_first = $("drop-first").checked; update(); });
$("grid-colour").addEventListener("change", () => { state.grid = $("grid-colour").value; update(); });
$("later").addEventListener("change", () => { state.later = Number($("later").value); update(); });
$("pick-two-sink").addEventListener("click", () => update({ next_two_sink: true }));
$("probe-run").addEventListener("click", () => runProbe());
$("corpus-run").addEventListener("click", () => runCorpus());
$("probe-cancel").addEventListener("click", () => send({ type: "job-cancel" }));
$("corpus-cancel").addEventListener("click", () => send({ type: "job-cancel" }));
// another layer's histograms: answered from the result the worker keeps (no data needed)
$("probe-layer").addEventListener("change", () => {
  if (probeRun && !jobRunning && probeShown === probeKey()) send({ type: "probe", ...probeRun, csv: "", layer: Number($("probe-layer").value), projector: !!state.projector });
});
for (const id of ["probe-data", "probe-n", "probe-seed"]) $(id).addEventListener("change", () => { if (state) readProbeInputs(); });
// Load the model for `state.backend`: in this worker when it is the right build (the model comes
// back from Cache Storage), else in the other build of the worker.
async function switchBackend() {
  const { kind, why } = await workerFor(state.backend);
  dropNotice("backend");
  if (why) notice(why, "backend");
  if (kind === workerKind) initModel();
  else startWorker(kind);
}

$("model-choice").addEventListener("change", () => {
  state.model = $("model-choice").value;
  initModel();
});
$("open-file").addEventListener("click", () => $("file-input").click());
$("file-input").addEventListener("change", () => { openLocal($("file-input").files[0]); $("file-input").value = ""; });
// Drag and drop a model file anywhere on the page.
let dragDepth = 0;
document.addEventListener("dragenter", (ev) => {
  if (![...(ev.dataTransfer ? ev.dataTransfer.types : [])].includes("Files")) return;
  dragDepth += 1;
  $("drop-zone").hidden = false;
});
document.addEventListener("dragleave", () => { dragDepth = Math.max(0, dragDepth - 1); if (!dragDepth) $("drop-zone").hidden = true; });
document.addEventListener("dragover", (ev) => { if (ev.dataTransfer && [...ev.dataTransfer.types].includes("Files")) ev.preventDefault(); });
document.addEventListener("drop", (ev) => {
  if (!ev.dataTransfer || !ev.dataTransfer.files.length) return;
  ev.preventDefault();
  dragDepth = 0;
  $("drop-zone").hidden = true;
  openLocal(ev.dataTransfer.files[0]);
});
$("backend-choice").addEventListener("change", () => {
  state.backend = $("backend-choice").value || null;
  gpuLostOnce = false;
  switchBackend();
});
$("overview").addEventListener("click", (ev) => {
  const c = ev.target.closest("[data-testid=head-cell]");
  if (c) selectHead(c);
});
$("overview").addEventListener("keydown", (ev) => {
  const c = ev.target.closest("[data-testid=head-cell]");
  if (!c || !frame || !frame.summary) return;
  const { n_layers: L, n_heads: H } = frame.summary;
  let [l, h] = [Number(c.dataset.layer), Number(c.dataset.head)];
  const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1], Home: [0, -h], End: [0, H - 1 - h] };
  if (ev.key === "Enter" || ev.key === " ") {
    ev.preventDefault();
    selectHead(c);
    return;
  }
  const m = moves[ev.key];
  if (!m) return;
  ev.preventDefault();
  ev.stopPropagation();
  l = Math.max(0, Math.min(L - 1, l + m[0]));
  h = Math.max(0, Math.min(H - 1, h + m[1]));
  const next = $("overview").querySelector(`[data-layer='${l}'][data-head='${h}']`);
  if (next) {
    c.tabIndex = -1;
    next.tabIndex = 0;
    next.focus();
  }
});
function selectHead(c) {
  state.layer = Number(c.dataset.layer);
  state.head = Number(c.dataset.head);
  update();
}
document.querySelectorAll(".tabs button[role=tab]").forEach((b) => b.addEventListener("click", () => setView(b.dataset.view)));
$("lab-start").addEventListener("click", () => { const s = labSeed(); if (s !== null) send({ type: "lab-start", seed: s }); });
$("lab-pause").addEventListener("click", () => send({ type: "lab-pause" }));
$("lab-reset").addEventListener("click", () => { const s = labSeed(); if (s !== null) send({ type: "lab-reset", seed: s }); });
$("lab-seed").addEventListener("input", labSeed);
$("tour-start").addEventListener("click", () => tourGo(0));
$("tour-next").addEventListener("click", () => {
  if (state.tour == null) return;
  if (frame && frame.tour && state.tour + 1 >= frame.tour.steps) tourExit();
  else tourGo(state.tour + 1);
});
$("tour-back").addEventListener("click", () => { if (state.tour > 0) tourGo(state.tour - 1); });
$("tour-exit").addEventListener("click", tourExit);
$("projector").addEventListener("click", () => {
  state.projector = !state.projector;
  applyStateToControls();
  if (state.view === "lab") send({ type: "lab-show", projector: state.projector });
  update();
});
$("export-png").addEventListener("click", () => requestExport("png"));
$("export-svg").addEventListener("click", () => requestExport("svg"));
$("export-json").addEventListener("click", () => requestExport("json"));
$("help-open").addEventListener("click", () => $("help").showModal());
$("copy-link").addEventListener("click", async () => {
  const link = location.href;
  $("share-url").value = link;
  $("share-url").hidden = false;
  $("share-url").select();
  try {
    await navigator.clipboard.writeText(link);
    $("copy-link").textContent = "Link copied";
  } catch (e) {
    $("copy-link").textContent = "Copy the link above";
  }
  setTimeout(() => ($("copy-link").textContent = "Copy link"), 2000);
});
$("retry").addEventListener("click", () => {
  $("failure").hidden = true;
  gpuLostOnce = false;
  startWorker(workerKind);
});
// A new fragment (back/forward, an edited link) is decoded by the running worker: the model stays.
window.addEventListener("hashchange", () => {
  if (frame && location.hash === `#${frame.fragment}`) return;
  if (!worker || !ready) return;
  $("notices").replaceChildren();
  send({ type: "decode", fragment: location.hash });
});

// Keyboard shortcuts (listed behind "?"), off while typing.
document.addEventListener("keydown", (ev) => {
  const typing = ev.target.closest && ev.target.closest("textarea, input, select");
  if (ev.key === "Escape" && state && state.tour != null && !$("help").open) { tourExit(); return; }
  if (typing || ev.ctrlKey || ev.metaKey || ev.altKey || !state) return;
  if (ev.target.closest && ev.target.closest("#overview") && ev.key.startsWith("Arrow")) return;
  const touring = state.tour != null;
  if (ev.key === "ArrowRight" && touring) { ev.preventDefault(); $("tour-next").click(); }
  else if (ev.key === "ArrowLeft" && touring) { ev.preventDefault(); $("tour-back").click(); }
  else if (ev.key === "?") $("help").showModal();
  else if (ev.key === "t") tourGo(0);
  else if (ev.key === "p") $("projector").click();
  else if (ev.key === "s") $("pick-two-sink").click();
  else if (ev.key === "g") { state.grid = GRID_MODES[(GRID_MODES.indexOf(state.grid) + 1) % GRID_MODES.length]; update(); }
  else if (/^[1-8]$/.test(ev.key)) setView(VIEWS[Number(ev.key) - 1]);
});

// Offline once loaded: the service worker keeps the page's own files (not the prompt: that lives in
// the fragment, which no request carries). Registered after the first picture, so that its copying
// does not compete with the first load.
let offlineAsked = false;
function keepOfflineCopy() {
  if (offlineAsked || !("serviceWorker" in navigator)) return;
  offlineAsked = true;
  // the service worker keeps the page and the worker build in use (see files.json)
  navigator.serviceWorker.register(`sw.js?w=${WORKERS[workerKind].name}`).catch((e) => console.warn("sinkscope: no offline copy of the page:", e));
}

// Test hooks (documented in the README): simulate a lost GPU device; send NaN and infinities.
window.sinkscopeLoseDevice = () => send({ type: "lose-device" });
window.sinkscopePoison = () => { send({ type: "poison" }); update(); };
window.sinkscopePanic = () => send({ type: "panic" });
window.sinkscopeCrashHelper = () => send({ type: "crash-helper" });
window.sinkscopeKernelCheck = () => send({ type: "kernel-check" });

firstVisit = location.hash.length <= 1;
// The link's backend choice picks the worker build; the worker itself decodes (and checks) the link.
startFor(new URLSearchParams(location.hash.slice(1)).get("b"));

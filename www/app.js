// sinkscope page wiring. All numerics, analysis, colours, bitmaps and the URL codec are computed in
// Rust inside the worker; this file only moves messages and pixels and handles DOM events.

const $ = (id) => document.getElementById(id);
const MODEL_URL = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
const DEBOUNCE_MS = 250; // typing pause before re-analysing

let worker = null;
let state = null;          // the current ViewState (shape defined by Rust's app::state::ViewState)
let seq = 0;               // last update sent
let ready = false;         // model loaded in the current worker
let backend = null;        // "webgpu" | "cpu" once ready
let frame = null;          // last frame drawn
let heat = null;           // heatmap values (Float32Array, NaN = masked)
let debounce = null;
let gpuLostOnce = false;

function setStatus(kind, text) {
  const s = $("status");
  s.dataset.state = kind;
  s.textContent = text;
}

function notice(text) {
  if ([...$("notices").querySelectorAll("li span")].some((e) => e.textContent === text)) return;
  const li = document.createElement("li");
  const span = document.createElement("span");
  span.textContent = text;
  const x = document.createElement("button");
  x.type = "button";
  x.textContent = "×";
  x.title = "dismiss";
  x.onclick = () => li.remove();
  li.append(span, x);
  $("notices").append(li);
}

function fail(message) {
  $("failure").hidden = false;
  $("failure-text").textContent = message;
  setStatus("error", "Error");
}

function send(msg) {
  worker.postMessage(JSON.stringify(msg));
}

function startWorker() {
  if (worker) worker.terminate();
  ready = false;
  labShown = false;
  worker = new Worker("./sinkscope_loader.js", { type: "module" });
  worker.onmessage = (ev) => onMessage(ev.data);
  worker.onerror = (ev) => {
    ev.preventDefault();
    onFatal(ev.message || "the model worker stopped");
  };
  $("loading").hidden = false;
  $("progress-text").textContent = "Starting the model worker…";
  setStatus("loading", "Loading the model…");
}

function onFatal(message) {
  if (backend === "webgpu" && !gpuLostOnce) {
    // A lost GPU device: fall back to the CPU and re-run the current prompt.
    gpuLostOnce = true;
    notice("The GPU device was lost; switched to the CPU and re-ran the prompt.");
    state.backend = "cpu";
    startWorker();
    return;
  }
  fail(`The model stopped: ${message}`);
}

function onMessage(data) {
  let msg;
  try { msg = JSON.parse(data.json); } catch (e) { return fail("The worker sent a malformed message."); }
  switch (msg.type) {
    case "alive":
      if (state === null) send({ type: "decode", fragment: location.hash });
      else send({ type: "init", model_url: MODEL_URL, backend: state.backend });
      break;
    case "decoded":
      state = msg.state;
      msg.notices.forEach(notice);
      applyStateToControls();
      send({ type: "init", model_url: MODEL_URL, backend: state.backend });
      break;
    case "progress": {
      const pct = msg.total > 0 ? Math.min(100, (100 * msg.loaded) / msg.total) : 0;
      $("progress-fill").style.width = `${pct.toFixed(1)}%`;
      $("progress").setAttribute("aria-valuenow", pct.toFixed(0));
      const mb = (x) => (x / 1e6).toFixed(1);
      $("progress-text").textContent = msg.cached
        ? `Loading the model from this browser's cache: ${mb(msg.loaded)} / ${mb(msg.total)} MB (${pct.toFixed(0)}%)`
        : `Downloading the model (once): ${mb(msg.loaded)} / ${mb(msg.total)} MB (${pct.toFixed(0)}%)`;
      break;
    }
    case "ready":
      ready = true;
      backend = msg.backend;
      $("backend").textContent = msg.backend;
      $("backend").title = `${msg.adapter}; loaded in ${(msg.load_ms / 1000).toFixed(1)} s`;
      $("loading").hidden = true;
      $("failure").hidden = true;
      if (msg.fallback) notice(msg.fallback);
      update();
      break;
    case "frame":
      if (msg.frame.seq !== seq) return; // stale: a newer request is on its way
      draw(msg, data.pixels, data.heat);
      break;
    case "error":
      if (msg.seq != null && msg.seq !== seq) return;
      if (!ready) {
        $("loading").hidden = true;
        fail(`The model could not be loaded: ${msg.message}`);
      } else {
        fail(msg.message);
      }
      break;
    case "lab":
      drawLab(msg.lab, msg.bitmaps, data.pixels);
      break;
    case "fatal":
      onFatal(msg.message);
      break;
  }
}

function update() {
  if (!ready || !state) return;
  seq += 1;
  setStatus("working", "Analysing…");
  send({ type: "update", seq, state });
}

function applyStateToControls() {
  $("prompt").value = state.prompt;
  $("format").value = state.format;
  $("eps").value = state.eps;
  $("eps-value").value = Number(state.eps).toFixed(2);
  $("scale").value = state.scale;
  $("drop-first").checked = state.drop_first;
  $("backend-choice").value = state.backend || "";
  showView(state.view);
}

function showView(view) {
  document.querySelectorAll(".tabs button").forEach((b) => b.setAttribute("aria-selected", String(b.dataset.view === view)));
  document.querySelectorAll(".view").forEach((v) => (v.hidden = v.dataset.view !== view));
  document.querySelector(".head-only").hidden = view === "lab";
  if (view === "lab" && worker && !labShown) {
    labShown = true;
    send({ type: "lab-show" });
  }
}

let labShown = false;
function drawLab(lab, names, pixels) {
  putBitmaps(names, pixels, [["lab-loss", "lab_loss"], ["lab-attn1", "lab_attn1"], ["lab-attn2", "lab_attn2"], ["lab-pca", "lab_pca"]]);
  const v = lab.verdict;
  const [minCatch, minRelease, maxRel] = lab.thresholds.map((x) => +x.toFixed(3));
  $("lab-epoch").textContent = lab.source === "checkpoint"
    ? `pre-trained checkpoint (seed ${lab.seed}, ${lab.epochs} epochs) — press Start to train a new model`
    : `seed ${lab.seed} · epoch ${lab.epoch} of ${lab.epochs}${lab.running ? " · training…" : ""}` +
      (lab.losses.length ? ` · loss ${lab.losses[lab.losses.length - 1].toExponential(2)}` : "");
  $("lab-epoch").dataset.epoch = lab.epoch;
  $("lab-epoch").dataset.losses = JSON.stringify(lab.losses);
  $("lab-verdict").innerHTML = "";
  const verdict = document.createElement("span");
  verdict.className = v.emerged ? "ok" : "no";
  verdict.textContent = v.emerged ? "catch, tag and release emerged" : "not (yet) the mechanism";
  $("lab-verdict").append(
    verdict,
    ` · catch: [SEP] gets ${v.catch.toFixed(2)} of post-[SEP] attention in layer 1 (needs ≥ ${minCatch})` +
    ` · release: the last query puts ${v.release.toFixed(2)} on post-[SEP] numbers in layer 2 (needs ≥ ${minRelease})` +
    ` · test RMSE ${v.rmse.toFixed(4)} vs ${v.baseline_rmse.toFixed(4)} for a constant (needs ≤ ${maxRel}×)`);
  $("lab-verdict").dataset.emerged = v.emerged;
  const sinks = (l) => lab.sinks[l].map((k) => lab.tokens[k]).join(", ") || "none";
  $("lab-cap1").textContent = `layer 1 attention · sinks (alpha > 0.2): ${sinks(0)}`;
  $("lab-cap2").textContent = `layer 2 attention · sinks: ${sinks(1)}`;
  $("lab-pca-cap").textContent = `layer-1 head outputs of 24 sequences, PCA (${(100 * lab.pca_explained[0]).toFixed(0)}% + ${(100 * lab.pca_explained[1]).toFixed(0)}%): orange = caught by [SEP]`;
  $("lab-tokens").textContent = `probe sequence (rows and columns of the maps): ${lab.tokens.join(" ")}`;
  $("lab-start").disabled = lab.running;
}

// The bitmaps of a reply by name ([name, width, height] with their pixel buffers in order); those
// named in `targets` ([canvas id, bitmap name]) are drawn.
function putBitmaps(names, pixels, targets) {
  const bitmaps = {};
  names.forEach(([name, w, h], i) => (bitmaps[name] = { w, h, px: pixels[i] }));
  for (const [id, name] of targets) {
    const b = bitmaps[name];
    if (b) putBitmap($(id), b.w, b.h, new Uint8ClampedArray(b.px));
  }
  return bitmaps;
}

function putBitmap(canvas, w, h, pixels) {
  canvas.width = w;
  canvas.height = h;
  canvas.getContext("2d").putImageData(new ImageData(pixels, w, h), 0, 0);
}

function draw(msg, pixels, heatValues) {
  const f = msg.frame;
  frame = f;
  heat = heatValues;
  state = f.state;
  history.replaceState(null, "", `#${f.fragment}`);
  $("share-url").value = location.href;
  f.notices.forEach(notice);
  $("failure").hidden = true;
  $("hint").hidden = !f.hint;
  $("hint").textContent = f.hint || "";
  if (document.activeElement !== $("prompt") && $("prompt").value !== f.state.prompt) $("prompt").value = f.state.prompt;

  const bitmaps = putBitmaps(msg.bitmaps, pixels, [["legend", "legend"], ["heat-legend", "legend"], ["rel-legend", "legend_signed"]]);

  // Token strip.
  const strip = $("tokens");
  strip.replaceChildren(...f.tokens.map((t) => {
    const el = document.createElement("span");
    el.className = "tok";
    el.dataset.testid = "token";
    el.setAttribute("data-testid", "token");
    el.dataset.index = t.index;
    el.dataset.sinkHeads = t.sink_heads;
    el.style.background = t.color;
    el.title = t.title;
    el.textContent = t.text;
    return el;
  }));

  const s = f.summary;
  if (s) {
    const top = f.top_next.map((n) => `${JSON.stringify(n.text)} ${(100 * n.prob).toFixed(0)}%`).join(", ");
    const cut = f.tokens_before_cut > f.tokens.length ? ` (cut from ${f.tokens_before_cut})` : "";
    const tm = f.timing;
    $("summary").textContent =
      `${f.tokens.length} tokens${cut} · at eps ${s.eps.toFixed(2)}: ${s.avg_sinks.toFixed(2)} sinks per head on average, ` +
      `first-token sink in ${(100 * s.sink_rate_overall).toFixed(0)}% of heads · next: ${top}` +
      (tm ? ` · ${backend}: ` + (tm.computed_tokens ? `forward ${tm.forward_ms.toFixed(0)} ms (${tm.computed_tokens} new tokens), ` : "model output reused, ") + `analysis ${tm.analysis_ms.toFixed(0)} ms` : "");
    drawOverview(s, f.state.layer, f.state.head);
  } else {
    $("summary").textContent = "";
    $("overview").replaceChildren();
  }

  // Selected head.
  const h = f.head;
  $("head-title").textContent = h ? `Layer ${h.layer}, head ${h.head}` : "";
  $("head-stats").textContent = h
    ? (h.sinks.length
      ? `sinks (alpha > eps): ${h.sinks.map((k) => `${k} ${JSON.stringify(f.tokens[k].text)} (${h.alpha[k].toFixed(2)})`).join(", ")} · ` +
        `tags span ${h.rank} dim · variance of A·V explained by the tag span ${h.variance_explained.toFixed(3)} (squared ${h.variance_explained_sq.toFixed(3)})`
      : "no sink at this eps")
    : "";
  if (bitmaps.heatmap) {
    const b = bitmaps.heatmap;
    putBitmap($("heatmap"), b.w, b.h, new Uint8ClampedArray(b.px));
    const labels = $("row-labels");
    labels.replaceChildren(...(f.tokens.length <= 64 ? f.tokens : []).map((t) => {
      const d = document.createElement("div");
      d.textContent = t.text;
      return d;
    }));
    $("heat-lo").textContent = f.state.scale === "log" ? "10⁻⁴" : "0";
  }
  drawScatter("pca-in", f.pca_in, bitmaps, "head input (RMS-normalised residual)");
  drawScatter("pca-out", f.pca_out, bitmaps, "head output A·V");
  $("sink-legend").replaceChildren(...(h ? h.sinks : []).map((k, i) => {
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = "sw";
    sw.style.background = h.sink_colors[i];
    li.append(sw, `caught by ${k} ${JSON.stringify(f.tokens[k].text)} (tag alone explains ${h.per_tag_explained[i].toFixed(2)})`);
    return li;
  }));
  if (f.release && bitmaps.release) {
    const b = bitmaps.release;
    putBitmap($("release"), b.w, b.h, new Uint8ClampedArray(b.px));
    $("release-labels").replaceChildren(...f.release.layers.map((l) => {
      const d = document.createElement("div");
      d.textContent = `L${l}`;
      return d;
    }));
    $("release-cols").replaceChildren(...(f.tokens.length <= 40 ? f.tokens : []).map((t) => {
      const d = document.createElement("div");
      d.textContent = t.text;
      return d;
    }));
    $("rel-lo").textContent = `−${f.release.max_abs.toFixed(2)}`;
    $("rel-hi").textContent = f.release.max_abs.toFixed(2);
  }
  showView(f.state.view);
  const st = $("status");
  st.dataset.forwardMs = f.timing ? f.timing.forward_ms.toFixed(1) : "";
  st.dataset.analysisMs = f.timing ? f.timing.analysis_ms.toFixed(1) : "";
  st.dataset.computed = f.timing ? f.timing.computed_tokens : "";
  setStatus("ready", f.hint ? "Waiting for a prompt" : "Ready");
  keepOfflineCopy();
}

function drawScatter(id, sc, bitmaps, caption) {
  if (!sc || !bitmaps[sc.bitmap]) return;
  const b = bitmaps[sc.bitmap];
  putBitmap($(id), b.w, b.h, new Uint8ClampedArray(b.px));
  $(`${id}-cap`).textContent = `${caption} · PC1 ${(100 * sc.explained[0]).toFixed(0)}%, PC2 ${(100 * sc.explained[1]).toFixed(0)}% of variance`;
}

function drawOverview(s, layer, head) {
  const grid = $("overview");
  grid.style.gridTemplateColumns = `auto repeat(${s.n_heads}, 26px)`;
  const cells = [];
  for (let l = 0; l < s.n_layers; l++) {
    const lbl = document.createElement("div");
    lbl.className = "lbl";
    lbl.textContent = `L${l}`;
    cells.push(lbl);
    for (let h = 0; h < s.n_heads; h++) {
      const i = l * s.n_heads + h;
      const c = document.createElement("div");
      c.className = "cell" + (l === layer && h === head ? " sel" : "");
      c.setAttribute("data-testid", "head-cell");
      c.dataset.layer = l;
      c.dataset.head = h;
      c.style.background = s.head_colors[i];
      c.title = `layer ${l} head ${h}: strength ${s.head_strength[i].toFixed(2)}, ${s.head_sinks[i]} sink(s)`;
      cells.push(c);
    }
  }
  grid.replaceChildren(...cells);
}

// Hover read-outs (index arithmetic only).
function cellAt(canvas, ev, w, h) {
  const r = canvas.getBoundingClientRect();
  const x = Math.floor(((ev.clientX - r.left) / r.width) * w);
  const y = Math.floor(((ev.clientY - r.top) / r.height) * h);
  return x >= 0 && y >= 0 && x < w && y < h ? [x, y] : null;
}

$("heatmap").addEventListener("mousemove", (ev) => {
  if (!frame || !heat) return;
  const t = frame.tokens.length;
  const c = cellAt($("heatmap"), ev, t, t);
  if (!c) return;
  const [k, q] = c;
  const v = heat[q * t + k];
  const tok = (i) => JSON.stringify(frame.tokens[i].text);
  $("heat-readout").textContent = Number.isNaN(v)
    ? `query ${q} ${tok(q)} → key ${k} ${tok(k)}: not shown (${k > q ? "future token" : "first token dropped"})`
    : `query ${q} ${tok(q)} → key ${k} ${tok(k)}: ${v.toFixed(4)}`;
});

$("release").addEventListener("mousemove", (ev) => {
  if (!frame || !frame.release) return;
  const t = frame.tokens.length;
  const L = frame.release.layers.length;
  const c = cellAt($("release"), ev, t, L);
  if (!c) return;
  const [tk, li] = c;
  $("release-readout").textContent =
    `after layer ${frame.release.layers[li]}, token ${tk} ${JSON.stringify(frame.tokens[tk].text)}: cosine ${frame.release.cosine[li * t + tk].toFixed(3)}`;
});

for (const id of ["pca-in", "pca-out"]) {
  $(id).addEventListener("mousemove", (ev) => {
    const sc = frame && (id === "pca-in" ? frame.pca_in : frame.pca_out);
    if (!sc) return;
    const r = $(id).getBoundingClientRect();
    const x = ((ev.clientX - r.left) / r.width) * 300;
    const y = ((ev.clientY - r.top) / r.height) * 300;
    let best = -1, bd = 64;
    sc.px.forEach(([px, py], i) => {
      const d = (px - x) ** 2 + (py - y) ** 2;
      if (d < bd) { bd = d; best = i; }
    });
    if (best >= 0) {
      const t = frame.tokens[best];
      $("pca-readout").textContent = `token ${best} ${JSON.stringify(t.text)}` + (t.caught_by != null ? `, caught by ${t.caught_by}` : ", not caught");
    }
  });
}

// Controls.
$("prompt").addEventListener("input", () => {
  state.prompt = $("prompt").value;
  clearTimeout(debounce);
  debounce = setTimeout(update, DEBOUNCE_MS);
});
$("format").addEventListener("change", () => { state.format = $("format").value; update(); });
$("eps").addEventListener("input", () => {
  state.eps = Number($("eps").value);
  $("eps-value").value = state.eps.toFixed(2);
  clearTimeout(debounce);
  debounce = setTimeout(update, 60);
});
$("eps-paper").onclick = () => { state.eps = 0.2; applyStateToControls(); update(); };
$("eps-gu").onclick = () => { state.eps = 0.3; applyStateToControls(); update(); };
$("scale").addEventListener("change", () => { state.scale = $("scale").value; update(); });
$("drop-first").addEventListener("change", () => { state.drop_first = $("drop-first").checked; update(); });
$("backend-choice").addEventListener("change", () => {
  state.backend = $("backend-choice").value || null;
  gpuLostOnce = false;
  startWorker(); // the model comes back from Cache Storage
});
$("overview").addEventListener("click", (ev) => {
  const c = ev.target.closest("[data-testid=head-cell]");
  if (!c) return;
  state.layer = Number(c.dataset.layer);
  state.head = Number(c.dataset.head);
  update();
});
document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => {
  state.view = b.dataset.view;
  showView(state.view);
  update();
}));
const labSeed = () => Math.max(0, Math.min(100000, Number($("lab-seed").value) || 0));
$("lab-start").addEventListener("click", () => send({ type: "lab-start", seed: labSeed() }));
$("lab-pause").addEventListener("click", () => send({ type: "lab-pause" }));
$("lab-reset").addEventListener("click", () => send({ type: "lab-reset", seed: labSeed() }));
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
  startWorker();
});
window.addEventListener("hashchange", () => {
  if (frame && location.hash === `#${frame.fragment}`) return;
  state = null;
  $("notices").replaceChildren();
  startWorker();
});

// Offline once loaded: the service worker keeps the page's own files (not the prompt: that lives in
// the fragment, which no request carries). Registered after the first picture, so that its copying
// does not compete with the first load.
let offlineAsked = false;
function keepOfflineCopy() {
  if (offlineAsked || !("serviceWorker" in navigator)) return;
  offlineAsked = true;
  navigator.serviceWorker.register("sw.js").catch((e) => console.warn("sinkscope: no offline copy of the page:", e));
}

// Test hook (documented in the README): simulate a lost GPU device.
window.sinkscopeLoseDevice = () => send({ type: "lose-device" });

startWorker();

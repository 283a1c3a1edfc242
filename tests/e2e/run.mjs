// End-to-end tests of the page in real headless Chromium (Debian's, driven by playwright-core).
// Serves dist/ on 127.0.0.1, loads the page, waits for the model, types, clicks, reloads links.
// Screenshots go to tests/e2e/screenshots/ (git-ignored). Ends with "N passed, N failed".
//
// Usage: node tests/e2e/run.mjs [--only NAME]

import { mkdirSync, writeFileSync, readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";
import { serve } from "./serve.mjs";
import { launch, waitReady, LOAD_TIMEOUT } from "./browser.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");

const SHOTS = join(here, "screenshots");
mkdirSync(SHOTS, { recursive: true });

const args = process.argv.slice(2);
const only = args.includes("--only") ? args[args.indexOf("--only") + 1] : null;
const skip = args.includes("--skip") ? args[args.indexOf("--skip") + 1] : null; // e.g. --skip WebGPU while iterating
const EXAMPLE = "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is Rome.";

/** Type into the prompt as a user would, then wait for the new picture. */
async function typePrompt(page, text) {
  await page.fill("[data-testid=prompt]", "");
  await page.type("[data-testid=prompt]", text, { delay: 5 });
  await page.waitForFunction((t) => {
    const s = document.querySelector("[data-testid=status]");
    return s.dataset.state === "working" || decodeURIComponent(location.hash).includes(t.slice(0, 8));
  }, text, { timeout: 10_000 }).catch(() => {});
  await waitReady(page);
}

/** Click (or run `action`) and wait until the page has drawn the new picture. */
async function act(page, action) {
  const before = await page.evaluate(() => document.querySelector("[data-testid=status]").dataset.forwardMs + "|" + location.hash);
  await action();
  await page.waitForTimeout(80);
  await waitReady(page);
  return before;
}

async function tokens(page) {
  return page.$$eval("[data-testid=token]", (els) => els.map((e) => ({
    text: e.textContent, index: Number(e.dataset.index), sinkHeads: Number(e.dataset.sinkHeads), cls: e.className,
  })));
}

async function headStats(page) {
  return page.$eval("[data-testid=head-stats]", (e) => ({
    layer: Number(e.dataset.layer), head: Number(e.dataset.head), sinks: e.dataset.sinks ? e.dataset.sinks.split(",").map(Number) : [], text: e.textContent,
  }));
}

async function heatmapStats(page) {
  return page.$eval("[data-testid=heatmap]", (c) => {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let shown = 0;
    const px = [];
    for (let i = 0; i < d.length; i += 4) {
      const masked = d[i] === 236 && d[i + 1] === 236 && d[i + 2] === 240;
      if (!masked) shown++;
      px.push(d[i], d[i + 1], d[i + 2]);
    }
    return { w: c.width, h: c.height, shown, first: [d[0], d[1], d[2]], hash: px.join(",") };
  });
}

async function figures(page, view) {
  return page.$$eval(`#figs-${view} img`, (els) => els.map((e) => ({ name: e.dataset.name, alt: e.alt, w: e.naturalWidth, src: e.src })));
}

async function notices(page) {
  return page.$$eval("#notices li span", (els) => els.map((e) => e.textContent));
}

function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

/** The worker's kernel self-check (`quant::self_check`): {cases, failures, relaxed_simd}. */
async function kernelCheck(page) {
  await page.evaluate(() => { delete document.body.dataset.kernelCheck; window.sinkscopeKernelCheck(); });
  await page.waitForFunction(() => document.body.dataset.kernelCheck, null, { timeout: 60_000 });
  return JSON.parse(await page.evaluate(() => document.body.dataset.kernelCheck));
}

/** A fresh browser profile with one page whose uncaught errors (and Content-Security-Policy
 * violations, as `csp: …`) are collected. */
async function openBrowser({ webgpu, viewport }) {
  const { context, close } = await launch({ webgpu, viewport });
  await context.addInitScript(() => document.addEventListener("securitypolicyviolation", (e) => (window.__csp = window.__csp || []).push(`${e.violatedDirective} ${e.blockedURI}`)));
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error" && /Content.Security.Policy/i.test(m.text())) errors.push(`csp: ${m.text()}`); });
  return { context, page, errors, close };
}

const results = [];
async function test(name, fn) {
  if ((only && !name.includes(only)) || (skip && name.includes(skip))) return;
  const t0 = Date.now();
  try {
    await fn();
    results.push([name, true]);
    console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (e) {
    results.push([name, false]);
    console.log(`FAIL ${name}: ${e.stack || e}`);
  }
}

/** A downloaded file's name and bytes, after `click`. */
async function download(page, click) {
  const [dl] = await Promise.all([page.waitForEvent("download", { timeout: 60_000 }), click()]);
  const path = await dl.path();
  return { name: dl.suggestedFilename(), bytes: readFileSync(path) };
}

/** Numbers equal within `tol`, everything else exactly (the model field aside). */
function sameJson(a, b, tol, path = "") {
  if (typeof a === "number" && typeof b === "number") {
    if (Math.abs(a - b) > tol * (1 + Math.abs(b))) throw new Error(`${path}: ${a} vs ${b}`);
    return;
  }
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) throw new Error(`${path}: length ${a.length} vs ${b && b.length}`);
    a.forEach((x, i) => sameJson(x, b[i], tol, `${path}[${i}]`));
    return;
  }
  if (a && typeof a === "object") {
    const keys = new Set([...Object.keys(a), ...Object.keys(b || {})]);
    for (const k of keys) if (k !== "model") sameJson(a[k], b[k], tol, `${path}.${k}`);
    return;
  }
  if (a !== b) throw new Error(`${path}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
}

const server = await serve(join(root, "dist"));
const base = `http://127.0.0.1:${server.port}/`;
console.log(`serving dist/ at ${base}`);

// Chromium's WebGPU here is SwiftShader, a CPU emulation in which one forward pass of this model takes
// minutes. The page never picks such a software adapter by itself; the WebGPU tests ask for it by name
// (b=webgpu) on one short prompt (correctness, agreement with the CPU, the lost-device fallback), and
// the UI behaviour is tested on the CPU backend.
const SHORT = "Hello, world! This is a test.";
let gpuSinkHeads = null;
let gpuJson = null; // the analysis exported from the WebGPU backend, compared with the CPU's below
let relaxed = null; // the relaxed-SIMD CPU build's link and analysis, compared with the plain build's

// --- WebGPU (SwiftShader's software adapter) ------------------------------------------------------
{
  const { context, page, errors, close } = await openBrowser({ webgpu: true });

  await test("WebGPU: a software adapter is not chosen automatically", async () => {
    await page.goto(`${base}#p=`);
    await waitReady(page);
    assert(await page.textContent("[data-testid=backend]") === "cpu", "cpu when only SwiftShader is offered");
    assert((await notices(page)).some((n) => /software WebGPU adapter/.test(n)), `notice: ${await notices(page)}`);
  });

  await test("WebGPU: a worker panic is reported as an internal error, not as a lost GPU", async () => {
    const p = await context.newPage();
    await p.goto(`${base}#p=&b=webgpu`);
    await waitReady(p);
    assert(await p.textContent("[data-testid=backend]") === "webgpu", "webgpu asked for by name");
    await p.evaluate(() => window.sinkscopePanic());
    await p.waitForFunction(() => document.querySelector("[data-testid=status]").dataset.state === "error", null, { timeout: 30_000 });
    const msg = await p.textContent("#failure-text");
    assert(/internal error/.test(msg) && /deliberate panic/.test(msg), `the panic's own message: ${msg}`);
    assert(!(await p.$$eval("#notices li span", (e) => e.map((x) => x.textContent))).some((n) => /GPU device was lost/.test(n)), "not called a lost GPU");
    assert(await p.textContent("[data-testid=backend]") === "webgpu", "no silent switch to the CPU");
    await p.close();
  });

  await test("WebGPU by name: first-token sink, heatmap drawn, slow first picture offers the CPU", async () => {
    // the offer appears when a WebGPU picture takes longer than 8 s; the test hook shortens that so
    // that the test does not depend on how fast SwiftShader happens to be
    await page.addInitScript(() => { window.sinkscopeSlowGpuMs = 1000; });
    await page.goto(`${base}#p=${encodeURIComponent(SHORT)}&b=webgpu&v=heatmap`);
    await page.waitForFunction(() => [...document.querySelectorAll("#notices li span")].some((e) => /WebGPU is slow/.test(e.textContent)), null, { timeout: 120_000 });
    await waitReady(page, 600_000);
    assert(await page.textContent("[data-testid=backend]") === "webgpu", "backend badge says webgpu");
    const toks = await tokens(page);
    assert(toks.length === 9, `9 tokens, got ${toks.length}`);
    assert(toks[0].text === "Hello", "first token");
    assert(toks[0].sinkHeads === Math.max(...toks.map((t) => t.sinkHeads)) && toks[0].sinkHeads > 100, `token 0 is the strongest sink (${toks[0].sinkHeads})`);
    const hm = await heatmapStats(page);
    assert(hm.w === 9 && hm.shown === 45, `heatmap 9x9 with 45 visible cells: ${hm.w} ${hm.shown}`);
    gpuSinkHeads = toks.map((t) => t.sinkHeads);
    // the dense, pattern × values and attention-pattern kernels against the CPU on ragged shapes
    const check = await kernelCheck(page);
    assert(check.device_cases === 3 && check.failures.length === 0, `WebGPU kernels against the CPU: ${JSON.stringify(check)}`);
    // the numbers behind the picture (the export reuses the trace: no second forward)
    gpuJson = JSON.parse((await download(page, () => page.click("[data-testid=export-json]"))).bytes.toString("utf8"));
    await page.screenshot({ path: join(SHOTS, "01-webgpu.png"), fullPage: true });
  });

  await test("WebGPU: a lost GPU device falls back to the CPU and re-runs the prompt", async () => {
    const said = [];
    const listen = (m) => { if (m.text().startsWith("sinkscope:") || m.type() === "error" || m.type() === "warning") said.push(`${m.type()}: ${m.text()}`.slice(0, 400)); };
    page.on("console", listen);
    await page.evaluate(() => window.sinkscopeLoseDevice());
    await page.type("[data-testid=prompt]", " Again");
    // the device's lost promise moves the page to the CPU at once, even if a forward in flight never ends
    try {
      await page.waitForFunction(() => document.querySelector("[data-testid=backend]").textContent === "cpu", null, { timeout: 120_000 });
    } catch (e) {
      // what the page showed, for a failure that has not been reproduced here (one CI run)
      const seen = await page.evaluate(() => ({ backend: document.querySelector("[data-testid=backend]").textContent, status: document.querySelector("[data-testid=status]").dataset.state, loading: document.querySelector("#progress-text")?.textContent, summary: document.querySelector("#summary")?.textContent, events: window.sinkscopeEvents }));
      throw new Error(`${e.message}; page: ${JSON.stringify(seen)}; notices: ${JSON.stringify(await notices(page))}; console: ${JSON.stringify(said)}`);
    } finally {
      page.off("console", listen);
    }
    console.log(`     ${said.find((m) => m.includes("device-lost")) || "(no worker message seen)"}`);
    await waitReady(page);
    const toks = await tokens(page);
    assert(toks.length === 10 && toks[9].text === " Again", `re-ran the current prompt on the CPU: ${toks.map((t) => t.text)}`);
    assert((await notices(page)).some((n) => n.includes("GPU device was lost")), "notice shown");
    await page.screenshot({ path: join(SHOTS, "02-device-lost.png"), fullPage: true });
  });

  await test("WebGPU: Gemma 3's block kernels (Q5_0, Q8_0, Q4_K, Q6_K) and its split 262k-row embedding agree with the CPU", async () => {
    const prompt = "Paris is in France.";
    const run = async (b) => {
      const p = await context.newPage();
      await p.goto(`${base}#p=${encodeURIComponent(prompt)}&m=gemma3&b=${b}`);
      await waitReady(p, 900_000);
      assert(await p.textContent("[data-testid=backend]") === b, `backend ${b}`);
      const json = JSON.parse((await download(p, () => p.click("[data-testid=export-json]"))).bytes.toString("utf8"));
      await p.close();
      return json;
    };
    const gpu = await run("webgpu");
    const cpu = await run("cpu");
    assert(gpu.tokens[0].text === "<bos>" && gpu.tokens.length === cpu.tokens.length, "same tokens, <bos> first");
    let worst = 0;
    gpu.alpha.forEach((l, li) => l.forEach((h, hi) => h.forEach((a, k) => { worst = Math.max(worst, Math.abs(a - cpu.alpha[li][hi][k])); })));
    assert(worst <= 1e-3, `alphas agree within 1e-3: ${worst}`);
    assert(JSON.stringify(gpu.token_sink_heads) === JSON.stringify(cpu.token_sink_heads), `sink counts ${gpu.token_sink_heads} vs ${cpu.token_sink_heads}`);
    assert(gpu.top_next[0].id === cpu.top_next[0].id, "same next token");
    console.log(`     Gemma 3 on WebGPU vs CPU: worst alpha difference ${worst.toExponential(2)}`);
  });

  await test("WebGPU: no uncaught page errors", async () => {
    assert(errors.length === 0, JSON.stringify(errors));
  });
  await close();
}

// --- CPU: a browser without WebGPU ----------------------------------------------------------------
{
  const { context, page, errors, close } = await openBrowser({ webgpu: false });
  let link = null;

  await test("first visit: CPU backend with a notice, the example on its two-sink head, Tags view", async () => {
    const wasm = page.waitForResponse((r) => r.url().endsWith(".wasm"));
    const res = await page.goto(base);
    const csp = res.headers()["content-security-policy"] || "";
    assert(csp.includes("script-src 'self' 'wasm-unsafe-eval'") && csp.includes("default-src 'self'") && !csp.includes("unsafe-inline"), `strict CSP header: ${csp}`);
    assert((await wasm).headers()["content-encoding"] === "gzip", "the wasm is sent compressed");
    await page.waitForSelector("#progress-text");
    await waitReady(page);
    assert(await page.textContent("[data-testid=backend]") === "cpu", "backend badge says cpu");
    assert((await notices(page)).some((n) => /WebGPU is not available/.test(n)), "fallback notice");
    const toks = await tokens(page);
    assert(toks.map((t) => t.text).join("") === EXAMPLE, `the example: ${toks.map((t) => t.text).join("|")}`);
    const max = Math.max(...toks.map((t) => t.sinkHeads));
    assert(toks[0].sinkHeads === max && max > 100, `token 0 is the strongest sink (${toks[0].sinkHeads} heads)`);
    assert(toks[toks.length - 1].cls.includes("nocand") && toks[toks.length - 1].sinkHeads === 0, "the last token is no sink candidate");
    assert((await page.textContent("#token-note")).includes("can't be sinks"), "the page says so in one line");
    assert((await page.$$("[data-testid=head-cell]")).length === 270, "30 x 9 head cells");
    const hs = await headStats(page);
    assert(hs.sinks.length >= 2, `opens on a head with two or more sinks: ${JSON.stringify(hs)}`);
    assert(await page.isVisible("#figs-tags"), "Tags view shown");
    const figs = await figures(page, "tags");
    assert(figs.map((f) => f.name).join(",") === "pca_in,pca_out,tag_cosine", `figures ${figs.map((f) => f.name)}`);
    assert(figs.every((f) => f.w > 100 && f.alt.length > 20), "figures drawn, with text alternatives");
    const summary = await page.textContent("#summary");
    assert(/next: “ The” \d+%/.test(summary), `the top next token: ${summary}`);
    await page.screenshot({ path: join(SHOTS, "03-first-visit.png"), fullPage: true });
  });

  await test("CPU: the relaxed-SIMD build runs here, and its block kernels agree with the portable ones", async () => {
    if (page.url() === "about:blank") { // run alone (--only)
      await page.goto(`${base}#p=${encodeURIComponent(EXAMPLE)}&b=cpu`);
      await waitReady(page, LOAD_TIMEOUT);
    }
    let check = await kernelCheck(page);
    assert(check.relaxed_simd === true, "Chromium validates relaxed SIMD, so the page runs that build");
    assert(check.cases >= 80 && check.failures.length === 0, `kernel check: ${JSON.stringify(check)}`);
    // the page is cross-origin isolated, so the CPU worker starts one helper worker per further core
    // (at most 3)
    const { isolated, cores } = await page.evaluate(() => ({ isolated: window.crossOriginIsolated, cores: navigator.hardwareConcurrency }));
    assert(isolated === true, "the page is cross-origin isolated (COOP and COEP from scripts/serve.py)");
    const want = Math.min(cores - 1, 3);
    for (let i = 0; i < 40 && check.helpers < want; i++) { await page.waitForTimeout(250); check = await kernelCheck(page); }
    assert(check.helpers === want, `helpers ready: ${check.helpers} on ${cores} cores`);
    assert(want === 0 || /threads: this worker and \d helper/.test(await page.getAttribute("#backend", "title")), "the backend badge's tooltip says how many threads");
    // a full forward (another first token) with the helpers ready: they compute parts of it, and its
    // numbers are what the other CPU pages compare with
    const prompt = `In short: ${EXAMPLE}`;
    await page.fill("[data-testid=prompt]", prompt);
    await page.waitForFunction((p) => decodeURIComponent(location.hash).includes(p.slice(0, 12)), prompt, { timeout: 10_000 });
    await waitReady(page);
    const json = JSON.parse((await download(page, () => page.click("[data-testid=export-json]"))).bytes.toString("utf8"));
    const after = await kernelCheck(page);
    if (want > 0) assert(after.helper_parts > check.helper_parts, `the helpers computed parts of that forward: ${check.helper_parts} → ${after.helper_parts}`);
    relaxed = { hash: await page.evaluate(() => location.hash), json, helpers: check.helpers };
  });

  await test("CPU: one more word (incremental forward on the fused kernels) gives a fresh full forward's numbers", async () => {
    if (page.url() === "about:blank") { // run alone (--only)
      await page.goto(`${base}#p=${encodeURIComponent(EXAMPLE)}&b=cpu`);
      await waitReady(page, LOAD_TIMEOUT);
    }
    await page.focus("[data-testid=prompt]");
    await page.keyboard.press("End");
    await page.keyboard.type(" Spain", { delay: 5 });
    await page.waitForFunction(() => decodeURIComponent(location.hash).includes("Spain"), null, { timeout: 10_000 });
    await waitReady(page);
    const summary = await page.textContent("#summary");
    const m = summary.match(/\((\d+) new tokens\)/);
    assert(m && Number(m[1]) >= 1 && Number(m[1]) <= 3, `an incremental forward of 1–3 tokens (the fused kernels): ${summary}`);
    const grown = JSON.parse((await download(page, () => page.click("[data-testid=export-json]"))).bytes.toString("utf8"));
    await page.reload();
    await waitReady(page, LOAD_TIMEOUT);
    const all = (await page.textContent("#summary")).match(/\((\d+) new tokens\)/);
    assert(all && Number(all[1]) === grown.tokens.length, `the reload computes every token: ${all}`);
    const fresh = JSON.parse((await download(page, () => page.click("[data-testid=export-json]"))).bytes.toString("utf8"));
    for (const key of ["alpha", "first_token_alpha", "top_next", "massive"]) sameJson(grown[key], fresh[key], 1e-4, key);
  });

  await test("CPU and WebGPU agree on the numbers of the same prompt (quantized kernels on both)", async () => {
    await typePrompt(page, SHORT);
    const cpu = (await tokens(page)).map((t) => t.sinkHeads);
    if (gpuSinkHeads === null && skip) return; // the WebGPU tests were skipped
    assert(gpuSinkHeads !== null && gpuJson !== null, "the WebGPU test ran");
    const diff = cpu.map((c, i) => Math.abs(c - gpuSinkHeads[i]));
    assert(cpu.length === gpuSinkHeads.length && Math.max(...diff) <= 2, `cpu ${cpu} vs webgpu ${gpuSinkHeads}`);
    const cpuJson = JSON.parse((await download(page, () => page.click("[data-testid=export-json]"))).bytes.toString("utf8"));
    // every attention-derived number within 1e-3, logits and residual norms within 1e-3 relative
    for (const key of ["alpha", "first_token_alpha", "top_next", "massive"]) sameJson(gpuJson[key], cpuJson[key], 1e-3, key);
  });

  await test("typing re-analyses; heatmap with labels and sink marks; URL follows", async () => {
    await act(page, () => page.click("#tab-heatmap"));
    await typePrompt(page, "The quick brown fox jumps over the lazy dog.");
    const toks = await tokens(page);
    assert(toks.length === 10, `10 tokens, got ${toks.length}: ${toks.map((t) => t.text)}`);
    assert(toks[0].text === "The" && toks[9].text === ".", "token texts");
    assert(toks[0].sinkHeads === Math.max(...toks.map((t) => t.sinkHeads)), "first token has the most sink heads");
    const hm = await heatmapStats(page);
    assert(hm.w === 10 && hm.h === 10 && hm.shown === 55, `heatmap T x T, lower triangle: ${hm.w}x${hm.h} ${hm.shown}`);
    assert(hm.first[0] > 200 && hm.first[1] > 200, `A[0,0] = 1 is drawn at the top of the colour map: ${hm.first}`);
    const cols = await page.$$eval("#col-labels div", (e) => e.map((x) => x.textContent));
    assert(cols.length === 10 && cols[1] === " quick", `column labels: ${JSON.stringify(cols)}`);
    const hs = await headStats(page);
    const marks = await page.$$eval("#heat-marks .mark", (e) => e.length);
    assert(marks === hs.sinks.length, `one mark per sink column (${marks} vs ${hs.sinks})`);
    const label = await page.getAttribute("[data-testid=heatmap]", "aria-label");
    assert(label.includes("10 by 10") && label.includes(`head ${hs.head}`), `text alternative: ${label}`);
    const hash = decodeURIComponent(await page.evaluate(() => location.hash));
    assert(hash.includes("The quick brown fox"), `URL fragment holds the prompt: ${hash}`);
    await page.screenshot({ path: join(SHOTS, "04-heatmap.png"), fullPage: true });
  });

  await test("grid colourings, the two-sink pick, eps, scale, views and empty states", async () => {
    await typePrompt(page, EXAMPLE);
    const colours = {};
    for (const mode of ["alpha", "sinks", "explained"]) {
      await act(page, () => page.selectOption("[data-testid=grid-colour]", mode));
      colours[mode] = await page.$$eval("[data-testid=head-cell]", (e) => e.map((c) => c.style.background).join("|"));
      assert((await page.evaluate(() => location.hash)).includes(`g=${mode}`), `g=${mode} in the link`);
      assert((await page.textContent("#grid-legend-title")).length > 5, "legend title");
    }
    assert(colours.alpha !== colours.sinks && colours.sinks !== colours.explained, "three different colourings");
    const sinkValues = await page.$$eval("[data-testid=head-cell]", (e) => e.map((c) => c.dataset.value));
    assert(sinkValues.some((v) => v === ""), "heads without sinks have no 'explained' value (grey)");
    await act(page, () => page.click("[data-testid=head-cell][data-layer='3'][data-head='2']"));
    assert((await headStats(page)).layer === 3, "clicked head selected");
    await act(page, () => page.click("[data-testid=pick-two-sink]"));
    const hs = await headStats(page);
    assert(hs.sinks.length >= 2, `the pick has two or more sinks: ${JSON.stringify(hs)}`);
    await act(page, () => page.selectOption("#scale", "log"));
    await act(page, () => page.click("#eps-gu"));
    const hash = await page.evaluate(() => location.hash);
    for (const part of ["eps=0.3", "s=log", `l=${hs.layer}`, `h=${hs.head}`]) assert(hash.includes(part), `${part} in ${hash}`);
    await act(page, () => page.click("#eps-paper"));
    for (const view of ["tags", "release", "heads"]) {
      await act(page, () => page.click(`#tab-${view}`));
      const figs = await figures(page, view);
      assert(figs.length >= 2 && figs.every((f) => f.w > 100), `${view}: ${JSON.stringify(figs.map((f) => [f.name, f.w]))}`);
      await page.screenshot({ path: join(SHOTS, `05-view-${view}.png`), fullPage: true });
    }
    // the Release view of a head without a sink says so (no stale picture of the previous head)
    await act(page, () => page.click("#tab-release"));
    await act(page, () => page.fill("#eps", "0.95").then(() => page.dispatchEvent("#eps", "input")));
    const rel = await figures(page, "release");
    assert(rel.every((f) => /no sink/.test(f.alt)), `release empty state: ${rel.map((f) => f.alt)}`);
    await act(page, () => page.click("#eps-paper"));
    // an emptied prompt clears every view
    await page.fill("[data-testid=prompt]", "");
    await page.waitForTimeout(400);
    await waitReady(page);
    assert((await figures(page, "release")).length === 0 && await page.isVisible("#figs-release .empty-state"), "release view empty state");
    assert(await page.isVisible("#hint"), "hint visible");
    await page.fill("[data-testid=prompt]", "  \n  ");
    await page.waitForTimeout(400);
    await waitReady(page);
    assert((await tokens(page)).length === 0 && await page.isVisible("#hint"), "whitespace is an empty prompt");
    await typePrompt(page, EXAMPLE);
  });

  await test("guided tour: every step renders, its caption matches the numbers; keys, link, Esc", async () => {
    await act(page, () => page.click("[data-testid=tour-start]"));
    const seen = [];
    const STEPS = 9;
    for (let step = 1; step <= STEPS; step++) {
      const cap = await page.$eval("[data-testid=tour-caption]", (e) => ({ text: e.textContent, step: Number(e.dataset.step), steps: Number(e.dataset.steps) }));
      assert(cap.step === step && cap.steps === STEPS, `step ${step}: ${JSON.stringify(cap)}`);
      assert((await page.evaluate(() => location.hash)).includes(`t=${step}`), "step in the link");
      seen.push(cap.text);
      if (step < 8) {
        const hs = await headStats(page);
        if (step === 1) assert(hs.sinks[0] === 0 && cap.text.includes(`Layer ${hs.layer}, head ${hs.head}`), `step 1 names its first-token head: ${cap.text}`);
        if (step === 2) {
          assert(hs.sinks.length >= 2 && cap.text.includes(`has ${hs.sinks.length} sinks`), `step 2: ${cap.text} vs ${hs.sinks}`);
          for (const k of hs.sinks) assert(cap.text.includes(`(token ${k}, alpha`), `sink ${k} named in: ${cap.text}`);
        }
      }
      await page.screenshot({ path: join(SHOTS, `06-tour-step-${step}.png`), fullPage: false });
      if (step === 8) await page.waitForFunction(() => document.querySelector("[data-testid=lab-verdict]").children.length > 0, null, { timeout: 60_000 });
      if (step < STEPS) await act(page, () => (step % 2 ? page.click("[data-testid=tour-next]") : page.keyboard.press("ArrowRight")));
    }
    assert(new Set(seen).size === STEPS, "nine different captions");
    // the last step opens the QK-norm comparison, which runs the second model
    await page.waitForFunction(() => document.querySelector("#view-qknorm").dataset.state === "ready", null, { timeout: 300_000 });
    await page.screenshot({ path: join(SHOTS, `06-tour-step-9-compared.png`), fullPage: false });
    await act(page, () => page.keyboard.press("ArrowLeft"));
    await act(page, () => page.keyboard.press("ArrowLeft"));
    assert(Number(await page.getAttribute("[data-testid=tour-caption]", "data-step")) === 7, "← goes back");
    await act(page, () => page.click("[data-testid=tour-back]"));
    const step6 = await page.textContent("[data-testid=tour-caption]");
    // the link reproduces the step
    const p2 = await context.newPage();
    await p2.goto(await page.evaluate(() => location.href));
    await waitReady(p2);
    assert(await p2.textContent("[data-testid=tour-caption]") === step6, "the same caption from the link");
    await p2.close();
    await act(page, () => page.keyboard.press("Escape"));
    assert(!(await page.isVisible("#tour")) && !(await page.evaluate(() => location.hash)).includes("t="), "Esc leaves the tour");
  });

  await test("projector mode: large labels at 1280x720, secondary controls hidden, in the link", async () => {
    await page.setViewportSize({ width: 1280, height: 720 });
    try {
    await act(page, () => page.click("[data-testid=projector]"));
    assert((await page.evaluate(() => location.hash)).includes("pm=1"), "pm=1 in the link");
    assert(!(await page.isVisible("#format")) && !(await page.isVisible("footer")), "secondary controls hidden");
    await act(page, () => page.click("[data-testid=tour-start]"));
    await act(page, () => page.click("[data-testid=tour-next]"));
    await act(page, () => page.click("[data-testid=tour-next]")); // step 3: the Tags view
    const sizes = await page.evaluate(async () => {
      const px = (sel) => [...document.querySelectorAll(sel)].filter((e) => e.offsetParent).map((e) => parseFloat(getComputedStyle(e).fontSize));
      const out = { dom: [...px("[data-testid=token]"), ...px("#tour-caption"), ...px("#head-stats"), ...px("button")] };
      // SVG text as drawn: its font size times the image's scale on screen
      out.svg = [];
      for (const img of document.querySelectorAll("#figs-tags img")) {
        const text = await fetch(img.src).then((r) => r.text());
        const doc = new DOMParser().parseFromString(text, "image/svg+xml");
        const scale = img.getBoundingClientRect().width / Number(doc.documentElement.getAttribute("width"));
        for (const t of doc.querySelectorAll("text")) out.svg.push(Number(t.getAttribute("font-size")) * scale);
      }
      return out;
    });
    assert(Math.min(...sizes.dom) >= 20, `DOM text >= 20 px: ${Math.min(...sizes.dom)}`);
    assert(sizes.svg.length > 10 && Math.min(...sizes.svg) >= 19.5, `figure labels >= 20 px: ${Math.min(...sizes.svg)}`);
    await page.screenshot({ path: join(SHOTS, "07-projector-1280x720.png") });
    await act(page, () => page.click("#tab-heatmap"));
    const rowLabel = await page.$eval("#row-labels", (e) => parseFloat(getComputedStyle(e).fontSize));
    assert(rowLabel >= 20, `heatmap labels ${rowLabel}px`);
    await page.screenshot({ path: join(SHOTS, "08-projector-heatmap.png") });
    } finally {
      // leave the page as the next tests expect it, whatever happened
      if (await page.isVisible("#tour")) await act(page, () => page.keyboard.press("Escape"));
      if (await page.getAttribute("[data-testid=projector]", "aria-pressed") === "true") await act(page, () => page.click("[data-testid=projector]"));
      await page.setViewportSize({ width: 1360, height: 1100 });
    }
  });

  await test("exports: PNG at 2x with labels, SVG that parses, JSON equal to the CLI's", async () => {
    await act(page, () => page.click("#tab-tags"));
    const svg = await download(page, () => page.click("[data-testid=export-svg]"));
    assert(/^sinkscope_.+_L\d+H\d+_tags_[0-9a-f]{8}\.svg$/.test(svg.name), `file name ${svg.name}`);
    const parsed = await page.evaluate((t) => {
      const d = new DOMParser().parseFromString(t, "image/svg+xml");
      return { error: d.querySelector("parsererror") !== null, w: Number(d.documentElement.getAttribute("width")), texts: d.querySelectorAll("text").length };
    }, svg.bytes.toString("utf8"));
    assert(!parsed.error && parsed.texts > 20, `SVG parses, with labels: ${JSON.stringify(parsed)}`);
    const png = await download(page, () => page.click("[data-testid=export-png]"));
    assert(png.name.endsWith(".png") && png.bytes.toString("latin1", 1, 4) === "PNG", "a PNG file");
    const pngWidth = png.bytes.readUInt32BE(16);
    assert(pngWidth >= 2 * parsed.w, `PNG ${pngWidth} px wide for a ${parsed.w} px figure`);
    await act(page, () => page.click("#tab-heatmap"));
    const heat = await download(page, () => page.click("[data-testid=export-png]"));
    assert(heat.name.includes("_heatmap_") && heat.bytes.readUInt32BE(16) >= 2 * 300, `heatmap PNG ${heat.name}`);
    const json = await download(page, () => page.click("[data-testid=export-json]"));
    const fromPage = JSON.parse(json.bytes.toString("utf8"));
    const cli = spawnSync("cargo", ["run", "--quiet", "--bin", "sinkscope", "--", "analyze", "--model", "www/models/SmolLM2-135M-Instruct.Q4_1.gguf", "--prompt", EXAMPLE, "--eps", "0.2", "--json"], { cwd: root, encoding: "utf8", maxBuffer: 1 << 28 });
    assert(cli.status === 0, `CLI ran: ${cli.stderr}`);
    sameJson(fromPage, JSON.parse(cli.stdout), 1e-4);
  });

  await test("keyboard: grid arrows and Enter, shortcuts behind ?, visible focus", async () => {
    await page.focus("[data-testid=head-cell].sel");
    const start = await headStats(page);
    await page.keyboard.press("ArrowDown");
    await page.keyboard.press("ArrowRight");
    const focused = await page.evaluate(() => ({ l: document.activeElement.dataset.layer, h: document.activeElement.dataset.head, outline: getComputedStyle(document.activeElement).outlineStyle }));
    assert(Number(focused.l) === Math.min(29, start.layer + 1) && Number(focused.h) === Math.min(8, start.head + 1), `focus moved: ${JSON.stringify(focused)}`);
    assert(focused.outline !== "none", "focus is visible");
    await act(page, () => page.keyboard.press("Enter"));
    const after = await headStats(page);
    assert(after.layer === Number(focused.l) && after.head === Number(focused.h), "Enter selects");
    await page.click("#head-title");
    await page.keyboard.press("?");
    assert(await page.isVisible("#help"), "? shows the shortcuts");
    await page.keyboard.press("Escape");
    assert(!(await page.isVisible("#help")), "Esc closes them");
    await act(page, () => page.keyboard.press("4"));
    assert((await page.evaluate(() => location.hash)).includes("v=heads"), "4: All heads");
    await act(page, () => page.keyboard.press("1"));
  });

  await test("accessibility: axe-core finds no serious or critical violation", async () => {
    const axe = readFileSync(join(root, "tools/node_modules/axe-core/axe.min.js"), "utf8");
    const check = async (label) => {
      // evaluated by the test driver (DevTools), not as a page script: the page's CSP forbids inline scripts
      await page.evaluate(axe);
      const res = await page.evaluate(async () => {
        const r = await window.axe.run(document, { resultTypes: ["violations"] });
        return r.violations.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => `${v.id}: ${v.nodes.slice(0, 3).map((n) => n.target).join(" ")}`);
      });
      assert(res.length === 0, `${label}: ${res.join("; ")}`);
    };
    await check("heatmap view");
    await act(page, () => page.click("#tab-tags"));
    await check("tags view");
    await act(page, () => page.click("[data-testid=tour-start]"));
    await check("tour");
    await act(page, () => page.keyboard.press("Escape"));
  });

  await test("copy link, open it: same state and the same picture (model from Cache Storage)", async () => {
    await act(page, () => page.click("#tab-heatmap"));
    await typePrompt(page, "The quick brown fox jumps over the lazy dog.");
    await act(page, () => page.click("[data-testid=head-cell][data-layer='18'][data-head='8']"));
    await act(page, () => page.click("#eps-gu"));
    await page.click("[data-testid=copy-link]");
    link = await page.inputValue("[data-testid=share-url]");
    assert(link.includes("#p="), `link ${link}`);
    const before = await heatmapStats(page);
    const toksBefore = await tokens(page);
    const page2 = await context.newPage();
    await page2.goto(link);
    await page2.waitForFunction(() => /cache/.test(document.querySelector("#progress-text").textContent) || document.querySelector("[data-testid=status]").dataset.state === "ready", null, { timeout: LOAD_TIMEOUT });
    const progress = await page2.textContent("#progress-text");
    await waitReady(page2);
    assert(/cache/i.test(progress), `second visit reads the model from the cache: ${progress}`);
    assert(await page2.inputValue("[data-testid=prompt]") === "The quick brown fox jumps over the lazy dog.", "prompt restored");
    assert((await page2.textContent("#head-title")).includes("Layer 18, head 8"), "head restored");
    assert(await page2.inputValue("#eps") === "0.3", "eps restored");
    const after = await heatmapStats(page2);
    assert(after.hash === before.hash, "identical heatmap pixels");
    assert(JSON.stringify(await tokens(page2)) === JSON.stringify(toksBefore), "identical token strip");
    await page2.close();
  });

  await test("links: + stays +, back/forward and edited links reuse the loaded model", async () => {
    const loads = await page.evaluate(() => document.body.dataset.loads);
    const workers = await page.evaluate(() => document.body.dataset.workers);
    await act(page, () => page.evaluate(() => { location.hash = "#p=1+1%3D2%2C%20so%3F&l=5&h=1&v=heatmap"; }));
    assert((await page.inputValue("[data-testid=prompt]")) === "1+1=2, so?", "plus kept");
    assert((await headStats(page)).layer === 5, "the link's head");
    await act(page, () => page.goBack());
    assert((await headStats(page)).layer === 18, "back restores the previous state");
    assert(await page.evaluate(() => document.body.dataset.loads) === loads && await page.evaluate(() => document.body.dataset.workers) === workers, "no model reload, same worker");
    await act(page, () => page.selectOption("#backend-choice", "cpu"));
    assert(await page.evaluate(() => document.body.dataset.workers) === workers, "a backend change keeps the worker");
  });

  await test("odd input: partial characters, template tokens, one cut notice, paste limit, NaN", async () => {
    await typePrompt(page, "I love 日本 and 🙂");
    const toks = await tokens(page);
    assert(toks.every((t) => !t.text.includes("\uFFFD")), `no replacement characters: ${toks.map((t) => t.text)}`);
    assert(toks.some((t) => t.cls.includes("partial") && t.text === "日 1/3"), `a split character shown with its piece: ${toks.map((t) => t.text)}`);
    await act(page, () => page.selectOption("#format", "chat"));
    const chat = await tokens(page);
    assert(chat[0].cls.includes("tmpl") && !chat.some((t) => t.text === "日本" && t.cls.includes("tmpl")), "template tokens marked");
    await act(page, () => page.selectOption("#format", "raw"));
    const long = "word ".repeat(300);
    await page.fill("[data-testid=prompt]", long);
    await page.type("[data-testid=prompt]", "more words", { delay: 20 });
    await page.waitForTimeout(400);
    await waitReady(page);
    assert((await tokens(page)).length === 256, "cut at 256 tokens");
    assert((await notices(page)).filter((n) => n.includes("only the first 256")).length === 1, "one cut notice, not one per keystroke");
    await page.fill("[data-testid=prompt]", "");
    await page.evaluate(() => {
      const dt = new DataTransfer();
      dt.setData("text/plain", "x".repeat(20000));
      document.querySelector("[data-testid=prompt]").dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true }));
    });
    assert((await notices(page)).some((n) => n.includes("pasted text was cut")), "paste notice");
    await typePrompt(page, SHORT);
    await act(page, () => page.evaluate(() => window.sinkscopePoison()));
    assert((await page.textContent("#summary")).includes("–"), "NaN and infinity shown as –");
    assert(await page.getAttribute("[data-testid=status]", "data-state") === "ready", "the frame was drawn");
    await page.screenshot({ path: join(SHOTS, "09-odd-input.png"), fullPage: true });
  });

  await test("malformed link falls back to defaults with notices", async () => {
    const page3 = await context.newPage();
    await page3.goto(`${base}#p=50%25%ZZ%20off&l=banana&h=99999999&eps=7&v=nope&b=quantum`);
    await waitReady(page3);
    const n = await notices(page3);
    assert(n.filter((x) => x.includes("not valid")).length >= 5, `notices: ${JSON.stringify(n)}`);
    assert(await page3.inputValue("[data-testid=prompt]") === "50%%ZZ off", "a broken escape keeps the rest of the prompt");
    await page3.screenshot({ path: join(SHOTS, "10-malformed-link.png"), fullPage: true });
    await page3.close();
  });

  await test("Lab: checkpoint with labelled figures; seed checked; training lowers the loss", async () => {
    await act(page, () => page.click("[data-testid=lab-tab]"));
    await page.waitForFunction(() => document.querySelector("[data-testid=lab-verdict]").dataset.emerged === "true", null, { timeout: 60_000 });
    assert((await page.textContent("[data-testid=lab-epoch]")).includes("checkpoint"), "checkpoint shown first");
    const checks = await page.$$eval("[data-testid=lab-verdict] li", (e) => e.map((x) => x.textContent));
    assert(checks.filter((c) => c.startsWith("✓")).length === 3, `each check named: ${checks}`);
    const figs = await figures(page, "lab");
    assert(figs.map((f) => f.name).join(",") === "lab_loss,lab_attn1,lab_attn2,lab_pca", `lab figures ${figs.map((f) => f.name)}`);
    await page.screenshot({ path: join(SHOTS, "11-lab-checkpoint.png"), fullPage: true });
    await page.fill("#lab-seed", "12.5");
    await page.click("[data-testid=lab-start]");
    assert((await page.textContent("#lab-seed-error")).includes("whole number"), "a bad seed is refused, not clamped");
    await page.fill("#lab-seed", "3");
    await page.click("[data-testid=lab-reset]");
    await page.waitForFunction(() => {
      const e = document.querySelector("[data-testid=lab-epoch]");
      return e.dataset.epoch === "0" && e.dataset.losses === "[]";
    }, null, { timeout: 60_000 });
    const initial = (await figures(page, "lab")).find((f) => f.name === "lab_attn1").alt;
    await page.click("[data-testid=lab-start]");
    await page.waitForFunction(() => JSON.parse(document.querySelector("[data-testid=lab-epoch]").dataset.losses || "[]").length >= 3, null, { timeout: 300_000 });
    await page.click("[data-testid=lab-pause]");
    const losses = JSON.parse(await page.getAttribute("[data-testid=lab-epoch]", "data-losses"));
    assert(losses[losses.length - 1] < losses[0], `loss dropped: ${losses}`);
    const trained = await figures(page, "lab");
    assert(trained.find((f) => f.name === "lab_loss").w > 100, "loss plot drawn");
    assert(trained.find((f) => f.name === "lab_attn1").src !== initial, "the maps were redrawn");
    await page.screenshot({ path: join(SHOTS, "12-lab-training.png"), fullPage: true });
  });

  await test("CPU: a helper worker that crashes costs speed, not the page: the model worker computes its parts", async () => {
    const before = await kernelCheck(page);
    if (before.helpers === 0) return; // (one core: no helpers to crash)
    await page.evaluate(() => window.sinkscopeCrashHelper());
    const check = await kernelCheck(page); // (the worker handles messages in order)
    assert(check.helpers === before.helpers - 1 && check.failures.length === 0, `one helper fewer: ${JSON.stringify(check)}`);
    await page.fill("[data-testid=prompt]", `So: ${EXAMPLE}`);
    await page.waitForFunction(() => decodeURIComponent(location.hash).includes("So: The"), null, { timeout: 10_000 });
    await waitReady(page);
    assert(await page.isHidden("#failure"), "no failure message");
    assert((await tokens(page)).length > 10, "the new prompt was analysed");
    await page.waitForTimeout(600); // (the page would report a worker error after 500 ms)
    assert(await page.$eval("[data-testid=status]", (s) => s.dataset.state) === "ready", "still ready");
  });

  await test("CPU: a restarted worker that stays silent is started again; two in a row say so, and Retry recovers", async () => {
    const workers = () => page.evaluate(() => Number(document.body.dataset.workers));
    const failed = () => page.waitForFunction(() => document.querySelector("[data-testid=status]").dataset.state === "error", null, { timeout: 30_000 });
    await page.evaluate(() => { window.sinkscopeStartWaitMs = 1500; window.sinkscopePanic(); });
    await failed();
    // one silent worker (its messages dropped by the test hook): replaced, and the prompt runs
    let before = await workers();
    await page.evaluate(() => { window.sinkscopeMuteWorkers = 1; });
    await page.click("#retry");
    await waitReady(page);
    const events = await page.evaluate(() => window.sinkscopeEvents.join("\n"));
    assert(/silent after 1500 ms: start it again/.test(events), events);
    assert(await workers() === before + 2, "the silent worker, then its replacement");
    assert((await tokens(page)).length > 10, "the prompt was analysed again");
    // two silent ones: a message and Retry, which then works
    await page.evaluate(() => window.sinkscopePanic());
    await failed();
    before = await workers();
    await page.evaluate(() => { window.sinkscopeMuteWorkers = 2; });
    await page.click("#retry");
    await page.waitForFunction(() => /has not started after 3 s/.test(document.querySelector("#failure-text").textContent) && !document.querySelector("#failure").hidden, null, { timeout: 30_000 });
    assert(await workers() === before + 2, "one restart, not more");
    await page.click("#retry");
    await waitReady(page);
    assert(await page.isHidden("#failure"), "Retry recovers");
    await page.evaluate(() => { window.sinkscopeStartWaitMs = undefined; });
  });

  await test("CPU: no uncaught page errors and no CSP violation; an injected inline script is refused", async () => {
    assert(errors.length === 0, JSON.stringify(errors));
    assert(JSON.stringify(await page.evaluate(() => window.__csp || [])) === "[]", `violations: ${await page.evaluate(() => JSON.stringify(window.__csp))}`);
    const ran = await page.evaluate(() => {
      const s = document.createElement("script");
      s.textContent = "window.__inline = 1";
      document.body.append(s);
      return window.__inline === 1;
    });
    assert(!ran, "the CSP blocks inline script");
    assert((await page.evaluate(() => window.__csp || [])).some((v) => v.startsWith("script-src")), "and reports it");
  });
  await close();
}

// --- CPU without relaxed SIMD (Firefox, Safari): the plain build --------------------------------
{
  const { context, page, errors, close } = await openBrowser({ webgpu: false });
  await context.addInitScript(() => { window.sinkscopePlainSimd = true; });
  await test("CPU without relaxed SIMD: the plain build loads, its kernels agree with the portable ones and its numbers with the relaxed build's", async () => {
    const wasm = page.waitForResponse((r) => r.url().endsWith("_bg.wasm"));
    await page.goto(`${base}${relaxed ? relaxed.hash : `#p=${encodeURIComponent(EXAMPLE)}&b=cpu`}`);
    assert((await wasm).url().endsWith("/sinkscope_bg.wasm"), `the plain CPU build: ${(await wasm).url()}`);
    await waitReady(page, LOAD_TIMEOUT);
    const check = await kernelCheck(page);
    assert(check.relaxed_simd === false && check.cases >= 80 && check.failures.length === 0, `kernel check: ${JSON.stringify(check)}`);
    const json = JSON.parse((await download(page, () => page.click("[data-testid=export-json]"))).bytes.toString("utf8"));
    // (run alone with --only, there is no relaxed-build analysis to compare with)
    if (relaxed) for (const key of ["alpha", "first_token_alpha", "top_next", "massive"]) sameJson(json[key], relaxed.json[key], 1e-4, key);
    assert(errors.length === 0, JSON.stringify(errors));
  });
  await close();
}

// --- CPU on one thread: the helper workers change no number ----------------------------------------
{
  const { context, page, errors, close } = await openBrowser({ webgpu: false });
  await context.addInitScript(() => { window.sinkscopeHelpers = 0; });
  await test("CPU on one thread (no helper workers): the same numbers, bit for bit, as with helpers", async () => {
    await page.goto(`${base}${relaxed ? relaxed.hash : `#p=${encodeURIComponent(EXAMPLE)}&b=cpu`}`);
    await waitReady(page, LOAD_TIMEOUT);
    const json = JSON.parse((await download(page, () => page.click("[data-testid=export-json]"))).bytes.toString("utf8"));
    const check = await kernelCheck(page);
    assert(check.helpers === 0 && check.helper_parts === 0, `no helpers: ${JSON.stringify(check)}`);
    assert(/one thread/.test(await page.getAttribute("#backend", "title")), "the tooltip says one thread");
    // (run alone with --only, there is no analysis with helpers to compare with)
    if (relaxed && relaxed.helpers > 0) sameJson(json, relaxed.json, 0, "analysis");
    assert(errors.length === 0, JSON.stringify(errors));
  });
  await close();
}

// --- models: Gemma 3, the QK-norm comparison, a user's own files --------------------------------
{
  const { context, page, errors, close } = await openBrowser({ webgpu: false });
  await page.goto(`${base}#p=${encodeURIComponent(EXAMPLE)}&b=cpu`);
  await waitReady(page, LOAD_TIMEOUT);
  await test("models: pick Gemma 3 (its <bos> a first-token sink), m= in the link restores it, the QK-norm view draws both", async () => {
    await page.selectOption("[data-testid=model-choice]", "gemma3");
    await page.waitForFunction(() => document.body.dataset.loads && document.querySelector("[data-testid=status]").dataset.state === "ready" && location.hash.includes("m=gemma3"), null, { timeout: LOAD_TIMEOUT });
    await typePrompt(page, EXAMPLE);
    const toks = await tokens(page);
    assert(toks[0].text === "<bos>" && toks[0].cls.includes("tmpl"), `first token <bos>, added by the format: ${JSON.stringify(toks[0])}`);
    assert(toks[0].sinkHeads >= 60, `<bos> is a sink in most of Gemma's 72 heads: ${toks[0].sinkHeads}`);
    assert((await page.$$("[data-testid=head-cell]")).length === 18 * 4, "18 x 4 head grid");
    assert(/Gemma Terms of Use/.test(await page.textContent("[data-testid=model-about]")), "licence shown");
    await page.screenshot({ path: join(SHOTS, "10-gemma.png"), fullPage: true });
    // the link restores Gemma in a new tab (from Cache Storage)
    const link = await page.evaluate(() => location.href);
    const p2 = await context.newPage();
    await p2.goto(link);
    await waitReady(p2);
    assert(await p2.inputValue("[data-testid=model-choice]") === "gemma3" && (await tokens(p2))[0].text === "<bos>", "m=gemma3 restores Gemma");
    // the QK-norm view: both models on this prompt, two lines per plot, a histogram each
    await act(p2, () => p2.click("[data-testid=qknorm-tab]"));
    await p2.waitForFunction(() => document.querySelector("#view-qknorm").dataset.state === "ready", null, { timeout: 300_000 });
    const figs = await figures(p2, "qknorm");
    assert(figs.map((f) => f.name).join() === "qk_avg_sinks,qk_sink_rate,qk_explained_a,qk_explained_b", figs.map((f) => f.name).join());
    assert(figs.slice(0, 2).every((f) => f.alt.includes("SmolLM2-135M-Instruct:") && f.alt.includes("Gemma 3 270M:")), "both models in each line plot");
    const findings = await p2.textContent("[data-testid=qk-findings]");
    assert(/Sinks per head on average: SmolLM2-135M-Instruct \(without QK-norm\) [\d.]+, Gemma 3 270M \(with QK-norm\) [\d.]+/.test(findings), findings);
    assert(/two different models/.test(findings) && /QK-norm does not remove/.test(await p2.textContent("[data-testid=qk-claim]")), "claim and caution");
    await p2.screenshot({ path: join(SHOTS, "11-qknorm.png"), fullPage: true });
    await p2.close();
    await page.selectOption("[data-testid=model-choice]", "smollm2");
    await page.waitForFunction(() => location.hash.includes("m=smollm2") && document.querySelector("[data-testid=status]").dataset.state === "ready", null, { timeout: LOAD_TIMEOUT });
    assert((await tokens(page))[0].text === "The", "back on SmolLM2 (no BOS)");
  });

  await test("open a GGUF file: a local model runs, a non-GGUF file and an unsupported architecture say why", async () => {
    const { mkdtempSync, copyFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const dir = mkdtempSync(join(tmpdir(), "sinkscope-files-"));
    const model = join(root, "www/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    const mine = join(dir, "my-model.gguf");
    copyFileSync(model, mine);
    const loads = Number(await page.evaluate(() => document.body.dataset.loads));
    await page.setInputFiles("[data-testid=file-input]", mine);
    await page.waitForFunction((n) => Number(document.body.dataset.loads) > n && document.querySelector("[data-testid=status]").dataset.state === "ready", loads, { timeout: LOAD_TIMEOUT });
    assert(await page.inputValue("[data-testid=model-choice]") === "local", "the picker shows the local file");
    assert((await page.evaluate(() => location.hash)).includes("m=local") && (await tokens(page)).length > 5, "local model runs");
    assert(/my-model\.gguf/.test(await page.textContent("[data-testid=model-about]")), "file named");
    // a text file
    const text = join(dir, "notes.gguf");
    writeFileSync(text, "these are my notes, not a model");
    await page.setInputFiles("[data-testid=file-input]", text);
    await page.waitForFunction(() => document.querySelector("[data-testid=status]").dataset.state === "error", null, { timeout: 60_000 });
    const e1 = await page.textContent("#failure-text");
    assert(/notes\.gguf/.test(e1) && /not a model sinkscope can read/.test(e1), e1);
    // a GGUF of another architecture: SmolLM2 with its architecture renamed
    const bytes = readFileSync(model);
    const key = Buffer.from("general.architecture");
    const at = bytes.indexOf(key) + key.length + 4 + 8; // type u32, length u64, then the value
    assert(bytes.subarray(at, at + 5).toString() === "llama", "found the architecture value");
    bytes.write("qwen2", at);
    const other = join(dir, "qwen.gguf");
    writeFileSync(other, bytes);
    await page.setInputFiles("[data-testid=file-input]", other);
    await page.waitForFunction(() => /qwen/.test(document.querySelector("#failure-text").textContent), null, { timeout: 60_000 });
    const e2 = await page.textContent("#failure-text");
    assert(/unsupported architecture "qwen2"/.test(e2) && /llama/.test(e2) && /gemma3/.test(e2), e2);
    await page.screenshot({ path: join(SHOTS, "12-unsupported-file.png"), fullPage: false });
    // Retry goes back to the model that ran before the failed file (here the first local file)
    const before = Number(await page.evaluate(() => document.body.dataset.loads));
    await page.click("#retry");
    await page.waitForFunction((n) => Number(document.body.dataset.loads) > n && document.querySelector("[data-testid=status]").dataset.state === "ready", before, { timeout: LOAD_TIMEOUT });
    assert(/my-model\.gguf/.test(await page.textContent("[data-testid=model-about]")), "Retry reloads the file that worked");
    await page.selectOption("[data-testid=model-choice]", "smollm2");
    await waitReady(page, LOAD_TIMEOUT);
  });

  await test("models: no uncaught page errors", async () => assert(errors.length === 0, JSON.stringify(errors)));
  await close();
}

// --- probe and many prompts: runs over many statements in the worker --------------------------------
{
  const { context, page, errors, close } = await openBrowser({ webgpu: false });
  await page.goto(`${base}#p=${encodeURIComponent(EXAMPLE)}&b=cpu`);
  await waitReady(page, LOAD_TIMEOUT);
  await test("probe: a run can be cancelled; 60 statements draw accuracy per layer with the chance line, histograms by label, and the link keeps the run", async () => {
    await page.click("[data-testid=probe-tab]");
    assert(/Press/.test(await page.textContent("[data-testid=probe-findings]")), "an empty state before the first run");
    // a long run, cancelled after some progress
    await page.fill("[data-testid=probe-n]", "600");
    await page.click("[data-testid=probe-run]");
    await page.waitForFunction(() => /^\d+ \/ 600 statements/.test(document.querySelector("#probe-progress-text").textContent), null, { timeout: 60_000 });
    await page.click("[data-testid=probe-cancel]");
    await page.waitForFunction(() => document.querySelector("#view-probe").dataset.state === "stopped", null, { timeout: 60_000 });
    assert(/Cancelled/.test(await page.textContent("#probe-progress-text")), "cancelled");
    // the page's own prompt still works after the run
    await typePrompt(page, "The city of Lodz is in Poland.");
    assert((await tokens(page)).length > 5, "prompt analysed after a cancelled run");
    // 60 statements
    await page.fill("[data-testid=probe-n]", "60");
    await page.fill("[data-testid=probe-seed]", "1");
    const t0 = Date.now();
    await page.click("[data-testid=probe-run]");
    await page.waitForFunction(() => document.querySelector("#view-probe").dataset.state === "ready", null, { timeout: 300_000 });
    const secs = (Date.now() - t0) / 1000;
    const figs = await figures(page, "probe");
    assert(figs.map((f) => f.name).join() === "probe_layers,probe_hist_tag,probe_hist_activation", figs.map((f) => f.name).join());
    assert(figs.every((f) => f.w > 100), "figures drawn");
    assert(/θ_tag: [\d, ]+\./.test(figs[0].alt) && /Control/.test(figs[0].alt), figs[0].alt);
    const svg = await page.evaluate(async (src) => (await fetch(src)).text(), figs[0].src);
    assert(svg.includes("chance (50%)") && svg.includes("held-out accuracy") && svg.includes("layer"), "axes, legend and the chance line");
    assert(/true statements per bin/.test(figs[1].alt), figs[1].alt);
    const findings = await page.textContent("[data-testid=probe-findings]");
    assert(/60 statements \(40 to train, 20 held out\), seed 1/.test(findings) && /θ_tag is best in layer \d+/.test(findings), findings);
    const hash = await page.evaluate(() => location.hash);
    assert(/v=probe/.test(hash) && /pd=cities&pn=60&ps=1/.test(hash), hash);
    // another layer's histograms come from the kept result at once
    await page.selectOption("[data-testid=probe-layer]", "3");
    await page.waitForFunction(() => / in layer 3, /.test(document.querySelector("#figs-probe img[data-name=probe_hist_tag]").alt), null, { timeout: 30_000 });
    await page.screenshot({ path: join(SHOTS, "13-probe.png"), fullPage: true });
    console.log(`     60 statements in the page (CPU): ${secs.toFixed(1)} s`);
    // the link restores the run's parameters in a new tab
    const p2 = await context.newPage();
    await p2.goto(await page.evaluate(() => location.href));
    await waitReady(p2);
    assert(await p2.inputValue("[data-testid=probe-n]") === "60" && await p2.inputValue("[data-testid=probe-seed]") === "1", "parameters from the link");
    assert(!(await p2.isHidden("#view-probe")), "the Probe view is open");
    await p2.close();
  });

  await test("many prompts: the corpus run draws Figure 3 over 60 paragraphs and the sink tokens", async () => {
    await page.click("[data-testid=corpus-tab]");
    await page.click("[data-testid=corpus-run]");
    await page.waitForFunction(() => document.querySelector("#view-corpus").dataset.state === "ready", null, { timeout: 600_000 });
    const figs = await figures(page, "corpus");
    assert(figs.map((f) => f.name).join() === "hist_sinks,hist_explained,corpus_tokens", figs.map((f) => f.name).join());
    assert(/over 60 prompts/.test(figs[0].alt), figs[0].alt);
    const findings = await page.textContent("[data-testid=corpus-findings]");
    assert(/60 prompts, \d+ tokens, 16200 heads in all/.test(findings), findings);
    await page.screenshot({ path: join(SHOTS, "14-corpus.png"), fullPage: true });
  });
  await test("probe and many prompts: no uncaught page errors", async () => assert(errors.length === 0, JSON.stringify(errors)));
  await close();
}

// --- phone width ---------------------------------------------------------------------------------
{
  const { page, errors, close } = await openBrowser({ webgpu: false, viewport: { width: 390, height: 844 } });
  await test("phone width: the example, tour and figures fit the screen", async () => {
    await page.goto(base);
    await waitReady(page);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert(overflow <= 1, `no horizontal scrolling (${overflow} px)`);
    await page.screenshot({ path: join(SHOTS, "13-phone.png"), fullPage: true });
    await act(page, () => page.click("[data-testid=tour-start]"));
    await act(page, () => page.click("[data-testid=tour-next]"));
    await page.screenshot({ path: join(SHOTS, "14-phone-tour.png"), fullPage: true });
    assert(errors.length === 0, JSON.stringify(errors));
  });
  await close();
}

// --- load errors: a corrupt model file and a failed download, each with a working Retry -------------
{
  const { context, page, errors, close } = await openBrowser({ webgpu: false });
  const failed = async () => {
    await page.waitForFunction(() => document.querySelector("[data-testid=status]").dataset.state === "error", null, { timeout: LOAD_TIMEOUT });
    assert(await page.isVisible("#retry"), "a Retry button");
    return page.textContent("#failure-text");
  };
  await test("load errors: a corrupt model and a failed download show a message and Retry recovers", async () => {
    await context.route("**/*.gguf", (r) => r.fulfill({ status: 200, contentType: "application/octet-stream", body: Buffer.alloc(4096, 7) }));
    await page.goto(`${base}#p=Retry%20me.&b=cpu`);
    const bad = await failed();
    assert(/GGUF|magic/i.test(bad), `the message names the problem: ${bad}`);
    await page.screenshot({ path: join(SHOTS, "15-corrupt-model.png"), fullPage: true });
    await context.unroute("**/*.gguf");
    await context.route("**/*.gguf", (r) => r.fulfill({ status: 404, body: "gone" }));
    await page.click("#retry");
    const missing = await failed();
    assert(/404/.test(missing), `the message gives the HTTP status: ${missing}`);
    await context.unroute("**/*.gguf");
    await page.click("#retry");  // the corrupt copy must not have stayed in Cache Storage
    await waitReady(page);
    const toks = await tokens(page);
    assert(toks.map((t) => t.text).join("") === "Retry me.", `the prompt survived the errors: ${JSON.stringify(toks)}`);
    assert(errors.length === 0, JSON.stringify(errors));
  });
  await close();
}

// --- offline: once opened, the page opens again with no server ------------------------------------
{
  const own = await serve(join(root, "dist"));
  const url = `http://127.0.0.1:${own.port}/`;
  const { context, page, errors, close } = await openBrowser({ webgpu: false });
  await test("offline: after one visit the page and the model open with the server gone", async () => {
    await page.goto(`${url}#p=Offline%2C%20the%20sink%20stays.&b=cpu`);
    await waitReady(page);
    // the service worker has installed (it keeps the page's files) and controls the page
    await page.evaluate(async () => { await navigator.serviceWorker.ready; });
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 30000 });
    const online = await tokens(page);
    await own.close();
    const down = await fetch(url).then(() => "up", () => "down");
    assert(down === "down", "the server is gone");
    await page.reload();
    await waitReady(page);
    const offline = await tokens(page);
    assert(JSON.stringify(offline) === JSON.stringify(online), "the same tokens and sink counts offline");
    assert(offline[0].sinkHeads > 100, `first-token sink offline (${offline[0].sinkHeads} heads)`);
    // a new tab with another prompt works too
    const tab = await context.newPage();
    await tab.goto(`${url}#p=Another%20prompt%20offline.&b=cpu`);
    await waitReady(tab);
    assert((await tokens(tab)).length > 3, "another prompt analysed offline");
    await tab.screenshot({ path: join(SHOTS, "16-offline.png"), fullPage: true });
    assert(errors.length === 0, JSON.stringify(errors));
  });
  await close();
  await own.close(); // already closed by the test, unless it was skipped
}

await server.close();
const passed = results.filter((r) => r[1]).length;
const failed = results.length - passed;
writeFileSync(join(SHOTS, "results.json"), JSON.stringify(results, null, 1));
console.log(`e2e: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && results.length > 0 ? 0 : 1);

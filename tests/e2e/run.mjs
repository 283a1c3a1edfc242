// End-to-end tests of the page in real headless Chromium (Debian's, driven by playwright-core).
// Serves dist/ on 127.0.0.1, loads the page, waits for the model, types, clicks, reloads links.
// Screenshots go to tests/e2e/screenshots/ (git-ignored). Ends with "N passed, N failed".
//
// Usage: node tests/e2e/run.mjs [--only NAME] [--bench]

import { mkdirSync, writeFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { serve } from "./serve.mjs";
import { launch, waitReady, LOAD_TIMEOUT } from "./browser.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");

const SHOTS = join(here, "screenshots");
mkdirSync(SHOTS, { recursive: true });

const args = process.argv.slice(2);
const only = args.includes("--only") ? args[args.indexOf("--only") + 1] : null;

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

async function tokens(page) {
  return page.$$eval("[data-testid=token]", (els) => els.map((e) => ({
    text: e.textContent, index: Number(e.dataset.index), sinkHeads: Number(e.dataset.sinkHeads),
  })));
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

async function canvasPixels(page, id) {
  return page.$eval(`#${id}`, (c) => Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data).join(","));
}

async function notices(page) {
  return page.$$eval("#notices li span", (els) => els.map((e) => e.textContent));
}

function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

/** A fresh browser profile with one page whose uncaught errors are collected. */
async function openBrowser({ webgpu }) {
  const { context, close } = await launch({ webgpu });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  return { context, page, errors, close };
}

const results = [];
async function test(name, fn) {
  if (only && !name.includes(only)) return;
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

const server = await serve(join(root, "dist"));
const base = `http://127.0.0.1:${server.port}/`;
console.log(`serving dist/ at ${base}`);

// Chromium's WebGPU here is SwiftShader, a CPU emulation in which one forward pass of this model takes
// minutes (its workgroup barriers are emulated). So WebGPU is checked on one short prompt (correctness,
// agreement with the CPU, the lost-device fallback), and the UI behaviour on the CPU backend.
const SHORT = "Hello, world! This is a test.";
let gpuSinkHeads = null;

// --- WebGPU (SwiftShader's software adapter) ------------------------------------------------------
{
  const { context, page, errors, close } = await openBrowser({ webgpu: true });

  await test("WebGPU: chosen automatically, first-token sink, heatmap drawn", async () => {
    await page.goto(`${base}#p=${encodeURIComponent(SHORT)}`);
    await waitReady(page, 600_000);
    assert(await page.textContent("[data-testid=backend]") === "webgpu", "backend badge says webgpu");
    const toks = await tokens(page);
    assert(toks.length === 9, `9 tokens, got ${toks.length}`);
    assert(toks[0].text === "Hello", "first token");
    assert(toks[0].sinkHeads === Math.max(...toks.map((t) => t.sinkHeads)) && toks[0].sinkHeads > 100, `token 0 is the strongest sink (${toks[0].sinkHeads})`);
    const hm = await heatmapStats(page);
    assert(hm.w === 9 && hm.shown === 45, `heatmap 9x9 with 45 visible cells: ${hm.w} ${hm.shown}`);
    gpuSinkHeads = toks.map((t) => t.sinkHeads);
    await page.screenshot({ path: join(SHOTS, "01-webgpu.png"), fullPage: true });
  });

  await test("WebGPU: a lost GPU device falls back to the CPU and re-runs the prompt", async () => {
    await page.evaluate(() => window.sinkscopeLoseDevice());
    await page.type("[data-testid=prompt]", " Again");
    await page.waitForFunction(() => document.querySelector("[data-testid=backend]").textContent === "cpu", null, { timeout: 600_000 });
    await waitReady(page);
    const toks = await tokens(page);
    assert(toks.length === 10 && toks[9].text === " Again", `re-ran the current prompt on the CPU: ${toks.map((t) => t.text)}`);
    assert((await notices(page)).some((n) => n.includes("GPU device was lost")), "notice shown");
    await page.screenshot({ path: join(SHOTS, "02-device-lost.png"), fullPage: true });
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

  await test("first visit without WebGPU: progress, CPU backend with a notice, example prompt", async () => {
    await page.goto(base);
    await page.waitForSelector("#progress-text");
    await waitReady(page);
    assert(await page.textContent("[data-testid=backend]") === "cpu", "backend badge says cpu");
    assert((await notices(page)).some((n) => /WebGPU is not available/.test(n)), "fallback notice");
    const toks = await tokens(page);
    assert(toks.length === 14, `example prompt has 14 tokens, got ${toks.length}`);
    assert(toks[0].text === "The" && toks[1].text === " capital", `tokens ${JSON.stringify(toks.slice(0, 3))}`);
    const max = Math.max(...toks.map((t) => t.sinkHeads));
    assert(toks[0].sinkHeads === max && max > 100, `token 0 is the strongest sink (${toks[0].sinkHeads} heads)`);
    assert((await page.$$("[data-testid=head-cell]")).length === 270, "30 x 9 head cells");
    const summary = await page.textContent("#summary");
    assert(summary.includes('next: " The" 22%'), `the reference's top next token (logit 14.75, p = 22%): ${summary}`);
    await page.screenshot({ path: join(SHOTS, "03-first-visit-cpu.png"), fullPage: true });
  });

  await test("CPU and WebGPU agree on the sinks of the same prompt", async () => {
    await typePrompt(page, SHORT);
    const cpu = (await tokens(page)).map((t) => t.sinkHeads);
    assert(gpuSinkHeads !== null, "the WebGPU test ran");
    const diff = cpu.map((c, i) => Math.abs(c - gpuSinkHeads[i]));
    assert(cpu.length === gpuSinkHeads.length && Math.max(...diff) <= 2, `cpu ${cpu} vs webgpu ${gpuSinkHeads}`);
  });

  await test("typing re-analyses; first token is a sink; heatmap has pixels; URL follows", async () => {
    await typePrompt(page, "The quick brown fox jumps over the lazy dog.");
    const toks = await tokens(page);
    assert(toks.length === 10, `10 tokens, got ${toks.length}: ${toks.map((t) => t.text)}`);
    assert(toks[0].text === "The" && toks[9].text === ".", "token texts");
    assert(toks[0].sinkHeads === Math.max(...toks.map((t) => t.sinkHeads)), "first token has the most sink heads");
    const hm = await heatmapStats(page);
    assert(hm.w === 10 && hm.h === 10, `heatmap is T x T (${hm.w}x${hm.h})`);
    assert(hm.shown === 55, `55 visible cells (lower triangle), got ${hm.shown}`);
    assert(hm.first[0] > 200 && hm.first[1] > 200, `A[0,0] = 1 is drawn at the top of the colour map: ${hm.first}`);
    const hash = decodeURIComponent(await page.evaluate(() => location.hash));
    assert(hash.includes("The quick brown fox"), `URL fragment holds the prompt: ${hash}`);
    await page.screenshot({ path: join(SHOTS, "04-typed-prompt.png"), fullPage: true });
  });

  await test("select a head, change eps and scale; tag and release views", async () => {
    await page.click("[data-testid=head-cell][data-layer='3'][data-head='2']");
    await waitReady(page);
    await page.selectOption("#scale", "log");
    await waitReady(page);
    await page.click("#eps-gu");
    await waitReady(page);
    const hash = await page.evaluate(() => location.hash);
    for (const part of ["l=3", "h=2", "eps=0.3", "s=log"]) assert(hash.includes(part), `${part} in ${hash}`);
    assert((await page.textContent("#head-title")).includes("Layer 3, head 2"), "head title");
    await page.screenshot({ path: join(SHOTS, "05-head-3-2-log.png"), fullPage: true });
    await page.click("[data-testid=head-cell][data-layer='18'][data-head='8']");
    await waitReady(page);
    await page.click(".tabs button[data-view=tags]");
    await waitReady(page);
    assert(await page.isVisible("#pca-out"), "tag view visible");
    assert((await page.textContent("#pca-out-cap")).includes("PC1"), "variance fractions shown");
    await page.screenshot({ path: join(SHOTS, "06-tags-view.png"), fullPage: true });
    await page.click(".tabs button[data-view=release]");
    await waitReady(page);
    assert((await page.evaluate(() => location.hash)).includes("v=release"), "view in the link");
    await page.screenshot({ path: join(SHOTS, "07-release-view.png"), fullPage: true });
    await page.click(".tabs button[data-view=heatmap]");
    await waitReady(page);
  });

  await test("copy link, open it: same state and the same picture (model from Cache Storage)", async () => {
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
    assert(await page2.inputValue("#scale") === "log" && await page2.inputValue("#eps") === "0.3", "scale and eps restored");
    const after = await heatmapStats(page2);
    assert(after.hash === before.hash, "identical heatmap pixels");
    assert(JSON.stringify(await tokens(page2)) === JSON.stringify(toksBefore), "identical token strip");
    await page2.screenshot({ path: join(SHOTS, "08-reopened-link.png"), fullPage: true });
    await page2.close();
  });

  await test("empty prompt shows a hint; an over-long prompt is cut with a notice", async () => {
    await page.fill("[data-testid=prompt]", "");
    await page.waitForTimeout(400);
    await waitReady(page);
    assert(await page.isVisible("#hint"), "hint visible");
    assert((await tokens(page)).length === 0, "no tokens");
    await page.fill("[data-testid=prompt]", "word ".repeat(400));
    await page.waitForTimeout(400);
    await waitReady(page);
    assert((await tokens(page)).length === 256, "cut at 256 tokens");
    assert((await notices(page)).some((n) => n.includes("only the first 256")), "cut notice");
    await page.screenshot({ path: join(SHOTS, "09-long-prompt.png"), fullPage: true });
  });

  await test("malformed link falls back to defaults with notices", async () => {
    const page3 = await context.newPage();
    await page3.goto(`${base}#p=%E0%A4%ZZ&l=banana&h=99999999&eps=7&v=nope&b=quantum`);
    await waitReady(page3);
    const n = await notices(page3);
    assert(n.filter((x) => x.includes("not valid")).length >= 5, `notices: ${JSON.stringify(n)}`);
    assert((await tokens(page3)).length === 14, "example prompt shown");
    await page3.screenshot({ path: join(SHOTS, "10-malformed-link.png"), fullPage: true });
    await page3.close();
  });

  await test("Lab: the checkpoint shows at once; training starts, the loss drops, the maps change", async () => {
    await page.click("[data-testid=lab-tab]");
    await page.waitForFunction(() => document.querySelector("[data-testid=lab-verdict]").dataset.emerged === "true", null, { timeout: 60_000 });
    assert((await page.textContent("[data-testid=lab-epoch]")).includes("checkpoint"), "checkpoint shown first");
    await page.screenshot({ path: join(SHOTS, "11-lab-checkpoint.png"), fullPage: true });
    await page.click("[data-testid=lab-reset]");
    await page.waitForFunction(() => {
      const e = document.querySelector("[data-testid=lab-epoch]");
      return e.dataset.epoch === "0" && e.dataset.losses === "[]";
    }, null, { timeout: 60_000 });
    const initial = await canvasPixels(page, "lab-attn1");
    await page.click("[data-testid=lab-start]");
    await page.waitForFunction(() => JSON.parse(document.querySelector("[data-testid=lab-epoch]").dataset.losses || "[]").length >= 3, null, { timeout: 300_000 });
    await page.click("[data-testid=lab-pause]");
    const losses = JSON.parse(await page.getAttribute("[data-testid=lab-epoch]", "data-losses"));
    assert(losses[losses.length - 1] < losses[0], `loss dropped: ${losses}`);
    const trained = await canvasPixels(page, "lab-attn1");
    assert(trained !== initial, "layer-1 attention map changed with training");
    await page.screenshot({ path: join(SHOTS, "12-lab-training.png"), fullPage: true });
  });

  await test("CPU: no uncaught page errors", async () => {
    assert(errors.length === 0, JSON.stringify(errors));
  });
  await close();
}

// --- backend override in the link -----------------------------------------------------------------
{
  const { page, close } = await openBrowser({ webgpu: true });
  await test("b=cpu in the link forces the CPU even where WebGPU exists", async () => {
    await page.goto(`${base}#p=Hi%20there&b=cpu`);
    await waitReady(page);
    assert(await page.textContent("[data-testid=backend]") === "cpu", "cpu forced");
    assert((await page.evaluate(() => location.hash)).includes("b=cpu"), "override kept in the link");
    assert(!(await notices(page)).some((n) => /WebGPU is not available/.test(n)), "no fallback notice when asked for");
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
    await page.screenshot({ path: join(SHOTS, "14-corrupt-model.png"), fullPage: true });
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
    await tab.screenshot({ path: join(SHOTS, "13-offline.png"), fullPage: true });
    assert(errors.length === 0, JSON.stringify(errors));
  });
  await close();
}

await server.close();
const passed = results.filter((r) => r[1]).length;
const failed = results.length - passed;
writeFileSync(join(SHOTS, "results.json"), JSON.stringify(results, null, 1));
console.log(`e2e: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && results.length > 0 ? 0 : 1);

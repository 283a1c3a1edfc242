// Browser benchmark (not a test): page open to first picture, forward + analysis per backend for a
// 16- and a 64-token prompt, update after typing one more word, wasm size; the CPU worker with and
// without relaxed SIMD, and on one thread (no helper workers). Prints a Markdown table.
// Usage: node tests/e2e/bench.mjs [runs]

import { readdirSync, readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { serve } from "./serve.mjs";
import { launch, waitReady } from "./browser.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const dist = process.env.DIST || join(here, "..", "..", "dist"); // DIST: another build to compare
const cpuRuns = Number(process.argv[2] || 5);
// SwiftShader's WebGPU takes minutes per forward here: measure it once.
const gpuRuns = Number(process.argv[3] || 1);
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const n = s.length; return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2; };

// 16 and 64 tokens with SmolLM2's tokenizer; the two variants share no prefix (first token differs).
const P16 = ["The capital of France is Paris. The capital of Germany is Berlin. The capital", "A capital of France is Paris. The capital of Germany is Berlin. The capital"];
const tail64 = " capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is Rome. The capital of Spain is Madrid. The capital of Portugal is Lisbon. The capital of Austria is Vienna. The capital of Poland is Warsaw. The capital of Greece is Athens. The capital of Norway is Oslo. The";
const P64 = ["The" + tail64, "A" + tail64];
const link = (base, p, b) => `${base}#p=${encodeURIComponent(p)}&b=${b}`;

for (const wasm of readdirSync(dist).filter((f) => f.endsWith(".wasm"))) {
  const raw = readFileSync(join(dist, wasm));
  console.log(`wasm ${wasm}: ${(raw.length / 1e6).toFixed(2)} MB raw, ${(gzipSync(raw, { level: 9 }).length / 1e6).toFixed(2)} MB gzip -9`);
}

const server = await serve(dist);
const base = `http://127.0.0.1:${server.port}/`;
const rows = [];
// "cpu" is the build the page picks here (relaxed SIMD in Chromium, with one helper worker per further
// core); "cpu-1thread" the same without helper workers, and "cpu-plain" the build browsers without
// relaxed SIMD get (with helpers), both forced by the page's test hooks, measured in the same run.
const cpus = ["cpu", "cpu-1thread", "cpu-plain"];
for (const backend of gpuRuns > 0 ? [...cpus, "webgpu"] : cpus) {
  const runs = backend === "webgpu" ? gpuRuns : cpuRuns;
  const { context, close } = await launch({ webgpu: backend === "webgpu" });
  if (backend === "cpu-plain") await context.addInitScript(() => { window.sinkscopePlainSimd = true; });
  if (backend === "cpu-1thread") await context.addInitScript(() => { window.sinkscopeHelpers = 0; });
  const page = await context.newPage();
  let t0 = Date.now();
  const wasmFile = page.waitForResponse((r) => r.url().endsWith("_bg.wasm")).then((r) => r.url().split("/").pop());
  await page.goto(link(base, P16[0], backend === "webgpu" ? "webgpu" : "cpu"));
  await waitReady(page, 1_800_000);
  const coldMs = Date.now() - t0;
  // the first page starts its helper workers after its first picture; let them load before the
  // second page opens, or they compete with it for this machine's 2 cores (a user opens one page)
  await page.waitForTimeout(2000);
  const page2 = await context.newPage();
  t0 = Date.now();
  await page2.goto(link(base, P16[1], backend === "webgpu" ? "webgpu" : "cpu"));
  await waitReady(page2, 1_800_000);
  const warmMs = Date.now() - t0;
  await page2.close();
  const timings = async (prompts) => {
    const fwd = [], ana = [];
    for (let i = 0; i < runs; i++) {
      // alternate, starting with the prompt not on screen, so each run is a full forward
      await page.fill("[data-testid=prompt]", prompts[(i + 1) % 2]);
      await page.waitForFunction(() => document.querySelector("[data-testid=status]").dataset.state === "working", null, { timeout: 5000 }).catch(() => {});
      await waitReady(page, 1_800_000);
      const d = await page.$eval("[data-testid=status]", (s) => ({ f: Number(s.dataset.forwardMs), a: Number(s.dataset.analysisMs), c: Number(s.dataset.computed) }));
      fwd.push(d.f); ana.push(d.a);
    }
    return [median(fwd), median(ana)];
  };
  const [f16, a16] = await timings(P16);
  const [f64, a64] = await timings(P64);
  // one more word at the end of the 64-token prompt: wall time from the keystroke to the new picture
  const word = [], wordFwd = [];
  for (let i = 0; i < runs; i++) {
    await page.fill("[data-testid=prompt]", P64[0]);
    await page.waitForTimeout(300);
    await waitReady(page, 1_800_000);
    const t = Date.now();
    await page.type("[data-testid=prompt]", " Bern", { delay: 0 });
    await page.waitForFunction(() => decodeURIComponent(location.hash).includes("Oslo. The Bern"), null, { timeout: 1_800_000 });
    await waitReady(page, 1_800_000);
    word.push(Date.now() - t);
    wordFwd.push(Number(await page.$eval("[data-testid=status]", (s) => s.dataset.forwardMs)));
  }
  const wasmMemory = Number(await page.$eval("[data-testid=status]", (s) => s.dataset.wasmMemory));
  const helperMemory = Number(await page.$eval("[data-testid=status]", (s) => s.dataset.helperMemory || 0));
  const gpu = (await page.$eval("[data-testid=status]", (s) => s.dataset.gpuBuffers)).split(" ").map(Number);
  const threads = (await page.getAttribute("#backend", "title")) || "";
  rows.push({ backend, threads: (threads.match(/(\d+) threads|one thread/) || ["?"])[0], wasm: await wasmFile, runs, coldMs, warmMs, f16, a16, f64, a64, word: median(word), wordFwd: median(wordFwd), wasmMemoryMB: wasmMemory / 1e6, helperMemoryMB: helperMemory / 1e6, gpuBuffersMB: gpu.length === 2 ? gpu.map((x) => x / 1e6) : null });
  console.log(JSON.stringify(rows[rows.length - 1]));
  await close();
}
await server.close();
console.log("\n| backend (runs) | open→first picture, model downloaded | open→first picture, model cached | forward T=16 | analysis T=16 | forward T=64 | analysis T=64 | one more word: keystroke→picture (incl. 250 ms debounce) | its forward | wasm memory after the runs |");
console.log("|---|---|---|---|---|---|---|---|---|---|");
for (const r of rows) {
  console.log(`| ${r.backend}: ${r.wasm}, ${r.threads} (${r.runs}) | ${(r.coldMs / 1000).toFixed(1)} s | ${(r.warmMs / 1000).toFixed(1)} s | ${r.f16.toFixed(0)} ms | ${r.a16.toFixed(0)} ms | ${r.f64.toFixed(0)} ms | ${r.a64.toFixed(0)} ms | ${r.word.toFixed(0)} ms | ${r.wordFwd.toFixed(0)} ms | ${r.wasmMemoryMB.toFixed(0)} MB${r.helperMemoryMB ? ` + helpers ${r.helperMemoryMB.toFixed(0)} MB` : ""}${r.gpuBuffersMB ? `; GPU buffers ${r.gpuBuffersMB[0].toFixed(0)} MB live, ${r.gpuBuffersMB[1].toFixed(0)} MB peak` : ""} |`);
}

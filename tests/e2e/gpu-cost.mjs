// WebGPU cost model (not a test): counts what one forward asks of the GPU, by wrapping the WebGPU
// API inside the worker — compute dispatches, pipelines, queue submissions, buffer maps (read-backs),
// bytes written to and copied out of GPU buffers. Counts do not depend on the GPU's speed, so
// SwiftShader gives the same numbers a real GPU would. Prints one JSON line per measurement.
// Usage: node tests/e2e/gpu-cost.mjs

import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { serve } from "./serve.mjs";
import { launch, waitReady } from "./browser.mjs";

const dist = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "dist");
// Two 9-token prompts with different first tokens (each is a full forward), and one more word.
const A = "The capital of France is Paris. The";
const B = "A capital of France is Paris. The";

const server = await serve(dist);
const { context, close } = await launch({ webgpu: true });
const page = await context.newPage();
await page.goto(`http://127.0.0.1:${server.port}/#p=${encodeURIComponent(A)}&b=webgpu`);
await waitReady(page, 1_800_000);
const worker = page.workers()[0];
if (!worker) throw new Error("no worker");
await worker.evaluate(() => {
  const c = (self.__gpuCount = { dispatch: 0, pipelines: 0, submit: 0, mapAsync: 0, mappedBytes: 0, writeBytes: 0, copyBytes: 0, buffers: 0, bufferBytes: 0 });
  const wrap = (proto, name, f) => {
    const orig = proto[name];
    proto[name] = function (...args) { f(...args); return orig.apply(this, args); };
  };
  wrap(GPUComputePassEncoder.prototype, "dispatchWorkgroups", () => c.dispatch++);
  wrap(GPUDevice.prototype, "createComputePipeline", () => c.pipelines++);
  wrap(GPUQueue.prototype, "submit", () => c.submit++);
  wrap(GPUQueue.prototype, "writeBuffer", (_b, _o, data, _do, size) => (c.writeBytes += size ?? data.byteLength));
  wrap(GPUCommandEncoder.prototype, "copyBufferToBuffer", (...a) => (c.copyBytes += a[a.length - 1]));
  wrap(GPUBuffer.prototype, "mapAsync", () => c.mapAsync++);
  wrap(GPUDevice.prototype, "createBuffer", (d) => { c.buffers++; c.bufferBytes += d.size; });
});
const measure = async (what, act) => {
  await worker.evaluate(() => { for (const k in self.__gpuCount) self.__gpuCount[k] = 0; });
  await act();
  const c = await worker.evaluate(() => ({ ...self.__gpuCount }));
  const st = await page.$eval("[data-testid=status]", (s) => ({ computed: Number(s.dataset.computed), forwardMs: Number(s.dataset.forwardMs), gpuBuffers: s.dataset.gpuBuffers, wasmMemory: s.dataset.wasmMemory }));
  console.log(JSON.stringify({ what, ...st, ...c }));
};
const type = async (p) => {
  await page.fill("[data-testid=prompt]", p);
  await page.waitForFunction(() => document.querySelector("[data-testid=status]").dataset.state === "working", null, { timeout: 5000 }).catch(() => {});
  await waitReady(page, 1_800_000);
};
await measure("full forward + trace, 9 tokens", () => type(B));
await measure("full forward + trace, 9 tokens (again)", () => type(A));
await measure("one more word (incremental)", () => type(A + " capital"));
await close();
await server.close();

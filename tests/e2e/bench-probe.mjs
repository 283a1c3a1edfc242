// Browser benchmark of the truth probe (issue 12): 600 Cities statements on SmolLM2 in the CPU worker
// of headless Chromium, as a user runs it from the Probe view. Prints the wall time and the worker's
// wasm memory afterwards. Not part of `make test` (a benchmark, not a test).
//
// Usage: node tests/e2e/bench-probe.mjs [N]
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { serve } from "./serve.mjs";
import { launch, waitReady, LOAD_TIMEOUT } from "./browser.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const n = Number(process.argv[2] || 600);
const server = await serve(join(root, "dist"));
const { context, close } = await launch({ webgpu: false });
const page = await context.newPage();
await page.goto(`http://127.0.0.1:${server.port}/#p=Hello&b=cpu&v=probe&pd=cities&pn=${n}&ps=0`);
await waitReady(page, LOAD_TIMEOUT);
const t0 = Date.now();
await page.click("[data-testid=probe-run]");
await page.waitForFunction(() => document.querySelector("#view-probe").dataset.state === "ready", null, { timeout: 1_800_000 });
const secs = (Date.now() - t0) / 1000;
const findings = await page.textContent("[data-testid=probe-findings]");
await page.fill("[data-testid=prompt]", "Hello again");
await page.waitForTimeout(400);
await waitReady(page);
const mem = await page.evaluate(() => document.querySelector("[data-testid=status]").dataset.wasmMemory);
console.log(`probe in the browser (CPU worker): ${n} statements in ${secs.toFixed(1)} s; wasm memory afterwards ${(Number(mem) / 1e6).toFixed(0)} MB`);
console.log(findings.slice(0, 400));
await close();
await server.close();

// Measures how far one more typed word (the incremental forward on the fused kernels) moves the
// numbers from a fresh full forward: for four edits of the example prompt, type, export the JSON,
// reload the page (a full forward), export again, and print the largest |a - b| / (1 + |b|) per
// exported quantity (the e2e test asserts ≤ 1e-4). Edits of 1–3 new tokens run on the fused
// kernels, longer ones on the tiled one. A measurement, not a test: not in `make test`.
// Usage: node tests/e2e/drift.mjs   (DIST=folder measures another build; `make web` first)
import { readFileSync } from "node:fs";
import { serve } from "./serve.mjs";
import { launch, waitReady } from "./browser.mjs";
const server = await serve(process.env.DIST || new URL("../../dist", import.meta.url).pathname);
const base = `http://127.0.0.1:${server.port}/`;
const { context, close } = await launch({ webgpu: false }); const page = await context.newPage();
const EX = "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is Rome.";
async function download(click) { const [dl] = await Promise.all([page.waitForEvent("download", { timeout: 60000 }), click()]); return JSON.parse(readFileSync(await dl.path(), "utf8")); }
function worst(a, b, acc = { d: 0, at: "" }, path = "") {
  if (typeof a === "number" && typeof b === "number") { const d = Math.abs(a - b) / (1 + Math.abs(b)); if (d > acc.d) { acc.d = d; acc.at = path; } return acc; }
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) throw new Error(`${path}: length ${a.length} vs ${b && b.length}`);
    a.forEach((x, i) => worst(x, b[i], acc, `${path}[${i}]`));
    return acc;
  }
  if (a && typeof a === "object") { for (const k of Object.keys(a)) if (k !== "model") worst(a[k], b[k], acc, `${path}.${k}`); }
  return acc;
}
for (const word of [" Spain", " Madrid", " and", " the capital of Spain"]) {
  await page.goto(`${base}#p=${encodeURIComponent(EX)}&b=cpu`); await waitReady(page);
  await page.focus("[data-testid=prompt]"); await page.keyboard.press("End"); await page.keyboard.type(word, { delay: 5 });
  await page.waitForFunction((w) => decodeURIComponent(location.hash).includes(w.trim()), word, { timeout: 10000 }); await waitReady(page);
  const summary = await page.textContent("#summary");
  const grown = await download(() => page.click("[data-testid=export-json]"));
  await page.reload(); await waitReady(page);
  const fresh = await download(() => page.click("[data-testid=export-json]"));
  const out = {};
  for (const key of ["alpha", "first_token_alpha", "top_next", "massive"]) { const w = worst(grown[key], fresh[key]); out[key] = `${w.d.toExponential(2)} at ${w.at}`; }
  console.log(JSON.stringify(word), summary.match(/\(\d+ new tokens\)/)?.[0], JSON.stringify(out));
}
await close(); await server.close();

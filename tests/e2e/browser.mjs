// Headless Chromium for the e2e tests and the browser benchmark (Debian's Chromium, playwright-core).
import { createRequire } from "node:module";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const require = createRequire(join(root, "tools", "package.json"));
const { chromium } = require("playwright-core");

const CHROMIUM = process.env.CHROMIUM || "/usr/lib/chromium/chromium";
export const LOAD_TIMEOUT = 240_000;

/** A fresh browser profile; WebGPU (SwiftShader) only with `webgpu: true`. */
export async function launch({ webgpu, viewport = { width: 1360, height: 1100 } }) {
  const userDir = mkdtempSync(join(tmpdir(), "sinkscope-chromium-"));
  const flags = [
    "--headless=new", "--no-sandbox", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
  ];
  if (webgpu) flags.push("--enable-unsafe-webgpu");
  const context = await chromium.launchPersistentContext(userDir, {
    executablePath: CHROMIUM,
    ignoreDefaultArgs: ["--headless"],
    args: flags,
    viewport,
    acceptDownloads: true,
  });
  await context.grantPermissions(["clipboard-read", "clipboard-write"]).catch(() => {});
  return { context, close: async () => { await context.close(); rmSync(userDir, { recursive: true, force: true }); } };
}

/** Wait until the status says the picture for the current prompt is drawn (or an error). */
export async function waitReady(page, timeout = LOAD_TIMEOUT) {
  await page.waitForFunction(() => {
    const s = document.querySelector("[data-testid=status]");
    return s && (s.dataset.state === "ready" || s.dataset.state === "error");
  }, null, { timeout });
  const st = await page.getAttribute("[data-testid=status]", "data-state");
  if (st !== "ready") {
    const msg = await page.textContent("#failure-text");
    throw new Error(`page reached state ${st}: ${msg}`);
  }
}


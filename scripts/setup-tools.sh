#!/usr/bin/env bash
# Install the pinned web toolchain (idempotent). Usage: setup-tools.sh [--browser]
#   always: the wasm32 target, wasm-bindgen-cli 0.2.130 (must equal the wasm-bindgen in Cargo.lock),
#           wasm-opt 0.116.1 (binaryen built natively by the crates.io package: ~7 min once);
#   --browser: also Debian's chromium + chromedriver, playwright-core and axe-core (for the e2e tests)
# See ../shared/RECIPES.md for why these exact versions.
set -euo pipefail
cd "$(dirname "$0")/.."
WASM_BINDGEN_VERSION=0.2.130
WASM_OPT_VERSION=0.116.1

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
  # not --locked: a locked dependency of this version is missing from the registry
  cargo install "wasm-bindgen-cli@$WASM_BINDGEN_VERSION"
fi
if ! cargo install --list | grep -q "^wasm-opt v$WASM_OPT_VERSION:"; then
  echo "installing wasm-opt $WASM_OPT_VERSION (builds binaryen: ~7 min on 2 cores, once)" >&2
  cargo install --locked "wasm-opt@$WASM_OPT_VERSION"
fi
if [ "${1:-}" = "--browser" ] && { [ ! -d tools/node_modules/playwright-core ] || [ ! -f tools/node_modules/axe-core/axe.min.js ]; }; then
  (cd tools && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ "${1:-}" = "--browser" ] && [ ! -x /usr/lib/chromium/chromium ]; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi

#!/usr/bin/env bash
# Install the pinned web toolchain (idempotent). Usage: setup-tools.sh [--browser]
#   always: wasm32 target, trunk 0.21.14, wasm-bindgen-cli 0.2.130, binaryen (wasm-opt) from npm
#   --browser: also Debian's chromium + chromedriver, playwright-core and axe-core (for the e2e tests)
# See ../shared/RECIPES.md for why these exact versions.
set -euo pipefail
cd "$(dirname "$0")/.."
TRUNK_VERSION=0.21.14
WASM_BINDGEN_VERSION=0.2.130

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
if ! trunk --version 2>/dev/null | grep -q "$TRUNK_VERSION"; then
  echo "installing trunk $TRUNK_VERSION (takes 10-16 min on 2 cores, once)" >&2
  cargo install --locked "trunk@$TRUNK_VERSION"
fi
if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
  # not --locked: a locked dependency of this version is missing from the registry
  cargo install "wasm-bindgen-cli@$WASM_BINDGEN_VERSION"
fi
if [ ! -x tools/node_modules/.bin/wasm-opt ] || { [ "${1:-}" = "--browser" ] && { [ ! -d tools/node_modules/playwright-core ] || [ ! -f tools/node_modules/axe-core/axe.min.js ]; }; }; then
  (cd tools && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ "${1:-}" = "--browser" ] && [ ! -x /usr/lib/chromium/chromium ]; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi

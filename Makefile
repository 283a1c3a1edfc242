# sinkscope — `make serve` builds and serves the app on 127.0.0.1; `make test` runs every test.
# Both install what they need (idempotent): the model from PyPI, the wasm toolchain, Chromium.

PORT ?= 8080
export PATH := $(CURDIR)/tools/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)

.PHONY: serve test model tools tools-browser check-wasm web test-native test-e2e bench bench-web clean

model:
	scripts/fetch-model.sh

tools:
	scripts/setup-tools.sh

tools-browser:
	scripts/setup-tools.sh --browser

# The library (gguf, tokenizer, model, analysis, app, web worker) builds for the browser. A release
# build is a superset of `cargo check --lib --target wasm32-unknown-unknown` and shares every artifact
# with the Trunk build that follows, so the proof costs no extra compile time.
check-wasm: tools
	cargo build --lib --release --target wasm32-unknown-unknown

# Release build of the page into dist/ with Trunk (offline; see Trunk.toml).
web: model tools check-wasm
	trunk build --release

serve: web
	@echo "sinkscope: open http://127.0.0.1:$(PORT)/  (Ctrl-C to stop)"
	python3 -m http.server $(PORT) --bind 127.0.0.1 --directory dist

test: model tools-browser test-native web test-e2e

# Unit and integration tests: numerics against the reference, GGUF errors, tokenizer, analysis,
# session frames, CLI, toy model.
test-native: model
	cargo test --all-targets

# The page in headless Chromium (WebGPU through SwiftShader, and the CPU backend).
test-e2e: model tools-browser web
	node tests/e2e/run.mjs

# Native CPU benchmark (release build, one thread).
bench: model
	RAYON_NUM_THREADS=1 cargo run --release --bin sinkscope -- bench

# Browser benchmark (headless Chromium on this machine).
bench-web: model tools-browser web
	node tests/e2e/bench.mjs

clean:
	cargo clean
	rm -rf dist

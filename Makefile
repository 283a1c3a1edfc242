# sinkscope — `make serve` builds and serves the app on 127.0.0.1; `make test` runs every test.
# Both install what they need (idempotent): the model from PyPI, the wasm toolchain, Chromium.

PORT ?= 8080
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: serve test model tools tools-browser web test-native test-e2e bench bench-web bench-peers clean

model:
	scripts/fetch-model.sh

tools:
	scripts/setup-tools.sh

tools-browser:
	scripts/setup-tools.sh --browser

# The page in dist/: the three worker builds for the browser (wasm-bindgen, wasm-opt), the page's files,
# gzip copies for scripts/serve.py (the model is not compressed: 4-bit weights barely shrink).
web: model tools
	scripts/build-web.sh

serve: web
	@echo "sinkscope: serving dist/ (Ctrl-C to stop); open the address below"
	python3 scripts/serve.py --port $(PORT) --dir dist

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

# sinkscope against candle (f32 and quantized) on the same file, ratios within one run (builds candle
# in bench/peers the first time). Not part of `make test`.
bench-peers: model tools-browser web
	scripts/bench-peers.sh

clean:
	cargo clean
	rm -rf dist

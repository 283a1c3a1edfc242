# sinkscope — `make serve` builds and serves the app on 127.0.0.1; `make test` runs every test.
# Both install what they need (idempotent): the model from PyPI, the wasm toolchain, Chromium.

PORT ?= 8080
export PATH := $(CURDIR)/tools/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)

.PHONY: serve test model tools tools-browser web test-native test-wasm test-e2e bench clean

model:
	scripts/fetch-model.sh

tools:
	scripts/setup-tools.sh

tools-browser:
	scripts/setup-tools.sh --browser

# Release build of the page into dist/ (Trunk, offline; see Trunk.toml).
web: model tools
	trunk build --release

serve: web
	@echo "sinkscope: open http://127.0.0.1:$(PORT)/  (Ctrl-C to stop)"
	python3 -m http.server $(PORT) --bind 127.0.0.1 --directory dist

test: model tools-browser test-native test-wasm test-e2e

test-native: model
	cargo test --all-targets

# The library (tokenizer and model included) must build for the browser.
test-wasm: tools
	cargo check --lib --target wasm32-unknown-unknown --features wgpu

test-e2e: model tools-browser web
	node tests/e2e/run.mjs

bench: model
	RAYON_NUM_THREADS=1 cargo run --release --bin sinkscope -- bench

clean:
	cargo clean
	rm -rf dist

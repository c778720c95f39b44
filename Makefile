# The two commands of the README, on a fresh Debian/Ubuntu machine without a GPU:
#   make run    trains on the default corpus and prints samples
#   make test   runs every test on whatever adapter wgpu finds (lavapipe when there is no GPU)
# Both first install Mesa's software Vulkan driver, but only when no Vulkan driver is present.

.PHONY: bench-peer bench-gpu-prepare bench-gpu deps-gl test-gl deps-web web serve-web deps-web-test test-web bench-web deps run test check bench bench-memory deps-viz check-viz test-viz bench-viz bench-viz-rounds test-stress fuzz-deps fuzz-seeds fuzz fuzz-ci deps-mpi test-mpi bench-mpi

deps:
	@if ls /usr/share/vulkan/icd.d/*.json 2>/dev/null | grep -q . || ls /etc/vulkan/icd.d/*.json 2>/dev/null | grep -q .; then \
		echo "deps: a Vulkan driver is installed"; \
	elif command -v apt-get >/dev/null; then \
		echo "deps: no Vulkan driver found, installing mesa-vulkan-drivers (lavapipe)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers >/dev/null; \
	else \
		echo "deps: no Vulkan driver found; install your GPU's driver (or Mesa's lavapipe)"; \
	fi
	@if command -v python3 >/dev/null && ! PYTHONPATH=target/pydeps python3 -c "import tokenizers" 2>/dev/null; then \
		echo "deps: installing Python's tokenizers library into target/pydeps (tests/hf_python.rs)"; \
		PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check --target target/pydeps tokenizers \
			|| echo "deps: pip could not install tokenizers; tests/hf_python.rs will skip its check (outside CI)"; \
	fi

run: deps
	cargo run --release -- train

test: deps
	cargo test

check:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	# The library for the browser, with its bindings (web/): lints both for wasm32.
	cargo clippy --target wasm32-unknown-unknown -p wgpt-web -- -D warnings

# The training benchmark of the README: tokens/s of the presets on this adapter, a few GPT-2 (124M)
# steps, then nanoGPT's shakespeare-char configuration for 2000 steps on tinyshakespeare (final val
# loss and wall time are its last lines). SHARED is the folder holding data/tinyshakespeare.txt.
SHARED ?= ../shared
bench: deps
	cargo build --release
	./target/release/wgpt bench --preset tiny --preset shakespeare-char --steps 5
	./target/release/wgpt bench --preset gpt2 --set batch_size=1 --set block_size=128 --steps 2
	./target/release/wgpt train --data $(SHARED)/data/tinyshakespeare.txt --preset shakespeare-char \
		--out runs/bench-shakespeare-char-$$(date +%s)

# The README's memory table: one JSON object per line for each precision x recompute policy —
# GPT-2 (124M) at B=4, T=1024 and shakespeare at B=64, T=256 from the plan, shakespeare's step time
# measured at B=1 (the software adapter is too slow for B=64) and shakespeare-char's at its B=12 —
# then GPT-2's plan at T = 256 ... 2048 (attention memory grows linearly in T).
bench-memory: deps
	cargo build --release
	for p in f32 f16; do for r in none gelu norm attn block; do \
		./target/release/wgpt bench --preset gpt2 --set batch_size=4 --plan-only --json --precision $$p --recompute $$r; \
		./target/release/wgpt bench --preset shakespeare --plan-only --json --precision $$p --recompute $$r; \
		./target/release/wgpt bench --preset shakespeare --set batch_size=1 --steps 2 --json --precision $$p --recompute $$r; \
		./target/release/wgpt bench --preset shakespeare-char --steps 5 --json --precision $$p --recompute $$r; \
	done; done
	for t in 256 512 1024 2048; do \
		./target/release/wgpt bench --preset gpt2 --set batch_size=4 --set block_size=$$t --plan-only --json; \
	done

# The live window (cargo feature viz). deps-viz installs a virtual X server (Xvfb) and the X client
# libraries winit loads at run time, and xwd to capture the display; test-viz runs the window's
# unit tests and opens it under Xvfb (tests/viz_window.rs: its own screenshot has plots and a heat
# map, and the display captured with xwd shows that picture).
deps-viz:
	@if command -v Xvfb >/dev/null && command -v xwd >/dev/null && ldconfig -p | grep -q libxkbcommon-x11; then \
		echo "deps-viz: Xvfb, xwd and the X client libraries are installed"; \
	elif command -v apt-get >/dev/null; then \
		echo "deps-viz: installing xvfb, xwd (x11-apps) and the X client libraries"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			xvfb x11-apps libxkbcommon-x11-0 libxcursor1 libxrandr2 libxi6 >/dev/null; \
	else \
		echo "deps-viz: no Xvfb and no apt-get; install Xvfb to run the window test"; \
	fi

check-viz:
	cargo clippy --all-targets --features viz -- -D warnings

# Xvfb on a display of its own for the test, started and stopped by tests/xvfb.sh, which waits until
# the display takes clients (no guess of how long Xvfb takes to start).
test-viz: deps-viz
	WGPT_REQUIRE_DISPLAY=1 tests/xvfb.sh cargo test --features viz --lib --test viz_window

# Training tokens/s of the tiny preset (1000 steps, evaluations and checkpoints included) without
# the window and with it open under Xvfb, alternating, ROUNDS times each: the "N steps in Ts (X tok/s)"
# line of every run. Training starts once the window has drawn its first frames, so the window's
# start-up is not in the figure; the wall time of the whole command is printed after it.
ROUNDS ?= 2
bench-viz: deps deps-viz
	cargo build --release --features viz
	tests/xvfb.sh $(MAKE) --no-print-directory bench-viz-rounds

# bench-viz's runs, on the display tests/xvfb.sh made (DISPLAY).
bench-viz-rounds:
	@d=$$(mktemp -d); \
	for i in $$(seq $(ROUNDS)); do \
		printf "without the window: "; ./target/release/wgpt train --out $$d/plain$$i | grep "steps in"; \
		start=$$(date +%s%N); \
		printf "with the window:    "; ./target/release/wgpt train --viz \
			--screenshot $$d/window$$i.png --out $$d/viz$$i | grep "steps in"; \
		echo "                    (whole command, window start-up included: $$(( ($$(date +%s%N) - start) / 1000000 )) ms)"; \
	done; \
	rm -rf $$d

# The timing-sensitive tests (tests/crash.rs, tests/bad_input.rs, tests/viz_window.rs), run
# STRESS_ROUNDS times on an idle machine and as many times with every core kept busy by stress-ng,
# alternating; the counts of passes at the end (tests/stress.sh; README "Tests without timing races").
STRESS_ROUNDS ?= 10
test-stress: deps deps-viz
	@command -v stress-ng >/dev/null || ! command -v apt-get >/dev/null || { \
		echo "test-stress: installing stress-ng"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stress-ng >/dev/null; } \
		|| echo "test-stress: could not install stress-ng; shell busy loops will load the cores" 
	STRESS_ROUNDS=$(STRESS_ROUNDS) tests/stress.sh

# Fuzzing (fuzz/, README "Fuzzing"): libFuzzer targets for the files wgpt reads — tokenizer.json
# (tokenizer_json), text to train tokenizers on (tokenizer_encode), token shards (shard) and
# model.safetensors/config.json (checkpoint). Each run starts from valid inputs that fuzz/src/bin/seeds.rs
# writes with wgpt's own writers into fuzz/seeds/<target>; what a run learns stays in fuzz/corpus/<target>
# and a crashing input is saved under fuzz/artifacts/<target>/.
#   make fuzz                       every target for FUZZ_SECONDS with cargo-fuzz (installed if missing), under ASan
#   make fuzz FUZZ_SECONDS=600      longer
#   make fuzz FUZZ_TARGETS=shard    one target
#   make fuzz-ci                    CI's short pass: FUZZ_CI_SECONDS a target, built without cargo-fuzz
FUZZ_TARGETS ?= tokenizer_json tokenizer_encode shard checkpoint
FUZZ_SECONDS ?= 60
FUZZ_CI_SECONDS ?= 15
# The coverage flags cargo-fuzz 0.13 passes, less its address sanitizer (the CI pass skips it for a shorter
# build), and the host triple: with --target, build scripts and proc-macros are not instrumented.
FUZZ_RUSTFLAGS = --cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
	-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
	-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks
FUZZ_HOST = $$(rustc +nightly -vV | sed -n 's/^host: //p')
FUZZ_CI_DIR = $(CURDIR)/fuzz/target/ci

# The nightly toolchain (cargo-fuzz's -Z flags need it) and a C++ compiler (libfuzzer-sys builds libFuzzer).
fuzz-deps:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@if command -v c++ >/dev/null; then :; \
	elif command -v apt-get >/dev/null; then \
		echo "fuzz-deps: no C++ compiler, installing g++"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null; \
	else \
		echo "fuzz-deps: libfuzzer-sys needs a C++ compiler (c++); install g++ or clang" >&2; exit 1; \
	fi

fuzz-seeds: fuzz-deps
	cd fuzz && cargo +nightly run --release --bin seeds -- seeds

fuzz: fuzz-deps
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd fuzz && cargo +nightly fuzz build
	cd fuzz && ./target/$(FUZZ_HOST)/release/seeds seeds
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$t && cargo +nightly fuzz run $$t corpus/$$t seeds/$$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

fuzz-ci: fuzz-deps
	cd fuzz && RUSTFLAGS="$(FUZZ_RUSTFLAGS)" CARGO_TARGET_DIR=$(FUZZ_CI_DIR) CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
		cargo +nightly build --release --target $(FUZZ_HOST) --bins
	@bin=$(FUZZ_CI_DIR)/$(FUZZ_HOST)/release; $$bin/seeds $(FUZZ_CI_DIR)/seeds && \
	for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_CI_DIR)/corpus/$$t $(CURDIR)/fuzz/artifacts/$$t; \
		echo "fuzz-ci: $$t for $(FUZZ_CI_SECONDS) s"; \
		$$bin/$$t -max_total_time=$(FUZZ_CI_SECONDS) -timeout=10 -print_final_stats=1 \
			-artifact_prefix=$(CURDIR)/fuzz/artifacts/$$t/ $(FUZZ_CI_DIR)/corpus/$$t $(FUZZ_CI_DIR)/seeds/$$t \
			> $(FUZZ_CI_DIR)/$$t.log 2>&1 \
			|| { tail -n 60 $(FUZZ_CI_DIR)/$$t.log; echo "fuzz-ci: $$t failed; the input is in fuzz/artifacts/$$t/" >&2; exit 1; }; \
		grep -E '^(stat::number_of_executed_units|Done)' $(FUZZ_CI_DIR)/$$t.log; \
	done

# The browser build (web/, README "In the browser"): the engine compiled to wasm32 and bound with
# wasm-bindgen-cli at exactly the version of Cargo.lock (installed by cargo when missing; wasm-pack
# and trunk download binaries and fail on machines without the internet), then a static site of
# relative paths in target/web/site/ that any static host serves. The tinyshakespeare corpus of
# SHARED is served with it when present (the shakespeare-char preset reads it).
WASM_BINDGEN_VERSION = $(shell sed -n '/^name = "wasm-bindgen"$$/{n;s/^version = "\(.*\)"$$/\1/p;}' Cargo.lock)
WEB_SITE = target/web/site
WEB_PORT ?= 8765

deps-web:
	@rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@# --debug: built in about a minute instead of several on two cores; it binds wgpt's wasm in
	@# 1.4 s instead of 0.4 s, to the same bytes (compared).
	@wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $(WASM_BINDGEN_VERSION)" || { \
		echo "deps-web: installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION) (the version of Cargo.lock)"; \
		cargo install --debug wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION); }

web: deps-web
	cargo build --release --target wasm32-unknown-unknown -p wgpt-web
	rm -rf $(WEB_SITE) && mkdir -p $(WEB_SITE)
	wasm-bindgen target/wasm32-unknown-unknown/release/wgpt_web.wasm --target web --no-typescript --out-dir $(WEB_SITE)/pkg
	cp web/site/* $(WEB_SITE)/
	@if [ -f $(SHARED)/data/tinyshakespeare.txt ]; then cp $(SHARED)/data/tinyshakespeare.txt $(WEB_SITE)/; \
	else echo "web: no $(SHARED)/data/tinyshakespeare.txt; shakespeare-char will ask for a text file"; fi
	@du -sh $(WEB_SITE) | sed 's/\t.*/ in all/; s/^/web: $(subst /,\/,$(WEB_SITE)): /'

serve-web: web
	@echo "wgpt: open http://127.0.0.1:$(WEB_PORT)/ (Ctrl-C stops the server)"
	python3 -m http.server $(WEB_PORT) --bind 127.0.0.1 --directory $(WEB_SITE)

# make test-web (README "In the browser"; .ci/run calls it): Debian's Chromium and ChromeDriver, and
# the test's two npm packages (playwright-core drives that Chromium, no browser download; pngjs
# reads the screenshot), each installed only when missing. Then, in headless Chromium on
# SwiftShader's WebGPU: the kernel tests (every WGSL entry point against its f64 reference, the
# tiny GPT against PyTorch: the same test files as natively, through wasm-bindgen-test), and the
# page end to end (web/test/page.mjs) with a run the native binary trains first.
WEB_KERNEL_TESTS = ops_matmul ops_layernorm ops_attention ops_attention_flash ops_elementwise ops_embedding ops_xent_adamw viz_maps gpt_reference generate
WEB_RUNNER_ENV = CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner CHROMEDRIVER=$$(command -v chromedriver) \
	WASM_BINDGEN_TEST_WEBDRIVER_JSON=$(CURDIR)/web/webdriver.json WASM_BINDGEN_TEST_TIMEOUT=600 WASM_BINDGEN_TEST_DRIVER_TIMEOUT=120

deps-web-test: deps-web
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null; then \
		echo "deps-web-test: installing Debian's chromium and chromium-driver"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "deps-web-test: install Chromium and ChromeDriver (chromium, chromium-driver)" >&2; exit 1; fi
	@command -v npm >/dev/null || ! command -v apt-get >/dev/null || { \
		echo "deps-web-test: installing Node.js and npm"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
	@[ -d web/test/node_modules/playwright-core ] && [ -d web/test/node_modules/pngjs ] || (cd web/test && npm ci --no-audit --no-fund)

test-web: deps web deps-web-test
	$(WEB_RUNNER_ENV) cargo test --target wasm32-unknown-unknown $(WEB_KERNEL_TESTS:%=--test %)
	cargo build
	rm -rf target/web/native-run target/web/out
	./target/debug/wgpt train --steps 40 --out target/web/native-run --set eval_every=20 --set sample_every=0 >/dev/null
	cd web/test && node page.mjs ../../$(WEB_SITE) ../../target/debug/wgpt ../../target/web/native-run ../../target/web/out

# The page's training speed and start-up next to the native binary's on this machine's adapters
# (SwiftShader in Chromium, lavapipe natively), alternating, BENCH_ROUNDS times: WEB_BENCH_STEPS
# steps of tiny and of shakespeare-char each.
BENCH_ROUNDS ?= 2
WEB_BENCH_STEPS ?= 100
bench-web: web deps-web-test
	cargo build --release
	@for i in $$(seq $(BENCH_ROUNDS)); do \
		echo "round $$i, native (lavapipe):"; \
		./target/release/wgpt bench --preset tiny --preset shakespeare-char --steps $(WEB_BENCH_STEPS); \
		echo "round $$i, page (Chromium, SwiftShader):"; \
		(cd web/test && node page.mjs --bench ../../$(WEB_SITE) $(WEB_BENCH_STEPS)); \
	done

# The kernel tests through a second WGSL compiler path: wgpu's GL backend on Mesa's llvmpipe (naga
# -> GLSL), besides make test's Vulkan on lavapipe (naga -> SPIR-V) and test-web's Dawn/Tint. One
# test thread: the GL backend serialises on one context, and parallel tests time out waiting for it.
GL_KERNEL_TESTS = ops_matmul ops_layernorm ops_attention ops_attention_flash ops_elementwise ops_embedding ops_xent_adamw gpt_reference generate eval
deps-gl:
	@if ldconfig -p | grep -q libEGL_mesa; then echo "deps-gl: Mesa's EGL and GL drivers are installed"; \
	elif command -v apt-get >/dev/null; then \
		echo "deps-gl: installing Mesa's EGL and GL drivers (libegl1, libegl-mesa0, libgl1-mesa-dri)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri >/dev/null; \
	else echo "deps-gl: install Mesa's EGL and GL drivers (llvmpipe)" >&2; exit 1; fi

# Data-parallel training under mpirun (cargo feature mpi, tests/mpi.rs): Open MPI and libclang
# (for the mpi crate's bindings) from apt when missing.
deps-mpi:
	@if command -v mpirun >/dev/null && ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then \
		echo "deps-mpi: Open MPI and libclang are installed"; \
	elif command -v apt-get >/dev/null; then \
		echo "deps-mpi: installing openmpi-bin libopenmpi-dev libclang-dev"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openmpi-bin libopenmpi-dev libclang-dev >/dev/null; \
	else \
		echo "deps-mpi: install Open MPI (or MPICH) and libclang"; \
	fi

test-mpi: deps deps-mpi
	cargo clippy --features mpi --all-targets -- -D warnings
	cargo test --features mpi --test mpi --test dist --test dist_step

# Data-parallel step time and comm_s at 2 ranks: buckets overlapping backward or not, ZeRO-1 or not.
bench-mpi: deps deps-mpi
	cargo build --release --features mpi
	scripts/bench-mpi.sh

test-gl: deps-gl
	WGPU_BACKEND=gl WGPT_REQUIRE_BACKEND=gl cargo test $(GL_KERNEL_TESTS:%=--test %) -- --test-threads=1


# A GPU benchmark for a lent NVIDIA machine with no network and no Rust (README "On a GPU"):
# bench-gpu-prepare, here, packs the release binary, the kernel test binaries, the fixture and the
# Vulkan loader into .gpu/; bench-gpu, there, probes, checks every kernel variant's parity on that
# GPU, then times GPT-2 124M in wgpt and in PyTorch and prints the ratios and MFU.
bench-gpu-prepare:
	SHARED=$(SHARED) scripts/bench-gpu-prepare.sh

bench-gpu:
	bash scripts/bench-gpu.sh

# wgpt's training step against the Burn peer (../shared/peers/burn-gpt) on this adapter, alternating,
# with the ratio per shape (scripts/bench-peer.sh; the peer is built once into target/peer).
bench-peer: deps
	SHARED=$(SHARED) scripts/bench-peer.sh

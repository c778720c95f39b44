#!/usr/bin/env bash
# Packs what `make bench-gpu` needs on a GPU machine that has no network and no Rust toolchain into
# .gpu/ (ignored by git; carry it): the release wgpt binary, the kernel and whole-model test
# binaries (stripped, xz-compressed), the PyTorch fixture they read, and the Vulkan loader as
# Debian packages to unpack there. Run here, on the build machine: `make bench-gpu-prepare`.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${SHARED:-../shared}"
OUT=.gpu
TESTS="ops_matmul ops_layernorm ops_attention ops_attention_flash ops_elementwise ops_embedding ops_xent_adamw precision gpt_reference"

rm -rf "$OUT" && mkdir -p "$OUT/tests" "$OUT/debs"
cargo build --release
cp target/release/wgpt "$OUT/"
strip "$OUT/wgpt"

# The test executables cargo builds, one per test file, found through its JSON messages.
args=()
for t in $TESTS; do args+=(--test "$t"); done
cargo test --release --no-run --message-format=json "${args[@]}" 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])
' | while read -r name exe; do
    cp "$exe" "$OUT/tests/$name"
    strip "$OUT/tests/$name"
done
(cd "$OUT" && tar cJf tests.tar.xz tests && rm -rf tests)
mkdir -p "$OUT/shared/fixtures"
cp "$SHARED/fixtures/gpt2_tiny_reference.safetensors" "$OUT/shared/fixtures/"
mkdir -p "$OUT/shared/data"
cp "$SHARED/data/tinyshakespeare.txt" "$OUT/shared/data/"

# The Vulkan loader (the NVIDIA driver brings its ICD, not always libvulkan.so.1).
if command -v apt-get >/dev/null; then
    lists=$(mktemp -d)
    o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
    mkdir -p "$lists/partial"
    apt-get "${o[@]}" update -qq
    (cd "$OUT/debs" && apt-get "${o[@]}" download libvulkan1 >/dev/null)
    rm -rf "$lists"
else
    echo "bench-gpu-prepare: no apt-get: the GPU machine must have libvulkan.so.1 itself" >&2
fi
du -sh "$OUT"
echo "bench-gpu-prepare: carry .gpu and run: bash scripts/bench-gpu.sh   (or make bench-gpu)"

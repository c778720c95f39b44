#!/usr/bin/env bash
# `make bench-gpu`: wgpt on a lent NVIDIA GPU machine (no network, no Rust), from what
# scripts/bench-gpu-prepare.sh packed into .gpu/. In order, within about 8 minutes:
#   1. probe (about a minute at most): the Vulkan loader and the NVIDIA ICD, an NVIDIA adapter
#      that wgpt opens, glibc, PyTorch with CUDA; a missing one stops the script with one line;
#   2. parity: the kernel tests (every matmul variant the GPU runs, every entry point, against the
#      f64 reference) and the whole tiny GPT against the PyTorch fixture, on this GPU;
#   3. wgpt: GPT-2 124M training steps at T = 1024, f32 and f16, recompute none and block, kernels
#      autotuned;
#   4. PyTorch: the same model (Hugging Face GPT2LMHeadModel) in fp32 eager, bf16 autocast eager
#      and bf16 torch.compile;
#   5. a table: tokens/s, ratio to PyTorch bf16 eager, MFU against the GPU's peak.
# Everything also lands in $OUT (or .gpu/out): bench.jsonl and the logs.
# BENCH_GPU_LOCAL=1 runs the same steps on any adapter with small shapes (to try the script here).
set -uo pipefail
cd "$(dirname "$0")/.."
G=.gpu
OUTDIR="${OUT:-$G/out}"
mkdir -p "$OUTDIR"
LOG="$OUTDIR/bench.jsonl"
: >"$LOG"
LOCAL="${BENCH_GPU_LOCAL:-}"
say() { echo "bench-gpu: $*"; }
stop() { say "STOP: $*"; exit 2; }

# ---- 1. probe -------------------------------------------------------------------------------------
[ -x "$G/wgpt" ] || stop "no $G/wgpt: run scripts/bench-gpu-prepare.sh (make bench-gpu-prepare) on the build machine and carry .gpu"
if [ -z "$LOCAL" ]; then
    if ! ldconfig -p 2>/dev/null | grep -q libvulkan.so.1; then
        for f in "$G"/debs/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
        ldconfig
    fi
    ldconfig -p | grep -q libvulkan.so.1 || stop "no Vulkan loader (libvulkan.so.1), and none in $G/debs"
    if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
        for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
            /etc/vulkan/icd.d/nvidia_icd.json; do
            [ -e "$icd" ] && export VK_DRIVER_FILES="$icd" && break
        done
    fi
    [ -n "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] || stop "no NVIDIA Vulkan ICD file (nvidia_icd.json) under /usr/local/nvidia, /usr/share or /etc"
fi
say "glibc: $(ldd --version 2>&1 | head -1)"
info=$(timeout 40 "$G/wgpt" info 2>&1) || stop "wgpt info failed: $(echo "$info" | tail -1)"
echo "$info" | sed 's/^/    /'
adapter=$(echo "$info" | grep '^\*' | head -1)
if [ -z "$LOCAL" ]; then
    echo "$adapter" | grep -qi nvidia || stop "wgpt does not use an NVIDIA adapter: ${adapter:-none listed}"
    echo "$adapter" | grep -q '(Vulkan' || stop "the NVIDIA adapter is not on Vulkan: $adapter"
fi
torch=$(timeout 60 python3 -c 'import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' 2>&1 | tail -1)
say "torch: ${torch:-none}"
case "$torch" in *True*) have_torch=1 ;; *) have_torch= ; say "no PyTorch with CUDA: the PyTorch rows are skipped" ;; esac
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
say "GPU: ${gpu_name:-unknown} | wgpt: $adapter"

# ---- 2. parity ------------------------------------------------------------------------------------
rm -rf "$G/tests" && tar xJf "$G/tests.tar.xz" -C "$G"
backend=vulkan limit=120
[ -n "$LOCAL" ] && backend= limit=600
parity_ok=1
for t in "$G"/tests/*; do
    name=$(basename "$t")
    start=$(date +%s)
    if WGPT_SHARED="$G/shared" WGPT_REQUIRE_BACKEND="$backend" timeout $limit "$t" --test-threads=4 >"$OUTDIR/parity-$name.log" 2>&1; then
        result=pass
    else
        result=FAIL
        parity_ok=
    fi
    summary=$(grep '^test result' "$OUTDIR/parity-$name.log" | tail -1)
    say "parity $name: $result ($(( $(date +%s) - start )) s) ${summary#test result: }"
    echo "{\"impl\":\"parity\",\"test\":\"$name\",\"result\":\"$result\"}" >>"$LOG"
done
[ -n "$parity_ok" ] || say "a parity test failed (logs in $OUTDIR): the figures below are of kernels that are wrong here"

# ---- 3. wgpt --------------------------------------------------------------------------------------
B=8 T=1024 STEPS=5 PRESET=gpt2
[ -n "$LOCAL" ] && B=4 T=64 STEPS=2 PRESET=shakespeare-char
export WGPT_CACHE_DIR="$OUTDIR/cache"
for p in f32 f16; do
    for r in none block; do
        row=$(timeout 150 "$G/wgpt" bench --preset $PRESET --set batch_size=$B --set block_size=$T \
            --precision $p --recompute $r --set autotune=on --steps $STEPS --json 2>"$OUTDIR/wgpt-$p-$r.err" | tail -1)
        if [ -n "$row" ]; then
            echo "$row" >>"$LOG"
        else
            err=$(grep -v '^notice' "$OUTDIR/wgpt-$p-$r.err" | tail -1)
            echo "{\"impl\":\"wgpt\",\"precision\":\"$p\",\"recompute\":\"$r\",\"error\":$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "${err:-timed out}")}" >>"$LOG"
        fi
        say "wgpt $p recompute=$r: $(tail -1 "$LOG" | cut -c1-200)"
    done
done
# Tensor cores (the `coop` matmul, f16 only), where the GPU has wgpu's cooperative matrices: its
# parity ran above (precision's f16 matmul test covers every variant the GPU runs).
if "$G/wgpt" info 2>/dev/null | grep '^\*' -A1 | grep -q 'cooperative-matrix=yes'; then
    row=$(timeout 150 "$G/wgpt" bench --preset $PRESET --set batch_size=$B --set block_size=$T \
        --precision f16 --recompute none --set matmul=coop --steps $STEPS --json 2>"$OUTDIR/wgpt-coop.err" | tail -1)
    [ -n "$row" ] && echo "$row" >>"$LOG" && say "wgpt f16 matmul=coop: $(tail -1 "$LOG" | cut -c1-200)" ||
        say "wgpt f16 matmul=coop failed: $(tail -1 "$OUTDIR/wgpt-coop.err")"
fi

# ---- 4. PyTorch -----------------------------------------------------------------------------------
if [ -n "$have_torch" ]; then
    timeout 240 python3 scripts/torch_gpt2.py $B $T 10 fp32 bf16 compile >>"$LOG" 2>"$OUTDIR/torch.err" ||
        say "PyTorch stopped early: $(tail -1 "$OUTDIR/torch.err")"
fi

# ---- 4b. wgpt eval on a GPT-2-shaped transformers directory, against transformers' loss --------
WGPT_BIN="$G/wgpt" timeout 300 python3 scripts/eval-gpt2-shape.py "$G/shared/data/tinyshakespeare.txt" 2>&1 |
    sed 's/^/bench-gpu: /' | tee "$OUTDIR/eval-gpt2.txt" || say "the GPT-2 eval stopped early"

# ---- 5. table -------------------------------------------------------------------------------------
python3 - "$LOG" "${gpu_name:-$adapter}" <<'EOF'
import json, os, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
gpu = sys.argv[2]
# Dense peaks in TFLOP/s (fp32 without tensor cores, bf16/fp16 tensor cores), from the vendors'
# data sheets; PEAK_TFLOPS_FP32 / PEAK_TFLOPS_BF16 override them.
PEAKS = {"H200": (67, 989), "H100 80GB HBM3": (67, 989), "H100 PCIe": (51, 756), "H100": (67, 989),
         "A100": (19.5, 312), "L4": (30, 121), "RTX 4090": (82.6, 165)}
fp32, bf16 = next((v for k, v in PEAKS.items() if k in gpu), (None, None))
fp32 = float(os.environ.get("PEAK_TFLOPS_FP32", fp32 or 0)) or None
bf16 = float(os.environ.get("PEAK_TFLOPS_BF16", bf16 or 0)) or None
# Training FLOPs per token, as nanoGPT estimates them: 6 N (N without the position table) plus
# attention's 12 L C T.
L, C, V = 12, 768, 50257
def flops_per_token(t):
    n = V * C + L * (12 * C * C + 13 * C) + 2 * C
    return 6 * n + 12 * L * C * t
ref = next((r["tokens_per_s"] for r in rows if r.get("impl") == "torch" and r.get("mode") == "bf16" and "tokens_per_s" in r), None)
print(f"\n{'run':34} {'tokens/s':>10} {'ms/step':>9} {'/ torch bf16':>12} {'MFU':>7}")
for r in rows:
    if r.get("impl") == "parity":
        continue
    if r.get("impl") == "torch":
        name, low = f"torch {r['mode']}", r["mode"] != "fp32"
    else:
        mm = "" if r.get("matmul", "auto") == "auto" else f" {r['matmul']}"
        name, low = f"wgpt {r.get('precision')} recompute={r.get('recompute')}{mm}", r.get("precision") == "f16"
    if "error" in r or r.get("tokens_per_s") is None:
        print(f"{name:34} {'—':>10}  {r.get('error', 'no figure')[:120]}")
        continue
    tps, t = r["tokens_per_s"], r.get("block_size", 1024)
    peak = bf16 if low else fp32
    mfu = f"{100 * tps * flops_per_token(t) / (peak * 1e12):6.1f}%" if peak else "   n/a"
    ratio = f"{tps / ref:12.3f}" if ref else f"{'n/a':>12}"
    print(f"{name:34} {tps:10.0f} {r.get('step_ms', 0):9.1f} {ratio} {mfu}")
print(f"\nMFU: f32 / fp32 rows against {fp32} TFLOP/s (no tensor cores), f16 / bf16 rows against {bf16} (tensor cores); GPU: {gpu}")
EOF
say "done; rows in $LOG"

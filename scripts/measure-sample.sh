#!/bin/bash
# Issue 16's generation measure: `wgpt sample` on a 4-layer, C=128, 256-position model with a
# 512-token BPE, the time for 200 new tokens minus the time for 20, over 180, with the KV cache and
# with --no-cache (a whole forward pass per token), alternating, ROUNDS rounds (default 2). With
# BASELINE=path/to/another/wgpt, that binary is measured the same way in every round, alternating
# with this build's. Run it on an idle machine.
# Usage: [BASELINE=...] [ROUNDS=N] scripts/measure-sample.sh [CORPUS] (default: ../shared/data/tinyshakespeare.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
W=target/release/wgpt
CORPUS=${1:-${WGPT_SHARED:-../shared}/data/tinyshakespeare.txt}
M=$(mktemp -d)/model
trap 'rm -rf "$(dirname "$M")"' EXIT
cargo build --release -q
$W train --data "$CORPUS" --set n_layer=4 --set n_head=4 --set n_embd=128 --set block_size=256 \
    --set tokenizer=bpe --set vocab_size=512 --set batch_size=4 --steps 2 --out "$M" >/dev/null 2>&1
seconds() {
    local s e
    s=$(date +%s.%N)
    $1 sample --ckpt "$M" --prompt "ROMEO:" --tokens "$2" ${3:+"$3"} >/dev/null 2>&1
    e=$(date +%s.%N)
    echo "$e - $s" | bc -l
}
for round in $(seq "${ROUNDS:-2}"); do
    for bin in $W ${BASELINE:-}; do
        for mode in "" --no-cache; do
            a=$(seconds "$bin" 20 "$mode")
            b=$(seconds "$bin" 200 "$mode")
            printf 'round %s %-28s %-10s %.1f ms per token\n' "$round" "$bin" "${mode:-cache}" \
                "$(echo "($b - $a) * 1000 / 180" | bc -l)"
        done
    done
done

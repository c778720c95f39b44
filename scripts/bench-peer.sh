#!/usr/bin/env bash
# make bench-peer: wgpt's training step against Burn's (../shared/peers/burn-gpt, the same GPT step
# on Burn 0.22's wgpu backend), on the same adapter, alternating A B A B so that a busy machine
# slows both alike. Prints each figure and the ratio per shape. The peer is built once into
# target/peer (about 16 minutes on 2 cores); later runs reuse it.
#   SHAPES="V,T,B,L,NH,C ..."  ROUNDS=2  STEPS=10  SHARED=../shared
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
SHAPES=${SHAPES:-"65,64,12,4,4,128 65,128,8,4,4,256"}
ROUNDS=${ROUNDS:-2}
STEPS=${STEPS:-10}
peer_src="$SHARED/peers/burn-gpt"
peer_dir=target/peer/burn-gpt
peer="$peer_dir/target/release/burngpt"

if [ ! -x "$peer" ]; then
    [ -f "$peer_src/Cargo.toml" ] || { echo "bench-peer: no Burn peer at $peer_src (set SHARED=)"; exit 1; }
    echo "bench-peer: building the Burn peer once into $peer_dir (about 16 minutes on 2 cores)"
    mkdir -p target/peer && rm -rf "$peer_dir" && cp -r "$peer_src" "$peer_dir" && chmod -R u+w "$peer_dir"
    # Its own workspace: target/peer lies inside wgpt's.
    printf '\n[workspace]\n' >>"$peer_dir/Cargo.toml"
    (cd "$peer_dir" && cargo build --release --quiet)
fi
cargo build --release --quiet
wgpt=./target/release/wgpt

# Warm both compilers' caches (Mesa's shader cache, wgpt's autotune cache, Burn's autotune) so
# that no timed run pays for compilation.
for shape in $SHAPES; do
    IFS=, read -r V T B L NH C <<<"$shape"
    STEPS=2 WARMUP=1 V=$V T=$T B=$B NL=$L NH=$NH C=$C "$peer" >/dev/null 2>&1 || true
done

printf '%-26s %12s %12s %8s\n' "shape" "wgpt ms" "burn ms" "ratio"
for shape in $SHAPES; do
    IFS=, read -r V T B L NH C <<<"$shape"
    set_args=(--set "block_size=$T" --set "batch_size=$B" --set "n_layer=$L" --set "n_head=$NH" --set "n_embd=$C")
    [ "$V" = 65 ] || { echo "bench-peer: wgpt's bench preset is char-level (V=65); shape $shape skipped"; continue; }
    w_all=() b_all=()
    for r in $(seq "$ROUNDS"); do
        w=$("$wgpt" bench --preset shakespeare-char "${set_args[@]}" --steps "$STEPS" --json | grep '^{' |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["step_ms"])')
        b=$(STEPS=$STEPS WARMUP=2 V=$V T=$T B=$B NL=$L NH=$NH C=$C "$peer" 2>/dev/null |
            sed -n 's/^RESULT .*median_ms=\([0-9.]*\).*/\1/p')
        [ -n "$b" ] || { echo "bench-peer: the Burn peer printed no RESULT line for $shape"; exit 1; }
        echo "  round $r: wgpt $w ms, burn $b ms"
        w_all+=("$w") b_all+=("$b")
    done
    python3 - "$shape" "${w_all[*]}" "${b_all[*]}" <<'PY'
import statistics, sys
shape, w, b = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
mw, mb = statistics.median(w), statistics.median(b)
print(f"{'V,T,B,L,NH,C=' + shape:<26} {mw:12.1f} {mb:12.1f} {mb / mw:7.2f}x")
PY
done

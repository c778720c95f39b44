#!/usr/bin/env bash
# Data-parallel figures on this machine (make bench-mpi): mpirun -np 2 on shakespeare-char with
# the gradient exchange in per-layer buckets (the default) or after the whole backward pass
# (WGPT_GRAD_BUCKETS=1; 5 is the default there), with and without ZeRO-1, alternating ROUNDS times; prints the median
# step time and comm_s of steps 3..STEPS of each run. One lavapipe thread per rank.
set -euo pipefail
STEPS=${STEPS:-12}
ROUNDS=${ROUNDS:-2}
NP=${NP:-2}
WGPT=${WGPT:-target/release/wgpt}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
mpi=(mpirun --allow-run-as-root --oversubscribe -np "$NP" --mca btl tcp,self --mca btl_tcp_if_include lo
     --mca oob_tcp_if_include lo --mca pml ob1 -x LP_NUM_THREADS=1 -x XDG_RUNTIME_DIR -x WGPT_GRAD_BUCKETS)
summary() {
  python3 - "$1" "$2" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"comm_s"' in l]
rows = [r for r in rows if r["step"] >= 3]
tok = 12 * 64 * int(sys.argv[2])  # the job's tokens per step: shakespeare-char B=12, T=64 per rank
step = statistics.median(tok / r["tokens_per_s"] for r in rows)
comm = statistics.median(r["comm_s"] for r in rows)
print(f"step {step*1000:8.1f} ms   comm_s {comm*1000:6.1f} ms ({100*comm/step:4.1f}%)")
PY
}
for round in $(seq "$ROUNDS"); do
  for zero in 0 1; do
    # 5: one bucket per layer and one for the rest (the default for 4 layers).
    for buckets in 1 5; do
      dir="$out/r$round-z$zero-b$buckets"
      export WGPT_GRAD_BUCKETS=$buckets
      "${mpi[@]}" "$WGPT" train --preset shakespeare-char --steps "$STEPS" --set log_every=1 \
        --set eval_every=0 --set sample_tokens=8 --set zero=$zero --out "$dir" > "$dir.log" 2>&1 \
        || { cat "$dir.log"; exit 1; }
      printf "round %s  zero=%s  buckets=%-6s  " "$round" "$zero" "$buckets"
      summary "$dir/metrics.jsonl" "$NP"
    done
  done
done

#!/usr/bin/env bash
# make test-stress: the timing-sensitive test binaries, ROUNDS times on an idle machine and ROUNDS
# times with every core kept busy by another program (stress-ng --cpu, or shell busy loops where it
# is missing), alternating; a line per run and the counts at the end. A failed run's log stays in
# target/stress/; the exit status is 1 if any run failed.
#   STRESS_ROUNDS=10                  runs of each kind
#   STRESS_TESTS="crash bad_input"    the plain test binaries (tests/NAME.rs)
#   STRESS_VIZ=1                      also tests/viz_window.rs on Xvfb (0 leaves it out)
set -uo pipefail
cd "$(dirname "$0")/.."
rounds=${STRESS_ROUNDS:-10}
tests=${STRESS_TESTS:-crash bad_input}
viz=${STRESS_VIZ:-1}
logs=target/stress
rm -rf "$logs" && mkdir -p "$logs"

args=()
for t in $tests; do args+=(--test "$t"); done
names="$tests"
[ "$viz" = 1 ] && names="$names viz_window"
# Built first: no run's time includes a build.
cargo test --no-run ${args[@]+"${args[@]}"} || exit 1
if [ "$viz" = 1 ]; then cargo test --no-run --features viz --test viz_window || exit 1; fi

# One run of every binary; its status. CI=1 as in CI: a test that cannot do its check fails
# instead of skipping. Each cargo call also puts its own build of the wgpt binary in place.
run_once() {
    CI=1 cargo test ${args[@]+"${args[@]}"} &&
        if [ "$viz" = 1 ]; then WGPT_REQUIRE_DISPLAY=1 tests/xvfb.sh cargo test --features viz --test viz_window; fi
}

loaders=()
load_start() {
    if command -v stress-ng >/dev/null; then
        stress-ng --cpu 0 --quiet &
        loaders+=($!)
    else
        for _ in $(seq "$(nproc)"); do
            sh -c 'while :; do :; done' &
            loaders+=($!)
        done
    fi
}
load_stop() {
    for p in ${loaders[@]+"${loaders[@]}"}; do kill "$p" 2>/dev/null; done
    for p in ${loaders[@]+"${loaders[@]}"}; do wait "$p" 2>/dev/null; done
    loaders=()
}
trap load_stop EXIT

# Busy and total jiffies of all cores so far (/proc/stat), to print how busy the machine was.
cpu_ticks() { awk '/^cpu /{ print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8 }' /proc/stat; }

passed_idle=0 passed_loaded=0
for i in $(seq "$rounds"); do
    for kind in idle loaded; do
        [ "$kind" = loaded ] && load_start
        read -r busy0 total0 < <(cpu_ticks)
        start=$SECONDS
        log="$logs/$kind-$i.log"
        if run_once >"$log" 2>&1; then
            result=passed
            rm -f "$log"
            if [ "$kind" = idle ]; then passed_idle=$((passed_idle + 1)); else passed_loaded=$((passed_loaded + 1)); fi
        else
            result="FAILED (log: $log)"
        fi
        read -r busy1 total1 < <(cpu_ticks)
        [ "$kind" = loaded ] && load_stop
        busy=$(( 100 * (busy1 - busy0) / (total1 - total0 + 1) ))
        echo "test-stress: $kind run $i/$rounds $result in $((SECONDS - start)) s (cores $busy% busy)"
    done
done
echo "test-stress: $names: idle $passed_idle/$rounds passed, loaded $passed_loaded/$rounds passed"
[ "$passed_idle" = "$rounds" ] && [ "$passed_loaded" = "$rounds" ]

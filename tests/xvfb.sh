#!/usr/bin/env bash
# Runs a command on a virtual X display of its own (Xvfb, 1280x800), for the window's test and
# benchmark: waits until the server takes clients (Xvfb writes its display number to -displayfd
# only then, so no guess of how long it starts), runs the command with DISPLAY set, and stops Xvfb
# whatever the command's result.   Usage: tests/xvfb.sh COMMAND [ARGS...]
set -u
ready=$(mktemp)
Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$ready" >/dev/null 2>&1 &
xvfb=$!
trap 'kill $xvfb 2>/dev/null; rm -f "$ready"' EXIT
# Polls the event (the display number, a whole line) with a generous deadline: 120 s.
for _ in $(seq 1200); do
    [ "$(wc -l <"$ready")" -ge 1 ] && break
    kill -0 $xvfb 2>/dev/null || { echo "xvfb.sh: Xvfb exited before its display was ready" >&2; exit 1; }
    sleep 0.1
done
[ "$(wc -l <"$ready")" -ge 1 ] || { echo "xvfb.sh: Xvfb's display was not ready within 120 s" >&2; exit 1; }
export DISPLAY=":$(head -n1 "$ready")"
"$@"

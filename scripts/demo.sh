#!/usr/bin/env bash
# demo.sh - the quick start's demo: the mock fleet that conf/llmux.yaml fronts (llmux-mock on
# 127.0.0.1:9101, 9102 and 9103) and llmux on that configuration, in the foreground.
# Ctrl-C (or SIGTERM, or closing the terminal) stops both, in order: llmux first, which
# finishes the requests in flight, then the mocks. Exits with llmux's status (0 after a stop).
#
#   scripts/demo.sh [BUILD_DIR]     the binaries of BUILD_DIR (default build/release)
#
# LLMUX and LLMUX_MOCK, when set, name the two binaries instead (the tests use their build).
set -u
cd "$(dirname "$0")/.." || exit 1
bin=${1:-build/release}
llmux=${LLMUX:-$bin/llmux}
mock=${LLMUX_MOCK:-$bin/llmux-mock}
conf=conf/llmux.yaml
ports="9101 9102 9103"

# Every child in a process group of its own: Ctrl-C reaches this script only, which stops
# them one after the other.
set -m

listening() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in 8080 $ports; do
    if listening "$port"; then
        echo "demo: 127.0.0.1:$port is in use (a demo still running?); stop that first" >&2
        exit 1
    fi
done

llmux_pid=
status=0
stop() {
    trap '' INT TERM HUP
    if [ -n "$llmux_pid" ] && kill -TERM "$llmux_pid" 2>/dev/null; then
        wait "$llmux_pid"
        status=$?
    fi
    kill -TERM "$mock_pid" 2>/dev/null && wait "$mock_pid"
}
trap 'stop; exit $status' INT TERM HUP

"$mock" -l 127.0.0.1:9101 -l 127.0.0.1:9102 -l 127.0.0.1:9103 &
mock_pid=$!
for port in $ports; do
    for _ in $(seq 1 100); do
        listening "$port" && break
        kill -0 "$mock_pid" 2>/dev/null || break
        sleep 0.05
    done
    if ! listening "$port" || ! kill -0 "$mock_pid" 2>/dev/null; then
        echo "demo: the mock fleet did not start" >&2
        stop
        exit 1
    fi
done

"$llmux" -c "$conf" &
llmux_pid=$!
wait "$llmux_pid" # a trapped signal ends the wait early and runs stop
status=$?
llmux_pid=
stop
exit $status

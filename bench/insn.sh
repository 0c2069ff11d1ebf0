#!/usr/bin/env bash
# bench/insn.sh - instructions per request of scenario 1 (a small chat request on 8 keep-alive
# connections) under callgrind, start-up and shutdown subtracted: two runs of N1 and N2
# requests, (Ir(N2) - Ir(N1)) / (N2 - N1). Instruction counts do not depend on what else the
# machine runs, so this compares two trees even on a busy machine.
#
#   bash bench/insn.sh [BUILD_DIR]     (default build/release; built with the release preset)
#   MODE=stream bash bench/insn.sh [BUILD_DIR]
#       instructions per streamed chunk (scenario 4's streams, fewer of them): 20 streams of
#       C1, then C2 chunks of 100 B, (Ir(C2) - Ir(C1)) / (20 * (C2 - C1)). The mock sends a
#       chunk every 20 ms per stream, slow enough that llmux under callgrind keeps up and reads
#       one chunk per read, as it does at full speed. MODEL=bench/renamed adds the model
#       rewrite of every event.
#
# A/B against another commit: git worktree add /tmp/base <commit>, then run this script from
# each tree and compare the last lines.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build/release}
if [ "$B" = build/release ]; then
    cmake --preset release >/dev/null
    cmake --build --preset release -j2 >/dev/null
fi
command -v valgrind >/dev/null || { apt-get update -q >/dev/null; apt-get install -y -q valgrind >/dev/null; }
T=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$T"; }
trap cleanup EXIT
MOCK_PORT=${MOCK_PORT:-19201} LLMUX_PORT=${LLMUX_PORT:-18280}
$B/llmux-mock -l 127.0.0.1:$MOCK_PORT 2>"$T/mock.err" &
PIDS+=($!)
cat >"$T/llmux.yaml" <<YAML
listen: 127.0.0.1:$LLMUX_PORT
workers: 1
providers:
  - {name: mock, base_url: "http://127.0.0.1:$MOCK_PORT/v1"}
models:
  - {id: bench/model, context_length: 8192, providers: [{provider: mock, model: bench/model, price: {prompt: 0.1, completion: 0.2}}]}
  - {id: bench/renamed, context_length: 8192, providers: [{provider: mock, model: upstream-name, price: {prompt: 0.1, completion: 0.2}}]}
auth: none
log: {access_log: "$T/access.log", level: warn}
YAML
run() { # requests (or chunks per stream) -> total Ir
    valgrind --tool=callgrind --callgrind-out-file="$T/cg.$1" $B/llmux -c "$T/llmux.yaml" 2>/dev/null &
    local vg=$!
    PIDS+=($vg)
    for _ in $(seq 1 400); do curl -s -o /dev/null "http://127.0.0.1:$LLMUX_PORT/healthz" && break; sleep 0.05; done
    if [ "${MODE:-request}" = stream ]; then
        $B/llmux-load stream -p $LLMUX_PORT -c 20 --chunks "$1" --size 100 --interval-us "${INTERVAL_US:-20000}" \
            --model "${MODEL:-bench/model}" >"$T/load.$1" 2>&1
    else
        $B/llmux-load rate -p $LLMUX_PORT -c 8 -r 400 -d $(($1 / 400)) >"$T/load.$1" 2>&1
    fi
    kill -TERM $vg
    wait $vg 2>/dev/null || true
    awk '/^summary:/{print $2}' "$T/cg.$1"
}
if [ "${MODE:-request}" = stream ]; then
    N1=${N1:-100} N2=${N2:-300}
    I1=$(run $N1)
    I2=$(run $N2)
    echo "Ir($N1 chunks)=$I1 Ir($N2 chunks)=$I2"
    grep -h 'lost\|streams' "$T/load.$N1" "$T/load.$N2" | head -4
    echo "instructions per streamed chunk: $(( (I2 - I1) / (20 * (N2 - N1)) ))  (${MODEL:-bench/model}, $(git -C "$B" rev-parse --short HEAD 2>/dev/null || echo ?), $B)"
else
    N1=${N1:-800} N2=${N2:-2800}
    I1=$(run $N1)
    I2=$(run $N2)
    echo "Ir($N1)=$I1 Ir($N2)=$I2"
    echo "instructions per request: $(( (I2 - I1) / (N2 - N1) ))  ($(git -C "$B" rev-parse --short HEAD 2>/dev/null || echo ?), $B)"
fi

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
# KEY=none|config|stored (bench/key.sh): the key the client presents (default none, `auth:
# none`); KEY=stored creates a stored key with a budget and rate limits first. The store file
# is in the temporary directory. Threads are counted apart (--separate-threads): the last line
# also gives the store thread's share (its SQLite inserts), which is in the total.
# CG_KEEP=DIR keeps the callgrind files of the N2 run there (callgrind_annotate them).
#
# A/B against another commit: git worktree add /tmp/base <commit>, build its release, then
# `bash bench/insn.sh /tmp/base/build/release` from this tree (this tree's load client is used;
# a tree without the store gets no `store:` section) and compare the last lines.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/key.sh
B=${1:-build/release}
KEY=${KEY:-none}
if [ "$B" = build/release ]; then
    cmake --preset release >/dev/null
    cmake --build --preset release -j2 >/dev/null
elif [ ! -x build/release/llmux-load ]; then
    cmake --preset release >/dev/null
    cmake --build --preset release -j2 --target llmux-load >/dev/null
fi
L=build/release/llmux-load
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
$(bench_conf_tail "$T" "$B" "$KEY")
log: {access_log: "$T/access.log", level: warn}
YAML
BEARER=$(bench_key "$T" "$B" "$T/llmux.yaml" "$KEY")
KEYARG=()
[ -n "$BEARER" ] && KEYARG=(--key "$BEARER")
run() { # requests (or chunks per stream) -> "total_Ir store_thread_Ir"
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$T/cg.$1" \
        $B/llmux -c "$T/llmux.yaml" 2>/dev/null &
    local vg=$!
    PIDS+=($vg)
    for _ in $(seq 1 400); do curl -s -o /dev/null "http://127.0.0.1:$LLMUX_PORT/healthz" && break; sleep 0.05; done
    if [ "${MODE:-request}" = stream ]; then
        $L stream -p $LLMUX_PORT "${KEYARG[@]}" -c 20 --chunks "$1" --size 100 --interval-us "${INTERVAL_US:-20000}" \
            --model "${MODEL:-bench/model}" >"$T/load.$1" 2>&1
    else
        $L rate -p $LLMUX_PORT "${KEYARG[@]}" -c 8 -r 400 -d $(($1 / 400)) >"$T/load.$1" 2>&1
    fi
    kill -TERM $vg
    wait $vg 2>/dev/null || true
    local f tot=0 st=0 ir
    for f in "$T/cg.$1"-*; do
        ir=$(awk '/^(summary|totals):/{print $2; exit}' "$f")
        tot=$((tot + ir))
        grep -q 'fn=.*store_main' "$f" && st=$((st + ir))
    done
    if [ -n "${CG_KEEP:-}" ]; then mkdir -p "$CG_KEEP" && cp "$T/cg.$1"-* "$CG_KEEP/"; fi
    echo "$tot $st"
}
if [ "${MODE:-request}" = stream ]; then
    N1=${N1:-100} N2=${N2:-300}
    read -r I1 S1 < <(run $N1)
    read -r I2 S2 < <(run $N2)
    echo "Ir($N1 chunks)=$I1 Ir($N2 chunks)=$I2"
    grep -h 'lost\|streams' "$T/load.$N1" "$T/load.$N2" | head -4
    echo "instructions per streamed chunk: $(( (I2 - I1) / (20 * (N2 - N1)) )), store thread $(( (S2 - S1) / (20 * (N2 - N1)) ))  (KEY=$KEY, ${MODEL:-bench/model}, $(git -C "$B" rev-parse --short HEAD 2>/dev/null || echo ?), $B)"
else
    N1=${N1:-800} N2=${N2:-2800}
    read -r I1 S1 < <(run $N1)
    read -r I2 S2 < <(run $N2)
    echo "Ir($N1)=$I1 Ir($N2)=$I2 (store thread: $S1, $S2)"
    grep -h 'errors\|status' "$T/load.$N2" | head -2 || true
    echo "instructions per request: $(( (I2 - I1) / (N2 - N1) )), store thread $(( (S2 - S1) / (N2 - N1) ))  (KEY=$KEY, $(git -C "$B" rev-parse --short HEAD 2>/dev/null || echo ?), $B)"
fi

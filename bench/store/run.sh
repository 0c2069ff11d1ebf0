#!/usr/bin/env bash
# bench/store/run.sh - the store's commit latency under load: from the end of a response to its
# usage row being visible in the SQLite file, at about 2,000 requests/s.
#
#   bash bench/store/run.sh [SECONDS] [RATE]       (default 20 s, 2000 req/s in all)
#   KEY=stored bash bench/store/run.sh             (the key the clients present: bench/key.sh)
#
# llmux (release build, workers: 1, store in the temporary directory, the default
# commit_interval of 50 ms) on core 0; the mock, llmux-load (RATE - 100 req/s, open loop) and
# commit_latency.py (100 probes/s and a reader polling the file every millisecond) on core 1.
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/key.sh
SECONDS_RUN=${1:-20} RATE=${2:-2000} KEY=${KEY:-none}
B=build/release
cmake --preset release >/dev/null
cmake --build --preset release -j2 >/dev/null
T=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$T"; }
trap cleanup EXIT
MOCK_PORT=${MOCK_PORT:-19301} LLMUX_PORT=${LLMUX_PORT:-18380}
taskset -c 1 $B/llmux-mock -l 127.0.0.1:$MOCK_PORT 2>/dev/null &
PIDS+=($!)
cat >"$T/llmux.yaml" <<YAML
listen: 127.0.0.1:$LLMUX_PORT
workers: 1
providers:
  - {name: mock, base_url: "http://127.0.0.1:$MOCK_PORT/v1"}
models:
  - {id: bench/model, context_length: 8192, providers: [{provider: mock, model: bench/model, price: {prompt: 0.1, completion: 0.2}}]}
$(bench_conf_tail "$T" "$B" "$KEY")
log: {access_log: "$T/access.log", level: warn}
YAML
BEARER=$(bench_key "$T" "$B" "$T/llmux.yaml" "$KEY")
KEYARG=()
[ -n "$BEARER" ] && KEYARG=(--key "$BEARER")
taskset -c 0 $B/llmux -c "$T/llmux.yaml" 2>"$T/llmux.err" &
PIDS+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$LLMUX_PORT/healthz" && break; sleep 0.05; done
taskset -c 1 $B/llmux-load rate -p $LLMUX_PORT "${KEYARG[@]}" -c 32 -r $((RATE - 100)) -d $((SECONDS_RUN + 2)) >"$T/load.out" 2>&1 &
LOAD=$!
PIDS+=($LOAD)
sleep 1
echo "llmux $(git rev-parse --short HEAD), KEY=$KEY, $RATE req/s ($((RATE - 100)) llmux-load + 100 probes), ${SECONDS_RUN} s, commit_interval 50ms (default)"
taskset -c 1 python3 bench/store/commit_latency.py $LLMUX_PORT "$T/llmux.db" "$SECONDS_RUN" 100 "$BEARER"
wait $LOAD || true
head -2 "$T/load.out"

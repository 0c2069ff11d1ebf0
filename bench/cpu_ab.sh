#!/usr/bin/env bash
# bench/cpu_ab.sh - scenario 1 (small chat requests, wrk -t1 -c64, keep-alive) against two
# llmux builds in alternating rounds, in one run: requests/s and CPU µs per request of the
# llmux process (utime + stime from /proc), llmux on core 0, the mock and wrk on core 1.
#
#   bash bench/cpu_ab.sh BUILD_A BUILD_B [ROUNDS] [SECONDS]
#
# BUILD_* are release build directories (each with llmux and llmux-mock); e.g. a worktree of
# an older commit built with `cmake --preset release && cmake --build --preset release`.
set -euo pipefail
A=${1:?build dir A} B=${2:?build dir B} ROUNDS=${3:-5} DUR=${4:-5}
command -v wrk >/dev/null || { apt-get update -q >/dev/null; apt-get install -y -q wrk >/dev/null; }
T=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$T"; }
trap cleanup EXIT
MOCK_PORT=19401 LLMUX_PORT=18480
taskset -c 1 "$A/llmux-mock" -l 127.0.0.1:$MOCK_PORT 2>/dev/null &
PIDS+=($!)
cat >"$T/llmux.yaml" <<YAML
listen: 127.0.0.1:$LLMUX_PORT
workers: 1
providers:
  - {name: mock, base_url: "http://127.0.0.1:$MOCK_PORT/v1"}
models:
  - {id: bench/model, context_length: 8192, providers: [{provider: mock, model: bench/model, price: {prompt: 0.1, completion: 0.2}}]}
auth: none
log: {access_log: "$T/access.log", level: warn}
YAML
cat >"$T/chat.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"bench/model","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":16}'
LUA
CLK=$(getconf CLK_TCK)
one() { # build -> "rps cpu_us_per_req"
    taskset -c 0 "$1/llmux" -c "$T/llmux.yaml" 2>/dev/null &
    local pid=$!
    for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$LLMUX_PORT/healthz" && break; sleep 0.05; done
    taskset -c 1 wrk -t1 -c64 -d1s -s "$T/chat.lua" "http://127.0.0.1:$LLMUX_PORT/v1/chat/completions" >/dev/null
    local c0 c1 out n
    c0=$(awk '{print $14+$15}' /proc/$pid/stat)
    out=$(taskset -c 1 wrk -t1 -c64 -d${DUR}s -s "$T/chat.lua" "http://127.0.0.1:$LLMUX_PORT/v1/chat/completions")
    c1=$(awk '{print $14+$15}' /proc/$pid/stat)
    kill -TERM $pid
    wait $pid 2>/dev/null || true
    n=$(awk '/requests in/{print $1}' <<<"$out")
    awk -v a="$c0" -v b="$c1" -v n="$n" -v clk="$CLK" -v d="$DUR" 'BEGIN{printf "%.0f %.2f\n", n/d, (b-a)/clk*1e6/n}'
}
echo "round  A req/s  A µs/req  B req/s  B µs/req  B/A cpu"
for r in $(seq 1 "$ROUNDS"); do
    read -r ra ca < <(one "$A")
    read -r rb cb < <(one "$B")
    echo "$r $ra $ca $rb $cb $(awk -v a="$ca" -v b="$cb" 'BEGIN{printf "%.3f", b/a}')"
done

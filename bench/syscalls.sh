#!/usr/bin/env bash
# bench/syscalls.sh - system calls per request under scenario 1 (a small chat request, wrk -t1
# -c64, keep-alive) for llmux (one worker) and nginx (one worker) in front of the same mock,
# each on core 0: `perf stat --per-thread -e 'syscalls:sys_enter_*'` on the process over one
# run, each count divided by wrk's requests, per thread (llmux's worker and its llmux-store).
# Tracepoint counts, not strace: the processes run at full speed while they are counted.
#
#   bash bench/syscalls.sh [BUILD_DIR] [SECONDS]     (default build/release, 5)
#   KEY=stored bash bench/syscalls.sh                (the key llmux's client presents: bench/key.sh)
#   ALOG=off bash bench/syscalls.sh                  (llmux's access log off)
#
# MOCK_PORT, LLMUX_PORT, NGINX_PORT move the ports. Needs perf and nginx (bench/run.sh installs
# nginx-light).
set -euo pipefail
B=$(cd "${1:-build/release}" && pwd) DUR=${2:-5}
cd "$(dirname "$0")/.."
. bench/key.sh
KEY=${KEY:-none}
T=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$T"; }
trap cleanup EXIT
MOCK_PORT=${MOCK_PORT:-19501} LLMUX_PORT=${LLMUX_PORT:-18580} NGINX_PORT=${NGINX_PORT:-18581}
taskset -c 1 "$B/llmux-mock" -l 127.0.0.1:$MOCK_PORT 2>/dev/null &
PIDS+=($!)
cat >"$T/llmux.yaml" <<YAML
listen: 127.0.0.1:$LLMUX_PORT
workers: 1
providers:
  - {name: mock, base_url: "http://127.0.0.1:$MOCK_PORT/v1", max_connections: 20000}
models:
  - {id: bench/model, context_length: 8192, providers: [{provider: mock, model: bench/model, price: {prompt: 0.1, completion: 0.2}}]}
limits: {max_body_size: 64MiB}
$(bench_conf_tail "$T" "$B" "$KEY")
log: {access_log: "${ALOG:-$T/access.log}", level: warn}
YAML
BEARER=$(bench_key "$T" "$B" "$T/llmux.yaml" "$KEY")
bench_nginx_conf "$T"
lua() { # file bearer
    {
        echo 'wrk.method = "POST"'
        echo 'wrk.headers["Content-Type"] = "application/json"'
        [ -n "$2" ] && echo "wrk.headers[\"Authorization\"] = \"Bearer $2\""
        echo "wrk.body = '{\"model\":\"bench/model\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello in one short sentence.\"}],\"max_tokens\":16}'"
    } >"$1"
}
lua "$T/llmux.lua" "$BEARER"
lua "$T/nginx.lua" ""
taskset -c 0 "$B/llmux" -c "$T/llmux.yaml" 2>"$T/llmux.err" &
LP=$!
PIDS+=($LP)
taskset -c 0 nginx -c "$T/nginx.conf" -g 'daemon off; master_process off;' 2>/dev/null &
NP=$!
PIDS+=($NP)
sleep 1
for t in llmux nginx; do
    case $t in llmux) P=$LP PORT=$LLMUX_PORT ;; nginx) P=$NP PORT=$NGINX_PORT ;; esac
    URL=http://127.0.0.1:$PORT/v1/chat/completions
    taskset -c 1 wrk -t1 -c64 -d1s -s "$T/$t.lua" "$URL" >/dev/null # (warm: pools, connections)
    perf stat --per-thread -x, -e 'syscalls:sys_enter_*' -p "$P" -o "$T/$t.perf" &
    PS=$!
    sleep 0.2
    taskset -c 1 wrk -t1 -c64 -d"${DUR}s" -s "$T/$t.lua" "$URL" >"$T/$t.wrk"
    sleep 0.2
    kill -INT $PS
    wait $PS || true
    N=$(awk '/requests in/{print $1}' "$T/$t.wrk")
    echo "$t: $N requests in ${DUR} s (KEY=$KEY, load average $(cut -d' ' -f1-3 /proc/loadavg)); per request:"
    awk -F, -v n="$N" '$2 + 0 > 0 {sub(/.*sys_enter_/, "", $4); printf "  %-22s %-16s %10d %8.3f\n", $1, $4, $2, $2 / n}' \
        "$T/$t.perf" | sort -k4 -nr
done

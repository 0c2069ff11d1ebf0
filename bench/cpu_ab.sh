#!/usr/bin/env bash
# bench/cpu_ab.sh - scenario 1 (small chat requests, wrk -t1 -c64, keep-alive) against two
# llmux builds in alternating rounds, in one run: requests/s and CPU µs per request of the
# llmux process (utime + stime from /proc), llmux on core 0, the mock and wrk on core 1.
#
#   bash bench/cpu_ab.sh BUILD_A BUILD_B [ROUNDS] [SECONDS]
#   KEY_A=config KEY_B=stored bash bench/cpu_ab.sh build/release build/release 7 5
#
# BUILD_* are release build directories (each with llmux and llmux-mock); e.g. a worktree of
# an older commit built with `cmake --preset release && cmake --build --preset release`.
# KEY_A, KEY_B (default KEY, default none): the key each side's client presents, as in
# bench/key.sh (none: `auth: none`; config: an `auth.keys` key; stored: a stored key with a
# budget and rate limits). Each side has its own temporary directory and store file (a build
# without the store gets no `store:` section). The store thread's CPU (thread `llmux-store`,
# /proc/PID/task/TID/schedstat) is in the process's and also given apart, in µs per request.
set -euo pipefail
A=$(cd "${1:?build dir A}" && pwd) B=$(cd "${2:?build dir B}" && pwd) ROUNDS=${3:-5} DUR=${4:-5}
cd "$(dirname "$0")/.."
. bench/key.sh
KEY_A=${KEY_A:-${KEY:-none}} KEY_B=${KEY_B:-${KEY:-none}}
command -v wrk >/dev/null || { apt-get update -q >/dev/null; apt-get install -y -q wrk >/dev/null; }
T=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$T"; }
trap cleanup EXIT
MOCK_PORT=${MOCK_PORT:-19401} LLMUX_PORT=${LLMUX_PORT:-18480}
taskset -c 1 "$A/llmux-mock" -l 127.0.0.1:$MOCK_PORT 2>/dev/null &
PIDS+=($!)
setup() { # side build key: $T/side/{llmux.yaml,chat.lua}
    local d=$T/$1
    mkdir -p "$d"
    cat >"$d/llmux.yaml" <<YAML
listen: 127.0.0.1:$LLMUX_PORT
workers: 1
providers:
  - {name: mock, base_url: "http://127.0.0.1:$MOCK_PORT/v1"}
models:
  - {id: bench/model, context_length: 8192, providers: [{provider: mock, model: bench/model, price: {prompt: 0.1, completion: 0.2}}]}
$(bench_conf_tail "$d" "$2" "$3")
log: {access_log: "$d/access.log", level: warn}
YAML
    local bearer
    bearer=$(bench_key "$d" "$2" "$d/llmux.yaml" "$3")
    {
        echo 'wrk.method = "POST"'
        echo 'wrk.headers["Content-Type"] = "application/json"'
        [ -n "$bearer" ] && echo "wrk.headers[\"Authorization\"] = \"Bearer $bearer\""
        echo "wrk.body = '{\"model\":\"bench/model\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello in one short sentence.\"}],\"max_tokens\":16}'"
    } >"$d/chat.lua"
}
setup A "$A" "$KEY_A"
setup B "$B" "$KEY_B"
CLK=$(getconf CLK_TCK)
store_ns() { # pid -> run time of its llmux-store thread in ns (0 when it has none)
    local t
    for t in /proc/$1/task/*; do
        if [ "$(cat "$t/comm" 2>/dev/null)" = llmux-store ]; then awk '{print $1}' "$t/schedstat"; return; fi
    done
    echo 0
}
one() { # side build -> "rps cpu_us_per_req store_us_per_req"
    local d=$T/$1
    taskset -c 0 "$2/llmux" -c "$d/llmux.yaml" 2>"$d/llmux.err" &
    local pid=$!
    for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$LLMUX_PORT/healthz" && break; sleep 0.05; done
    taskset -c 1 wrk -t1 -c64 -d1s -s "$d/chat.lua" "http://127.0.0.1:$LLMUX_PORT/v1/chat/completions" >/dev/null
    local c0 c1 s0 s1 out n
    c0=$(awk '{print $14+$15}' /proc/$pid/stat)
    s0=$(store_ns $pid)
    out=$(taskset -c 1 wrk -t1 -c64 -d${DUR}s -s "$d/chat.lua" "http://127.0.0.1:$LLMUX_PORT/v1/chat/completions")
    c1=$(awk '{print $14+$15}' /proc/$pid/stat)
    s1=$(store_ns $pid)
    kill -TERM $pid
    wait $pid 2>/dev/null || true
    if grep -q 'Non-2xx' <<<"$out"; then echo "$1: $(grep Non-2xx <<<"$out")" >&2; fi
    n=$(awk '/requests in/{print $1}' <<<"$out")
    awk -v a="$c0" -v b="$c1" -v s0="$s0" -v s1="$s1" -v n="$n" -v clk="$CLK" -v d="$DUR" \
        'BEGIN{printf "%.0f %.2f %.2f\n", n/d, (b-a)/clk*1e6/n, (s1-s0)/1e3/n}'
}
echo "A=$A KEY_A=$KEY_A  B=$B KEY_B=$KEY_B  wrk -t1 -c64 -d${DUR}s"
echo "round  A req/s  A µs/req  A store µs/req  B req/s  B µs/req  B store µs/req  B/A cpu"
for r in $(seq 1 "$ROUNDS"); do
    read -r ra ca sa < <(one A "$A")
    read -r rb cb sb < <(one B "$B")
    echo "$r $ra $ca $sa $rb $cb $sb $(awk -v a="$ca" -v b="$cb" 'BEGIN{printf "%.3f", b/a}')"
done

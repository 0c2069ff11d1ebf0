#!/usr/bin/env bash
# bench/run.sh - every benchmark scenario against each target, in one run.
#
#   bash bench/run.sh [--quick]
#   KEY=stored bash bench/run.sh --quick      (the key llmux's clients present: bench/key.sh)
#   KEY=stored bash bench/run.sh --scenario1  (scenario 1 alone, seven rounds, saved the same way)
#
# Builds the release binaries, installs the anchors from Debian when missing (nginx-light,
# haproxy, wrk, valgrind), and measures direct-to-mock, llmux and nginx (and HAProxy where it
# applies) in front of the same mock server. The proxy under test is pinned to core 0; the mock
# and the load generator share core 1 (taskset), so the proxies compete for nothing but their
# own core. Prints a Markdown table and saves it, with the commit, the machine and the exact
# commands, under bench/results/. Benchmarks are never part of the test suite.
#
# KEY=none|config|stored (default none: `auth: none`): the key every client of llmux presents
# (wrk's Authorization header, llmux-load --key; the other targets get no header). llmux's
# store file is in the temporary directory, copied for each llmux process of the run (the
# stored key is created there before the first one starts); usage records are written for
# every request. MOCK_PORT, LLMUX_PORT, NGINX_PORT, HAPROXY_PORT move the ports (and
# LLMUX1_PORT, NGINX1_PORT, LLMUX_BP_PORT, HAPROXY_BP_PORT, LLMUX_NOLOG_PORT, by default
# those + 100, 200 or 300).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/key.sh
KEY=${KEY:-none}
QUICK=0 ONLY_S1=0
[ "${1:-}" = "--quick" ] && QUICK=1
[ "${1:-}" = "--scenario1" ] && ONLY_S1=1 # scenario 1 alone, its seven rounds
DUR=$([ $QUICK = 1 ] && echo 3 || echo 10)
BUSY_US=500 # llmux busy_poll_us for the busy-polling rows of scenarios 2 and 3

need() { command -v "$1" >/dev/null 2>&1 || { apt-get update -q >/dev/null; apt-get install -y -q "$2" >/dev/null; }; }
need wrk wrk
need nginx nginx-light
need haproxy haproxy
need valgrind valgrind
cmake --preset release >/dev/null
cmake --build --preset release -j2 >/dev/null
B=build/release
ulimit -n 20000

T=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$T"; }
trap cleanup EXIT

MOCK_PORT=${MOCK_PORT:-19101} LLMUX_PORT=${LLMUX_PORT:-18080} NGINX_PORT=${NGINX_PORT:-18081} HAPROXY_PORT=${HAPROXY_PORT:-18082}
# the variants' ports (2b on one core, busy polling, access log off)
LLMUX1_PORT=${LLMUX1_PORT:-$((LLMUX_PORT + 100))} NGINX1_PORT=${NGINX1_PORT:-$((NGINX_PORT + 100))}
LLMUX_BP_PORT=${LLMUX_BP_PORT:-$((LLMUX_PORT + 200))} HAPROXY_BP_PORT=${HAPROXY_BP_PORT:-$((HAPROXY_PORT + 200))}
LLMUX_NOLOG_PORT=${LLMUX_NOLOG_PORT:-$((LLMUX_PORT + 300))}
RESULT=bench/results/$(date -u +%Y%m%dT%H%M%SZ)-$(git rev-parse --short HEAD 2>/dev/null || echo nogit).md
CMDS=()
log_cmd() { CMDS+=("$*"); }

wait_port() {
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$1/healthz" && return 0
        curl -s -o /dev/null "http://127.0.0.1:$1/v1/models" && return 0
        sleep 0.05
    done
    echo "no answer on port $1" >&2
    return 1
}

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
CLK=$(getconf CLK_TCK)

# --- targets -----------------------------------------------------------------------------------
for p in $MOCK_PORT $LLMUX_PORT $NGINX_PORT $HAPROXY_PORT; do
    if curl -s -o /dev/null "http://127.0.0.1:$p/"; then
        echo "port $p is in use: stop what listens there first" >&2
        exit 1
    fi
done
taskset -c 1 $B/llmux-mock -l 127.0.0.1:$MOCK_PORT 2>"$T/mock.err" &
MOCK_PID=$!
PIDS+=($MOCK_PID)
wait_port $MOCK_PORT

cat >"$T/llmux.yaml" <<YAML
listen: 127.0.0.1:$LLMUX_PORT
workers: 1
providers:
  - {name: mock, base_url: "http://127.0.0.1:$MOCK_PORT/v1", max_connections: 20000}
models:
  - {id: bench/model, context_length: 8192, providers: [{provider: mock, model: bench/model, price: {prompt: 0.1, completion: 0.2}}]}
  - {id: bench/renamed, context_length: 8192, providers: [{provider: mock, model: upstream-name}]}
limits: {max_body_size: 64MiB}
$(bench_conf_tail "$T" "$B" "$KEY")
log: {access_log: "$T/access.log", level: warn}
YAML
BEARER=$(bench_key "$T" "$B" "$T/llmux.yaml" "$KEY")
# one gateway per store file (the store locks it): the other llmux processes of the run get
# copies made now, before any starts, each with the stored key
for n in nolog bp one; do [ ! -e "$T/llmux.db" ] || cp "$T/llmux.db" "$T/llmux-$n.db"; done
own_store() { # yaml name -> the yaml with its own copy of the store file
    sed "s|$T/llmux.db|$T/llmux-$2.db|" "$1"
}
# what llmux's clients add: llmux-load arguments, and the wrk scripts with its key
kargs() { case $1 in llmux*) [ -n "$BEARER" ] && echo "--key $BEARER" ;; esac; return 0; }
luaf() { case $1 in llmux*) echo "$T/$2-llmux.lua" ;; *) echo "$T/$2.lua" ;; esac; }
start_llmux() {
    taskset -c 0 $B/llmux -c "$T/llmux.yaml" 2>"$T/llmux.err" &
    LLMUX_PID=$!
    PIDS+=($LLMUX_PID)
    wait_port $LLMUX_PORT
}

bench_nginx_conf "$T"
start_nginx() {
    taskset -c 0 nginx -c "$T/nginx.conf" -g 'daemon off; master_process off;' 2>/dev/null &
    NGINX_PID=$!
    PIDS+=($NGINX_PID)
    wait_port $NGINX_PORT
}

cat >"$T/haproxy.cfg" <<HAP
global
    maxconn 9900
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    option http-no-delay
frontend f
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend b
backend b
    http-reuse always
    server m 127.0.0.1:$MOCK_PORT
HAP
start_haproxy() {
    taskset -c 0 haproxy -f "$T/haproxy.cfg" -db 2>/dev/null &
    HAPROXY_PID=$!
    PIDS+=($HAPROXY_PID)
    sleep 0.3
}

start_llmux
start_nginx
start_haproxy
log_cmd "taskset -c 1 $B/llmux-mock -l 127.0.0.1:$MOCK_PORT"
log_cmd "taskset -c 0 $B/llmux -c llmux.yaml (workers: 1)"
log_cmd "taskset -c 0 nginx -c nginx.conf (worker_processes 1; proxy_buffering off; proxy_http_version 1.1; upstream keepalive; access_log off)"
log_cmd "taskset -c 0 haproxy -f haproxy.cfg (nbthread 1; http-no-delay; http-reuse always)"

declare -A PORT=([direct]=$MOCK_PORT [llmux]=$LLMUX_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT)
declare -A PID=([direct]=$MOCK_PID [llmux]=$LLMUX_PID [nginx]=$NGINX_PID [haproxy]=$HAPROXY_PID)
TARGETS=(direct llmux nginx haproxy)

log_cmd "KEY=$KEY (llmux's clients: $([ -n "$BEARER" ] && echo "Authorization: Bearer <$KEY key>" || echo "no key"))"
CHAT='{"model":"bench/model","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write one sentence about the sea, in the style of a weather report, and keep it short please."}],"max_tokens":64,"temperature":0.7,"mock":{"body_size":380}}'
cat >"$T/chat.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$CHAT'
LUA
python3 - "$T/big.lua" <<'PY'
import sys
content = "x" * (1000 * 1000)
body = '{"model":"bench/model","messages":[{"role":"user","content":"%s"}],"mock":{"body_size":200}}' % content
open(sys.argv[1], "w").write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [[%s]]\n' % body)
PY
for f in chat big; do # llmux's copies, with its key
    { [ -n "$BEARER" ] && echo "wrk.headers[\"Authorization\"] = \"Bearer $BEARER\""; cat "$T/$f.lua"; } >"$T/$f-llmux.lua"
done

declare -A R
row() { R["$1,$2"]="$3"; }

# --- 1. throughput at 64 connections, CPU per request -------------------------------------------
# Seven short rounds with the targets taking turns (a neighbour on this VM moves one run by
# 10-20 %, and moves back-to-back runs together): each figure is the median of its rounds, and
# the llmux/nginx ratios are the median (and range) of the per-round ratios. A second llmux
# with its access log off runs in the same turns, to show what the log costs.
S1_ROUNDS=$([ $QUICK = 1 ] && echo 1 || echo 7)
S1_DUR=3
own_store "$T/llmux.yaml" nolog | sed "s/listen: 127.0.0.1:$LLMUX_PORT/listen: 127.0.0.1:$LLMUX_NOLOG_PORT/; s|access_log: \"[^\"]*\"|access_log: \"off\"|" >"$T/llmux-nolog.yaml"
taskset -c 0 $B/llmux -c "$T/llmux-nolog.yaml" 2>/dev/null &
NOLOG_PID=$!
PIDS+=($NOLOG_PID)
wait_port $LLMUX_NOLOG_PORT
PORT[llmux-nolog]=$LLMUX_NOLOG_PORT
PID[llmux-nolog]=$NOLOG_PID
S1_TARGETS=(direct llmux llmux-nolog nginx haproxy)
declare -A S1
for r in $(seq $S1_ROUNDS); do
    for t in "${S1_TARGETS[@]}"; do
        c0=$(cpu_ticks "${PID[$t]}")
        out=$(taskset -c 1 wrk -t1 -c64 -d${S1_DUR}s -s "$(luaf $t chat)" "http://127.0.0.1:${PORT[$t]}/v1/chat/completions" || true)
        c1=$(cpu_ticks "${PID[$t]}")
        rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
        n=$(awk '/requests in/{print $1}' <<<"$out")
        err=$(awk '/Non-2xx|Socket errors/{print}' <<<"$out" | tr '\n' ' ')
        cpu_us=$(awk -v a="$c0" -v b="$c1" -v n="$n" -v clk="$CLK" 'BEGIN{printf "%.2f", (b-a)/clk*1e6/n}')
        S1["$t"]+="$rps $cpu_us"$'\n'
        S1["$t,$r"]="$rps $cpu_us"
        [ -n "$err" ] && S1["err,$t"]="$err"
    done
    for t in llmux llmux-nolog; do # per-round ratios to nginx: throughput, CPU per request
        S1["ratio,$t"]+="$(awk -v a="${S1[$t,$r]}" -v b="${S1[nginx,$r]}" 'BEGIN{split(a,x," "); split(b,y," "); printf "%.3f %.3f", x[1]/y[1], x[2]/y[2]}')"$'\n'
    done
done
kill $NOLOG_PID; wait $NOLOG_PID 2>/dev/null || true
medcol() { awk -v k="$2" 'NF{print $k}' <<<"$1" | sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
rangecol() { awk -v k="$2" 'NF{print $k}' <<<"$1" | sort -n | awk '{v[NR]=$1} END{printf "%.2f-%.2f", v[1], v[NR]}'; }
for t in "${S1_TARGETS[@]}"; do
    rps=$(medcol "${S1[$t]}" 1)
    cpu_us=$(medcol "${S1[$t]}" 2)
    row 1 "$t" "$(printf '%.0f req/s, %.1f µs CPU/req %s' "$rps" "$cpu_us" "${S1[err,$t]:-}")"
    R["1rps,$t"]=$rps
    R["1cpu,$t"]=$cpu_us
done
for t in llmux llmux-nolog; do
    R["1ratio,$t"]="$(printf '%.2f (%s), %.2f (%s)' "$(medcol "${S1[ratio,$t]}" 1)" "$(rangecol "${S1[ratio,$t]}" 1)" "$(medcol "${S1[ratio,$t]}" 2)" "$(rangecol "${S1[ratio,$t]}" 2)")"
done
log_cmd "wrk -t1 -c64 -d${S1_DUR}s -s chat.lua (POST ~300 B, answer ~500 B); $S1_ROUNDS rounds, targets in turn (direct, llmux, llmux with access_log off, nginx, haproxy), medians; ratios: median (range) of the per-round llmux/nginx ratios"
if [ $ONLY_S1 = 1 ]; then
    {
        echo "# llmux benchmark, scenario 1 alone, $(date -u +%Y-%m-%dT%H:%MZ)"
        echo
        echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo ?), $(nproc) cores, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
        echo
        echo "| scenario | direct | llmux | nginx | haproxy |"
        echo "|---|---|---|---|---|"
        echo "| 1. small chat, 64 conns | ${R[1,direct]} | ${R[1,llmux]} | ${R[1,nginx]} | ${R[1,haproxy]} |"
        echo "| 1. llmux/nginx throughput, CPU/req: median (range) of the per-round ratios | | ${R[1ratio,llmux]} | 1.00 | |"
        echo "| 1. llmux with access_log off | | ${R[1,llmux-nolog]}; to nginx: ${R[1ratio,llmux-nolog]} | | |"
        echo
        echo "Per round (req/s, CPU µs/req):"
        echo
        echo "| round | direct | llmux | llmux-nolog | nginx | haproxy |"
        echo "|---|---|---|---|---|---|"
        for r in $(seq $S1_ROUNDS); do
            echo "| $r | ${S1[direct,$r]} | ${S1[llmux,$r]} | ${S1[llmux-nolog,$r]} | ${S1[nginx,$r]} | ${S1[haproxy,$r]} |"
        done
        echo
        echo "Commands:"
        echo
        for c in "${CMDS[@]}"; do echo "- \`$c\`"; done
    } | tee "${RESULT%.md}-s1.md"
    echo "saved: ${RESULT%.md}-s1.md"
    exit 0
fi

# --- 2. added latency at concurrency 1; 3. fixed rate -------------------------------------------
# Three rounds with the targets taking turns; each figure is the median of its three runs. Two
# more targets: llmux with busy_poll_us and HAProxy with busy-polling (both keep the proxy's core
# from sleeping between requests: on this VM a sleeping core takes tens of µs to wake). Each runs
# only during its own turn, since HAProxy's spins for as long as it runs.
own_store "$T/llmux.yaml" bp | sed "s/listen: 127.0.0.1:$LLMUX_PORT/listen: 127.0.0.1:$LLMUX_BP_PORT/" >"$T/llmux-bp.yaml"
echo "busy_poll_us: $BUSY_US" >>"$T/llmux-bp.yaml"
sed "s/bind 127.0.0.1:$HAPROXY_PORT/bind 127.0.0.1:$HAPROXY_BP_PORT/; s/^    nbthread 1/    nbthread 1\n    busy-polling/" "$T/haproxy.cfg" >"$T/haproxy-bp.cfg"
start_bp() { # target -> pid of the busy-polling variant, listening on PORT[target]
    case $1 in
    llmux-bp) taskset -c 0 $B/llmux -c "$T/llmux-bp.yaml" 2>/dev/null & ;;
    haproxy-bp) taskset -c 0 haproxy -f "$T/haproxy-bp.cfg" -db 2>/dev/null & ;;
    esac
    BP_PID=$!
    PIDS+=($BP_PID)
    if [ "$1" = llmux-bp ]; then wait_port "${PORT[$1]}"; else sleep 0.3; fi
}
PORT[llmux-bp]=$LLMUX_BP_PORT
PORT[haproxy-bp]=$HAPROXY_BP_PORT
S23_ROUNDS=$([ $QUICK = 1 ] && echo 1 || echo 3)
S23_DUR=$([ $QUICK = 1 ] && echo 3 || echo 5)
S23_TARGETS=(direct llmux llmux-bp nginx haproxy haproxy-bp)
declare -A S2 S3
for r in $(seq $S23_ROUNDS); do
    for t in "${S23_TARGETS[@]}"; do
        case $t in *-bp) start_bp $t ;; esac
        out=$(taskset -c 1 $B/llmux-load seq -p "${PORT[$t]}" $(kargs $t) -d "$S23_DUR" || true)
        S2["$t"]+="$(awk '/latency_us/{print $3" "$5}' <<<"$out")"$'\n'
        out=$(taskset -c 1 $B/llmux-load rate -p "${PORT[$t]}" $(kargs $t) -c 64 -r 5000 -d "$S23_DUR" || true)
        S3["$t"]+="$(awk '/latency_us/{print $3" "$5" "$7}' <<<"$out")"$'\n'
        case $t in *-bp) kill $BP_PID; wait $BP_PID 2>/dev/null || true ;; esac
    done
done
m23() { awk -v k="$2" 'NF{print $k}' <<<"$1" | sort -n | awk '{v[NR]=$1} END{print (NR ? v[int((NR+1)/2)] : "")}'; }
for t in "${S23_TARGETS[@]}"; do
    R["2p50,$t"]=$(m23 "${S2[$t]}" 1)
    R["2p99,$t"]=$(m23 "${S2[$t]}" 2)
    R["2,$t"]="${R[2p50,$t]} / ${R[2p99,$t]}"
    R["3p50,$t"]=$(m23 "${S3[$t]}" 1)
    R["3p99,$t"]=$(m23 "${S3[$t]}" 2)
    R["3,$t"]="${R[3p50,$t]} / ${R[3p99,$t]} / $(m23 "${S3[$t]}" 3)"
done
log_cmd "2 and 3: $S23_ROUNDS rounds, targets in turn (direct, llmux, llmux with busy_poll_us: $BUSY_US, nginx, haproxy, haproxy with busy-polling), medians"
log_cmd "llmux-load seq -d $S23_DUR (one connection, closed loop: concurrency 1)"

# 2b. the same with every process on one core: no cross-core wake-ups in the path, so what
# remains is the proxy's own cost (on this VM a wake-up across cores costs ~25 µs per hop)
start_pinned_1() {
    taskset -c 1 $B/llmux -c "$T/llmux1.yaml" 2>/dev/null &
    PIDS+=($!)
    L1=$!
    sed "s/listen 127.0.0.1:$NGINX_PORT/listen 127.0.0.1:$NGINX1_PORT/; s#pid $T/nginx.pid#pid $T/nginx1.pid#" "$T/nginx.conf" >"$T/nginx1.conf"
    taskset -c 1 nginx -c "$T/nginx1.conf" -g 'daemon off; master_process off;' 2>/dev/null &
    PIDS+=($!)
    N1=$!
    wait_port $LLMUX1_PORT
    wait_port $NGINX1_PORT
}
own_store "$T/llmux.yaml" one | sed "s/listen: 127.0.0.1:$LLMUX_PORT/listen: 127.0.0.1:$LLMUX1_PORT/" >"$T/llmux1.yaml"
start_pinned_1
for t in direct llmux nginx; do
    case $t in direct) p=$MOCK_PORT ;; llmux) p=$LLMUX1_PORT ;; nginx) p=$NGINX1_PORT ;; esac
    out=$(taskset -c 1 $B/llmux-load seq -p "$p" $(kargs $t) -d "$DUR" || true)
    R["2b,$t"]=$(awk '/latency_us/{print $3" / "$5}' <<<"$out")
    R["2bp50,$t"]=$(awk '/latency_us/{print $3}' <<<"$out")
    R["2bp99,$t"]=$(awk '/latency_us/{print $5}' <<<"$out")
done
kill $L1 $N1 2>/dev/null || true
log_cmd "2b: the same seq run with llmux/nginx also on core 1"
log_cmd "llmux-load rate -c 64 -r 5000 -d $S23_DUR (open loop, latency from the scheduled time)"

# --- 4. streaming: 100 streams x 200 chunks x 100 B at 1 ms -------------------------------------
# One run takes a fraction of a second and a neighbour's hiccup moves its p99 by milliseconds:
# the targets take turns, five rounds, and each figure is the median of its five values.
S4_ROUNDS=$([ $QUICK = 1 ] && echo 1 || echo 5)
med() { sort -n | awk '{v[NR]=$1} END{print (NR ? v[int((NR+1)/2)] : "")}'; }
s4_run() { # port [extra args] -> "ttfb_p50 ttfb_p99 chunk_p50 chunk_p99 lost"
    taskset -c 1 $B/llmux-load stream -p "$1" -c 100 --chunks 200 --size 100 --interval-us 1000 "${@:2}" 2>/dev/null |
        awk '/ttfb_us/{t=$3" "$5} /chunk_latency_us/{c=$3" "$5} /chunks:/{l=$4} END{print t" "c" "l}' || true
}
declare -A S4
for r in $(seq $S4_ROUNDS); do
    for t in "${TARGETS[@]}"; do S4["$t"]+="$(s4_run "${PORT[$t]}" $(kargs $t))"$'\n'; done
    S4["llmux-rewrite"]+="$(s4_run "$LLMUX_PORT" $(kargs llmux) --model bench/renamed)"$'\n'
done
for t in "${TARGETS[@]}" llmux-rewrite; do
    col() { awk -v k="$1" 'NF{print $k}' <<<"${S4[$t]}" | med; }
    lost=$(awk 'NF{s+=$5} END{print s+0}' <<<"${S4[$t]}")
    R["4,$t"]="$(col 1) / $(col 2) | $(col 3) / $(col 4) | $lost"
    R["4ttfb,$t"]=$(col 2)
    R["4chunk,$t"]=$(col 4)
done
log_cmd "llmux-load stream -c 100 --chunks 200 --size 100 --interval-us 1000 [--model bench/renamed: llmux rewrites the model in every event]; $S4_ROUNDS rounds, targets in turn, medians"

# --- 5. scale: 9000 slow streams ----------------------------------------------------------------
S5=$([ $QUICK = 1 ] && echo 2000 || echo 9000)
for t in llmux nginx haproxy; do
    for rate in 1000000 100000; do
    # a fresh process for each run, so the idle baseline is its own
    case $t in
    llmux) kill $LLMUX_PID; wait $LLMUX_PID 2>/dev/null || true; start_llmux; PID[llmux]=$LLMUX_PID ;;
    nginx) kill $NGINX_PID; wait $NGINX_PID 2>/dev/null || true; start_nginx; PID[nginx]=$NGINX_PID ;;
    haproxy) kill $HAPROXY_PID; wait $HAPROXY_PID 2>/dev/null || true; start_haproxy; PID[haproxy]=$HAPROXY_PID ;;
    esac
        out=$(taskset -c 1 $B/llmux-load stream -p "${PORT[$t]}" $(kargs $t) -c $S5 --chunks 10 --size 100 --interval-us $rate --rss-pid "${PID[$t]}" || true)
        R["5-$rate,$t"]=$(awk '/streams:/{ok=$2} /rss_kb/{r=$(NF-1)} END{print ok" ok, "r" KiB/stream"}' <<<"$out")
    done
done
log_cmd "llmux-load stream -c $S5 --chunks 10 --size 100 --interval-us 1000000|100000 --rss-pid PID (RSS when every stream has its first event, minus the fresh process's idle RSS, per stream)"

# --- 6. large prompts: 1 MB bodies at 16 connections --------------------------------------------
for t in "${TARGETS[@]}"; do
    c0=$(cpu_ticks "${PID[$t]}")
    out=$(taskset -c 1 wrk -t1 -c16 -d${DUR}s -s "$(luaf $t big)" "http://127.0.0.1:${PORT[$t]}/v1/chat/completions" || true)
    c1=$(cpu_ticks "${PID[$t]}")
    rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
    n=$(awk '/requests in/{print $1}' <<<"$out")
    cpu_ms_mb=$(awk -v a="$c0" -v b="$c1" -v n="$n" -v clk="$CLK" 'BEGIN{ if (n>0) printf "%.2f", (b-a)/clk*1e3/n; else print "-"}')
    R["6,$t"]="$(printf '%.0f MB/s, %s ms CPU/MB' "$rps" "$cpu_ms_mb")"
done
log_cmd "wrk -t1 -c16 -d${DUR}s -s big.lua (1 MB JSON body)"

# --- 7. cancellation (llmux, in-process mock: same clock) --------------------------------------
R[7]=$($B/llmux-cancel-bench $([ $QUICK = 1 ] && echo 50 || echo 300) | tail -3)
log_cmd "llmux-cancel-bench 300"

# --- 8. footprint --------------------------------------------------------------------------------
kill $LLMUX_PID; wait $LLMUX_PID 2>/dev/null || true
cp $B/llmux "$T/llmux.stripped" && strip "$T/llmux.stripped"
SIZE=$(stat -c %s "$T/llmux.stripped")
t0=$(date +%s%N)
taskset -c 0 $B/llmux -c "$T/llmux.yaml" 2>/dev/null &
LLMUX_PID=$!
PIDS+=($LLMUX_PID)
until curl -s -o /dev/null "http://127.0.0.1:$LLMUX_PORT/healthz"; do sleep 0.001; done
READY_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
sleep 0.5
IDLE_RSS=$(rss_kb $LLMUX_PID)

# --- 1b. instructions per request under callgrind --------------------------------------------
kill $LLMUX_PID; wait $LLMUX_PID 2>/dev/null || true
valgrind --tool=callgrind --callgrind-out-file="$T/cg.out" $B/llmux -c "$T/llmux.yaml" 2>/dev/null &
VG=$!
PIDS+=($VG)
for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$LLMUX_PORT/healthz" && break; sleep 0.05; done
CGN=2000
taskset -c 1 $B/llmux-load rate -p $LLMUX_PORT $(kargs llmux) -c 8 -r 400 -d $((CGN / 400)) >/dev/null
kill -TERM $VG; wait $VG 2>/dev/null || true
IR=$(awk '/^summary:/{print $2}' "$T/cg.out")
IR_REQ=$(( IR / CGN ))
log_cmd "valgrind --tool=callgrind llmux; llmux-load rate -c 8 -r 400 ($CGN requests); instructions / request (start-up included)"

# --- table ----------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "-"}'; }
added() { # scenario target -> "added p50 / added p99" against direct
    echo "$(awk -v a="${R[${1}p50,$2]}" -v b="${R[${1}p50,direct]}" 'BEGIN{print a-b}') / $(awk -v a="${R[${1}p99,$2]}" -v b="${R[${1}p99,direct]}" 'BEGIN{print a-b}')"
}
{
    echo "# llmux benchmark $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo ?), $(nproc) cores, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
    echo
    echo "| scenario | direct | llmux | nginx | haproxy |"
    echo "|---|---|---|---|---|"
    echo "| 1. small chat, 64 conns | ${R[1,direct]} | ${R[1,llmux]} | ${R[1,nginx]} | ${R[1,haproxy]} |"
    echo "| 1. llmux/nginx throughput, CPU/req: median (range) of the per-round ratios | | ${R[1ratio,llmux]} | 1.00 | |"
    echo "| 1. llmux with access_log off | | ${R[1,llmux-nolog]}; to nginx: ${R[1ratio,llmux-nolog]} | | |"
    echo "| 2. conc. 1, p50 / p99 µs | ${R[2,direct]} | ${R[2,llmux]} | ${R[2,nginx]} | ${R[2,haproxy]} |"
    echo "| 2. added p50 / p99 µs | | $(added 2 llmux) | $(added 2 nginx) | $(added 2 haproxy) |"
    echo "| 2b. conc. 1, all on one core, p50 / p99 µs | ${R[2b,direct]} | ${R[2b,llmux]} | ${R[2b,nginx]} | |"
    echo "| 2b. added p50 / p99 µs | | $(added 2b llmux) | $(added 2b nginx) | |"
    echo "| 3. 5000 req/s, p50 / p99 / p99.9 µs | ${R[3,direct]} | ${R[3,llmux]} | ${R[3,nginx]} | ${R[3,haproxy]} |"
    echo "| 3. added p50 / p99 µs | | $(added 3 llmux) | $(added 3 nginx) | $(added 3 haproxy) |"
    echo "| 2bp. busy polling: conc. 1, p50 / p99 µs | | ${R[2,llmux-bp]} | | ${R[2,haproxy-bp]} |"
    echo "| 2bp. added p50 / p99 µs | | $(added 2 llmux-bp) | | $(added 2 haproxy-bp) |"
    echo "| 3bp. busy polling: 5000 req/s, p50 / p99 / p99.9 µs | | ${R[3,llmux-bp]} | | ${R[3,haproxy-bp]} |"
    echo "| 3bp. added p50 / p99 µs | | $(added 3 llmux-bp) | | $(added 3 haproxy-bp) |"
    echo "| 4. streams: TTFT p50/p99 \| chunk p50/p99 µs \| lost | ${R[4,direct]} | ${R[4,llmux]} (rewriting model: ${R[4,llmux-rewrite]}) | ${R[4,nginx]} | ${R[4,haproxy]} |"
    echo "| 5. $S5 streams, 1 chunk/s | | ${R[5-1000000,llmux]} | ${R[5-1000000,nginx]} | ${R[5-1000000,haproxy]} |"
    echo "| 5. $S5 streams, 1 chunk/100 ms | | ${R[5-100000,llmux]} | ${R[5-100000,nginx]} | ${R[5-100000,haproxy]} |"
    echo "| 6. 1 MB bodies, 16 conns | ${R[6,direct]} | ${R[6,llmux]} | ${R[6,nginx]} | ${R[6,haproxy]} |"
    echo "| 8. idle RSS, stripped binary, start to ready | | ${IDLE_RSS} KiB, $((SIZE / 1024)) KiB, ${READY_MS} ms | | |"
    echo "| 1b. instructions per request (callgrind) | | $IR_REQ | | |"
    echo
    echo "7. cancellation, client close to upstream close (llmux):"
    echo
    echo "| phase | samples | p50 µs | p99 µs | max µs | lost |"
    echo "|---|---|---|---|---|---|"
    echo "${R[7]}"
    echo
    echo "Commands:"
    echo
    for c in "${CMDS[@]}"; do echo "- \`$c\`"; done
} | tee "$RESULT"
echo "saved: $RESULT"

#!/usr/bin/env bash
# Reload churn: 1,000 SIGHUPs of the built binary under light load (one request at a time).
# Every request is answered 200; resident memory stays bounded (each reload used to keep the
# old configuration generation until shutdown: +46 MB over 1,000 reloads); once the upstream
# idle timeout has passed no upstream connection of an old generation is left, nor any extra
# descriptor; and llmux still stops cleanly (under ASan: without a leak).
source "$(dirname "$0")/lib.sh"

RELOADS=${RELOADS:-1000}
RSS_GROWTH_MAX_KB=$((20 * 1024))

mp=$(free_port)
lp=$(free_port)
"$MOCK" -l 127.0.0.1:$mp 2>"$TMP/mock.err" &
PIDS+=($!)
# A fleet of the size of a real deployment: 12 more providers of 4 endpoints each (loopback
# addresses no request goes to), each with its model, so that a generation (a connection pool
# per endpoint and worker, the snapshot, the models list) weighs what it does in production.
# Two configurations that differ (a second model), so each reload builds a real new one.
fleet() {
    local i
    for i in $(seq 1 12); do
        echo "  - {name: p$i, base_url: \"http://127.0.0.1:$mp/v1\", endpoints: [http://127.0.0.2:$mp, http://127.0.0.3:$mp, http://127.0.0.4:$mp, http://127.0.0.5:$mp]}"
    done
    echo "models:"
    for i in $(seq 1 12); do
        echo "  - {id: f/model-$i, context_length: 8192, providers: [{provider: p$i, model: up-$i}]}"
    done
}
config() {
    cat <<YAML
listen: 127.0.0.1:$lp
store: {path: "$TMP/llmux.db"}
workers: 2
timeouts: {upstream_idle: 1s}
providers:
  - {name: m, base_url: "http://127.0.0.1:$mp/v1"}
$(fleet)
  - {id: t/model, context_length: 8192, providers: [{provider: m, model: up}]}
$1
auth: none
log: {access_log: off, level: info}
YAML
}
cfg_a=$(config "")
cfg_b=$(config "  - {id: t/extra, context_length: 8192, providers: [{provider: m}]}")
printf '%s\n' "$cfg_a" >"$TMP/c.yaml"
# A small ASan quarantine: freed memory is reused at once, as without ASan, so that RSS tells
# what is kept (no effect on a build without ASan).
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=1" \
    "$LLMUX" -c "$TMP/c.yaml" 2>"$TMP/llmux.err" &
lpid=$!
PIDS+=($lpid)
wait_http "http://127.0.0.1:$lp/healthz"

# The reload loop forks nothing (builtins only): a short sleep is a read that times out.
exec {nap}<> <(:)
seen=0 # lines of llmux.err up to the last reload found published
# Writes the next configuration, sends SIGHUP number $1 (from 1) and waits for llmux to have
# published it (each is read and published before the next is written).
reload() {
    if [ $(($1 % 2)) = 1 ]; then
        printf '%s\n' "$cfg_b" >"$TMP/c.yaml"
    else
        printf '%s\n' "$cfg_a" >"$TMP/c.yaml"
    fi
    kill -HUP $lpid
    local lines i
    for _ in {1..2000}; do
        mapfile -t -s "$seen" lines <"$TMP/llmux.err"
        for i in "${!lines[@]}"; do
            if [[ ${lines[i]} == *"reload: configuration"*"published"* ]]; then
                seen=$((seen + i + 1))
                return 0
            fi
        done
        read -r -t 0.005 -u $nap
    done
    fail "reload $1 not published: $(tail -3 "$TMP/llmux.err")"
}

# light load: one request at a time, each answer checked, until told to stop (bounded)
load() {
    local n=0
    while [ ! -e "$TMP/stop" ] && [ $n -lt 20000 ]; do
        code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' \
            "http://127.0.0.1:$lp/v1/chat/completions" -d '{"model":"t/model"}')
        [ "$code" = 200 ] || echo "request $n: $code" >>"$TMP/bad"
        n=$((n + 1))
    done
    echo $n >"$TMP/count"
}
load &
loadpid=$!
PIDS+=($loadpid)

# warm up (pools, buffers, a first retired generation), then the baseline
for i in $(seq 1 20); do
    reload "$i"
done
sleep 0.5
rss0=$(rss_kb $lpid)
fds0=$(ls /proc/$lpid/fd | wc -l)
start=$(date +%s)
for i in $(seq 21 $((RELOADS + 20))); do
    reload "$i"
done
secs=$(($(date +%s) - start))
touch "$TMP/stop"
wait $loadpid
[ -s "$TMP/bad" ] && fail "requests not answered 200: $(head -5 "$TMP/bad")"
requests=$(cat "$TMP/count")
[ "$requests" -ge 20 ] || fail "only $requests requests ran during the reloads"

# retired generations are freed a few hundred milliseconds after their last request
sleep 1.5
rss1=$(rss_kb $lpid)
fds1=$(ls /proc/$lpid/fd | wc -l)
growth=$((rss1 - rss0))
echo "test_reload_churn: $RELOADS reloads in ${secs}s, $requests requests, RSS ${rss0} -> ${rss1} KiB" \
    "(+${growth}), descriptors $fds0 -> $fds1"
[ $growth -lt $RSS_GROWTH_MAX_KB ] || fail "RSS grew by $growth KiB over $RELOADS reloads"
[ "$fds1" -le $((fds0 + 2)) ] || fail "descriptors $fds0 -> $fds1: $(ls -l /proc/$lpid/fd)"
# upstream connections: at most one idle per worker (the load was one request at a time), and
# only the current generation's: an old generation's closed with its last request
up=$(conns_to $mp)
[ "$up" -le 2 ] || fail "$up upstream connections open after the reloads"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$lp/v1/chat/completions" \
    -d '{"model":"t/model"}')" = 200 ] || fail "not serving after the reloads"

kill -TERM $lpid
wait $lpid
rc=$?
[ $rc -eq 0 ] || { tail -30 "$TMP/llmux.err"; fail "exit status $rc after SIGTERM"; }
echo "test_reload_churn: ok"

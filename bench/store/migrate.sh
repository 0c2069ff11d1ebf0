#!/usr/bin/env bash
# bench/store/migrate.sh - how long a gateway takes to start on a store file of an older schema
# (v1 or v2) holding N usage rows: the migrations run at start, in one transaction, and rewrite
# every row (src/store/README.md, "The file").
#
#   bash bench/store/migrate.sh [ROWS...]          (default: 100000 1000000)
#   VERSIONS="1" LIMIT_S=300 bash bench/store/migrate.sh 300000
#
# For each schema version (VERSIONS, default "1 2") and each N: `llmux-old-store make`
# (bench/store/old_store.c) writes the old file with N realistic rows (not timed); `llmux -t`
# reports its version (read-only: -t never migrates); then the release llmux (workers: 1, on
# core 0) starts on it, and the time from its launch to the first 200 of /readyz is measured
# (polled every 10 ms from core 1; the port is bound only after the migration, so until then
# the connection is refused). Printed: that time; the time a start on the migrated file takes
# (the same poll); the file's size before and after (the main file; the WAL is checkpointed at
# the stop) and the WAL's largest size seen while polling (the transaction's pages wait there
# until its commit: the disk space the start needs); llmux's peak RSS (VmHWM of
# /proc/PID/status, read just before the stop); the load average; the check of the migrated
# file (`llmux-old-store check`: row count = N through the `usage` view, 64 sampled rows equal,
# column by column, to what was written); the store's log lines about the migration. A start
# that is not ready within LIMIT_S seconds (default 600) is killed and reported as such.
# Everything lives in a temporary directory, removed at the end; loopback only (no upstream is
# ever contacted).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROWS=("$@")
[ ${#ROWS[@]} -gt 0 ] || ROWS=(100000 1000000)
VERSIONS=${VERSIONS:-"1 2"} LIMIT_S=${LIMIT_S:-600}
LLMUX_PORT=${LLMUX_PORT:-18390}
B=build/release
cmake --preset release >/dev/null
cmake --build --preset release -j2 --target llmux llmux-old-store >/dev/null
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
T=$(mktemp -d)
cleanup() { # (llmux runs in a command substitution's subshell: its pid is kept in a file)
    if [ -s "$T/llmux.pid" ]; then
        kill -KILL "$(cat "$T/llmux.pid")" 2>/dev/null || true
        sleep 0.2
    fi
    rm -rf "$T"
}
trap cleanup EXIT

conf() { # the minimal configuration: one provider that is never called, the store in $T
    cat >"$T/llmux.yaml" <<YAML
listen: 127.0.0.1:$LLMUX_PORT
workers: 1
providers:
  - {name: mock, base_url: "http://127.0.0.1:9/v1"}
models:
  - {id: bench/model, context_length: 8192, providers: [{provider: mock, model: bench/model}]}
auth: none
store: {path: "$T/llmux.db"}
log: {access_log: "$T/access.log", level: info}
YAML
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Starts llmux on the store, waits for /readyz 200 (at most LIMIT_S), stops it with SIGTERM
# and waits for it; prints the milliseconds to ready (or "not ready") and leaves its peak RSS
# (KiB) in $1.
start_ready() { # rss-file
    local t0 t1 w code=000
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$LLMUX_PORT/readyz"; then
        echo "port $LLMUX_PORT already answers: another process listens there" >&2
        return 1
    fi
    t0=$(now_ms)
    taskset -c 0 $B/llmux -c "$T/llmux.yaml" >/dev/null 2>>"$T/llmux.err" &
    local PID=$!
    echo "$PID" >"$T/llmux.pid"
    echo 0 >"$T/walmax"
    while [ $(($(now_ms) - t0)) -lt $((LIMIT_S * 1000)) ]; do
        w=$(stat -c %s "$T/llmux.db-wal" 2>/dev/null || echo 0)
        [ "$w" -gt "$(cat "$T/walmax")" ] && echo "$w" >"$T/walmax"
        code=$(taskset -c 1 curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
            "http://127.0.0.1:$LLMUX_PORT/readyz" || true)
        [ "$code" = 200 ] && break
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.01
    done
    t1=$(now_ms)
    awk '/^VmHWM/ {print $2}' "/proc/$PID/status" >"$1" 2>/dev/null || echo "?" >"$1"
    # (a gateway still migrating handles no signal until it is done: not ready means killed)
    if [ "$code" = 200 ]; then kill -TERM "$PID"; else kill -KILL "$PID"; fi 2>/dev/null || true
    wait "$PID" || true
    : >"$T/llmux.pid"
    if [ "$code" = 200 ]; then echo "$((t1 - t0)) ms"; else echo "not ready after $((t1 - t0)) ms"; fi
}

size() { stat -c %s "$1"; }

conf
echo "llmux $(git describe --always --dirty), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for v in $VERSIONS; do
    for n in "${ROWS[@]}"; do
        rm -f "$T"/llmux.db*
        : >"$T/llmux.err"
        T0_US=$((($(date +%s) - 31 * 86400) * 1000000))
        mk0=$(now_ms)
        $B/llmux-old-store make "$T/llmux.db" "$v" "$n" "$T0_US"
        mk1=$(now_ms)
        before=$(size "$T/llmux.db")
        dash_t=$($B/llmux -c "$T/llmux.yaml" -t 2>&1 | grep 'schema version' || true)
        load=$(cut -d' ' -f1-3 /proc/loadavg)
        ms=$(start_ready "$T/rss1")
        rss=$(cat "$T/rss1") wal=$(cat "$T/walmax")
        after=$(size "$T/llmux.db")
        again=$(start_ready "$T/rss2")
        check=$($B/llmux-old-store check "$T/llmux.db" "$v" "$n" "$T0_US" 2>&1 || true)
        echo "v$v, $n rows (made in $((mk1 - mk0)) ms): start to /readyz 200: $ms" \
            "(a second start on the migrated file: $again); file $before -> $after bytes" \
            "(the WAL up to $wal bytes during the start);" \
            "peak RSS $rss KiB; load average before the start: $load"
        echo "  llmux -t before: ${dash_t:-?}"
        echo "  check: $check"
        grep -i 'migrat' "$T/llmux.err" | sed 's/^/  log: /' || true
    done
done

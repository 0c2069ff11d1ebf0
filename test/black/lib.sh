# Helpers for the black-box tests: ports, waiting, cleanup. Sourced, not run.
set -u
LLMUX=${1:?usage: test.sh LLMUX LLMUX_MOCK}
MOCK=${2:?usage: test.sh LLMUX LLMUX_MOCK}
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
# A free loopback port (bound and released: good enough for a test on one machine).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# Waits up to 5 s for an HTTP answer on URL.
wait_http() {
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.05
    done
    fail "no answer from $1"
}
# Resident memory of process PID, in KiB.
rss_kb() {
    awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}
# Established TCP connections to 127.0.0.1:PORT on this machine (their clients' ends).
conns_to() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p="$hex" 'NR > 1 { split($3, r, ":"); if (r[2] == p && $4 == "01") n++ } END { print n + 0 }' \
        /proc/net/tcp
}

#!/usr/bin/env bash
# One llmux per listen address: a second one on the same address refuses to start and names
# the first's pid (SO_REUSEPORT would otherwise let it bind and take half the connections);
# once the first is gone, even by SIGKILL, the address is free again.
source "$(dirname "$0")/lib.sh"

lp=$(free_port)
cat >"$TMP/c.yaml" <<YAML
listen: 127.0.0.1:$lp
store: {path: "$TMP/llmux.db"}
workers: 2
providers:
  - {name: p, base_url: "http://127.0.0.1:9/v1"}
models:
  - {id: a/b, context_length: 4096, providers: [{provider: p}]}
auth: none
log: {access_log: off}
YAML
"$LLMUX" -c "$TMP/c.yaml" 2>"$TMP/first.err" &
first=$!
PIDS+=($first)
wait_http "http://127.0.0.1:$lp/healthz"

# the pid file holds the first's pid
lock=$(if [ "$(id -u)" = 0 ]; then echo /run/llmux; else echo "/tmp/llmux-$(id -u)"; fi)/127.0.0.1:$lp.pid
[ "$(cat "$lock")" = "$first" ] || fail "$lock holds '$(cat "$lock")', not $first"

# a second one on the same address: refused at once, the first named, nothing bound
timeout 10 "$LLMUX" -c "$TMP/c.yaml" >"$TMP/second.out" 2>"$TMP/second.err"
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "second llmux: exit status $rc: $(cat "$TMP/second.err")"
grep -q "127.0.0.1:$lp is served by another llmux, pid $first " "$TMP/second.err" ||
    fail "second llmux: $(cat "$TMP/second.err")"
grep -q "listening" "$TMP/second.err" && fail "second llmux listened: $(cat "$TMP/second.err")"
[ "$(cat "$lock")" = "$first" ] || fail "the refused one changed $lock: '$(cat "$lock")'"
# -t checks a file without claiming its address
"$LLMUX" -t -c "$TMP/c.yaml" >/dev/null 2>&1 || fail "-t refused while the first runs"
# the first still serves, alone
for _ in 1 2 3 4; do
    curl -s -f -o /dev/null "http://127.0.0.1:$lp/healthz" || fail "the first stopped serving"
done

# killed without a chance to clean up: the next one starts all the same
kill -9 $first
wait $first 2>/dev/null
"$LLMUX" -c "$TMP/c.yaml" 2>"$TMP/third.err" &
third=$!
PIDS+=($third)
wait_http "http://127.0.0.1:$lp/healthz"
[ "$(cat "$lock")" = "$third" ] || fail "$lock holds '$(cat "$lock")', not $third"
grep -q "another llmux" "$TMP/third.err" && fail "third: $(cat "$TMP/third.err")"

# a clean stop removes the pid file (a stale pid must not be signalled by mistake)
kill -TERM $third
wait $third
rc=$?
[ $rc -eq 0 ] || fail "exit status $rc after SIGTERM: $(cat "$TMP/third.err")"
[ -e "$lock" ] && fail "$lock left after a clean stop: '$(cat "$lock")'"

# two started at the same moment: exactly one of them runs
"$LLMUX" -c "$TMP/c.yaml" 2>"$TMP/a.err" &
a=$!
"$LLMUX" -c "$TMP/c.yaml" 2>"$TMP/b.err" &
b=$!
PIDS+=($a $b)
wait_http "http://127.0.0.1:$lp/healthz"
sleep 0.5
alive=0
for p in $a $b; do kill -0 $p 2>/dev/null && alive=$((alive + 1)) && survivor=$p; done
[ $alive -eq 1 ] || fail "$alive of two simultaneous starts run: $(cat "$TMP/a.err" "$TMP/b.err")"
[ "$(cat "$lock")" = "$survivor" ] || fail "$lock holds '$(cat "$lock")', not $survivor"
kill -TERM $survivor
wait $survivor || fail "exit status $? after SIGTERM"
echo "test_single_instance: ok"

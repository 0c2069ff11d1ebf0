#!/usr/bin/env bash
# SIGTERM drain: in-flight requests finish, new connections are refused, exit status 0.
# Also: the process serves on every worker and a bad listen address fails the start.
source "$(dirname "$0")/lib.sh"

mp=$(free_port)
lp=$(free_port)
"$MOCK" -l 127.0.0.1:$mp 2>"$TMP/mock.err" &
PIDS+=($!)
cat >"$TMP/c.yaml" <<YAML
listen: 127.0.0.1:$lp
store: {path: "$TMP/llmux.db"}
workers: 2
timeouts: {shutdown: 5s}
providers:
  - {name: m, base_url: "http://127.0.0.1:$mp/v1"}
models:
  - {id: t/model, context_length: 8192, providers: [{provider: m, model: up}]}
auth: none
log: {access_log: "$TMP/access.log"}
YAML
"$LLMUX" -c "$TMP/c.yaml" 2>"$TMP/llmux.err" &
lpid=$!
PIDS+=($lpid)
wait_http "http://127.0.0.1:$lp/healthz"

# three slow requests in flight (the mock waits 800 ms before answering)
for i in 1 2 3; do
    curl -s -o "$TMP/r$i" -w '%{http_code}' -H 'x-mock-delay-ms: 800' \
        "http://127.0.0.1:$lp/v1/chat/completions" -d '{"model":"t/model","messages":[]}' \
        >"$TMP/code$i" &
    PIDS+=($!)
done
sleep 0.3
kill -TERM $lpid
sleep 0.2
# no new connections once draining
curl -s -m 2 -o /dev/null "http://127.0.0.1:$lp/healthz" && fail "accepted a request while draining"
wait $lpid
rc=$?
[ $rc -eq 0 ] || { cat "$TMP/llmux.err"; fail "exit status $rc after SIGTERM"; }
for i in 1 2 3; do
    wait "${PIDS[$i]}" 2>/dev/null
    [ "$(cat "$TMP/code$i")" = 200 ] || fail "in-flight request $i got $(cat "$TMP/code$i")"
    grep -q '"model":"t/model"' "$TMP/r$i" || fail "request $i body: $(cat "$TMP/r$i")"
done
grep -q 'draining' "$TMP/llmux.err" || fail "no drain log line"
[ "$(grep -c '"status":200' "$TMP/access.log")" -ge 4 ] || fail "access log: $(cat "$TMP/access.log")"

# the shutdown timeout cuts what is left, still exit 0
sed -i 's/shutdown: 5s/shutdown: 300ms/' "$TMP/c.yaml"
"$LLMUX" -c "$TMP/c.yaml" 2>"$TMP/llmux2.err" &
lpid=$!
PIDS+=($lpid)
wait_http "http://127.0.0.1:$lp/healthz"
curl -s -o /dev/null -H 'x-mock-hang: 1' "http://127.0.0.1:$lp/v1/chat/completions" \
    -d '{"model":"t/model"}' &
PIDS+=($!)
sleep 0.3
start=$(date +%s%N)
kill -TERM $lpid
wait $lpid
rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
[ $rc -eq 0 ] || fail "exit status $rc after shutdown timeout"
[ $ms -lt 3000 ] || fail "shutdown took $ms ms with a 300ms timeout"

# a port in use fails the start with a clear message
python3 -c 'import socket,sys,time; s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(); print(s.getsockname()[1]); sys.stdout.flush(); time.sleep(5)' >"$TMP/busy" &
PIDS+=($!)
for _ in $(seq 1 50); do [ -s "$TMP/busy" ] && break; sleep 0.05; done
bp=$(cat "$TMP/busy")
sed "s/listen: 127.0.0.1:$lp/listen: 127.0.0.1:$bp/" "$TMP/c.yaml" >"$TMP/busy.yaml"
if timeout 5 "$LLMUX" -c "$TMP/busy.yaml" 2>"$TMP/llmux3.err"; then fail "started on a busy port"; fi
grep -q "cannot listen on 127.0.0.1:$bp" "$TMP/llmux3.err" || fail "$(cat "$TMP/llmux3.err")"
echo "test_signals: ok"

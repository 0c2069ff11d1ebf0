#!/usr/bin/env bash
# The hardening issue's reproductions as a black-box test: real client shapes (keep-alive
# prompts around 4 KiB and up to 1 MiB, pipelining, 300 concurrent streams) and attacks (deep
# JSON, header names with spaces, keyless bodies, huge chunk sizes, clients that vanish)
# against the built binary with one worker, keys on and the mock behind it (adversarial.py).
source "$(dirname "$0")/lib.sh"

mp=$(free_port)
lp=$(free_port)
"$MOCK" -l 127.0.0.1:$mp 2>/dev/null &
PIDS+=($!)
key="sk-test-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
digest=$(printf '%s' "$key" | "$LLMUX" hash-key | tail -1 | awk '{print $NF}')
cat >"$TMP/c.yaml" <<YAML
listen: 127.0.0.1:$lp
store: {path: "$TMP/llmux.db"}
workers: 1
providers:
  - {name: m, base_url: "http://127.0.0.1:$mp/v1"}
models:
  - {id: t/model, context_length: 8192, providers: [{provider: m, model: up}]}
auth:
  keys:
    - {name: t, sha256: $digest}
limits: {max_body_size: 8MiB, max_body_memory: 8MiB}
timeouts: {upstream_connect: 1s, upstream_first_byte: 1s}
log: {access_log: "$TMP/access.log", level: warn}
YAML
ulimit -n 4096
"$LLMUX" -c "$TMP/c.yaml" 2>"$TMP/llmux.err" &
lpid=$!
PIDS+=($lpid)
wait_http "http://127.0.0.1:$lp/healthz"
python3 "$(dirname "$0")/adversarial.py" "$lp" "$key" "$TMP/access.log" "$lpid"
rc=$?
kill -0 $lpid 2>/dev/null || { cat "$TMP/llmux.err" >&2; fail "llmux died"; }
kill -TERM $lpid
wait $lpid
st=$?
[ $st = 0 ] || { tail -50 "$TMP/llmux.err" >&2; fail "llmux exited $st (ASan reports above, if any)"; }
[ $rc = 0 ] || fail "adversarial checks failed"
echo "test_adversarial: ok"

#!/usr/bin/env bash
# SIGHUP through the built binary: an invalid file is refused and the running configuration
# keeps serving; a valid one is published and new requests use it.
source "$(dirname "$0")/lib.sh"

mp=$(free_port)
lp=$(free_port)
"$MOCK" -l 127.0.0.1:$mp 2>/dev/null &
PIDS+=($!)
write_config() {
    cat >"$TMP/c.yaml" <<YAML
listen: 127.0.0.1:$lp
store: {path: "$TMP/llmux.db"}
workers: 2
providers:
  - {name: m, base_url: "http://127.0.0.1:$mp/v1"}
models:
  - {id: $1, context_length: 8192, providers: [{provider: m}]}
auth: none
log: {access_log: off}
YAML
}
status() {
    curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$lp/v1/chat/completions" \
        -d "{\"model\":\"$1\"}"
}
write_config old/model
"$LLMUX" -c "$TMP/c.yaml" 2>"$TMP/llmux.err" &
lpid=$!
PIDS+=($lpid)
wait_http "http://127.0.0.1:$lp/healthz"
[ "$(status old/model)" = 200 ] || fail "old model not served"

# an invalid file: refused with its error, the old configuration keeps serving
echo "workers: lots" >>"$TMP/c.yaml"
kill -HUP $lpid
for _ in $(seq 1 50); do grep -q 'reload: .* is invalid' "$TMP/llmux.err" && break; sleep 0.05; done
grep -q 'reload: .* is invalid' "$TMP/llmux.err" || fail "no refusal logged: $(cat "$TMP/llmux.err")"
grep -q 'c.yaml:[0-9]*:[0-9]*: ' "$TMP/llmux.err" || fail "the error has no position"
[ "$(status old/model)" = 200 ] || fail "old model not served after a refused reload"

# a valid file: published; every worker serves the new model and not the old one
write_config new/model
kill -HUP $lpid
for _ in $(seq 1 50); do [ "$(status new/model)" = 200 ] && break; sleep 0.05; done
for _ in 1 2 3 4 5 6; do
    [ "$(status new/model)" = 200 ] || fail "new model not served after reload"
    [ "$(status old/model)" = 404 ] || fail "old model still served after reload"
done
kill -0 $lpid || fail "llmux exited on reload"
echo "test_sighup: ok"

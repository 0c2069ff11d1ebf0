#!/usr/bin/env bash
# curl -N through llmux shows tokens as they arrive: with the mock sending one chunk every
# 100 ms, the first event reaches curl long before the last one is sent (a buffering proxy
# would deliver them all together at the end).
source "$(dirname "$0")/lib.sh"

mp=$(free_port)
lp=$(free_port)
"$MOCK" -l 127.0.0.1:$mp 2>/dev/null &
PIDS+=($!)
cat >"$TMP/c.yaml" <<YAML
listen: 127.0.0.1:$lp
store: {path: "$TMP/llmux.db"}
workers: 1
providers:
  - {name: m, base_url: "http://127.0.0.1:$mp/v1"}
models:
  - {id: t/model, context_length: 8192, providers: [{provider: m, model: up}]}
auth: none
log: {access_log: off}
YAML
"$LLMUX" -c "$TMP/c.yaml" 2>"$TMP/llmux.err" &
PIDS+=($!)
wait_http "http://127.0.0.1:$lp/healthz"

curl -sN "http://127.0.0.1:$lp/v1/chat/completions" \
    -d '{"model":"t/model","stream":true,"mock":{"chunks":10,"interval_ms":100}}' |
    while IFS= read -r line; do
        [ -n "$line" ] && echo "$(date +%s%N) $line"
    done >"$TMP/events"
n=$(grep -c ' data: {' "$TMP/events")
[ "$n" -ge 10 ] || fail "expected at least 10 events, got $n: $(cat "$TMP/events")"
grep -q ' data: \[DONE\]' "$TMP/events" || fail "no [DONE]"
first=$(head -1 "$TMP/events" | cut -d' ' -f1)
last=$(tail -1 "$TMP/events" | cut -d' ' -f1)
spread=$(((last - first) / 1000000))
# ten chunks 100 ms apart: delivered as they come, the first and the last are ~900 ms apart
[ "$spread" -ge 500 ] || fail "events arrived together (spread $spread ms): buffered"
echo "test_curl_stream: ok (first to last event: $spread ms)"

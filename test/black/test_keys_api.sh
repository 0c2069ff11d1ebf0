#!/usr/bin/env bash
# The management and usage API with curl, the raw shapes: status codes (201, 200, 400, 401,
# 403, 404), OpenRouter's {"data":...} and {"deleted":true}, the key usable at once, the
# generation right after a stream, activity by date. The same calls as
# test/node/openrouter_sdk.test.mjs, without the SDK in between.
source "$(dirname "$0")/lib.sh"

ADMIN=sk-black-admin
STATIC=sk-black-static
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

mp=$(free_port)
lp=$(free_port)
"$MOCK" -l 127.0.0.1:$mp 2>"$TMP/mock.err" &
PIDS+=($!)
cat >"$TMP/c.yaml" <<YAML
listen: 127.0.0.1:$lp
workers: 2
providers:
  - {name: m, base_url: "http://127.0.0.1:$mp/v1"}
models:
  - {id: t/model, context_length: 8192, providers: [{provider: m, model: up, price: {prompt: 10, completion: 20}}]}
auth:
  keys: [{name: static, sha256: $(sha $STATIC)}]
admin: {sha256: $(sha $ADMIN)}
store: {path: "$TMP/llmux.db", commit_interval: 50ms}
log: {access_log: off, level: error}
YAML
"$LLMUX" -c "$TMP/c.yaml" 2>"$TMP/llmux.err" &
PIDS+=($!)
B=http://127.0.0.1:$lp
wait_http "$B/healthz"

# req METHOD PATH KEY [BODY]: prints the status; the body is in $TMP/body, the head in $TMP/head
req() {
    local args=(-s -o "$TMP/body" -D "$TMP/head" -w '%{http_code}' -X "$1")
    [ -n "$3" ] && args+=(-H "Authorization: Bearer $3")
    [ $# -ge 4 ] && args+=(-H 'Content-Type: application/json' --data-binary "$4")
    curl "${args[@]}" "$B$2"
}
# expect STATUS METHOD PATH KEY [BODY]
expect() {
    local want=$1
    shift
    local got
    got=$(req "$@")
    [ "$got" = "$want" ] || fail "$1 $2: $got, not $want: $(cat "$TMP/body")"
}
# js EXPR: evaluates a Python expression over the last body, parsed as d, in one python3
# process kept for the whole test (starting python3 costs up to a second on a loaded machine)
coproc PYJSON {
    python3 -u -c '
import json, sys
for line in sys.stdin:
    expr, path = line.rstrip("\n").split("\t")
    try:
        d = json.load(open(path))
        print(str(eval(expr)).replace("\n", " "))
    except Exception as e:
        print("ERROR %r" % e)
'
}
PIDS+=($PYJSON_PID)
js() {
    local out
    printf '%s\t%s\n' "$1" "$TMP/body" >&"${PYJSON[1]}"
    IFS= read -r out <&"${PYJSON[0]}" || fail "the JSON reader is gone"
    [[ $out == "ERROR "* ]] && fail "body is not the JSON expected ($1, $out): $(cat "$TMP/body")"
    printf '%s\n' "$out"
}
# an OpenRouter error envelope with this status as its code
or_error() {
    [ "$(js "d['error']['code']")" = "$1" ] || fail "error envelope: $(cat "$TMP/body")"
    [ -n "$(js "d['error']['message']")" ] || fail "error without a message"
}

# who may call: nobody 401, a client key 403, a wrong key 401, the management key 200
expect 401 GET /api/v1/keys ""
or_error 401
expect 403 GET /api/v1/keys $STATIC
or_error 403
expect 401 GET /api/v1/keys sk-nope
expect 200 GET /api/v1/keys $ADMIN
[ "$(js "type(d['data']).__name__")" = list ] || fail "list: $(cat "$TMP/body")"
expect 403 POST /api/v1/keys $STATIC '{"name":"x"}'

# create: 201, the plaintext once, the Key beside it
expect 201 POST /api/v1/keys $ADMIN '{"name":"black","limit":5,"limit_reset":"monthly"}'
KEY=$(js "d['key']")
HASH=$(js "d['data']['hash']")
[[ $KEY =~ ^sk-lx-v1-[0-9a-f]{64}$ ]] || fail "key $KEY"
[ "$HASH" = "$(sha "$KEY")" ] || fail "hash $HASH is not the key's SHA-256"
[ "$(js "d['data']['name'], d['data']['limit'], d['data']['limit_reset'], d['data']['disabled']")" = \
    "('black', 5, 'monthly', False)" ] || fail "create: $(cat "$TMP/body")"
[ "$(js "d['data']['usage'], d['data']['limit_remaining']")" = "(0, 5)" ] ||
    fail "create usage: $(cat "$TMP/body")"
js "sorted(d['data'])" >"$TMP/members"
for m in hash name label disabled limit limit_remaining limit_reset usage usage_daily \
    usage_weekly usage_monthly created_at updated_at; do
    grep -q "'$m'" "$TMP/members" || fail "Key without $m: $(cat "$TMP/body")"
done

# list, get (under /api/v1 and /v1), the plaintext never again
expect 200 GET /api/v1/keys $ADMIN
[ "$(js "[k['hash'] for k in d['data']].count('$HASH')")" = 1 ] || fail "not listed"
grep -q "$KEY" "$TMP/body" && fail "the list shows the plaintext"
expect 200 GET /api/v1/keys/$HASH $ADMIN
[ "$(js "d['data']['hash']")" = "$HASH" ] || fail "get: $(cat "$TMP/body")"
grep -q "${KEY#sk-lx-v1-}" "$TMP/body" && fail "get shows the plaintext"
expect 200 GET /v1/keys/$HASH $ADMIN
expect 404 GET /api/v1/keys/$(printf '%064d' 0) $ADMIN
or_error 404
expect 404 GET /api/v1/keys/not-a-hash $ADMIN
expect 403 GET /api/v1/keys/$HASH "$KEY"

# bad bodies: 400 in OpenRouter's envelope
for b in '{' '{"name":1}' '{"name":"x","limit":-1}' '{"name":"x","nope":1}' \
    '{"name":"x","limit_reset":"hourly"}'; do
    expect 400 POST /api/v1/keys $ADMIN "$b"
    or_error 400
done
expect 400 PATCH /api/v1/keys/$HASH $ADMIN '{"limit":"5"}'

# update
expect 200 PATCH /api/v1/keys/$HASH $ADMIN '{"name":"black-2","limit":2.5,"limit_reset":"daily"}'
[ "$(js "d['data']['name'], d['data']['limit'], d['data']['limit_reset']")" = \
    "('black-2', 2.5, 'daily')" ] || fail "update: $(cat "$TMP/body")"
expect 404 PATCH /api/v1/keys/$(printf '%064d' 0) $ADMIN '{"name":"y"}'

# the key itself: /key, then a stream and its generation at once
expect 200 GET /api/v1/key "$KEY"
[ "$(js "d['data']['is_management_key'], d['data']['limit'], d['data']['usage']")" = \
    "(False, 2.5, 0)" ] || fail "/key: $(cat "$TMP/body")"
expect 200 GET /api/v1/key $ADMIN
[ "$(js "d['data']['is_management_key']")" = True ] || fail "/key admin: $(cat "$TMP/body")"
for i in 1 2 3; do
    code=$(curl -s -N -o "$TMP/stream" -D "$TMP/shead" -w '%{http_code}' \
        -H "Authorization: Bearer $KEY" "$B/api/v1/chat/completions" \
        -d '{"model":"t/model","stream":true,"messages":[{"role":"user","content":"hi"}]}')
    [ "$code" = 200 ] || fail "stream $i: $code $(cat "$TMP/stream")"
    gid=$(awk -F': ' 'tolower($1) == "x-generation-id" {print $2}' "$TMP/shead" | tr -d '\r')
    [[ $gid == gen-* ]] || fail "no X-Generation-Id: $(cat "$TMP/shead")"
    grep -q 'data: \[DONE\]' "$TMP/stream" || fail "stream $i not ended"
    expect 200 GET "/api/v1/generation?id=$gid" "$KEY"
    [ "$(js "d['data']['id'], d['data']['model'], d['data']['provider_name'], d['data']['streamed']")" = \
        "('$gid', 't/model', 'm', True)" ] || fail "generation: $(cat "$TMP/body")"
    [ "$(js "d['data']['tokens_completion'] > 0 and d['data']['total_cost'] > 0")" = True ] ||
        fail "generation usage: $(cat "$TMP/body")"
done
expect 404 GET "/api/v1/generation?id=$gid" $STATIC
expect 200 GET "/api/v1/generation?id=$gid" $ADMIN
expect 404 GET "/api/v1/generation?id=gen-nope" "$KEY"
expect 400 GET "/api/v1/generation" "$KEY"
expect 401 GET "/api/v1/generation?id=$gid" ""

# activity for today: this key's three requests
day=$(date -u +%F)
expect 200 GET "/api/v1/activity?date=$day" "$KEY"
[ "$(js "[(r['model'], r['provider_name'], r['requests']) for r in d['data']]")" = \
    "[('t/model', 'm', 3)]" ] || fail "activity: $(cat "$TMP/body")"
expect 200 GET "/api/v1/activity?date=$day&api_key_hash=$HASH" $ADMIN
[ "$(js "sum(r['requests'] for r in d['data'])")" = 3 ] || fail "admin activity: $(cat "$TMP/body")"
expect 400 GET "/api/v1/activity?date=2026-13-01" "$KEY"

# disable: 401 on the request path; enable again
expect 200 PATCH /api/v1/keys/$HASH $ADMIN '{"disabled":true}'
[ "$(js "d['data']['disabled']")" = True ] || fail "disable: $(cat "$TMP/body")"
expect 401 POST /api/v1/chat/completions "$KEY" '{"model":"t/model","messages":[]}'
expect 200 PATCH /api/v1/keys/$HASH $ADMIN '{"disabled":false}'
expect 200 POST /api/v1/chat/completions "$KEY" '{"model":"t/model","messages":[]}'

# delete: exactly {"deleted":true}; then 404 and 401
expect 200 DELETE /api/v1/keys/$HASH $ADMIN
[ "$(cat "$TMP/body")" = '{"deleted":true}' ] || fail "delete: $(cat "$TMP/body")"
expect 404 DELETE /api/v1/keys/$HASH $ADMIN
expect 404 GET /api/v1/keys/$HASH $ADMIN
expect 401 GET /api/v1/key "$KEY"
expect 401 POST /api/v1/chat/completions "$KEY" '{"model":"t/model","messages":[]}'
expect 200 GET /api/v1/keys $ADMIN
[ "$(js "[k['hash'] for k in d['data']].count('$HASH')")" = 0 ] || fail "deleted key listed"
# the store file never holds the plaintext
grep -qa "${KEY#sk-lx-v1-}" "$TMP"/llmux.db* && fail "the plaintext key is in the store file"
exec {PYJSON[1]}>&- # the JSON reader ends with its input
wait "$PYJSON_PID"
echo "test_keys_api: ok"

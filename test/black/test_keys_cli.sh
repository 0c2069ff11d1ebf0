#!/usr/bin/env bash
# `llmux keys` on the store file of a RUNNING llmux: create prints the plaintext once,
# list/show/update/disable/delete; the running gateway picks up a CLI-created key (the store
# thread polls PRAGMA data_version every commit tick) — the time until it works is measured
# and printed; a CLI-disabled or deleted key is refused. `llmux -t` reports the schema.
source "$(dirname "$0")/lib.sh"

ADMIN=sk-cli-admin
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

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
auth: {keys: [{name: static, sha256: $(sha sk-cli-static)}]}
admin: {sha256: $(sha $ADMIN)}
store: {path: "$TMP/llmux.db", commit_interval: 50ms}
log: {access_log: off, level: error}
YAML
K=("$LLMUX" -c "$TMP/c.yaml" keys)

# -t before the file exists, and a usage error that leaves no file behind
"$LLMUX" -t -c "$TMP/c.yaml" >"$TMP/t.out" 2>&1 || fail "-t: $(cat "$TMP/t.out")"
grep -q "store: $TMP/llmux.db does not exist yet (created at start, schema version [0-9]" \
    "$TMP/t.out" || fail "-t without a store: $(cat "$TMP/t.out")"
"${K[@]}" create --limit 1 >"$TMP/out" 2>&1 && fail "create without --name accepted"
"${K[@]}" create --name x --limit -1 >"$TMP/out" 2>&1 && fail "a negative limit accepted"
"${K[@]}" frobnicate >"$TMP/out" 2>&1 && fail "an unknown command accepted"
[ -e "$TMP/llmux.db" ] && fail "a usage error created the store file"

# the gateway runs on the store
"$LLMUX" -c "$TMP/c.yaml" 2>"$TMP/llmux.err" &
lpid=$!
PIDS+=($lpid)
B=http://127.0.0.1:$lp
wait_http "$B/healthz"
"$LLMUX" -t -c "$TMP/c.yaml" >"$TMP/t.out" 2>&1 || fail "-t: $(cat "$TMP/t.out")"
grep -qE "^store: $TMP/llmux.db schema version ([0-9]+) \(this llmux: \1\)$" "$TMP/t.out" ||
    fail "-t schema line: $(cat "$TMP/t.out")"

chat() { # KEY: prints the status of a small chat request
    curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" \
        "$B/v1/chat/completions" -d '{"model":"t/model","max_tokens":10,"messages":[]}'
}
# until_status KEY STATUS: asks every 5 ms (for at most 5 s) until a request gets STATUS;
# prints the milliseconds it took, or fails (the caller: `x=$(until_status ..) || fail ..`)
until_status() {
    local t0 t n=0
    t0=$(now_ms)
    while t=$(($(now_ms) - t0)) && [ $t -lt 5000 ]; do
        n=$((n + 1))
        if [ "$(chat "$1")" = "$2" ]; then
            t=$(($(now_ms) - t0))
            echo "$t ms ($n requests, one every $((t / n)) ms)"
            return 0
        fi
        sleep 0.005
    done
    return 1
}

# create: the plaintext on the first line, once; the Key after it. The command runs in the
# background; the clock starts when its output appears (stdout to a file is flushed at exit).
"${K[@]}" create --name cli-a --limit 1 --limit-reset daily --rpm 600 >"$TMP/create" 2>"$TMP/err" &
cpid=$!
for _ in $(seq 1 1000); do [ -s "$TMP/create" ] && break; sleep 0.005; done
[ -s "$TMP/create" ] || fail "create printed nothing: $(cat "$TMP/err")"
t0=$(now_ms)
sleep 0.001
key=$(head -1 "$TMP/create")
[[ $key =~ ^sk-lx-v1-[0-9a-f]{64}$ ]] || fail "create's first line: $(cat "$TMP/create")"
hash=$(sha "$key")
# the running gateway: time until the key works
wait_ms=$(until_status "$key" 200) || fail "a CLI-created key never worked in the running llmux"
wait $cpid || fail "create: $(cat "$TMP/err")"
tail -n +2 "$TMP/create" | grep -q "\"hash\":\"$hash\"" || fail "create's Key: $(cat "$TMP/create")"
tail -n +2 "$TMP/create" | grep -q "$key" && fail "the plaintext twice"
grep -q '"limit_reset":"daily"' "$TMP/create" || fail "create: $(cat "$TMP/create")"
c0=$(now_ms)
curl -s -o /dev/null "$B/healthz"
echo "cli pickup: a key created by llmux keys works in the running llmux $wait_ms after" \
    "the command printed it (commit_interval 50ms; one curl costs $(($(now_ms) - c0)) ms here)"
[ "${wait_ms%% *}" -lt 1000 ] || fail "pickup took $wait_ms"

# list / show
"${K[@]}" list >"$TMP/list" || fail "list"
grep -q "\"hash\":\"$hash\"" "$TMP/list" || fail "list: $(cat "$TMP/list")"
grep -q "$key" "$TMP/list" && fail "list shows the plaintext"
"${K[@]}" show "$hash" >"$TMP/show" || fail "show"
grep -q '"name":"cli-a"' "$TMP/show" || fail "show: $(cat "$TMP/show")"
"${K[@]}" show "$(printf '%064d' 0)" >"$TMP/out" 2>&1 && fail "show of an unknown hash"
grep -q "no key" "$TMP/out" || fail "unknown hash: $(cat "$TMP/out")"

# update: the running gateway sees the new name and limit through the management API
"${K[@]}" update "$hash" --name cli-b --limit 2 >"$TMP/out" || fail "update: $(cat "$TMP/out")"
grep -q '"name":"cli-b"' "$TMP/out" || fail "update: $(cat "$TMP/out")"
curl -s -H "Authorization: Bearer $key" "$B/api/v1/key" >"$TMP/key.json"
grep -q '"limit":2[,}]' "$TMP/key.json" || fail "/key after update: $(cat "$TMP/key.json")"

# disable: refused by the running gateway; list hides it, list --all shows it
"${K[@]}" disable "$hash" >"$TMP/out" || fail "disable: $(cat "$TMP/out")"
grep -q '"disabled":true' "$TMP/out" || fail "disable: $(cat "$TMP/out")"
off_ms=$(until_status "$key" 401) || fail "a CLI-disabled key still works"
echo "cli pickup: disabled by llmux keys, refused after $off_ms"
"${K[@]}" list >"$TMP/list"
grep -q "$hash" "$TMP/list" && fail "list shows a disabled key"
"${K[@]}" list --all >"$TMP/list"
grep -q "$hash" "$TMP/list" || fail "list --all hides a disabled key"
"${K[@]}" update "$hash" --enable >/dev/null || fail "enable"
until_status "$key" 200 >/dev/null || fail "a CLI-enabled key never worked"

# delete: refused, gone from show; a second delete fails
"${K[@]}" delete "$hash" >"$TMP/out" || fail "delete: $(cat "$TMP/out")"
del_ms=$(until_status "$key" 401) || fail "a CLI-deleted key still works"
echo "cli pickup: deleted by llmux keys, refused after $del_ms"
"${K[@]}" show "$hash" >/dev/null 2>&1 && fail "show of a deleted key"
"${K[@]}" delete "$hash" >/dev/null 2>&1 && fail "a second delete succeeded"

# the audit trail names the CLI and never holds the key
python3 - "$TMP/llmux.db" "$hash" "$key" <<'PY' || fail "audit table"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = db.execute("select actor, action, key_hash, coalesce(details,'') from audit where key_hash = ?",
                  (sys.argv[2],)).fetchall()
actions = [r[1] for r in rows]
assert actions.count("create") == 1 and actions.count("delete") == 1 and "update" in actions, rows
assert all(r[0] == "cli" for r in rows), rows
assert not any(sys.argv[3][9:] in str(r) for r in rows), "plaintext in the audit table"
PY

# the gateway is still well and exits cleanly
kill -TERM $lpid
wait $lpid || fail "exit status $? after SIGTERM: $(cat "$TMP/llmux.err")"
echo "test_keys_cli: ok"

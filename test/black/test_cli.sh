#!/usr/bin/env bash
# The llmux command line: -V, -h, -t on good and bad files, hash-key, secrets kept out of output.
source "$(dirname "$0")/lib.sh"

"$LLMUX" -V | grep -q '^llmux [0-9]' || fail "-V"
"$LLMUX" -h | grep -q 'usage: llmux' || fail "-h"
"$LLMUX" --bogus >/dev/null 2>&1 && fail "unknown argument accepted"

# the shipped configuration is valid
"$LLMUX" -t -c conf/llmux.yaml >"$TMP/out" 2>&1 || { cat "$TMP/out"; fail "conf/llmux.yaml invalid"; }

# errors come as file:line:column, all of them, exit non-zero
cat >"$TMP/bad.yaml" <<'YAML'
listen: 127.0.0.1:8080
workers: many
timeouts:
  client_header: 10
providers:
  - name: p
    base_url: ftp://x
    colour: blue
models: []
auth: none
YAML
if "$LLMUX" -t -c "$TMP/bad.yaml" >"$TMP/out" 2>&1; then fail "bad config accepted"; fi
grep -qE "bad.yaml:2:[0-9]+: " "$TMP/out" || { cat "$TMP/out"; fail "no position for workers"; }
grep -qE "bad.yaml:4:[0-9]+: " "$TMP/out" || { cat "$TMP/out"; fail "no position for duration"; }
grep -qE "bad.yaml:8:[0-9]+: .*colour" "$TMP/out" || { cat "$TMP/out"; fail "unknown key not named"; }
# a file that cannot be read: one line saying why, with or without -t
for t in -t ""; do
    "$LLMUX" $t -c "$TMP/missing.yaml" >"$TMP/out" 2>"$TMP/err" && fail "missing file accepted ($t)"
    [ -s "$TMP/out" ] && fail "missing file ($t): stdout: $(cat "$TMP/out")"
    [ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "missing file ($t): not one line: $(cat "$TMP/err")"
    grep -qxF "$TMP/missing.yaml: cannot open: No such file or directory" "$TMP/err" ||
        fail "missing file ($t): $(cat "$TMP/err")"
done

# secrets never appear in -t output
cat >"$TMP/secret.yaml" <<'YAML'
listen: 127.0.0.1:8080
providers:
  - name: p
    base_url: https://api.example.com/v1
    api_key: ${LLMUX_TEST_SECRET}
    headers:
      X-Org: ${LLMUX_TEST_SECRET}
models:
  - id: a/b
    context_length: 4096
    providers: [{provider: p}]
auth: none
YAML
LLMUX_TEST_SECRET=sk-very-secret-value "$LLMUX" -t -c "$TMP/secret.yaml" >"$TMP/out" 2>&1 ||
    { cat "$TMP/out"; fail "secret config invalid"; }
grep -q 'sk-very-secret-value' "$TMP/out" && fail "secret printed by -t"
env -u LLMUX_TEST_SECRET "$LLMUX" -t -c "$TMP/secret.yaml" >"$TMP/out" 2>&1 && fail "unset env accepted"
grep -q 'LLMUX_TEST_SECRET' "$TMP/out" || fail "unset variable not named"

# hash-key prints the SHA-256 of the key (one trailing newline ignored)
want=$(printf 'sk-abc' | sha256sum | cut -d' ' -f1)
got=$(printf 'sk-abc\n' | "$LLMUX" hash-key)
[ "$got" = "$want" ] || fail "hash-key: $got != $want"
printf '' | "$LLMUX" hash-key >/dev/null 2>&1 && fail "empty key accepted"
# auth: none beyond loopback starts, with a warning
port=$(free_port)
cat >"$TMP/open.yaml" <<YAML
listen: 0.0.0.0:$port
workers: 1
providers:
  - {name: p, base_url: "http://127.0.0.1:9/v1"}
models:
  - {id: a/b, context_length: 4096, providers: [{provider: p}]}
auth: none
log: {access_log: off}
store: {path: "$TMP/open.db"}
YAML
"$LLMUX" -c "$TMP/open.yaml" 2>"$TMP/open.err" &
open=$!
PIDS+=($open)
wait_http "http://127.0.0.1:$port/healthz"
grep -q "auth: none while listening on 0.0.0.0:$port" "$TMP/open.err" || fail "no warning: $(cat "$TMP/open.err")"
# once, at start
grep -c 'auth: none' "$TMP/open.err" | grep -qx 1 || fail "warned more than once"
# stopped, not killed: its pid file goes with it
kill -TERM $open
wait $open || fail "exit status $? after SIGTERM"
echo "test_cli: ok"

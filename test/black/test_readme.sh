#!/usr/bin/env bash
# The README's test command is the one .ci/run runs; its run command runs scripts/demo.sh, which
# starts a mock on every endpoint of the shipped configuration and llmux on it, and stops both
# on Ctrl-C or SIGTERM.
source "$(dirname "$0")/lib.sh"
readme_test=$(awk '/^## Tests/{t=1} t && /^apt-get/{print; exit}' README.md)
[ -n "$readme_test" ] || fail "no test command in README"
grep -qxF "$readme_test" .ci/run || fail ".ci/run does not run the README's test command"
readme_run=$(awk '/^## Quick start/{t=1} t && /^apt-get/{print; exit}' README.md)
[ -n "$readme_run" ] || fail "no run command in README"
demo=scripts/demo.sh
grep -qE "&& $demo\$" <<<"$readme_run" || fail "the run command does not end by running $demo"
[ -x "$demo" ] || fail "$demo is not executable"
grep -qF -- '-c "$conf"' "$demo" && grep -qxF 'conf=conf/llmux.yaml' "$demo" ||
    fail "$demo does not run llmux on conf/llmux.yaml"
# the demo fleet matches the endpoints of the shipped configuration
for port in $(grep -oE '127\.0\.0\.1:91[0-9][0-9]' conf/llmux.yaml | sort -u); do
    grep -qF -- "-l $port" "$demo" || fail "$demo starts no mock on $port"
done

# The demo on this build, stopped the two ways a user stops it. It needs the shipped
# configuration's ports: one test run at a time (flock), and none while a demo of someone
# else's runs on this machine.
exec 9>/tmp/llmux-test-demo.lock
flock -w 120 9 || fail "another test run kept the demo's ports for 2 minutes"
for port in 8080 9101 9102 9103; do
    if (: <>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "test_readme: ok (the demo's run is skipped: 127.0.0.1:$port is in use)"
        exit 0
    fi
done
# a failing check leaves no demo behind: SIGTERM makes it stop its children; the demo's store
# file (conf/llmux.yaml keeps the default, llmux.db in the working directory, the repository's
# root for the demo) goes too unless a user's demo had made it before
keep_store=
[ -e llmux.db ] && keep_store=1
pid=
trap '[ -n "$pid" ] && kill -TERM $pid 2>/dev/null && sleep 2; [ -z "$keep_store" ] && rm -f llmux.db llmux.db-wal llmux.db-shm; cleanup' EXIT
set -m # the demo in a process group of its own, as a shell runs it: Ctrl-C goes to the group
for stop in INT TERM; do
    LLMUX=$LLMUX LLMUX_MOCK=$MOCK "$demo" >"$TMP/demo.out" 2>&1 9>&- &
    pid=$!
    for _ in $(seq 1 200); do curl -s -o /dev/null http://127.0.0.1:8080/healthz && break; sleep 0.05; done
    curl -s -o /dev/null http://127.0.0.1:8080/healthz || fail "demo: $(cat "$TMP/demo.out")"
    out=$(curl -s http://127.0.0.1:8080/v1/chat/completions \
        -d '{"model":"meta-llama/llama-3.1-8b-instruct","messages":[{"role":"user","content":"Hello"}]}')
    grep -q '"choices"' <<<"$out" || fail "demo: $out"
    # a second one while it runs: refused at once, and the first keeps serving
    LLMUX=$LLMUX LLMUX_MOCK=$MOCK timeout 10 "$demo" >"$TMP/second.out" 2>&1 9>&- &&
        fail "a second demo started"
    grep -q "in use" "$TMP/second.out" || fail "second demo: $(cat "$TMP/second.out")"
    # and a second mock fleet says why it cannot listen
    timeout 10 "$MOCK" -l 127.0.0.1:9101 2>"$TMP/mock.err" 9>&- && fail "a second mock started"
    grep -qx "llmux-mock: cannot listen on 127.0.0.1:9101: address already in use" "$TMP/mock.err" ||
        fail "second mock: $(cat "$TMP/mock.err")"
    curl -s -f -o /dev/null http://127.0.0.1:8080/healthz || fail "the first demo stopped serving"
    if [ $stop = INT ]; then kill -INT -- -$pid; else kill -TERM $pid; fi # Ctrl-C; a service stop
    for _ in $(seq 1 200); do kill -0 $pid 2>/dev/null || break; sleep 0.05; done
    kill -0 $pid 2>/dev/null && fail "demo still running 10 s after SIG$stop: $(cat "$TMP/demo.out")"
    wait $pid
    rc=$?
    pid=
    [ $rc -eq 0 ] || fail "demo: exit status $rc after SIG$stop: $(cat "$TMP/demo.out")"
    for port in 8080 9101 9102 9103; do
        (: <>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && fail "something still listens on $port after SIG$stop"
    done
    grep -q "stopped" "$TMP/demo.out" || fail "llmux did not drain: $(cat "$TMP/demo.out")"
done
echo "test_readme: ok"

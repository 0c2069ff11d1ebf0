#!/usr/bin/env bash
# Usage records survive the process: (a) SIGTERM after N completed requests loses none;
# (b) SIGHUP (a reload) in the middle of a load, then SIGTERM, loses none; (c) kill -9 under a
# load of 8 concurrent clients loses at most the records of the last commit interval. Every
# completed response's X-Generation-Id is looked up in the usage table of the SQLite file
# (python3's sqlite3). (c) prints the measured figure: records missing, the request rate, and
# how many responses completed within the last commit interval + 100 ms before the kill.
source "$(dirname "$0")/lib.sh"

INTERVAL_MS=50
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

mp=$(free_port)
lp=$(free_port)
"$MOCK" -l 127.0.0.1:$mp 2>"$TMP/mock.err" &
PIDS+=($!)
cat >"$TMP/c.yaml" <<YAML
listen: 127.0.0.1:$lp
workers: 2
timeouts: {shutdown: 5s}
providers:
  - {name: m, base_url: "http://127.0.0.1:$mp/v1"}
models:
  - {id: t/model, context_length: 8192, providers: [{provider: m, model: up, price: {prompt: 1, completion: 2}}]}
auth: {keys: [{name: static, sha256: $(sha sk-dur-static)}]}
store: {path: "$TMP/llmux.db", commit_interval: ${INTERVAL_MS}ms}
log: {access_log: off, level: error}
YAML
KEY=$("$LLMUX" -c "$TMP/c.yaml" keys create --name load --limit 1000 | head -1)
[[ $KEY =~ ^sk-lx-v1- ]] || fail "keys create: $KEY"

# The load: THREADS clients on keep-alive connections. "count N" sends N requests in all;
# "kill PID SECONDS" sends until SECONDS have passed, kills PID with SIGKILL, and stops at the
# first failure after that; "hup PID N" sends N requests and SIGHUPs PID after a third of
# them. Every completed 200's generation id and completion time go to OUT; for "kill", the
# kill time goes to OUT.kill.
cat >"$TMP/load.py" <<'PY'
import http.client, os, signal, sys, threading, time
port, key, out, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
args = sys.argv[5:]
THREADS = 8
body = b'{"model":"t/model","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}'
hdr = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
lock = threading.Lock()
done = []          # (time, id)
failures = []
stop = threading.Event()
killed_at = [None]
budget = [int(args[-1])] if mode in ("count", "hup") else [1 << 62]

def take():
    with lock:
        if budget[0] <= 0:
            return False
        budget[0] -= 1
        return True

def worker():
    conn = None
    while not stop.is_set() and take():
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/v1/chat/completions", body, hdr)
            r = conn.getresponse()
            data = r.read()
            gid = r.getheader("X-Generation-Id")
            t = time.monotonic()
            if r.status != 200 or not gid:
                failures.append((r.status, data[:200]))
                if killed_at[0] is not None:
                    return
                continue
            with lock:
                done.append((t, gid))
        except Exception as e:
            if conn is not None:
                conn.close()
            conn = None
            if killed_at[0] is not None:
                return
            failures.append(repr(e))
            time.sleep(0.01)
        if len(failures) > 20:
            stop.set()

ts = [threading.Thread(target=worker) for _ in range(THREADS)]
t0 = time.monotonic()
for t in ts:
    t.start()
if mode == "kill":
    pid, secs = int(args[0]), float(args[1])
    time.sleep(secs)
    killed_at[0] = time.monotonic()
    os.kill(pid, signal.SIGKILL)
elif mode == "hup":
    pid, n = int(args[0]), int(args[1])
    while len(done) < n // 3 and any(t.is_alive() for t in ts):
        time.sleep(0.002)
    os.kill(pid, signal.SIGHUP)
for t in ts:
    t.join(30)
with open(out, "w") as f:
    for t, gid in done:
        f.write("%.6f %s\n" % (t, gid))
if killed_at[0] is not None:
    with open(out + ".kill", "w") as f:
        f.write("%.6f %.6f\n" % (t0, killed_at[0]))
if mode != "kill" and failures:
    print("failures:", failures[:5], file=sys.stderr)
    sys.exit(1)
PY

# missing OUT: how many ids of OUT are not in the usage table (prints it)
# (and writes the completion times of the missing ones to OUT.missing)
missing() {
    python3 - "$TMP/llmux.db" "$1" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
have = {r[0] for r in db.execute("select id from usage")}
lines = [l.split() for l in open(sys.argv[2])]
gone = [t for t, i in lines if i not in have]
open(sys.argv[2] + ".missing", "w").write("".join(t + "\n" for t in gone))
print(len(gone))
PY
}
rows() {
    python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from usage").fetchone()[0])' "$TMP/llmux.db"
}
start() {
    "$LLMUX" -c "$TMP/c.yaml" 2>>"$TMP/llmux.err" &
    lpid=$!
    PIDS+=($lpid)
    wait_http "http://127.0.0.1:$lp/healthz"
}

# (a) SIGTERM after N completed requests: all N rows
N=300
start
python3 "$TMP/load.py" $lp "$KEY" "$TMP/a.ids" count $N || fail "load (a)"
[ "$(wc -l <"$TMP/a.ids")" = $N ] || fail "(a): $(wc -l <"$TMP/a.ids") of $N completed"
kill -TERM $lpid
wait $lpid || fail "(a): exit status $? after SIGTERM: $(cat "$TMP/llmux.err")"
[ "$(rows)" = $N ] || fail "(a): $(rows) rows after SIGTERM, $N requests completed"
[ "$(missing "$TMP/a.ids")" = 0 ] || fail "(a): generation ids missing"
echo "store durability (a): $N requests, SIGTERM, $N rows"

# (b) SIGHUP in the middle of a load of N, then SIGTERM: every one of them
start
python3 "$TMP/load.py" $lp "$KEY" "$TMP/b.ids" hup $lpid $N || fail "load (b)"
[ "$(wc -l <"$TMP/b.ids")" = $N ] || fail "(b): $(wc -l <"$TMP/b.ids") of $N completed"
kill -TERM $lpid
wait $lpid || fail "(b): exit status $? after SIGTERM: $(cat "$TMP/llmux.err")"
[ "$(missing "$TMP/b.ids")" = 0 ] || fail "(b): $(missing "$TMP/b.ids") records lost across SIGHUP"
[ "$(rows)" = $((2 * N)) ] || fail "(b): $(rows) rows, $((2 * N)) expected"
echo "store durability (b): $N requests, SIGHUP at a third, SIGTERM, $N rows"

# (c) kill -9 under load
start
python3 "$TMP/load.py" $lp "$KEY" "$TMP/c.ids" kill $lpid 1.5 || fail "load (c)"
wait $lpid 2>/dev/null
python3 - "$TMP/c.ids" "$(missing "$TMP/c.ids")" $INTERVAL_MS <<'PY' || fail "(c): more records lost than the last commit interval holds"
import sys
ids, missing, interval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) / 1000
t0, tk = map(float, open(ids + ".kill").read().split())
times = [float(l.split()[0]) for l in open(ids)]
before = [t for t in times if t <= tk]
rate = len(before) / (tk - t0)
window = interval + 0.100  # the commit interval and the issue's 100 ms commit latency
recent = sum(1 for t in times if t > tk - window)
# what the assertion allows: the same, plus 100 ms of scheduling slack (an ASAN build on a
# shared 2-core machine, where 8 clients, 2 workers and the mock compete with the store
# thread), and the 8 responses in flight at the kill
slack = window + 0.100
bound = max(rate * slack, sum(1 for t in times if t > tk - slack)) + 8
gone = sorted(float(l) for l in open(ids + ".missing"))
oldest = (tk - gone[0]) * 1000 if gone else 0
print("store durability (c): kill -9 under load: %d of %d completed requests missing from the "
      "usage table (%.0f ms of requests at %.0f/s); commit_interval %d ms; %d completed in the "
      "last %d ms before the kill; the oldest missing completed %.0f ms before the kill; "
      "bound %.0f" % (missing, len(times), missing / rate * 1000, rate, interval * 1000,
                      recent, window * 1000, oldest, bound))
sys.exit(0 if missing <= bound and len(before) > 100 else 1)
PY
# and the file opens again after the crash, serving with the rows it had
start
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" \
    "http://127.0.0.1:$lp/v1/chat/completions" -d '{"model":"t/model","messages":[]}')" = 200 ] ||
    fail "no request served after the crash"
echo "test_store_durability: ok"

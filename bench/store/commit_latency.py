#!/usr/bin/env python3
"""bench/store/commit_latency.py - how long after a response ends its usage record is visible
in the SQLite file (issue 13: "a finished request's record committed within 100 ms").

    python3 bench/store/commit_latency.py PORT DB [SECONDS] [PROBE_RATE] [KEY]

Sends PROBE_RATE small chat requests per second (default 100) on one keep-alive connection to
llmux on PORT, for SECONDS (default 20); for each, takes the time the answer's last byte was
read (CLOCK_MONOTONIC) and its X-Generation-Id. A second thread opens DB read-only (another
SQLite connection, as any reader) and polls the generations whose number (which sorts by
arrival: store/record.h) is above the highest seen less two seconds, every millisecond; a probe's latency is the first poll that sees its row minus its end time,
so the figures are high by up to one poll period (1 ms plus the query). The load that makes
the rate (~2,000 req/s) is someone else's (bench/store/run.sh runs llmux-load beside it).
Prints: samples, not seen (after 5 s), p50 / p99 / max in ms.
"""
import http.client
import sqlite3
import sys
import threading
import time

port = int(sys.argv[1])
db = sys.argv[2]
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 20.0
rate = float(sys.argv[4]) if len(sys.argv) > 4 else 100.0
key = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] else None

body = ('{"model":"bench/model","messages":[{"role":"user","content":"Say hello in one short '
        'sentence."}],"max_tokens":16}')
headers = {"Content-Type": "application/json"}
if key:
    headers["Authorization"] = "Bearer " + key

ended = {}  # generation id -> monotonic end time
seen = {}  # generation id -> monotonic time its row was first seen
lock = threading.Lock()
done = threading.Event()


def poller():
    con = None
    while con is None and not done.is_set():
        try:
            con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=1)
            con.execute("SELECT 1 FROM generations LIMIT 1").fetchall()
        except sqlite3.Error:
            con = None
            time.sleep(0.01)
    last = con.execute("SELECT coalesce(max(seq), 0) FROM generations").fetchone()[0]
    window = 2000 << 19  # two seconds of arrivals: a row may land below the highest number
    deadline = None
    while True:
        # (the id is the number in hex: no JSON is read, so a poll stays well under a ms)
        rows = con.execute("SELECT seq FROM generations WHERE seq > ?", (last - window,)).fetchall()
        now = time.monotonic()
        for (seq,) in rows:
            last = max(last, seq)
            seen.setdefault("gen-%016x" % seq, now)
        if done.is_set():
            deadline = deadline or now + 5.0
            with lock:
                if all(g in seen for g in ended) or now > deadline:
                    return
        time.sleep(0.001)


t = threading.Thread(target=poller)
t.start()
time.sleep(0.2)
conn = http.client.HTTPConnection("127.0.0.1", port)
period = 1.0 / rate
start = time.monotonic()
n = 0
errors = 0
while time.monotonic() - start < seconds:
    conn.request("POST", "/v1/chat/completions", body, headers)
    r = conn.getresponse()
    r.read()
    end = time.monotonic()
    gid = r.getheader("X-Generation-Id")
    if r.status != 200 or not gid:
        errors += 1
    else:
        with lock:
            ended[gid] = end
    n += 1
    nxt = start + n * period
    delay = nxt - time.monotonic()
    if delay > 0:
        time.sleep(delay)
done.set()
t.join()
lat = sorted((seen[g] - e) * 1000.0 for g, e in ended.items() if g in seen)
missing = sum(1 for g in ended if g not in seen)


def pct(p):
    return lat[min(len(lat) - 1, int(p / 100.0 * len(lat)))] if lat else float("nan")


print("probes: %d sent, %d errors, %d rows seen, %d not seen within 5 s" %
      (n, errors, len(lat), missing))
print("commit_latency_ms: p50 %.1f p99 %.1f max %.1f" % (pct(50), pct(99), lat[-1] if lat else float("nan")))

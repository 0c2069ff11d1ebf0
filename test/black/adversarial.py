#!/usr/bin/env python3
"""The attacks and real-client shapes of the hardening issue, against the built binary.

Each check is one of the reproductions that found a defect: it talks to a running llmux (one
worker, keys on, a mock fleet behind it) over loopback with the standard library's own HTTP
client or raw sockets, and asserts what a client sees. Run by test_adversarial.sh, which starts
the processes and passes their addresses:

    adversarial.py PORT KEY ACCESS_LOG LLMUX_PID

Prints one line per check and 'N passed, N failed' at the end; exits 1 if any failed.
Every socket operation has a timeout, every loop a bound.
"""
import http.client
import json
import os
import random
import socket
import sys
import threading
import time

PORT = int(sys.argv[1])
KEY = sys.argv[2]
ACCESS_LOG = sys.argv[3]
LLMUX_PID = int(sys.argv[4])
MODEL = "t/model"
AUTH = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
TIMEOUT = 20.0

results = []


def check(fn):
    t0 = time.monotonic()
    try:
        fn()
        results.append((fn.__name__, None))
        print(f"ok    {fn.__name__} ({time.monotonic() - t0:.2f} s)", flush=True)
    except Exception as e:  # a failed assertion or a socket error alike
        results.append((fn.__name__, e))
        print(f"FAIL  {fn.__name__}: {type(e).__name__}: {e}", flush=True)
    return fn


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def chat_body(size, extra=None):
    """A chat request whose body is exactly <size> bytes (padding in the prompt)."""
    base = {"model": MODEL, "messages": [{"role": "user", "content": ""}]}
    if extra:
        base.update(extra)
    empty = len(json.dumps(base, separators=(",", ":")))
    base["messages"][0]["content"] = "x" * max(0, size - empty)
    b = json.dumps(base, separators=(",", ":")).encode()
    expect(len(b) == max(size, empty), f"body size {len(b)} != {size}")
    return b


def connect():
    s = socket.create_connection(("127.0.0.1", PORT), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Reader:
    """Reads HTTP/1.1 responses off a raw socket, one after another, in order."""

    def __init__(self, s):
        self.s = s
        self.buf = b""

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError("connection closed by llmux")
        self.buf += d

    def response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if status < 200:
            return status, headers, b""
        body = b""
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
        elif headers.get("transfer-encoding") == "chunked":
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                line, rest = self.buf.split(b"\r\n", 1)
                n = int(line.split(b";")[0], 16)
                while len(rest) < n + 2:
                    self._fill()
                    rest = self.buf.split(b"\r\n", 1)[1]
                body += rest[:n]
                self.buf = rest[n + 2:]
                if n == 0:
                    break
        return status, headers, body


def log_lines():
    try:
        with open(ACCESS_LOG, "rb") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def settled_log_count():
    """The line count once it has not moved for 300 ms (lines are written every 100 ms)."""
    last, since = -1, time.monotonic()
    end = since + 10.0
    while time.monotonic() < end:
        c = len(log_lines())
        if c != last:
            last, since = c, time.monotonic()
        elif time.monotonic() - since >= 0.3:
            break
        time.sleep(0.05)
    return last


def wait_log_count(n, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        c = len(log_lines())
        if c >= n:
            return c
        time.sleep(0.05)
    return len(log_lines())


def rss_kb():
    with open(f"/proc/{LLMUX_PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# --- keep-alive with real prompt sizes ------------------------------------------------------


@check
def keepalive_prompt_sizes_http_client():
    """A client library's keep-alive connection posting prompts around and far above 4 KiB."""
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=TIMEOUT)
    sizes = [5000, 4068, 4268, 5000, 4095, 4096, 4097, 16384, 65536, 1 << 20, 5000, 100]
    sock = None
    for i, size in enumerate(sizes):
        conn.request("POST", "/v1/chat/completions", body=chat_body(size), headers=AUTH)
        r = conn.getresponse()
        data = r.read()
        expect(r.status == 200, f"request {i} ({size} B): status {r.status}: {data[:200]!r}")
        expect(json.loads(data)["object"] == "chat.completion", f"request {i}: not a completion")
        if sock is None:
            sock = conn.sock
        expect(conn.sock is sock, f"request {i} ({size} B): the connection was not kept alive")
    conn.close()


@check
def keepalive_split_reads():
    """The same sequence written in random pieces with pauses, so reads split anywhere."""
    rng = random.Random(11)
    s = connect()
    rd = Reader(s)
    for size in [4097, 5000, 300, 20000]:
        req = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
               f"Content-Length: {size}\r\n\r\n").encode() + chat_body(size)
        pos = 0
        while pos < len(req):
            n = rng.randint(1, 3000)
            s.sendall(req[pos:pos + n])
            pos += n
            time.sleep(0.002)
        st, _, body = rd.response()
        expect(st == 200, f"{size} B split: status {st}: {body[:200]!r}")
    s.close()


@check
def chunked_bodies_keepalive():
    s = connect()
    rd = Reader(s)
    for size in [10, 5000, 70000]:
        b = chat_body(size)
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(b[i:i + 1000]), b[i:i + 1000])
                          for i in range(0, len(b), 1000)) + b"0\r\n\r\n"
        s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                   f"Transfer-Encoding: chunked\r\n\r\n").encode() + chunks)
        st, _, body = rd.response()
        expect(st == 200, f"chunked {size} B: status {st}: {body[:200]!r}")
    s.close()


# --- pipelining -------------------------------------------------------------------------------


@check
def pipeline_1000_healthz_in_one_write():
    s = connect()
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 1000)
    rd = Reader(s)
    for i in range(1000):
        st, _, _ = rd.response()
        expect(st == 200, f"answer {i}: status {st}")
    s.close()


@check
def pipeline_behind_a_slow_request():
    """A slow request, then 20 small requests written one by one while it is out."""
    s = connect()
    b = chat_body(200)
    s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
               f"x-mock-delay-ms: 300\r\nContent-Length: {len(b)}\r\n\r\n").encode() + b)
    for _ in range(20):
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.005)
    rd = Reader(s)
    st, _, body = rd.response()
    expect(st == 200, f"slow request: {st} {body[:200]!r}")
    for i in range(20):
        st, _, _ = rd.response()
        expect(st == 200, f"pipelined {i}: status {st}")
    s.close()


@check
def pipeline_mixed_posts():
    s = connect()
    reqs = b""
    sizes = [100, 5000, 4096, 30000, 1, 4097] * 5
    for size in sizes:
        b = chat_body(max(size, 60))
        reqs += (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                 f"Content-Length: {len(b)}\r\n\r\n").encode() + b
    s.sendall(reqs)
    rd = Reader(s)
    for i in range(len(sizes)):
        st, _, body = rd.response()
        expect(st == 200, f"pipelined POST {i}: status {st}: {body[:200]!r}")
    s.close()


# --- hostile input ----------------------------------------------------------------------------


def post_raw(body, extra_headers=""):
    s = connect()
    s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
               f"{extra_headers}Content-Length: {len(body)}\r\n\r\n").encode() + body)
    st, h, b = Reader(s).response()
    s.close()
    return st, h, b


@check
def deep_nesting_is_refused_and_the_worker_keeps_serving():
    # 100k '[' stalled a worker for 10 s (quadratic scan); answered at once now, and the one
    # worker answers others meanwhile.
    for body in [b'{"model":"t/model","messages":' + b"[" * 100000,
                 b'{"model":"t/model","x":' + b"[" * 50000 + b"]" * 50000 + b"}",
                 b'{"model":"t/model","x":[' + b"[]," * 300000 + b"[]]}"]:
        st, _, b = post_raw(body)
        expect(400 <= st < 500 or st == 200, f"status {st}: {b[:200]!r}")
        expect(st != 200 or len(body) < 1000000, "accepted")
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=TIMEOUT)
    c.request("GET", "/healthz")
    expect(c.getresponse().status == 200, "healthz after deep bodies")


@check
def header_name_with_space_before_colon_is_400():
    for bad in ["Authorization : Bearer client-chosen", "Host : evil", ": value",
                "Cookie : a=b", "Proxy-Authorization : x", "X\tY: 1"]:
        s = connect()
        b = chat_body(100)
        s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                   f"{bad}\r\nContent-Length: {len(b)}\r\n\r\n").encode() + b)
        st, _, body = Reader(s).response()
        s.close()
        expect(st == 400, f"{bad!r}: status {st}: {body[:200]!r}")


@check
def keyless_body_is_refused_before_it_is_read():
    s = connect()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
              b"Content-Type: application/json\r\nContent-Length: 1048576\r\n\r\n")
    st, _, body = Reader(s).response()
    s.close()
    expect(st == 401, f"status {st} (a 100 Continue or a wait means the body was going to be read)")


@check
def keyless_bodies_do_not_grow_memory():
    before = rss_kb()
    socks = []
    payload = b"x" * (1 << 20)
    try:
        for _ in range(200):
            s = connect()
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
            socks.append(s)
        for s in socks:
            try:
                s.settimeout(0.5)
                s.sendall(payload)
            except (socket.timeout, OSError):
                pass  # refused early: the peer closed or stopped reading
        time.sleep(0.5)
        grown = (rss_kb() - before) // 1024
        expect(grown < 64, f"RSS grew by {grown} MiB for 200 keyless 1 MiB bodies")
    finally:
        for s in socks:
            s.close()


@check
def bodies_over_the_memory_cap_get_503():
    # limits.max_body_memory is 8 MiB here: a 6 MiB body in progress holds 6 MiB of it, so a
    # second one is refused with 503 + Retry-After before it is read; once the first ends, the
    # second goes through
    a = connect()
    a.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
               f"Content-Length: {6 << 20}\r\n\r\n").encode() + b'{"model":')
    time.sleep(0.2)
    st, h, body = post_raw(chat_body(6 << 20))
    expect(st == 503 and h.get("retry-after") == "1", f"status {st}, {h}: {body[:200]!r}")
    a.close()
    time.sleep(0.2)
    st, _, body = post_raw(chat_body(6 << 20))
    expect(st == 200, f"after the first left: status {st}: {body[:200]!r}")


@check
def huge_chunk_size_is_413_at_once():
    s = connect()
    s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
              "Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n".encode())
    s.settimeout(5)
    st, _, _ = Reader(s).response()
    s.close()
    expect(st == 413, f"status {st}")


@check
def quoted_chunk_extension_is_accepted():
    b = chat_body(100)
    s = connect()
    s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
               f"Transfer-Encoding: chunked\r\n\r\n%x;name=\"a b\"\r\n").encode() % len(b)
              + b + b"\r\n0\r\n\r\n")
    st, _, body = Reader(s).response()
    s.close()
    expect(st == 200, f"status {st}: {body[:200]!r}")


@check
def model_names_come_back_intact_in_the_404():
    for name, want in [("mod\u00e9l", "mod\u00e9l"), ("a\u0000b", "a\u0000b")]:
        st, _, body = post_raw(json.dumps({"model": name, "messages": []}).encode())
        expect(st == 404, f"{name!r}: status {st}")
        msg = json.loads(body)["error"]["message"]
        expect(want in msg, f"{name!r}: message {msg!r}")


# --- upstreams that stall ------------------------------------------------------------------------


@check
def an_upstream_dribbling_its_head_is_timed_out():
    # llmux runs here with upstream_first_byte 1s: a head that never completes (a header line,
    # or a 100 Continue, every 300 ms for 30 s) is answered within the timeout's order, not held
    for hdr in ["x-mock-dribble-lines: 100\r\nx-mock-dribble-ms: 300\r\n",
                "x-mock-interim: 100\r\nx-mock-interim-ms: 300\r\n"]:
        t0 = time.monotonic()
        st, _, body = post_raw(chat_body(200), hdr)
        took = time.monotonic() - t0
        expect(st in (502, 503, 504), f"{hdr!r}: status {st}: {body[:200]!r}")
        expect(took < 10, f"{hdr!r}: answered after {took:.1f} s")


# --- clients that leave -----------------------------------------------------------------------


@check
def every_request_has_a_log_line_when_clients_close_at_once():
    rng = random.Random(7)
    start = settled_log_count()
    n = 1500
    b = chat_body(300)
    req = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
           f"Content-Length: {len(b)}\r\n\r\n").encode() + b
    for i in range(n):
        s = connect()
        s.sendall(req)
        mode = rng.randrange(3)
        if mode == 0:
            Reader(s).response()  # read the answer, then close at once
        elif mode == 1:
            s.recv(1)  # close while the answer is still arriving
        # mode 2: close before the answer
        s.close()
    wait_log_count(start + n)
    got = settled_log_count() - start
    expect(got == n, f"{n} requests, {got} access-log lines")


@check
def a_client_that_leaves_is_499():
    start = settled_log_count()
    s = connect()
    b = chat_body(100)
    s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
               f"x-mock-delay-ms: 2000\r\nContent-Length: {len(b)}\r\n\r\n").encode() + b)
    time.sleep(0.2)
    s.close()
    wait_log_count(start + 1)
    line = json.loads(log_lines()[start])
    expect(line["status"] == 499, f"logged {line['status']}: {line}")


# --- many streams -----------------------------------------------------------------------------


@check
def three_hundred_concurrent_streams_on_one_worker():
    # each stream outlives the upstream connect timeout (1 s here): a pool that caps busy
    # connections makes the later ones fail instead of streaming
    n = 300
    errors = []
    done = []
    body = json.dumps({"model": MODEL, "stream": True, "messages": [],
                       "mock": {"chunks": 5, "interval_ms": 400}}).encode()

    def one():
        try:
            c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
            c.request("POST", "/v1/chat/completions", body=body, headers=AUTH)
            r = c.getresponse()
            data = r.read()
            if r.status != 200 or b"[DONE]" not in data:
                errors.append((r.status, data[:200]))
            else:
                done.append(1)
            c.close()
        except Exception as e:
            errors.append(repr(e))

    ts = [threading.Thread(target=one) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    expect(not errors, f"{len(errors)} of {n} streams failed, first: {errors[:1]}")
    expect(len(done) == n, f"{len(done)} of {n} streams completed")


# --- conformance with real clients ------------------------------------------------------------


@check
def retrieve_a_model_whose_id_has_a_slash():
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=TIMEOUT)
    c.request("GET", "/v1/models/" + MODEL, headers=AUTH)
    r = c.getresponse()
    data = r.read()
    expect(r.status == 200, f"status {r.status}: {data[:200]!r}")
    expect(json.loads(data)["id"] == MODEL, f"{data[:200]!r}")


@check
def api_v1_stream_ends_with_usage_unasked():
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=TIMEOUT)
    c.request("POST", "/api/v1/chat/completions",
              body=json.dumps({"model": MODEL, "stream": True, "messages": []}), headers=AUTH)
    r = c.getresponse()
    data = r.read().decode()
    expect(r.status == 200, f"status {r.status}")
    events = [json.loads(l[6:]) for l in data.split("\n") if l.startswith("data: {")]
    expect(events and events[-1].get("usage"), f"no usage chunk at the end: {data[-300:]!r}")
    c.request("POST", "/v1/chat/completions",
              body=json.dumps({"model": MODEL, "stream": True, "messages": []}), headers=AUTH)
    r = c.getresponse()
    data = r.read().decode()
    events = [json.loads(l[6:]) for l in data.split("\n") if l.startswith("data: {")]
    expect(not any(e.get("usage") for e in events), "/v1 sent a usage chunk nobody asked for")


failed = sum(1 for _, e in results if e is not None)
print(f"{len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)

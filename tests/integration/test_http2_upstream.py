#!/usr/bin/env python3
"""HTTP/2 towards upstreams (`protocol: http2` on a cluster, prior knowledge on cleartext),
checked with real peers: h2_backend.py (python3-h2) and nghttpd behind sluice, HTTP/1.1
clients (the raw client of http_util, curl) and HTTP/2 clients (curl --http2-prior-knowledge,
h2load, h2_frames.H2Client) in front.

What the upstream hears (pseudo-header fields from the request line and Host, names lower-cased,
connection-specific fields dropped), the SETTINGS and windows sluice announces, bodies whole both
ways (content-length, chunked, 5 MiB), trailers both ways, bodiless answers (HEAD, 204, 304);
multiplexing (exactly one upstream connection for 50 requests at once under
max_concurrent_streams 100, exactly ceil(50/10) = 5 under 10), pool limits and timeouts on
streams; GOAWAY from the upstream under load (no request fails, none is answered twice, the
endpoint counters agree with what the backend saw), REFUSED_STREAM on a POST (re-sent); an
upstream closing its connection or resetting a stream (502 for that request only), an early
answer with RST_STREAM NO_ERROR; client resets and closes reaching the upstream stream; a slow
client holding back only its stream; an HTTP/1.1-only endpoint behind `protocol: http2` (a 502
with a reason, not a hang); upgrades (501); drain; config errors.

Run: SLUICE_BIN=build/asan/sluice /usr/bin/python3 tests/integration/test_http2_upstream.py
"""

import hashlib
import json
import math
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
import http_util as hu  # noqa: E402
from http_backend import HttpBackend, pattern_bytes, pattern_sha256  # noqa: E402

try:
    import h2_frames
    from h2_backend import H2Backend
except ImportError:  # not /usr/bin/python3: every case says so
    h2_frames = None
    H2Backend = None

NGHTTPD = shutil.which("nghttpd") or "/usr/sbin/nghttpd"
VARIABLE = ("x-request-id", "traceparent")  # values sluice makes up per request


def need_modules():
    if H2Backend is None:
        raise harness.Skip("python3-h2 is missing (run with /usr/bin/python3)")


def tmp_dir():
    d = tempfile.mkdtemp(prefix="sluice-h2up-")
    harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def h2_cluster(name, endpoints, **kw):
    kw.setdefault("protocol", "http2")
    return hu.cluster(name, endpoints, **kw)


def start(backends, workers=1, access_log=None, route=None, cluster_kw=None, listener_kw=None):
    """sluice with one listener `web` (HTTP/1.1, and HTTP/2 by prior knowledge) routing / to
    cluster `app` (protocol http2) over `backends`, and an admin listener (sl.admin_port)."""
    need_modules()
    lst = h2_frames.h2_listener(access_log=access_log, route=route, **(listener_kw or {}))
    clusters = [h2_cluster("app", backends, **(cluster_kw or {}))]
    cfg = {"workers": workers, "log_level": "debug", "drain_timeout": "5s", "admin": {"address": "127.0.0.1:0"},
           "listeners": [lst], "clusters": clusters}
    sl = harness.Sluice(harness.to_yaml(hu._quote(cfg)) + "\n")
    line = sl.wait_log(h2_frames.ADMIN_RE, 5)
    if not line:
        raise harness.CheckFailed_with("no 'admin listening on 127.0.0.1:PORT' line", sl.stderr_text())
    sl.admin_port = int(h2_frames.ADMIN_RE.search(line).group(1))
    return sl


def metrics(sl, prefix):
    """{(name, frozenset(labels)): value} of the samples whose name starts with prefix."""
    r = hu.request_once(sl.admin_port, "GET", "/metrics", host="admin", timeout=5)
    out = {}
    for line in r.body.decode("utf-8", "replace").splitlines():
        m = h2_frames.METRIC_RE.match(line)
        if m and m.group(1).startswith(prefix):
            out[(m.group(1), frozenset(h2_frames.LABEL_RE.findall(m.group(2) or "")))] = float(m.group(3))
    return out


def access_log_path():
    return os.path.join(tmp_dir(), "access.log")


def wait_access(path, n, timeout=10):
    harness.wait_until(lambda: len(h2_frames.access_lines(path)) >= n, timeout, 0.02)
    return h2_frames.access_lines(path)


def masked(headers):
    """The header list with the per-request values replaced by '*'."""
    return [[k, "*" if k in VARIABLE else v] for k, v in headers]


def pseudo_then_regular(headers):
    """Splits the received fields: ({pseudo: value}, [regular fields in order]), and whether every
    pseudo-header field came before the regular ones (RFC 9113 section 8.3)."""
    pseudo = {}
    regular = []
    ordered = True
    for k, v in headers:
        if k.startswith(":"):
            if regular:
                ordered = False
            pseudo[k] = v
        else:
            regular.append([k, v])
    return pseudo, regular, ordered


class ParallelClients:
    """`parallel` HTTP/1.1 keep-alive connections to sluice sharing a queue of requests
    (method, path, body). The first request of every connection waits on a barrier, so the
    first `parallel` requests are in flight at once. results: (index, status, body) in order
    of completion; a failed exchange has status 0 and the error as its body."""

    def __init__(self, port, requests, parallel, timeout=30.0):
        self.port = port
        self.q = queue.Queue()
        for i, r in enumerate(requests):
            self.q.put((i,) + tuple(r))
        self.parallel = parallel
        self.timeout = timeout
        self.results = []
        self.lock = threading.Lock()
        self.barrier = threading.Barrier(parallel)

    def _worker(self):
        c = None
        first = True
        while True:
            try:
                i, method, path, body = self.q.get_nowait()
            except queue.Empty:
                break
            if first:
                first = False
                try:
                    self.barrier.wait(10)
                except threading.BrokenBarrierError:
                    pass
            try:
                if c is None:
                    c = hu.Client(self.port, timeout=self.timeout)
                r = c.request(method, path, body=body)
                res = (i, r.status, r.body)
                if r.header("connection") == "close":
                    c.close()
                    c = None
            except Exception as e:  # the exchange failed: record it, start afresh
                res = (i, 0, repr(e).encode())
                if c is not None:
                    c.close()
                c = None
            with self.lock:
                self.results.append(res)
        if first:  # no request for this worker: release the others
            try:
                self.barrier.wait(10)
            except threading.BrokenBarrierError:
                pass
        if c is not None:
            c.close()

    def run(self):
        threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(self.parallel)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + self.timeout * 4
        for t in threads:
            t.join(max(0.1, deadline - time.monotonic()))
        return sorted(self.results)


def failures(results):
    return [(i, s, b[:200]) for i, s, b in results if s != 200]


# --------------------------------------------------------------------------
# cases


def case_http1_request_translated():
    """An HTTP/1.1 POST becomes HTTP/2 exactly: :method, :scheme, :authority (from Host),
    :path with the query, pseudo-header fields first, names lower-cased, the client's
    connection-specific fields (Connection and what it names, Keep-Alive, Proxy-Connection)
    not forwarded, sluice's X-Forwarded-* / X-Request-Id / traceparent added; the response
    reaches the client with its body."""
    need_modules()
    b = H2Backend("h2")
    log = access_log_path()
    sl = start([b], access_log=log)
    port = sl.port("web")
    body = b"hello, upstream"
    r = hu.request_once(port, "POST", "/echo/a?q=1&r=%20x", host="api.example:8443", headers=[
        ("X-One", "1"), ("X-Two", "two words"), ("Connection", "keep-alive, X-Hop"), ("X-Hop", "hop"),
        ("Keep-Alive", "timeout=5"), ("Proxy-Connection", "keep-alive"), ("Content-Type", "text/plain")], body=body)
    check(r.status == 200 and r.header("x-backend") == "h2" and r.header("content-type") == "application/json",
          "the HTTP/1.1 client gets 200 from the h2 backend (x-backend: h2)", r.describe())
    e = r.json()
    pseudo, regular, ordered = pseudo_then_regular(e["headers"])
    want_pseudo = {":method": "POST", ":scheme": "http", ":authority": "api.example:8443",
                   ":path": "/echo/a?q=1&r=%20x"}
    check(pseudo == want_pseudo and ordered,
          "the upstream hears :method POST, :scheme http, :authority api.example:8443 (the Host), "
          ":path /echo/a?q=1&r=%20x, pseudo-header fields first", json.dumps(e["headers"]))
    want_regular = [["x-one", "1"], ["x-two", "two words"], ["content-type", "text/plain"],
                    ["x-forwarded-for", "127.0.0.1"], ["x-forwarded-proto", "http"],
                    ["x-forwarded-host", "api.example:8443"], ["x-request-id", "*"], ["traceparent", "*"],
                    ["content-length", str(len(body))]]
    check(sorted(masked(regular)) == sorted(want_regular),
          "the regular fields exactly (lower-cased; no host, connection, x-hop, keep-alive, proxy-connection)",
          "got  %s\nwant %s" % (json.dumps(masked(regular)), json.dumps(want_regular)))
    check(e["body_len"] == len(body) and e["body_sha256"] == hashlib.sha256(body).hexdigest(),
          "the body arrives whole (length and sha256)", json.dumps(e))
    # a GET: no body, no content-length; the HTTP/1.1 Host without a port becomes :authority as is
    r = hu.request_once(port, "GET", "/echo/get", host="plain.example")
    e = r.json()
    pseudo, regular, _ = pseudo_then_regular(e["headers"])
    check(r.status == 200 and pseudo == {":method": "GET", ":scheme": "http", ":authority": "plain.example",
                                         ":path": "/echo/get"} and
          [k for k, _ in regular] == ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id",
                                      "traceparent"] and e["body_len"] == 0,
          "GET: :authority plain.example, no content-length, no body", json.dumps(e["headers"]))
    # a 20000-byte field and 80 more (HPACK, CONTINUATION frames towards the upstream)
    big = "c" * 20000
    many = [("X-Many-%d" % i, "v%d" % i) for i in range(80)]
    r = hu.request_once(port, "GET", "/echo/big", headers=[("X-Big", big)] + many)
    got = [[k, v] for k, v in (r.json()["headers"] if r.status == 200 else []) if k.startswith("x-")]
    want = [["x-big", big]] + [[k.lower(), v] for k, v in many]
    check(r.status == 200 and got[:81] == want, "a 20000-byte field and 80 more reach the upstream exactly, in order",
          r.describe(200))
    # absolute-form: the authority comes from the target, not Host (RFC 9112 section 3.2.2)
    r = hu.request_once(port, "GET", "http://abs.example:81/echo/abs?x=1", host="other.example")
    pseudo, _, _ = pseudo_then_regular(r.json()["headers"]) if r.status == 200 else ({}, [], True)
    check(r.status == 200 and pseudo == {":method": "GET", ":scheme": "http", ":authority": "abs.example:81",
                                         ":path": "/echo/abs?x=1"},
          "absolute-form target: :authority abs.example:81 and :path /echo/abs?x=1", r.describe())
    r = hu.request_once(port, "GET", "/echo/10", version="1.0", host=None)
    pseudo, _, _ = pseudo_then_regular(r.json()["headers"]) if r.status == 200 else ({}, [], True)
    check(r.status == 200 and pseudo.get(":path") == "/echo/10", "HTTP/1.0 without Host: 200", r.describe())
    info("HTTP/1.0 without Host: :authority %r" % pseudo.get(":authority"))
    lines = wait_access(log, 5)[:2]
    got = [(x["method"], x["target"], x["status"], x["protocol"], x["cluster"], x["endpoint"], x["attempts"],
            x["flags"]) for x in lines]
    want = [("POST", "/echo/a?q=1&r=%20x", 200, "HTTP/1.1", "app", b.address, 1, []),
            ("GET", "/echo/get", 200, "HTTP/1.1", "app", b.address, 1, [])]
    check(got == want, "the access log: two requests, 200, one attempt each, no flags", json.dumps(lines))
    st = b.stats()
    check(st["accepted"] == 1 and st["streams"] == 5, "all five went over one upstream connection", repr(st))
    hu.stop_and_check(sl)


def case_http2_request_translated():
    """An HTTP/2 client's request (curl --http2-prior-knowledge) reaches the h2 upstream with its
    :authority and :path, cookie crumbs joined (RFC 9113 section 8.2.3)."""
    need_modules()
    b = H2Backend("h2")
    sl = start([b])
    port = sl.port("web")
    p = hu.curl(["--http2-prior-knowledge", "-w", "\n%{http_version} %{response_code}", "-H", "cookie: a=1",
                 "-H", "cookie: b=2", "-H", "X-Mixed-Case: V", "http://127.0.0.1:%d/echo/h2?x=y" % port])
    body, _, tail = p.stdout.decode().rpartition("\n")
    check(p.returncode == 0 and tail == "2 200", "curl --http2-prior-knowledge: HTTP/2 200", repr(tail) + p.stderr)
    e = json.loads(body)
    pseudo, regular, ordered = pseudo_then_regular(e["headers"])
    check(pseudo == {":method": "GET", ":scheme": "http", ":authority": "127.0.0.1:%d" % port,
                     ":path": "/echo/h2?x=y"} and ordered,
          "the upstream hears :authority 127.0.0.1:%d and :path /echo/h2?x=y" % port, json.dumps(e["headers"]))
    d = {}
    for k, v in regular:
        d.setdefault(k, []).append(v)
    check(d.get("x-mixed-case") == ["V"] and d.get("user-agent", [""])[0].startswith("curl/") and
          ["; ".join(d.get("cookie", []))] == ["a=1; b=2"] and "host" not in d,
          "x-mixed-case: V, curl's user-agent, cookies a=1; b=2, no host field", json.dumps(regular))
    hu.stop_and_check(sl)


def case_bodies_whole():
    """A 5 MiB response to HTTP/1.1 (curl) and HTTP/2 (curl --http2-prior-knowledge) clients, a
    5 MiB upload with content-length and a 300 KB chunked upload with a trailer: all whole."""
    need_modules()
    b = H2Backend("h2")
    sl = start([b])
    port = sl.port("web")
    d = tmp_dir()
    n = 5 * 1024 * 1024
    for args, what in ((["--http1.1"], "HTTP/1.1"), (["--http2-prior-knowledge"], "HTTP/2")):
        out = os.path.join(d, "down")
        p = hu.curl(args + ["-o", out, "-w", "%{response_code} %{size_download}",
                            "http://127.0.0.1:%d/bytes/%d" % (port, n)], timeout=120)
        check(p.returncode == 0 and p.stdout.decode() == "200 %d" % n and hu.sha256_file(out) == pattern_sha256(n),
              "a 5 MiB response reaches an %s client whole (sha256)" % what, p.stdout.decode() + p.stderr)
    up = os.path.join(d, "up")
    blob = pattern_bytes(n)
    with open(up, "wb") as f:
        f.write(blob)
    p = hu.curl(["--http1.1", "--data-binary", "@" + up, "-H", "Content-Type: application/octet-stream",
                 "http://127.0.0.1:%d/echo/up" % port], timeout=120)
    e = json.loads(p.stdout or b"{}")
    lens = [v for k, v in e.get("headers", []) if k == "content-length"]
    check(e.get("body_len") == n and e.get("body_sha256") == pattern_sha256(n) and lens == [str(n)],
          "a 5 MiB upload with content-length arrives whole, content-length %d upstream" % n,
          json.dumps(e)[:2000] + p.stderr)
    blob = pattern_bytes(300000)
    c = hu.Client(port, timeout=30)
    c.send(hu.build_request("POST", "/echo/chunked", headers=[("Transfer-Encoding", "chunked")]) +
           hu.chunked(blob, 7000)[:-2] + b"X-Checksum: abc123\r\n\r\n")
    r = c.read_response("POST")
    c.close()
    e = r.json() if r.status == 200 else {}
    names = [k for k, _ in e.get("headers", [])]
    check(r.status == 200 and e["body_len"] == 300000 and e["body_sha256"] == pattern_sha256(300000) and
          "transfer-encoding" not in names,
          "a 300 KB chunked upload arrives whole, without transfer-encoding", r.describe())
    check(e["trailers"] == [["x-checksum", "abc123"]], "its trailer reaches the upstream as HTTP/2 trailers",
          json.dumps(e.get("trailers")))
    hu.stop_and_check(sl)


def case_response_trailers():
    """Trailers from the upstream (after 100000 body bytes) reach an HTTP/1.1 client as a chunked
    body's trailer section and an HTTP/2 client as a trailing HEADERS frame."""
    need_modules()
    b = H2Backend("h2")
    sl = start([b])
    port = sl.port("web")
    want = [("x-checksum", pattern_sha256(100000)), ("x-trailer", "end")]
    c = hu.Client(port, timeout=15)
    r = c.request("GET", "/trailers/100000", headers=[("TE", "trailers")])
    c.close()
    check(r.status == 200 and r.framing == "chunked" and r.body == pattern_bytes(100000),
          "HTTP/1.1: 200, chunked, the 100000 bytes", r.describe())
    check(r.trailers == ["%s: %s" % kv for kv in want], "HTTP/1.1: the trailer section is exactly %r" % want,
          repr(r.trailers))
    h = h2_frames.H2Client(port)
    h.handshake()
    sid = h.request("GET", "/trailers/100000", headers=[("te", "trailers")])
    resp = h.response(sid, 15)
    check(resp is not None and resp.status == 200 and bytes(resp.body) == pattern_bytes(100000) and resp.ended,
          "HTTP/2: 200 and the 100000 bytes", resp.describe() if resp else h.transcript())
    check(resp.trailers == list(want), "HTTP/2: the trailers are exactly %r" % want, repr(resp.trailers))
    # trailers after an empty body: HEADERS, then HEADERS with END_STREAM
    want0 = [("x-checksum", pattern_sha256(0)), ("x-trailer", "end")]
    sid = h.request("GET", "/trailers/0", headers=[("te", "trailers")])
    resp = h.response(sid, 15)
    check(resp is not None and resp.status == 200 and bytes(resp.body) == b"" and resp.trailers == want0,
          "HTTP/2: an empty body with trailers: 200, no bytes, the trailers", resp.describe() if resp else "")
    h.close()
    c = hu.Client(port, timeout=15)
    r = c.request("GET", "/trailers/0", headers=[("TE", "trailers")])
    c.close()
    check(r.status == 200 and r.framing == "chunked" and r.body == b"" and
          r.trailers == ["%s: %s" % kv for kv in want0],
          "HTTP/1.1: an empty body with trailers: chunked, no bytes, the trailer section",
          r.describe() + repr(r.trailers))
    hu.stop_and_check(sl)


def concurrency_case(max_streams, expect_connections):
    b = H2Backend("h2", max_concurrent_streams=max_streams)
    log = access_log_path()
    sl = start([b], access_log=log)
    port = sl.port("web")
    # the first 50 are held 1 s by the backend, so all 50 are open upstream at once
    reqs = [("GET", "/delay/1000" if i < 50 else "/echo/%d" % i, None) for i in range(200)]
    results = ParallelClients(port, reqs, 50).run()
    check(len(results) == 200 and not failures(results), "200 requests, 50 at a time: all 200",
          repr(failures(results)[:10]))
    st = b.wait_for(lambda s: s["answered"] == 200, 5)
    info("backend: %s" % json.dumps({k: st[k] for k in ("accepted", "streams", "answered", "over_limit",
                                                         "over_limit_after_ack", "conn_max_open")}))
    check(st["accepted"] == expect_connections,
          "max_concurrent_streams %d: exactly %d upstream connection(s) = ceil(50/%d)" % (
              max_streams, expect_connections, max_streams), json.dumps(st["conn_streams"]))
    check(st["over_limit_after_ack"] == 0 and all(v <= max_streams for v in st["conn_max_open"].values()),
          "no connection carried more than %d streams at once" % max_streams, json.dumps(st["conn_max_open"]))
    if max_streams >= 50:
        check(list(st["conn_max_open"].values()) == [50], "the one connection had all 50 streams open at once",
              json.dumps(st["conn_max_open"]))
    else:
        check(sorted(st["conn_max_open"].values()) == [max_streams] * expect_connections,
              "each connection had exactly %d streams open at its busiest" % max_streams,
              json.dumps(st["conn_max_open"]))
    lines = wait_access(log, 200)
    check(len(lines) == 200 and all(x["status"] == 200 for x in lines), "200 access-log lines, all 200",
          repr([(x["status"], x["flags"]) for x in lines if x["status"] != 200][:10]))
    hu.stop_and_check(sl)


def case_multiplexed_one_connection():
    """max_concurrent_streams 100 (one worker): 200 requests from 50 HTTP/1.1 connections at once
    use exactly one upstream connection, with all 50 streams open on it together."""
    need_modules()
    concurrency_case(100, 1)


def case_multiplexed_limit_ten():
    """max_concurrent_streams 10: the same load needs exactly ceil(50/10) = 5 connections, none
    over its limit (a new connection only when the others are full)."""
    need_modules()
    concurrency_case(10, int(math.ceil(50 / 10)))


def goaway_case(goaway_after, last_stream_id, total, parallel, delay_ms):
    b = H2Backend("h2", goaway_after=goaway_after, goaway_last_stream_id=last_stream_id)
    log = access_log_path()
    sl = start([b], access_log=log)
    port = sl.port("web")
    body = b"p" * 2000
    reqs = [("POST" if i % 3 == 0 else "GET", "/delay/%d?i=%d" % (delay_ms, i), body if i % 3 == 0 else None)
            for i in range(total)]
    results = ParallelClients(port, reqs, parallel).run()
    check(len(results) == total and not failures(results),
          "%d requests (a third POST), %d at a time: all 200" % (total, parallel), repr(failures(results)[:10]))
    st = b.wait_for(lambda s: s["answered"] >= total, 5)
    info("backend: %s" % json.dumps({k: st[k] for k in ("accepted", "streams", "answered", "ignored", "goaways")}))
    check(st["answered"] == total and len(b.requests_for()) == total,
          "the backend answered exactly %d streams: none twice" % total, repr(st))
    paths = sorted(r["path"] for r in b.requests_for())
    check(paths == sorted(p for _, p, _ in reqs), "each request reached the backend exactly once", "")
    if last_stream_id is None:
        # the GOAWAY names the K-th stream: every stream above it came later, none was answered
        check(all(v == goaway_after for v in list(st["conn_streams"].values())[:-1]) and st["errors"] == [],
              "every connection but the last answered exactly %d streams before its GOAWAY" % goaway_after,
              json.dumps(st["conn_streams"]))
    else:
        # the first connection had all `parallel` streams open at once (the barrier): those
        # above stream 11 were taken but never answered, so sluice had to send them again
        first = st["conn_streams"].get(1, 0)
        check(first == (last_stream_id + 1) // 2 and st["ignored"] >= parallel - first and st["errors"] == [],
              "the first connection answered exactly %d streams; %d streams were left unanswered in all and "
              "sent again" % ((last_stream_id + 1) // 2, st["ignored"]), json.dumps(st["conn_streams"]))
    bodies_ok = all(r["body_len"] == (2000 if r["method"] == "POST" else 0) and
                    r["body_sha256"] == hashlib.sha256(body if r["method"] == "POST" else b"").hexdigest()
                    for r in b.requests_for())
    check(bodies_ok, "every POST body arrived whole, re-sent ones included")
    lines = wait_access(log, total)
    check(len(lines) == total and all(x["status"] == 200 for x in lines), "%d access-log lines, all 200" % total,
          repr([x for x in lines if x["status"] != 200][:5]))
    info("access-log flags seen: %r" % sorted({f for x in lines for f in x["flags"]}))
    # every stream sluice opened reached the backend: answered, or above a GOAWAY's last id
    resent = sum(1 for x in lines if "refused_stream_resent" in x["flags"])
    m = metrics(sl, "sluice_endpoint_http2_")
    got = (sum(v for k, v in m.items() if k[0] == "sluice_endpoint_http2_goaways_received_total"),
           sum(v for k, v in m.items() if k[0] == "sluice_endpoint_http2_streams_total"))
    want = (st["goaways"], st["streams"] + st["ignored"])
    check(got == want, "endpoint counters: %d GOAWAYs received, %d streams (%d answered + %d unanswered)" % (
        want[0], want[1], st["streams"], st["ignored"]), "%r (requests re-sent: %d)" % (m, resent))
    hu.stop_and_check(sl)


def case_goaway_under_load():
    """The upstream sends GOAWAY (last-stream-id = its 20th stream) after every 20th stream:
    300 requests, 20 at a time, a third POSTs with bodies: zero failures, each answered once."""
    need_modules()
    goaway_case(20, None, 300, 20, 5)


def case_goaway_below_streams_in_flight():
    """GOAWAY after the 10th stream names stream 11 (the 6th) as the last: streams 13-19, already
    sent, were not processed and must be re-sent (any method) on another connection."""
    need_modules()
    goaway_case(10, 11, 120, 12, 300)


def case_refused_stream_post():
    """RST_STREAM REFUSED_STREAM on a POST's first attempt: sluice sends it again (the upstream did
    not process it), the client gets 200, and the access log shows two attempts."""
    need_modules()
    b = H2Backend("h2", refuse_first=1)
    log = access_log_path()
    sl = start([b], access_log=log)
    port = sl.port("web")
    body = b"important payload " * 100
    r = hu.request_once(port, "POST", "/echo/refused", body=body, timeout=15)
    e = r.json() if r.status == 200 else {}
    check(r.status == 200 and e.get("body_sha256") == hashlib.sha256(body).hexdigest(),
          "the client gets 200, and the backend the whole body on the second stream", r.describe())
    st = b.stats()
    check((st["refused"], st["answered"]) == (1, 1), "the backend refused one stream and answered one", repr(st))
    lines = wait_access(log, 1)
    info("access log: %s" % json.dumps(lines))
    check(len(lines) == 1 and lines[0]["status"] == 200 and lines[0].get("attempts") == 2 and
          lines[0].get("flags") == ["refused_stream_resent"],
          "the access log: one line, status 200, attempts 2, flags exactly [refused_stream_resent]",
          json.dumps(lines))
    m = metrics(sl, "sluice_http_retries_total")
    got = {dict(k[1]).get("kind"): v for k, v in m.items()}
    check(got.get("refused_stream") == 1 and got.get("policy", 0) == 0 and got.get("stale_connection", 0) == 0,
          "sluice_http_retries_total: kind refused_stream 1, policy 0, stale_connection 0", repr(m))
    hu.stop_and_check(sl)


def case_upstream_closes_connection():
    """The upstream reads a request and closes its connection without answering: that request
    gets 502 (flag upstream_reset_before_response) and the next ones 200 on a new connection.
    An upstream closing after 1000 bytes of a 1 MiB response: the HTTP/1.1 client has the 200
    head and the 1000 bytes, then its connection closes (no hang)."""
    need_modules()
    b = H2Backend("h2")
    log = access_log_path()
    sl = start([b], access_log=log)
    port = sl.port("web")
    t0 = time.monotonic()
    r = hu.request_once(port, "GET", "/drop", timeout=15)
    took = time.monotonic() - t0
    check(r.status == 502 and took < 5, "the dropped request: 502 after %.2fs" % took, r.describe())
    statuses = [hu.request_once(port, "GET", "/echo/%d" % i).status for i in range(5)]
    check(statuses == [200] * 5, "the next 5 requests: 200", repr(statuses))
    st = b.stats()
    check(st["accepted"] == 2, "a second upstream connection serves them", repr(st))
    lines = wait_access(log, 6)
    first = lines[0] if lines else {}
    info("access log of the 502: %s" % json.dumps(first))
    want = "HTTP/2 stream to upstream %s ended before a response: the upstream closed the connection" % b.address
    check(first.get("status") == 502 and first.get("flags") == ["upstream_reset_before_response"] and
          first.get("detail") == want,
          "the access log: 502, flags exactly [upstream_reset_before_response], detail %r" % want, json.dumps(first))
    check([x["status"] for x in lines[1:]] == [200] * 5, "then five 200s", json.dumps(lines[1:]))
    s = harness.connect(port, timeout=15)
    s.sendall(hu.build_request("GET", "/abort-mid-body"))
    data, how = harness.recv_until_closed(s, 15)
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    fields = [line.split(b":", 1) for line in head.split(b"\r\n")[1:]]
    cl = [v.strip() for k, v in fields if k.strip().lower() == b"content-length"]
    check(head.startswith(b"HTTP/1.1 200 ") and cl == [b"1048576"] and len(rest) == 1000,
          "truncated response: 200 head, %d of 1048576 body bytes, then the connection ends (%s)" % (len(rest), how),
          repr(head))
    hu.stop_and_check(sl)


def case_nghttpd_static_file():
    """nghttpd (nghttp2's server, cleartext) as the upstream: a 2 MB static file arrives whole
    through sluice to an HTTP/1.1 and an HTTP/2 client; a missing file is nghttpd's 404."""
    need_modules()
    if not os.access(NGHTTPD, os.X_OK):
        raise harness.Skip("nghttpd is not installed")
    d = tmp_dir()
    blob = os.urandom(2 * 1000 * 1000)
    with open(os.path.join(d, "file.bin"), "wb") as f:
        f.write(blob)
    holder, port = harness.free_port_holder()
    holder.close()
    p = subprocess.Popen([NGHTTPD, "--no-tls", "-a", "127.0.0.1", "-d", d, str(port)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, preexec_fn=harness.die_with_parent)
    harness.register_cleanup(lambda: (p.kill(), p.wait()))
    check(harness.wait_until(lambda: not harness.is_refused(port), 10, 0.05), "nghttpd listens on %d" % port)
    sl = start(["127.0.0.1:%d" % port])
    sport = sl.port("web")
    out = os.path.join(tmp_dir(), "got")
    want = hashlib.sha256(blob).hexdigest()
    for args, what in ((["--http1.1"], "HTTP/1.1"), (["--http2-prior-knowledge"], "HTTP/2")):
        q = hu.curl(args + ["-o", out, "-w", "%{response_code} %{size_download}",
                            "http://127.0.0.1:%d/file.bin" % sport])
        check(q.returncode == 0 and q.stdout.decode() == "200 %d" % len(blob) and hu.sha256_file(out) == want,
              "%s client: 200 and the file whole (sha256)" % what, q.stdout.decode() + q.stderr)
    r = hu.request_once(sport, "GET", "/missing")
    check(r.status == 404, "a missing file: nghttpd's 404", r.describe())
    hu.stop_and_check(sl)


def case_http1_only_endpoint():
    """`protocol: http2` in front of an HTTP/1.1-only server: the server answers the preface with
    an HTTP/1.1 error; the request gets 502 promptly, with the reason in the access log."""
    need_modules()
    b = HttpBackend("h1")
    log = access_log_path()
    sl = start([b], access_log=log)
    t0 = time.monotonic()
    try:
        r = hu.request_once(sl.port("web"), "GET", "/echo", timeout=20)
        status, body = r.status, r.body
        desc = r.describe()
    except Exception as e:
        status, body, desc = None, None, repr(e)
    took = time.monotonic() - t0
    check(status == 502 and took < 5 and body == b"upstream connect error\n",
          "502 'upstream connect error' after %.2fs (not a hang)" % took, desc)
    lines = wait_access(log, 1)
    e = lines[0] if lines else {}
    info("access log: %s" % json.dumps(e))
    want = "upstream %s did not open an HTTP/2 connection: the upstream answered in HTTP/1, not HTTP/2" % (
        b.address)
    check(e.get("status") == 502 and e.get("detail") == want, "the access log: 502, detail %r" % want, json.dumps(e))
    hu.stop_and_check(sl)


def case_client_settings():
    """What sluice announces to the upstream: by default SETTINGS ENABLE_PUSH 0,
    INITIAL_WINDOW_SIZE 1 MiB, MAX_FRAME_SIZE 16 KiB, MAX_HEADER_LIST_SIZE 64 KiB,
    NO_RFC7540_PRIORITIES 1 and a 4 MiB connection window; the cluster's http2 block changes
    them (256 KiB, 2 MiB, 32 KiB frames, 16 KiB header lists); a response whose fields pass
    max_header_list_size is a 502, not a crash, and the next request is served."""
    need_modules()
    want_default = {0x2: 0, 0x4: 1 << 20, 0x5: 16384, 0x6: 65536, 0x9: 1}
    want_custom = {0x2: 0, 0x4: 256 * 1024, 0x5: 32768, 0x6: 16384, 0x9: 1}
    block = {"initial_stream_window": "256KiB", "initial_connection_window": "2MiB", "max_frame_size": "32KiB",
             "max_header_list_size": "16KiB"}
    for kw, want, conn_window, what in ((None, want_default, 4 << 20, "defaults"),
                                        ({"http2": block}, want_custom, 2 << 20, "the http2 block")):
        b = H2Backend("h2")
        sl = start([b], cluster_kw=kw)
        r = hu.request_once(sl.port("web"), "GET", "/echo/s")
        st = b.stats()
        got = (r.status, st["peer_settings"].get(1), st["peer_conn_window"].get(1))
        check(got == (200, want, conn_window), "%s: SETTINGS %r and a connection window of %d" % (
            what, want, conn_window), repr(got))
        if kw:
            n = 20000
            r = hu.request_once(sl.port("web"), "GET", "/big-header/%d" % n, timeout=15)
            check(r.status == 502, "a response field of %d bytes past max_header_list_size 16KiB: 502" % n,
                  r.describe())
            r = hu.request_once(sl.port("web"), "GET", "/big-header/1000")
            check(r.status == 200 and r.header("x-big") == "b" * 1000, "a 1000-byte field passes: 200",
                  r.describe())
        hu.stop_and_check(sl)
        b.stop()


def case_auto_on_cleartext_is_http1():
    """`protocol: auto` on a cleartext endpoint speaks HTTP/1.1 (no ALPN to ask): an HTTP/1.1
    backend answers as usual."""
    need_modules()
    b = HttpBackend("h1")
    sl = start([b], cluster_kw={"protocol": "auto"})
    r = hu.request_once(sl.port("web"), "GET", "/echo")
    check(r.status == 200 and r.json()["version"] == "HTTP/1.1", "200, and the backend heard HTTP/1.1",
          r.describe())
    hu.stop_and_check(sl)


def case_stream_reset_by_upstream():
    """The upstream resets one stream (RST_STREAM INTERNAL_ERROR) while three others are in flight
    on the same (already used) connection: that request gets 502 after one attempt, the three get
    200, the connection serves on. The GET is not re-sent: the default retry_on does not name resets, and
    the connection is not stale (it answers the others); only REFUSED_STREAM and streams above a
    GOAWAY's last id are known not to have been processed (RFC 9113 section 8.7)."""
    need_modules()
    b = H2Backend("h2")
    log = access_log_path()
    sl = start([b], access_log=log)
    port = sl.port("web")
    # the upstream connection is open before: every stream below reuses it
    check(hu.request_once(port, "GET", "/echo/warm").status == 200, "a first request opens the connection: 200")
    results = ParallelClients(port, [("GET", "/delay/800?i=%d" % i, None) for i in range(3)] +
                              [("GET", "/rst/2", None)], 4).run()
    got = [(i, s) for i, s, _ in results]
    check(got == [(0, 200), (1, 200), (2, 200), (3, 502)], "the reset request: 502; the three others: 200",
          repr(results))
    r = hu.request_once(port, "GET", "/echo/after")
    st = b.stats()
    check(r.status == 200 and st["accepted"] == 1, "the next request: 200, still on the one upstream connection",
          repr(st))
    lines = wait_access(log, 6)
    rst = [x for x in lines if x["target"] == "/rst/2"]
    want = "HTTP/2 stream to upstream %s ended before a response: INTERNAL_ERROR" % b.address
    check(len(rst) == 1 and rst[0]["status"] == 502 and rst[0].get("detail") == want,
          "the access log: 502, detail %r" % want, json.dumps(rst))
    check(rst[0]["flags"] == ["upstream_reset_before_response"] and rst[0]["attempts"] == 1,
          "flags exactly [upstream_reset_before_response], 1 attempt (not re-sent)", json.dumps(rst))
    hu.stop_and_check(sl)


def case_http2_client_reset_cancels_upstream_stream():
    """An HTTP/2 client resets its stream while the upstream holds the request: sluice resets the
    upstream stream with CANCEL and keeps the upstream connection (the client's next request is
    served on it)."""
    need_modules()
    b = H2Backend("h2")
    sl = start([b])
    c = h2_frames.H2Client(sl.port("web"))
    c.handshake()
    sid = c.request("GET", "/delay/5000")
    check(b.wait_for(lambda s: s["streams"] == 1, 5)["streams"] == 1, "the HTTP/2 request reached the upstream")
    c.send(h2_frames.rst_stream_frame(sid, h2_frames.CANCEL))
    st = b.wait_for(lambda s: len(s["client_resets"]) == 1, 5)
    check(st["client_resets"] == [(1, 1, h2_frames.CANCEL)], "upstream stream 1 reset with CANCEL",
          repr(st["client_resets"]))
    sid = c.request("GET", "/echo/after")
    r = c.response(sid, 5)
    st = b.stats()
    check(r is not None and r.status == 200 and st["accepted"] == 1 and st["closed"] == 0,
          "the client's next request: 200, on the same upstream connection", repr(st))
    # mid-body: 64 MiB asked for, the stream reset after the first bytes arrived
    sid = c.request("GET", "/bytes/%d" % (64 << 20))
    c.wait(lambda f: f.type == h2_frames.DATA and f.stream_id == sid, 10)
    c.send(h2_frames.rst_stream_frame(sid, h2_frames.CANCEL))
    st = b.wait_for(lambda s: len(s["client_resets"]) == 2, 5)
    check(st["client_resets"] == [(1, 1, h2_frames.CANCEL), (1, 5, h2_frames.CANCEL)] and st["answered"] == 1,
          "reset while the body flows: upstream stream 5 reset with CANCEL, its response never completed",
          repr(st["client_resets"]))
    sid = c.request("GET", "/echo/after2")
    r = c.response(sid, 5)
    st = b.stats()
    check(r is not None and r.status == 200 and st["accepted"] == 1 and st["closed"] == 0,
          "the next request: 200, on the same upstream connection", repr(st))
    c.close()
    hu.stop_and_check(sl)


def case_http1_client_gone_cancels_upstream_stream():
    """An HTTP/1.1 client resetting its connection while the upstream holds its request: the
    upstream stream is reset with CANCEL within 3 s (the upstream stops working for nobody, and
    the stream's slot under max_concurrent_streams is given back); the connection stays. (A
    client that only half-closes after a whole request still gets its answer: HTTP/1.1 cannot
    tell that from leaving, so only a reset cancels.)"""
    need_modules()
    b = H2Backend("h2")
    sl = start([b])
    port = sl.port("web")
    h1 = hu.Client(port)
    h1.send(hu.build_request("GET", "/delay/6000"))
    check(b.wait_for(lambda s: s["streams"] == 1, 5)["streams"] == 1, "the HTTP/1.1 request reached the upstream")
    h1.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h1.close()  # with SO_LINGER 0: an RST
    st = b.wait_for(lambda s: len(s["client_resets"]) == 1, 3)
    check(st["client_resets"] == [(1, 1, h2_frames.CANCEL)], "upstream stream 1 reset with CANCEL",
          repr(st["client_resets"]))
    r = hu.request_once(port, "GET", "/echo/after")
    check(r.status == 200 and b.stats()["accepted"] == 1, "the next request: 200 on the same upstream connection",
          repr(b.stats()))
    hu.stop_and_check(sl)


def case_slow_client_holds_only_its_stream():
    """A client that does not read its 32 MiB response holds back its own stream only: meanwhile
    20 requests of 100 KB on the same upstream connection complete; then the slow client reads
    its response whole."""
    need_modules()
    b = H2Backend("h2")
    sl = start([b])
    port = sl.port("web")
    n = 32 << 20
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    slow.settimeout(30)
    slow.connect(("127.0.0.1", port))
    harness.register_cleanup(slow.close)
    slow.sendall(hu.build_request("GET", "/bytes/%d" % n))
    check(b.wait_for(lambda s: s["streams"] == 1, 5)["streams"] == 1, "the slow client's request reached the upstream")
    t0 = time.monotonic()
    statuses = []
    c = hu.Client(port, timeout=10)
    for i in range(20):
        r = c.request("GET", "/bytes/100000?i=%d" % i)
        statuses.append((r.status, len(r.body)))
    c.close()
    took = time.monotonic() - t0
    st = b.stats()
    check(statuses == [(200, 100000)] * 20 and took < 10 and st["accepted"] == 1,
          "20 requests of 100 KB complete in %.2fs on the same upstream connection" % took,
          "%r %r" % (statuses[-3:], st))
    h = hashlib.sha256()
    got = 0
    head = b""
    deadline = time.monotonic() + 60
    while b"\r\n\r\n" not in head and time.monotonic() < deadline:
        head += slow.recv(65536)
    head, _, rest = head.partition(b"\r\n\r\n")
    h.update(rest)
    got = len(rest)
    while got < n and time.monotonic() < deadline:
        d = slow.recv(1 << 20)
        if not d:
            break
        h.update(d)
        got += len(d)
    slow.close()
    check(head.startswith(b"HTTP/1.1 200 ") and got == n and h.hexdigest() == pattern_sha256(n),
          "the slow client then reads its 32 MiB whole (sha256)", "%r %d" % (head[:100], got))
    hu.stop_and_check(sl)


def case_upgrade_to_http2_cluster():
    """A WebSocket upgrade routed to an http2 cluster is answered 501 (sluice does not speak
    extended CONNECT to upstreams); nothing reaches the upstream."""
    need_modules()
    b = H2Backend("h2")
    sl = start([b])
    r = hu.request_once(sl.port("web"), "GET", "/ws", headers=[
        ("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")])
    check(r.status == 501 and b.stats()["accepted"] == 0, "501, and no connection to the upstream",
          r.describe() + repr(b.stats()))
    hu.stop_and_check(sl)


def case_http2_client_request_trailers():
    """An HTTP/2 client's request body and trailers reach the h2 upstream as DATA and a trailing
    HEADERS: the echo has the body's sha256 and the trailer."""
    need_modules()
    b = H2Backend("h2")
    sl = start([b])
    c = h2_frames.H2Client(sl.port("web"))
    c.handshake()
    body = pattern_bytes(200000)
    sid = c.request("POST", "/echo/trailers", headers=[("content-type", "application/octet-stream")],
                    end_stream=False)
    sent = c.send_body(sid, body, end_stream=False)
    c.send(h2_frames.headers_frames(sid, c.encoder.encode([("x-req-checksum", "abc")]), end_stream=True))
    r = c.response(sid, 15)
    e = r.json() if r is not None and r.status == 200 else {}
    check(sent == len(body) and e.get("body_len") == len(body) and e.get("body_sha256") == pattern_sha256(len(body)),
          "the 200000-byte body arrives whole", r.describe() if r else c.transcript())
    check(e.get("trailers") == [["x-req-checksum", "abc"]], "the trailer arrives as x-req-checksum: abc",
          json.dumps(e.get("trailers")))
    c.close()
    hu.stop_and_check(sl)


def case_pool_limits_with_streams():
    """pool.max_connections 2 with max_concurrent_streams 10: 50 requests at once wait for a
    stream (none fails), on exactly 2 connections with at most 10 streams each. With
    max_connections 1, max_concurrent_streams 1 and pending_timeout 300ms, a request waiting
    behind a 2 s one gets 503 (flag pool_timeout) after about 300 ms."""
    need_modules()
    b = H2Backend("h2", max_concurrent_streams=10)
    sl = start([b], cluster_kw={"pool": {"max_connections": 2}})
    results = ParallelClients(sl.port("web"), [("GET", "/delay/300?i=%d" % i, None) for i in range(50)], 50).run()
    st = b.stats()
    check(len(results) == 50 and not failures(results), "50 requests at once, 2 connections of 10 streams: all 200",
          repr(failures(results)[:5]))
    check(st["accepted"] == 2 and st["over_limit_after_ack"] == 0 and
          all(v <= 10 for v in st["conn_max_open"].values()),
          "exactly 2 upstream connections, never more than 10 streams open on one",
          json.dumps({k: st[k] for k in ("accepted", "conn_max_open", "over_limit", "over_limit_after_ack")}))
    hu.stop_and_check(sl)
    b.stop()

    b = H2Backend("h2", max_concurrent_streams=1)
    log = access_log_path()
    sl = start([b], access_log=log, cluster_kw={"pool": {"max_connections": 1, "pending_timeout": "300ms"}})
    port = sl.port("web")
    first = hu.Client(port, timeout=10)
    first.send(hu.build_request("GET", "/delay/2000"))
    check(b.wait_for(lambda s: s["streams"] == 1, 5)["streams"] == 1, "the 2 s request holds the only stream")
    t0 = time.monotonic()
    r = hu.request_once(port, "GET", "/echo/queued")
    took = time.monotonic() - t0
    check(r.status == 503 and 0.25 < took < 2, "the queued request: 503 after %.2fs" % took, r.describe())
    r1 = first.read_response()
    first.close()
    check(r1.status == 200, "the 2 s request: 200", r1.describe())
    lines = wait_access(log, 2)
    q = [x for x in lines if x["target"] == "/echo/queued"]
    check(len(q) == 1 and q[0]["flags"] == ["pool_timeout"], "the access log: flags exactly [pool_timeout]",
          json.dumps(q))
    hu.stop_and_check(sl)


def case_pool_idle_timeout_and_lifetime():
    """pool.idle_timeout 300ms: a connection without streams is closed (after a GOAWAY). pool.max_lifetime
    700ms: the connection drains (GOAWAY from sluice) and its 1.5 s stream still completes; the next
    request opens a new connection. max_requests_per_connection does not apply to HTTP/2
    connections: 10 requests with a limit of 2 use one connection."""
    need_modules()
    b = H2Backend("h2")
    sl = start([b], cluster_kw={"pool": {"idle_timeout": "300ms", "max_requests_per_connection": 2}})
    port = sl.port("web")
    statuses = [hu.request_once(port, "GET", "/echo/%d" % i).status for i in range(10)]
    check(statuses == [200] * 10 and b.stats()["accepted"] == 1,
          "10 requests, max_requests_per_connection 2: one upstream connection", repr(b.stats()))
    st = b.wait_for(lambda s: s["closed"] == 1, 5)
    check(st["closed"] == 1, "idle for 300ms: sluice closed the connection", repr(st))
    info("GOAWAYs from sluice before the idle close: %r" % st["client_goaways"])
    hu.stop_and_check(sl)
    b.stop()

    b = H2Backend("h2")
    sl = start([b], cluster_kw={"pool": {"max_lifetime": "700ms"}})
    port = sl.port("web")
    t0 = time.monotonic()
    r = hu.request_once(port, "GET", "/delay/1500", timeout=10)
    took = time.monotonic() - t0
    st = b.stats()
    check(r.status == 200 and took > 1.4, "a 1.5 s request on a connection of 700ms lifetime: 200", r.describe())
    check(len(st["client_goaways"]) == 1 and st["client_goaways"][0][:2] == (1, 0),
          "sluice sent GOAWAY NO_ERROR on the connection once its lifetime passed", repr(st["client_goaways"]))
    r = hu.request_once(port, "GET", "/echo/next")
    st = b.wait_for(lambda s: s["accepted"] == 2, 5)
    check(r.status == 200 and st["accepted"] == 2, "the next request: 200 on a new connection", repr(st))
    hu.stop_and_check(sl)


def case_drain_with_streams_in_flight():
    """SIGTERM while two requests are held by the h2 upstream: both complete with 200, then sluice
    exits 0."""
    need_modules()
    b = H2Backend("h2")
    sl = start([b])
    port = sl.port("web")
    cs = [hu.Client(port, timeout=10) for _ in range(2)]
    for c in cs:
        c.send(hu.build_request("GET", "/delay/1000"))
    check(b.wait_for(lambda s: s["streams"] == 2, 5)["streams"] == 2, "both requests reached the upstream")
    sl.signal(signal.SIGTERM)
    rs = [c.read_response() for c in cs]
    for c in cs:
        c.close()
    check([r.status for r in rs] == [200, 200], "both complete with 200 during the drain", repr(rs))
    rc = sl.wait_exit(10)
    harness.check_clean_exit(sl, rc)


def case_bodiless_responses():
    """Responses without a body from the h2 upstream (HEAD with a content-length, 204, 304) reach
    an HTTP/1.1 client framed without a body, and its connection serves the next request."""
    need_modules()
    b = H2Backend("h2")
    sl = start([b])
    c = hu.Client(sl.port("web"), timeout=10)
    r = c.request("HEAD", "/bytes/5000")
    check(r.status == 200 and r.header("content-length") == "5000" and r.body == b"",
          "HEAD: 200, content-length 5000, no body", r.describe())
    r = c.request("GET", "/status/204")
    check(r.status == 204 and r.body == b"" and r.header("content-length") is None and
          r.header("transfer-encoding") is None, "204: no body, no content-length or transfer-encoding", r.describe())
    r = c.request("GET", "/status/304")
    check(r.status == 304 and r.body == b"", "304: no body", r.describe())
    r = c.request("GET", "/bytes/3000")
    check(r.status == 200 and r.body == pattern_bytes(3000), "then a GET on the same connection: 3000 bytes",
          r.describe())
    c.close()
    hu.stop_and_check(sl)


def case_goaway_last_stream_zero_then_close():
    """The first upstream connection, after its 5th stream, sends GOAWAY with last-stream-id 0 and
    closes at once: none of its streams was processed, so every request on it is sent again on
    a new connection (POSTs too); no request fails, each reaches the backend exactly once."""
    need_modules()
    b = H2Backend("h2", goaway_after=5, goaway_last_stream_id=0, goaway_close=True, goaway_connections=1)
    sl = start([b])
    body = b"q" * 3000
    reqs = [("POST" if i % 3 == 0 else "GET", "/delay/200?i=%d" % i, body if i % 3 == 0 else None)
            for i in range(40)]
    results = ParallelClients(sl.port("web"), reqs, 10).run()
    check(len(results) == 40 and not failures(results), "40 requests, 10 at a time: all 200",
          repr(failures(results)[:5]))
    st = b.wait_for(lambda s: s["answered"] >= 40, 5)
    paths = sorted(r["path"] for r in b.requests_for())
    check(st["conn_streams"].get(1) == 0 and st["answered"] == 40 and paths == sorted(p for _, p, _ in reqs),
          "the first connection answered nothing; 40 answers in all, each request once",
          json.dumps({k: st[k] for k in ("accepted", "conn_streams", "answered", "ignored")}))
    hu.stop_and_check(sl)


def case_early_response_before_body():
    """The upstream answers 413 as soon as a POST's HEADERS arrive, then RST_STREAM NO_ERROR (stop
    sending, RFC 9113 section 8.1), while the client is still uploading 4 MiB: an HTTP/1.1 and an
    HTTP/2 client get the 413 and its body; the upstream connection serves on."""
    need_modules()
    b = H2Backend("h2")
    log = access_log_path()
    sl = start([b], access_log=log)
    port = sl.port("web")
    n = 4 << 20
    c = hu.Client(port, timeout=10)
    c.send(hu.build_request("POST", "/early/413", headers=[("Content-Length", str(n))]))

    def upload():
        try:
            c.sock.sendall(pattern_bytes(n))
        except OSError:
            pass
    t = threading.Thread(target=upload, daemon=True)
    t.start()
    try:
        r = c.read_response("POST")
        got, desc = (r.status, r.body), r.describe()
    except Exception as e:
        got, desc = None, repr(e)
    c.close()
    t.join(10)
    check(got == (413, b"early"), "HTTP/1.1 client: 413 with the body 'early'", desc)
    h = h2_frames.H2Client(port)
    h.handshake()
    sid = h.request("POST", "/early/413", headers=[("content-length", str(n))], end_stream=False)
    h.send_body(sid, pattern_bytes(100000), end_stream=False, timeout=3)
    resp = h.response(sid, 10)
    check(resp is not None and resp.status == 413 and bytes(resp.body) == b"early" and resp.ended,
          "HTTP/2 client: 413 with the body 'early', END_STREAM", resp.describe() if resp else h.transcript())
    h.close()
    r = hu.request_once(port, "GET", "/echo/after")
    st = b.stats()
    check(r.status == 200 and st["accepted"] == 1 and st["closed"] == 0,
          "the next request: 200 on the same upstream connection", repr(st))
    lines = wait_access(log, 3)
    info("access log: %r" % [(x["target"], x["status"], x["flags"]) for x in lines])
    hu.stop_and_check(sl)


def case_h2load_end_to_end():
    """h2load (4 connections x 50 concurrent streams, 2000 requests) through sluice to the h2
    backend, which announces max_concurrent_streams 100: all 2000 succeed, each answered once, on
    at most ceil(200/100) = 2 upstream connections, none over its limit after the SETTINGS."""
    need_modules()
    h2load = shutil.which("h2load") or "/usr/bin/h2load"
    if not os.access(h2load, os.X_OK):
        raise harness.Skip("h2load is not installed")
    b = H2Backend("h2", max_concurrent_streams=100)
    sl = start([b])
    p = subprocess.run([h2load, "-n", "2000", "-c", "4", "-m", "50", "http://127.0.0.1:%d/echo/x" % sl.port("web")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    out = p.stdout.decode()
    rows = [line.strip() for line in out.splitlines() if line.strip().startswith(("requests:", "status codes:"))]
    check(rows == ["requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout",
                   "status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx"], "h2load: 2000 requests, all 2xx", out[-2000:])
    st = b.wait_for(lambda s: s["answered"] >= 2000, 5)
    info("backend: %s" % json.dumps({k: st[k] for k in ("accepted", "streams", "answered", "over_limit",
                                                         "over_limit_after_ack", "conn_max_open")}))
    check(st["answered"] == 2000 and len(b.requests_for()) == 2000 and st["accepted"] <= 2 and
          st["over_limit_after_ack"] == 0, "2000 answers, at most 2 upstream connections, none over its limit",
          repr(st["conn_streams"]))
    hu.stop_and_check(sl)


def case_interim_and_expect():
    """A 103 Early Hints from the h2 upstream reaches an HTTP/1.1 client as an interim response and
    an HTTP/2 client as an informational HEADERS frame, before the 200. An HTTP/1.1 client sending
    Expect: 100-continue gets 'HTTP/1.1 100 Continue' before it sends the body, which then
    arrives whole upstream."""
    need_modules()
    b = H2Backend("h2")
    sl = start([b])
    port = sl.port("web")
    c = hu.Client(port, timeout=10)
    r = c.request("GET", "/interim/103")
    c.close()
    interim = [(st, [(k.lower(), v) for k, v in hs]) for st, hs in r.interim]
    check(r.status == 200 and interim == [(103, [("link", "</style.css>; rel=preload")])],
          "HTTP/1.1: 103 with its link field, then 200", r.describe() + repr(r.interim))
    h = h2_frames.H2Client(port)
    h.handshake()
    sid = h.request("GET", "/interim/103")
    resp = h.response(sid, 10)
    check(resp is not None and resp.status == 200 and
          resp.interim == [[(":status", "103"), ("link", "</style.css>; rel=preload")]],
          "HTTP/2: an informational HEADERS 103 with its link field, then 200",
          (resp.describe() + repr(resp.interim)) if resp else h.transcript())
    h.close()
    c = hu.Client(port, timeout=10)
    c.send(b"PUT /echo/expect HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
    c.reader.deadline = time.monotonic() + 5
    try:
        line = c.reader.read_until(b"\r\n\r\n", 4096)
    except Exception as e:  # timeout or close
        line = repr(e).encode()
    c.reader.deadline = None
    check(line == b"HTTP/1.1 100 Continue\r\n\r\n", "Expect: 100-continue: 'HTTP/1.1 100 Continue' before the body",
          repr(line))
    c.send(b"x" * 5000)
    r = c.read_response()
    c.close()
    e = r.json() if r.status == 200 else {}
    check(r.status == 200 and e.get("body_len") == 5000 and not r.interim, "then 200; the upstream got 5000 bytes",
          r.describe())
    info("fields the upstream heard: %s" % json.dumps([k for k, _ in e.get("headers", [])]))
    hu.stop_and_check(sl)


def case_dead_endpoint_skipped():
    """Two endpoints, one refusing connections: every request reaches the live h2 endpoint (the
    failed connect is retried on the other endpoint, retry_on's default connect-failure)."""
    need_modules()
    b = H2Backend("h2")
    _, dead = harness.free_port_holder()
    sl = start(["127.0.0.1:%d" % dead, b])
    statuses = [hu.request_once(sl.port("web"), "GET", "/echo/%d" % i).status for i in range(10)]
    check(statuses == [200] * 10 and b.stats()["answered"] == 10, "10 requests: 200 each, all from the live endpoint",
          repr(statuses) + repr(b.stats()))
    hu.stop_and_check(sl)


def case_small_upstream_windows_and_continuation():
    """The upstream announces a 1000-byte stream window: five 300 KB uploads at once still arrive
    whole (sluice sends within the window and waits for WINDOW_UPDATEs). A 40000-byte response
    field (a header block split into HEADERS and CONTINUATION frames) passes under the default
    max_header_list_size."""
    need_modules()
    b = H2Backend("h2", initial_window=1000)
    sl = start([b])
    port = sl.port("web")
    blob = pattern_bytes(300000)
    results = ParallelClients(port, [("POST", "/echo/up%d" % i, blob) for i in range(5)], 5).run()
    digests = [json.loads(body).get("body_sha256") if st == 200 else st for _, st, body in results]
    check(digests == [pattern_sha256(300000)] * 5 and b.stats()["errors"] == [],
          "five 300 KB uploads through 1000-byte windows: all whole (sha256)",
          repr(digests) + repr(b.stats()["errors"]))
    r = hu.request_once(port, "GET", "/big-header/40000")
    check(r.status == 200 and r.header("x-big") == "b" * 40000, "a 40000-byte response field: 200, passed whole",
          r.describe(100))
    hu.stop_and_check(sl)


def case_burst_over_a_small_stream_limit():
    """100 requests at once towards an upstream allowing 5 concurrent streams per connection:
    every one gets 200. A server refuses streams over the limit it announced with REFUSED_STREAM
    (RFC 9113 section 5.1.2), also before the client acknowledged the limit (nghttp2 and grpc-go
    do); a request refused that way was not processed and is sent again, so a burst must never
    turn into 502s. Checked against h2_backend (requests held 500 ms) and nghttpd
    --max-concurrent-streams=5 (an 8 MiB file)."""
    need_modules()
    b = H2Backend("h2", max_concurrent_streams=5)
    log = access_log_path()
    sl = start([b], access_log=log)
    results = ParallelClients(sl.port("web"), [("GET", "/delay/500?i=%d" % i, None) for i in range(100)], 100).run()
    st = b.stats()
    info("h2_backend: %s" % json.dumps({k: st[k] for k in ("accepted", "streams", "answered", "over_limit",
                                                            "over_limit_after_ack")}))
    lines = wait_access(log, 100)
    bad = [(x["status"], x["attempts"], x["flags"], x.get("detail")) for x in lines if x["status"] != 200]
    harness.soft_check(len(results) == 100 and not failures(results) and st["answered"] == 100,
                       "h2_backend, max_concurrent_streams 5: 100 requests at once, all 200",
                       "%d failed; first: %r" % (len(bad), bad[:2]))
    hu.stop_and_check(sl)
    b.stop()
    if not os.access(NGHTTPD, os.X_OK):
        raise harness.Skip("nghttpd is not installed")
    d = tmp_dir()
    with open(os.path.join(d, "f.bin"), "wb") as f:
        f.write(pattern_bytes(8 << 20))
    holder, port = harness.free_port_holder()
    holder.close()
    p = subprocess.Popen([NGHTTPD, "--no-tls", "-a", "127.0.0.1", "-d", d, "--max-concurrent-streams=5", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=harness.die_with_parent)
    harness.register_cleanup(lambda: (p.kill(), p.wait()))
    check(harness.wait_until(lambda: not harness.is_refused(port), 10, 0.05), "nghttpd listens on %d" % port)
    log = access_log_path()
    sl = start(["127.0.0.1:%d" % port], access_log=log)
    results = ParallelClients(sl.port("web"), [("GET", "/f.bin", None) for _ in range(100)], 100, timeout=60).run()
    lines = wait_access(log, 100)
    bad = [(x["status"], x["attempts"], x["flags"], x.get("detail")) for x in lines if x["status"] != 200]
    whole = sum(1 for _, st_, body in results if st_ == 200 and len(body) == 8 << 20)
    check(len(results) == 100 and not failures(results) and whole == 100,
          "nghttpd --max-concurrent-streams=5: 100 downloads of 8 MiB at once, all 200 and whole",
          "%d failed; first: %r" % (len(bad), bad[:2]))
    hu.stop_and_check(sl)


def case_many_large_responses_share_the_connection_window():
    """30 responses of 3 MB at once over one upstream connection (90 MB through a 4 MiB connection
    window and 1 MiB stream windows, given back as the clients read): all arrive whole; so do 20
    uploads of 1 MiB at once the other way."""
    need_modules()
    b = H2Backend("h2")
    sl = start([b])
    n = 3000000
    results = ParallelClients(sl.port("web"), [("GET", "/bytes/%d?i=%d" % (n, i), None) for i in range(30)], 30,
                              timeout=60).run()
    want = pattern_sha256(n)
    ok = [i for i, st, body in results if st == 200 and hashlib.sha256(body).hexdigest() == want]
    check(len(ok) == 30 and b.stats()["accepted"] == 1, "30 x 3 MB at once: all whole (sha256), one connection",
          "%d whole; %r" % (len(ok), failures(results)[:3]))
    blob = pattern_bytes(1 << 20)
    results = ParallelClients(sl.port("web"), [("POST", "/echo/up%d" % i, blob) for i in range(20)], 20,
                              timeout=60).run()
    digests = [json.loads(body).get("body_sha256") if st == 200 else st for _, st, body in results]
    check(digests == [pattern_sha256(1 << 20)] * 20 and b.stats()["accepted"] == 1,
          "20 uploads of 1 MiB at once: all whole upstream (sha256), one connection", repr(digests[:3]))
    hu.stop_and_check(sl)


def write_config(text):
    path = os.path.join(tmp_dir(), "c.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def locate(text, needle, after=None):
    start_at = text.index(after) if after else 0
    i = text.index(needle, start_at)
    line = text.count("\n", 0, i) + 1
    col = i - (text.rindex("\n", 0, i) + 1 if "\n" in text[:i] else 0) + 1
    return line, col


CONFIG = """\
listeners:
  - name: web
    address: 127.0.0.1:0
    protocol: http
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            cluster: api
clusters:
  - name: api
    protocol: PROTO
    http2:
      initial_stream_window: 1MiB
      initial_connection_window: 4MiB
      max_header_list_size: 64KiB
      max_frame_size: 16KiB
    endpoints: [{address: 127.0.0.1:9}]
"""


def case_config():
    """`protocol: http2|http1|auto` with an http2 block is accepted; `protocol: h3` is a located
    error from `sluice check` and from `sluice run` (exit 1, nothing started)."""
    for proto in ("http2", "http1", "auto"):
        path = write_config(CONFIG.replace("PROTO", proto))
        p = harness.run_sluice_cmd(["check", "-c", path], timeout=10)
        check(p.returncode == 0 and p.stdout.strip() == "%s: ok" % path, "protocol: %s with an http2 block: ok" % proto,
              "rc=%d\n%s%s" % (p.returncode, p.stdout, p.stderr))
    text = CONFIG.replace("PROTO", "h3")
    path = write_config(text)
    line, col = locate(text, "h3")
    want = "%s:%d:%d: clusters[0].protocol: expected one of: http1, http2, auto, got 'h3'" % (path, line, col)
    for cmd in ("check", "run"):
        p = harness.run_sluice_cmd([cmd, "-c", path], timeout=10)
        got = [x for x in p.stderr.splitlines() if x.startswith(path + ":")]
        check(p.returncode == 1 and got == [want],
              "sluice %s: exit 1 and exactly %r" % (cmd, want.replace(path, "FILE")),
              "rc=%d\nstderr: %s" % (p.returncode, p.stderr))


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_config, case_http1_request_translated, case_http2_request_translated, case_bodies_whole,
                       case_response_trailers, case_multiplexed_one_connection, case_multiplexed_limit_ten,
                       case_goaway_under_load, case_goaway_below_streams_in_flight, case_refused_stream_post,
                       case_upstream_closes_connection, case_nghttpd_static_file, case_http1_only_endpoint,
                       case_client_settings, case_auto_on_cleartext_is_http1, case_stream_reset_by_upstream,
                       case_http2_client_reset_cancels_upstream_stream,
                       case_http1_client_gone_cancels_upstream_stream, case_slow_client_holds_only_its_stream,
                       case_upgrade_to_http2_cluster, case_http2_client_request_trailers,
                       case_pool_limits_with_streams, case_pool_idle_timeout_and_lifetime,
                       case_drain_with_streams_in_flight, case_bodiless_responses,
                       case_goaway_last_stream_zero_then_close, case_early_response_before_body,
                       case_h2load_end_to_end, case_interim_and_expect, case_dead_endpoint_skipped,
                       case_small_upstream_windows_and_continuation, case_burst_over_a_small_stream_limit,
                       case_many_large_responses_share_the_connection_window])

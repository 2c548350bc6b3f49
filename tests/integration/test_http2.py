#!/usr/bin/env python3
"""HTTP/2 towards clients, checked with real clients (curl, nghttp, h2load, and Python's h2
for frame-level steps) against sluice in front of HTTP/1.1 backends on loopback: prior
knowledge and HTTP/1.1 on one cleartext listener, ALPN h2 on a TLS listener, what the
upstream hears (Host, joined cookies, chunked bodies of unknown length), large bodies both
ways, multiplexed load with exact counters, the access log's protocol and stream, and the
GOAWAYs of a drain, of max_requests_per_connection and of an idle connection."""

import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
from http_backend import HttpBackend, pattern_sha256  # noqa: E402
import http_util as hu  # noqa: E402
import test_metrics as tm  # noqa: E402
import tls_pki  # noqa: E402

import hpack  # noqa: E402
import hyperframe.frame  # noqa: E402

H2LOAD = shutil.which("h2load") or "/usr/bin/h2load"
NGHTTP = shutil.which("nghttp") or "/usr/bin/nghttp"


def tmp_dir():
    d = tempfile.mkdtemp(prefix="sluice-h2-")
    harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def routes(cluster="app"):
    return [{"match": {"prefix": "/"}, "cluster": cluster}]


def access_lines(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except OSError:
        return []


def h2_listener(http2=None, **kw):
    return hu.simple_listener(routes(), http2=http2 if http2 is not None else {"prior_knowledge": True}, **kw)


class H2Client:
    """One HTTP/2 connection spoken frame by frame (hyperframe and hpack): unlike a full client
    state machine it keeps reading after a GOAWAY, which is what a drain is about. Events are
    tuples: ("headers", sid, fields, end), ("data", sid, bytes, end), ("goaway", code, last),
    ("rst", sid, code)."""

    PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.enc, self.dec = hpack.Encoder(), hpack.Decoder()
        self.buf = b""
        self.events = []
        self.closed = False
        self.next_sid = 1
        self.sock.sendall(self.PREFACE + hyperframe.frame.SettingsFrame(0).serialize())

    def request(self, path, method="GET", headers=(), body=None, end=True):
        sid, self.next_sid = self.next_sid, self.next_sid + 2
        block = self.enc.encode([(":method", method), (":scheme", "http"), (":authority", "test.local"),
                                 (":path", path)] + list(headers))
        f = hyperframe.frame.HeadersFrame(sid, block)
        f.flags.add("END_HEADERS")
        if body is None and end:
            f.flags.add("END_STREAM")
        out = f.serialize()
        if body is not None:
            d = hyperframe.frame.DataFrame(sid, body)
            if end:
                d.flags.add("END_STREAM")
            out += d.serialize()
        self.sock.sendall(out)
        return sid

    def fields(self, sid):
        """The response's header fields (and trailers), in order."""
        return [kv for ev in self.events if ev[0] == "headers" and ev[1] == sid for kv in ev[2]]

    def _frames(self):
        while len(self.buf) >= 9:
            frame, length = hyperframe.frame.Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                return
            frame.parse_body(memoryview(self.buf[9:9 + length]))
            self.buf = self.buf[9 + length:]
            yield frame

    def _on_frame(self, f):
        F = hyperframe.frame
        end = "END_STREAM" in f.flags
        if isinstance(f, F.SettingsFrame) and "ACK" not in f.flags:
            ack = F.SettingsFrame(0)
            ack.flags.add("ACK")
            self.sock.sendall(ack.serialize())
        elif isinstance(f, F.HeadersFrame):
            fields = [(k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v)
                      for k, v in self.dec.decode(f.data)]
            self.events.append(("headers", f.stream_id, fields, end))
        elif isinstance(f, F.DataFrame):
            self.events.append(("data", f.stream_id, f.data, end))
            n = f.flow_controlled_length
            if n:
                self.sock.sendall(F.WindowUpdateFrame(0, n).serialize() +
                                  F.WindowUpdateFrame(f.stream_id, n).serialize())
        elif isinstance(f, F.GoAwayFrame):
            self.events.append(("goaway", f.error_code, f.last_stream_id))
        elif isinstance(f, F.RstStreamFrame):
            self.events.append(("rst", f.stream_id, f.error_code))

    def pump(self, until, timeout=5.0):
        """Reads frames until until(events) holds or the connection closes; returns whether it held."""
        deadline = time.monotonic() + timeout
        while not until(self.events):
            if self.closed or time.monotonic() > deadline:
                return until(self.events)
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                data = b""
            if not data:
                self.closed = True
                continue
            self.buf += data
            for f in list(self._frames()):
                self._on_frame(f)
        return True

    def response(self, sid):
        status, body, ended = None, b"", False
        for ev in self.events:
            if ev[0] == "headers" and ev[1] == sid:
                status = int(dict(ev[2]).get(":status", 0)) or status
                ended = ended or ev[3]
            elif ev[0] == "data" and ev[1] == sid:
                body += ev[2]
                ended = ended or ev[3]
        return status, body, ended

    def goaways(self):
        return [(ev[1], ev[2]) for ev in self.events if ev[0] == "goaway"]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def stream_ended(sid):
    def ended(evs):
        return any(ev[0] in ("headers", "data") and ev[1] == sid and ev[3] for ev in evs)
    return ended


def goaway_count(n):
    return lambda evs: len([ev for ev in evs if ev[0] == "goaway"]) >= n


# --------------------------------------------------------------------------
# cases


def case_prior_knowledge_and_http1_on_one_listener():
    """curl with prior knowledge gets HTTP/2, a plain HTTP/1.1 client HTTP/1.1, on one port; the
    upstream hears HTTP/1.1 with Host from :authority and the cookie crumbs joined."""
    b = HttpBackend("b")
    log = os.path.join(tmp_dir(), "access.log")
    sl, ap = tm.start([h2_listener(access_log={"path": log})], [hu.cluster("app", [b])])
    port = sl.port("web")
    p = hu.curl(["--http2-prior-knowledge", "-w", "\\n%{http_version} %{response_code}",
                 "-H", "cookie: a=1", "-H", "cookie: b=2", "http://127.0.0.1:%d/echo" % port])
    body, _, tail = p.stdout.decode().rpartition("\n")
    check(p.returncode == 0 and tail == "2 200", "curl --http2-prior-knowledge: HTTP/2 200", repr(tail) + p.stderr)
    e = json.loads(body)
    hdrs = {k.lower(): v for k, v in e["headers"]}
    check(e["version"] == "HTTP/1.1" and hdrs.get("host") == "127.0.0.1:%d" % port,
          "the upstream hears HTTP/1.1 with Host from :authority", body)
    check(hdrs.get("cookie") == "a=1; b=2", "two cookie fields reach the upstream joined as 'a=1; b=2'",
          repr(e["headers"]))
    r = hu.request_once(port, "GET", "/one")
    check(r.status == 200 and r.version == "HTTP/1.1", "an HTTP/1.1 request on the same listener: HTTP/1.1 200",
          r.describe())
    harness.wait_until(lambda: len(access_lines(log)) >= 2, 5)
    lines = access_lines(log)
    check([(x["protocol"], x.get("stream")) for x in lines] == [("HTTP/2", 1), ("HTTP/1.1", None)],
          "the access log says HTTP/2 stream 1, then HTTP/1.1 (no stream)", json.dumps(lines))
    s = tm.wait_scrape(ap, lambda s: s.get("sluice_http2_streams_total", listener="web") == 1)
    got = (s.get("sluice_http2_connections_total", listener="web"), s.get("sluice_http2_streams_total", listener="web"),
           s.get("sluice_http_requests_total", listener="web"))
    check(got == (1, 1, 2), "metrics: 1 HTTP/2 connection, 1 stream, 2 requests in all", repr(got))
    hu.stop_and_check(sl)


def case_tls_alpn_h2():
    """A TLS listener with an http2 block offers h2 then http/1.1 by ALPN."""
    srv = tls_pki.leaf(["localhost"], ["127.0.0.1"])
    b = HttpBackend("b")
    tls = {"certificates": [{"certificate_chain": srv.chain, "private_key": srv.key}]}
    sl = hu.start_sluice([h2_listener(http2={}, tls=tls)], [hu.cluster("app", [b])])
    port = sl.port("web")
    url = "https://localhost:%d/bytes/300000" % port
    resolve = "localhost:%d:127.0.0.1" % port
    ca = tls_pki.default().ca_file
    p = hu.curl(["--http2", "--cacert", ca, "--resolve", resolve, "-o", "/dev/null", "-w",
                 "%{http_version} %{response_code} %{size_download}", url])
    check(p.stdout.decode() == "2 200 300000", "curl --http2 over TLS: ALPN h2, 200, 300000 bytes",
          p.stdout.decode() + p.stderr)
    p = hu.curl(["--http1.1", "--cacert", ca, "--resolve", resolve, "-o", "/dev/null", "-w",
                 "%{http_version} %{response_code}", url])
    check(p.stdout.decode() == "1.1 200", "a client offering only http/1.1 gets HTTP/1.1",
          p.stdout.decode() + p.stderr)
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as t:
            check(t.selected_alpn_protocol() == "h2", "ALPN [h2, http/1.1] selects h2", repr(t.selected_alpn_protocol()))
    hu.stop_and_check(sl)


def case_bodies_both_ways():
    """A 3 MB download and a 2 MB upload of unknown length (chunked to the upstream) arrive intact
    over one HTTP/2 connection each."""
    b = HttpBackend("b")
    sl = hu.start_sluice([h2_listener()], [hu.cluster("app", [b])])
    port = sl.port("web")
    d = tmp_dir()
    out = os.path.join(d, "down")
    p = hu.curl(["--http2-prior-knowledge", "-o", out, "-w", "%{http_version} %{response_code}",
                 "http://127.0.0.1:%d/bytes/3000000" % port])
    check(p.stdout.decode() == "2 200" and hu.sha256_file(out) == pattern_sha256(3000000),
          "a 3 MB response arrives whole over HTTP/2", p.stdout.decode() + p.stderr)
    up = os.path.join(d, "up")
    blob = bytes(range(256)) * 8192
    with open(up, "wb") as f:
        f.write(blob)
    # -T from stdin: no content-length, so the upstream gets it chunked
    with open(up, "rb") as f:
        p = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-X", "POST", "-T", "-",
                            "http://127.0.0.1:%d/sink" % port], stdin=f, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
    r = json.loads(p.stdout or b"{}")
    check(r.get("body_len") == len(blob) and r.get("body_sha256") == hashlib.sha256(blob).hexdigest(),
          "a 2 MB upload without a length arrives whole (chunked upstream)", repr(r) + p.stderr.decode())
    hu.stop_and_check(sl)


def case_multiplexed_load_exact_counters():
    """h2load: 4 connections x 50 concurrent streams, 2000 requests, all 2xx; the counters agree."""
    b = HttpBackend("b")
    sl, ap = tm.start([h2_listener()], [hu.cluster("app", [b])])
    port = sl.port("web")
    p = subprocess.run([H2LOAD, "-n", "2000", "-c", "4", "-m", "50", "http://127.0.0.1:%d/x" % port],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    out = p.stdout.decode()
    check("requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed" in out and
          "status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx" in out, "h2load: 2000 requests, all 2xx", out)

    def done(s):
        return s.get("sluice_http2_streams_total", listener="web") == 2000
    s = tm.wait_scrape(ap, done)
    got = {k: s.get(k, listener="web") for k in ("sluice_http2_connections_total", "sluice_http2_streams_total",
                                                  "sluice_http2_abuse_closed_total",
                                                  "sluice_http2_protocol_errors_total")}
    got["resets"] = [v for _, v in s.find("sluice_http2_resets_total", listener="web")]
    got["2xx"] = s.get("sluice_http_responses_total", listener="web", **{"class": "2xx"})
    want = {"sluice_http2_connections_total": 4, "sluice_http2_streams_total": 2000,
            "sluice_http2_abuse_closed_total": 0, "sluice_http2_protocol_errors_total": 0, "resets": [0, 0],
            "2xx": 2000}
    check(got == want, "counters: 4 connections, 2000 streams, 2000 2xx, no resets, no abuse", repr(got))
    hu.stop_and_check(sl)


def case_nghttp_parallel_streams():
    """nghttp fetches 30 paths on one connection at once; each answer is its own."""
    b = HttpBackend("b")
    sl = hu.start_sluice([h2_listener()], [hu.cluster("app", [b])])
    port = sl.port("web")
    urls = ["http://127.0.0.1:%d/bytes/%d" % (port, 1000 + i) for i in range(30)]
    p = subprocess.run([NGHTTP, "-ns", "-m", "1"] + urls, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    out = p.stdout.decode()
    # nghttp -s prints one statistics line per stream, with its status
    rows = [line for line in out.splitlines() if "/bytes/" in line]
    check(p.returncode == 0 and len(rows) == 30 and all(" 200 " in r for r in rows),
          "nghttp: 30 streams, 30 responses 200", out[-3000:])
    hu.stop_and_check(sl)


def case_drain_two_step_goaway():
    """On SIGTERM an HTTP/2 client sees GOAWAY(2^31-1), then GOAWAY(last stream), and the stream
    in flight still completes."""
    b = HttpBackend("b")
    sl = hu.start_sluice([h2_listener()], [hu.cluster("app", [b])])
    c = H2Client(sl.port("web"))
    sid = c.request("/delay/700")
    harness.wait_until(lambda: b.stats()["requests"] >= 1, 5)
    sl.signal(signal.SIGTERM)
    check(c.pump(goaway_count(2), 5),
          "two GOAWAYs arrive", repr(c.events))
    check(c.goaways() == [(0, 2**31 - 1), (0, sid)],
          "GOAWAY NO_ERROR last-stream 2^31-1, then GOAWAY NO_ERROR last-stream %d" % sid, repr(c.goaways()))
    c.pump(stream_ended(sid), 5)
    status, body, ended = c.response(sid)
    check(status == 200 and ended, "the stream in flight completes with 200 after the GOAWAYs", repr(c.events))
    c.pump(lambda evs: False, 5)
    check(c.closed, "sluice closes the connection once the stream is done")
    c.close()
    rc = sl.wait_exit(10)
    harness.check_clean_exit(sl, rc)


def case_max_requests_per_connection():
    """max_requests_per_connection: 3 -> after the third stream the client is told to go away
    (graceful), and the three streams complete."""
    b = HttpBackend("b")
    sl = hu.start_sluice([h2_listener(http={"max_requests_per_connection": 3})], [hu.cluster("app", [b])])
    c = H2Client(sl.port("web"))
    sids = [c.request("/n%d" % i) for i in range(3)]
    c.pump(lambda evs: all(stream_ended(s)(evs) for s in sids) and goaway_count(2)(evs), 5)
    check([c.response(s)[0] for s in sids] == [200, 200, 200], "three streams: 200 each", repr(c.events))
    check(c.goaways() == [(0, 2**31 - 1), (0, sids[-1])], "GOAWAY 2^31-1, then GOAWAY last-stream %d" % sids[-1],
          repr(c.goaways()))
    c.close()
    hu.stop_and_check(sl)


def case_idle_connection_goaway():
    """An HTTP/2 connection with no stream for keepalive_timeout gets GOAWAY NO_ERROR and is closed."""
    b = HttpBackend("b")
    sl = hu.start_sluice([h2_listener(http={"keepalive_timeout": "300ms"})], [hu.cluster("app", [b])])
    c = H2Client(sl.port("web"))
    sid = c.request("/x")
    c.pump(stream_ended(sid), 5)
    t0 = time.monotonic()
    c.pump(lambda evs: False, 5)
    waited = time.monotonic() - t0
    check(c.closed and c.goaways() == [(0, sid)] and 0.2 < waited < 3,
          "idle for 300ms: GOAWAY NO_ERROR (last stream %d), then closed (after %.2fs)" % (sid, waited),
          repr(c.goaways()))
    c.close()
    hu.stop_and_check(sl)


def case_connections_view():
    """/connections shows an HTTP/2 connection's open streams, abuse score and GOAWAY state."""
    b = HttpBackend("b")
    sl, ap = tm.start([h2_listener()], [hu.cluster("app", [b])])
    c = H2Client(sl.port("web"))
    local = "127.0.0.1:%d" % c.sock.getsockname()[1]
    sids = [c.request("/delay/600"), c.request("/delay/600")]
    harness.wait_until(lambda: b.stats()["requests"] >= 2, 5)
    conns = [x for x in tm.admin_json(ap, "/connections?listener=web") if x["peer"] == local]
    # the windows: the client's default 65535 towards it, sluice's 4 MiB from it
    h = {"streams": 2, "abuse_score": 0, "goaway": "", "send_window": 65535, "receive_window": 4 * 1024 * 1024}
    check(len(conns) == 1 and conns[0].get("http2") == h and conns[0]["state"] == "request",
          "/connections: the client's connection, HTTP/2 with 2 streams open, score 0, no GOAWAY, "
          "windows 65535 out and 4 MiB in", repr(conns))
    c.pump(lambda evs: all(stream_ended(s)(evs) for s in sids), 5)
    conns = [x for x in tm.admin_json(ap, "/connections?listener=web") if x["peer"] == local]
    # the client acknowledged both bodies (WINDOW_UPDATE), so the send window is whole again
    h = dict(h, streams=0)
    check(len(conns) == 1 and conns[0].get("http2") == h and conns[0]["state"] == "idle",
          "after both responses: 0 streams, idle, the windows whole", repr(conns))
    c.close()
    hu.stop_and_check(sl)


GRPC_HEADERS = [("content-type", "application/grpc"), ("te", "trailers")]
# A gRPC message frame: not compressed, 3 bytes.
GRPC_BODY = b"\x00\x00\x00\x00\x03abc"


def case_grpc_local_replies():
    """gRPC calls sluice answers itself get gRPC statuses, trailers-only with HTTP 200: a
    grpcio client sees UNAVAILABLE with the cause when the upstream refuses connections and
    UNIMPLEMENTED when no route matches; a call's grpc-timeout cuts it short with
    DEADLINE_EXCEEDED (the access log says grpc_status 4)."""
    import grpc
    b = HttpBackend("b")
    log = os.path.join(tmp_dir(), "access.log")
    lst = hu.listener("web", [hu.vhost("all", ["*"], [
        {"match": {"prefix": "/down."}, "cluster": "down"},
        {"match": {"prefix": "/up."}, "cluster": "app"}])],
        http2={"prior_knowledge": True}, access_log={"path": log})
    sl = hu.start_sluice([lst], [hu.cluster("app", [b]), hu.cluster("down", [{"address": "127.0.0.1:1"}])])
    port = sl.port("web")
    with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
        call = ch.unary_unary("/down.Svc/Get")
        try:
            call(b"abc", timeout=5)
            code, details = None, None
        except grpc.RpcError as e:
            code, details = e.code(), e.details()
        check(code == grpc.StatusCode.UNAVAILABLE and details == "upstream connect error: connection refused",
              "grpcio: a refused upstream is UNAVAILABLE 'upstream connect error: connection refused'",
              "%r %r" % (code, details))
        try:
            ch.unary_unary("/nowhere.Svc/Get")(b"abc", timeout=5)
            code = None
        except grpc.RpcError as e:
            code, details = e.code(), e.details()
        check(code == grpc.StatusCode.UNIMPLEMENTED and details == "no route matches this request",
              "grpcio: no route is UNIMPLEMENTED 'no route matches this request'", "%r %r" % (code, details))
    c = H2Client(port)
    t0 = time.monotonic()
    sid = c.request("/up.Svc/delay/3000", "POST", GRPC_HEADERS + [("grpc-timeout", "200m")], GRPC_BODY)
    c.pump(stream_ended(sid), 5)
    took = time.monotonic() - t0
    f = c.fields(sid)
    check(f == [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "4"),
                ("grpc-message", "upstream did not answer in time")] and took < 2.5,
          "grpc-timeout 200m: trailers-only 200 with grpc-status 4 (DEADLINE_EXCEEDED) after %.2fs" % took, repr(f))
    # a deadline beyond what a clock holds is taken as 30 days, not an overflow
    sid = c.request("/up.Svc/echo", "POST", GRPC_HEADERS + [("grpc-timeout", "99999999H")], GRPC_BODY)
    c.pump(stream_ended(sid), 5)
    check(c.response(sid)[0] == 200 and ("grpc-status", "4") not in c.fields(sid),
          "grpc-timeout 99999999H: the call goes through (200 from the upstream)", repr(c.fields(sid)))
    c.close()
    # gRPC is HTTP/2's: an HTTP/1.1 request with its content-type gets an HTTP answer
    r = hu.request_once(port, "POST", "/nowhere.Svc/Get", headers=[("Content-Type", "application/grpc")],
                        body=GRPC_BODY)
    check(r.status == 404 and r.header("grpc-status") is None, "HTTP/1.1 with application/grpc: a plain 404",
          r.describe())
    harness.wait_until(lambda: len(access_lines(log)) >= 5, 5)
    got = [(x["status"], x.get("grpc_status")) for x in access_lines(log)][:3]
    # the status logged (and counted) is the HTTP status the failure means; the wire says 200
    check(got == [(502, 14), (404, 12), (504, 4)], "the access log: 502/404/504 with grpc_status 14, 12, 4",
          repr(got))
    hu.stop_and_check(sl)


def case_early_response_stops_the_upload():
    """A response complete before its request (413 for a body over max_body_size) is followed by
    RST_STREAM NO_ERROR on that stream (RFC 9113 section 8.1); the connection serves on."""
    b = HttpBackend("b")
    sl = hu.start_sluice([h2_listener(http={"max_body_size": 1000})], [hu.cluster("app", [b])])
    c = H2Client(sl.port("web"))
    sid = c.request("/up", "POST", [("content-length", "100000")], b"x" * 2000, end=False)
    c.pump(lambda evs: any(ev[0] == "rst" and ev[1] == sid for ev in evs), 5)
    status, _, ended = c.response(sid)
    rst = [ev for ev in c.events if ev[0] == "rst"]
    check(status == 413 and ended and rst == [("rst", sid, 0)],
          "413, its END_STREAM, then RST_STREAM NO_ERROR on stream %d" % sid, repr(c.events))
    sid2 = c.request("/after")
    c.pump(stream_ended(sid2), 5)
    check(c.response(sid2)[0] == 200 and not c.goaways(), "the next stream on the connection gets 200",
          repr(c.events))
    c.close()
    hu.stop_and_check(sl)


def case_connect_is_answered_at_once():
    """CONNECT over HTTP/2 (which sluice does not tunnel) is answered 501 at once, and the
    stream's request side is stopped with RST_STREAM NO_ERROR."""
    b = HttpBackend("b")
    sl = hu.start_sluice([h2_listener(http={"allow_connect": True})], [hu.cluster("app", [b])])
    c = H2Client(sl.port("web"))
    sid, c.next_sid = c.next_sid, c.next_sid + 2
    f = hyperframe.frame.HeadersFrame(sid, c.enc.encode([(":method", "CONNECT"), (":authority", "example.test:443")]))
    f.flags.add("END_HEADERS")
    c.sock.sendall(f.serialize())
    c.pump(lambda evs: any(ev[0] == "rst" and ev[1] == sid for ev in evs), 5)
    status, body, ended = c.response(sid)
    check(status == 501 and ended and [ev for ev in c.events if ev[0] == "rst"] == [("rst", sid, 0)],
          "CONNECT: 501, END_STREAM, then RST_STREAM NO_ERROR", repr(c.events))
    check(b.stats()["requests"] == 0, "nothing reached the upstream", repr(b.stats()))
    c.close()
    hu.stop_and_check(sl)


def case_config_errors():
    """http2 blocks that cannot work are refused with a located message."""
    def err(listener):
        text = hu.config([listener], [hu.cluster("app", [{"address": "127.0.0.1:1"}])])
        d = tmp_dir()
        path = os.path.join(d, "c.yaml")
        with open(path, "w") as f:
            f.write(text)
        p = harness.run_sluice_cmd(["check", "-c", path])
        return p.returncode, (p.stdout + p.stderr)

    rc, out = err(hu.simple_listener(routes(), http2={"max_concurrent_streams": 100}))
    check(rc != 0 and "listeners[0].http2: a cleartext listener serves HTTP/2 only with prior_knowledge: true" in out,
          "cleartext http2 without prior_knowledge is refused", out)
    rc, out = err(hu.simple_listener(routes(), http2={"prior_knowledge": True, "max_frame_size": 1000}))
    check(rc != 0 and "listeners[0].http2.max_frame_size" in out, "max_frame_size below 16384 is refused", out)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_prior_knowledge_and_http1_on_one_listener, case_tls_alpn_h2, case_bodies_both_ways,
                       case_multiplexed_load_exact_counters, case_nghttp_parallel_streams,
                       case_drain_two_step_goaway, case_max_requests_per_connection, case_idle_connection_goaway,
                       case_connections_view, case_grpc_local_replies,
                       case_early_response_stops_the_upload, case_connect_is_answered_at_once,
                       case_config_errors])

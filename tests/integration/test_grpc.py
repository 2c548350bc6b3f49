#!/usr/bin/env python3
"""gRPC end to end through sluice: a grpcio client (Debian's python3-grpcio) → a cleartext
HTTP/2 listener (`http2: {prior_knowledge: true}`) → a `protocol: http2` cluster → a grpcio
server with generic handlers (raw bytes, no generated code).

Unary, server-streaming, client-streaming and bidirectional calls; status codes and messages
(non-ASCII, percent-encoded on the wire) and initial and trailing metadata (text and binary)
reach the client exactly; a status after messages and a trailers-only status; a deadline
shorter than the server's delay is DEADLINE_EXCEEDED (from the client's deadline, and from
sluice alone for a call carrying only grpc-timeout), and the server sees the call cancelled;
a stopped server is UNAVAILABLE with sluice's message; `retry_on: [unavailable]` retries a
trailers-only UNAVAILABLE and not one that follows a message; a bidirectional stream of 100
messages of 256 KiB each way completes through the flow-control windows.

Run: SLUICE_BIN=build/asan/sluice /usr/bin/python3 tests/integration/test_grpc.py
"""

import hashlib
import json
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
import http_util as hu  # noqa: E402

# grpcio's fork handlers may abort a process that forks (to start sluice, with a preexec_fn)
# after one of its servers stopped; this script starts its servers in-process, so they are off
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
try:
    import grpc
    import h2_frames
except ImportError:  # not /usr/bin/python3: every case says so
    grpc = None
    h2_frames = None

SERVICE = "sluice.test.Svc"
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0), ("grpc.max_receive_message_length", 8 << 20),
                   ("grpc.max_send_message_length", 8 << 20)]
UNICODE_DETAIL = "no such thing: ünïcode ✓ 100%"


def need_modules():
    if grpc is None or h2_frames is None:
        raise harness.Skip("python3-grpcio or python3-h2 is missing (run with /usr/bin/python3)")


def tmp_dir():
    d = tempfile.mkdtemp(prefix="sluice-grpc-")
    harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


class GrpcServer:
    """A grpcio server on 127.0.0.1:<ephemeral> with generic handlers on raw bytes. Counts the
    calls per method and records which calls the server saw cancelled."""

    def __init__(self, options=()):
        self.lock = threading.Lock()
        self.calls = {}
        self.cancelled = []
        self.release = threading.Event()  # ends the Slow handler's wait early
        self.fail_unavailable = 1         # FlakyUnary: how many calls fail first
        m = {
            "Unary": grpc.unary_unary_rpc_method_handler(self.unary),
            "Fail": grpc.unary_unary_rpc_method_handler(self.fail),
            "Slow": grpc.unary_unary_rpc_method_handler(self.slow),
            "FlakyUnary": grpc.unary_unary_rpc_method_handler(self.flaky_unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream),
            "StreamThenFail": grpc.unary_stream_rpc_method_handler(self.stream_then_fail),
            "ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi),
        }
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=120),
                                  options=[("grpc.max_receive_message_length", 8 << 20),
                                           ("grpc.max_send_message_length", 8 << 20)] + list(options))
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, m),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = "127.0.0.1:%d" % self.port
        self.server.start()
        harness.register_cleanup(self.stop)

    def stop(self):
        self.release.set()
        self.server.stop(0).wait(5)

    def _count(self, name):
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1

    def count(self, name):
        with self.lock:
            return self.calls.get(name, 0)

    # -- handlers
    def unary(self, req, ctx):
        self._count("Unary")
        md = dict(ctx.invocation_metadata())
        ctx.send_initial_metadata((("x-initial", "i-" + md.get("x-client", "")),))
        ctx.set_trailing_metadata((("x-trailer", "t1"), ("x-bin-bin", b"\x00\x01\xfe\xff")))
        return b"echo:" + req

    def fail(self, req, ctx):
        """req is 'CODE_NAME' or 'CODE_NAME:trailer': aborts with that code and UNICODE_DETAIL."""
        self._count("Fail")
        name, _, with_md = req.decode().partition(":")
        if with_md:
            ctx.set_trailing_metadata((("x-why", "because"),))
        ctx.abort(getattr(grpc.StatusCode, name), UNICODE_DETAIL)

    def slow(self, req, ctx):
        """Holds the call req seconds; a call that terminates before (the client or sluice
        cancelled it: the termination callback runs while the handler still waits) is recorded
        in cancelled."""
        self._count("Slow")
        ended = threading.Event()
        ctx.add_callback(ended.set)
        deadline = time.monotonic() + float(req.decode() or "5")
        while not self.release.is_set() and time.monotonic() < deadline:
            if ended.wait(0.05):
                with self.lock:
                    self.cancelled.append("Slow")
                break
        return b"late"

    def flaky_unary(self, req, ctx):
        self._count("FlakyUnary")
        with self.lock:
            fail = self.fail_unavailable > 0
            self.fail_unavailable -= 1
        if fail:
            ctx.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        return b"ok:" + req

    def server_stream(self, req, ctx):
        self._count("ServerStream")
        for i in range(int(req.decode())):
            yield b"msg-%d" % i
        ctx.set_trailing_metadata((("x-count", req.decode()),))

    def stream_then_fail(self, req, ctx):
        self._count("StreamThenFail")
        yield b"first"
        yield b"second"
        ctx.abort(grpc.StatusCode.UNAVAILABLE if req == b"unavailable" else grpc.StatusCode.RESOURCE_EXHAUSTED,
                  "quota spent")

    def client_stream(self, it, ctx):
        self._count("ClientStream")
        h = hashlib.sha256()
        n = 0
        total = 0
        for m in it:
            h.update(m)
            n += 1
            total += len(m)
        return json.dumps({"messages": n, "bytes": total, "sha256": h.hexdigest()}).encode()

    def bidi(self, it, ctx):
        self._count("Bidi")
        for m in it:
            yield m[::-1]


def start(server_address, access_log=None, route=None, workers=2):
    lst = h2_frames.h2_listener(cluster="grpc", access_log=access_log, route=route)
    return hu.start_sluice([lst], [hu.cluster("grpc", [server_address], protocol="http2")], workers=workers)


def channel(sl):
    ch = grpc.insecure_channel("127.0.0.1:%d" % sl.port("web"), options=CHANNEL_OPTIONS)
    harness.register_cleanup(ch.close)
    return ch


def method(ch, kind, name):
    return getattr(ch, kind)("/%s/%s" % (SERVICE, name))


def error_of(fn):
    """Runs fn(); returns (code, details, trailing metadata) of the RpcError it raised (None if none)."""
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details(), tuple((m.key, m.value) for m in (e.trailing_metadata() or ()))
    return None


def md(meta):
    return tuple((m.key, m.value) for m in (meta or ()))


# --------------------------------------------------------------------------
# cases


def case_unary_and_metadata():
    """A unary call: the reply, the initial metadata (from the client's) and the trailing
    metadata (text and -bin) arrive exactly; the access log shows an HTTP/2 POST with 200."""
    need_modules()
    srv = GrpcServer()
    log = os.path.join(tmp_dir(), "access.log")
    sl = start(srv.address, access_log=log)
    ch = channel(sl)
    resp, call = method(ch, "unary_unary", "Unary").with_call(b"hello", metadata=(("x-client", "c1"),), timeout=10)
    check(resp == b"echo:hello" and call.code() == grpc.StatusCode.OK, "unary: echo:hello, OK", repr(resp))
    check(md(call.initial_metadata()) == (("x-initial", "i-c1"),),
          "initial metadata x-initial: i-c1 (the server read the client's x-client: c1)", repr(call.initial_metadata()))
    check(md(call.trailing_metadata()) == (("x-trailer", "t1"), ("x-bin-bin", b"\x00\x01\xfe\xff")),
          "trailing metadata x-trailer: t1 and x-bin-bin: 00 01 fe ff", repr(call.trailing_metadata()))
    # a gzip-compressed message (grpc-encoding: gzip; the server decompresses it)
    big = b"z" * 100000
    resp = method(ch, "unary_unary", "Unary")(big, timeout=10, compression=grpc.Compression.Gzip)
    check(resp == b"echo:" + big, "a 100000-byte message sent gzip-compressed: echoed whole", repr(resp[:40]))
    harness.wait_until(lambda: len(h2_frames.access_lines(log)) >= 2, 5)
    lines = h2_frames.access_lines(log)
    info("the compressed call's request body on the wire: %r bytes" % (lines[1].get("request_body_bytes")
                                                                         if len(lines) > 1 else None))
    e = lines[0] if lines else {}
    got = tuple(e.get(k) for k in ("method", "target", "protocol", "status", "cluster", "endpoint", "flags",
                                   "grpc_status"))
    want = ("POST", "/%s/Unary" % SERVICE, "HTTP/2", 200, "grpc", srv.address, [], None)
    check(got == want, "the access log: POST /%s/Unary HTTP/2 200, no flags" % SERVICE, json.dumps(e))
    hu.stop_and_check(sl)


def case_streaming_calls():
    """Server streaming (5 messages and trailing metadata), client streaming (10 messages up to
    100 KB, sha256 on the server) and a status after two messages, all exact."""
    need_modules()
    srv = GrpcServer()
    sl = start(srv.address)
    ch = channel(sl)
    call = method(ch, "unary_stream", "ServerStream")(b"5", timeout=10)
    got = list(call)
    check(got == [b"msg-%d" % i for i in range(5)] and call.code() == grpc.StatusCode.OK and
          md(call.trailing_metadata()) == (("x-count", "5"),),
          "server streaming: msg-0..msg-4, OK, trailing x-count: 5", repr(got))
    msgs = [bytes([i]) * (i * 10000 + 1) for i in range(10)]
    resp = method(ch, "stream_unary", "ClientStream")(iter(msgs), timeout=10)
    want = {"messages": 10, "bytes": sum(len(m) for m in msgs), "sha256": hashlib.sha256(b"".join(msgs)).hexdigest()}
    check(json.loads(resp) == want, "client streaming: the server got 10 messages, %d bytes, sha256 equal" %
          want["bytes"], resp.decode())
    call = method(ch, "unary_stream", "StreamThenFail")(b"x", timeout=10)
    got = []
    try:
        for m in call:
            got.append(m)
    except grpc.RpcError:
        pass
    check(got == [b"first", b"second"] and call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and
          call.details() == "quota spent",
          "two messages, then RESOURCE_EXHAUSTED 'quota spent' in the trailers", "%r %r %r" % (
              got, call.code(), call.details()))
    hu.stop_and_check(sl)


def case_status_codes_exact():
    """Statuses from the server, trailers-only (no message before them), reach the client
    exactly: code, a non-ASCII message (percent-encoded on the wire) and trailing metadata;
    none is retried by default (one call each on the server)."""
    need_modules()
    srv = GrpcServer()
    sl = start(srv.address)
    ch = channel(sl)
    fail = method(ch, "unary_unary", "Fail")
    codes = ["NOT_FOUND", "INVALID_ARGUMENT", "PERMISSION_DENIED", "UNAVAILABLE", "INTERNAL", "ALREADY_EXISTS"]
    for name in codes:
        got = error_of(lambda: fail(name.encode(), timeout=10))
        check(got == (getattr(grpc.StatusCode, name), UNICODE_DETAIL, ()),
              "%s with the message %r" % (name, UNICODE_DETAIL), repr(got))
    got = error_of(lambda: fail(b"NOT_FOUND:md", timeout=10))
    check(got == (grpc.StatusCode.NOT_FOUND, UNICODE_DETAIL, (("x-why", "because"),)),
          "NOT_FOUND with trailing metadata x-why: because", repr(got))
    check(srv.count("Fail") == len(codes) + 1, "the server saw each call once (%d)" % (len(codes) + 1),
          repr(srv.calls))
    hu.stop_and_check(sl)


def case_trailers_only_frames():
    """A status without messages is sent by grpcio as trailers-only: one HEADERS frame with
    END_STREAM carrying :status 200, content-type and grpc-status/grpc-message (gRPC's
    PROTOCOL-HTTP2 'Trailers-Only'). Through sluice to an HTTP/2 client it stays one HEADERS
    frame with END_STREAM, the fields exact (grpc-message percent-encoded as the server sent it)."""
    need_modules()
    srv = GrpcServer()
    sl = start(srv.address)
    c = h2_frames.H2Client(sl.port("web"))
    c.handshake()
    body = b"NOT_FOUND"
    sid = c.request("POST", "/%s/Fail" % SERVICE, headers=[("content-type", "application/grpc"), ("te", "trailers")],
                    body=b"\x00" + len(body).to_bytes(4, "big") + body)
    r = c.response(sid, 10)
    check(r is not None and r.headers == [(":status", "200"), ("content-type", "application/grpc"),
                                          ("grpc-status", "5"),
                                          ("grpc-message", "no such thing: %C3%BCn%C3%AFcode %E2%9C%93 100%25")],
          "the fields: :status 200, content-type, grpc-status 5, the percent-encoded grpc-message",
          r.describe() if r else c.transcript())
    check(frames_on(c, sid) == [("HEADERS", ["END_HEADERS", "END_STREAM"])],
          "one HEADERS frame with END_STREAM, nothing else on the stream", c.transcript())
    c.close()
    hu.stop_and_check(sl)


def case_deadline():
    """A client deadline of 500 ms on a call the server holds 5 s: DEADLINE_EXCEEDED, and the
    server sees the call cancelled (sluice reset the upstream stream)."""
    need_modules()
    srv = GrpcServer()
    log = os.path.join(tmp_dir(), "access.log")
    sl = start(srv.address, access_log=log)
    ch = channel(sl)
    t0 = time.monotonic()
    got = error_of(lambda: method(ch, "unary_unary", "Slow")(b"5", timeout=0.5))
    took = time.monotonic() - t0
    check(got is not None and got[0] == grpc.StatusCode.DEADLINE_EXCEEDED and took < 3,
          "grpcio timeout 0.5s: DEADLINE_EXCEEDED after %.2fs" % took, repr(got))
    ok = harness.wait_until(lambda: srv.cancelled.count("Slow") == 1, 5)
    check(ok, "the server saw the call cancelled (sluice reset the upstream stream)", repr(srv.cancelled))
    hu.stop_and_check(sl)


def case_grpc_timeout_enforced_by_sluice():
    """A gRPC call carrying grpc-timeout 300m and no deadline of the client's own (a raw HTTP/2
    client) to an upstream that ignores grpc-timeout (h2_backend, answering after 3 s) is ended by
    sluice: HTTP 200, trailers-only in one HEADERS frame with END_STREAM, grpc-status 4,
    grpc-message 'upstream did not answer in time'; the upstream heard te: trailers and the
    grpc-timeout; the access log says 504 with grpc_status 4."""
    need_modules()
    from h2_backend import H2Backend
    b = H2Backend("h2")
    log = os.path.join(tmp_dir(), "access.log")
    sl = start(b.address, access_log=log)
    c = h2_frames.H2Client(sl.port("web"))
    c.handshake()
    t0 = time.monotonic()
    sid = c.request("POST", "/delay/3000", headers=[
        ("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", "300m")],
        body=b"\x00\x00\x00\x00\x015")
    r = c.response(sid, 10)
    took = time.monotonic() - t0
    check(r is not None and r.headers == [(":status", "200"), ("content-type", "application/grpc"),
                                          ("grpc-status", "4"), ("grpc-message", "upstream did not answer in time")]
          and r.ended and not r.body and took < 2.5,
          "grpc-timeout 300m: 200, grpc-status 4, 'upstream did not answer in time' after %.2fs" % took,
          r.describe() if r else c.transcript())
    check(frames_on(c, sid) == [("HEADERS", ["END_HEADERS", "END_STREAM"])],
          "trailers-only: one HEADERS frame with END_STREAM", c.transcript())
    c.close()
    b.wait_for(lambda s: s["streams"] >= 1, 5)
    recs = b.requests_for()
    hs = recs[0]["headers"] if recs else []
    te = [v for k, v in hs if k == "te"]
    gt = [v for k, v in hs if k == "grpc-timeout"]
    info("the upstream heard grpc-timeout %r" % gt)
    check(te == ["trailers"] and len(gt) == 1 and [v for k, v in hs if k == "content-type"] == ["application/grpc"],
          "the upstream heard te: trailers, content-type application/grpc and one grpc-timeout", json.dumps(hs))
    harness.wait_until(lambda: len(h2_frames.access_lines(log)) >= 1, 5)
    got = [(x["status"], x.get("grpc_status")) for x in h2_frames.access_lines(log)]
    check(got == [(504, 4)], "the access log: 504 with grpc_status 4", repr(got))
    hu.stop_and_check(sl)


def frames_on(c, sid):
    """(type name, sorted flags) of every frame the client read on stream sid."""
    return [(h2_frames.FRAME_NAMES[f.type], sorted(f.flags)) for f in c.frames if f.stream_id == sid]


def case_unavailable_when_server_stopped():
    """The server stopped (connections refused): UNAVAILABLE with sluice's message
    'upstream connect error: connection refused'; the access log says 502, grpc_status 14."""
    need_modules()
    srv = GrpcServer()
    log = os.path.join(tmp_dir(), "access.log")
    sl = start(srv.address, access_log=log)
    ch = channel(sl)
    resp = method(ch, "unary_unary", "Unary")(b"before", timeout=10)
    check(resp == b"echo:before", "a call while the server runs: OK", repr(resp))
    srv.stop()
    check(harness.wait_until(lambda: harness.is_refused(srv.port), 5), "the server's port refuses connections")
    # sluice closes its pooled connection once it reads the server's close; a call before that
    # would go out on it and be reset, which is another answer (tested elsewhere).
    check(harness.wait_until(lambda: harness.connections_to(srv.port) == 0, 5),
          "sluice closed its connection to the stopped server")
    got = error_of(lambda: method(ch, "unary_unary", "Unary")(b"after", timeout=10))
    check(got == (grpc.StatusCode.UNAVAILABLE, "upstream connect error: connection refused", ()),
          "UNAVAILABLE 'upstream connect error: connection refused'", repr(got))
    harness.wait_until(lambda: len(h2_frames.access_lines(log)) >= 2, 5)
    lines = h2_frames.access_lines(log)
    got = [(x["status"], x.get("grpc_status")) for x in lines]
    check(got == [(200, None), (502, 14)], "the access log: 200, then 502 with grpc_status 14", json.dumps(lines))
    hu.stop_and_check(sl)


def case_retry_on_unavailable():
    """retry_on: [unavailable], num_retries 2: a trailers-only UNAVAILABLE is retried and the client
    gets OK (2 calls on the server); an UNAVAILABLE after two messages is not retried (1 call);
    five failures in a row: the client gets the third attempt's UNAVAILABLE; INTERNAL is not
    retried."""
    need_modules()
    srv = GrpcServer()
    # gRPC calls are POSTs: a trailers-only status is retried whatever the method, without
    # allow_non_idempotent (docs/configuration.md, retries.retry_on)
    route = {"retries": {"retry_on": ["unavailable"], "num_retries": 2}}
    sl = start(srv.address, route=route)
    ch = channel(sl)
    got = error_of(lambda: check_flaky(ch))
    check(got is None and srv.count("FlakyUnary") == 2,
          "trailers-only UNAVAILABLE retried: OK for the client, 2 calls on the server",
          "%r calls %r" % (got, srv.calls))
    call = method(ch, "unary_stream", "StreamThenFail")(b"unavailable", timeout=10)
    msgs = []
    try:
        for m in call:
            msgs.append(m)
    except grpc.RpcError:
        pass
    check(msgs == [b"first", b"second"] and call.code() == grpc.StatusCode.UNAVAILABLE and
          srv.count("StreamThenFail") == 1,
          "UNAVAILABLE after messages: not retried (2 messages, UNAVAILABLE, 1 call)",
          "%r %r calls %r" % (msgs, call.code(), srv.calls))
    # more failures than retries: the last answer reaches the client as the server sent it
    with srv.lock:
        srv.fail_unavailable = 5
    got = error_of(lambda: check_flaky(ch))
    check(got == (grpc.StatusCode.UNAVAILABLE, "try again", ()) and srv.count("FlakyUnary") == 5,
          "retries spent (1 + 2 attempts): UNAVAILABLE 'try again' from the server, 3 more calls",
          "%r calls %r" % (got, srv.calls))
    # a status retry_on does not name is not retried
    got = error_of(lambda: method(ch, "unary_unary", "Fail")(b"INTERNAL", timeout=10))
    check(got == (grpc.StatusCode.INTERNAL, UNICODE_DETAIL, ()) and srv.count("Fail") == 1,
          "INTERNAL (not in retry_on): passed on after 1 call", "%r calls %r" % (got, srv.calls))
    hu.stop_and_check(sl)


def check_flaky(ch):
    resp = method(ch, "unary_unary", "FlakyUnary")(b"x", timeout=10)
    if resp != b"ok:x":
        raise AssertionError(resp)


def case_bidi_flow_control():
    """A bidirectional stream of 100 messages of 256 KiB each way (25 MiB each way, far past
    every window): each reply is its request reversed, in order, and the call ends OK."""
    need_modules()
    srv = GrpcServer()
    sl = start(srv.address)
    ch = channel(sl)
    size = 256 * 1024

    def msg(i):
        return hashlib.sha256(b"%d" % i).digest() * (size // 32)

    def requests():
        for i in range(100):
            yield msg(i)
    t0 = time.monotonic()
    call = method(ch, "stream_stream", "Bidi")(requests(), timeout=90)
    n = 0
    bad = []
    try:
        for reply in call:
            if reply != msg(n)[::-1]:
                bad.append(n)
            n += 1
            if n > 100:
                break
    except grpc.RpcError as e:
        bad.append(repr(e))
    took = time.monotonic() - t0
    check(n == 100 and not bad and call.code() == grpc.StatusCode.OK,
          "100 replies of 256 KiB, each its request reversed, OK (%.1fs)" % took, "n=%d bad=%r code=%r" % (
              n, bad[:5], call.code()))
    hu.stop_and_check(sl)


def case_concurrent_calls_balanced():
    """200 unary calls in flight together on one client channel (one HTTP/2 connection to sluice)
    all succeed with their own replies, and are balanced per call over two servers: exactly 100
    each (round robin, one worker)."""
    need_modules()
    a, b = GrpcServer(), GrpcServer()
    lst = h2_frames.h2_listener(cluster="grpc")
    sl = hu.start_sluice([lst], [hu.cluster("grpc", [a.address, b.address], protocol="http2",
                                            lb_policy="round_robin")], workers=1)
    ch = channel(sl)
    call = method(ch, "unary_unary", "Unary")
    futs = [call.future(b"n%d" % i, timeout=30) for i in range(200)]
    got = []
    for f in futs:
        try:
            got.append(f.result())
        except grpc.RpcError as e:
            got.append(repr(e.code()))
    check(got == [b"echo:n%d" % i for i in range(200)], "200 concurrent calls: each gets its own echo",
          repr([g for g in got if not isinstance(g, bytes)][:5]))
    check((a.count("Unary"), b.count("Unary")) == (100, 100), "the calls are balanced 100 / 100",
          "%r %r" % (a.calls, b.calls))
    hu.stop_and_check(sl)


def case_route_timeout_shorter_than_deadline():
    """A route timeout of 300ms and a client deadline of 10 s on a call the server holds 5 s: sluice
    ends the call with DEADLINE_EXCEEDED 'upstream did not answer in time' after about 300ms, and
    the server sees the call cancelled."""
    need_modules()
    srv = GrpcServer()
    sl = start(srv.address, route={"timeout": "300ms"})
    ch = channel(sl)
    t0 = time.monotonic()
    got = error_of(lambda: method(ch, "unary_unary", "Slow")(b"5", timeout=10))
    took = time.monotonic() - t0
    check(got == (grpc.StatusCode.DEADLINE_EXCEEDED, "upstream did not answer in time", ()) and took < 3,
          "DEADLINE_EXCEEDED 'upstream did not answer in time' after %.2fs" % took, repr(got))
    check(harness.wait_until(lambda: srv.cancelled.count("Slow") == 1, 5), "the server saw the call cancelled",
          repr(srv.cancelled))
    hu.stop_and_check(sl)


def case_bidi_ping_pong():
    """A bidirectional call where the client sends each message only after the reply to the
    previous one arrived (20 rounds of 10 bytes): every message must cross sluice at once in
    both directions, neither side's bytes held back waiting for more."""
    need_modules()
    srv = GrpcServer()
    sl = start(srv.address)
    ch = channel(sl)
    q = queue.Queue()

    def requests():
        for _ in range(20):
            m = q.get(timeout=10)
            if m is None:
                return
            yield m
    q.put(b"ping-00000")
    t0 = time.monotonic()
    call = method(ch, "stream_stream", "Bidi")(requests(), timeout=30)
    replies = []
    try:
        for reply in call:
            replies.append(reply)
            if len(replies) >= 20:
                q.put(None)
                break
            q.put(b"ping-%05d" % len(replies))
    except grpc.RpcError as e:
        replies.append(repr(e))
    took = time.monotonic() - t0
    call.cancel()
    check(replies == [(b"ping-%05d" % i)[::-1] for i in range(20)] and took < 10,
          "20 round trips, each reply the reversed ping (%.2fs)" % took, repr(replies[-3:]))
    hu.stop_and_check(sl)


def case_burst_over_server_stream_limit():
    """A grpcio server allowing 5 concurrent streams (grpc.max_concurrent_streams) and 100 calls at
    once through sluice: every call succeeds (streams over the limit are refused with
    REFUSED_STREAM, not processed, and must be sent again until they fit)."""
    need_modules()
    srv = GrpcServer(options=[("grpc.max_concurrent_streams", 5)])
    log = os.path.join(tmp_dir(), "access.log")
    sl = start(srv.address, access_log=log, workers=1)
    ch = channel(sl)
    slow = method(ch, "unary_unary", "Slow")
    futs = [slow.future(b"0.3", timeout=30) for _ in range(100)]
    codes = []
    for f in futs:
        try:
            f.result()
            codes.append("OK")
        except grpc.RpcError as e:
            codes.append("%s %s" % (e.code(), e.details()))
    harness.wait_until(lambda: len(h2_frames.access_lines(log)) >= 100, 10)
    lines = h2_frames.access_lines(log)
    bad = [(x["status"], x.get("grpc_status"), x["attempts"], x["flags"], x.get("detail")) for x in lines
           if x["status"] != 200]
    check(codes == ["OK"] * 100, "100 calls at once, the server allowing 5 streams: all OK",
          "%d failed: %r; access log: %r" % (100 - codes.count("OK"), sorted(set(codes))[:3], bad[:2]))
    hu.stop_and_check(sl)


def case_no_healthy_endpoint():
    """A cluster whose only endpoint fails its (tcp) health check, panic mode off: a call is
    answered by sluice with UNAVAILABLE and its reason, without trying the endpoint; the access
    log says 503 with grpc_status 14 and the flag no_healthy_upstream."""
    need_modules()
    _, dead = harness.free_port_holder()
    log = os.path.join(tmp_dir(), "access.log")
    lst = h2_frames.h2_listener(cluster="grpc", access_log=log)
    hc = {"type": "tcp", "interval": "100ms", "jitter": "0ms", "unhealthy_threshold": 1, "healthy_threshold": 1,
          "initial_state": "unhealthy"}
    sl = hu.start_sluice([lst], [hu.cluster("grpc", ["127.0.0.1:%d" % dead], protocol="http2", health_check=hc,
                                            panic_threshold=0)], workers=1)
    ch = channel(sl)
    got = error_of(lambda: method(ch, "unary_unary", "Unary")(b"x", timeout=10))
    check(got == (grpc.StatusCode.UNAVAILABLE, "no healthy endpoint in cluster grpc", ()),
          "UNAVAILABLE 'no healthy endpoint in cluster grpc'", repr(got))
    harness.wait_until(lambda: len(h2_frames.access_lines(log)) >= 1, 5)
    lines = h2_frames.access_lines(log)
    got = [(x["status"], x.get("grpc_status"), x["flags"]) for x in lines]
    check(got == [(503, 14, ["no_healthy_upstream"])], "the access log: 503, grpc_status 14, [no_healthy_upstream]",
          json.dumps(lines))
    hu.stop_and_check(sl)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_unary_and_metadata, case_streaming_calls, case_status_codes_exact,
                       case_trailers_only_frames, case_deadline, case_grpc_timeout_enforced_by_sluice,
                       case_unavailable_when_server_stopped, case_retry_on_unavailable, case_bidi_flow_control,
                       case_concurrent_calls_balanced, case_route_timeout_shorter_than_deadline,
                       case_bidi_ping_pong, case_burst_over_server_stream_limit, case_no_healthy_endpoint])

#!/usr/bin/env python3
"""HTTP/2 conformance of an http listener with an `http2` block, frame by frame (RFC 9113,
RFC 7541): each row sends a raw-frame scenario with h2_frames.py and asserts the exact frame
and error code sluice answers with (GOAWAY for connection errors, RST_STREAM for stream
errors, a response otherwise), and that the connection or the listener goes on serving where
it should. Requests go to an HTTP/1.1 backend (http_backend.py, echo as JSON), so rows also
check what the upstream received: method, path, Host from :authority, joined cookies, bodies.
Also: the preface on a prior-knowledge listener (HTTP/2 or HTTP/1.1 on the same port), ALPN
h2 on a TLS listener, flow control of a 1 MiB response and a 200 KiB upload, access log
lines and the HTTP/2 counters."""

import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info, soft_check  # noqa: E402
from http_backend import HttpBackend, header_values, pattern_sha256  # noqa: E402
import http_util as hu  # noqa: E402
import h2_frames as h2  # noqa: E402
from h2_frames import H2Client, error_name  # noqa: E402

T = 5.0  # seconds any single answer may take (an ASan build on a busy 2-core machine)


# --------------------------------------------------------------------------
# helpers


def start(http2=None, workers=1, access_log=None, tls=None, http=None):
    h2.require_modules()
    b = HttpBackend("b")
    kw = {"tls": tls} if tls else {}
    if http:
        kw["http"] = http
    s = h2.SluiceH2([h2.h2_listener(http2=http2, access_log=access_log, **kw)], [hu.cluster("app", [b])],
                    workers=workers)
    return s, b


def client(s, **kw):
    c = H2Client(s.port(), timeout=T, **kw)
    c.handshake()
    return c


def expect_goaway(c, code, what):
    """A connection error: GOAWAY with exactly `code`, then the connection closes."""
    g = c.wait_goaway(T)
    ok = soft_check(g is not None and g.error_code == code,
                    "%s: GOAWAY %s" % (what, error_name(code)),
                    "got GOAWAY %s\n%s" % (error_name(g.error_code) if g else "none", c.transcript()))
    how = c.wait_closed(T)
    soft_check(how in ("eof", "reset"), "%s: sluice closes the connection after the GOAWAY" % what,
               "connection %r\n%s" % (how, c.transcript()))
    return ok


def expect_rst(c, sid, code, what, still_serves=True):
    """A stream error: RST_STREAM with exactly `code` on sid, no GOAWAY, and (still_serves)
    a GET on the same connection still gets 200."""
    r = c.wait_rst(sid, T)
    ok = soft_check(r is not None and r.error_code == code and c.goaway_code() is None,
                    "%s: RST_STREAM %s on stream %d" % (what, error_name(code), sid),
                    "got %s\n%s" % (error_name(r.error_code) if r else "no RST_STREAM", c.transcript()))
    if still_serves:
        nsid = c.request("GET", "/after")
        resp = c.response(nsid, T)
        soft_check(resp.status == 200 and resp.ended, "%s: the connection still serves (GET → 200)" % what,
                   resp.describe() + "\n" + c.transcript())
    return ok


def upstream_saw(b, target):
    got = b.requests_for(lambda x: x["target"] == target)
    return got


def served_on_new_connection(s, what):
    c = client(s)
    sid = c.request("GET", "/alive")
    r = c.response(sid, T)
    c.close()
    check(r.status == 200, "%s: a new connection is served (GET → 200)" % what, r.describe())


def fields(block_pairs):
    return b"".join(h2.hpack_literal(k, v) for k, v in block_pairs)


def request_block(method="GET", path="/", authority="test.local", extra=(), scheme="http", drop=()):
    pairs = [(":method", method), (":scheme", scheme), (":authority", authority), (":path", path)]
    pairs = [p for p in pairs if p[0] not in drop] + list(extra)
    return fields(pairs)


def stream_error_row(s, what, block, code=h2.PROTOCOL_ERROR, end_stream=True):
    c = client(s)
    sid = c.request(block=block, end_stream=end_stream)
    expect_rst(c, sid, code, what)
    c.close()


# --------------------------------------------------------------------------
# cases


def case_good_requests():
    """A GET gets :status 200 with the upstream's body; what the upstream saw: method, path,
    Host from :authority, cookie crumbs joined; te: trailers accepted; a 1 MiB response and a
    200 KiB upload flow through the windows; HEAD and 204 end without DATA."""
    s, b = start()
    c = client(s)
    check(c.server_settings.get(h2.MAX_CONCURRENT_STREAMS) == 100,
          "sluice's SETTINGS announce MAX_CONCURRENT_STREAMS 100 (the default)", repr(c.server_settings))
    sid = c.request("GET", "/hello?x=1", authority="app.example", headers=[("x-test", "one")])
    r = c.response(sid, T)
    check(r.status == 200 and r.ended, "GET /hello: :status 200, stream ended", r.describe())
    body = r.json()
    hs = body["headers"]
    check(body["method"] == "GET" and body["target"] == "/hello?x=1" and body["version"] == "HTTP/1.1",
          "the upstream received GET /hello?x=1 over HTTP/1.1", repr(body))
    check(header_values(hs, "host") == ["app.example"] and header_values(hs, "x-test") == ["one"],
          "the upstream received Host: app.example (from :authority) and x-test: one", repr(hs))
    check(r.header("content-type") == "application/json" and r.header("connection") is None,
          "the response carries the upstream's content-type and no connection-specific field", repr(r.headers))

    sid = c.request("GET", "/cookies", headers=[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")])
    r = c.response(sid, T)
    check(r.status == 200 and header_values(r.json()["headers"], "cookie") == ["a=1; b=2; c=3"],
          "three cookie crumbs reach the upstream as one 'cookie: a=1; b=2; c=3' (RFC 9113 §8.2.3)",
          r.describe())

    sid = c.request("GET", "/te", headers=[("te", "trailers")])
    r = c.response(sid, T)
    check(r.status == 200 and r.reset is None, "te: trailers is accepted: 200", r.describe())

    sid = c.request("GET", "/bytes/1048576")
    r = c.response(sid, 30)
    check(r.status == 200 and r.ended and len(r.body) == 1048576 and
          hashlib.sha256(r.body).hexdigest() == pattern_sha256(1048576),
          "a 1 MiB response arrives whole through the flow-control windows (sha256)",
          "%s, %d DATA frames" % (r.describe(), r.data_frames))
    check(max(len(f.data) for f in c.frames if f.type == h2.DATA and f.stream_id == sid) <= 16384,
          "no DATA frame is larger than our SETTINGS_MAX_FRAME_SIZE (16384)", "")

    upload = bytes(i % 253 for i in range(200 * 1024))
    sid = c.request("POST", "/sink", headers=[("content-length", str(len(upload)))], end_stream=False)
    sent = c.send_body(sid, upload, timeout=20)
    r = c.response(sid, 20)
    check(sent == len(upload) and r.status == 200 and
          r.json().get("body_sha256") == hashlib.sha256(upload).hexdigest(),
          "a 200 KiB upload (more than the 64 KiB initial windows) reaches the upstream whole",
          "sent %d; %s" % (sent, r.describe()))

    sid = c.request("POST", "/chunky", end_stream=False)
    c.send_body(sid, b"no length given")
    r = c.response(sid, T)
    check(r.status == 200 and r.json()["body"] == "no length given",
          "a body without content-length reaches the upstream (re-framed for HTTP/1.1)", r.describe())

    sid = c.request("POST", "/trailers", end_stream=False)
    c.send_body(sid, b"abc", end_stream=False)
    c.send(h2.headers_frames(sid, c.encoder.encode([("x-checksum", "900150983cd24fb0")]), end_stream=True))
    r = c.response(sid, T)
    check(r.status == 200 and r.json()["body"] == "abc" and r.json()["chunked"] and
          r.json()["trailers"] == ["x-checksum: 900150983cd24fb0"],
          "request trailers reach the upstream as chunked trailers", r.describe())

    sid = c.request("HEAD", "/bytes/500")
    r = c.response(sid, T)
    check(r.status == 200 and r.ended and len(r.body) == 0, "HEAD: 200 and no body", r.describe())
    sid = c.request("GET", "/status/204")
    r = c.response(sid, T)
    check(r.status == 204 and r.ended and len(r.body) == 0, "204: no body", r.describe())
    c.close()
    hu.stop_and_check(s.sl)


def case_preface():
    """On a prior-knowledge listener a connection that starts with the preface is HTTP/2 and one
    that starts otherwise is HTTP/1.1; the magic followed by anything but SETTINGS is a
    connection error; a wrong magic is served as HTTP/1.1 (what llhttp makes of it)."""
    s, b = start()
    r = hu.request_once(s.port(), "GET", "/h1")
    check(r.status == 200 and r.version == "HTTP/1.1", "an HTTP/1.1 GET on the prior-knowledge listener: 200",
          r.describe())

    c = H2Client(s.port(), timeout=T)
    c.send(h2.PREFACE + h2.ping_frame(b"12345678"))
    expect_goaway(c, h2.PROTOCOL_ERROR, "magic then PING instead of SETTINGS (RFC 9113 §3.4)")

    c = H2Client(s.port(), timeout=T)
    c.send(h2.PREFACE + h2.settings_frame(), timeout=T)
    c.send(h2.frame(h2.HEADERS, h2.END_HEADERS | h2.END_STREAM, 1, request_block(path="/split")))
    rr = c.response(1, T)
    check(rr.status == 200, "preface, SETTINGS and HEADERS in one write: 200 (no wait for the SETTINGS ACK)",
          rr.describe() + "\n" + c.transcript())

    # the first bytes look like the preface and then differ
    got, how = hu.raw_exchange(s.port(), b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", timeout=T)
    info("a wrong magic got %r (%s)" % (got[:120], how))
    # not the preface, so HTTP/1.1: a request line "PRI * HTTP/2.0" names a version sluice does
    # not speak over HTTP/1 (RFC 9110 §15.6.6)
    check(got.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n") and how in ("eof", "reset"),
          "a wrong magic ('PRI * HTTP/2.0' then XX): HTTP/1.1 505 and the connection closes", repr(got[:300]))
    check(not upstream_saw(b, "*"), "nothing reached the upstream for it", repr(b.stats()))
    served_on_new_connection(s, "after the bad prefaces")
    hu.stop_and_check(s.sl)


def case_connection_errors():
    """Connection errors: GOAWAY with the exact code and the connection closes; the listener
    goes on serving."""
    s, b = start()
    rows = [
        ("DATA on stream 0", lambda c: c.send(h2.data_frame(0, b"x")), h2.PROTOCOL_ERROR),
        ("HEADERS on an even stream id (2)",
         lambda c: c.send(h2.headers_frames(2, request_block())), h2.PROTOCOL_ERROR),
        ("HEADERS on stream 0", lambda c: c.send(h2.headers_frames(0, request_block())), h2.PROTOCOL_ERROR),
        ("a frame larger than SETTINGS_MAX_FRAME_SIZE (16385-byte DATA)",
         lambda c: (c.request("POST", "/big", end_stream=False), c.send(h2.data_frame(1, b"x" * 16385))),
         h2.FRAME_SIZE_ERROR),
        ("a 16385-byte HEADERS frame",
         lambda c: c.send(h2.frame(h2.HEADERS, h2.END_HEADERS | h2.END_STREAM, 1,
                                   request_block(extra=[("x-pad", "p" * 16400)]))),
         h2.FRAME_SIZE_ERROR),
        # RFC 9113 §5.1.1: an unexpected stream identifier is a connection error PROTOCOL_ERROR.
        ("a stream id lower than one already used (5 then 3)",
         lambda c: (c.request("GET", "/a", stream_id=5), c.request("GET", "/b", stream_id=3)), h2.PROTOCOL_ERROR),
        ("CONTINUATION without HEADERS",
         lambda c: c.send(h2.frame(h2.CONTINUATION, h2.END_HEADERS, 1, request_block())), h2.PROTOCOL_ERROR),
        ("a PING between HEADERS and its CONTINUATION",
         lambda c: c.send(h2.frame(h2.HEADERS, h2.END_STREAM, 1, request_block()) + h2.ping_frame()),
         h2.PROTOCOL_ERROR),
        ("RST_STREAM on an idle stream (7)", lambda c: c.send(h2.rst_stream_frame(7, h2.CANCEL)), h2.PROTOCOL_ERROR),
        ("RST_STREAM of 5 bytes", lambda c: (c.request("GET", "/delay/3000", stream_id=1),
                                            c.send(h2.frame(h2.RST_STREAM, 0, 1, b"\0\0\0\x08\0"))),
         h2.FRAME_SIZE_ERROR),
        ("WINDOW_UPDATE on an idle stream (9)", lambda c: c.send(h2.window_update_frame(9, 100)), h2.PROTOCOL_ERROR),
        ("WINDOW_UPDATE with increment 0 on the connection",
         lambda c: c.send(h2.window_update_frame(0, 0)), h2.PROTOCOL_ERROR),
        ("WINDOW_UPDATE making the connection window exceed 2^31-1",
         lambda c: c.send(h2.window_update_frame(0, 0x7FFFFFFF)), h2.FLOW_CONTROL_ERROR),
        # nghttp2 treats a zero increment on a stream as a connection error: RFC 9113 §6.9 names a
        # stream error, and §5.4.1 lets an endpoint treat any stream error as a connection error.
        ("WINDOW_UPDATE with increment 0 on an open stream",
         lambda c: (c.request("GET", "/delay/3000"), c.send(h2.window_update_frame(1, 0))), h2.PROTOCOL_ERROR),
        ("an HPACK index past both tables (62 with an empty dynamic table)",
         lambda c: c.send(h2.headers_frames(1, h2.hpack_indexed(2) + h2.hpack_indexed(62))), h2.COMPRESSION_ERROR),
        ("an HPACK index 0",
         lambda c: c.send(h2.headers_frames(1, h2.hpack_indexed(0))), h2.COMPRESSION_ERROR),
        ("an HPACK dynamic table size update above SETTINGS_HEADER_TABLE_SIZE (4096 → 8192)",
         lambda c: c.send(h2.headers_frames(1, h2.hpack_int(8192, 5, 0x20) + request_block())),
         h2.COMPRESSION_ERROR),
        ("a PUSH_PROMISE from the client",
         lambda c: c.send(h2.frame(h2.PUSH_PROMISE, h2.END_HEADERS, 1, b"\0\0\0\x02" + request_block())),
         h2.PROTOCOL_ERROR),
        ("a HEADERS that depends on itself",
         lambda c: c.send(h2.frame(h2.HEADERS, h2.END_HEADERS | h2.END_STREAM | h2.PRIORITY_FLAG, 1,
                                   b"\0\0\0\x01\x0f" + request_block())), h2.PROTOCOL_ERROR),
        ("DATA on an idle stream (11)", lambda c: c.send(h2.data_frame(11, b"x")), h2.PROTOCOL_ERROR),
        # RFC 9113 §5.1 names a stream error STREAM_CLOSED for DATA on a half-closed (remote)
        # stream; nghttp2 makes it a connection error with that code (§5.4.1 allows it).
        ("DATA after END_STREAM on a stream whose response is pending",
         lambda c: (c.request("GET", "/delay/1500"), c.send(h2.data_frame(1, b"late"))), h2.STREAM_CLOSED),
        ("padding longer than the DATA payload",
         lambda c: (c.request("POST", "/p", end_stream=False),
                    c.send(h2.frame(h2.DATA, h2.PADDED, 1, b"\x09abc"))), h2.PROTOCOL_ERROR),
    ]
    for what, send, code in rows:
        c = client(s)
        send(c)
        expect_goaway(c, code, what)
        c.close()
    served_on_new_connection(s, "after %d connection errors" % len(rows))
    hu.stop_and_check(s.sl)


def case_settings_and_ping():
    """SETTINGS: our SETTINGS is acknowledged, bad values are connection errors with the code
    RFC 9113 §6.5.2 names; PING: an ACK with the same payload, wrong sizes are errors."""
    s, b = start()
    c = H2Client(s.port(), timeout=T)
    c.preface([(h2.HEADER_TABLE_SIZE, 4096), (h2.ENABLE_PUSH, 0), (h2.MAX_CONCURRENT_STREAMS, 10)])
    check(c.wait_settings_ack(1, T), "the SETTINGS of our preface is acknowledged (SETTINGS with ACK)",
          c.transcript())
    check(c.server_settings_seen and c.server_settings.get(h2.MAX_FRAME_SIZE) == 16384 and
          c.server_settings.get(h2.MAX_HEADER_LIST_SIZE) == 65536,
          "sluice's SETTINGS: MAX_FRAME_SIZE 16384 and MAX_HEADER_LIST_SIZE 65536 (the defaults)",
          repr(c.server_settings))
    c.send(h2.settings_frame([(h2.INITIAL_WINDOW_SIZE, 100000)]))
    check(c.wait_settings_ack(2, T), "a second SETTINGS is acknowledged too", c.transcript())
    c.send(h2.ping_frame(b"\x01\x02\x03\x04\x05\x06\x07\x08"))
    p = c.wait_ping_ack(b"\x01\x02\x03\x04\x05\x06\x07\x08", T)
    check(p is not None, "PING gets a PING ACK with the same 8 bytes", c.transcript())
    c.send(h2.ping_frame(b"\x01\x02\x03\x04\x05\x06\x07\x08", ack=True))
    sid = c.request("GET", "/after-ping")
    check(c.response(sid, T).status == 200 and c.find(lambda f: f.type == h2.PING and "ACK" not in f.flags) is None,
          "an unsolicited PING ACK is ignored (no answer, connection serves)", c.transcript())
    c.close()

    rows = [
        ("SETTINGS_ENABLE_PUSH 2", h2.settings_frame([(h2.ENABLE_PUSH, 2)]), h2.PROTOCOL_ERROR),
        ("SETTINGS_INITIAL_WINDOW_SIZE 2^31", h2.settings_frame([(h2.INITIAL_WINDOW_SIZE, 0x80000000)]),
         h2.FLOW_CONTROL_ERROR),
        ("SETTINGS_MAX_FRAME_SIZE 16383", h2.settings_frame([(h2.MAX_FRAME_SIZE, 16383)]), h2.PROTOCOL_ERROR),
        ("SETTINGS_MAX_FRAME_SIZE 2^24", h2.settings_frame([(h2.MAX_FRAME_SIZE, 1 << 24)]), h2.PROTOCOL_ERROR),
        ("SETTINGS with a 5-byte payload", h2.frame(h2.SETTINGS, 0, 0, b"\0\x02\0\0\0"), h2.FRAME_SIZE_ERROR),
        ("SETTINGS ACK with a payload", h2.frame(h2.SETTINGS, h2.ACK, 0, b"\0\x02\0\0\0\0"), h2.FRAME_SIZE_ERROR),
        ("SETTINGS on stream 1", h2.frame(h2.SETTINGS, 0, 1, b""), h2.PROTOCOL_ERROR),
        ("PING with 7 bytes", h2.frame(h2.PING, 0, 0, b"1234567"), h2.FRAME_SIZE_ERROR),
        ("PING on stream 1", h2.frame(h2.PING, 0, 1, b"12345678"), h2.PROTOCOL_ERROR),
        ("GOAWAY on stream 1", h2.frame(h2.GOAWAY, 0, 1, b"\0" * 8), h2.PROTOCOL_ERROR),
    ]
    for what, data, code in rows:
        c = client(s)
        c.send(data)
        expect_goaway(c, code, what)
        c.close()

    # an unknown setting and an unknown frame type are ignored (RFC 9113 §6.5.2, §5.5)
    c = client(s)
    c.send(h2.settings_frame([(0xFF0A, 7)]) + h2.frame(0xFA, 0xFF, 0, b"extension"))
    sid = c.request("GET", "/after-unknown")
    r = c.response(sid, T)
    check(r.status == 200 and c.goaway_code() is None, "an unknown setting and an unknown frame type are ignored",
          c.transcript())
    # a client GOAWAY: sluice finishes and closes
    c.send(h2.goaway_frame(sid, h2.NO_ERROR))
    how = c.wait_closed(T)
    check(how in ("eof", "reset"), "after the client's GOAWAY (NO_ERROR) sluice closes the idle connection",
          "%r\n%s" % (how, c.transcript()))
    hu.stop_and_check(s.sl)


def case_stream_errors():
    """Stream errors: RST_STREAM with the exact code, the connection goes on serving, and the
    upstream never sees the malformed request."""
    s, b = start()
    before = b.stats()["requests"]
    stream_error_row(s, "missing :path", request_block(path="/missing-path", drop=(":path",)))
    stream_error_row(s, "missing :method", request_block(path="/missing-method", drop=(":method",)))
    stream_error_row(s, "missing :scheme", request_block(path="/missing-scheme", drop=(":scheme",)))
    stream_error_row(s, "an empty :path", request_block(path=""))
    stream_error_row(s, "a duplicate :path", request_block(path="/dup", extra=[(":path", "/dup2")]))
    stream_error_row(s, "an unknown pseudo-header (:foo)", request_block(path="/pseudo", extra=[(":foo", "x")]))
    stream_error_row(s, "a pseudo-header after a regular field",
                     fields([(":method", "GET"), (":scheme", "http"), ("x-a", "1"), (":authority", "t"),
                             (":path", "/late")]))
    stream_error_row(s, "a response pseudo-header (:status) in a request",
                     request_block(path="/status-in-req", extra=[(":status", "200")]))
    stream_error_row(s, "an uppercase field name (X-Upper)", request_block(path="/upper", extra=[("X-Upper", "v")]))
    for name, value in [("connection", "keep-alive"), ("keep-alive", "timeout=5"), ("proxy-connection", "keep-alive"),
                        ("transfer-encoding", "chunked"), ("upgrade", "websocket"), ("te", "gzip")]:
        stream_error_row(s, "connection-specific field '%s: %s'" % (name, value),
                         request_block(path="/hop", extra=[(name, value)]))
    stream_error_row(s, "a field value with a newline", request_block(path="/nl", extra=[("x-bad", "a\nb")]))
    stream_error_row(s, "Host and :authority disagreeing",
                     request_block(path="/host", authority="a.example", extra=[("host", "b.example")]))
    check(not b.requests_for(lambda x: x["target"] in ("/missing-method", "/dup", "/late", "/upper", "/hop", "/nl",
                                                       "/host", "/pseudo", "/status-in-req")),
          "no malformed request reached the upstream", repr([x["target"] for x in b.records[before:]]))

    # a header list over max_header_list_size (64 KiB): 431, and the connection serves on
    c = client(s)
    sid = c.request(block=request_block(path="/big-head", extra=[("x-big-%d" % i, "b" * 7000) for i in range(10)]))
    r = c.response(sid, T)
    check(r.status == 431 and r.ended and not upstream_saw(b, "/big-head"),
          "a 70 KB header list (max_header_list_size 64 KiB): 431, not forwarded", r.describe() + "\n" +
          c.transcript(6))
    sid = c.request("GET", "/after-431")
    check(c.response(sid, T).status == 200, "the connection serves the next request", c.transcript(6))
    c.close()

    # a matching Host is fine
    c = client(s)
    sid = c.request(block=request_block(path="/host-ok", authority="a.example", extra=[("host", "a.example")]))
    r = c.response(sid, T)
    check(r.status == 200 and header_values(r.json()["headers"], "host") == ["a.example"],
          "Host equal to :authority: 200, the upstream sees one Host", r.describe())

    # content-length disagreeing with the DATA
    sid = c.request("POST", "/cl-short", headers=[("content-length", "10")], end_stream=False)
    c.send(h2.data_frame(sid, b"12345", end_stream=True))
    expect_rst(c, sid, h2.PROTOCOL_ERROR, "content-length 10 with 5 bytes of DATA")
    sid = c.request("POST", "/cl-long", headers=[("content-length", "3")], end_stream=False)
    c.send(h2.data_frame(sid, b"12345", end_stream=True))
    expect_rst(c, sid, h2.PROTOCOL_ERROR, "content-length 3 with 5 bytes of DATA")
    sid = c.request("GET", "/cl-nodata", headers=[("content-length", "4")])
    expect_rst(c, sid, h2.PROTOCOL_ERROR, "content-length 4 and END_STREAM on the HEADERS")

    # WINDOW_UPDATE overflowing a stream's window (its response is on its way)
    sid = c.request("GET", "/delay/1500")
    c.send(h2.window_update_frame(sid, 0x7FFFFFFF))
    expect_rst(c, sid, h2.FLOW_CONTROL_ERROR, "WINDOW_UPDATE making a stream window exceed 2^31-1")
    c.close()

    # trailers with a pseudo-header, trailers without END_STREAM
    c = client(s)
    sid = c.request("POST", "/tr", end_stream=False)
    c.send(h2.data_frame(sid, b"abc") + h2.headers_frames(sid, fields([(":path", "/x")]), end_stream=True))
    expect_rst(c, sid, h2.PROTOCOL_ERROR, "a pseudo-header in trailers")
    sid = c.request("POST", "/tr2", end_stream=False)
    c.send(h2.data_frame(sid, b"abc") + h2.headers_frames(sid, fields([("x-t", "1")]), end_stream=False))
    expect_rst(c, sid, h2.PROTOCOL_ERROR, "a trailer section without END_STREAM")
    c.close()
    hu.stop_and_check(s.sl)


def case_concurrency_limit():
    """max_concurrent_streams: 2. Before the client acknowledged the SETTINGS, a third stream is
    refused (RST_STREAM REFUSED_STREAM, retryable) and the first two finish; after the ACK,
    nghttp2 treats a third as a connection error (GOAWAY PROTOCOL_ERROR), which RFC 9113 §5.1.2
    with §5.4.1 allows."""
    s, b = start(http2={"max_concurrent_streams": 2})
    c = H2Client(s.port(), timeout=T, auto_ack_settings=False)
    c.preface()
    ids = [c.request("GET", "/delay/800/%d" % i) for i in range(3)]
    r3 = c.wait_rst(ids[2], T)
    check(r3 is not None and r3.error_code == h2.REFUSED_STREAM,
          "3 streams with a limit of 2 (SETTINGS not yet acknowledged): the third gets RST_STREAM REFUSED_STREAM",
          c.transcript())
    r1, r2 = c.response(ids[0], T), c.response(ids[1], T)
    check(r1.status == 200 and r2.status == 200, "the first two streams are answered (200, 200)",
          r1.describe() + "\n" + r2.describe())
    check(not upstream_saw(b, "/delay/800/2"), "the refused stream never reached the upstream", "")
    c.close()

    c = client(s)
    check(c.server_settings.get(h2.MAX_CONCURRENT_STREAMS) == 2, "SETTINGS_MAX_CONCURRENT_STREAMS 2 announced",
          repr(c.server_settings))
    ids = [c.request("GET", "/delay/800/a%d" % i) for i in range(2)]
    for sid in ids:  # the two answers free their slots
        c.response(sid, T)
    ids = [c.request("GET", "/delay/800/b%d" % i) for i in range(2)]
    c.request("GET", "/delay/800/b2")
    expect_goaway(c, h2.PROTOCOL_ERROR, "a third concurrent stream after the SETTINGS ACK")
    hu.stop_and_check(s.sl)


def case_tls_alpn():
    """A TLS listener with an http2 block: ALPN h2 gets HTTP/2, http/1.1 (or no ALPN) HTTP/1.1,
    and a bad preface over h2 is a GOAWAY PROTOCOL_ERROR."""
    import tls_pki
    srv = tls_pki.leaf(["localhost"], ["127.0.0.1"])
    tls = {"certificates": [{"certificate_chain": srv.chain, "private_key": srv.key}]}
    s, b = start(tls=tls, http2={"prior_knowledge": False})
    c = H2Client(s.port(), tls=True, alpn=("h2", "http/1.1"), timeout=T)
    check(c.alpn == "h2", "ALPN offers h2, http/1.1: sluice chooses h2", repr(c.alpn))
    c.handshake()
    sid = c.request("GET", "/tls", authority="localhost", scheme="https")
    r = c.response(sid, T)
    check(r.status == 200 and r.json()["target"] == "/tls", "GET over TLS h2: 200", r.describe())
    xf = header_values(r.json()["headers"], "x-forwarded-proto")
    info("x-forwarded-proto seen by the upstream: %r" % xf)
    c.close()

    c = H2Client(s.port(), tls=True, alpn=("http/1.1",), timeout=T)
    check(c.alpn == "http/1.1", "ALPN offers only http/1.1: sluice chooses http/1.1", repr(c.alpn))
    c.send(hu.build_request("GET", "/tls-h1", host="localhost"))
    resp = hu.read_response(hu.SockReader(c.sock))
    check(resp.status == 200 and resp.version == "HTTP/1.1", "HTTP/1.1 over the same TLS listener: 200",
          resp.describe())
    c.close()

    c = H2Client(s.port(), tls=True, alpn=("h2",), timeout=T)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    expect_goaway(c, h2.PROTOCOL_ERROR, "HTTP/1.1 bytes after ALPN h2 (not the preface)")
    hu.stop_and_check(s.sl)


def case_access_log_and_metrics():
    """Access log lines of HTTP/2 requests say "protocol":"HTTP/2" and their stream id; the
    HTTP/2 counters count connections, streams, resets by each side and GOAWAYs exactly."""
    path = os.path.join(harness_tmp(), "access.log")
    s, b = start(access_log=path)
    c = client(s)
    ids = [c.request("GET", "/log/%d" % i) for i in range(3)]
    for sid in ids:
        check(c.response(sid, T).status == 200, "GET /log on stream %d: 200" % sid, c.transcript())
    # one stream the client resets, one stream sluice resets
    rid = c.request("GET", "/delay/2000/reset-by-client")
    c.send(h2.rst_stream_frame(rid, h2.CANCEL))
    bad = c.request(block=request_block(path="/upper", extra=[("X-Upper", "1")]))
    c.wait_rst(bad, T)
    sid = c.request("GET", "/log/last")
    check(c.response(sid, T).status == 200, "a GET after the resets: 200", c.transcript())
    c.close()
    c2 = client(s)
    c2.send(h2.data_frame(0, b"x"))
    c2.wait_goaway(T)
    c2.close()

    def log_lines():
        return [e for e in h2.access_lines(path) if str(e.get("target", "")).startswith("/log/")]
    harness.wait_until(lambda: len(log_lines()) >= 4, T)
    lines = log_lines()
    info("access log line: %r" % (lines[0] if lines else None))
    by_path = {e.get("target"): e for e in lines}
    check(len(lines) == 4 and all(e.get("protocol") == "HTTP/2" for e in lines),
          "4 access log lines for the /log requests, each with \"protocol\":\"HTTP/2\"", repr(lines)[:2000])
    check([by_path.get("/log/%d" % i, {}).get("stream") for i in range(3)] == ids and
          by_path.get("/log/last", {}).get("stream") == sid,
          "each line carries its stream id (%r and %d)" % (ids, sid), repr(lines)[:2000])

    def counters():
        return (s.metric("sluice_http2_connections_total", listener="web"),
                s.metric("sluice_http2_streams_total", listener="web"),
                s.metric("sluice_http2_resets_total", listener="web", by="client"),
                s.metric("sluice_http2_resets_total", listener="web", by="sluice"),
                s.metric("sluice_http2_goaways_sent_total", listener="web"))
    # streams count request heads that nghttp2 accepted: the stream with an uppercase field
    # name is reset before sluice sees a request (counted as a reset by sluice, not a stream)
    want = (2.0, 5.0, 1.0, 1.0, 1.0)
    got = harness.wait_until(lambda: counters() == want and counters(), T) or counters()
    check(got == want,
          "connections 2, streams 5, resets by client 1 and by sluice 1, GOAWAYs sent 1",
          "got %r\n%s" % (got, s.metrics_excerpt()))
    reqs = sum(v for (n, ls), v in s.metrics().items() if n == "sluice_http_requests_total" and
               ("listener", "web") in ls)
    check(reqs >= 4, "sluice_http_requests_total counts the HTTP/2 requests (>= 4: %g)" % reqs,
          s.metrics_excerpt("sluice_http_requests"))
    hu.stop_and_check(s.sl)


def case_flow_control_per_stream():
    """SETTINGS_INITIAL_WINDOW_SIZE 0: no stream gets DATA until its window opens. A stream
    whose window stays shut holds only itself: a second stream given window completes
    beside it, and the first completes once its window opens (RFC 9113 §6.9)."""
    s, b = start()
    c = H2Client(s.port(), timeout=T, auto_window=False)
    c.handshake(settings=[(h2.INITIAL_WINDOW_SIZE, 0)])
    c.send(h2.window_update_frame(0, 1 << 20))  # the connection window is not the limit
    a = c.request("GET", "/bytes/100000")
    bb = c.request("GET", "/bytes/20000")
    ra, rb = c.streams[a], c.streams[bb]
    c.wait(lambda f: False, T, until=lambda: ra.status is not None and rb.status is not None)
    c.wait(lambda f: f.type == h2.DATA, 0.5)
    check(ra.status == 200 and rb.status == 200 and ra.data_frames == 0 and rb.data_frames == 0,
          "both heads arrive, no DATA while the stream windows are 0", c.transcript(8))
    c.send(h2.window_update_frame(bb, 20000))
    c.wait(lambda f: False, T, until=lambda: rb.ended)
    check(rb.ended and len(rb.body) == 20000 and len(ra.body) == 0,
          "the second stream, given 20000 bytes of window, completes; the first still has nothing",
          "%s\n%s" % (rb.describe(), ra.describe()))
    c.send(h2.window_update_frame(a, 100000))
    c.wait(lambda f: False, T, until=lambda: ra.ended)
    check(ra.ended and len(ra.body) == 100000, "the first completes once its window opens", ra.describe())
    hu.stop_and_check(s.sl)


class TrailerBackend(harness.TcpServer):
    """Answers every request with a chunked body and a trailer section, keep-alive."""

    def handle(self, conn):
        reader = hu.SockReader(conn)
        while True:
            try:
                reader.read_until(b"\r\n\r\n", 1 << 20)
            except Exception:
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n"
                         b"4\r\nbody\r\n0\r\nx-checksum: 42\r\n\r\n")


def case_response_trailers():
    """An upstream's chunked trailers reach the HTTP/2 client as a trailing HEADERS frame with
    END_STREAM after the DATA (RFC 9113 §8.1)."""
    h2.require_modules()
    up = TrailerBackend()
    s = h2.SluiceH2([h2.h2_listener()], [hu.cluster("app", [up.address])])
    c = client(s)
    sid = c.request("GET", "/t")
    r = c.response(sid, T)
    hs = [f for f in c.frames if f.type == h2.HEADERS and f.stream_id == sid]
    check(r.status == 200 and bytes(r.body) == b"body" and r.trailers == [("x-checksum", "42")] and len(hs) == 2 and
          "END_STREAM" in hs[1].flags,
          "body, then the trailers x-checksum: 42 in a HEADERS frame with END_STREAM", c.transcript(8))
    c.close()
    hu.stop_and_check(s.sl)


def goaways(c):
    return [f for f in c.frames if f.type == h2.GOAWAY]


def case_connection_lifecycle():
    """The connection's end, the HTTP/2 way (RFC 9113 §6.8): SIGTERM sends a GOAWAY with the
    largest stream id, then one naming the last stream processed; the stream in flight
    finishes and the connection closes; max_connection_age and max_requests_per_connection
    drain the same way; an idle connection gets GOAWAY NO_ERROR at keepalive_timeout; a
    client that does not answer keep-alive PINGs is closed after ping_timeout."""
    import signal
    s, b = start()
    c = client(s)
    sid = c.request("GET", "/delay/1500/drain")
    harness.wait_until(lambda: upstream_saw(b, "/delay/1500/drain"), T)
    s.sl.signal(signal.SIGTERM)
    r = c.response(sid, T)
    how = c.wait_closed(T)
    gs = goaways(c)
    check(len(gs) == 2 and gs[0].last_stream_id == 0x7FFFFFFF and gs[0].error_code == h2.NO_ERROR and
          gs[1].last_stream_id == sid and gs[1].error_code == h2.NO_ERROR,
          "SIGTERM: GOAWAY NO_ERROR with last stream 2^31-1, then GOAWAY NO_ERROR with last stream %d" % sid,
          c.transcript())
    check(r.status == 200 and r.ended and how in ("eof", "reset"),
          "the stream in flight finishes (200), then the connection closes", r.describe() + "\n" + c.transcript())
    rc = s.sl.wait_exit(15)
    harness.check_clean_exit(s.sl, rc, "sluice exits 0 after the drain")

    s, b = start(http2={"max_connection_age": "1s"})
    c = client(s)
    sid = c.request("GET", "/age")
    c.response(sid, T)
    c.wait(lambda f: False, 5, until=lambda: len(goaways(c)) >= 2 or c.closed)
    how = c.wait_closed(T)
    gs = goaways(c)
    check(len(gs) == 2 and gs[0].last_stream_id == 0x7FFFFFFF and gs[1].last_stream_id == sid and
          all(g.error_code == h2.NO_ERROR for g in gs) and how in ("eof", "reset"),
          "max_connection_age 1s: the two GOAWAYs (NO_ERROR), then the connection closes", c.transcript())
    hu.stop_and_check(s.sl)

    s, b = start(http={"keepalive_timeout": "1s", "max_requests_per_connection": 3})
    c = client(s)
    ids = [c.request("GET", "/n/%d" % i) for i in range(3)]
    rs = [c.response(sid, T) for sid in ids]
    c.wait(lambda f: False, 5, until=lambda: c.closed)
    gs = goaways(c)
    check([r.status for r in rs] == [200, 200, 200] and gs and gs[-1].last_stream_id == ids[-1] and
          gs[-1].error_code == h2.NO_ERROR and c.closed in ("eof", "reset"),
          "max_requests_per_connection 3: three answers, GOAWAY NO_ERROR naming stream %d, close" % ids[-1],
          c.transcript())
    c = client(s)
    sid = c.request("GET", "/idle")
    c.response(sid, T)
    t0 = time.monotonic()
    g = c.wait(lambda f: f.type == h2.GOAWAY, 10)
    took = time.monotonic() - t0
    how = c.wait_closed(T)
    check(g is not None and g.error_code == h2.NO_ERROR and g.last_stream_id == sid and 0.5 <= took <= 5 and
          how in ("eof", "reset"),
          "keepalive_timeout 1s: an idle connection gets GOAWAY NO_ERROR (%.1f s) and closes" % took,
          c.transcript())
    hu.stop_and_check(s.sl)

    s, b = start(http2={"ping_interval": "500ms", "ping_timeout": "1s"})
    c = client(s)
    p = c.wait(lambda f: f.type == h2.PING and "ACK" not in f.flags, 5)
    check(p is not None, "ping_interval 500ms: sluice sends a PING to a silent client", c.transcript())
    c.wait(lambda f: False, 5, until=lambda: c.goaway_code() is not None)
    check(c.closed is None and c.goaway_code() is None, "the PING answered (ACK): the connection stays open",
          c.transcript())
    c.close()
    c = client(s, auto_ack_ping=False)
    t0 = time.monotonic()
    how = c.wait_closed(10)
    took = time.monotonic() - t0
    check(how in ("eof", "reset") and 1.0 <= took <= 6,
          "a client that never ACKs the PING is closed after ping_interval + ping_timeout (%.1f s)" % took,
          c.transcript())
    hu.stop_and_check(s.sl)


def harness_tmp():
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="sluice-h2-")
    harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_good_requests, case_preface, case_connection_errors, case_settings_and_ping,
                       case_stream_errors, case_concurrency_limit, case_tls_alpn, case_flow_control_per_stream, case_response_trailers,
                       case_connection_lifecycle,
                       case_access_log_and_metrics])

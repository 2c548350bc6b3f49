#!/usr/bin/env python3
"""Fields a proxy must not forward, RFC 9110 §6.5.1 and RFC 9113 §3.1:
- trailer fields that frame, route, authenticate or control a message (Content-Length,
  Host, Authorization, Cookie, Connection and the fields it names, ...) are dropped from the
  forwarded trailer section, in both directions; other trailers pass; the request log flags
  the request trailer_dropped;
- a request asking to upgrade to h2c is served as plain HTTP/1.1: the backend sees neither
  Upgrade nor HTTP2-Settings, no 101 or tunnel follows, and the connection carries the next
  request."""

import os
import re
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
from http_backend import HttpBackend, header_values  # noqa: E402
import http_util as hu  # noqa: E402

FORBIDDEN = [("Content-Length", "5"), ("Transfer-Encoding", "chunked"), ("Host", "evil.example"),
             ("Connection", "X-Hop"), ("X-Hop", "1"), ("Keep-Alive", "timeout=5"),
             ("Proxy-Connection", "keep-alive"), ("TE", "trailers"), ("Trailer", "X-Checksum"),
             ("Upgrade", "h2c"), ("Content-Encoding", "gzip"), ("Content-Type", "text/html"),
             ("Content-Range", "bytes 0-1/2"), ("Authorization", "Basic eDp5"),
             ("Proxy-Authorization", "Basic eDp5"), ("Cookie", "a=b"), ("Set-Cookie", "a=b"),
             ("Expect", "100-continue"), ("Max-Forwards", "3"), ("Cache-Control", "no-store")]
ALLOWED = [("X-Checksum", "abc123"), ("Server-Timing", "db;dur=53")]
# The request parser itself rejects a Transfer-Encoding trailer (400); the others parse.
REQUEST_FORBIDDEN = [f for f in FORBIDDEN if f[0] != "Transfer-Encoding"]


def trailer_block(fields):
    return b"".join(b"%s: %s\r\n" % (n.encode(), v.encode()) for n, v in fields)


def start(endpoints):
    return hu.start_sluice([hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])],
                           [hu.cluster("app", endpoints)])


def case_request_trailers_filtered():
    b = HttpBackend("a")
    sl = start([b])
    c = hu.Client(sl.port("web"))
    c.send(b"POST /echo HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n0\r\n" + trailer_block(ALLOWED[:1] + REQUEST_FORBIDDEN + ALLOWED[1:]) + b"\r\n")
    r = c.read_response()
    c.close()
    check(r.status == 200 and r.json()["body"] == "hello", "the chunked POST with trailers is forwarded: 200",
          r.describe())
    got = r.json()["trailers"]
    want = ["%s: %s" % f for f in ALLOWED]
    check(got == want, "the backend received exactly the allowed trailers %r" % want, repr(got))
    harness.wait_until(lambda: any(x["target"] == "/echo" for x in hu.request_log(sl)), 5)
    flags = [x["flags"] for x in hu.request_log(sl) if x["target"] == "/echo"]
    check(flags == ["trailer_dropped"], "the request log flags it exactly trailer_dropped", repr(flags))
    stop_and_check_dropped(sl, len(REQUEST_FORBIDDEN))


def stop_and_check_dropped(sl, n):
    """Stops sluice; its exit summary counts exactly n dropped trailer fields."""
    hu.stop_and_check(sl)
    lines = sl.find_lines("listener web: ")
    check(len(lines) == 1 and re.search(r", trailer fields dropped %d(,|$)" % n, lines[0]),
          "the exit summary counts the %d dropped trailer fields" % n, "\n".join(lines))


def trailer_backend():
    """A backend answering every request with a chunked body and a trailer section."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def serve(conn):
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                piece = conn.recv(4096)
                if not piece:
                    return
                data += piece
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n"
                         b"Connection: close\r\n\r\n4\r\nbody\r\n0\r\n" +
                         trailer_block(FORBIDDEN[:3] + ALLOWED[:1] + FORBIDDEN[3:] + ALLOWED[1:]) + b"\r\n")

    def loop():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
    return srv


def case_response_trailers_filtered():
    srv = trailer_backend()
    sl = start(["127.0.0.1:%d" % srv.getsockname()[1]])
    c = hu.Client(sl.port("web"))
    c.send(hu.build_request("GET", "/t", host="t.test"))
    r = c.read_response()
    c.close()
    check(r.status == 200 and r.body == b"body" and r.framing == "chunked",
          "the chunked response reaches the client with its body", r.describe())
    want = ["%s: %s" % f for f in ALLOWED]
    check(r.trailers == want, "the client received exactly the allowed trailers %r" % want, repr(r.trailers))
    harness.wait_until(lambda: any(x["target"] == "/t" for x in hu.request_log(sl)), 5)
    flags = [x["flags"] for x in hu.request_log(sl) if x["target"] == "/t"]
    check(flags == ["trailer_dropped"], "the request log flags it exactly trailer_dropped", repr(flags))
    stop_and_check_dropped(sl, len(FORBIDDEN))
    srv.close()


def case_h2c_upgrade_served_as_http11():
    b = HttpBackend("a")
    sl = start([b])
    c = hu.Client(sl.port("web"))
    c.send(b"GET /echo HTTP/1.1\r\nHost: t.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
           b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
    r = c.read_response()
    check(r.status == 200 and not r.interim, "GET with Upgrade: h2c is answered 200 (no 101)", r.describe())
    hs = r.json()["headers"]
    check(not header_values(hs, "upgrade") and not header_values(hs, "http2-settings") and
          not header_values(hs, "connection"),
          "the backend saw neither Upgrade, HTTP2-Settings nor Connection", repr(hs))
    check(r.json()["target"] == "/echo", "the backend got the request as plain HTTP/1.1", repr(r.json()))
    check(not r.header("connection"), "the response keeps the connection open", r.describe())
    # The connection goes on as HTTP/1.1: a second request with a body, on the same connection.
    c.send(b"POST /echo HTTP/1.1\r\nHost: t.test\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
           b"Content-Length: 5\r\n\r\nhello")
    r = c.read_response()
    check(r.status == 200 and r.json()["body"] == "hello",
          "a second h2c-asking request with a body on the same connection: 200, body forwarded",
          r.describe())
    c.close()
    recs = b.requests_for(lambda x: x["target"] == "/echo")
    check(len(recs) == 2, "two requests reached the backend", repr(recs))
    hu.stop_and_check(sl)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_request_trailers_filtered, case_response_trailers_filtered,
                       case_h2c_upgrade_served_as_http11])

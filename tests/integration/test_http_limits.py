#!/usr/bin/env python3
"""HTTP listener limits and timeouts: 431 (huge header, too many headers), 414 (huge URI),
413 (body over max_body_size, with Content-Length, chunked and Expect: 100-continue),
408 for a slowloris head (header_read_timeout) and a stalled body (body_idle_timeout),
keepalive_timeout, max_requests_per_connection (Connection: close on the Nth response),
405 for CONNECT."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
from http_backend import HttpBackend  # noqa: E402
import http_util as hu  # noqa: E402


def start(backend, http=None, route_extra=None, workers=1):
    route = {"match": {"prefix": "/"}, "cluster": "app"}
    route.update(route_extra or {})
    return hu.start_sluice([hu.simple_listener([route], http=http)], [hu.cluster("app", [backend])],
                           workers=workers)


def expect_status(sl, data, status, what, backend=None, closed=True, timeout=5):
    """Sends raw bytes; the response must have `status` (and close the connection when closed)."""
    got, how = hu.raw_exchange(sl.port("web"), data, timeout=timeout)
    try:
        r = hu.parse_responses(got)[0] if got else None
    except Exception:
        r = None
    desc = "request bytes (%d): %r\nreceived: %r (%s)" % (len(data), data[:300], got[:400], how)
    # soft checks: one wrong status does not hide the other limits' results
    harness.soft_check(r is not None and r.status == status, what, desc + "\n" + hu.log_tail(sl, 5))
    if closed:
        harness.soft_check(how == "eof" or how == "reset", "%d: sluice closes the connection" % status, desc)
    if backend is not None:
        harness.soft_check(backend.stats()["requests"] == 0, "%d: nothing reached the backend" % status,
                           repr(backend.stats()))
    return r


def case_431_414_configured():
    b = HttpBackend("a")
    sl = start(b, http={"max_request_head": "16KiB", "max_headers": 20, "max_uri_length": "2KiB"})
    expect_status(sl, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431,
                  "a 20000-byte header with max_request_head 16KiB: 431", b, closed=False)
    expect_status(sl, b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(25)) +
                  b"\r\n", 431, "25 headers with max_headers 20: 431", b, closed=False)
    expect_status(sl, b"GET /" + b"u" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414,
                  "a 3000-byte URI with max_uri_length 2KiB: 414", b, closed=False)
    r = hu.request_once(sl.port("web"), "GET", "/" + "u" * 1900, headers=[("X-H%d" % i, "v") for i in range(15)])
    check(r.status == 200, "a 1900-byte URI with 16 headers is accepted", r.describe())
    hu.stop_and_check(sl)


def case_431_414_defaults():
    # the defaults: 64 KiB head, 100 headers, 8 KiB URI
    b = HttpBackend("a")
    sl = start(b)
    expect_status(sl, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431,
                  "default limits: a 70000-byte header: 431", b, closed=False)
    expect_status(sl, b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(101)) +
                  b"\r\n", 431, "default limits: 102 headers: 431", b, closed=False)
    expect_status(sl, b"GET /" + b"u" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414,
                  "default limits: a 9000-byte URI: 414", b, closed=False)
    hu.stop_and_check(sl)


def case_413():
    b = HttpBackend("a")
    sl = start(b, route_extra={"max_body_size": "1KiB"})
    r = hu.request_once(sl.port("web"), "POST", "/ok", body=b"x" * 1024)
    check(r.status == 200 and r.json()["body_len"] == 1024, "a 1024-byte body with max_body_size 1KiB: 200",
          r.describe())
    expect_status(sl, hu.build_request("POST", "/big", body=b"x" * 2000), 413,
                  "Content-Length 2000 over max_body_size 1KiB: 413", closed=False)
    check(not b.requests_for(lambda x: x["target"] == "/big"), "the oversized request did not reach the backend",
          repr(b.stats()))
    # Expect: 100-continue with a too large length: 413 without a 100 Continue
    c = hu.Client(sl.port("web"), timeout=5)
    c.send(b"PUT /big-expect HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
    r = c.read_response()
    check(r.status == 413 and not r.interim, "Expect: 100-continue with Content-Length 5000: 413 and no 100 Continue",
          r.describe() + " interim=%r" % r.interim)
    # chunked body growing past the limit
    c = hu.Client(sl.port("web"), timeout=5)
    c.send(b"POST /big-chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
           hu.chunked(b"y" * 3000, 500))
    try:
        r = c.read_response()
        outcome = r.describe()
        ok = r.status == 413
    except Exception as e:
        outcome, ok = "no response: %r" % e, False
    check(ok, "a chunked body growing past max_body_size 1KiB: 413", outcome + "\n" + hu.log_tail(sl, 5))
    hu.stop_and_check(sl)
    # listener-wide default
    b = HttpBackend("a")
    sl = start(b, http={"max_body_size": "100"})
    expect_status(sl, hu.build_request("POST", "/big", body=b"x" * 101), 413,
                  "listener max_body_size 100: a 101-byte body gets 413", closed=False)
    hu.stop_and_check(sl)


def case_408_slowloris_head():
    b = HttpBackend("a")
    sl = start(b, http={"header_read_timeout": "500ms"})
    s = harness.connect(sl.port("web"), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    got = b""
    how = None
    # one header byte every 100 ms (the recv timeout paces it): the head never completes
    for _ in range(40):
        try:
            s.sendall(b"X")
        except OSError:
            how = "reset"
            break
        s.settimeout(0.1)
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            how = "reset"
            break
        if not data:
            how = "eof"
            break
        got += data
        if b"\r\n\r\n" in got:
            break
    rest, how2 = harness.recv_until_closed(s, 3)
    got += rest
    took = time.monotonic() - t0
    info("slowloris: %r after %.2f s" % (got[:60], took))
    check(got.startswith(b"HTTP/1.1 408"), "a head trickling in past header_read_timeout 500ms: 408",
          repr(got[:300]) + "\n" + hu.log_tail(sl, 5))
    check(0.4 <= took <= 2.0, "the 408 comes after %.2f s (timeout 500ms)" % took, "")
    check((how or how2) in ("eof", "reset"), "then sluice closes the connection", "how=%s/%s" % (how, how2))
    check(b"connection: close" in got.lower(), "the 408 carries Connection: close", repr(got[:300]))
    check(b.stats()["requests"] == 0, "nothing reached the backend", repr(b.stats()))
    # an idle connection that never sends anything is closed too
    s = harness.connect(sl.port("web"), timeout=5)
    how, took = harness.wait_closed(s, 3)
    check(how in ("eof", "reset") and took <= 2.0, "a silent new connection is closed after header_read_timeout "
          "(%s after %.2f s)" % (how, took), "")
    hu.stop_and_check(sl)


def case_408_body_idle():
    b = HttpBackend("a")
    sl = start(b, http={"body_idle_timeout": "500ms"})
    c = hu.Client(sl.port("web"), timeout=5)
    t0 = time.monotonic()
    c.send(b"POST /stall HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
    try:
        r = c.read_response()
        outcome = r.describe()
        ok = r.status == 408
    except Exception as e:
        outcome, ok = "no response: %r" % e, False
    took = time.monotonic() - t0
    check(ok and 0.4 <= took <= 2.0, "a body stalled past body_idle_timeout 500ms: 408 after %.2f s" % took,
          outcome + "\n" + hu.log_tail(sl, 5))
    how, _, _ = c.wait_closed(3)
    check(how in ("eof", "reset"), "then sluice closes the connection", how)
    hu.stop_and_check(sl)


def case_keepalive_timeout():
    b = HttpBackend("a")
    sl = start(b, http={"keepalive_timeout": "500ms"})
    c = hu.Client(sl.port("web"), timeout=5)
    r = c.request("GET", "/one")
    check(r.status == 200, "request: 200", r.describe())
    how, extra, took = c.wait_closed(3)
    check(how == "eof" and 0.4 <= took <= 2.0 and not extra,
          "idle keep-alive client connection closed after keepalive_timeout 500ms (%s after %.2f s)" % (how, took),
          repr(extra))
    hu.stop_and_check(sl)


def case_max_requests_per_connection():
    b = HttpBackend("a")
    sl = start(b, http={"max_requests_per_connection": 3})
    c = hu.Client(sl.port("web"), timeout=5)
    rs = [c.request("GET", "/n/%d" % i) for i in range(3)]
    check([r.status for r in rs] == [200, 200, 200], "three requests on one connection: 200",
          repr([r.status for r in rs]))
    check("close" not in rs[0].tokens("connection") and "close" not in rs[1].tokens("connection"),
          "responses 1 and 2 keep the connection open", rs[0].describe() + rs[1].describe())
    check("close" in rs[2].tokens("connection"), "the 3rd response carries Connection: close", rs[2].describe())
    how, extra, took = c.wait_closed(3)
    check(how == "eof" and not extra, "then sluice closes the connection", "%s %r" % (how, extra))
    # pipelined: the 4th request is not answered
    c = hu.Client(sl.port("web"), timeout=5)
    c.send(b"".join(hu.build_request("GET", "/p/%d" % i) for i in range(4)))
    rs = [c.read_response() for _ in range(3)]
    how, extra, took = c.wait_closed(3)
    check([r.status for r in rs] == [200] * 3 and "close" in rs[2].tokens("connection") and not extra and
          how == "eof", "4 pipelined requests: 3 answered, the last with Connection: close, then closed",
          repr(rs) + " then %s %r" % (how, extra[:200]))
    hu.stop_and_check(sl)


def case_connect_405():
    b = HttpBackend("a")
    sl = start(b)
    r = hu.request_once(sl.port("web"), "CONNECT", "example.com:443", host="example.com:443")
    check(r.status == 405, "CONNECT with allow_connect false: 405", r.describe())
    check(b.stats()["requests"] == 0, "nothing reached the backend", repr(b.stats()))
    hu.stop_and_check(sl)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_431_414_configured, case_431_414_defaults, case_413, case_408_slowloris_head, case_408_body_idle, case_keepalive_timeout,
                       case_max_requests_per_connection, case_connect_405])

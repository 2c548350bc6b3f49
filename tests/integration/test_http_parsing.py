#!/usr/bin/env python3
"""Strict request parsing: ambiguous or malformed requests (request smuggling vectors and
plain garbage) get 400 (an HTTP version other than 1.x: 505) with Connection: close and
never reach the backend; a well-formed
request on a fresh connection still works afterwards."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, soft_check  # noqa: E402
from http_backend import HttpBackend  # noqa: E402
import http_util as hu  # noqa: E402

BAD_REQUESTS = [
    ("Content-Length and Transfer-Encoding together",
     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("two different Content-Length headers",
     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    ("two equal Content-Length headers",
     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
    ("Content-Length with a sign", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello"),
    ("Content-Length not a number", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5a\r\n\r\nhello"),
    ("Transfer-Encoding not ending in chunked",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
    ("Transfer-Encoding: gzip alone", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
    ("Transfer-Encoding with an unknown coding 'xchunked'",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
    ("obs-fold (a header continued on the next line)",
     b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n"),
    ("space before the colon", b"GET / HTTP/1.1\r\nHost: x\r\nX-Space : v\r\n\r\n"),
    ("space before the colon of Transfer-Encoding",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
    ("bare LF line endings", b"GET / HTTP/1.1\nHost: x\n\n"),
    ("bare LF inside the head", b"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n"),
    ("bare CR inside a header value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\rc\r\n\r\n"),
    ("NUL in a header value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\x00c\r\n\r\n"),
    ("control character in a header value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\x01c\r\n\r\n"),
    ("invalid method characters", b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("invalid character in the target", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("DEL in the target", b"GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("HTTP/0.9 request line", b"GET /\r\n\r\n"),
    ("HTTP/2.0 in an HTTP/1 request line (505)", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", (505,)),
    ("HTTP/3.0 request line (505)", b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", (505,)),
    ("missing Host on HTTP/1.1", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n"),
    ("two Host headers", b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"),
    ("header without a name", b"GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n"),
    ("header without a colon", b"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n"),
    ("invalid chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n"),
    ("chunk data longer than its size",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n"),
    ("garbage instead of a request", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n"),
]


def case_bad_requests_400():
    b = HttpBackend("a")
    sl = hu.start_sluice([hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])],
                         [hu.cluster("app", [b])])
    port = sl.port("web")
    for row in BAD_REQUESTS:
        what, data = row[0], row[1]
        statuses = row[2] if len(row) > 2 else (400,)
        before = b.stats()["requests"]
        got, how = hu.raw_exchange(port, data, timeout=3)
        first_line = got.split(b"\r\n", 1)[0]
        head = got.split(b"\r\n\r\n", 1)[0].lower()
        detail = "request bytes: %r\nreceived: %r (%s)\nbackend requests: %d -> %d" % (
            data, got[:300], how, before, b.stats()["requests"])
        ok = (any(first_line.startswith(b"HTTP/1.1 %d " % st) for st in statuses) and
              b"connection: close" in head and how == "eof" and b.stats()["requests"] == before)
        soft_check(ok, "%s: %s, Connection: close, closed, backend untouched" % (
            what, " or ".join(str(st) for st in statuses)), detail)
    r = hu.request_once(port, "GET", "/fine")
    check(r.status == 200, "a well-formed request afterwards: 200", r.describe())
    hu.stop_and_check(sl)


# Host values outside RFC 3986 §3.2's authority grammar, and what sluice answers: 400 with
# the reason as the body, the backend untouched.
BAD_HOSTS = [
    (b"a b", b"invalid Host header: character 0x20 is not allowed in a host"),
    (b"example.com/x", b"invalid Host header: character '/' is not allowed in a host"),
    (b"user@example.com", b"invalid Host header: userinfo ('@') is not allowed"),
    (b"example.com:80a", b"invalid Host header: the port is not a number"),
    (b"example.com:65536", b"invalid Host header: the port is above 65535"),
    (b"[::1", b"invalid Host header: the IP literal has no ']'"),
    (b"[not-v6]", b"invalid Host header: the IP literal is not an IPv6 address"),
    (b"ex%zz", b"invalid Host header: '%' in the host is not followed by two hex digits"),
]
GOOD_HOSTS = [b"example.com", b"example.com:8080", b"10.1.2.3:80", b"[::1]:8080", b"[v7.x]",
              b"a_b~c-d.e!$&'()*+,;=", b"caf%C3%A9.example", b""]


def case_host_authority():
    b = HttpBackend("a")
    sl = hu.start_sluice([hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])],
                         [hu.cluster("app", [b])])
    port = sl.port("web")
    for host, reason in BAD_HOSTS:
        before = b.stats()["requests"]
        got, how = hu.raw_exchange(port, b"GET /h HTTP/1.1\r\nHost: " + host + b"\r\n\r\n", timeout=3)
        head, _, body = got.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        soft_check(status == b"HTTP/1.1 400 Bad Request" and body == reason + b"\n" and
                   b.stats()["requests"] == before,
                   "Host %r: 400 %r, backend untouched" % (host, reason),
                   "received: %r (%s)" % (got[:400], how))
    for host in GOOD_HOSTS:
        got, how = hu.raw_exchange(port, b"GET /h HTTP/1.1\r\nHost: " + host +
                                   b"\r\nConnection: close\r\n\r\n", timeout=3)
        soft_check(got.split(b"\r\n", 1)[0] == b"HTTP/1.1 200 OK", "Host %r: 200" % host,
                   "received: %r (%s)" % (got[:400], how))
    got, how = hu.raw_exchange(port, b"GET http://u@example.com/h HTTP/1.1\r\nHost: example.com\r\n\r\n",
                               timeout=3)
    head, _, body = got.partition(b"\r\n\r\n")
    check(head.split(b"\r\n", 1)[0] == b"HTTP/1.1 400 Bad Request" and
          body == b"invalid authority in the request target: userinfo ('@') is not allowed\n",
          "absolute-form target with userinfo: 400 with the reason", repr(got[:400]))
    hu.stop_and_check(sl)


def case_smuggling_pipeline():
    """A request trying to hide a second one in its body must not make the backend see two."""
    b = HttpBackend("a")
    sl = hu.start_sluice([hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])],
                         [hu.cluster("app", [b])])
    port = sl.port("web")
    hidden = b"GET /hidden HTTP/1.1\r\nHost: x\r\n\r\n"
    data = (b"POST /front HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n"
            b"0\r\n\r\n" % (5 + len(hidden))) + hidden
    got, how = hu.raw_exchange(port, data, timeout=3)
    check(not b.requests_for(lambda r: r["target"] == "/hidden"), "CL+TE smuggling: /hidden never reaches the backend",
          repr(got[:300]))
    # a legitimate pipelined pair still works
    c = hu.Client(port)
    c.send(hu.build_request("POST", "/one", body=b"abc") + hu.build_request("GET", "/two"))
    r1, r2 = c.read_response(), c.read_response()
    check(r1.status == 200 and r1.json()["body"] == "abc" and r2.json()["target"] == "/two",
          "a legitimate POST with body followed by a pipelined GET: both answered", repr((r1, r2)))
    hu.stop_and_check(sl)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_bad_requests_400, case_host_authority, case_smuggling_pipeline])

#!/usr/bin/env python3
"""HTTP routing and header handling: virtual hosts (exact, *.suffix, *), exact/prefix/regex
paths, method/header/query matches, direct responses, redirects, 404, prefix_rewrite,
header add/remove, X-Forwarded-*, X-Request-Id and hop-by-hop header removal."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
from http_backend import HttpBackend, header_values  # noqa: E402
import http_util as hu  # noqa: E402


def routing_sluice():
    a = HttpBackend("a")
    b = HttpBackend("b")
    api_routes = [
        {"match": {"path": "/exact"}, "cluster": "a"},
        {"match": {"regex": "^/v[0-9]+/items/.*"}, "cluster": "b"},
        {"match": {"prefix": "/m", "methods": ["POST", "PUT"]}, "cluster": "b"},
        {"match": {"prefix": "/m"}, "cluster": "a"},
        {"match": {"prefix": "/hm", "headers": [{"name": "x-canary", "value": "1"}]}, "cluster": "b"},
        {"match": {"prefix": "/hm", "headers": [{"name": "x-present"}]}, "cluster": "b"},
        {"match": {"prefix": "/hm"}, "cluster": "a"},
        {"match": {"prefix": "/q", "query": [{"name": "debug"}]}, "cluster": "b"},
        {"match": {"prefix": "/q", "query": [{"name": "mode", "value": "fast"}]}, "cluster": "b"},
        {"match": {"prefix": "/q"}, "cluster": "a"},
        {"match": {"prefix": "/rw/"}, "cluster": "a", "prefix_rewrite": "/inner/"},
        {"match": {"prefix": "/hdr"}, "cluster": "a",
         "request_headers_to_add": [{"name": "x-added", "value": "yes"}],
         "request_headers_to_remove": ["x-secret"],
         "response_headers_to_add": [{"name": "x-served-by", "value": "sluice"}],
         "response_headers_to_remove": ["server"]},
        {"match": {"path": "/health"}, "direct_response": {"status": 200, "body": "ok\n"}},
        {"match": {"path": "/teapot"}, "direct_response": {"status": 418, "body": "short and stout\n"}},
        {"match": {"path": "/gone"}, "direct_response": {"status": 404, "body": "gone here\n"}},
        {"match": {"prefix": "/old"}, "redirect": {"status": 301, "location": "http://example.com/new"}},
        {"match": {"prefix": "/echo"}, "cluster": "a"},
    ]
    vhosts = [
        hu.vhost("api", ["api.example.com"], api_routes),
        hu.vhost("wild", ["*.example.org"], [{"match": {"prefix": "/"},
                                              "direct_response": {"status": 200, "body": "wild\n"}}]),
        hu.vhost("default", ["*"], [{"match": {"prefix": "/"}, "cluster": "a"}]),
    ]
    trusted = hu.listener("trusted", [hu.vhost("all", ["*"], [{"match": {"prefix": "/"}, "cluster": "a"}])],
                          http={"trust_forwarded_headers": True, "generate_request_id": False})
    sl = hu.start_sluice([hu.listener("web", vhosts), trusted], [hu.cluster("a", [a]), hu.cluster("b", [b])])
    return sl, a, b


def get(sl, method, target, host="api.example.com", headers=None, body=None, listener="web"):
    return hu.request_once(sl.port(listener), method, target, headers=headers, body=body, host=host)


def served_by(r):
    if r.status != 200:
        return "status %d" % r.status
    try:
        return r.json()["backend"]
    except ValueError:
        return "non-json body %r" % r.body[:80]


def case_routes():
    sl, a, b = routing_sluice()
    cases = [
        ("GET", "/exact", {}, "a", "path /exact matches exactly"),
        ("GET", "/exact?x=1", {}, "a", "path match ignores the query string"),
        ("GET", "/v2/items/42", {}, "b", "regex ^/v[0-9]+/items/.* matches /v2/items/42"),
        ("GET", "/m/x", {}, "a", "GET /m/x skips the POST/PUT-only route"),
        ("POST", "/m/x", {}, "b", "POST /m/x takes the POST/PUT route"),
        ("PUT", "/m/x", {}, "b", "PUT /m/x takes the POST/PUT route"),
        ("GET", "/hm", {"x-canary": "1"}, "b", "header x-canary: 1 matches"),
        ("GET", "/hm", {"X-Canary": "2"}, "a", "header x-canary: 2 does not match the value 1"),
        ("GET", "/hm", {"X-Present": "anything"}, "b", "header presence match"),
        ("GET", "/hm", {}, "a", "no header: falls through to the plain /hm route"),
        ("GET", "/q?debug", {}, "b", "query presence ?debug"),
        ("GET", "/q?a=1&debug=0", {}, "b", "query presence among several parameters"),
        ("GET", "/q?mode=fast", {}, "b", "query value mode=fast"),
        ("GET", "/q?mode=slow", {}, "a", "query value mode=slow does not match"),
        ("GET", "/q", {}, "a", "no query: plain /q route"),
    ]
    for method, target, hdrs, want, what in cases:
        r = get(sl, method, target, headers=list(hdrs.items()), body=b"" if method in ("POST", "PUT") else None)
        check(served_by(r) == want, "%s %s -> %s (%s)" % (method, target, want, what), r.describe())
        if r.status == 200:
            check(r.json()["target"] == target, "backend got the target unchanged: %s" % target, r.json()["target"])
    # regex is a full match: /v2/items without the trailing part, and /xv2/items/1, do not match
    r = get(sl, "GET", "/v2/items")
    check(r.status == 404, "regex is a full match: /v2/items -> 404", r.describe())
    r = get(sl, "GET", "/nomatch")
    check(r.status == 404, "no route matches /nomatch -> 404", r.describe())
    r = get(sl, "GET", "/Exact")
    check(r.status == 404, "path matching is case-sensitive: /Exact -> 404", r.describe())
    harness.wait_until(lambda: any(x["target"] == "/Exact" for x in hu.request_log(sl)), 5)
    flags = {x["target"]: x["flags"] for x in hu.request_log(sl)
             if x["target"] in ("/v2/items", "/nomatch", "/Exact")}
    check(flags == {"/v2/items": "no_route", "/nomatch": "no_route", "/Exact": "no_route"},
          "each 404 without a route has exactly the flag no_route", repr(flags))
    hu.stop_and_check(sl)


def case_virtual_hosts():
    sl, a, b = routing_sluice()
    r = get(sl, "GET", "/exact", host="api.example.com:8080")
    check(served_by(r) == "a", "Host api.example.com:8080 selects vhost api (port ignored)", r.describe())
    r = get(sl, "GET", "/exact", host="API.Example.COM")
    check(served_by(r) == "a", "Host matching is case-insensitive", r.describe())
    r = get(sl, "GET", "/anything", host="x.example.org")
    check(r.status == 200 and r.body == b"wild\n", "Host x.example.org selects *.example.org", r.describe())
    r = get(sl, "GET", "/anything", host="a.b.example.org:81")
    check(r.status == 200 and r.body == b"wild\n", "Host a.b.example.org:81 selects *.example.org", r.describe())
    r = get(sl, "GET", "/exact", host="other.test")
    check(served_by(r) == "a" and r.json()["target"] == "/exact", "other hosts take the * vhost", r.describe())
    r = get(sl, "GET", "/health", host="other.test")
    check(served_by(r) == "a", "the * vhost does not see api's direct response for /health", r.describe())
    r = get(sl, "GET", "http://api.example.com/health", host="other.test")
    check(r.status == 200 and r.body == b"ok\n",
          "absolute-form target: its authority selects the vhost", r.describe())
    hu.stop_and_check(sl)


def case_direct_redirect_rewrite():
    sl, a, b = routing_sluice()
    r = get(sl, "GET", "/health")
    check(r.status == 200 and r.body == b"ok\n", "direct_response 200 'ok\\n'", r.describe())
    r = get(sl, "HEAD", "/health")
    check(r.status == 200 and r.header("content-length") == "3", "HEAD of a direct response: Content-Length 3",
          r.describe())
    r = get(sl, "GET", "/teapot")
    check(r.status == 418 and r.body == b"short and stout\n", "direct_response with status 418", r.describe())
    r = get(sl, "GET", "/old/page")
    check(r.status == 301 and r.header("location") == "http://example.com/new", "redirect 301 with Location",
          r.describe())
    r = get(sl, "GET", "/gone")
    check(r.status == 404 and r.body == b"gone here\n", "a configured direct_response 404 with its body",
          r.describe())
    check(a.stats()["requests"] == 0 and b.stats()["requests"] == 0, "no backend saw those requests",
          "a=%r b=%r" % (a.stats(), b.stats()))
    # Each local reply names exactly what it was (the whole flag list, in the request log).
    want = {("GET", "/health"): "direct_response", ("HEAD", "/health"): "direct_response",
            ("GET", "/teapot"): "direct_response", ("GET", "/old/page"): "redirect",
            ("GET", "/gone"): "direct_response"}
    got = {}
    harness.wait_until(lambda: len([x for x in hu.request_log(sl) if (x["method"], x["target"]) in want])
                       >= len(want), 5)
    for x in hu.request_log(sl):
        if (x["method"], x["target"]) in want:
            got[(x["method"], x["target"])] = x["flags"]
    check(got == want, "request log flags: a direct response (also a 404 one) is direct_response, a redirect "
          "is redirect, nothing else", "%r\n%s" % (got, hu.log_tail(sl)))
    r = get(sl, "GET", "/rw/deep/path?x=1")
    check(served_by(r) == "a" and r.json()["target"] == "/inner/deep/path?x=1",
          "prefix_rewrite /rw/ -> /inner/ seen by the backend, query kept", r.describe())
    hu.stop_and_check(sl)


def case_header_add_remove():
    sl, a, b = routing_sluice()
    r = get(sl, "GET", "/hdr", headers=[("X-Secret", "s3cr3t"), ("X-Keep", "k")])
    check(r.status == 200, "GET /hdr: 200", r.describe())
    hs = r.json()["headers"]
    check(header_values(hs, "x-added") == ["yes"], "request_headers_to_add: backend sees x-added: yes", repr(hs))
    check(not header_values(hs, "x-secret"), "request_headers_to_remove: backend does not see x-secret", repr(hs))
    check(header_values(hs, "x-keep") == ["k"], "other client headers pass through", repr(hs))
    check(r.header("x-served-by") == "sluice", "response_headers_to_add: client sees x-served-by: sluice",
          r.describe())
    check(not r.has("server"), "response_headers_to_remove: client does not see the backend's Server header",
          r.describe())
    check(r.header("x-backend") == "a", "other backend response headers pass through", r.describe())
    r = get(sl, "GET", "/echo")
    check(r.header("server") == "http_backend" and not r.has("x-served-by"),
          "other routes keep Server and get no x-served-by", r.describe())
    hu.stop_and_check(sl)


def case_forwarded_headers():
    sl, a, b = routing_sluice()
    r = get(sl, "GET", "/echo", headers=[("X-Forwarded-For", "1.2.3.4")])
    hs = r.json()["headers"]
    check(header_values(hs, "x-forwarded-for") == ["127.0.0.1"],
          "untrusted: X-Forwarded-For from the client replaced by the client IP", repr(hs))
    check(header_values(hs, "x-forwarded-proto") == ["http"], "X-Forwarded-Proto: http", repr(hs))
    check(header_values(hs, "x-forwarded-host") == ["api.example.com"], "X-Forwarded-Host: the client's Host",
          repr(hs))
    check(header_values(hs, "host") == ["api.example.com"], "Host passes through unchanged", repr(hs))
    r = get(sl, "GET", "/echo", listener="trusted", host="t.example",
            headers=[("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-Proto", "https")])
    hs = r.json()["headers"]
    xff = header_values(hs, "x-forwarded-for")
    check(len(xff) >= 1 and re.sub(r"\s", "", ",".join(xff)) == "1.2.3.4,127.0.0.1",
          "trusted: client IP appended to X-Forwarded-For (1.2.3.4, 127.0.0.1)", repr(xff))
    r = get(sl, "GET", "/echo", listener="trusted", host="t.example")
    hs = r.json()["headers"]
    check(header_values(hs, "x-forwarded-for") == ["127.0.0.1"], "trusted, none from the client: the client IP",
          repr(hs))
    hu.stop_and_check(sl)


def case_request_id():
    sl, a, b = routing_sluice()
    ids = set()
    for _ in range(3):
        r = get(sl, "GET", "/echo")
        v = header_values(r.json()["headers"], "x-request-id")
        check(len(v) == 1 and len(v[0]) >= 8, "X-Request-Id generated when absent: %s" % (v[0] if v else None),
              repr(r.json()["headers"]))
        ids.add(v[0])
    check(len(ids) == 3, "generated request ids are distinct", repr(ids))
    r = get(sl, "GET", "/echo", headers=[("X-Request-Id", "client-id-123")])
    check(header_values(r.json()["headers"], "x-request-id") == ["client-id-123"],
          "a client's X-Request-Id is kept as is", repr(r.json()["headers"]))
    r = get(sl, "GET", "/echo", listener="trusted", host="t.example")
    check(not header_values(r.json()["headers"], "x-request-id"),
          "generate_request_id: false adds none", repr(r.json()["headers"]))
    hu.stop_and_check(sl)


def case_hop_by_hop():
    sl, a, b = routing_sluice()
    r = get(sl, "GET", "/echo?hop=1", headers=[
        ("Connection", "keep-alive, X-Hop-Custom"), ("X-Hop-Custom", "secret"), ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"), ("Proxy-Connection", "keep-alive"), ("X-End-To-End", "1")])
    check(r.status == 200, "request with hop-by-hop headers: 200", r.describe())
    hs = r.json()["headers"]
    names = set(k.lower() for k, _ in hs)
    for h in ("x-hop-custom", "keep-alive", "te", "proxy-connection"):
        check(h not in names, "backend does not receive %s" % h, repr(hs))
    check(header_values(hs, "connection") in ([], ["keep-alive"]),
          "backend receives no client Connection tokens", repr(header_values(hs, "connection")))
    check(header_values(hs, "x-end-to-end") == ["1"], "end-to-end headers still arrive", repr(hs))
    for h in ("x-resp-hop", "proxy-connection"):
        check(not r.has(h), "client does not receive the backend's %s" % h, r.describe())
    check(r.header("keep-alive") != "timeout=60", "client does not receive the backend's Keep-Alive: timeout=60",
          r.describe())
    check("x-resp-hop" not in r.tokens("connection"), "the backend's Connection tokens are not forwarded",
          r.describe())
    # Upgrade on a request that is not an upgrade (no 'upgrade' Connection token)
    r = get(sl, "GET", "/echo", headers=[("Upgrade", "h2c")])
    check(r.status == 200 and not header_values(r.json()["headers"], "upgrade"),
          "a stray Upgrade header is not forwarded to the backend", r.describe())
    hu.stop_and_check(sl)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_routes, case_virtual_hosts, case_direct_redirect_rewrite, case_header_add_remove,
                       case_forwarded_headers, case_request_id, case_hop_by_hop])

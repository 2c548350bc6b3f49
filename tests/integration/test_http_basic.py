#!/usr/bin/env python3
"""HTTP listener basics with real clients: curl over HTTP/1.0 and 1.1, keep-alive reuse,
chunked and Expect: 100-continue uploads, HEAD, 204/304 without bodies, pipelining,
and a real nginx serving a static file through sluice."""

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
from http_backend import HttpBackend, pattern_sha256  # noqa: E402
import http_util as hu  # noqa: E402


def start(backend, routes=None, http=None, **kw):
    routes = routes or [{"match": {"prefix": "/"}, "cluster": "app"}]
    return hu.start_sluice([hu.simple_listener(routes, http=http)],
                           [hu.cluster("app", [backend])], **kw)


def url(sl, path):
    return "http://127.0.0.1:%d%s" % (sl.port("web"), path)


def case_curl_http11_keepalive_reuse():
    b = HttpBackend("a")
    sl = start(b)
    p = hu.curl(["-v", "-o", "/dev/null", "-o", "/dev/null", url(sl, "/one"), url(sl, "/two")])
    check(p.returncode == 0, "curl fetches two URLs", p.stderr[-2000:])
    check(p.stderr.count("Connected to") == 1 and "Re-using existing connection" in p.stderr,
          "curl -v reused its connection for the second URL", p.stderr[-3000:])
    def both_logged():
        got = [r for r in hu.request_log(sl) if r["target"] in ("/one", "/two")]
        return got if len(got) == 2 else None
    log = harness.wait_until(both_logged, 5)
    check(log and len(log) == 2 and log[0]["peer"] == log[1]["peer"] and
          all(r["status"] == 200 for r in log),
          "sluice logged both requests, 200, from the same client port", hu.log_tail(sl))
    recs = b.requests_for(lambda r: r["target"] in ("/one", "/two"))
    check([r["target"] for r in recs] == ["/one", "/two"] and all(r["version"] == "HTTP/1.1" for r in recs),
          "the backend received both requests in order over HTTP/1.1", repr(recs))
    check(recs[0]["conn"] == recs[1]["conn"], "sluice reused its upstream connection for the second request",
          repr([(r["conn"], r["conn_request"]) for r in recs]))
    hu.stop_and_check(sl)


def case_curl_http10():
    b = HttpBackend("a")
    sl = start(b)
    p = hu.curl(["-0", "-D", "-", url(sl, "/hello")])
    check(p.returncode == 0, "curl -0 (HTTP/1.0) succeeds", p.stderr)
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    check(head.split(b" ")[1] == b"200", "HTTP/1.0 request answered 200", head.decode("latin-1"))
    j = json.loads(body)
    check(j["target"] == "/hello" and j["method"] == "GET", "backend saw GET /hello", body[:300])
    # a chunked upstream response must reach an HTTP/1.0 client close-delimited (or with a length)
    n = 300000
    data, how = hu.raw_exchange(sl.port("web"), b"GET /stream/%d HTTP/1.0\r\nHost: x\r\n\r\n" % n, timeout=10)
    head, _, body = data.partition(b"\r\n\r\n")
    headers = hu.parse_head(head + b"\r\n\r\n")[1]
    check(head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0],
          "HTTP/1.0 GET of a chunked upstream response: 200", head.decode("latin-1"))
    check(not hu.header_tokens(headers, "transfer-encoding"),
          "no Transfer-Encoding in the response to the HTTP/1.0 client", head.decode("latin-1"))
    check(how == "eof", "sluice closes the HTTP/1.0 connection after the body", "ended by %s" % how)
    check(len(body) == n and hashlib.sha256(body).hexdigest() == pattern_sha256(n),
          "HTTP/1.0 client got exactly the %d streamed bytes, unchunked" % n,
          "got %d bytes; first bytes %r" % (len(body), body[:60]))
    hu.stop_and_check(sl)


def case_chunked_upload():
    b = HttpBackend("a")
    sl = start(b)
    path = os.path.join(sl.tmpdir, "upload.bin")
    payload = os.urandom(700 * 1024)
    with open(path, "wb") as f:
        f.write(payload)
    p = hu.curl(["-H", "Transfer-Encoding: chunked", "--data-binary", "@" + path, url(sl, "/up")])
    check(p.returncode == 0, "curl chunked upload succeeds", p.stderr)
    j = json.loads(p.stdout)
    check(j["body_len"] == len(payload) and j["body_sha256"] == hashlib.sha256(payload).hexdigest(),
          "backend received the %d-byte chunked upload intact" % len(payload),
          "backend saw %d bytes sha %s" % (j["body_len"], j["body_sha256"]))
    check(j["method"] == "POST", "method is POST at the backend", j["method"])
    # raw chunked request with chunk extensions and a trailer
    c = hu.Client(sl.port("web"))
    body = b"hello, chunked world" * 10
    req = (b"POST /up2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
           b"a;ext=1\r\n" + body[:10] + b"\r\n" + hu.chunked(body[10:], 37))
    c.send(req)
    r = c.read_response()
    check(r.status == 200 and r.json()["body"].encode("latin-1") == body,
          "raw chunked request with a chunk extension arrives intact", r.describe())
    hu.stop_and_check(sl)


def case_expect_100_continue():
    b = HttpBackend("a")
    sl = start(b)
    path = os.path.join(sl.tmpdir, "upload.bin")
    payload = os.urandom(200 * 1024)
    with open(path, "wb") as f:
        f.write(payload)
    p = hu.curl(["-v", "-H", "Expect: 100-continue", "--expect100-timeout", "20",
                 "--data-binary", "@" + path, url(sl, "/expect")])
    check(p.returncode == 0, "curl upload with Expect: 100-continue succeeds", p.stderr[-2000:])
    check("< HTTP/1.1 100 Continue" in p.stderr, "curl received HTTP/1.1 100 Continue", p.stderr[-3000:])
    j = json.loads(p.stdout)
    check(j["body_len"] == len(payload) and j["body_sha256"] == hashlib.sha256(payload).hexdigest(),
          "backend received the body intact", "backend saw %d bytes" % j["body_len"])
    # raw: the body is sent only after the interim response arrives
    c = hu.Client(sl.port("web"))
    body = b"x" * 5000
    c.send(b"PUT /expect2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
    c.reader.deadline = time.monotonic() + 5
    try:
        line = c.reader.read_until(b"\r\n\r\n", 4096)
    except Exception as e:  # timeout or close
        line = repr(e).encode()
    c.reader.deadline = None
    check(line == b"HTTP/1.1 100 Continue\r\n\r\n", "sluice sends exactly 'HTTP/1.1 100 Continue' before the body",
          repr(line))
    c.send(body)
    r = c.read_response()
    check(r.status == 200 and r.json()["body_len"] == 5000 and not r.interim,
          "then the final 200 with the body echoed", r.describe())
    hu.stop_and_check(sl)


def case_head_204_304():
    b = HttpBackend("a")
    sl = start(b)
    p = hu.curl(["-I", url(sl, "/bytes/5000")])
    check(p.returncode == 0 and b"200" in p.stdout.split(b"\r\n")[0], "curl -I answered 200",
          p.stdout.decode("latin-1") + p.stderr)
    check(b"content-length: 5000" in p.stdout.lower(), "HEAD response carries the backend's Content-Length: 5000",
          p.stdout.decode("latin-1"))
    c = hu.Client(sl.port("web"), timeout=3)
    # pipelined so any stray body byte after a bodiless response would break the next one
    c.send(hu.build_request("HEAD", "/bytes/5000") + hu.build_request("HEAD", "/stream/7000") +
           hu.build_request("GET", "/after-head"))
    r = c.read_response("HEAD")
    check(r.status == 200 and r.header("content-length") == "5000",
          "HEAD /bytes/5000: 200 with Content-Length 5000, no body", r.describe())
    r = c.read_response("HEAD")
    check(r.status == 200, "HEAD of a chunked resource: 200, no body", r.describe())
    r = c.read_response("GET")
    check(r.status == 200 and r.json()["target"] == "/after-head",
          "the request pipelined after two HEADs is answered correctly (no stray body bytes)", r.describe())
    for target, what in (("/status/204", "204"), ("/status/304", "304"),
                         ("/status/304?cl=1", "304 carrying Content-Length (RFC 9110 8.6) but no body")):
        c = hu.Client(sl.port("web"), timeout=3)
        c.send(hu.build_request("GET", target) + hu.build_request("GET", "/after"))
        req = hu.build_request("GET", target) + hu.build_request("GET", "/after")
        r = r2 = None
        try:
            r = c.read_response("GET")
            r2 = c.read_response("GET")
        except Exception as e:
            check(False, "%s then a pipelined GET: both answered within 3 s" % what,
                  "request bytes: %r\nfirst response: %s\nthen: %r, buffered %r\n%s" % (
                      req, r.describe() if r else None, e, bytes(c.reader.buf), hu.log_tail(sl, 4)))
        check(r.status == int(what[:3]) and not r.has("transfer-encoding") and
              (what[:3] != "204" or not r.has("content-length")),
              "%s: no body, no Transfer-Encoding%s" % (what, ", no Content-Length" if what == "204" else ""),
              r.describe())
        check(r2.status == 200 and r2.json()["target"] == "/after",
              "the GET after the %s is answered correctly" % what, r2.describe())
        how, extra, _ = c.wait_closed(0.2)
        check(not extra, "nothing else arrives on the connection", repr(extra[:200]))
    hu.stop_and_check(sl)


def case_pipelining_in_order():
    b = HttpBackend("a")
    sl = start(b)
    c = hu.Client(sl.port("web"))
    reqs = b"".join(hu.build_request("GET", "/delay/%d/p%d" % (d, i)) for i, d in enumerate([150, 0, 60, 0, 0]))
    c.send(reqs)
    got = [c.read_response().json()["target"] for _ in range(5)]
    want = ["/delay/%d/p%d" % (d, i) for i, d in enumerate([150, 0, 60, 0, 0])]
    check(got == want, "5 pipelined requests (first ones slow) answered in order", repr(got))
    hu.stop_and_check(sl)


def case_nginx_static_file():
    root = tempfile.mkdtemp(prefix="sluice-www-")
    harness.register_cleanup(lambda: shutil.rmtree(root, ignore_errors=True))
    data = os.urandom(3 * 1024 * 1024 + 12345)
    with open(os.path.join(root, "file.bin"), "wb") as f:
        f.write(data)
    with open(os.path.join(root, "small.txt"), "wb") as f:
        f.write(b"small static file\n")
    os.chmod(root, 0o755)
    try:
        ngx = hu.Nginx(root)
    except RuntimeError as e:
        check(False, "nginx starts", str(e))
    b = HttpBackend("a")
    routes = [{"match": {"prefix": "/static/"}, "cluster": "nginx", "prefix_rewrite": "/"},
              {"match": {"prefix": "/"}, "cluster": "app"}]
    sl = hu.start_sluice([hu.simple_listener(routes)],
                         [hu.cluster("app", [b]), hu.cluster("nginx", [ngx.address])])
    out = os.path.join(sl.tmpdir, "got.bin")
    p = hu.curl(["-o", out, "-w", "%{http_code} %{size_download}", url(sl, "/static/file.bin")])
    check(p.returncode == 0 and p.stdout.startswith(b"200 "), "curl GET of the nginx file through sluice: 200",
          p.stdout.decode() + p.stderr + "\n" + ngx.error_log()[-1000:])
    check(hu.sha256_file(out) == hashlib.sha256(data).hexdigest(),
          "sha256 of the downloaded file equals the file nginx serves (%d bytes)" % len(data),
          "downloaded %d bytes" % os.path.getsize(out))
    p = hu.curl(["-0", url(sl, "/static/small.txt")])
    check(p.returncode == 0 and p.stdout == b"small static file\n", "HTTP/1.0 GET of a small nginx file",
          repr(p.stdout) + p.stderr)
    p = hu.curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", url(sl, "/static/missing")])
    check(p.stdout == b"404", "nginx's 404 passes through", repr(p.stdout))
    check("GET /file.bin HTTP/1.1" in ngx.access_log(), "nginx saw the rewritten path /file.bin over HTTP/1.1",
          ngx.access_log()[-1000:])
    hu.stop_and_check(sl)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_curl_http11_keepalive_reuse, case_curl_http10, case_chunked_upload,
                       case_expect_100_continue, case_head_204_304, case_pipelining_in_order,
                       case_nginx_static_file])

#!/usr/bin/env python3
"""The admin endpoint: /live and /ready (503 `starting` while the first health round is
pending, 200 `ready` after it, 503 `draining` after SIGTERM, and the same lifecycle state in
the sluice_lifecycle_state gauges of /metrics), the exact 404/405 answers of
the drain API, keep-alive, a malformed request (400 and close), an oversized body (413),
and the exclusive admin port (a second sluice on the same port exits 1)."""

import os
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, soft_check  # noqa: E402
from http_backend import HttpBackend  # noqa: E402
import http_util as hu  # noqa: E402

ADMIN_RE = re.compile(r"admin listening on 127\.0\.0\.1:(\d+)")
TEXT = "text/plain; charset=utf-8"


def admin_config(clusters, admin="127.0.0.1:0", workers=2, extra=None, listeners=None):
    if listeners is None:
        listeners = [hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])]
    cfg = {"workers": workers, "log_level": "debug", "drain_timeout": "10s",
           "admin": {"address": admin}, "listeners": listeners, "clusters": clusters}
    cfg.update(extra or {})
    return harness.to_yaml(hu._quote(cfg)) + "\n"


class SluiceNoWait(harness.Sluice):
    """A Sluice whose constructor returns as soon as the process runs (not at `sluice ready`)."""

    def wait_ready(self, timeout):
        if getattr(self, "_constructed", False):
            return harness.Sluice.wait_ready(self, timeout)
        self._constructed = True


def admin_port(sl, timeout=10):
    line = sl.wait_log(ADMIN_RE, timeout)
    if not line:
        raise harness.CheckFailed_with("no 'admin listening on 127.0.0.1:PORT' line", sl.stderr_text())
    return int(ADMIN_RE.search(line).group(1))


def start(clusters, **kw):
    sl = harness.Sluice(admin_config(clusters, **kw))
    return sl, admin_port(sl)


def get(port, target, method="GET", body=None):
    return hu.request_once(port, method, target, body=body, host="admin", timeout=5)


LIFECYCLE_RE = re.compile(r'^sluice_lifecycle_state\{state="(\w+)"\} (\d+)$', re.M)


def lifecycle_gauges(port):
    """{state: value} of the sluice_lifecycle_state gauges on /metrics."""
    r = get(port, "/metrics")
    return {state: int(v) for state, v in LIFECYCLE_RE.findall(r.body.decode())}


def only(state):
    gauges = {"starting": 0, "ready": 0, "reloading": 0, "upgrading": 0, "draining": 0, "stopped": 0}
    gauges[state] = 1
    return gauges


def is_text(r, status, body):
    return (r.status == status and r.body == body.encode() and r.header("content-type") == TEXT and
            r.header("cache-control") == "no-store")


def case_live_ready_and_answers():
    b = HttpBackend("a")
    sl, ap = start([hu.cluster("app", [b])])
    lines = sl.stderr_text().splitlines()
    i_admin = next((i for i, l in enumerate(lines) if ADMIN_RE.search(l)), -1)
    i_ready = next((i for i, l in enumerate(lines) if "sluice ready" in l), -1)
    check(0 <= i_admin < i_ready, "'admin listening on 127.0.0.1:%d' is logged before 'sluice ready'" % ap,
          "\n".join(lines))
    r = get(ap, "/live")
    check(is_text(r, 200, "live\n"), "GET /live: 200 live, text/plain; charset=utf-8, Cache-Control: no-store",
          r.describe())
    r = get(ap, "/ready")
    check(is_text(r, 200, "ready\n"), "GET /ready after sluice ready: 200 ready", r.describe())

    # keep-alive: every answer below on one connection, in order
    c = hu.Client(ap, timeout=5)
    ep = "127.0.0.1:%d" % b.port
    table = [
        ("GET", "/live", 200, "live\n"),
        ("GET", "/ready", 200, "ready\n"),
        ("GET", "/nope", 404, "no such admin endpoint\n"),
        ("GET", "/dashboard/nope", 404, "no such admin endpoint\n"),  # / is the dashboard
        ("POST", "/clusters/x/endpoints/1.2.3.4:5/drain", 404, "no cluster named x\n"),
        ("POST", "/clusters/app/endpoints/1.2.3.4:5/drain", 404, "cluster app has no endpoint 1.2.3.4:5\n"),
        ("POST", "/clusters/app/endpoints/%s" % ep, 404, "expected /clusters/{cluster}/endpoints/{ip:port}/drain or .../undrain\n"),
        ("POST", "/clusters/app", 404, "expected /clusters/{cluster}/endpoints/{ip:port}/drain or .../undrain\n"),
        ("POST", "/clusters/app/drain", 404, "expected /clusters/{cluster}/endpoints/{ip:port}/drain or .../undrain\n"),
        ("POST", "/clusters/app/endpoints//drain", 404, "expected /clusters/{cluster}/endpoints/{ip:port}/drain or .../undrain\n"),
        ("GET", "/clusters/app/endpoints/%s/drain" % ep, 405, "use POST to drain an endpoint\n"),
        ("PUT", "/clusters/app/endpoints/%s/drain" % ep, 405, "use POST to drain an endpoint\n"),
        ("DELETE", "/clusters/app/endpoints/%s/drain" % ep, 405, "use POST to drain an endpoint\n"),
        ("GET", "/clusters/app/endpoints/%s/undrain" % ep, 405, "use POST to undrain an endpoint\n"),
        ("POST", "/clusters/app/endpoints/%s/drainage" % ep, 404,
         "expected /clusters/{cluster}/endpoints/{ip:port}/drain or .../undrain\n"),
    ]
    for method, target, status, body in table:
        r = c.request(method, target, host="admin", body=b"" if method in ("POST", "PUT") else None)
        check(is_text(r, status, body) and "close" not in r.tokens("connection"),
              "%s %s: %d %r, connection kept open" % (method, target, status, body), r.describe())
    check(not sl.find_lines("draining: no new requests"), "none of these drained anything",
          hu.log_tail(sl, 10))
    # the endpoint still serves (nothing was drained by the 404/405 answers)
    r = hu.request_once(sl.port("web"), "GET", "/still")
    check(r.status == 200, "the proxy still answers 200 through the endpoint", r.describe())
    # a real drain, still on the same admin connection
    r = c.request("POST", "/clusters/app/endpoints/%s/drain" % ep, host="admin", body=b"")
    check(is_text(r, 200, "endpoint %s of cluster app is draining\n" % ep),
          "POST .../endpoints/%s/drain: 200 with the exact body" % ep, r.describe())
    check(sl.wait_log("cluster app: endpoint %s draining: no new requests" % ep, 5),
          "log: 'cluster app: endpoint %s draining: no new requests'" % ep, hu.log_tail(sl, 10))
    r = hu.request_once(sl.port("web"), "GET", "/drained")
    check(r.status == 503, "its only endpoint draining, the proxy answers 503", r.describe())
    # and back
    r = c.request("POST", "/clusters/app/endpoints/%s/undrain" % ep, host="admin", body=b"")
    check(is_text(r, 200, "endpoint %s of cluster app takes new requests again\n" % ep),
          "POST .../endpoints/%s/undrain: 200 with the exact body" % ep, r.describe())
    check(sl.wait_log("cluster app: endpoint %s no longer draining: takes new requests again" % ep, 5),
          "log: 'cluster app: endpoint %s no longer draining: takes new requests again'" % ep, hu.log_tail(sl, 10))
    check(harness.wait_until(lambda: hu.request_once(sl.port("web"), "GET", "/back").status == 200, 3),
          "the proxy answers 200 through the endpoint again", hu.log_tail(sl, 10))
    r = c.request("GET", "/live", host="admin")
    check(is_text(r, 200, "live\n"), "the admin connection still answers afterwards", r.describe())
    c.close()
    # HTTP/1.0 without keep-alive: answered, then closed
    c = hu.Client(ap, timeout=5)
    r = c.request("GET", "/live", version="1.0", host="admin")
    how, extra, _ = c.wait_closed(3)
    check(is_text(r, 200, "live\n") and how == "eof" and not extra,
          "HTTP/1.0 GET /live: 200, then the connection is closed (%s)" % how, r.describe())
    c.close()
    hu.stop_and_check(sl)


def case_unknown_paths_sharing_a_prefix():
    """Paths that merely start with a known one are unknown paths too."""
    b = HttpBackend("a")
    sl, ap = start([hu.cluster("app", [b])])
    for target in ("/lively", "/live/x", "/readyz", "/ready/now"):
        r = get(ap, target)
        soft_check(is_text(r, 404, "no such admin endpoint\n"),
                   "GET %s: 404 no such admin endpoint" % target, r.describe())
    r = get(ap, "/live?verbose=1")
    check(is_text(r, 200, "live\n"), "GET /live?verbose=1 (a query): 200 live", r.describe())
    hu.stop_and_check(sl)


def case_malformed_and_oversized():
    b = HttpBackend("a")
    sl, ap = start([hu.cluster("app", [b])])
    for name, data in (("garbage request line", b"THIS IS NOT HTTP\r\n\r\n"),
                       ("header line without a colon", b"GET /live HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n"),
                       ("bad Content-Length", b"POST /live HTTP/1.1\r\nHost: a\r\nContent-Length: x1\r\n\r\n")):
        data, how = hu.raw_exchange(ap, data, timeout=3)
        try:
            rs = hu.parse_responses(data)
        except Exception as e:
            rs = []
            harness.info("unparsable answer %r: %r" % (data[:200], e))
        check(len(rs) == 1 and rs[0].status == 400 and how == "eof",
              "%s: one 400 answer, then the connection is closed (%s)" % (name, how), repr(data[:400]))
    # a malformed request after a good one on the same connection: the good one is answered
    data, how = hu.raw_exchange(ap, hu.build_request("GET", "/live", host="a") + b"BROKEN\r\n\r\n", timeout=3)
    rs = hu.parse_responses(data)
    check([r.status for r in rs] == [200, 400] and rs[0].body == b"live\n" and how == "eof",
          "good request then garbage: 200 live, 400, closed", repr(data[:400]))
    # a body over 64 KiB
    c = hu.Client(ap, timeout=5)
    body = b"x" * (64 * 1024 + 1)
    c.send(hu.build_request("POST", "/clusters/app/endpoints/127.0.0.1:%d/drain" % b.port, body=body, host="a"))
    r = c.read_response("POST")
    how, extra, _ = c.wait_closed(3)
    check(r.status == 413 and how in ("eof", "reset"),
          "a request body of 64 KiB + 1: 413, then closed (%s)" % how, r.describe())
    c.close()
    check(not sl.find_lines("draining: no new requests"), "the oversized drain request drained nothing",
          hu.log_tail(sl, 10))
    r = get(ap, "/live")
    check(r.status == 200 and r.body == b"live\n", "the admin endpoint still answers /live", r.describe())
    c = hu.Client(ap, timeout=5)
    body = b"y" * (64 * 1024)
    r = c.request("POST", "/nope", body=body, host="a")
    check(is_text(r, 404, "no such admin endpoint\n") and "close" not in r.tokens("connection"),
          "a body of exactly 64 KiB is accepted (404 for an unknown path, kept open)", r.describe())
    c.close()
    check(sl.alive(), "sluice is still running", hu.log_tail(sl))
    hu.stop_and_check(sl)


def hc(**kw):
    h = {"type": "http", "interval": "20s", "timeout": "10s", "healthy_threshold": 1,
         "unhealthy_threshold": 1, "http": {"path": "/health"}}
    h.update(kw)
    return h


def case_ready_starting_until_first_answer():
    # the only endpoint answers its health check after 1.5 s: until then /ready is 503 starting
    b = HttpBackend("slow", delay=1.5)
    sl = SluiceNoWait(admin_config([hu.cluster("app", [b], health_check=hc())], extra={"ready_timeout": "20s"}))
    ap = admin_port(sl)
    r = get(ap, "/ready")
    ready_seen = bool(sl.find_lines("sluice ready"))
    check(is_text(r, 503, "starting\n") and not ready_seen,
          "GET /ready while the first health check is pending: 503 starting ('sluice ready' not yet logged)",
          r.describe() + "\n" + sl.stderr_text())
    r = get(ap, "/live")
    check(is_text(r, 200, "live\n"), "GET /live while starting: 200 live", r.describe())
    g = lifecycle_gauges(ap)
    check(g == only("starting"), "/metrics while starting: sluice_lifecycle_state is 1 for starting only",
          repr(g))
    check(harness.wait_until(lambda: b.requests_for(lambda x: x["target"] == "/health"), 5),
          "the health check reached the backend", repr(b.stats()))
    r = get(ap, "/ready")
    check(is_text(r, 503, "starting\n"), "GET /ready while the health check is being answered: still 503 starting",
          r.describe())
    sl.wait_ready(10)
    lines = sl.stderr_text().splitlines()
    i_h = next((i for i, l in enumerate(lines) if "endpoint 127.0.0.1:%d is healthy" % b.port in l), -1)
    i_r = next((i for i, l in enumerate(lines) if "sluice ready" in l), -1)
    check(0 <= i_h < i_r, "the endpoint's first answer (healthy) is logged, then 'sluice ready'", "\n".join(lines))
    r = get(ap, "/ready")
    check(is_text(r, 200, "ready\n"), "GET /ready after 'sluice ready': 200 ready", r.describe())
    hu.stop_and_check(sl)


def case_ready_starting_until_ready_timeout():
    # the health check target accepts and never answers; ready_timeout (1s) ends the wait first
    hold = harness.HoldServer()
    sl = SluiceNoWait(admin_config([hu.cluster("app", [hold.address], health_check=hc())],
                                   extra={"ready_timeout": "1500ms"}))
    t0 = time.monotonic()
    ap = admin_port(sl)
    r = get(ap, "/ready")
    check(is_text(r, 503, "starting\n") and not sl.find_lines("sluice ready"),
          "GET /ready before ready_timeout: 503 starting", r.describe() + "\n" + sl.stderr_text())
    check(harness.wait_until(lambda: hold.accepted >= 1, 5), "the health checker connected to the silent server",
          "accepted %d" % hold.accepted)
    r = get(ap, "/ready")
    check(is_text(r, 503, "starting\n"), "GET /ready with the health check connected but unanswered: 503 starting",
          r.describe())
    sl.wait_ready(10)
    took = time.monotonic() - t0
    check(sl.find_lines("not every endpoint answered its first check in time; starting anyway"),
          "the ready_timeout warning is logged", hu.log_tail(sl, 10))
    check(1.2 <= took <= 4.0, "'sluice ready' after about ready_timeout 1500ms (%.2f s)" % took, hu.log_tail(sl, 10))
    r = get(ap, "/ready")
    check(is_text(r, 200, "ready\n"), "GET /ready after 'sluice ready': 200 ready", r.describe())
    rc = sl.stop()
    check(rc == 0, "sluice exits 0 on SIGTERM", hu.log_tail(sl))


def case_ready_draining_after_sigterm():
    b = HttpBackend("a")
    sl, ap = start([hu.cluster("app", [b])])
    r = get(ap, "/ready")
    check(is_text(r, 200, "ready\n"), "GET /ready: 200 ready", r.describe())
    g = lifecycle_gauges(ap)
    check(g == only("ready"), "/metrics: sluice_lifecycle_state is 1 for ready only", repr(g))
    busy = hu.Client(sl.port("web"), timeout=10)
    holder = {}

    def slow():
        try:
            holder["r"] = busy.request("GET", "/delay/1500/slow")
        except Exception as e:
            holder["e"] = e

    t = threading.Thread(target=slow, daemon=True)
    t.start()
    check(harness.wait_until(lambda: b.requests_for(lambda x: "/slow" in x["target"]), 5),
          "a slow request is in flight", repr(b.stats()))
    mark = sl.line_count()
    sl.signal(signal.SIGTERM)
    check(sl.wait_log("draining: stopped accepting", 5, mark), "sluice logs that it is draining", hu.log_tail(sl))
    r = get(ap, "/ready")
    check(is_text(r, 503, "draining\n"), "GET /ready while draining: 503 draining", r.describe())
    g = lifecycle_gauges(ap)
    check(g == only("draining"), "/metrics while draining: sluice_lifecycle_state is 1 for draining only",
          repr(g))
    check(sl.alive() and "r" not in holder, "(sluice was still draining the slow request at that moment)",
          repr(holder))
    r = get(ap, "/live")
    harness.info("GET /live while draining: %d %r" % (r.status, r.body))
    t.join(10)
    r = holder.get("r")
    check(r is not None and r.status == 200, "the slow request completes with 200", repr(holder))
    busy.close()
    rc = sl.wait_exit(10)
    harness.check_clean_exit(sl, rc)
    check(harness.wait_until(lambda: harness.is_refused(ap), 3), "after exit the admin port is closed", "")


def case_admin_port_is_exclusive():
    b = HttpBackend("a")
    sl, ap = start([hu.cluster("app", [b])])
    text = admin_config([hu.cluster("app", [b])], admin="127.0.0.1:%d" % ap)
    path = os.path.join(sl.tmpdir, "second.yaml")
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.Popen([harness.sluice_bin(), "run", "-c", path], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=harness.die_with_parent)

    def kill():
        if p.poll() is None:
            p.kill()
            p.wait(5)
    harness.register_cleanup(kill)
    try:
        out, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        kill()
        out, err = p.communicate()
    check(p.returncode == 1, "a second sluice with admin address 127.0.0.1:%d exits 1 (rc %r)" % (ap, p.returncode),
          err[-3000:])
    check(re.search(r"admin: bind 127\.0\.0\.1:%d: address already in use" % ap, err, re.I),
          "its stderr says 'admin: bind ...: address already in use'", err[-3000:])
    check("sluice ready" not in err, "it never reported ready", err[-3000:])
    check(re.search(r"sluice stopped: startup failed$", err, re.M), "it logs 'sluice stopped: startup failed'",
          err[-3000:])
    r = get(ap, "/live")
    check(is_text(r, 200, "live\n"), "the first sluice still answers on the admin port", r.describe())
    r = hu.request_once(sl.port("web"), "GET", "/x")
    check(r.status == 200, "and still proxies", r.describe())
    hu.stop_and_check(sl)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_live_ready_and_answers, case_unknown_paths_sharing_a_prefix,
                       case_malformed_and_oversized, case_ready_starting_until_first_answer,
                       case_ready_starting_until_ready_timeout, case_ready_draining_after_sigterm,
                       case_admin_port_is_exclusive])

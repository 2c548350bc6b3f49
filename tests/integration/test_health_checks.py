#!/usr/bin/env python3
"""Active health checks, panic mode and the config errors of the new keys.

- http check: an endpoint answering 503 on its health path is logged unhealthy at its first
  answer and gets no traffic; `sluice ready` comes only after every first answer;
- tcp check against a closed port: unhealthy (connection refused), no traffic, no retries;
- thresholds: single failures between passes do not flip an endpoint; unhealthy_threshold
  consecutive failures do (and it stops getting traffic); healthy_threshold consecutive passes
  bring it back;
- the check request: `GET <path> HTTP/1.1`, Host as configured (default: the cluster name),
  User-Agent: sluice-health, Connection: close, on a connection of its own;
- body_contains and expected_statuses (single statuses and ranges; default 200-399);
- an endpoint that accepts but never answers: `timed out after ...`;
- ready_timeout: a check that cannot complete in time gives the warn line and `sluice ready`
  after about ready_timeout;
- panic mode: 3 of 4 unhealthy with panic_threshold 50 spreads traffic over all 4; when two
  recover, `leaving panic mode` and only the healthy ones get traffic; panic_threshold 0 with
  every endpoint unhealthy gives 503 `no healthy endpoint in cluster app`;
- `sluice check` on bad values of the new keys: `FILE:LINE:COL: key.path: message`.
"""

import os
import re
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
from http_backend import HttpBackend, PeerClosed, SockReader, header_tokens, header_values, parse_head  # noqa: E402
import http_util as hu  # noqa: E402


# --------------------------------------------------------------------------
# a backend whose health answers the test controls


class CheckedBackend(harness.TcpServer):
    """HTTP/1.1 backend. Requests for `health_path` are answered with the next status of
    `script` (a list the test fills) or, when it is empty, with `health`; the body is
    `health_body`. Every other request gets 200 with X-Backend: name.

    Records every health request (start line, headers, connection, the status answered) and
    the targets seen on every connection."""

    def __init__(self, name, health=200, health_path="/hc", health_body=b"ok"):
        self.name = name
        self.health = health
        self.health_path = health_path
        self.health_body = health_body
        self.script = []
        self.checks = []        # dicts: start, headers, conn, status, time
        self.conn_targets = {}  # connection id -> [targets]
        self.traffic = 0        # requests other than health checks
        self._next = 0
        super().__init__()

    def set_health(self, status, script=()):
        """Sets the default answer and a script of answers to give first; returns the number
        of health checks answered so far (taken atomically with the change)."""
        with self._lock:
            self.health = status
            self.script = list(script)
            return len(self.checks)

    def answered(self):
        with self._lock:
            return len(self.checks)

    def health_statuses(self, since=0):
        with self._lock:
            return [c["status"] for c in self.checks[since:]]

    def handle(self, conn):
        with self._lock:
            self._next += 1
            cid = self._next
            self.conn_targets[cid] = []
        reader = SockReader(conn)
        while not self._stop.is_set():
            try:
                head = reader.read_until(b"\r\n\r\n", 1 << 16)
            except (PeerClosed, OSError):
                return
            start, headers = parse_head(head)
            parts = start.split(" ")
            target = parts[1] if len(parts) == 3 else ""
            with self._lock:
                self.conn_targets[cid].append(target)
            close = "close" in header_tokens(headers, "connection")
            if target == self.health_path:
                with self._lock:
                    status = self.script.pop(0) if self.script else self.health
                    self.checks.append({"start": start, "headers": headers, "conn": cid, "status": status,
                                        "time": time.monotonic()})
                body = b"" if status in (204, 304) else self.health_body
            else:
                with self._lock:
                    self.traffic += 1
                status, body = 200, self.name.encode()
            out = "HTTP/1.1 %d Status\r\nX-Backend: %s\r\n" % (status, self.name)
            if status not in (204, 304):
                out += "Content-Length: %d\r\n" % len(body)
            if close:
                out += "Connection: close\r\n"
            conn.sendall(out.encode() + b"\r\n" + body)
            if close:
                conn.shutdown(socket.SHUT_WR)
                return


# --------------------------------------------------------------------------
# helpers


def route(cluster="app", prefix="/"):
    return {"match": {"prefix": prefix}, "cluster": cluster}


def make_config(routes, clusters, workers=2, extra=None):
    cfg = {"workers": workers, "log_level": "debug", "drain_timeout": "5s"}
    cfg.update(extra or {})
    cfg["listeners"] = [hu.simple_listener(routes)]
    cfg["clusters"] = clusters
    return harness.to_yaml(hu._quote(cfg)) + "\n"


def start_text(text, ready_timeout=20):
    return harness.Sluice(text, ready_timeout=ready_timeout)


def http_check(**kw):
    hc = {"type": "http", "interval": "1s", "jitter": "0ms", "timeout": "1s", "healthy_threshold": 2,
          "unhealthy_threshold": 3}
    http = kw.pop("http", {"path": "/hc"})
    hc.update(kw)
    hc["http"] = http
    return hc


def line_index(sl, pred):
    """Index of the first stderr line matching pred (substring), or None."""
    with sl._cv:
        for i, l in enumerate(sl.lines):
            if pred in l:
                return i
    return None


def healthy_line(addr, detail="status 200"):
    return "cluster app: endpoint %s is healthy: %s (health check)" % (addr, detail)


def unhealthy_line(addr, detail, cluster="app"):
    return "cluster %s: endpoint %s is unhealthy: %s (health check)" % (cluster, addr, detail)


def count_backends(port, n, target="/t"):
    c = hu.Client(port, timeout=10)
    counts, bad = {}, []
    try:
        for i in range(n):
            r = c.request("GET", "%s/%d" % (target, i))
            if r.status != 200:
                bad.append(r.status)
            else:
                counts[r.header("x-backend")] = counts.get(r.header("x-backend"), 0) + 1
    finally:
        c.close()
    return counts, bad


def check_ready_after(sl, needles):
    ready = line_index(sl, "sluice ready")
    for n in needles:
        i = line_index(sl, n)
        check(i is not None and ready is not None and i < ready, "logged before 'sluice ready': %s" % n,
              hu.log_tail(sl, 30))


# --------------------------------------------------------------------------
# cases


def case_http_check_503_unhealthy_at_first_answer():
    bad = CheckedBackend("bad", health=503)
    good1, good2 = CheckedBackend("good1"), CheckedBackend("good2")
    text = make_config([route()], [hu.cluster("app", [bad, good1, good2], health_check=http_check(interval="10s"))])
    t0 = time.monotonic()
    sl = start_text(text)
    info("sluice ready after %.2f s" % (time.monotonic() - t0))
    bad_line = unhealthy_line(bad.address, "status 503")
    check_ready_after(sl, [bad_line, healthy_line(good1.address), healthy_line(good2.address)])
    lvl = harness.LOG_RE.match(sl.find_lines(bad_line)[0])
    check(lvl and lvl.group(3) == "main", "health lines come from the main thread", sl.find_lines(bad_line)[0])
    check(bad.answered() == 1, "one check was enough to decide (unhealthy_threshold 3 applies only later)",
          repr(bad.health_statuses()))
    counts, errs = count_backends(sl.port("web"), 30)
    check(not errs, "30 requests: all 200", repr(errs))
    check(bad.traffic == 0, "the unhealthy endpoint got no traffic", "bad got %d" % bad.traffic)
    check(counts == {"good1": 15, "good2": 15}, "the two healthy endpoints got all of it (15 each)", repr(counts))
    hu.stop_and_check(sl)


def case_tcp_check_closed_port():
    _, dead = harness.free_port_holder()
    good = HttpBackend("good")
    text = make_config([route()], [hu.cluster("app", ["127.0.0.1:%d" % dead, good],
                                              health_check={"type": "tcp", "interval": "10s", "jitter": "0ms"})])
    sl = start_text(text)
    dead_line = unhealthy_line("127.0.0.1:%d" % dead, "connection refused")
    check_ready_after(sl, [dead_line, "cluster app: endpoint %s is healthy: " % good.address])
    log_start = sl.line_count()
    statuses = [hu.request_once(sl.port("web"), "GET", "/tcp/%d" % i).status for i in range(10)]
    check(statuses == [200] * 10, "10 requests: all 200", repr(statuses))
    harness.wait_until(lambda: len(hu.request_log(sl, log_start)) >= 10, 5)
    flags = [e["flags"] for e in hu.request_log(sl, log_start)]
    check(flags == ["-"] * 10, "no request was even tried on the closed port (no retries, no flags)",
          "\n".join(e["line"] for e in hu.request_log(sl, log_start)))
    hu.stop_and_check(sl)


def case_thresholds_and_flapping():
    flip, steady = CheckedBackend("flip"), CheckedBackend("steady")
    hc = http_check(interval="100ms", healthy_threshold=2, unhealthy_threshold=3)
    text = make_config([route()], [hu.cluster("app", [flip, steady], health_check=hc, panic_threshold=0)])
    sl = start_text(text)
    port = sl.port("web")
    failed_re = "cluster app: endpoint %s health check failed: status 503" % flip.address
    down = unhealthy_line(flip.address, "status 503")
    up = healthy_line(flip.address)

    # single failures between passes: no transition, no log line
    start = sl.line_count()
    n0 = flip.set_health(200, [503, 200, 503, 200, 503, 200])
    check(harness.wait_until(lambda: flip.answered() >= n0 + 7, 5),
          "failure, pass, failure, pass, failure, pass answered", repr(flip.health_statuses(n0)))
    harness.wait_until(lambda: len(sl.find_lines(failed_re, start)) >= 3, 2)
    check(not sl.find_lines("endpoint %s is unhealthy" % flip.address, start),
          "alternating single failures do not mark the endpoint unhealthy", sl.stderr_text(start))
    check(len(sl.find_lines(failed_re, start)) == 3, "each failed check is logged at debug (3)",
          sl.stderr_text(start))
    counts, errs = count_backends(port, 10)
    check(not errs and counts == {"flip": 5, "steady": 5}, "it keeps getting its share of traffic", repr(counts))

    # unhealthy_threshold 3 consecutive failures: unhealthy after the third
    start = sl.line_count()
    n0 = flip.set_health(503)
    line = sl.wait_log(down, 5, start)
    seen = len(flip.health_statuses(n0))
    check(line is not None, "3 consecutive failures: logged '%s'" % down, sl.stderr_text(start))
    check(line.split()[1].lower().startswith("warn"), "at warn level", line)
    before = sl.find_lines(failed_re, start)
    before = [l for l in before if sl.lines.index(l) < sl.lines.index(line)]
    check(len(before) == 2 and seen >= 3, "after exactly 3 failures (2 failures logged before it, %d answered)" %
          seen, sl.stderr_text(start))

    # The main thread logs the change, then posts it to the workers: a request may reach a
    # worker just before the new snapshot does. Wait until fresh connections see it.
    def only_steady():
        c, e = count_backends(port, 2)
        return not e and c == {"steady": 2}
    harness.wait_until(lambda: all(only_steady() for _ in range(4)), 3, 0.02)
    t_before = flip.traffic
    counts, errs = count_backends(port, 20)
    check(not errs and counts == {"steady": 20} and flip.traffic == t_before,
          "the unhealthy endpoint gets no traffic", repr(counts))

    # healthy_threshold 2: pass, failure, pass, pass -> healthy only after the fourth answer
    start = sl.line_count()
    n0 = flip.set_health(200, [200, 503])
    line = sl.wait_log(up, 5, start)
    seen = len(flip.health_statuses(n0))
    check(line is not None, "2 consecutive passes: logged '%s'" % up, sl.stderr_text(start))
    check(seen >= 4, "only after pass, failure, pass, pass (%d answers seen when the line appeared: %r)" %
          (seen, flip.health_statuses(n0)), sl.stderr_text(start))
    check(len(sl.find_lines("endpoint %s is healthy" % flip.address, start)) == 1, "logged once",
          sl.stderr_text(start))

    def both_served():
        c, e = count_backends(port, 4)
        return not e and c.get("flip", 0) > 0
    check(harness.wait_until(both_served, 3, 0.02), "it gets traffic again", repr(count_backends(port, 4)))
    counts, errs = count_backends(port, 10)
    check(not errs and counts == {"flip": 5, "steady": 5}, "round robin over both again", repr(counts))
    hu.stop_and_check(sl)


def case_check_request_format():
    a = CheckedBackend("a", health_path="/healthz?probe=1")
    b = CheckedBackend("b", health_path="/")
    hc_a = http_check(interval="100ms", http={"path": "/healthz?probe=1", "host": "health.example"})
    hc_b = http_check(interval="100ms", http={})
    text = make_config([route("app", "/"), route("other", "/other")],
                       [hu.cluster("app", [a], health_check=hc_a), hu.cluster("other", [b], health_check=hc_b)])
    sl = start_text(text)
    port = sl.port("web")
    # proxied traffic meanwhile, on keep-alive connections (pooled upstream connections)
    c = hu.Client(port)
    statuses = [c.request("GET", "/traffic/%d" % i).status for i in range(10)]
    c.close()
    check(statuses == [200] * 10, "10 proxied requests on one keep-alive connection: all 200", repr(statuses))
    check(harness.wait_until(lambda: a.answered() >= 4 and b.answered() >= 2, 5),
          "health checks keep coming (interval 100ms)", "%d / %d" % (a.answered(), b.answered()))
    with a._lock:
        checks = list(a.checks)
        conn_targets = {k: list(v) for k, v in a.conn_targets.items()}
    problems = []
    for ch in checks:
        hs = ch["headers"]
        if ch["start"] != "GET /healthz?probe=1 HTTP/1.1":
            problems.append("start line %r" % ch["start"])
        if header_values(hs, "host") != ["health.example"]:
            problems.append("Host %r" % header_values(hs, "host"))
        if header_values(hs, "user-agent") != ["sluice-health"]:
            problems.append("User-Agent %r" % header_values(hs, "user-agent"))
        if header_values(hs, "connection") != ["close"]:
            problems.append("Connection %r" % header_values(hs, "connection"))
    info("a health check request: %s %r" % (checks[0]["start"], checks[0]["headers"]))
    check(not problems, "every check: 'GET /healthz?probe=1 HTTP/1.1', Host: health.example, "
          "User-Agent: sluice-health, Connection: close", "\n".join(problems[:10]))
    with b._lock:
        hosts_b = set(tuple(header_values(ch["headers"], "host")) for ch in b.checks)
    check(hosts_b == {("other",)}, "without http.host the Host is the cluster name ('other')", repr(hosts_b))
    health_conns = set(ch["conn"] for ch in checks)
    mixed = {cid: ts for cid, ts in conn_targets.items() if cid in health_conns and ts != ["/healthz?probe=1"]}
    check(len(health_conns) == len(checks) and not mixed,
          "each check has a connection of its own that carries nothing else (%d checks, %d connections)" %
          (len(checks), len(health_conns)), repr(mixed))
    traffic_conns = [ts for cid, ts in conn_targets.items() if cid not in health_conns]
    check(sum(len(ts) for ts in traffic_conns) == 10 and
          all(t.startswith("/traffic/") for ts in traffic_conns for t in ts),
          "proxied requests went on other connections (%d of them)" % len(traffic_conns), repr(traffic_conns))
    hu.stop_and_check(sl)


def case_body_contains_and_expected_statuses():
    ok_body = CheckedBackend("okbody", health_body=b"status: ok\n")
    bad_body = CheckedBackend("badbody", health_body=b"degraded\n")
    s418 = CheckedBackend("s418", health=418)
    s204 = CheckedBackend("s204", health=204)
    s205 = CheckedBackend("s205", health=205)
    s200 = CheckedBackend("s200", health=200)
    d302 = CheckedBackend("d302", health=302)
    d399 = CheckedBackend("d399", health=399)
    d404 = CheckedBackend("d404", health=404)
    d500 = CheckedBackend("d500", health=500)
    clusters = [
        hu.cluster("bc", [ok_body, bad_body], health_check=http_check(http={"path": "/hc", "body_contains": "ok"})),
        hu.cluster("st", [s418, s204, s205, s200],
                   health_check=http_check(http={"path": "/hc", "expected_statuses": ["200-204", 418]})),
        hu.cluster("df", [d302, d399, d404, d500], health_check=http_check()),
    ]
    text = make_config([route("st", "/st"), route("bc", "/bc"), route("df", "/")], clusters)
    sl = start_text(text)
    want = [
        ("cluster bc: endpoint %s is healthy: status 200 (health check)" % ok_body.address),
        unhealthy_line(bad_body.address, 'body does not contain "ok"', "bc"),
        ("cluster st: endpoint %s is healthy: status 418 (health check)" % s418.address),
        ("cluster st: endpoint %s is healthy: status 204 (health check)" % s204.address),
        unhealthy_line(s205.address, "status 205", "st"),
        ("cluster st: endpoint %s is healthy: status 200 (health check)" % s200.address),
        ("cluster df: endpoint %s is healthy: status 302 (health check)" % d302.address),
        ("cluster df: endpoint %s is healthy: status 399 (health check)" % d399.address),
        unhealthy_line(d404.address, "status 404", "df"),
        unhealthy_line(d500.address, "status 500", "df"),
    ]
    for w in want:
        check(sl.find_lines(w), "logged: %s" % w, "\n".join(sl.find_lines("(health check)")))
    counts, errs = count_backends(sl.port("web"), 30, "/st")
    check(not errs and set(counts) == {"s418", "s204", "s200"}, "cluster st: traffic only to the 3 healthy endpoints",
          repr(counts))
    counts, errs = count_backends(sl.port("web"), 10, "/bc")
    check(not errs and counts == {"okbody": 10}, "cluster bc: traffic only to the endpoint whose body matches",
          repr(counts))
    hu.stop_and_check(sl)


def case_check_timeout():
    hold = harness.HoldServer()
    good = CheckedBackend("good")
    text = make_config([route()], [hu.cluster("app", [hold.address, good],
                                              health_check=http_check(timeout="200ms", interval="10s"))])
    t0 = time.monotonic()
    sl = start_text(text)
    took = time.monotonic() - t0
    line = unhealthy_line(hold.address, "timed out after 200ms")
    check_ready_after(sl, [line])
    check(0.15 <= took < 3, "sluice ready after the check timed out (%.2f s)" % took, hu.log_tail(sl))
    check(hold.accepted >= 1, "the check connected (the endpoint accepted)", repr(hold.accepted))
    counts, errs = count_backends(sl.port("web"), 6)
    check(not errs and counts == {"good": 6}, "traffic only to the endpoint that answers", repr(counts))
    hu.stop_and_check(sl)


def case_ready_timeout():
    hold = harness.HoldServer()
    good = CheckedBackend("good")
    text = make_config([route()], [hu.cluster("app", [hold.address, good], panic_threshold=0,
                                              health_check=http_check(timeout="20s", interval="30s"))],
                       extra={"ready_timeout": "500ms"})
    t0 = time.monotonic()
    sl = start_text(text)
    took = time.monotonic() - t0
    warn = "health: not every endpoint answered its first check in time; starting anyway"
    check_ready_after(sl, [warn, healthy_line(good.address)])
    wl = sl.find_lines(warn)[0]
    check(wl.split()[1].lower().startswith("warn"), "the line is at warn level", wl)
    check(0.4 <= took <= 2.5, "sluice ready after about ready_timeout 500ms (%.2f s)" % took, hu.log_tail(sl))
    check(not sl.find_lines("endpoint %s is" % hold.address), "no state line for the endpoint that never answered",
          "\n".join(sl.find_lines(hold.address)))
    counts, errs = count_backends(sl.port("web"), 6)
    check(not errs and counts == {"good": 6}, "traffic goes to the endpoint that answered (the other one is "
          "still in its initial state, unhealthy)", repr(counts))
    hu.stop_and_check(sl)


def case_panic_mode():
    bs = [CheckedBackend("p0")] + [CheckedBackend("p%d" % i, health=503) for i in (1, 2, 3)]
    hc = http_check(interval="100ms", healthy_threshold=2, unhealthy_threshold=2)
    text = make_config([route()], [hu.cluster("app", bs, health_check=hc, panic_threshold=50)])
    sl = start_text(text)
    port = sl.port("web")
    panic = ("cluster app: panic mode: 1 of 4 endpoints usable, below panic_threshold 50%; "
             "balancing over all endpoints")
    check_ready_after(sl, [panic])
    check(len(sl.find_lines("cluster app: panic mode:")) == 1,
          "the panic line is logged once (at the end of the first round)", "\n".join(sl.find_lines("panic")))
    counts, errs = count_backends(port, 40)
    check(not errs and sorted(counts) == ["p0", "p1", "p2", "p3"],
          "in panic mode 40 requests spread over all 4 endpoints, all 200 (%r)" % counts, repr((counts, errs)))

    start = sl.line_count()
    bs[1].set_health(200)
    bs[2].set_health(200)
    leave = sl.wait_log("cluster app: leaving panic mode", 5, start)
    check(leave is not None, "two endpoints recover: 'leaving panic mode' logged", sl.stderr_text(start))
    check(leave.endswith("leaving panic mode: 2 of 4 endpoints usable"),
          "it leaves panic as soon as 2 of 4 (50%, not below the threshold) are usable", leave)
    for b in bs[1:3]:
        check(sl.wait_log(healthy_line(b.address), 5, start), "%s logged healthy" % b.name, sl.stderr_text(start))

    def no_p3():
        t = bs[3].traffic
        c, e = count_backends(port, 6)
        return not e and bs[3].traffic == t
    harness.wait_until(no_p3, 3, 0.02)
    t3 = bs[3].traffic
    counts, errs = count_backends(port, 30)
    check(not errs and counts == {"p0": 10, "p1": 10, "p2": 10} and bs[3].traffic == t3,
          "out of panic: traffic only to the 3 healthy endpoints", repr(counts))
    check(not sl.find_lines("cluster app: panic mode:", start), "no new panic line", sl.stderr_text(start))
    rc = sl.stop()
    harness.check_clean_exit(sl, rc)
    summary = sl.find_lines("health: ejections")
    check(summary and re.search(r"panic mode entered 1\b", summary[0]), "exit summary: panic mode entered 1",
          "\n".join(summary) or hu.log_tail(sl))


def case_no_healthy_endpoint_503():
    bs = [CheckedBackend("n%d" % i, health=503) for i in range(2)]
    text = make_config([route()], [hu.cluster("app", bs, health_check=http_check(interval="10s"),
                                              panic_threshold=0)])
    sl = start_text(text)
    check(not sl.find_lines("panic mode"), "panic_threshold 0: no panic line", "\n".join(sl.find_lines("panic")))
    port = sl.port("web")
    log_start = sl.line_count()
    for i in range(5):
        r = hu.request_once(port, "GET", "/nh/%d" % i)
        check(r.status == 503 and r.body.strip() == b"no healthy endpoint in cluster app",
              "request %d: 503 'no healthy endpoint in cluster app'" % i, r.describe())
    harness.wait_until(lambda: len(hu.request_log(sl, log_start)) >= 5, 5)
    flags = [e["flags"] for e in hu.request_log(sl, log_start)]
    check(flags == ["no_healthy_upstream"] * 5,
          "request log flags exactly no_healthy_upstream", "\n".join(e["line"] for e in hu.request_log(sl, log_start)))
    check(all(b.traffic == 0 for b in bs), "no request reached an endpoint", repr([b.traffic for b in bs]))
    rc = sl.stop()
    harness.check_clean_exit(sl, rc)
    summary = sl.find_lines("cluster app: connect attempts")
    check(summary and re.search(r"no healthy endpoint 5\b", summary[0]), "exit summary: no healthy endpoint 5",
          "\n".join(summary) or hu.log_tail(sl))


# --------------------------------------------------------------------------
# config errors

BASE = """\
listeners:
  - name: web
    address: 127.0.0.1:0
    protocol: http
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            cluster: app
clusters:
  - name: app
    connect_timeout: 1s
#EXTRA
    endpoints:
      - address: 127.0.0.1:8081
"""


def locate(text, needle, after=None):
    """1-based (line, column) of needle in text (the first one after `after`, if given)."""
    start = text.index(after) if after else 0
    i = text.index(needle, start)
    line = text.count("\n", 0, i) + 1
    col = i - (text.rindex("\n", 0, i) + 1 if "\n" in text[:i] else 0) + 1
    return line, col


def config_error_cases():
    """(name, extra cluster lines, (needle, after), key path, exact message)"""
    return [
        ("unknown_lb_policy", "    lb_policy: fastest\n", ("fastest", None), "clusters[0].lb_policy",
         "expected one of: round_robin, least_request, random, ring_hash, maglev, got 'fastest'"),
        ("maglev_table_size_not_prime", "    lb_policy: maglev\n    maglev: {table_size: 65536}\n",
         ("65536", None), "clusters[0].maglev.table_size", "65536 is not prime (for example 65537 or 5000011)"),
        ("ring_hash_with_round_robin", "    lb_policy: round_robin\n    ring_hash:\n      ring_size: 1024\n",
         ("ring_size", None), "clusters[0].ring_hash", "only for lb_policy: ring_hash"),
        ("ring_hash_with_default_policy", "    ring_hash: {ring_size: 1024}\n", ("{ring_size", None),
         "clusters[0].ring_hash", "only for lb_policy: ring_hash"),
        ("health_check_without_type", "    health_check:\n      interval: 1s\n      timeout: 100ms\n",
         ("interval: 1s", None), "clusters[0].health_check", "missing required key 'type'"),
        ("expected_statuses_out_of_range",
         "    health_check:\n      type: http\n      http: {expected_statuses: [200-299, 700]}\n",
         ("700", None), "clusters[0].health_check.http.expected_statuses[1]",
         "expected a status from 100 to 599 or a range such as 200-299"),
        ("expected_statuses_not_a_status",
         "    health_check:\n      type: http\n      http:\n        expected_statuses: [3xx]\n",
         ("3xx", None), "clusters[0].health_check.http.expected_statuses[0]",
         "expected a status from 100 to 599 or a range such as 200-299"),
        ("expected_statuses_reversed_range",
         "    health_check:\n      type: http\n      http:\n        expected_statuses: [200, 299-200]\n",
         ("299-200", None), "clusters[0].health_check.http.expected_statuses[1]",
         "expected a status from 100 to 599 or a range such as 200-299"),
        ("panic_threshold_101", "    panic_threshold: 101\n", ("101", None), "clusters[0].panic_threshold",
         "expected an integer from 0 to 100, got 101"),
        ("http_block_with_tcp_check", "    health_check:\n      type: tcp\n      http: {path: /hc}\n",
         ("{path", None), "clusters[0].health_check.http", "only for type: http"),
    ]


def config_error_case_fns():
    tmp = []

    def tmpdir():
        if not tmp:
            tmp.append(tempfile.mkdtemp(prefix="sluice-hc-check-"))
        return tmp[0]

    cases = []
    for name, extra, (needle, after), key_path, message in config_error_cases():
        def case(name=name, extra=extra, needle=needle, after=after, key_path=key_path, message=message):
            text = BASE.replace("#EXTRA\n", extra)
            d = tmpdir()
            harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
            path = os.path.join(d, name + ".yaml")
            with open(path, "w") as f:
                f.write(text)
            p = harness.run_sluice_cmd(["check", "-c", path], timeout=10)
            check(p.returncode == 1, "sluice check exits 1", "rc=%d\nstdout: %s\nstderr: %s" %
                  (p.returncode, p.stdout, p.stderr))
            line, col = locate(text, needle, after)
            want = "%s:%d:%d: %s: %s" % (path, line, col, key_path, message)
            got = p.stderr.splitlines()
            check(want in got, "reports 'FILE:%d:%d: %s: %s'" % (line, col, key_path, message),
                  "stderr:\n%s" % p.stderr)
            tmp.clear()
        case.__name__ = "case_config_" + name
        cases.append(case)
    return cases


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_http_check_503_unhealthy_at_first_answer, case_tcp_check_closed_port,
                       case_thresholds_and_flapping, case_check_request_format,
                       case_body_contains_and_expected_statuses, case_check_timeout, case_ready_timeout,
                       case_panic_mode, case_no_healthy_endpoint_503] + config_error_case_fns())

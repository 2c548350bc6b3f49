#!/usr/bin/env python3
"""Circuit breakers of an HTTP cluster.

- max_active_requests (cluster-wide, over both workers): requests beyond it get 503
  `cluster app: max_active_requests N reached` at once, flag overflow_active_requests; the slots
  come back when requests finish, when clients go away mid-request and after upstream failures.
- max_active_retries: only that many requests are in their retry phase at once; the others
  get the upstream's answer without a retry (flag retry_overflow), counted in the exit summary.
- retry budget: retries in flight at most max(min_retry_concurrency, budget_percent of the
  active requests); the rest fail fast.
- `sluice check` names bad circuit_breakers / retry_budget / outlier_detection settings.
"""

import os
import re
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
from http_backend import BackendProcess  # noqa: E402
import http_util as hu  # noqa: E402

CLUSTER_SUMMARY_RE = re.compile(r"cluster (\S+): connect attempts (\d+), connect failures (\d+), no healthy endpoint "
                                r"(\d+), overflow \(max_active_requests\) (\d+), retries refused \(breaker or budget\) "
                                r"(\d+)")
LISTENER_SUMMARY_RE = re.compile(r"listener (\S+): accepted (\d+), refused \(max_connections\) (\d+), requests (\d+),")


def start(backends, breakers, routes=None, workers=2):
    routes = routes or [{"match": {"prefix": "/"}, "cluster": "app"}]
    return hu.start_sluice([hu.simple_listener(routes)],
                           [hu.cluster("app", backends, circuit_breakers=breakers)], workers=workers)


def concurrent(port, targets, timeout=10.0):
    """Sends one GET per target, each on its own connection, all at once (the connections are
    opened first, then a barrier releases the sends). Returns [(Response or exception, seconds)]."""
    clients = [hu.Client(port, timeout=timeout) for _ in targets]
    out = [None] * len(targets)
    barrier = threading.Barrier(len(targets))

    def one(i):
        barrier.wait(5)
        t0 = time.monotonic()
        try:
            r = clients[i].request("GET", targets[i])
        except Exception as e:  # recorded; the caller checks
            r = e
        out[i] = (r, time.monotonic() - t0)
        clients[i].close()

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(targets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    return out


def status_of(r):
    return r.status if isinstance(r, hu.Response) else repr(r)


def flags_for(sl, prefix, start=0):
    """The flags of the request-log lines whose target starts with prefix."""
    return [r["flags"].split(",") for r in hu.request_log(sl, start) if r["target"].startswith(prefix)]


def summary(sl, regex):
    line = sl.wait_log(regex, 5)
    return regex.search(line).groups() if line else None


def both_slots_free(port, tag):
    """Two concurrent slow requests both succeed only if both max_active_requests slots are free."""
    res = concurrent(port, ["/delay/150/%s/%d" % (tag, i) for i in range(2)])
    return [status_of(r) for r, _ in res]


def rst_close(c):
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


def case_max_active_requests():
    b = BackendProcess("b")
    routes = [{"match": {"prefix": "/t/"}, "cluster": "app", "timeout": "300ms"},
              {"match": {"prefix": "/"}, "cluster": "app"}]
    sl = start([b], {"max_active_requests": 2}, routes, workers=2)
    port = sl.port("web")
    res = concurrent(port, ["/delay/500/slow/%d" % i for i in range(5)])
    statuses = sorted(status_of(r) for r, _ in res)
    check(statuses == [200, 200, 503, 503, 503], "5 concurrent slow requests: exactly 2 x 200 and 3 x 503",
          repr([(status_of(r), round(t, 3)) for r, t in res]))
    over = [(r, t) for r, t in res if isinstance(r, hu.Response) and r.status == 503]
    want = b"cluster app: max_active_requests 2 reached\n"
    check(all(r.body == want for r, _ in over), "their body: %r" % want, repr([r.body for r, _ in over]))
    slowest = max(t for _, t in over)
    check(slowest < 0.25, "the 503s came at once (slowest after %.3f s; the delay is 0.5 s)" % slowest,
          repr([round(t, 3) for _, t in over]))
    fastest_ok = min(t for r, t in res if isinstance(r, hu.Response) and r.status == 200)
    check(fastest_ok >= 0.45, "the two admitted requests took the full delay (%.3f s)" % fastest_ok, "")
    check(b.stats()["requests"] == 2, "only the two admitted requests reached the backend", repr(b.stats()))
    harness.wait_until(lambda: len(flags_for(sl, "/delay/500/slow/")) >= 5, 5)
    flags = flags_for(sl, "/delay/500/slow/")
    check(sorted(flags) == [["-"], ["-"], ["overflow_active_requests"], ["overflow_active_requests"],
                            ["overflow_active_requests"]],
          "3 request-log lines with exactly the flag overflow_active_requests (no direct_response), 2 with none",
          "\n".join(r["line"] for r in hu.request_log(sl)))
    workers = {harness.LOG_RE.match(r["line"]).group(3) for r in hu.request_log(sl)}
    info("the 5 requests were handled by workers %s" % sorted(workers))

    check(both_slots_free(port, "after") == [200, 200], "after they finished, 2 concurrent requests succeed", "")

    # keep-alive: each request on a connection gives its slot back
    c = hu.Client(port)
    seq = [c.request("GET", "/ka/%d" % i).status for i in range(30)]
    check(seq == [200] * 30, "30 requests one after the other on one keep-alive connection: all 200", repr(seq))
    check(both_slots_free(port, "ka-idle") == [200, 200],
          "while that connection stays open and idle, 2 concurrent requests succeed: it holds no slot", "")
    c.close()

    # a request with a body refused while the cluster is full: its body is read and the
    # connection stays usable
    holders = [hu.Client(port) for _ in range(2)]
    n0 = b.stats()["requests"] + 2
    for i, h in enumerate(holders):
        h.send(hu.build_request("GET", "/delay/700/holder/%d" % i))
    check(harness.wait_until(lambda: b.stats()["requests"] >= n0, 5, 0.05), "two slow requests hold both slots",
          repr(b.stats()))
    c = hu.Client(port)
    body = b"x" * 20000
    r = c.request("POST", "/post/full", body=body)
    check(r.status == 503 and r.body == want, "a POST with a 20000-byte body while full: 503 at once", r.describe())
    for h in holders:
        check(h.read_response().status == 200, "a slot holder finishes with 200", "")
        h.close()
    r = c.request("POST", "/post/again", body=b"y" * 300)
    check(r.status == 200 and r.json()["body"] == "y" * 300 and r.json()["target"] == "/post/again",
          "then the same connection carries the next POST intact (the refused body was consumed)", r.describe())
    c.close()
    check(b.stats()["requests"] == n0 + 1, "the refused POST never reached the backend", repr(b.stats()))

    # clients that go away while their request waits for the upstream (reset)
    clients = [hu.Client(port) for _ in range(2)]
    n0 = b.stats()["requests"] + 2
    for i, c in enumerate(clients):
        c.send(hu.build_request("GET", "/delay/5000/abandoned/%d" % i))
    check(harness.wait_until(lambda: b.stats()["requests"] >= n0, 5, 0.05),
          "two slow requests are at the backend", repr(b.stats()))
    t0 = time.monotonic()
    for c in clients:
        rst_close(c)
    got = harness.wait_until(lambda: both_slots_free(port, "after-rst") == [200, 200], 2, 0.05)
    check(got and time.monotonic() - t0 < 2.0,
          "clients reset their connections mid-request: both slots are free again within %.2f s "
          "(the upstream would answer after 5 s)" % (time.monotonic() - t0), hu.log_tail(sl, 20))

    # clients that go away in the middle of sending a request body
    clients = [hu.Client(port) for _ in range(2)]
    n0 = b.stats()["requests"] + 2
    for i, c in enumerate(clients):
        c.send(b"POST /delay/5000/partial/%d HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly a part" % i)
    check(harness.wait_until(lambda: b.stats()["requests"] >= n0, 5, 0.05),
          "two POSTs with half a body are at the backend", repr(b.stats()))
    t0 = time.monotonic()
    for c in clients:
        c.close()
    got = harness.wait_until(lambda: both_slots_free(port, "after-partial") == [200, 200], 2, 0.05)
    check(got and time.monotonic() - t0 < 2.0,
          "clients closed mid-body: both slots are free again within %.2f s" % (time.monotonic() - t0),
          hu.log_tail(sl, 20))

    # upstream failures: resets, invalid responses, route timeouts
    for path in ("/reset/1", "/reset/2", "/invalid/garbage", "/invalid/status"):
        r = hu.request_once(port, "GET", path)
        check(r.status == 502, "upstream failure %s: 502" % path, r.describe())
    res = concurrent(port, ["/t/delay/3000/%d" % i for i in range(2)])
    check([status_of(r) for r, _ in res] == [504, 504], "two route timeouts: 504 each",
          repr([(status_of(r), t) for r, t in res]))
    check(both_slots_free(port, "after-failures") == [200, 200],
          "after the upstream failures, 2 concurrent requests succeed: no slot was kept", hu.log_tail(sl, 20))

    hu.stop_and_check(sl)
    s = summary(sl, CLUSTER_SUMMARY_RE)
    overflow_flags = sum(r["flags"] == "overflow_active_requests" for r in hu.request_log(sl))
    check(s is not None and int(s[4]) == overflow_flags and overflow_flags >= 3,
          "exit summary: overflow (max_active_requests) %s = the %d requests flagged" %
          (s and s[4], overflow_flags), repr(s))


def retry_config(num_retries=3):
    return [{"match": {"prefix": "/"}, "cluster": "app",
             "retries": {"retry_on": ["gateway-error"], "num_retries": num_retries,
                         "backoff": {"base": "10ms", "max": "20ms"}}}]


def retry_round(sl, b, port, n, tag):
    """n concurrent requests that the backend answers with 503 after 300 ms. Returns
    (statuses, seconds, flags per request, backend hits)."""
    hits0 = b.stats()["requests"]
    mark = sl.line_count()
    res = concurrent(port, ["/status/503/delay/300/%s/%d" % (tag, i) for i in range(n)])
    harness.wait_until(lambda: len(flags_for(sl, "/status/503/delay/300/%s/" % tag, mark)) >= n, 5)
    flags = flags_for(sl, "/status/503/delay/300/%s/" % tag, mark)
    return ([status_of(r) for r, _ in res], [t for _, t in res], flags, b.stats()["requests"] - hits0, res)


def case_max_active_retries():
    b = BackendProcess("b")
    sl = start([b], {"max_active_retries": 1}, retry_config(3), workers=2)
    port = sl.port("web")
    statuses, times, flags, hits, res = retry_round(sl, b, port, 8, "round1")
    check(statuses == [503] * 8, "8 concurrent requests answered 503 by the backend: the client sees 503 each",
          repr(statuses))
    check(all(r.header("x-backend") == "b" for r, _ in res), "those 503s are the backend's own answers", "")
    retried = sum(f == ["retried"] for f in flags)
    overflow = sum(f == ["retry_overflow"] for f in flags)
    info("retried %d, retry_overflow %d, backend hits %d, times %s" %
         (retried, overflow, hits, [round(t, 2) for t in sorted(times)]))
    check(retried == 1 and overflow == 7 and len(flags) == 8,
          "max_active_retries 1: one request retried, the other 7 flagged retry_overflow",
          "\n".join(r["line"] for r in hu.request_log(sl)))
    check(hits == 8 + 3 * retried, "the backend saw %d requests: 8 first attempts + 3 retries" % hits, "")
    fast = sorted(times)[:overflow]
    check(max(fast) < 0.75, "the refused ones were answered after their single attempt (slowest %.2f s)" %
          max(fast), repr(times))

    # the retry slot was given back (also by a keep-alive connection that stays open after its
    # retried request): a lone failing request is retried again
    ka = hu.Client(port)
    r = ka.request("GET", "/status/503/keepalive")
    check(r.status == 503, "a keep-alive client's failing request: 503 after its retries", r.describe())
    statuses, times, flags, hits, _ = retry_round(sl, b, port, 1, "alone")
    ka.close()
    check(statuses == [503] and flags == [["retried"]] and hits == 4,
          "afterwards a lone failing request gets its 3 retries (backend saw %d)" % hits, repr(flags))
    r = hu.request_once(port, "GET", "/ok")
    check(r.status == 200, "a normal request succeeds", r.describe())
    hu.stop_and_check(sl)
    s = summary(sl, CLUSTER_SUMMARY_RE)
    check(s is not None and int(s[5]) == overflow and int(s[5]) > 0,
          "exit summary: retries refused (breaker or budget) %s, as many as flagged" % (s and s[5]), repr(s))
    check(int(s[4]) == 0, "exit summary: overflow (max_active_requests) 0", repr(s))


def case_retry_budget():
    b = BackendProcess("b")
    sl = start([b], {"retry_budget": {"budget_percent": 20, "min_retry_concurrency": 1}}, retry_config(3),
               workers=2)
    port = sl.port("web")
    statuses, times, flags, hits, _ = retry_round(sl, b, port, 10, "budget")
    check(statuses == [503] * 10, "10 concurrent failing requests: the client sees 503 each", repr(statuses))
    retried = sum(f == ["retried"] for f in flags)
    overflow = sum(f == ["retry_overflow"] for f in flags)
    info("retried %d, retry_overflow %d, backend hits %d, times %s" %
         (retried, overflow, hits, [round(t, 2) for t in sorted(times)]))
    # 10 active requests x 20 % = 2 retries at once (min_retry_concurrency 1 is lower)
    check(1 <= retried <= 2 and retried + overflow == 10,
          "at most max(1, 20%% of 10) = 2 requests retried (%d), the other %d flagged retry_overflow" %
          (retried, overflow), "\n".join(r["line"] for r in hu.request_log(sl)))
    check(hits == 10 + 3 * retried, "the backend saw %d requests: 10 first attempts + 3 per retried request" %
          hits, "")
    fast = sorted(times)[:overflow]
    slow = sorted(times)[overflow:]
    check(max(fast) < 0.75 and min(slow) >= 1.1,
          "the refused ones failed fast (slowest %.2f s), the retried ones took 4 attempts (fastest %.2f s)" %
          (max(fast), min(slow)), repr(times))

    # budget slots are given back: the next lone failing request is retried
    statuses, times, flags, hits, _ = retry_round(sl, b, port, 1, "alone")
    check(statuses == [503] and flags == [["retried"]] and hits == 4,
          "afterwards a lone failing request gets its 3 retries (min_retry_concurrency 1)", repr(flags))
    r = hu.request_once(port, "GET", "/ok")
    check(r.status == 200, "a normal request succeeds", r.describe())
    hu.stop_and_check(sl)
    s = summary(sl, CLUSTER_SUMMARY_RE)
    check(s is not None and int(s[5]) == overflow,
          "exit summary: retries refused (breaker or budget) %s = the %d flagged" % (s and s[5], overflow), repr(s))
    ls = summary(sl, LISTENER_SUMMARY_RE)
    check(ls is not None and int(ls[3]) == 12, "exit summary: the listener counted 12 requests", repr(ls))
    # Connect attempts count upstream connects, not requests: pooled connections are reused.
    conns = b.stats()["connections"]
    check(int(s[1]) == conns,
          "exit summary: connect attempts %s = the %d connections the backend accepted" % (s[1], conns),
          repr(s))


BASE = """\
workers: 1
listeners:
  - name: web
    address: 127.0.0.1:0
    protocol: tcp
    cluster: app
clusters:
  - name: app
    endpoints:
      - address: 127.0.0.1:8081
"""


def case_config_errors():
    tmp = tempfile.mkdtemp(prefix="sluice-cb-")
    harness.register_cleanup(lambda: shutil.rmtree(tmp, ignore_errors=True))
    cases = [
        ("unknown_key.yaml",
         "    circuit_breakers:\n      max_active_requests: 10\n      max_pending: 3\n",
         "13:7: clusters[0].circuit_breakers.max_pending: unknown key (expected one of: max_active_requests, "
         "max_active_retries, retry_budget)"),
        ("budget_zero.yaml",
         "    circuit_breakers:\n      retry_budget:\n        budget_percent: 0\n",
         "13:25: clusters[0].circuit_breakers.retry_budget.budget_percent: expected an integer from 1 to 100, "
         "got 0"),
        ("budget_unknown.yaml",
         "    circuit_breakers:\n      retry_budget: {percent: 20}\n",
         "12:22: clusters[0].circuit_breakers.retry_budget.percent: unknown key (expected one of: "
         "budget_percent, min_retry_concurrency)"),
        ("max_shorter.yaml",
         "    outlier_detection:\n      base_ejection_time: 30s\n      max_ejection_time: 10s\n",
         "13:26: clusters[0].outlier_detection.max_ejection_time: must not be shorter than "
         "base_ejection_time (30s)"),
        ("max_below_default_base.yaml",
         "    outlier_detection:\n      max_ejection_time: 10s\n",
         "12:26: clusters[0].outlier_detection.max_ejection_time: must not be shorter than "
         "base_ejection_time (30s)"),
    ]
    for name, extra, want in cases:
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write(BASE + extra)
        p = harness.run_sluice_cmd(["check", "-c", path])
        expected = "%s:%s" % (path, want)
        check(p.returncode == 1 and expected in p.stderr.splitlines(),
              "%s: exit 1 and `%s`" % (name, want), "exit %d\nstderr: %s" % (p.returncode, p.stderr))
    good = os.path.join(tmp, "good.yaml")
    with open(good, "w") as f:
        f.write(BASE + "    outlier_detection: {}\n    circuit_breakers:\n      max_active_requests: 10\n"
                "      max_active_retries: 2\n      retry_budget: {budget_percent: 20, min_retry_concurrency: 3}\n")
    p = harness.run_sluice_cmd(["check", "-c", good])
    check(p.returncode == 0, "a good config with outlier_detection {} and every breaker passes the check",
          "exit %d\n%s%s" % (p.returncode, p.stdout, p.stderr))


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_max_active_requests, case_max_active_retries, case_retry_budget, case_config_errors])

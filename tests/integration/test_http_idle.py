#!/usr/bin/env python3
"""Upstream connections closed by the backend while idle in sluice's pool.

A backend that closes connections idle for 1 s, while a client sends a request every
second (the worst timing: requests arrive just as the backend gives up), must produce
zero client-visible errors. The long run lasts SLUICE_HTTP_IDLE_SECONDS (default 60 s;
a minute is the thorough setting). Also: with `Keep-Alive: timeout=1` advertised, a
deterministic stale-connection case, and the one-time re-send of a request that fails on
a reused connection before any response byte."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
from http_backend import HttpBackend  # noqa: E402
import http_util as hu  # noqa: E402

IDLE_SECONDS = hu.env_number("SLUICE_HTTP_IDLE_SECONDS", 60.0)


def start(backend, workers=1, pool=None):
    kw = {"pool": pool} if pool else {}
    return hu.start_sluice([hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])],
                           [hu.cluster("app", [backend], **kw)], workers=workers)


# offsets (seconds) added to the 1 s pace: requests land just before, at and just after the
# moment the backend gives up on the idle connection
JITTER = [-0.03, 0.0, 0.01, -0.01, 0.02, 0.005, -0.02, 0.04, 0.0, -0.005, 0.015, 0.03]


def paced_requests(port, duration, interval, new_conn_every=0, jitter=False):
    """A request every `interval` seconds (plus JITTER) for `duration` seconds; returns (n, errors)."""
    errors = []
    n = 0
    c = hu.Client(port, timeout=10)
    t0 = time.monotonic()
    while time.monotonic() - t0 < duration:
        target = time.monotonic() + interval + (JITTER[n % len(JITTER)] if jitter else 0.0)
        try:
            r = c.request("GET", "/tick/%d" % n)
            if r.status != 200:
                errors.append("request %d: %s" % (n, r.describe()))
        except Exception as e:
            errors.append("request %d: %r" % (n, e))
            c.close()
            c = hu.Client(port, timeout=10)
        n += 1
        if new_conn_every and n % new_conn_every == 0:
            c.close()
            c = hu.Client(port, timeout=10)
        left = target - time.monotonic()
        if left > 0:
            time.sleep(left)  # request pacing, not synchronisation
    c.close()
    return n, errors


def case_stale_pooled_connection_dropped():
    b = HttpBackend("stale", idle_close=0.2)
    sl = start(b)
    port = sl.port("web")
    r = hu.request_once(port, "GET", "/first")
    check(r.status == 200, "first request: 200", r.describe())
    check(harness.wait_until(lambda: b.stats()["idle_closed"] >= 1, 5),
          "the backend closed the idle upstream connection", repr(b.stats()))
    start_line = sl.line_count()
    r = hu.request_once(port, "GET", "/second")
    check(r.status == 200, "the next request succeeds", r.describe() + "\n" + hu.log_tail(sl))
    st = b.stats()
    check(st["connections"] == 2 and st["requests"] == 2, "it went over a new upstream connection", repr(st))
    # the access line is written once the response is out: wait for it
    log = harness.wait_until(lambda: [x for x in hu.request_log(sl, start_line) if x["target"] == "/second"], 5)
    check(log and log[-1]["flags"] == "-", "no re-send was needed: the closed connection was never used",
          "\n".join(x["line"] for x in log or []) + "\n" + hu.log_tail(sl, 6))
    hu.stop_and_check(sl)


def case_resend_on_reused_connection():
    # the 2nd request on every upstream connection is read and then the connection is closed unanswered
    b = HttpBackend("dropper", drop_nth=2, drop_mode="fin")
    sl = start(b)
    port = sl.port("web")
    c = hu.Client(port)
    for i, method in enumerate(["GET", "GET", "PUT", "DELETE", "OPTIONS", "HEAD"]):
        r = c.request(method, "/idem/%d" % i, body=b"x" if method == "PUT" else None)
        check(r.status == 200, "%s on a reused connection that fails before any response byte: re-sent, 200" %
              method, r.describe() + "\n" + hu.log_tail(sl, 6))
    st = b.stats()
    check(st["dropped"] == 5 and st["requests"] == 11,
          "each request after the first was dropped once and re-sent once (5 drops, 11 backend requests)", repr(st))
    # POST is not idempotent: not re-sent
    r = c.request("POST", "/post", body=b"payload")
    check(r.status == 502, "POST on a reused connection that fails before the response: 502, not re-sent",
          r.describe())
    posts = b.requests_for(lambda x: x["method"] == "POST")
    check(len(posts) == 1, "the backend saw the POST exactly once", repr([(x["conn"], x["conn_request"])
                                                                           for x in posts]))
    hu.stop_and_check(sl)


def case_keepalive_timeout_advertised():
    b = HttpBackend("ka", keepalive_timeout=1)
    sl = start(b, workers=2)
    duration = min(IDLE_SECONDS, 6.0)
    n, errors = paced_requests(sl.port("web"), duration, 1.0, jitter=True)
    st = b.stats()
    info("%d requests in %.0f s; backend %r" % (n, duration, st))
    check(not errors, "Keep-Alive: timeout=1 upstream, a request every 1 s: no client-visible errors",
          "\n".join(errors[:10]) + "\n" + hu.log_tail(sl))
    check(st["requests"] == n, "the backend received every request once", repr(st))
    hu.stop_and_check(sl)


def case_backend_closes_idle_after_1s():
    b = HttpBackend("idle1", idle_close=1.0)
    sl = start(b, workers=2)
    n, errors = paced_requests(sl.port("web"), IDLE_SECONDS, 1.0, new_conn_every=7, jitter=True)
    st = b.stats()
    info("%d requests in %.0f s; backend %r" % (n, IDLE_SECONDS, st))
    check(not errors, "backend closing idle connections after 1 s, a request every 1 s for %.0f s: "
          "zero client-visible errors" % IDLE_SECONDS, "\n".join(errors[:10]) + "\n" + hu.log_tail(sl))
    check(st["requests"] >= n, "the backend answered every request", repr(st))
    rc = sl.stop()
    harness.check_clean_exit(sl, rc)
    stats_line = sl.find_lines("stale-connection re-sends")
    if stats_line:
        info(stats_line[-1].split("] ", 1)[-1])


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_stale_pooled_connection_dropped, case_resend_on_reused_connection,
                       case_keepalive_timeout_advertised, case_backend_closes_idle_after_1s])

#!/usr/bin/env python3
"""Upstream connection pools: 10,000 requests over 50 client connections use at most
pool.max_connections upstream connections; max_lifetime and max_requests_per_connection
recycle connections; idle_timeout closes idle ones; max_pending_requests overflow and
pending_timeout answer 503; an upstream Connection: close retires the connection."""

import http.client
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
from http_backend import BackendProcess, HttpBackend  # noqa: E402
import http_util as hu  # noqa: E402

TOTAL_REQUESTS = int(hu.env_number("SLUICE_HTTP_POOL_REQUESTS", 10000))
CLIENT_CONNS = 50


def start(backend, pool=None, workers=2, routes=None, http=None):
    routes = routes or [{"match": {"prefix": "/"}, "cluster": "app"}]
    kw = {"pool": pool} if pool else {}
    return hu.start_sluice([hu.simple_listener(routes, http=http)], [hu.cluster("app", [backend], **kw)],
                           workers=workers)


def run_clients(port, nconns, per_conn, path="/p", deadline_s=40.0):
    """nconns threads, each with one persistent http.client connection doing per_conn GETs."""
    errors = []
    statuses = {}
    lock = threading.Lock()
    reconnects = [0]
    deadline = time.monotonic() + deadline_s

    def worker(i):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        try:
            for j in range(per_conn):
                if time.monotonic() > deadline:
                    with lock:
                        errors.append("client %d: deadline passed after %d requests" % (i, j))
                    return
                try:
                    c.request("GET", "%s/%d/%d" % (path, i, j))
                    r = c.getresponse()
                    r.read()
                    with lock:
                        statuses[r.status] = statuses.get(r.status, 0) + 1
                    if r.will_close:
                        with lock:
                            reconnects[0] += 1
                        c.close()
                except Exception as e:
                    with lock:
                        errors.append("client %d request %d: %r" % (i, j, e))
                    c.close()
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(nconns)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic() + 5))
    return statuses, errors, time.monotonic() - t0, reconnects[0]


def case_many_requests_few_upstream_connections():
    be = BackendProcess("pool")
    sl = start(be, pool={"max_connections": 8})
    per_conn = TOTAL_REQUESTS // CLIENT_CONNS
    statuses, errors, elapsed, reconnects = run_clients(sl.port("web"), CLIENT_CONNS, per_conn)
    total = per_conn * CLIENT_CONNS
    info("%d requests over %d client connections in %.1f s (%.0f req/s)" % (
        total, CLIENT_CONNS, elapsed, total / elapsed))
    check(not errors, "no client errors", "\n".join(errors[:20]))
    check(statuses == {200: total}, "all %d requests answered 200" % total, repr(statuses))
    st = be.stats()
    info("backend: %r" % st)
    check(st["requests"] == total, "the backend received exactly %d requests" % total, repr(st))
    check(st["connections"] <= 8, "the backend saw at most pool.max_connections=8 connections (saw %d)" %
          st["connections"], repr(st))
    check(reconnects == 0, "no client connection was closed by sluice", "%d closes" % reconnects)
    hu.stop_and_check(sl)


def case_max_lifetime_recycles():
    b = HttpBackend("life")
    sl = start(b, pool={"max_lifetime": "300ms"}, workers=1)
    c = hu.Client(sl.port("web"))
    errors = []
    n = 0
    # a request every 50 ms until the backend has seen 4 distinct connections (bounded)
    deadline = time.monotonic() + 10
    while b.stats()["connections"] < 4 and time.monotonic() < deadline:
        r = c.request("GET", "/life/%d" % n)
        n += 1
        if r.status != 200:
            errors.append(r.describe())
        time.sleep(0.05)  # request pacing
    st = b.stats()
    info("%d requests, backend %r" % (n, st))
    check(st["connections"] >= 4, "max_lifetime 300ms: the backend saw new connections over time", repr(st))
    check(not errors, "every request answered 200", "\n".join(errors[:5]))
    conns = [r["conn"] for r in b.requests_for(lambda r: True)]
    runs = sum(1 for i in range(1, len(conns)) if conns[i] != conns[i - 1])
    check(runs >= 3 and len(conns) / (runs + 1) >= 2,
          "each upstream connection served several requests before being recycled",
          "connection per request: %r" % conns)
    hu.stop_and_check(sl)


def case_max_requests_per_upstream_connection():
    b = HttpBackend("mrpc")
    sl = start(b, pool={"max_requests_per_connection": 5}, workers=1)
    c = hu.Client(sl.port("web"))
    statuses = [c.request("GET", "/n/%d" % i).status for i in range(20)]
    check(statuses == [200] * 20, "20 requests over one client connection: all 200", repr(statuses))
    per_conn = {}
    for rec in b.requests_for(lambda r: True):
        per_conn[rec["conn"]] = per_conn.get(rec["conn"], 0) + 1
    check(sorted(per_conn.values()) == [5, 5, 5, 5],
          "pool max_requests_per_connection 5: 20 requests used 4 upstream connections of 5", repr(per_conn))
    hu.stop_and_check(sl)


def case_pool_idle_timeout():
    b = HttpBackend("idle")
    sl = start(b, pool={"idle_timeout": "300ms"}, workers=1)
    t0 = time.monotonic()
    r = hu.request_once(sl.port("web"), "GET", "/one")
    check(r.status == 200, "request: 200", r.describe())
    closed = harness.wait_until(lambda: b.stats()["closed"] >= 1, 5)
    took = time.monotonic() - t0
    check(closed and 0.2 <= took <= 3.0, "pool idle_timeout 300ms: the idle upstream connection is closed "
          "(after %.2f s)" % took, repr(b.stats()))
    r = hu.request_once(sl.port("web"), "GET", "/two")
    check(r.status == 200 and b.stats()["connections"] == 2, "the next request opens a new connection",
          repr(b.stats()))
    hu.stop_and_check(sl)


def case_upstream_connection_close_retires():
    b = HttpBackend("closer", close_after=1)
    sl = start(b, workers=1)
    c = hu.Client(sl.port("web"))
    statuses = []
    for i in range(10):
        statuses.append(c.request("GET", "/c/%d" % i).status)
    check(statuses == [200] * 10, "10 requests over one client connection: all 200 while the backend "
          "answers each with Connection: close", repr(statuses))
    st = b.stats()
    check(st["connections"] == 10 and st["requests"] == 10,
          "each request used a fresh upstream connection (none re-used after Connection: close)", repr(st))
    harness.wait_until(lambda: len(hu.request_log(sl)) >= 10, 5)
    flags = [r["flags"] for r in hu.request_log(sl)]
    check(flags == ["-"] * len(flags),
          "no request needed a re-send or retry (no flag at all)", "\n".join(r["line"] for r in hu.request_log(sl)))
    hu.stop_and_check(sl)


def case_pending_overflow_503():
    b = HttpBackend("slow")
    sl = start(b, pool={"max_connections": 1, "max_pending_requests": 1, "pending_timeout": "10s"}, workers=1)
    port = sl.port("web")
    results = {}

    def one(i):
        t0 = time.monotonic()
        try:
            r = hu.request_once(port, "GET", "/delay/1000/r%d" % i, timeout=15)
            results[i] = (r.status, time.monotonic() - t0, r)
        except Exception as e:
            results[i] = (repr(e), time.monotonic() - t0, None)

    t1 = threading.Thread(target=one, args=(1,), daemon=True)
    t1.start()
    check(harness.wait_until(lambda: b.stats()["requests"] >= 1, 5), "the first request reached the backend",
          repr(b.stats()))
    others = [threading.Thread(target=one, args=(i,), daemon=True) for i in (2, 3)]
    for t in others:
        t.start()
    for t in [t1] + others:
        t.join(20)
    st = sorted(v[0] for v in results.values())
    info("results: %r" % {k: (v[0], round(v[1], 2)) for k, v in results.items()})
    check(st == [200, 200, 503], "max_connections 1, max_pending_requests 1, 3 concurrent requests: two 200, one 503",
          repr(results) + "\n" + hu.log_tail(sl))
    fast = [v for v in results.values() if v[0] == 503]
    check(fast and fast[0][1] < 1.0, "the 503 comes at once, not after the slow response",
          "%.2f s" % (fast[0][1] if fast else -1))
    check(b.stats()["connections"] == 1 and b.stats()["requests"] == 2,
          "the backend saw one connection and two requests", repr(b.stats()))
    hu.stop_and_check(sl)


def case_pending_timeout_503():
    b = HttpBackend("slow")
    sl = start(b, pool={"max_connections": 1, "max_pending_requests": 10, "pending_timeout": "300ms"}, workers=1)
    port = sl.port("web")
    holder = {}

    def slow():
        holder["r"] = hu.request_once(port, "GET", "/delay/2000/first", timeout=15)

    t = threading.Thread(target=slow, daemon=True)
    t.start()
    check(harness.wait_until(lambda: b.stats()["requests"] >= 1, 5), "the first request holds the only connection",
          repr(b.stats()))
    t0 = time.monotonic()
    r = hu.request_once(port, "GET", "/second", timeout=15)
    took = time.monotonic() - t0
    check(r.status == 503 and 0.2 <= took <= 1.5,
          "pending_timeout 300ms: the queued request gets 503 after %.2f s" % took, r.describe())
    t.join(10)
    check(holder.get("r") is not None and holder["r"].status == 200, "the slow request still completes with 200",
          repr(holder.get("r")))
    hu.stop_and_check(sl)


def case_min_idle_warm_connections():
    b = HttpBackend("warm")
    sl = start(b, pool={"min_idle": 2}, workers=1)
    warmed = harness.wait_until(lambda: b.stats()["accepted"] >= 2, 5)
    check(warmed and b.stats()["accepted"] == 2,
          "pool min_idle 2: two upstream connections open before any request", repr(b.stats()))
    r = hu.request_once(sl.port("web"), "GET", "/warm")
    check(r.status == 200 and b.stats()["accepted"] == 2, "the request uses a warm connection",
          repr(b.stats()))
    hu.stop_and_check(sl)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_many_requests_few_upstream_connections, case_max_lifetime_recycles,
                       case_max_requests_per_upstream_connection, case_pool_idle_timeout,
                       case_upstream_connection_close_retires, case_pending_overflow_503,
                       case_pending_timeout_503, case_min_idle_warm_connections])

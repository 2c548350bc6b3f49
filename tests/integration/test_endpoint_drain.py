#!/usr/bin/env python3
"""Draining one endpoint through the admin API (POST /clusters/{c}/endpoints/{ip:port}/drain):
under load nothing is lost or duplicated and the endpoint stops getting requests while the
others carry on; a request in flight on it completes; its idle pooled connections close; on a
TCP listener new connections avoid it while an established one keeps working; it stays out
even in panic mode; with every endpoint drained sluice answers 503."""

import collections
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
from http_backend import HttpBackend  # noqa: E402
import http_util as hu  # noqa: E402

ADMIN_RE = re.compile(r"admin listening on 127\.0\.0\.1:(\d+)")


def admin_config(clusters, listeners=None, workers=2, extra=None):
    if listeners is None:
        listeners = [hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])]
    cfg = {"workers": workers, "log_level": "debug", "drain_timeout": "5s",
           "admin": {"address": "127.0.0.1:0"}, "listeners": listeners, "clusters": clusters}
    cfg.update(extra or {})
    return harness.to_yaml(hu._quote(cfg)) + "\n"


def start(clusters, **kw):
    sl = harness.Sluice(admin_config(clusters, **kw))
    line = sl.wait_log(ADMIN_RE, 5)
    if not line:
        raise harness.CheckFailed_with("no 'admin listening on' line", sl.stderr_text())
    return sl, int(ADMIN_RE.search(line).group(1))


def drain(sl, ap, address, cluster="app"):
    """POSTs the drain; checks the answer and the log line."""
    r = hu.request_once(ap, "POST", "/clusters/%s/endpoints/%s/drain" % (cluster, address), body=b"",
                        host="admin", timeout=5)
    check(r.status == 200 and r.body == ("endpoint %s of cluster %s is draining\n" % (address, cluster)).encode(),
          "drain %s: 200 '%s'" % (address, r.body.decode("latin-1").strip()), r.describe())
    check(sl.wait_log("cluster %s: endpoint %s draining: no new requests" % (cluster, address), 5),
          "log: endpoint %s draining: no new requests" % address, hu.log_tail(sl, 10))
    return r


def backend_of(r):
    return r.header("x-backend")


def case_drain_under_load():
    bs = [HttpBackend(n) for n in ("a", "b", "c")]
    a, b, c = bs
    sl, ap = start([hu.cluster("app", bs)], workers=2)
    port = sl.port("web")
    threads_n, per_thread = 6, 250
    total = threads_n * per_thread
    results = {}          # id -> list of (status, backend, echoed target)
    errors = []
    lock = threading.Lock()
    done = [0]
    drain_at = [None]     # monotonic time when the drain answer arrived

    def client(t):
        cl = None
        try:
            for k in range(per_thread):
                rid = "%d-%d" % (t, k)
                if cl is None:
                    cl = hu.Client(port, timeout=10)
                r = cl.request("GET", "/req/%s" % rid)
                echoed = r.json().get("target") if r.status == 200 else None
                with lock:
                    results.setdefault(rid, []).append((r.status, backend_of(r), echoed))
                    done[0] += 1
                if "close" in r.tokens("connection"):
                    cl.close()
                    cl = None
        except Exception as e:
            with lock:
                errors.append("thread %d: %r" % (t, e))
        finally:
            if cl:
                cl.close()

    ths = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(threads_n)]
    t0 = time.monotonic()
    for th in ths:
        th.start()
    check(harness.wait_until(lambda: done[0] >= total // 2 or not any(th.is_alive() for th in ths), 30),
          "half of the load is done (%d of %d)" % (done[0], total), repr(errors))
    b_before = b.stats()["requests"]
    drain(sl, ap, b.address)
    drain_at[0] = time.monotonic()
    done_at_drain = done[0]
    for th in ths:
        th.join(40)
    took = time.monotonic() - t0
    check(not any(th.is_alive() for th in ths), "the load finished (%d requests in %.1f s)" % (done[0], took),
          repr(errors))
    check(not errors, "no client errors", "\n".join(errors[:10]))
    ids = ["%d-%d" % (t, k) for t in range(threads_n) for k in range(per_thread)]
    bad = [(i, results.get(i)) for i in ids
           if results.get(i) is None or len(results[i]) != 1 or results[i][0][0] != 200 or
           results[i][0][2] != "/req/%s" % i]
    check(not bad, "every one of the %d requests got exactly one 200 with its own echo" % total,
          repr(bad[:10]))
    seen = collections.Counter()
    where = collections.defaultdict(list)
    for be in bs:
        for rec in be.requests_for(lambda x: x["target"].startswith("/req/")):
            rid = rec["target"][len("/req/"):]
            seen[rid] += 1
            where[rid].append(be.name)
    dup = [(i, where[i]) for i in ids if seen[i] != 1]
    check(not dup and len(seen) == total,
          "every id reached exactly one backend (no loss, no duplicate)", repr(dup[:10]))
    mism = [i for i in ids if results[i][0][1] != where[i][0]]
    check(not mism, "the X-Backend of each answer names the backend that saw the id", repr(mism[:10]))
    counts = {be.name: be.stats()["requests"] for be in bs}
    harness.info("requests per backend: %r; b had %d when the drain was posted (%d of %d done)" %
                 (counts, b_before, done_at_drain, total))
    check(b_before >= total // 6, "before the drain b had its share (%d)" % b_before, repr(counts))
    # requests routed before the workers saw the drain may still arrive: a few at most
    late_b = b.requests_for(lambda x: x["target"].startswith("/req/") and x["time"] > drain_at[0])
    check(len(late_b) <= threads_n,
          "after the drain answer b got at most %d requests already routed (%d)" % (threads_n, len(late_b)),
          repr([x["target"] for x in late_b]))
    last_b = max(x["time"] for x in b.requests_for(lambda x: x["target"].startswith("/req/")))
    after_last = [x for be in (a, c) for x in be.requests_for(lambda x: x["target"].startswith("/req/")
                                                                 and x["time"] > last_b)]
    check(len(after_last) >= (total - done_at_drain) - 2 * threads_n,
          "a and c carried the rest of the load after b's last request (%d requests)" % len(after_last),
          repr(counts))
    # and afterwards: b's counter stays put while a and c keep serving
    b_now = b.stats()["requests"]
    after = [hu.request_once(port, "GET", "/after/%d" % i).status for i in range(60)]
    check(after == [200] * 60, "60 more requests after the load: all 200", repr(after))
    check(b.stats()["requests"] == b_now, "60 more requests: none reached b (%d -> %d)" %
          (b_now, b.stats()["requests"]), repr(b.stats()))
    na = len(a.requests_for(lambda x: x["target"].startswith("/after/")))
    nc = len(c.requests_for(lambda x: x["target"].startswith("/after/")))
    check(na + nc == 60 and na >= 15 and nc >= 15, "they were shared by a (%d) and c (%d)" % (na, nc), "")
    hu.stop_and_check(sl)


def case_in_flight_request_completes():
    a, b = HttpBackend("a"), HttpBackend("b")
    sl, ap = start([hu.cluster("app", [a, b])], workers=2)
    port = sl.port("web")
    holder = {}
    c = hu.Client(port, timeout=10)

    def slow():
        try:
            holder["r"] = c.request("GET", "/delay/1000/slow")
            holder["t"] = time.monotonic()
        except Exception as e:
            holder["e"] = e

    th = threading.Thread(target=slow, daemon=True)
    th.start()
    got = harness.wait_until(lambda: [be for be in (a, b) if be.requests_for(lambda x: "/slow" in x["target"])], 5)
    check(got, "the slow request reached a backend", repr([a.stats(), b.stats()]))
    target = got[0]
    other = b if target is a else a
    harness.info("the slow request is on %s; draining it" % target.name)
    drain(sl, ap, target.address)
    drained_at = time.monotonic()
    check("r" not in holder, "the slow request was still in flight when the drain answered", repr(holder))
    th.join(10)
    r = holder.get("r")
    check(r is not None and r.status == 200 and backend_of(r) == target.name and
          r.json()["target"] == "/delay/1000/slow",
          "the in-flight request completes with 200 from the drained endpoint %s" % target.name, repr(holder))
    check(holder["t"] > drained_at, "(its answer came after the drain)", "")
    # the next request on the same client connection goes to the other endpoint
    r = c.request("GET", "/next")
    check(r.status == 200 and backend_of(r) == other.name, "the next request goes to %s" % other.name,
          r.describe())
    c.close()
    # the busy pooled connection to the drained endpoint closes once its request is done
    check(harness.wait_until(lambda: target.stats()["active"] == 0, 3),
          "the upstream connection that carried it is closed after the response", repr(target.stats()))
    statuses = [(x.status, backend_of(x)) for x in (hu.request_once(port, "GET", "/n/%d" % i) for i in range(10))]
    check(statuses == [(200, other.name)] * 10, "10 new requests: all 200 from %s" % other.name, repr(statuses))
    check(len(target.requests_for(lambda x: True)) == 1, "the drained endpoint saw only the slow request",
          repr(target.stats()))
    hu.stop_and_check(sl)


def case_idle_pooled_connections_closed():
    a, b = HttpBackend("a"), HttpBackend("b")
    sl, ap = start([hu.cluster("app", [a, b])], workers=2)
    port = sl.port("web")
    # several clients at once so that each worker pools connections to both endpoints
    clients = [hu.Client(port, timeout=5) for _ in range(6)]
    warm = [cl.request("GET", "/warm/%d/%d" % (rnd, i)).status for rnd in range(6) for i, cl in enumerate(clients)]
    check(warm == [200] * len(warm), "%d warm-up requests on 6 keep-alive clients: all 200" % len(warm), repr(warm))
    for cl in clients:
        cl.close()
    check(b.stats()["active"] >= 1 and a.stats()["active"] >= 1,
          "both endpoints hold idle keep-alive connections from sluice (a %d, b %d)" %
          (a.stats()["active"], b.stats()["active"]), repr([a.stats(), b.stats()]))
    a_active = a.stats()["active"]
    drain(sl, ap, b.address)
    ok = harness.wait_until(lambda: b.stats()["active"] == 0, 3)
    check(ok, "the drained endpoint's idle pooled connections are closed (b: %d open)" % b.stats()["active"],
          repr(b.stats()))
    est = harness.wait_until(lambda: not established_to(b.port), 3)
    check(est, "ss shows no ESTABLISHED connection to b's port", sh_ss(b.port))
    check(a.stats()["active"] == a_active,
          "a's pooled connections are untouched (%d -> %d)" % (a_active, a.stats()["active"]), repr(a.stats()))
    before = a.stats()["connections"]
    r = hu.request_once(port, "GET", "/again")
    check(r.status == 200 and backend_of(r) == "a", "a request after the drain goes to a", r.describe())
    # (which worker takes the client decides whether it had a pooled connection to a: not checked)
    harness.info("connections sluice opened to a for it: %d" % (a.stats()["connections"] - before))
    hu.stop_and_check(sl)


def sh_ss(port):
    return harness.sh(["ss", "-tn", "state", "established", "( dport = :%d )" % port], check_rc=False).stdout


def established_to(port):
    out = sh_ss(port)
    return [l for l in out.splitlines()[1:] if l.strip()]


def case_tcp_listener():
    e1, e2 = harness.EchoServer(), harness.EchoServer()
    text = harness.tcp_config([e1.address, e2.address], workers=2,
                              extra={"admin": {"address": "127.0.0.1:0"}})
    sl = harness.Sluice(text)
    line = sl.wait_log(ADMIN_RE, 5)
    check(line, "admin listening", sl.stderr_text())
    ap = int(ADMIN_RE.search(line).group(1))
    port = sl.port("tcp_in")
    # open connections until one is established to each echo server
    conns = {}
    for i in range(20):
        before = (e1.accepted, e2.accepted)
        s = harness.connect(port)
        if not harness.echo_roundtrip(s, b"hello %d" % i):
            check(False, "connection %d through sluice echoes" % i, hu.log_tail(sl))
        if e1.accepted > before[0] and "e1" not in conns:
            conns["e1"] = s
        elif e2.accepted > before[1] and "e2" not in conns:
            conns["e2"] = s
        else:
            s.close()
        if len(conns) == 2:
            break
    check(len(conns) == 2, "one proxied connection established to each endpoint", repr(conns.keys()))
    drain(sl, ap, e1.address, cluster="backends")
    a1 = e1.accepted
    a2 = e2.accepted
    ok = []
    for i in range(12):
        s = harness.connect(port)
        ok.append(harness.echo_roundtrip(s, b"new %d" % i))
        s.close()
    check(all(ok), "12 new connections after the drain all echo", repr(ok))
    check(e1.accepted == a1 and e2.accepted == a2 + 12,
          "all 12 went to the other endpoint (drained +%d, other +%d)" % (e1.accepted - a1, e2.accepted - a2), "")
    check(harness.echo_roundtrip(conns["e1"], b"still here after the drain"),
          "the established connection to the drained endpoint still sends and receives", hu.log_tail(sl))
    check(harness.echo_roundtrip(conns["e1"], b"x" * 100000), "and carries 100 kB more both ways", "")
    check(harness.echo_roundtrip(conns["e2"], b"other"), "the connection to the other endpoint works too", "")
    for s in conns.values():
        s.close()
    rc = sl.stop()
    harness.check_clean_exit(sl, rc)


def case_drained_excluded_in_panic():
    a, b = HttpBackend("a"), HttpBackend("b")
    hc = {"type": "http", "interval": "1s", "timeout": "500ms", "healthy_threshold": 1,
          "unhealthy_threshold": 1, "http": {"path": "/status/503"}}
    sl, ap = start([hu.cluster("app", [a, b], health_check=hc)], workers=2)
    port = sl.port("web")
    check(sl.wait_log("cluster app: panic mode: 0 of 2 endpoints usable", 5),
          "both endpoints fail their health check: panic mode", hu.log_tail(sl, 10))
    first = [backend_of(hu.request_once(port, "GET", "/p/%d" % i)) for i in range(12)]
    check(sorted(set(first)) == ["a", "b"], "in panic mode both endpoints get traffic (%r)" %
          dict(collections.Counter(first)), repr(first))
    drain(sl, ap, b.address)
    got = [hu.request_once(port, "GET", "/q/%d" % i) for i in range(20)]
    summary = [(r.status, backend_of(r)) for r in got]
    check(summary == [(200, "a")] * 20, "after draining b, still in panic: all 20 requests go to a",
          repr(collections.Counter(summary)))
    check(not b.requests_for(lambda x: x["target"].startswith("/q/")), "b saw none of them", repr(b.stats()))
    check(not sl.find_lines("leaving panic mode"), "(sluice never left panic mode)", hu.log_tail(sl, 10))
    hu.stop_and_check(sl)


def case_all_endpoints_drained():
    a, b = HttpBackend("a"), HttpBackend("b")
    sl, ap = start([hu.cluster("app", [a, b])], workers=2)
    port = sl.port("web")
    drain(sl, ap, a.address)
    r = hu.request_once(port, "GET", "/one-left")
    check(r.status == 200 and backend_of(r) == "b", "one endpoint drained: served by the other", r.describe())
    drain(sl, ap, b.address)
    mark = sl.line_count()
    for i in range(4):
        r = hu.request_once(port, "GET", "/none/%d" % i)
        check(r.status == 503 and r.body.rstrip(b"\n") == b"no healthy endpoint in cluster app",
              "every endpoint drained: 503 'no healthy endpoint in cluster app' (%d)" % i, r.describe())
    check(harness.wait_until(lambda: len([x for x in hu.request_log(sl, mark) if x["target"].startswith("/none/")])
                             >= 4, 3), "the 503s are in the request log", hu.log_tail(sl))
    logged = [x for x in hu.request_log(sl, mark) if x["target"].startswith("/none/")]
    check(all(x["status"] == 503 and x["flags"] == "no_healthy_upstream" for x in logged),
          "flags exactly no_healthy_upstream", "\n".join(x["line"] for x in logged))
    check(not a.requests_for(lambda x: x["target"].startswith("/none/")) and
          not b.requests_for(lambda x: x["target"].startswith("/none/")), "no backend saw them", "")
    # draining again is harmless
    r = hu.request_once(ap, "POST", "/clusters/app/endpoints/%s/drain" % a.address, body=b"", host="admin")
    harness.info("draining a again: %d %r" % (r.status, r.body))
    hu.stop_and_check(sl)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_drain_under_load, case_in_flight_request_completes, case_idle_pooled_connections_closed,
                       case_tcp_listener, case_drained_excluded_in_panic, case_all_endpoints_drained])

#!/usr/bin/env python3
"""sluice's DNS resolver against a real nsd (dns_server.py), seen through its log and its traffic.

- TTL expiry: the A record changes 127.0.0.11 -> 127.0.0.12 (backends on both, same port);
  sluice asks again a tenth of the TTL before it runs out (every 1.8 s for 2 s), so its
  cache never misses after the first lookup, counts each resolution in the
  sluice_dns_resolution_seconds histogram, logs `added` / `left the answer` and the traffic
  moves;
- NXDOMAIN is cached for min(SOA TTL, SOA MINIMUM) clamped to negative_min_ttl, and no
  longer: the queries reaching the server (counted by a relay) and the repeated warn lines
  are that far apart; a record added to the zone is picked up when the negative TTL runs out;
- serve-stale: nsd stopped with SIGSTOP -> timeouts -> `serving the last good answer`,
  traffic keeps flowing; after stale_ttl the failure is logged as such and the cluster keeps
  its addresses; SIGCONT -> the answers are used again (a later change is followed);
- SRV: only the lowest priority value is used, SRV weights 1 and 3 give ~1:3 traffic, the
  SRV port is used; when the preferred group goes, the next one takes over;
- CNAME: a chain of max_cname_chain links resolves; a loop and a longer chain give their
  log lines naming the chain, and 503 for their clusters;
- family v6 / both with an AAAA record for ::1 (skipped when IPv6 loopback does not work);
- hosts_file: a name listed there is answered without a query and followed when the file changes.
"""

import collections
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info, soft_check  # noqa: E402
import http_util as hu  # noqa: E402
import dns_server as ds  # noqa: E402
from dns_server import backends_seen, dns_block, dns_cluster, make_config, until_from  # noqa: E402,F401

Z = "test.sluice"


# --------------------------------------------------------------------------
# helpers


def wait_log_time(sl, pred, timeout, start=0):
    """(line, monotonic time it was seen) or (None, None)."""
    line = sl.wait_log(pred, timeout, start)
    return line, (time.monotonic() if line else None)


def intervals(ts):
    return [round(b - a, 2) for a, b in zip(ts, ts[1:])]


# --------------------------------------------------------------------------
# cases


def case_ttl_expiry_moves_traffic():
    port, (a, b) = ds.backends_on_one_port([("a", "127.0.0.11"), ("b", "127.0.0.12")])
    ns = ds.NsdServer(["api IN A 127.0.0.11"], ttl=2)
    relay = ds.DnsRelay(ns.address)
    sl = harness.Sluice(make_config([dns_cluster("app", ["api." + Z], port)], dns_block(relay.address)) +
                        "admin: {address: \"127.0.0.1:0\"}\n")
    hp = sl.port("web")
    check(sl.find_lines("cluster app: api.test.sluice resolved to 127.0.0.11 (ttl 2s)"),
          "log: 'cluster app: api.test.sluice resolved to 127.0.0.11 (ttl 2s)'", hu.log_tail(sl))
    check(sl.find_lines("cluster app: endpoint 127.0.0.11:%d added (weight 1)" % port),
          "log: endpoint 127.0.0.11:%d added (weight 1)" % port, hu.log_tail(sl))
    counts, bad = backends_seen(hp, 20)
    check(not bad and counts == {"a": 20}, "20 requests: all 200 from a (127.0.0.11)", repr((counts, bad)))
    # sluice asks again a tenth of the TTL before it runs out: never sooner, never late
    ok = harness.wait_until(lambda: len(relay.queries_for("api." + Z, "A")) >= 3, 8)
    qs = relay.queries_for("api." + Z, "A")
    iv = intervals(qs)
    check(ok and all(1.7 <= x < 1.97 for x in iv),
          "the A queries for api reach the server every 1.8 s, before the 2 s TTL runs out (intervals %r)" %
          iv, repr(qs))
    m = re.search(r"admin listening on 127\.0\.0\.1:(\d+)", sl.stderr_text())
    check(m, "admin listening", hu.log_tail(sl))
    metrics = hu.request_once(int(m.group(1)), "GET", "/metrics").body.decode()

    def sample(name):
        found = re.search(r"^%s (\S+)$" % re.escape(name), metrics, re.M)
        return float(found.group(1)) if found else None

    misses, count = sample("sluice_dns_cache_misses_total"), sample("sluice_dns_resolution_seconds_count")
    inf = sample('sluice_dns_resolution_seconds_bucket{le="+Inf"}')
    check(misses == 1, "one cache miss (the first lookup): every refresh came before the answer expired",
          repr(misses))
    check(count is not None and count >= len(qs) - 1 and inf == count,
          "sluice_dns_resolution_seconds counts each resolution (%s, +Inf bucket %s, %d queries)" %
          (count, inf, len(qs)), metrics[:3000])
    mark = sl.line_count()
    t0 = time.monotonic()
    ns.set_zone(["api IN A 127.0.0.12"])
    added, t_added = wait_log_time(sl, "cluster app: endpoint 127.0.0.12:%d added (weight 1)" % port, 5, mark)
    check(added, "log: endpoint 127.0.0.12:%d added (weight 1)" % port, hu.log_tail(sl))
    check(t_added - t0 <= 2 + 0.8, "picked up %.2f s after the zone changed (TTL 2 s)" % (t_added - t0), "")
    left = sl.wait_log("cluster app: endpoint 127.0.0.11:%d left the answer: draining (no new requests; "
                       "pooled connections close)" % port, 2, mark)
    check(left, "log: endpoint 127.0.0.11:%d left the answer: draining (no new requests; pooled connections "
          "close)" % port, hu.log_tail(sl))
    n, bad = until_from(hp, "b", 1)
    check(n is not None and not bad, "the workers route to b right after (request %s)" % n, repr(bad))
    a_before = a.stats()["requests"]
    counts, bad = backends_seen(hp, 20, "/after")
    check(not bad and counts == {"b": 20}, "20 requests: all 200 from b (127.0.0.12)", repr((counts, bad)))
    check(a.stats()["requests"] == a_before, "a got none of them", repr(a.stats()))
    # and back: the old address returns
    mark = sl.line_count()
    ns.set_zone(["api IN A 127.0.0.11"])
    # a drained endpoint whose slot was already reclaimed returns as a new one; one still held
    # (a pooled connection not yet closed) comes back in its old slot
    back = ("cluster app: endpoint 127.0.0.11:%d is back in the answer" % port,
            "cluster app: endpoint 127.0.0.11:%d added (weight 1)" % port)
    check(sl.wait_log(lambda l: back[0] in l or back[1] in l, 4, mark),
          "zone back to 127.0.0.11: '%s' or '%s'" % back, hu.log_tail(sl))
    check(sl.wait_log("cluster app: endpoint 127.0.0.12:%d left the answer" % port, 2, mark),
          "and 127.0.0.12 left the answer", hu.log_tail(sl))
    n, bad = until_from(hp, "a", 1)
    check(n is not None and not bad, "the workers route to a right after (request %s)" % n, repr(bad))
    counts, bad = backends_seen(hp, 10, "/back")
    check(not bad and counts == {"a": 10}, "10 requests: all 200 from a again", repr((counts, bad)))
    hu.stop_and_check(sl)


def nxdomain_case(soa_ttl, minimum, negative_min_ttl, expect):
    """NXDOMAIN cached for `expect` seconds: queries and warn lines that far apart; then the name appears."""
    port, (a,) = ds.backends_on_one_port([("a", "127.0.0.11")])
    ns = ds.NsdServer(["other IN A 127.0.0.11"], ttl=1, soa_ttl=soa_ttl, minimum=minimum)
    r = ns.query("nope." + Z, "A")
    check(r and r[0] == "NXDOMAIN", "nsd answers NXDOMAIN for nope.test.sluice (SOA TTL %d, MINIMUM %d)" %
          (soa_ttl, minimum), repr(r))
    relay = ds.DnsRelay(ns.address)
    dns = dns_block(relay.address, negative_min_ttl=negative_min_ttl, negative_max_ttl="5m")
    # dns_failure_refresh is far from every negative TTL here, so the retry interval tells them apart
    sl = harness.Sluice(make_config([dns_cluster("app", ["nope." + Z], port, dns_failure_refresh="7s")], dns))
    hp = sl.port("web")
    warn = "cluster app: nope.test.sluice: no such name (NXDOMAIN)"
    lines = sl.find_lines(lambda l: warn in l or "sluice ready" in l)
    check(lines and warn in lines[0], "log, before 'sluice ready': '%s'" % warn, hu.log_tail(sl))
    r = hu.request_once(hp, "GET", "/x")
    check(r.status == 503 and r.body.rstrip(b"\n") == b"no healthy endpoint in cluster app",
          "a request meanwhile: 503 'no healthy endpoint in cluster app'", r.describe())
    ok = harness.wait_until(lambda: len(relay.queries_for("nope." + Z, "A")) >= 3, 3 * expect + 3)
    qs = relay.queries_for("nope." + Z, "A")
    iv = intervals(qs)
    check(ok and all(expect - 0.15 <= x <= expect + 0.6 for x in iv),
          "the queries for nope reach the server every %g s, the negative TTL (intervals %r)" % (expect, iv),
          repr(qs))
    lines = sl.find_lines(warn)
    check(len(lines) >= len(qs) - 1, "each retry logs the NXDOMAIN line again (%d lines, %d queries)" %
          (len(lines), len(qs)), "\n".join(lines))
    # the name appears right after a query: sluice sees it when the negative TTL runs out, not sooner
    n = len(relay.queries_for("nope." + Z, "A"))
    harness.wait_until(lambda: len(relay.queries_for("nope." + Z, "A")) > n, expect + 2, 0.002)
    last_q = relay.queries_for("nope." + Z, "A")[-1]
    # change the zone only once that query's NXDOMAIN is on its way back: a zone changed while
    # nsd still holds the query would answer it with the new record
    answered = harness.wait_until(lambda: len(relay.answers_for("nope." + Z, "A")) > n, 2, 0.002)
    check(answered and relay.answers_for("nope." + Z, "A")[-1][1] == "NXDOMAIN",
          "that query was answered NXDOMAIN before the zone changed", repr(relay.answers_for("nope." + Z, "A")))
    mark = sl.line_count()
    ns.set_zone(["other IN A 127.0.0.11", "nope IN A 127.0.0.11"])
    t_zone = time.monotonic()
    added, t_added = wait_log_time(sl, "cluster app: endpoint 127.0.0.11:%d added (weight 1)" % port,
                                   expect + 3, mark)
    check(added, "the record appears in the zone: endpoint 127.0.0.11:%d added" % port, hu.log_tail(sl))
    info("zone changed %.2f s after the last negative query; endpoint added %.2f s after it" %
         (t_zone - last_q, t_added - last_q))
    check(expect - 0.15 <= t_added - last_q <= expect + 0.6,
          "it is picked up %.2f s after the last negative answer (negative TTL %g s)" % (t_added - last_q, expect),
          "")
    check(sl.find_lines("cluster app: nope.test.sluice resolved to 127.0.0.11 (ttl 1s)", mark),
          "log: 'cluster app: nope.test.sluice resolved to 127.0.0.11 (ttl 1s)'", hu.log_tail(sl))
    n, bad = until_from(hp, "a", 1)
    check(n is not None and all(x == (503, b"no healthy endpoint in cluster app\n") for x in bad),
          "the workers route to a right after (request %s; before it only 503s)" % n, repr(bad))
    counts, bad = backends_seen(hp, 10)
    check(not bad and counts == {"a": 10}, "10 requests: all 200 from a", repr((counts, bad)))
    hu.stop_and_check(sl)


def case_nxdomain_cached_for_soa_minimum():
    # SOA TTL 3, MINIMUM 2 -> 2 s
    nxdomain_case(soa_ttl=3, minimum=2, negative_min_ttl="0s", expect=2)


def case_nxdomain_cached_for_soa_ttl():
    # SOA TTL 1, MINIMUM 3 -> 1 s
    nxdomain_case(soa_ttl=1, minimum=3, negative_min_ttl="0s", expect=1)


def case_nxdomain_negative_min_ttl_clamp():
    # SOA TTL 1, MINIMUM 1 -> 1 s, raised to negative_min_ttl 1500ms
    nxdomain_case(soa_ttl=1, minimum=1, negative_min_ttl="1500ms", expect=1.5)


def case_stale_answers_while_server_stopped():
    port, (a, b) = ds.backends_on_one_port([("a", "127.0.0.11"), ("b", "127.0.0.12")])
    ns = ds.NsdServer(["api IN A 127.0.0.11"], ttl=1)
    dns = dns_block(ns.address, timeout="300ms", attempts=2, stale_ttl="3s")
    sl = harness.Sluice(make_config([dns_cluster("app", ["api." + Z], port, dns_failure_refresh="1s")], dns))
    hp = sl.port("web")
    counts, bad = backends_seen(hp, 10)
    check(not bad and counts == {"a": 10}, "10 requests: all 200 from a", repr((counts, bad)))

    # steady traffic from a thread during the whole outage
    stop = threading.Event()
    results = []
    errors = []

    def load():
        c = None
        i = 0
        try:
            while not stop.is_set():
                if c is None:
                    c = hu.Client(hp, timeout=10)
                r = c.request("GET", "/load/%d" % i)
                results.append((time.monotonic(), r.status, r.header("x-backend")))
                if "close" in r.tokens("connection"):
                    c.close()
                    c = None
                i += 1
                time.sleep(0.02)  # paces the load; not a synchronisation
        except Exception as e:
            errors.append(repr(e))
        finally:
            if c:
                c.close()

    th = threading.Thread(target=load, daemon=True)
    th.start()
    mark = sl.line_count()
    ns.pause()
    t_pause = time.monotonic()
    stale_re = re.compile(r"dns: api\.test\.sluice: no answer from %s \(2 tries of 300ms\); serving the last good "
                          r"answer \((\S+) of stale_ttl left\)" % re.escape(ns.address))
    line, t_stale = wait_log_time(sl, stale_re, 1 + 2 + 1, mark)
    check(line, "nsd stopped (SIGSTOP): 'dns: api.test.sluice: no answer from %s (2 tries of 300ms); serving the "
          "last good answer (... of stale_ttl left)'" % ns.address, hu.log_tail(sl))
    left = stale_re.search(line).group(1)
    info("first stale line %.2f s after the pause: %s" % (t_stale - t_pause, line))
    soft_check(re.fullmatch(r"\d+(ms|s)", left) is not None,
               "the time left reads like a duration in s or ms ('%s')" % left, line)
    fail_line = ("cluster app: api.test.sluice: no answer from %s (2 tries of 300ms); keeping its last known "
                 "addresses" % ns.address)
    check(not sl.find_lines(fail_line, mark), "while stale, no 'keeping its last known addresses' line yet",
          hu.log_tail(sl))
    line2, t_fail = wait_log_time(sl, fail_line, 3 + 1 + 2 + 1, mark)
    check(line2, "after stale_ttl (3s): '%s'" % fail_line, hu.log_tail(sl))
    info("the failure line came %.2f s after the pause, %.2f s after the first stale line" %
         (t_fail - t_pause, t_fail - t_stale))
    check(t_fail - t_stale >= 3 - 1.0 - 0.3,
          "not before stale_ttl ran out (%.2f s after the first stale line; stale_ttl 3 s, TTL 1 s)" %
          (t_fail - t_stale), "")
    stale_lines = sl.find_lines(stale_re, mark)
    check(len(stale_lines) >= 2, "stale answers were served on each retry meanwhile (%d lines)" % len(stale_lines),
          "\n".join(stale_lines))
    # the failure is logged at each retry; the cluster keeps its address
    ok = harness.wait_until(lambda: len(sl.find_lines(fail_line, mark)) >= 2, 1 + 1 + 1.5)
    check(ok, "the failure is logged again at the next retry (dns_failure_refresh 1s)", hu.log_tail(sl))
    n = len(results)
    harness.wait_until(lambda: len(results) >= n + 20, 5)
    stop.set()
    th.join(10)
    check(not errors, "the load saw no client errors", "\n".join(errors))
    summary = collections.Counter((s, be) for _, s, be in results)
    check(summary and set(summary) == {(200, "a")},
          "%d requests during the outage and after stale_ttl: all 200 from a" % len(results), repr(summary))
    after_fail = [x for x in results if x[0] > t_fail]
    check(len(after_fail) >= 10, "(%d of them after the failure line)" % len(after_fail), "")
    check(not sl.find_lines("left the answer", mark), "no endpoint left the answer", hu.log_tail(sl))
    # SIGCONT: the server answers again; the next change is followed
    ns.resume()
    t_resume = time.monotonic()
    n_fail = len(sl.find_lines(fail_line, mark))
    harness.wait_until(lambda: ns.current_serial() == ns.serial, 3)
    ns.set_zone(["api IN A 127.0.0.12"])
    mark2 = sl.line_count()
    added, t_added = wait_log_time(sl, "cluster app: endpoint 127.0.0.12:%d added" % port, 1 + 1 + 2, mark2)
    check(added, "after SIGCONT and a zone change: endpoint 127.0.0.12:%d added (%.2f s after the resume)" %
          (port, (t_added or 0) - t_resume), hu.log_tail(sl))
    check(sl.wait_log("cluster app: endpoint 127.0.0.11:%d left the answer" % port, 2, mark2),
          "and 127.0.0.11 left the answer", hu.log_tail(sl))
    check(len(sl.find_lines(fail_line, mark)) <= n_fail + 1,
          "no more failure lines after the resume (at most one from a query already sent)",
          "\n".join(sl.find_lines(fail_line, mark)))
    n, bad = until_from(hp, "b", 1)
    check(n is not None and not bad, "the workers route to b right after (request %s)" % n, repr(bad))
    counts, bad = backends_seen(hp, 10, "/after")
    check(not bad and counts == {"b": 10}, "10 requests: all 200 from b", repr((counts, bad)))
    hu.stop_and_check(sl)


def case_srv_priority_and_weight():
    port, (a, b) = ds.backends_on_one_port([("a", "127.0.0.11"), ("b", "127.0.0.12")])
    c = ds.host_backend("c", "127.0.0.13")
    recs = ["_http._tcp IN SRV 10 1 %d a" % port,
            "_http._tcp IN SRV 10 3 %d b" % port,
            "_http._tcp IN SRV 20 5 %d c" % c.port,
            "a IN A 127.0.0.11", "b IN A 127.0.0.12", "c IN A 127.0.0.13"]
    ns = ds.NsdServer(recs, ttl=2)
    cl = {"name": "app", "type": "dns_srv", "srv_name": "_http._tcp." + Z, "connect_timeout": "1s"}
    sl = harness.Sluice(make_config([cl], dns_block(ns.address)))
    hp = sl.port("web")
    for addr, w in (("127.0.0.11:%d" % port, 1), ("127.0.0.12:%d" % port, 3)):
        check(sl.find_lines("cluster app: endpoint %s added (weight %d)" % (addr, w)),
              "log: endpoint %s added (weight %d) (SRV weight, SRV port)" % (addr, w), hu.log_tail(sl))
    check(not sl.find_lines("127.0.0.13"), "the priority-20 target is not used at all", hu.log_tail(sl))
    counts, bad = backends_seen(hp, 400)
    check(not bad, "400 requests: all 200", repr(bad[:5]))
    info("traffic: %r" % dict(counts))
    check(counts.get("c", 0) == 0, "c (priority 20) got none", repr(counts))
    check(85 <= counts.get("a", 0) <= 115 and counts.get("a", 0) + counts.get("b", 0) == 400,
          "a (weight 1) got ~1/4 (%d), b (weight 3) ~3/4 (%d)" % (counts.get("a", 0), counts.get("b", 0)),
          repr(counts))
    # the preferred group goes: the next priority takes over
    mark = sl.line_count()
    ns.set_zone(["_http._tcp IN SRV 20 5 %d c" % c.port, "a IN A 127.0.0.11", "b IN A 127.0.0.12",
                 "c IN A 127.0.0.13"])
    check(sl.wait_log("cluster app: endpoint 127.0.0.13:%d added (weight 5)" % c.port, 2 + 2, mark),
          "only priority 20 left: endpoint 127.0.0.13:%d added (weight 5)" % c.port, hu.log_tail(sl))
    for addr in ("127.0.0.11:%d" % port, "127.0.0.12:%d" % port):
        check(sl.wait_log("cluster app: endpoint %s left the answer" % addr, 2, mark),
              "endpoint %s left the answer" % addr, hu.log_tail(sl))
    n, bad = until_from(hp, "c", 1)
    check(n is not None and not bad, "the workers route to c right after (request %s)" % n, repr(bad))
    counts, bad = backends_seen(hp, 20, "/c")
    check(not bad and counts == {"c": 20}, "20 requests: all 200 from c", repr((counts, bad)))
    hu.stop_and_check(sl)


def case_cname_chains():
    port, (a,) = ds.backends_on_one_port([("a", "127.0.0.11")])
    recs = ["www IN CNAME mid", "mid IN CNAME api", "api IN A 127.0.0.11",
            "l1 IN CNAME l2", "l2 IN CNAME l1",
            "c1 IN CNAME c2", "c2 IN CNAME c3", "c3 IN CNAME c4", "c4 IN A 127.0.0.11"]
    ns = ds.NsdServer(recs, ttl=2)
    r = ns.query("l1." + Z, "A")
    info("nsd's answer for l1: %r" % (r,))
    clusters = [dns_cluster("app", ["www." + Z], port), dns_cluster("loop", ["l1." + Z], port),
                dns_cluster("long", ["c1." + Z], port)]
    routes = [{"match": {"prefix": "/loop"}, "cluster": "loop"}, {"match": {"prefix": "/long"}, "cluster": "long"},
              {"match": {"prefix": "/"}, "cluster": "app"}]
    sl = harness.Sluice(make_config(clusters, dns_block(ns.address, max_cname_chain=2), routes=routes))
    hp = sl.port("web")
    want = "cluster app: www.test.sluice resolved to 127.0.0.11 (ttl 2s)"
    check(sl.find_lines(want), "a chain of 2 CNAMEs (max_cname_chain 2) resolves: '%s'" % want, hu.log_tail(sl))
    counts, bad = backends_seen(hp, 10, "/app")
    check(not bad and counts == {"a": 10}, "10 requests through it: all 200 from a", repr((counts, bad)))
    loop = "cluster loop: l1.test.sluice: CNAME loop: l1.test.sluice -> l2.test.sluice -> l1.test.sluice"
    check(sl.find_lines(loop), "log: '%s'" % loop, hu.log_tail(sl))
    longer = ("cluster long: c1.test.sluice: CNAME chain longer than 2: c1.test.sluice -> c2.test.sluice -> "
              "c3.test.sluice -> c4.test.sluice")
    check(sl.find_lines(longer), "log: '%s'" % longer, hu.log_tail(sl))
    for name in ("loop", "long"):
        r = hu.request_once(hp, "GET", "/%s/x" % name)
        check(r.status == 503 and r.body.rstrip(b"\n") == ("no healthy endpoint in cluster %s" % name).encode(),
              "a request to cluster %s: 503 'no healthy endpoint in cluster %s'" % (name, name), r.describe())
    # the failures are retried (dns_failure_refresh, default 5s): not in a tight loop
    n_loop = len(sl.find_lines(loop))
    check(n_loop <= 2, "the loop was not retried in a tight loop (%d lines so far)" % n_loop, hu.log_tail(sl))
    hu.stop_and_check(sl)


def case_family_v6_and_both():
    if not ds.ipv6_loopback_works():
        raise harness.Skip("IPv6 loopback (::1) does not work here")
    port, (a, v6) = ds.backends_on_one_port([("a", "127.0.0.11"), ("v6", "::1")])
    ns = ds.NsdServer(["api IN A 127.0.0.11", "api IN AAAA ::1", "four IN A 127.0.0.11"], ttl=2)
    # v6: only the AAAA record
    sl = harness.Sluice(make_config([dns_cluster("app", ["api." + Z], port), dns_cluster("four", ["four." + Z], port)],
                           dns_block(ns.address, family="v6"),
                           routes=[{"match": {"prefix": "/four"}, "cluster": "four"},
                                   {"match": {"prefix": "/"}, "cluster": "app"}]))
    hp = sl.port("web")
    check(sl.find_lines("cluster app: api.test.sluice resolved to ::1 (ttl 2s)"),
          "family v6: 'cluster app: api.test.sluice resolved to ::1 (ttl 2s)'", hu.log_tail(sl))
    check(sl.find_lines("cluster app: endpoint [::1]:%d added (weight 1)" % port),
          "log: endpoint [::1]:%d added (weight 1)" % port, hu.log_tail(sl))
    check(not sl.find_lines("endpoint 127.0.0.11:%d added" % port), "no IPv4 endpoint", hu.log_tail(sl))
    counts, bad = backends_seen(hp, 10)
    check(not bad and counts == {"v6": 10}, "10 requests: all 200 from the backend on [::1]", repr((counts, bad)))
    want = "cluster four: four.test.sluice: no AAAA record (NODATA)"
    check(sl.find_lines(want), "a name with only an A record: '%s'" % want, hu.log_tail(sl))
    hu.stop_and_check(sl)
    # both: AAAA and A, IPv6 first; strict_dns uses both, logical_dns the first (IPv6)
    sl = harness.Sluice(make_config([dns_cluster("app", ["api." + Z], port),
                            dns_cluster("first", ["api." + Z], port, type="logical_dns"),
                            dns_cluster("four", ["four." + Z], port)],
                           dns_block(ns.address, family="both"),
                           routes=[{"match": {"prefix": "/first"}, "cluster": "first"},
                                   {"match": {"prefix": "/four"}, "cluster": "four"},
                                   {"match": {"prefix": "/"}, "cluster": "app"}]))
    hp = sl.port("web")
    check(sl.find_lines("cluster app: api.test.sluice resolved to ::1, 127.0.0.11 (ttl 2s)"),
          "family both: 'cluster app: api.test.sluice resolved to ::1, 127.0.0.11 (ttl 2s)' (IPv6 first)",
          hu.log_tail(sl))
    counts, bad = backends_seen(hp, 20)
    check(not bad and counts == {"v6": 10, "a": 10}, "strict_dns: 20 requests shared by [::1] and 127.0.0.11",
          repr((counts, bad)))
    counts, bad = backends_seen(hp, 10, "/first")
    check(not bad and counts == {"v6": 10}, "logical_dns: 10 requests all to the first address ([::1])",
          repr((counts, bad)))
    check(sl.find_lines("cluster four: four.test.sluice resolved to 127.0.0.11 (ttl 2s)"),
          "a name with only an A record resolves with family both", hu.log_tail(sl))
    counts, bad = backends_seen(hp, 5, "/four")
    check(not bad and counts == {"a": 5}, "5 requests to it: all from 127.0.0.11", repr((counts, bad)))
    hu.stop_and_check(sl)


def case_hosts_file():
    port, (a, b) = ds.backends_on_one_port([("a", "127.0.0.11"), ("b", "127.0.0.12")])
    ns = ds.NsdServer(["hosty IN A 127.0.0.12"], ttl=2)
    relay = ds.DnsRelay(ns.address)
    hosts = os.path.join(ns.tmpdir, "hosts")
    with open(hosts, "w") as f:
        f.write("# test hosts file\n127.0.0.11 hosty.test.sluice other.test.sluice\n")
    sl = harness.Sluice(make_config([dns_cluster("app", ["hosty." + Z], port)], dns_block(relay.address, hosts_file=hosts)))
    hp = sl.port("web")
    check(sl.find_lines("cluster app: hosty.test.sluice resolved to 127.0.0.11"),
          "a name in hosts_file resolves from it (127.0.0.11, not the zone's 127.0.0.12)", hu.log_tail(sl))
    counts, bad = backends_seen(hp, 10)
    check(not bad and counts == {"a": 10}, "10 requests: all 200 from a", repr((counts, bad)))
    check(not relay.queries_for("hosty." + Z), "no query for it reached the DNS server", repr(relay.queries))
    mark = sl.line_count()
    with open(hosts + ".new", "w") as f:
        f.write("127.0.0.12 hosty.test.sluice\n")
    os.replace(hosts + ".new", hosts)
    t0 = time.monotonic()
    check(sl.wait_log("cluster app: endpoint 127.0.0.12:%d added" % port, 1 + 1.5, mark),
          "the file changes: endpoint 127.0.0.12:%d added (%.2f s later; min_ttl 1s)" %
          (port, time.monotonic() - t0), hu.log_tail(sl))
    check(sl.wait_log("cluster app: endpoint 127.0.0.11:%d left the answer" % port, 1, mark),
          "and 127.0.0.11 left the answer", hu.log_tail(sl))
    n, bad = until_from(hp, "b", 1)
    check(n is not None and not bad, "the workers route to b right after (request %s)" % n, repr(bad))
    # the name leaves the file: now the DNS server answers for it (127.0.0.12 too)
    with open(hosts + ".new", "w") as f:
        f.write("127.0.0.11 other.test.sluice\n")
    os.replace(hosts + ".new", hosts)
    check(harness.wait_until(lambda: relay.queries_for("hosty." + Z, "A"), 1 + 1.5),
          "the name left the file: sluice asks the DNS server for it", hu.log_tail(sl))
    counts, bad = backends_seen(hp, 10, "/after")
    check(not bad and counts == {"b": 10}, "10 requests: all 200 from b", repr((counts, bad)))
    hu.stop_and_check(sl)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_ttl_expiry_moves_traffic, case_nxdomain_cached_for_soa_minimum,
                       case_nxdomain_cached_for_soa_ttl, case_nxdomain_negative_min_ttl_clamp,
                       case_stale_answers_while_server_stopped, case_srv_priority_and_weight,
                       case_cname_chains, case_family_v6_and_both, case_hosts_file])

#!/usr/bin/env python3
"""What a configuration reload keeps: a cluster's runtime state survives a reload that
changes the cluster's settings (and one that changes something else).

- least_request (one worker, choice_count 100, so that the pick is the least loaded of the
  two): a request held in flight on one endpoint shows as active_requests 1 in /clusters
  before and after the reload, the next requests all go to the other endpoint, and the count
  is 0 once it completes (never below);
- outlier detection: an endpoint ejected for consecutive 5xx stays ejected across the
  reload (ejected, ejections 1 in /clusters) and gets no request; a reload that removes
  outlier_detection brings it back;
- active health checks: a failing endpoint stays out and a passing one in, across a reload
  that leaves the checks alone and one that changes them (new checkers keep the standing
  until they answer);
- an endpoint removed with a request in flight: flagged removed, the request completes, new
  requests avoid it; added back, it shares the load again;
- strict_dns: a reload that does not change the DNS cluster sends no DNS query
  (sluice_dns_queries_total and sluice_dns_lookups_total do not move) and the cluster keeps
  its endpoints and serves; the first DNS cluster, added by a reload, resolves and serves.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
from http_backend import HttpBackend  # noqa: E402
import http_util as hu  # noqa: E402
import dns_server as ds  # noqa: E402
from test_reload import GateBackend, Reloadable, http_listener, make_config, route, served_by  # noqa: E402


def addr(backend):
    return "127.0.0.1:%d" % backend.port


def case_least_request_counts_survive():
    g1, g2 = GateBackend("g1"), GateBackend("g2")
    other = HttpBackend("other")

    def conf(connect_timeout, side):
        routes = [route("/", "lr")]
        if side:
            routes.insert(0, route("/side", "other"))
        return make_config([http_listener("web", routes)],
                           [hu.cluster("lr", [g1, g2], lb_policy="least_request", connect_timeout=connect_timeout,
                                       least_request={"choice_count": 100}),
                            hu.cluster("other", [other])], workers=1)

    rl = Reloadable(conf("1s", False))
    port = rl.sl.port("web")
    # hold one request on whichever endpoint takes it
    held = hu.Client(port, timeout=15)
    held.send(hu.build_request("GET", "/hold/1"))
    check(harness.wait_until(lambda: g1.held + g2.held == 1, 5), "a request is held by one endpoint")
    busy, idle = (g1, g2) if g1.held else (g2, g1)

    def active():
        return {b.name: (rl.endpoint("lr", addr(b)) or {}).get("active_requests") for b in (g1, g2)}

    want = {busy.name: 1, idle.name: 0}
    check(harness.wait_until(lambda: active() == want, 5), "/clusters: active_requests %r" % want, repr(active()))
    rl.apply(conf("1s", True), "a route added (cluster lr unchanged)")
    check(active() == want, "after a reload that leaves lr alone: active_requests %r" % want, repr(active()))
    rl.apply(conf("2s", True), "lr's connect_timeout 1s -> 2s")
    check(active() == want, "after a reload that changes lr: active_requests %r" % want, repr(active()))
    got = [served_by(hu.request_once(port, "GET", "/q/%d" % i)) for i in range(10)]
    check(got == [idle.name] * 10, "least_request sends the next 10 requests to the idle endpoint %s" % idle.name,
          repr(got))
    busy.release()
    r = held.read_response()
    check(r.status == 200 and r.json()["backend"] == busy.name, "the held request completes", r.describe())
    zero = {g1.name: 0, g2.name: 0}
    check(harness.wait_until(lambda: active() == zero, 5), "then active_requests is 0 on both (not below)",
          repr(active()))
    hu.stop_and_check(rl.sl)


def case_ejection_survives():
    good, bad = HttpBackend("good"), HttpBackend("bad", status=500)
    other = HttpBackend("other")

    def conf(connect_timeout, side):
        routes = [route("/", "od")]
        if side:
            routes.insert(0, route("/side", "other"))
        return make_config([http_listener("web", routes)],
                           [hu.cluster("od", [good, bad], connect_timeout=connect_timeout,
                                       outlier_detection={"consecutive_5xx": 3, "consecutive_gateway_failure": 0,
                                                          "base_ejection_time": "60s", "interval": "1s"}),
                            hu.cluster("other", [other])])

    rl = Reloadable(conf("1s", False))
    port = rl.sl.port("web")
    c = hu.Client(port, timeout=10)
    for i in range(40):
        c.request("GET", "/e/%d" % i)
        if bad.stats()["requests"] >= 3 and (rl.endpoint("od", addr(bad)) or {}).get("ejected"):
            break
    ep = rl.endpoint("od", addr(bad))
    check(ep and ep["ejected"] is True and ep["ejections"] == 1 and bad.stats()["requests"] == 3,
          "bad is ejected after 3 consecutive 500s (ejections 1)", repr(ep))
    rl.apply(conf("1s", True), "a route added (cluster od unchanged)")
    ep = rl.endpoint("od", addr(bad))
    check(ep["ejected"] is True and ep["ejections"] == 1 and ep["usable"] is False,
          "after a reload that leaves od alone: still ejected, ejections 1", repr(ep))
    rl.apply(conf("2s", True), "od's connect_timeout 1s -> 2s")
    ep = rl.endpoint("od", addr(bad))
    check(ep["ejected"] is True and ep["ejections"] == 1 and ep["usable"] is False,
          "after a reload that changes od: still ejected, ejections 1", repr(ep))
    before = bad.stats()["requests"]
    got = [served_by(c.request("GET", "/after/%d" % i)) for i in range(20)]
    check(got == ["good"] * 20 and bad.stats()["requests"] == before,
          "the next 20 requests all go to good; bad gets none", repr(got))
    plain = make_config([http_listener("web", [route("/side", "other"), route("/", "od")])],
                        [hu.cluster("od", [good, bad], connect_timeout="2s"), hu.cluster("other", [other])])
    rl.apply(plain, "outlier_detection removed from od")
    ep = rl.endpoint("od", addr(bad))
    check(ep["ejected"] is False and ep["usable"] is True,
          "without outlier detection nothing would end the ejection: bad is back at once", repr(ep))
    got = [served_by(c.request("GET", "/plain/%d" % i)) for i in range(10)]
    check(sorted(set(got)) == ["good", "status 500"] and bad.stats()["requests"] > before,
          "round robin reaches bad again", repr(got))
    c.close()
    hu.stop_and_check(rl.sl)


def case_health_survives():
    good = HttpBackend("good")
    _, dead_port = harness.free_port_holder()
    dead = "127.0.0.1:%d" % dead_port
    other = HttpBackend("other")

    def conf(connect_timeout, interval, side):
        routes = [route("/", "hc")]
        if side:
            routes.insert(0, route("/side", "other"))
        hc = {"type": "tcp", "interval": interval, "timeout": "500ms", "unhealthy_threshold": 1,
              "healthy_threshold": 1}
        return make_config([http_listener("web", routes)],
                           [hu.cluster("hc", [good, dead], connect_timeout=connect_timeout, health_check=hc),
                            hu.cluster("other", [other])])

    def standing():
        return {e["address"]: (e["usable"], e["health_check_failed"])
                for c in rl.json("/clusters") if c["name"] == "hc" for e in c["endpoints"]}

    want = {addr(good): (True, False), dead: (False, True)}
    rl = Reloadable(conf("1s", "200ms", False))
    port = rl.sl.port("web")
    check(harness.wait_until(lambda: standing() == want, 5), "the dead endpoint fails its checks, good passes",
          repr(standing()))
    for what, text in (("a route added (hc unchanged)", conf("1s", "200ms", True)),
                       ("hc's connect_timeout 1s -> 2s", conf("2s", "200ms", True)),
                       ("hc's health_check interval 200ms -> 300ms", conf("2s", "300ms", True))):
        rl.apply(text, what)
        check(standing() == want, "after a reload (%s): each endpoint keeps its standing" % what, repr(standing()))
        got = [served_by(hu.request_once(port, "GET", "/h/%d" % i)) for i in range(10)]
        check(got == ["good"] * 10, "and the next 10 requests go to good", repr(got))
    hu.stop_and_check(rl.sl)


def case_endpoint_removed_in_flight():
    g1, g2 = GateBackend("g1"), GateBackend("g2")

    def conf(backends):
        return make_config([http_listener("web", [route("/", "app")])], [hu.cluster("app", backends)], workers=1)

    rl = Reloadable(conf([g1, g2]))
    port = rl.sl.port("web")
    held = []
    for i in range(2):
        c = hu.Client(port, timeout=15)
        c.send(hu.build_request("GET", "/hold/%d" % i))
        held.append(c)
    check(harness.wait_until(lambda: g1.held == 1 and g2.held == 1, 5), "one request held on each endpoint",
          "g1 %d, g2 %d" % (g1.held, g2.held))
    rl.apply(conf([g1]), "g2 removed from app")
    ep = rl.endpoint("app", addr(g2))
    check(ep is not None and ep["removed"] is True and ep["usable"] is False and ep["active_requests"] == 1,
          "/clusters: g2 removed, not usable, its request still active", repr(ep))
    got = [served_by(hu.request_once(port, "GET", "/n/%d" % i)) for i in range(6)]
    check(got == ["g1"] * 6, "new requests go to g1 only", repr(got))
    g1.release()
    g2.release()
    rs = [c.read_response() for c in held]
    check(sorted(served_by(r) for r in rs) == ["g1", "g2"], "both held requests complete, g2's too",
          repr([r.describe() for r in rs]))
    check(harness.wait_until(lambda: (rl.endpoint("app", addr(g2)) or {}).get("active_requests") == 0, 5),
          "g2's active_requests returns to 0", repr(rl.endpoint("app", addr(g2))))
    rl.apply(conf([g1, g2]), "g2 back")
    ep = rl.endpoint("app", addr(g2))
    check(ep["removed"] is False and ep["usable"] is True, "g2 is back in app", repr(ep))
    got = sorted(served_by(hu.request_once(port, "GET", "/b/%d" % i)) for i in range(6))
    check(got == ["g1"] * 3 + ["g2"] * 3, "round robin shares new requests between g1 and g2 again", repr(got))
    hu.stop_and_check(rl.sl)


def case_dns_cluster_added_by_reload():
    if not ds.nsd_available():
        raise harness.Skip("nsd is not installed")
    port, (a,) = ds.backends_on_one_port([("a", "127.0.0.22")])
    other = HttpBackend("other")
    ns = ds.NsdServer(["api IN A 127.0.0.22"], ttl=60, minimum=60)
    dns = {"dns": ds.dns_block(ns.address)}
    rl = Reloadable(make_config([http_listener("web", [route("/", "other")])], [hu.cluster("other", [other])],
                                extra=dns))
    wport = rl.sl.port("web")
    check(served_by(hu.request_once(wport, "GET", "/x")) == "other", "only the static cluster at first")
    rl.apply(make_config([http_listener("web", [route("/dns", "app"), route("/", "other")])],
                         [ds.dns_cluster("app", ["api.test.sluice"], port), hu.cluster("other", [other])], extra=dns),
             "the first DNS cluster added")
    ep_addr = "127.0.0.22:%d" % port
    check(harness.wait_until(lambda: rl.endpoint("app", ep_addr), 5), "app resolves to %s" % ep_addr,
          hu.log_tail(rl.sl))
    check(served_by(hu.request_once(wport, "GET", "/dns/1")) == "a", "app serves from 127.0.0.22")
    hu.stop_and_check(rl.sl)


DNS_COUNTERS = ("sluice_dns_queries_total", "sluice_dns_lookups_total")


def case_dns_answers_survive():
    if not ds.nsd_available():
        raise harness.Skip("nsd is not installed")
    port, (a,) = ds.backends_on_one_port([("a", "127.0.0.21")])
    other = HttpBackend("other")
    ns = ds.NsdServer(["api IN A 127.0.0.21"], ttl=60, minimum=60)

    def conf(side, connect_timeout="1s"):
        routes = [route("/", "app")]
        if side:
            routes.insert(0, route("/side", "other"))
        return make_config([http_listener("web", routes)],
                           [ds.dns_cluster("app", ["api.test.sluice"], port, connect_timeout=connect_timeout),
                            hu.cluster("other", [other])],
                           extra={"dns": ds.dns_block(ns.address)})

    rl = Reloadable(conf(False))
    wport = rl.sl.port("web")
    ep_addr = "127.0.0.21:%d" % port
    check(harness.wait_until(lambda: rl.endpoint("app", ep_addr), 10), "app resolves to %s" % ep_addr,
          hu.log_tail(rl.sl))
    check(served_by(hu.request_once(wport, "GET", "/x")) == "a", "app serves from 127.0.0.21")

    def counters():
        m = rl.metrics()
        return {k: m.get(k) for k in DNS_COUNTERS}

    before = counters()
    info("DNS counters before the reloads: %r" % before)
    check(all(v is not None and v >= 1 for v in before.values()), "the DNS counters are in /metrics", repr(before))
    for i, side in enumerate((True, False, True), 1):
        rl.apply(conf(side), "reload %d (a route to other; app unchanged)" % i)
        eps = [e["address"] for c in rl.json("/clusters") if c["name"] == "app" for e in c["endpoints"]]
        check(eps == [ep_addr], "reload %d: app keeps its endpoint %s" % (i, ep_addr), repr(eps))
        check(served_by(hu.request_once(wport, "GET", "/x/%d" % i)) == "a", "reload %d: app serves" % i)
    after = counters()
    check(after == before, "3 reloads that leave app alone send no DNS query: %r" % before, repr(after))
    rl.apply(conf(True, "2s"), "app's connect_timeout 1s -> 2s")
    eps = [e for c in rl.json("/clusters") if c["name"] == "app" for e in c["endpoints"]]
    check([(e["address"], e["removed"]) for e in eps] == [(ep_addr, False)],
          "a reload that changes app keeps its endpoint", repr(eps))
    check(served_by(hu.request_once(wport, "GET", "/y")) == "a", "app serves")
    info("DNS counters after a reload that changes app: %r" % counters())
    hu.stop_and_check(rl.sl)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_least_request_counts_survive, case_ejection_survives, case_health_survives,
                       case_endpoint_removed_in_flight, case_dns_answers_survive, case_dns_cluster_added_by_reload])

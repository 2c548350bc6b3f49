#!/usr/bin/env python3
"""What a configuration reload keeps and what it reports.

Cluster state survives a reload that changes the cluster's settings (and one that changes
something else):
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
  its endpoints and serves; the first DNS cluster, added by a reload, resolves and serves; a
  DNS cluster turned static is no longer resolved and keeps its static endpoints.

The running configuration:
- an invalid file (YAML error, a route naming a missing cluster, no file): 400 with the
  located errors `sluice check` prints, the old routes keep serving, counted as failed,
  logged at error level;
- `workers` and the admin address cannot change: a warning, kept as they were;
- 5 SIGHUPs back to back make at most 2 reloads; 5 concurrent POSTs are answered by at most
  2 reloads, identical replies per reload; a dry run lists the changes and changes nothing;
- a reload while draining is refused;
- an unchanged (or only reformatted) file: "unchanged", the generation stays; GET /reload 405;
- an access_log path changed: the new file gets the new requests, the old one is let go;
- sluice_config_last_reload_seconds is the reply's apply_seconds;
- `--log-level` given on the command line survives a reload that does not touch log_level.
"""

import collections
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
from http_backend import HttpBackend  # noqa: E402
import http_util as hu  # noqa: E402
import dns_server as ds  # noqa: E402
from test_reload import (GateBackend, Reloadable, check_diff, http_listener, make_config, route,  # noqa: E402
                         served_by, web)


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


def case_dns_cluster_becomes_static():
    """strict_dns app (TTL 1 s) turned static by a reload: its endpoints are the static ones and
    its name is not asked again (while another DNS cluster's name is, every second)."""
    if not ds.nsd_available():
        raise harness.Skip("nsd is not installed")
    port, (a,) = ds.backends_on_one_port([("a", "127.0.0.23")])
    other = HttpBackend("other")
    ns = ds.NsdServer(["api IN A 127.0.0.23", "probe IN A 127.0.0.24"], ttl=1, minimum=1)
    relay = ds.DnsRelay(ns.address)
    dns = {"dns": ds.dns_block(relay.address)}
    routes = [route("/probe", "probe"), route("/", "app")]
    probe = ds.dns_cluster("probe", ["probe.test.sluice"], port)
    rl = Reloadable(make_config([http_listener("web", routes)],
                                [ds.dns_cluster("app", ["api.test.sluice"], port), probe], extra=dns))
    wport = rl.sl.port("web")
    check(harness.wait_until(lambda: len(relay.queries_for("api.test.sluice")) >= 2, 5),
          "api.test.sluice is asked again as its TTL (1 s) runs out", repr(relay.queries))
    check(served_by(hu.request_once(wport, "GET", "/x")) == "a", "app serves from 127.0.0.23")
    rl.apply(make_config([http_listener("web", routes)], [hu.cluster("app", [other]), probe], extra=dns),
             "app strict_dns -> static")
    t_reply = time.monotonic()

    def endpoints():
        return [(e["address"], e["removed"]) for c in rl.json("/clusters") if c["name"] == "app"
                for e in c["endpoints"] if not e["removed"]]

    check(endpoints() == [(addr(other), False)], "app's endpoints in service: %s only" % addr(other),
          repr(endpoints()))
    got = [served_by(hu.request_once(wport, "GET", "/s/%d" % i)) for i in range(4)]
    check(got == ["other"] * 4, "app serves from other", repr(got))
    check(harness.wait_until(lambda: len([t for t in relay.queries_for("probe.test.sluice") if t > t_reply]) >= 2,
                             5), "probe.test.sluice is asked twice more after the reload")
    late = [t - t_reply for t in relay.queries_for("api.test.sluice") if t > t_reply]
    check(late == [], "api.test.sluice is not asked after the reload", repr(late))
    check(endpoints() == [(addr(other), False)], "app's endpoints are still %s only" % addr(other),
          repr(endpoints()))
    hu.stop_and_check(rl.sl)


# --------------------------------------------------------------------------
# the running configuration: invalid files, what cannot change, what is reported

# --------------------------------------------------------------------------
# 3. invalid files


def locate(text, needle):
    lines = text.splitlines()
    n = next(i for i, l in enumerate(lines) if needle in l)
    return n + 1, lines[n].index(needle) + 1


def case_invalid_file_keeps_the_old_configuration():
    a, b = HttpBackend("a"), HttpBackend("b")
    good = make_config([web("app", "other")], [hu.cluster("app", [a]), hu.cluster("other", [b])])
    rl = Reloadable(good)
    sl = rl.sl
    port = sl.port("web")
    check(served_by(hu.request_once(port, "GET", "/x")) == "a", "web serves from a")

    def expect_failed(what, text, want_errors=None):
        mark = sl.line_count()
        if text is None:
            os.remove(rl.path)
        else:
            rl.write(text)
        p = harness.run_sluice_cmd(["check", "-c", rl.path])
        checked = p.stderr.splitlines()
        status, reply = rl.reload()
        check(status == 400 and reply.get("result") == "failed" and reply.get("generation") == 0 and
              reply.get("dry_run") is False and reply.get("changes") == [],
              "%s: 400, result failed, generation 0, no changes" % what, "%d %r" % (status, reply))
        check(reply["errors"] == checked and all(e.startswith(rl.path + ":") for e in checked),
              "%s: the errors are exactly what `sluice check` prints (%s)" % (what, " | ".join(
                  e.replace(rl.path, "FILE") for e in checked)), "reply: %r\ncheck: %r" % (reply["errors"], checked))
        if want_errors is not None:
            check(reply["errors"] == want_errors, "%s: the error is %s" % (what, " | ".join(
                e.replace(rl.path, "FILE") for e in want_errors)), repr(reply["errors"]))
        n = len(checked)
        head = sl.wait_log("reload failed, the running configuration stays: %d error(s)" % n, 5, mark)
        logged = [harness.LOG_RE.match(l) for l in sl.find_lines(lambda l: True, mark)]
        logged = [(m.group(2), m.group(4)) for m in logged if m]
        check(head is not None and all(("error", e) in logged for e in checked),
              "%s: logged at error level: the count and each error" % what, hu.log_tail(sl, 10))
        check(served_by(hu.request_once(port, "GET", "/x")) == "a", "%s: the old routes keep serving" % what)

    broken = good.replace("protocol: http\n", "protocol: [http\n", 1)
    expect_failed("YAML error", broken)
    bad = good.replace("cluster: app\n", "cluster: nope\n", 1)
    line, col = locate(bad, "nope")
    expect_failed("a route naming a missing cluster", bad, [
        "%s:%d:%d: listeners[0].virtual_hosts[0].routes[1].cluster: no cluster named 'nope'" % (rl.path, line, col)])
    expect_failed("no file", None)
    counts = rl.reload_counts()
    check(counts == {"applied": 0, "unchanged": 0, "failed": 3},
          "sluice_config_reloads_total: failed 3, applied 0", repr(counts))
    check(rl.generation() == 0, "sluice_config_generation stays 0")
    fixed = make_config([web("other", "app")], [hu.cluster("app", [a]), hu.cluster("other", [b])])
    reply = rl.apply(fixed, "a valid file again")
    check(reply["generation"] == 1, "the next good file is generation 1", repr(reply))
    check(served_by(hu.request_once(port, "GET", "/x")) == "b", "the new route serves from b")
    hu.stop_and_check(sl)


def case_reload_refused_while_draining():
    gate = GateBackend("g")
    rl = Reloadable(make_config([http_listener("web", [route("/", "held")])], [hu.cluster("held", [gate])]))
    sl = rl.sl
    c = hu.Client(sl.port("web"), timeout=15)
    c.send(hu.build_request("GET", "/hold/1"))
    check(harness.wait_until(lambda: gate.held == 1, 5), "a request is in flight")
    mark = sl.line_count()
    sl.signal(signal.SIGTERM)
    check(sl.wait_log("draining", 5, mark) is not None, "SIGTERM: draining", hu.log_tail(sl))
    status, reply = rl.reload()
    check(status == 400 and reply["result"] == "failed" and
          reply["errors"] == ["sluice is draining, not serving: nothing is reloaded"],
          "POST /reload while draining: 400, failed, 'sluice is draining, not serving: nothing is reloaded'",
          "%d %r" % (status, reply))
    gate.release()
    r = c.read_response()
    check(r.status == 200, "the request in flight completes", r.describe())
    c.close()
    rc = sl.wait_exit(10)
    harness.check_clean_exit(sl, rc)


# --------------------------------------------------------------------------
# 6. settings only a restart changes


def worker_threads(pid):
    names = []
    for t in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, t)) as f:
            names.append(f.read().strip())
    return sorted(n for n in names if re.fullmatch(r"sluice-w\d+", n))


def case_workers_and_admin_cannot_change():
    a, b = HttpBackend("a"), HttpBackend("b")
    clusters = [hu.cluster("app", [a]), hu.cluster("other", [b])]
    rl = Reloadable(make_config([web("app", "other")], clusters))
    sl = rl.sl
    check(worker_threads(sl.pid) == ["sluice-w0", "sluice-w1"], "2 worker threads", repr(worker_threads(sl.pid)))
    warn = ("warning: workers: 3 in the file, 2 running: the number of workers changes only with a restart; "
            "it stays 2")
    three = make_config([web("other", "app")], clusters, workers=3)
    reply = rl.apply(three, "workers 3 and a route change")
    check(reply["warnings"] == [warn], "the warning names workers: '%s'" % warn, repr(reply["warnings"]))
    check(reply["generation"] == 1, "generation 1")
    check(served_by(hu.request_once(sl.port("web"), "GET", "/x")) == "b", "the route change is in force")
    check(rl.json("/config")["workers"] == 2, "/config: workers 2")
    check(worker_threads(sl.pid) == ["sluice-w0", "sluice-w1"], "still 2 worker threads")
    status, reply = rl.reload()
    check(status == 200 and reply["result"] == "unchanged" and reply["warnings"] == [warn] and
          reply["changes"] == [] and reply["generation"] == 1,
          "the same file again: unchanged, generation 1, the workers warning again", repr(reply))
    moved = make_config([web("app", "other")], clusters, workers=2, admin="127.0.0.1:1")
    reply = rl.apply(moved, "admin address changed and a route change")
    check(reply["warnings"] == ["warning: admin: the admin address changes only with a restart; it stays as it is"],
          "the warning names admin", repr(reply["warnings"]))
    check(rl.generation() == 2, "the admin endpoint answers on its old port (generation 2)")
    check(served_by(hu.request_once(sl.port("web"), "GET", "/x")) == "a", "the route change is in force")
    hu.stop_and_check(sl)


# --------------------------------------------------------------------------
# 7. SIGHUP coalescing, dry run


RESULT_LINE = re.compile(r"reload(?: \d+ applied in|: .* has no changes)")


def case_sighup_coalescing_and_dry_run():
    a, b = HttpBackend("a"), HttpBackend("b")
    clusters = [hu.cluster("app", [a]), hu.cluster("other", [b])]
    conf_a = make_config([web("app", "other")], clusters)
    conf_b = make_config([web("other", "app")], clusters)
    rl = Reloadable(conf_a)
    sl = rl.sl
    port = sl.port("web")
    rl.write(conf_b)
    status, reply = rl.reload(dry_run=True)
    check(status == 200 and reply["dry_run"] is True and reply["result"] == "applied" and reply["errors"] == [],
          "dry run: 200, dry_run true, result applied (would apply)", repr(reply))
    info("dry run reply generation: %r" % reply.get("generation"))
    check_diff(rl, conf_a, conf_b, reply["changes"], "dry run")
    check(reply["changes"] == ["listener web (127.0.0.1:0): unchanged address: keeps its sockets",
                                "listener web: route all/0 (prefix /spare) cluster other -> app (new requests only)",
                                "listener web: route all/1 (prefix /) cluster app -> other (new requests only)"],
          "dry run: web keeps its sockets, its routes' clusters swap", repr(reply["changes"]))
    check(rl.generation() == 0 and rl.reload_counts() == {"applied": 0, "unchanged": 0, "failed": 0},
          "after the dry run: generation 0, no reload counted")
    check(served_by(hu.request_once(port, "GET", "/x")) == "a", "after the dry run the old route still serves")

    mark = sl.line_count()
    for _ in range(5):
        os.kill(sl.pid, signal.SIGHUP)
    n = len(reply["changes"])
    check(sl.wait_log(re.compile(r"reload 1 applied in [0-9.]+ ms: %d changes$" % n), 5, mark) is not None,
          "log: reload 1 applied in X ms: %d changes" % n, hu.log_tail(sl))
    # a POST now runs after (or with) whatever the signals still had pending
    status, reply = rl.reload()
    check(status == 200 and reply["result"] == "unchanged" and reply["generation"] == 1,
          "a POST /reload afterwards: unchanged, generation 1", repr(reply))
    counts = rl.reload_counts()
    info("after 5 SIGHUPs and a POST: %r" % counts)
    # the lines were written before the reply; the reader thread may not have them yet
    harness.wait_until(lambda: len(sl.find_lines(RESULT_LINE, mark)) >= counts["applied"] + counts["unchanged"], 5)
    results = sl.find_lines(RESULT_LINE, mark)
    check(counts["applied"] == 1 and counts["failed"] == 0 and counts["unchanged"] in (1, 2),
          "5 SIGHUPs and a POST: applied 1, unchanged 1 or 2 (5 SIGHUPs made at most 2 reloads)", repr(counts))
    check(len(results) == counts["applied"] + counts["unchanged"],
          "the log has one result line per counted reload", "\n".join(results))
    check(rl.generation() == 1, "sluice_config_generation 1")
    check(served_by(hu.request_once(port, "GET", "/x")) == "b", "the new route serves")
    hu.stop_and_check(sl)


def case_concurrent_posts_coalesce():
    a, b = HttpBackend("a"), HttpBackend("b")
    clusters = [hu.cluster("app", [a]), hu.cluster("other", [b])]
    rl = Reloadable(make_config([web("app", "other")], clusters))
    rl.write(make_config([web("other", "app")], clusters))
    replies = [None] * 5
    barrier = threading.Barrier(5)

    def post(i):
        barrier.wait(5)
        replies[i] = rl.reload()

    ths = [threading.Thread(target=post, args=(i,), daemon=True) for i in range(5)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(30)
    check(all(r is not None and r[0] == 200 for r in replies), "5 concurrent POST /reload: all 200", repr(replies))
    by_result = collections.defaultdict(list)
    for _, reply in replies:
        by_result[reply["result"]].append(json.dumps(reply, sort_keys=True))
    info("results: %r" % {k: len(v) for k, v in by_result.items()})
    check(set(by_result) <= {"applied", "unchanged"} and len(by_result["applied"]) >= 1,
          "at least one reply says applied, the others unchanged", repr(dict(by_result)))
    check(all(len(set(v)) == 1 for v in by_result.values()),
          "the POSTs answered by one reload get the same reply, byte for byte", repr(dict(by_result)))
    counts = rl.reload_counts()
    check(counts["applied"] == 1 and counts["unchanged"] == (1 if by_result["unchanged"] else 0),
          "one reload applied, at most one more found nothing new", repr(counts))
    check(rl.generation() == 1, "generation 1")
    hu.stop_and_check(rl.sl)


# --------------------------------------------------------------------------
# 8. unchanged file


def case_unchanged_file():
    a = HttpBackend("a")
    conf = make_config([http_listener("web", [route("/", "app")])], [hu.cluster("app", [a])])
    rl = Reloadable(conf)
    sl = rl.sl
    r = rl.admin_request("GET", "/reload")
    check(r.status == 405 and r.body == b"POST /reload reloads the configuration\n", "GET /reload: 405", r.describe())
    mark = sl.line_count()
    status, reply = rl.reload()
    check(status == 200 and reply["result"] == "unchanged" and reply["generation"] == 0 and reply["changes"] == []
          and reply["errors"] == [] and reply["warnings"] == [] and reply["dry_run"] is False,
          "the same file: 200, unchanged, generation 0, nothing listed", repr(reply))
    check(sl.wait_log("reload: %s has no changes; generation 0 stays" % rl.path, 5, mark) is not None,
          "log: reload: FILE has no changes; generation 0 stays", hu.log_tail(sl))
    rl.write("# the same settings, reformatted\n" + conf.replace("drain_timeout: 5s", "drain_timeout: 5000ms"))
    status, reply = rl.reload()
    check(status == 200 and reply["result"] == "unchanged" and reply["generation"] == 0,
          "a comment and 5000ms for 5s: unchanged", repr(reply))
    check(rl.reload_counts() == {"applied": 0, "unchanged": 2, "failed": 0}, "unchanged counted twice")
    check(rl.generation() == 0, "generation 0")
    check(served_by(hu.request_once(sl.port("web"), "GET", "/x")) == "a", "web still serves")
    hu.stop_and_check(sl)


def case_access_log_path_changed():
    a = HttpBackend("a")

    def conf(path):
        return make_config([http_listener("web", [route("/", "app")], access_log={"path": path})],
                           [hu.cluster("app", [a])])

    d = tempfile.mkdtemp(prefix="sluice-reload-log-")
    harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    one, two = os.path.join(d, "one.log"), os.path.join(d, "two.log")
    rl = Reloadable(conf(one))
    port = rl.sl.port("web")

    def lines(path):
        try:
            with open(path) as f:
                return f.read().splitlines()
        except OSError:
            return None

    def open_files():
        fd = "/proc/%d/fd" % rl.sl.pid
        out = []
        for n in os.listdir(fd):
            try:
                out.append(os.readlink(os.path.join(fd, n)))
            except OSError:
                pass
        return out

    hu.request_once(port, "GET", "/first")
    check(harness.wait_until(lambda: lines(one) and len(lines(one)) == 1, 5), "one.log has the first request",
          repr(lines(one)))
    rl.apply(conf(two), "access_log one.log -> two.log")
    hu.request_once(port, "GET", "/second")
    check(harness.wait_until(lambda: lines(two) and len(lines(two)) == 1, 5), "two.log has the second request",
          repr(lines(two)))
    check(len(lines(one)) == 1, "one.log still has only the first", repr(lines(one)))
    check(harness.wait_until(lambda: one not in open_files(), 5), "sluice no longer holds one.log open",
          "\n".join(f for f in open_files() if f.startswith("/")))
    # A log rotation: two.log moved away, then a reload (the file did not change: "unchanged")
    # starts a new two.log; the moved file keeps what was written before.
    rotated = two + ".1"
    os.rename(two, rotated)
    hu.request_once(port, "GET", "/third")
    check(harness.wait_until(lambda: lines(rotated) and len(lines(rotated)) == 2, 5),
          "before the reload, the moved file still gets the lines", repr(lines(rotated)))
    status, reply = rl.reload()
    check(status == 200 and reply["result"] == "unchanged", "the reload after the rotation: unchanged",
          repr(reply))
    hu.request_once(port, "GET", "/fourth")
    check(harness.wait_until(lambda: lines(two) and len(lines(two)) == 1, 5),
          "after it, a new two.log has the next request", repr(lines(two)))
    check(json.loads(lines(two)[0])["target"] == "/fourth" and len(lines(rotated)) == 2,
          "the request after the reload is in the new file only", repr((lines(two), lines(rotated))))
    hu.stop_and_check(rl.sl)


def case_last_reload_seconds():
    a, b = HttpBackend("a"), HttpBackend("b")
    clusters = [hu.cluster("app", [a]), hu.cluster("other", [b])]
    rl = Reloadable(make_config([web("app", "other")], clusters))
    reply = rl.apply(make_config([web("other", "app")], clusters), "a route change")
    m = rl.metrics()
    check(m.get("sluice_config_last_reload_seconds") == reply["apply_seconds"] and reply["apply_seconds"] > 0,
          "sluice_config_last_reload_seconds is the reply's apply_seconds (%r)" % reply["apply_seconds"],
          repr(m.get("sluice_config_last_reload_seconds")))
    hu.stop_and_check(rl.sl)


def case_command_line_log_level_survives_reload():
    """`sluice run --log-level debug` with a file saying nothing about log_level (info): a
    reload that does not change log_level keeps debug."""
    a, b = HttpBackend("a"), HttpBackend("b")
    clusters = [hu.cluster("app", [a]), hu.cluster("other", [b])]
    rl = Reloadable(make_config([web("app", "other")], clusters), log_level="debug")
    sl = rl.sl
    port = sl.port("web")
    hu.request_once(port, "GET", "/before")
    check(harness.wait_until(lambda: any(x["target"] == "/before" for x in hu.request_log(sl)), 5),
          "debug: the request line for /before is logged")
    rl.apply(make_config([web("other", "app")], clusters), "a route change")
    hu.request_once(port, "GET", "/after")
    hu.request_once(port, "GET", "/after2")
    check(harness.wait_until(lambda: any(x["target"] == "/after2" for x in hu.request_log(sl)), 5),
          "debug from the command line still in force after the reload: /after2 is logged",
          hu.log_tail(sl, 8))
    hu.stop_and_check(sl)


if __name__ == "__main__":
    hu.use_default_bin()
    cases = [case_least_request_counts_survive, case_ejection_survives, case_health_survives,
             case_endpoint_removed_in_flight, case_dns_answers_survive, case_dns_cluster_added_by_reload,
             case_dns_cluster_becomes_static,
             case_invalid_file_keeps_the_old_configuration, case_workers_and_admin_cannot_change,
             case_sighup_coalescing_and_dry_run, case_concurrent_posts_coalesce, case_reload_refused_while_draining,
             case_unchanged_file, case_access_log_path_changed, case_last_reload_seconds,
             case_command_line_log_level_survives_reload]
    # names on the command line: only those cases
    harness.run_cases([c for c in cases if not sys.argv[1:] or c.__name__ in sys.argv[1:]])

#!/usr/bin/env python3
"""DNS service discovery (strict_dns, logical_dns) against a real nsd (dns_server.py).

- an A record changes under keep-alive load from several threads: traffic moves to the new
  address within TTL + slack and no request fails; with on_address_change: keep and a pool
  max_lifetime, the old address still gets no new request after max(TTL, max_lifetime);
- strict_dns with two names: the union of their addresses; when one name becomes NXDOMAIN
  its last addresses are kept (log line) and the traffic is unaffected;
- logical_dns: one endpoint for the name; new connections go to the first address of the
  answer; when the answer's first address changes, they move (the endpoint stays); when an
  address leaves the answer, that is logged and the traffic moves back;
- a cluster whose name does not exist at start: 503 `no healthy endpoint in cluster app`
  until the record appears, then 200s;
- every cluster's endpoint source in /clusters and /metrics: a static cluster (synced), a
  strict_dns one with a name that does not exist (stale, the other name's address served),
  and after a reload that drops that name, a new source (synced);
- `sluice check` on bad DNS settings: `FILE:LINE:COL: key.path: message`.
"""

import collections
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
import http_util as hu  # noqa: E402
import dns_server as ds  # noqa: E402
from dns_server import backends_seen, dns_block, dns_cluster, make_config, until_from  # noqa: E402,F401
from test_metrics import admin_json, scrape  # noqa: E402
from test_reload import Reloadable  # noqa: E402

Z = "test.sluice"


# --------------------------------------------------------------------------
# helpers


class Load:
    """`threads` keep-alive clients sending GETs back to back until stop(); every answer is
    recorded as (time answered, status, X-Backend), every exception as an error."""

    def __init__(self, port, threads=6):
        self.port = port
        self.results = []
        self.errors = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ths = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(threads)]
        for th in self._ths:
            th.start()
        harness.register_cleanup(self.stop)

    def _run(self, t):
        c = None
        i = 0
        try:
            while not self._stop.is_set():
                if c is None:
                    c = hu.Client(self.port, timeout=10)
                r = c.request("GET", "/load/%d/%d" % (t, i))
                with self._lock:
                    self.results.append((time.monotonic(), r.status, r.header("x-backend")))
                if "close" in r.tokens("connection"):
                    c.close()
                    c = None
                i += 1
        except Exception as e:
            with self._lock:
                self.errors.append("thread %d request %d: %r" % (t, i, e))
        finally:
            if c:
                c.close()

    def count(self):
        with self._lock:
            return len(self.results)

    def stop(self):
        self._stop.set()
        for th in self._ths:
            th.join(15)
        return not any(th.is_alive() for th in self._ths)


def change_under_load(extra_cluster, bound, keep):
    """A: 127.0.0.11 -> 127.0.0.12 under load; returns nothing, checks everything."""
    port, (a, b) = ds.backends_on_one_port([("a", "127.0.0.11"), ("b", "127.0.0.12")])
    ttl = 2
    ns = ds.NsdServer(["api IN A 127.0.0.11"], ttl=ttl)
    sl = harness.Sluice(make_config([dns_cluster("app", ["api." + Z], port, **extra_cluster)], dns_block(ns.address)))
    hp = sl.port("web")
    load = Load(hp, threads=6)
    check(harness.wait_until(lambda: load.count() >= 200 or load.errors, 10),
          "load running (%d requests answered)" % load.count(), "\n".join(load.errors))
    mark = sl.line_count()
    t0 = time.monotonic()
    ns.set_zone(["api IN A 127.0.0.12"])
    left_text = ("no new requests (on_address_change: keep)" if keep
                 else "draining (no new requests; pooled connections close)")
    left = "cluster app: endpoint 127.0.0.11:%d left the answer: %s" % (port, left_text)
    check(sl.wait_log(left, ttl + 1.5, mark), "log: '%s'" % left, hu.log_tail(sl))
    t_left = time.monotonic()
    check(sl.find_lines("cluster app: endpoint 127.0.0.12:%d added (weight 1)" % port, mark),
          "log: endpoint 127.0.0.12:%d added (weight 1)" % port, hu.log_tail(sl))
    info("the change was picked up %.2f s after the zone changed" % (t_left - t0))
    a_active_after = a.stats()["active"]
    # keep the load going past the bound, until b has carried a good share
    harness.wait_until(lambda: time.monotonic() > t0 + bound + 0.5 or load.errors, bound + 2, 0.05)
    n_b = len(b.requests_for(lambda r: r["target"].startswith("/load/")))
    stopped = load.stop()
    check(stopped, "the load threads finished", "")
    check(not load.errors, "no client errors under the change", "\n".join(load.errors[:10]))
    summary = collections.Counter(s for _, s, _ in load.results)
    check(set(summary) == {200}, "all %d responses are 200" % len(load.results), repr(summary))
    a_recs = a.requests_for(lambda r: r["target"].startswith("/load/"))
    last_a = max(r["time"] for r in a_recs) - t0
    info("a got %d requests, the last %.2f s after the zone changed; b got %d; a had %d connections open "
         "when the change was logged" % (len(a_recs), last_a, n_b, a_active_after))
    check(last_a <= bound, "the old address got its last request %.2f s after the zone changed (bound %.1f s)" %
          (last_a, bound), "")
    after = [x for x in load.results if x[0] > t0 + bound]
    check(after and all(be == "b" for _, _, be in after),
          "after the bound every answer (%d) came from b" % len(after),
          repr(collections.Counter(be for _, _, be in after)))
    info("a has %d connections from sluice open at the end (%.1f s after the change)" %
         (a.stats()["active"], time.monotonic() - t0))
    hu.stop_and_check(sl)


def case_address_change_under_load():
    # TTL 2 s + the answer's age at the change (< TTL, so the bound is TTL) + slack
    change_under_load({}, bound=2 + 0.8, keep=False)


def case_keep_with_max_lifetime():
    # on_address_change keep and pooled connections that live up to 3 s: the old address still
    # gets no new request after max(TTL 2 s, max_lifetime 3 s) (+ slack)
    change_under_load({"on_address_change": "keep", "pool": {"max_lifetime": "3s"}}, bound=3 + 0.8, keep=True)


def case_strict_dns_union_and_nxdomain_keeps_addresses():
    port, (a, b, c) = ds.backends_on_one_port([("a", "127.0.0.11"), ("b", "127.0.0.12"), ("c", "127.0.0.13")])
    ns = ds.NsdServer(["one IN A 127.0.0.11", "two IN A 127.0.0.12", "two IN A 127.0.0.13"], ttl=1, minimum=1)
    sl = harness.Sluice(make_config([dns_cluster("app", ["one." + Z, "two." + Z], port)], dns_block(ns.address)))
    hp = sl.port("web")
    check(sl.find_lines("cluster app: one.test.sluice resolved to 127.0.0.11 (ttl 1s)"),
          "log: one.test.sluice resolved to 127.0.0.11", hu.log_tail(sl))
    check(sl.find_lines("cluster app: two.test.sluice resolved to 127.0.0.12, 127.0.0.13 (ttl 1s)"),
          "log: two.test.sluice resolved to 127.0.0.12, 127.0.0.13", hu.log_tail(sl))
    for ip in ("127.0.0.11", "127.0.0.12", "127.0.0.13"):
        check(sl.find_lines("cluster app: endpoint %s:%d added (weight 1)" % (ip, port)),
              "endpoint %s:%d added" % (ip, port), hu.log_tail(sl))
    counts, bad = backends_seen(hp, 30)
    check(not bad and counts == {"a": 10, "b": 10, "c": 10},
          "30 requests: 10 each to the union of both names' addresses", repr((counts, bad)))
    mark = sl.line_count()
    ns.set_zone(["one IN A 127.0.0.11"])
    warn = ("cluster app: two.test.sluice: no such name (NXDOMAIN); keeping its last known addresses")
    check(sl.wait_log(warn, 1 + 1.5, mark), "two becomes NXDOMAIN: '%s'" % warn, hu.log_tail(sl))
    counts, bad = backends_seen(hp, 30, "/after")
    check(not bad and counts == {"a": 10, "b": 10, "c": 10},
          "30 requests: still 10 each, all 200", repr((counts, bad)))
    # and still after a few more rounds of NXDOMAIN
    check(harness.wait_until(lambda: len(sl.find_lines(warn, mark)) >= 3, 3 * 1 + 2),
          "the NXDOMAIN is retried (every negative TTL) and logged each time", hu.log_tail(sl))
    counts, bad = backends_seen(hp, 30, "/later")
    check(not bad and counts == {"a": 10, "b": 10, "c": 10}, "30 more requests: unchanged", repr((counts, bad)))
    check(not sl.find_lines("left the answer", mark), "no endpoint left the answer", hu.log_tail(sl))
    hu.stop_and_check(sl)


def case_logical_dns_first_address():
    port, (a, b) = ds.backends_on_one_port([("a", "127.0.0.11"), ("b", "127.0.0.12")])
    ns = ds.NsdServer(["api IN A 127.0.0.11", "api IN A 127.0.0.12"], ttl=1)
    r = ns.query("api." + Z, "A")
    order = [x[3] for x in r[1]] if r else None
    check(order == ["127.0.0.11", "127.0.0.12"], "nsd answers 127.0.0.11, 127.0.0.12 in zone order", repr(r))
    # One request per upstream connection: each request shows where a new connection goes
    # (pooled connections to an address still in the answer are kept and reused).
    cl = dns_cluster("app", ["api." + Z], port, type="logical_dns", pool={"max_requests_per_connection": 1})
    sl = harness.Sluice(make_config([cl], dns_block(ns.address)))
    hp = sl.port("web")
    check(sl.find_lines("cluster app: api.test.sluice resolved to 127.0.0.11, 127.0.0.12 (ttl 1s)"),
          "log: api.test.sluice resolved to 127.0.0.11, 127.0.0.12", hu.log_tail(sl))
    check(sl.find_lines("cluster app: endpoint 127.0.0.11:%d added (weight 1)" % port)
          and not sl.find_lines("endpoint 127.0.0.12:%d added" % port),
          "only the first address became an endpoint", hu.log_tail(sl))
    counts, bad = backends_seen(hp, 20)
    check(not bad and counts == {"a": 20}, "20 requests: all 200 from a (the first address)", repr((counts, bad)))
    mark = sl.line_count()
    ns.set_zone(["api IN A 127.0.0.12", "api IN A 127.0.0.11"])
    # The server may take a moment to load the new zone: ask until it answers from it.
    answers = []

    def reordered():
        answers.append(ns.query("api." + Z, "A"))
        r = answers[-1]
        return bool(r) and [x[3] for x in r[1]] == ["127.0.0.12", "127.0.0.11"]
    check(harness.wait_until(reordered, 5, 0.05),
          "nsd now answers 127.0.0.12 first (same two addresses)", repr(answers[-1:]))
    # the same set in a new order: logged at debug only (DNS round robin does this all the time)
    changed = "cluster app: addresses now 127.0.0.12:%d, 127.0.0.11:%d (same set, new order)" % (port, port)
    check(sl.wait_log(changed, 1 + 1.5, mark), "the first address changed: '%s'" % changed, hu.log_tail(sl))
    check(not sl.find_lines("left the answer", mark) and not sl.find_lines("added (weight", mark),
          "the endpoint (the name) stays: nothing added or removed", hu.log_tail(sl))
    n, bad = until_from(hp, "b", 1)
    check(n is not None and not bad, "the workers route to b right after (request %s)" % n, repr(bad))
    counts, bad = backends_seen(hp, 20, "/after")
    check(not bad and counts == {"b": 20}, "20 requests: all 200 from b (the new first address)",
          repr((counts, bad)))
    # An address leaving the answer (test_happy_eyeballs checks that pooled connections to it drain)
    mark = sl.line_count()
    ns.set_zone(["api IN A 127.0.0.11"])
    gone = ("cluster app: addresses now 127.0.0.11:%d (were 127.0.0.12:%d, 127.0.0.11:%d); connections to "
            "127.0.0.12:%d drain" % (port, port, port, port))
    check(sl.wait_log(gone, 1 + 1.5, mark), "log: '%s'" % gone, hu.log_tail(sl))
    n, bad = until_from(hp, "a", 1)
    check(n is not None and not bad, "the traffic is back on a (request %s)" % n, repr(bad))
    hu.stop_and_check(sl)


def case_empty_cluster_at_start():
    port, (a,) = ds.backends_on_one_port([("a", "127.0.0.11")])
    ns = ds.NsdServer(["other IN A 127.0.0.11"], ttl=1, minimum=1)
    sl = harness.Sluice(make_config([dns_cluster("app", ["api." + Z], port)], dns_block(ns.address)))
    hp = sl.port("web")
    check(sl.find_lines("cluster app: api.test.sluice: no such name (NXDOMAIN)"),
          "log: 'cluster app: api.test.sluice: no such name (NXDOMAIN)' and sluice is ready", hu.log_tail(sl))
    for i in range(3):
        r = hu.request_once(hp, "GET", "/none/%d" % i)
        check(r.status == 503 and r.body.rstrip(b"\n") == b"no healthy endpoint in cluster app",
              "request %d: 503 'no healthy endpoint in cluster app'" % i, r.describe())
    mark = sl.line_count()
    t0 = time.monotonic()
    ns.set_zone(["other IN A 127.0.0.11", "api IN A 127.0.0.11"])
    check(sl.wait_log("cluster app: endpoint 127.0.0.11:%d added (weight 1)" % port, 1 + 1.5, mark),
          "the record appears: endpoint 127.0.0.11:%d added (%.2f s later)" % (port, time.monotonic() - t0),
          hu.log_tail(sl))
    n, bad = until_from(hp, "a", 1)
    check(n is not None and all(x == (503, b"no healthy endpoint in cluster app\n") for x in bad),
          "the workers route to a right after (request %s; before it only 503s)" % n, repr(bad))
    counts, bad = backends_seen(hp, 10)
    check(not bad and counts == {"a": 10}, "10 requests: all 200 from a", repr((counts, bad)))
    hu.stop_and_check(sl)


def case_sources_in_clusters_and_metrics():
    port, (a, b) = ds.backends_on_one_port([("a", "127.0.0.11"), ("b", "127.0.0.12")])
    # Answers (and NXDOMAIN) good for 300 s: no refresh moves the counters during the case.
    ns = ds.NsdServer(["one IN A 127.0.0.11"], ttl=300, minimum=300)
    static = {"name": "fixed", "connect_timeout": "1s", "endpoints": [{"address": "127.0.0.12:%d" % port}]}

    def conf(names):
        return (make_config([dns_cluster("app", names, port), static], dns_block(ns.address)) +
                "admin:\n  address: 127.0.0.1:0\n")

    rl = Reloadable(conf(["one." + Z, "two." + Z]))
    sl, ap = rl.sl, rl.admin

    def sources():
        return {c["name"]: c.get("source") for c in admin_json(ap, "/clusters")}

    got = sources()
    want = {"type": "static", "target": "configuration", "state": "synced", "endpoints": 1, "updates": 1,
            "failures": 0, "invalid_entries": 0}
    check(got["fixed"] == want, "/clusters: static cluster fixed: source %r" % want, repr(got["fixed"]))
    want = {"type": "strict_dns", "target": "one.%s:%d, two.%s:%d" % (Z, port, Z, port), "state": "stale",
            "endpoints": 1, "updates": 1, "failures": 1, "invalid_entries": 0}
    check(got["app"] == want, "/clusters: strict_dns cluster app, two.%s NXDOMAIN: source %r" % (Z, want),
          repr(got["app"]))
    counts, bad = backends_seen(sl.port("web"), 10)
    check(not bad and counts == {"a": 10}, "10 requests: all 200 from one's address (a)", repr((counts, bad)))
    s = scrape(ap)
    vals = {(c, src, st): s.get("sluice_discovery_source_state", cluster=c, source=src, state=st)
            for c, src in (("app", "strict_dns"), ("fixed", "static")) for st in ("starting", "synced", "stale")}
    want = {("app", "strict_dns", "starting"): 0, ("app", "strict_dns", "synced"): 0,
            ("app", "strict_dns", "stale"): 1, ("fixed", "static", "starting"): 0,
            ("fixed", "static", "synced"): 1, ("fixed", "static", "stale"): 0}
    check(vals == want, "sluice_discovery_source_state: app stale, fixed synced", repr(vals))
    vals = [s.get(m, cluster="app", source="strict_dns") for m in
            ("sluice_discovery_endpoints", "sluice_discovery_updates_total", "sluice_discovery_failures_total")]
    check(vals == [1, 1, 1], "app: sluice_discovery_endpoints 1, updates_total 1, failures_total 1", repr(vals))
    vals = [s.get(m, cluster="fixed", source="static") for m in
            ("sluice_discovery_endpoints", "sluice_discovery_updates_total", "sluice_discovery_failures_total")]
    check(vals == [1, 1, 0], "fixed: sluice_discovery_endpoints 1, updates_total 1, failures_total 0", repr(vals))

    # A reload drops the missing name: a new source for app, answered from the cache.
    rl.write(conf(["one." + Z]))
    status, reply = rl.reload()
    check(status == 200 and reply.get("result") == "applied", "reload dropping two.%s: applied" % Z,
          repr((status, reply)))
    got = sources()
    want = {"type": "strict_dns", "target": "one.%s:%d" % (Z, port), "state": "synced", "endpoints": 1,
            "updates": 1, "failures": 0, "invalid_entries": 0}
    check(got["app"] == want, "/clusters after the reload: app source %r" % want, repr(got["app"]))
    want = {"type": "static", "target": "configuration", "state": "synced", "endpoints": 1, "updates": 1,
            "failures": 0, "invalid_entries": 0}
    check(got["fixed"] == want, "the unchanged static cluster keeps its source", repr(got["fixed"]))
    hu.stop_and_check(sl)


# --------------------------------------------------------------------------
# sluice check

BASE = """\
workers: 1
dns:
  servers: [127.0.0.1:5353]
  family: v4
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
    type: strict_dns
    endpoints:
      - address: api.test.sluice:8080
"""

STATIC_TAIL = """\
  - name: app
    type: static
    endpoints:
      - address: 127.0.0.1:8080
"""


def locate(text, needle, after=None):
    """1-based (line, column) of needle in text (the first one after `after`, if given)."""
    start = text.index(after) if after else 0
    i = text.index(needle, start)
    line = text.count("\n", 0, i) + 1
    col = i - (text.rindex("\n", 0, i) + 1 if "\n" in text[:i] else 0) + 1
    return line, col


def with_cluster(body):
    """BASE with the cluster replaced by `body` (the lines after '  - name: app\\n')."""
    head = BASE[:BASE.index("  - name: app\n")]
    return head + "  - name: app\n" + body


def config_error_cases():
    """(name, config text, (needle, after), key path, message)"""
    return [
        ("logical_dns_two_endpoints",
         with_cluster("    type: logical_dns\n    endpoints:\n      - address: a.test.sluice:80\n"
                      "      - address: b.test.sluice:80\n"),
         ("- address: a.test", None), "clusters[0].endpoints", "type: logical_dns takes exactly one endpoint (a name)"),
        ("dns_srv_with_endpoints",
         with_cluster("    type: dns_srv\n    srv_name: _http._tcp.test.sluice\n"
                      "    endpoints: [{address: a.test.sluice:80}]\n"),
         ("[{address", None), "clusters[0].endpoints", "not with type: dns_srv (the SRV records list the endpoints)"),
        ("dns_srv_without_srv_name",
         with_cluster("    type: dns_srv\n"),
         ("name: app", None), "clusters[0]", "missing required key 'srv_name'"),
        ("dns_srv_bad_srv_name",
         with_cluster("    type: dns_srv\n    srv_name: \"_http._tcp.bad name\"\n"),
         ("\"_http._tcp.bad", None), "clusters[0].srv_name",
         "'_http._tcp.bad name' is not a DNS name such as _http._tcp.example.com"),
        ("srv_name_on_strict_dns",
         BASE.replace("    type: strict_dns\n", "    type: strict_dns\n    srv_name: _http._tcp.test.sluice\n"),
         ("_http._tcp", None), "clusters[0].srv_name", "only for type: dns_srv"),
        ("dns_servers_bad_ip",
         BASE.replace("servers: [127.0.0.1:5353]", "servers: [127.0.0.1:5353, 300.1.2.3]"),
         ("300.1.2.3", None), "dns.servers[1]", "'300.1.2.3': expected an address such as 127.0.0.1:53 or [::1]:53"),
        ("dns_servers_name",
         BASE.replace("servers: [127.0.0.1:5353]", "servers: [dns.example:53]"),
         ("dns.example", None), "dns.servers[0]",
         "'dns.example:53': expected an address such as 127.0.0.1:53 or [::1]:53"),
        ("dns_servers_not_a_list",
         BASE.replace("servers: [127.0.0.1:5353]", "servers: 127.0.0.1:5353"),
         ("127.0.0.1:5353", None), "dns.servers", "expected a list of addresses such as 127.0.0.1:53"),
        ("dns_family_bad",
         BASE.replace("family: v4", "family: ipv4"),
         ("ipv4", None), "dns.family", "expected one of: v4, v6, both, got 'ipv4'"),
        ("strict_dns_bad_name",
         BASE.replace("      - address: api.test.sluice:8080\n", "      - address: \"bad name!:80\"\n"),
         ("\"bad name!", None), "clusters[0].endpoints[0].address",
         "'bad name!:80': expected a name and port such as api.internal:8080"),
        ("strict_dns_no_port",
         BASE.replace("      - address: api.test.sluice:8080\n", "      - address: api.test.sluice\n"),
         ("api.test.sluice", "endpoints:"), "clusters[0].endpoints[0].address",
         "'api.test.sluice': expected a name and port such as api.internal:8080"),
        ("on_address_change_on_static",
         with_cluster(STATIC_TAIL.split("\n", 1)[1].replace("    type: static\n",
                                                            "    type: static\n    on_address_change: keep\n")),
         ("keep", None), "clusters[0].on_address_change", "only for type: strict_dns, logical_dns, dns_srv or file"),
        ("on_address_change_bad",
         BASE.replace("    type: strict_dns\n", "    type: strict_dns\n    on_address_change: maybe\n"),
         ("maybe", None), "clusters[0].on_address_change", "expected one of: drain, keep, close, got 'maybe'"),
        ("cluster_type_bad",
         BASE.replace("    type: strict_dns\n", "    type: dns\n"),
         ("dns\n", "type:"), "clusters[0].type", "expected one of: static, strict_dns, logical_dns, dns_srv, file, etcd, got 'dns'"),
    ]


def check_file(name, text):
    d = tempfile.mkdtemp(prefix="sluice-dns-check-")
    harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    path = os.path.join(d, name + ".yaml")
    with open(path, "w") as f:
        f.write(text)
    return path, harness.run_sluice_cmd(["check", "-c", path], timeout=10)


def case_config_good():
    text = BASE.replace("  family: v4\n", "  family: both\n  timeout: 2s\n  attempts: 2\n  rotate: false\n"
                        "  hosts_file: \"\"\n  min_ttl: 1s\n  max_ttl: 1h\n  negative_min_ttl: 1s\n"
                        "  negative_max_ttl: 5m\n  stale_ttl: 5m\n  max_cname_chain: 8\n")
    text = text.replace("    type: strict_dns\n", "    type: strict_dns\n    on_address_change: keep\n"
                        "    dns_failure_refresh: 5s\n")
    text += ("  - name: logical\n    type: logical_dns\n    endpoints: [{address: \"api.test.sluice:80\"}]\n"
             "  - name: srv\n    type: dns_srv\n    srv_name: _http._tcp.test.sluice\n")
    path, p = check_file("good", text)
    check(p.returncode == 0, "a config with every dns key and the three DNS cluster types passes sluice check",
          "rc=%d\nstdout: %s\nstderr: %s\n%s" % (p.returncode, p.stdout, p.stderr, text))


def config_error_case_fns():
    cases = []
    for name, text, (needle, after), key_path, message in config_error_cases():
        def case(name=name, text=text, needle=needle, after=after, key_path=key_path, message=message):
            path, p = check_file(name, text)
            check(p.returncode == 1, "sluice check exits 1", "rc=%d\nstdout: %s\nstderr: %s\n%s" %
                  (p.returncode, p.stdout, p.stderr, text))
            line, col = locate(text, needle, after)
            want = "%s:%d:%d: %s: %s" % (path, line, col, key_path, message)
            check(want in p.stderr.splitlines(), "reports 'FILE:%d:%d: %s: %s'" % (line, col, key_path, message),
                  "stderr:\n%s\nconfig:\n%s" % (p.stderr, text))
        case.__name__ = "case_config_" + name
        cases.append(case)
    return cases


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_address_change_under_load, case_keep_with_max_lifetime,
                       case_strict_dns_union_and_nxdomain_keeps_addresses, case_logical_dns_first_address,
                       case_empty_cluster_at_start, case_sources_in_clusters_and_metrics,
                       case_config_good] + config_error_case_fns())

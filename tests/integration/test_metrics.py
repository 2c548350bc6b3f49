#!/usr/bin/env python3
"""The admin endpoint's observability answers, checked against traffic the test sent itself:
/metrics parses as Prometheus text (HELP/TYPE for every family, counters end in _total,
the histogram is cumulative with +Inf == _count) and its counters equal exactly what was
sent across two workers (requests, responses by class, local replies, histogram count), and
the static cluster's endpoint source is synced with its one endpoint, reported once;
TCP listener byte counters equal the bytes each way; the endpoint pool gauges agree with
/clusters; connect failures to a dead endpoint are counted; there are no DNS families
without DNS clusters and one worker sample per worker; /listeners and /config describe
the running configuration; /connections lists pooled upstream connections and a held-open
client connection with their TCP_INFO, and answers 404 for an unknown cluster. Counters that
used to move unexported do move, exactly: TCP resets by side, connects refused (TCP and HTTP,
per cluster and per endpoint), TCP give-ups, pooled connections closed by the upstream while
idle; and the exit summary names every cluster counter.

Needs /usr/bin/python3 with prometheus_client (Debian's python3-prometheus-client)."""

import json
import os
import re
import socket
import struct
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info, soft_check  # noqa: E402
from http_backend import HttpBackend  # noqa: E402
import http_util as hu  # noqa: E402

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # reported by every case (run with /usr/bin/python3)
    text_string_to_metric_families = None

ADMIN_RE = re.compile(r"admin listening on 127\.0\.0\.1:(\d+)")
WORKER_RE = re.compile(r"\[w(\d+)\]")
METRICS_CT = "text/plain; version=0.0.4; charset=utf-8"


# --------------------------------------------------------------------------
# helpers


def make_config(listeners, clusters, workers=2):
    cfg = {"workers": workers, "log_level": "debug", "drain_timeout": "5s",
           "admin": {"address": "127.0.0.1:0"}, "listeners": listeners, "clusters": clusters}
    return harness.to_yaml(hu._quote(cfg)) + "\n"


def start(listeners, clusters, workers=2):
    sl = harness.Sluice(make_config(listeners, clusters, workers))
    line = sl.wait_log(ADMIN_RE, 5)
    if not line:
        raise harness.CheckFailed_with("no 'admin listening on 127.0.0.1:PORT' line", sl.stderr_text())
    return sl, int(ADMIN_RE.search(line).group(1))


def admin_get(ap, target):
    return hu.request_once(ap, "GET", target, host="admin", timeout=5)


def admin_json(ap, target, quiet=False):
    """GET target as JSON; quiet (for polling loops): checked only when it fails."""
    r = admin_get(ap, target)
    ok = r.status == 200 and (r.header("content-type") or "").startswith("application/json")
    if not quiet or not ok:
        check(ok, "GET %s: 200 application/json" % target, r.describe())
    return json.loads(r.body)


class Scrape:
    """One /metrics answer: raw text, parsed families and samples keyed by (name, sorted labels)."""

    def __init__(self, text):
        self.text = text
        self.families = list(text_string_to_metric_families(text))
        self.samples = {}
        for fam in self.families:
            for s in fam.samples:
                self.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def get(self, name, **labels):
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def find(self, name, **labels):
        """Samples of `name` whose labels include `labels`: list of (labels dict, value)."""
        out = []
        for (n, ls), v in self.samples.items():
            d = dict(ls)
            if n == name and all(d.get(k) == val for k, val in labels.items()):
                out.append((d, v))
        return out

    def names(self):
        return {n for (n, _) in self.samples}

    def excerpt(self, prefix):
        return "\n".join(l for l in self.text.splitlines() if prefix in l)


def scrape(ap):
    if text_string_to_metric_families is None:
        raise harness.CheckFailed_with("prometheus_client is importable (run with /usr/bin/python3)",
                                       sys.executable)
    r = admin_get(ap, "/metrics")
    if r.status != 200:
        check(False, "GET /metrics: 200", r.describe())
    try:
        return Scrape(r.body.decode("utf-8"))
    except Exception as e:
        raise harness.CheckFailed_with("/metrics parses with prometheus_client's text parser", "%r\n%s" %
                                       (e, r.body.decode("utf-8", "replace")[:4000]))


def wait_scrape(ap, pred, timeout=3.0):
    """Scrapes until pred(scrape) holds (counters are merged at scrape time; the last response
    may still be finishing on its worker). Returns the last scrape."""
    last = [None]

    def cond():
        last[0] = scrape(ap)
        return pred(last[0])
    harness.wait_until(cond, timeout, 0.02)
    return last[0]


def request_worker_counts(sl, listener="web", start=0):
    """How many per-request debug lines each worker logged for a listener."""
    counts = {}
    for rec in hu.request_log(sl, start):
        if rec["listener"] != listener:
            continue
        m = WORKER_RE.search(rec["line"])
        if m:
            counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


# --------------------------------------------------------------------------
# cases


N_OK, N_NOROUTE, N_503 = 37, 5, 3


def case_format_and_exact_request_counters():
    b = HttpBackend("a")
    lst = hu.simple_listener([{"match": {"prefix": "/app/"}, "cluster": "app"}])
    sl, ap = start([lst], [hu.cluster("app", [b])], workers=2)
    port = sl.port("web")

    # nothing sent yet: the format, and zeros
    s0 = scrape(ap)
    r = admin_get(ap, "/metrics")
    check(r.header("content-type") == METRICS_CT, "Content-Type: %s" % METRICS_CT, r.describe())
    check(s0.get("sluice_http_requests_total", listener="web") == 0,
          "before any traffic sluice_http_requests_total{listener=web} is 0", s0.excerpt("requests_total"))

    # the traffic: each request on a new connection so that both workers serve
    mark = sl.line_count()
    statuses = []
    plan = ([("/app/ok/%d" % i, 200) for i in range(N_OK)] + [("/nowhere/%d" % i, 404) for i in range(N_NOROUTE)] +
            [("/app/status/503", 503)] * N_503)
    for target, _ in plan:
        statuses.append(hu.request_once(port, "GET", target).status)
    check(statuses == [want for _, want in plan],
          "sent %d requests: %d x 200, %d x 404 (no route), %d x 503 (from the backend)" %
          (len(plan), N_OK, N_NOROUTE, N_503), repr(statuses))
    check(b.stats()["requests"] == N_OK + N_503, "the backend saw %d requests" % (N_OK + N_503), repr(b.stats()))
    per_worker = harness.wait_until(
        lambda: (lambda c: c if sum(c.values()) >= len(plan) else None)(request_worker_counts(sl, "web", mark)), 3)
    check(per_worker and set(per_worker) == {"0", "1"},
          "both workers served requests (per worker: %r)" % per_worker, hu.log_tail(sl, 20))

    total = len(plan)
    want = {
        ("sluice_http_requests_total", (("listener", "web"),)): total,
        ("sluice_http_responses_total", (("class", "1xx"), ("listener", "web"))): 0,
        ("sluice_http_responses_total", (("class", "2xx"), ("listener", "web"))): N_OK,
        ("sluice_http_responses_total", (("class", "3xx"), ("listener", "web"))): 0,
        ("sluice_http_responses_total", (("class", "4xx"), ("listener", "web"))): N_NOROUTE,
        ("sluice_http_responses_total", (("class", "5xx"), ("listener", "web"))): N_503,
        ("sluice_http_local_replies_total", (("listener", "web"),)): N_NOROUTE,
        ("sluice_http_request_duration_seconds_count", (("listener", "web"),)): total,
        ("sluice_http_retries_total", (("kind", "policy"), ("listener", "web"))): 0,
        ("sluice_http_upstream_timeouts_total", (("listener", "web"),)): 0,
        ("sluice_http_rejected_requests_total", (("listener", "web"),)): 0,
        ("sluice_listener_connections_accepted_total", (("listener", "web"),)): total,
        # the static cluster's endpoint source: its configured endpoint, reported once
        ("sluice_discovery_source_state", (("cluster", "app"), ("source", "static"), ("state", "starting"))): 0,
        ("sluice_discovery_source_state", (("cluster", "app"), ("source", "static"), ("state", "synced"))): 1,
        ("sluice_discovery_source_state", (("cluster", "app"), ("source", "static"), ("state", "stale"))): 0,
        ("sluice_discovery_endpoints", (("cluster", "app"), ("source", "static"))): 1,
        ("sluice_discovery_updates_total", (("cluster", "app"), ("source", "static"))): 1,
        ("sluice_discovery_failures_total", (("cluster", "app"), ("source", "static"))): 0,
    }

    def mismatches(s):
        return {k: (s.samples.get(k), v) for k, v in want.items() if s.samples.get(k) != v}

    s = wait_scrape(ap, lambda s: not mismatches(s))
    for (name, labels), v in want.items():
        got = s.samples.get((name, labels))
        soft_check(got == v, "%s{%s} == %d (got %r)" % (name, ",".join("%s=%s" % kv for kv in labels), v, got),
                   s.excerpt(name))
    # a second scrape, later, gives the same (admin requests are not counted on the listener)
    s2 = scrape(ap)
    check(not mismatches(s2), "a second scrape gives the same counters", repr(mismatches(s2)))
    act = harness.wait_until(lambda: scrape(ap).get("sluice_listener_connections_active", listener="web") == 0, 3)
    check(act, "sluice_listener_connections_active{listener=web} returns to 0 (every client closed)",
          scrape(ap).excerpt("connections_active"))

    # format: every family has HELP and TYPE, counters end in _total
    text = s.text
    helps = set(re.findall(r"^# HELP (\S+) \S", text, re.M))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    sample_names = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.M))
    fam_of = {}
    for n in sample_names:
        base = n
        for suf in ("_bucket", "_sum", "_count"):
            if n.endswith(suf) and types.get(n[:-len(suf)]) == "histogram":
                base = n[:-len(suf)]
        fam_of[n] = base
    no_type = sorted(n for n, f in fam_of.items() if f not in types)
    check(not no_type, "every sample belongs to a family with a # TYPE line", repr(no_type))
    check(set(types) <= helps, "every # TYPE family has a # HELP line", repr(sorted(set(types) - helps)))
    bad_counters = sorted(n for n, t in types.items() if t == "counter" and not n.endswith("_total"))
    check(not bad_counters, "every counter's name ends in _total (%d counters)" %
          sum(1 for t in types.values() if t == "counter"), repr(bad_counters))
    total_not_counter = sorted(n for n, t in types.items() if n.endswith("_total") and t != "counter")
    check(not total_not_counter, "every *_total family is a counter", repr(total_not_counter))
    check(all(t in ("counter", "gauge", "histogram") for t in types.values()), "types are counter|gauge|histogram",
          repr(types))
    expected_families = [
        "sluice_listener_connections_active", "sluice_listener_connections_accepted_total",
        "sluice_listener_connections_rejected_total", "sluice_http_requests_total", "sluice_http_responses_total",
        "sluice_http_local_replies_total", "sluice_http_retries_total", "sluice_http_upstream_timeouts_total",
        "sluice_http_rejected_requests_total", "sluice_http_request_duration_seconds",
        "sluice_cluster_connect_attempts_total", "sluice_cluster_connect_failures_total",
        "sluice_cluster_no_healthy_endpoint_total", "sluice_cluster_overflow_total", "sluice_cluster_panic",
        "sluice_cluster_endpoint_slots", "sluice_health_endpoint_slots_reclaimed_total",
        "sluice_discovery_source_state", "sluice_discovery_updates_total", "sluice_discovery_stale_seconds",
        "sluice_discovery_auth_renewals_total",
        "sluice_endpoint_usable", "sluice_endpoint_connections", "sluice_endpoint_active_requests",
        "sluice_endpoint_connects_total", "sluice_endpoint_connect_failures_total",
        "sluice_endpoint_connection_reuses_total", "sluice_worker_busy_seconds_total", "sluice_worker_events_total",
        "sluice_worker_iterations_total", "sluice_worker_longest_iteration_seconds",
        # written without samples when there is no bgp: block
        "sluice_bgp_peer_state", "sluice_bgp_peer_uptime_seconds", "sluice_bgp_peer_received_prefixes",
        "sluice_bgp_peer_established_total", "sluice_bgp_peer_updates_sent_total",
        "sluice_bgp_peer_updates_received_total", "sluice_bgp_peer_notifications_sent_total",
        "sluice_bgp_peer_notifications_received_total", "sluice_bgp_prefix_announced",
        "sluice_bgp_prefix_graceful_shutdown", "sluice_bgp_prefix_transitions_total",
        # the dashboard's event streams (none open here)
        "sluice_dashboard_event_subscribers", "sluice_dashboard_event_subscriptions_total",
        "sluice_dashboard_event_builds_total", "sluice_dashboard_event_frames_total",
        "sluice_dashboard_event_ends_total",
        # written without samples when there is no registration: block
        "sluice_registration_state", "sluice_registration_grants_total", "sluice_registration_puts_total",
        "sluice_registration_keepalives_total", "sluice_registration_leases_lost_total",
        "sluice_registration_failures_total", "sluice_registration_lease_ttl_seconds",
        "sluice_registration_auth_renewals_total"]
    missing = [f for f in expected_families if f not in types]
    check(not missing, "the documented families are present (%d checked)" % len(expected_families), repr(missing))

    # the histogram
    h = "sluice_http_request_duration_seconds"
    check(types.get(h) == "histogram", "%s is a histogram" % h, repr(types.get(h)))
    buckets = sorted(((float(d["le"]), v) for d, v in s.find(h + "_bucket", listener="web")), key=lambda x: x[0])
    les = [le for le, _ in buckets]
    check(les and les[0] == 0.0001 and les[-2] == 10 and les[-1] == float("inf"),
          "buckets run from le=0.0001 to le=10, then +Inf (%d buckets)" % len(les), repr(les))
    vals = [v for _, v in buckets]
    check(all(a <= b for a, b in zip(vals, vals[1:])), "bucket counts are cumulative (non-decreasing)", repr(buckets))
    cnt = s.get(h + "_count", listener="web")
    check(vals[-1] == cnt == total, "+Inf bucket == _count == %d" % total, "inf=%r count=%r" % (vals[-1], cnt))
    hsum = s.get(h + "_sum", listener="web")
    check(hsum is not None and 0 < hsum < total * 5.0, "_sum is positive and plausible (%r s)" % hsum, "")

    # no DNS cluster: no DNS families; one worker sample per worker
    dns = sorted(n for n in types if n.startswith("sluice_dns_"))
    check(not dns, "no sluice_dns_* family without DNS clusters", repr(dns))
    for fam in ("sluice_worker_busy_seconds_total", "sluice_worker_events_total", "sluice_worker_iterations_total",
                "sluice_worker_longest_iteration_seconds"):
        got = sorted(d.get("worker") for d, _ in s.find(fam))
        check(got == ["0", "1"], "%s has one sample per worker (workers %r)" % (fam, got), s.excerpt(fam))
    for fam in ("sluice_worker_events_total", "sluice_worker_iterations_total"):
        vs = {d["worker"]: v for d, v in s.find(fam)}
        check(all(v > 0 for v in vs.values()), "%s > 0 for every worker (%r)" % (fam, vs), "")
    # the cluster counters of this traffic
    ca = s.get("sluice_cluster_connect_attempts_total", cluster="app")
    cf = s.get("sluice_cluster_connect_failures_total", cluster="app")
    ec = sum(v for _, v in s.find("sluice_endpoint_connects_total", cluster="app"))
    reuses = sum(v for _, v in s.find("sluice_endpoint_connection_reuses_total", cluster="app"))
    info("cluster app: connect attempts %r, failures %r, endpoint connects %r, reuses %r" % (ca, cf, ec, reuses))
    check(cf == 0, "cluster app: 0 connect failures", s.excerpt("cluster_connect"))
    check(ec + reuses == N_OK + N_503,
          "endpoint connects (%r) + connection reuses (%r) == %d upstream requests" % (ec, reuses, N_OK + N_503),
          s.excerpt("sluice_endpoint_conn"))
    # "Upstream connect attempts." (its HELP): the TCP connects made, as for TCP listeners, not the
    # requests sent on reused pooled connections
    soft_check(ca == ec + cf,
               "sluice_cluster_connect_attempts_total{cluster=app} (%r) == connects made (%r) + failed (%r)" %
               (ca, ec, cf), s.excerpt("connect_attempts") + "\n" + s.excerpt("sluice_endpoint_conn"))
    hu.stop_and_check(sl)


def case_tcp_listener_bytes():
    srv = harness.DataServer()
    lst = {"name": "tcp_in", "address": "127.0.0.1:0", "protocol": "tcp", "cluster": "data"}
    sl, ap = start([lst], [hu.cluster("data", [srv])], workers=2)
    port = sl.port("tcp_in")
    sizes = [(100000, 7), (1, 250000), (33333, 44444)]   # (client sends, backend answers)
    for i, (up, down) in enumerate(sizes):
        c = harness.DataClient(port, i + 1, up, down, flags=harness.FLAG_ANSWER_AFTER_EOF, timeout=10)
        check(c.wait(15), "connection %d finished" % (i + 1), "")
        problem = harness.verify_exchange(srv, c, up, down)
        check(problem is None, "connection %d: %d bytes up, %d down, intact" % (i + 1, up, down), problem)
        c.close()
    want_up = sum(harness.HEADER_LEN + up for up, _ in sizes)
    want_down = sum(down for _, down in sizes)

    def ok(s):
        return (s.get("sluice_tcp_bytes_total", listener="tcp_in", direction="upstream") == want_up and
                s.get("sluice_tcp_bytes_total", listener="tcp_in", direction="downstream") == want_down and
                s.get("sluice_tcp_connections_closed_total", listener="tcp_in", reason="completed") == len(sizes))
    s = wait_scrape(ap, ok, 5)
    up = s.get("sluice_tcp_bytes_total", listener="tcp_in", direction="upstream")
    down = s.get("sluice_tcp_bytes_total", listener="tcp_in", direction="downstream")
    check(up == want_up, "sluice_tcp_bytes_total{direction=upstream} == %d bytes sent by the clients (got %r)" %
          (want_up, up), s.excerpt("tcp_bytes"))
    check(down == want_down, "sluice_tcp_bytes_total{direction=downstream} == %d bytes sent by the backend (got %r)"
          % (want_down, down), s.excerpt("tcp_bytes"))
    closed = {d["reason"]: v for d, v in s.find("sluice_tcp_connections_closed_total", listener="tcp_in")}
    check(closed.get("completed") == len(sizes) and sum(closed.values()) == len(sizes),
          "sluice_tcp_connections_closed_total: %d completed, nothing else (%r)" % (len(sizes), closed), "")
    check(s.get("sluice_listener_connections_accepted_total", listener="tcp_in") == len(sizes),
          "accepted_total{listener=tcp_in} == %d" % len(sizes), s.excerpt("accepted"))
    check(not s.find("sluice_http_requests_total", listener="tcp_in"), "no HTTP samples for the TCP listener",
          s.excerpt("tcp_in"))
    ls = admin_json(ap, "/listeners")
    t = [x for x in ls if x.get("name") == "tcp_in"]
    check(len(t) == 1 and t[0].get("bytes_to_upstream") == want_up and t[0].get("bytes_to_downstream") == want_down
          and t[0].get("protocol") == "tcp" and t[0].get("accepted") == len(sizes),
          "/listeners tcp_in: bytes_to_upstream %d, bytes_to_downstream %d, accepted %d" %
          (want_up, want_down, len(sizes)), json.dumps(ls, indent=1))
    hu.stop_and_check(sl)


def pool_from_metrics(s, cluster, endpoint):
    return {d["state"]: v for d, v in s.find("sluice_endpoint_connections", cluster=cluster, endpoint=endpoint)}


def pool_from_json(cl_json, cluster, endpoint):
    for c in cl_json:
        if c.get("name") == cluster:
            for e in c.get("endpoints", []):
                if e.get("address") == endpoint:
                    return e
    return None


def case_pool_gauges_agree_with_clusters_json():
    b = HttpBackend("a")
    lst = hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])
    sl, ap = start([lst], [hu.cluster("app", [b])], workers=2)
    port = sl.port("web")
    ep = b.address
    n = 4
    results = []
    lock = threading.Lock()

    def slow(i):
        try:
            r = hu.request_once(port, "GET", "/delay/2000/slow/%d" % i, timeout=10)
            st = r.status
        except Exception as e:
            st = repr(e)
        with lock:
            results.append(st)

    ths = [threading.Thread(target=slow, args=(i,), daemon=True) for i in range(n)]
    for t in ths:
        t.start()
    check(harness.wait_until(lambda: len(b.requests_for(lambda x: "/slow/" in x["target"])) == n, 5),
          "%d slow requests are at the backend" % n, repr(b.stats()))
    s = wait_scrape(ap, lambda s: pool_from_metrics(s, "app", ep).get("busy") == n, 2)
    cj = admin_json(ap, "/clusters")
    pm = pool_from_metrics(s, "app", ep)
    ej = pool_from_json(cj, "app", ep)
    check(ej is not None, "/clusters has cluster app with endpoint %s" % ep, json.dumps(cj, indent=1))
    info("while busy: metrics %r; /clusters pool %r, active_requests %r" % (pm, ej["pool"], ej["active_requests"]))
    check(set(pm) == {"connecting", "idle", "busy", "draining"},
          "sluice_endpoint_connections has states connecting|idle|busy|draining", s.excerpt("endpoint_connections"))
    check(pm.get("busy") == n and ej["pool"]["busy"] == n,
          "with %d requests in flight: busy == %d in /metrics and in /clusters" % (n, n),
          "%r\n%r" % (pm, ej["pool"]))
    check(all(pm[k] == ej["pool"][k] for k in ("connecting", "idle", "busy", "draining")),
          "every pool state agrees between /metrics and /clusters", "%r\n%r" % (pm, ej["pool"]))
    ar = s.get("sluice_endpoint_active_requests", cluster="app", endpoint=ep)
    check(ar == n and ej["active_requests"] == n,
          "active requests == %d in /metrics (%r) and /clusters (%r)" % (n, ar, ej["active_requests"]), "")
    for t in ths:
        t.join(10)
    check(results == [200] * n, "the slow requests complete with 200", repr(results))

    s = wait_scrape(ap, lambda s: pool_from_metrics(s, "app", ep).get("idle") == n, 3)
    cj = admin_json(ap, "/clusters")
    pm = pool_from_metrics(s, "app", ep)
    ej = pool_from_json(cj, "app", ep)
    check(pm.get("idle") == n and pm.get("busy") == 0 and ej["pool"]["idle"] == n and ej["pool"]["busy"] == 0,
          "afterwards: %d idle, 0 busy in both" % n, "%r\n%r" % (pm, ej["pool"]))
    conns = s.get("sluice_endpoint_connects_total", cluster="app", endpoint=ep)
    check(conns == n and ej["pool"]["connects"] == n,
          "connects: %d in /metrics (%r) and /clusters (%r)" % (n, conns, ej["pool"]["connects"]), "")
    check(s.get("sluice_endpoint_usable", cluster="app", endpoint=ep) == 1 and ej["usable"] is True,
          "the endpoint is usable in both", "")
    check(s.get("sluice_endpoint_active_requests", cluster="app", endpoint=ep) == 0 and ej["active_requests"] == 0,
          "active requests back to 0 in both", "")
    ca = s.get("sluice_cluster_connect_attempts_total", cluster="app")
    cja = [c.get("connect_attempts") for c in cj if c.get("name") == "app"]
    check(ca == n and cja == [n], "cluster connect attempts == %d in /metrics (%r) and /clusters (%r)" % (n, ca, cja),
          "")
    hu.stop_and_check(sl)


def case_connect_failures_counted():
    b = HttpBackend("a")
    hold, dead_port = harness.free_port_holder()
    dead = "127.0.0.1:%d" % dead_port
    lst = hu.simple_listener([
        {"match": {"prefix": "/dead/"}, "cluster": "dead", "retries": {"num_retries": 0}},
        {"match": {"prefix": "/"}, "cluster": "app"}])
    sl, ap = start([lst], [hu.cluster("app", [b]), hu.cluster("dead", [dead])], workers=2)
    port = sl.port("web")
    n = 4
    statuses = [hu.request_once(port, "GET", "/dead/%d" % i).status for i in range(n)]
    check(all(st in (502, 503) for st in statuses), "%d requests to the dead endpoint: 502/503 (%r)" % (n, statuses),
          hu.log_tail(sl, 20))
    ok = hu.request_once(port, "GET", "/fine")
    check(ok.status == 200, "a request to the live cluster: 200", ok.describe())

    def done(s):
        return (s.get("sluice_cluster_connect_failures_total", cluster="dead") or 0) >= n and \
            s.get("sluice_http_responses_total", listener="web", **{"class": "5xx"}) == n
    s = wait_scrape(ap, done, 3)
    ca = s.get("sluice_cluster_connect_attempts_total", cluster="dead")
    cf = s.get("sluice_cluster_connect_failures_total", cluster="dead")
    ecf = s.get("sluice_endpoint_connect_failures_total", cluster="dead", endpoint=dead)
    info("cluster dead: attempts %r, failures %r, endpoint connect failures %r" % (ca, cf, ecf))
    check(cf == n and ca == n, "sluice_cluster_connect_failures_total{cluster=dead} == attempts == %d (%r/%r)" %
          (n, cf, ca), s.excerpt('cluster="dead"'))
    check(ecf == n, "sluice_endpoint_connect_failures_total{cluster=dead,endpoint=%s} == %d (%r)" % (dead, n, ecf),
          s.excerpt('cluster="dead"'))
    check(s.get("sluice_cluster_connect_failures_total", cluster="app") == 0,
          "the live cluster has no connect failure", s.excerpt("connect_failures"))
    check(s.get("sluice_http_responses_total", listener="web", **{"class": "5xx"}) == n and
          s.get("sluice_http_local_replies_total", listener="web") == n,
          "5xx responses == local replies == %d" % n, s.excerpt("listener=\"web\""))
    # nothing listens on the dead port: every failure is a refusal, in the cluster and the pool
    refused = s.get("sluice_cluster_connect_refused_total", cluster="dead")
    erefused = s.get("sluice_endpoint_connect_refused_total", cluster="dead", endpoint=dead)
    check(refused == n and erefused == n,
          "connect refused == %d for cluster dead (%r) and its endpoint (%r)" % (n, refused, erefused),
          s.excerpt('cluster="dead"'))
    check(s.get("sluice_cluster_connect_timeouts_total", cluster="dead") == 0 and
          s.get("sluice_endpoint_connect_timeouts_total", cluster="dead", endpoint=dead) == 0,
          "no connect timeout counted for cluster dead", s.excerpt("connect_timeouts"))
    check(s.get("sluice_cluster_connect_refused_total", cluster="app") == 0,
          "the live cluster has no refused connect", s.excerpt("connect_refused"))
    cj = admin_json(ap, "/clusters")
    c = [x for x in cj if x["name"] == "dead"]
    e = pool_from_json(cj, "dead", dead)
    check(c and c[0]["connect_failures"] == n and c[0]["connect_attempts"] == n and
          c[0]["connect_refused"] == n and e and e["pool"]["connect_failures"] == n and
          e["pool"]["connect_refused"] == n,
          "/clusters dead: connect_attempts, connect_failures, connect_refused, pool.connect_failures, "
          "pool.connect_refused all %d" % n, json.dumps(c, indent=1))
    hu.stop_and_check(sl)


def case_listeners_and_config_json():
    b = HttpBackend("a")
    echo = harness.EchoServer()
    web = hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])
    tcp = {"name": "tcp_in", "address": "127.0.0.1:0", "protocol": "tcp", "cluster": "echo"}
    sl, ap = start([web, tcp], [hu.cluster("app", [b], lb_policy="least_request"), hu.cluster("echo", [echo])],
                   workers=3)
    for i in range(3):
        check(hu.request_once(sl.port("web"), "GET", "/x/%d" % i).status == 200, "request %d: 200" % i, "")
    r = hu.request_once(sl.port("web"), "GET", "/status/404")
    check(r.status == 404, "a backend 404", r.describe())
    held = hu.Client(sl.port("web"))
    check(held.request("GET", "/held").status == 200, "a kept-alive client connection stays open", "")

    def listeners_ok():
        ls = admin_json(ap, "/listeners", quiet=True)
        w = [x for x in ls if x.get("name") == "web"]
        return ls if w and w[0].get("requests") == 5 and w[0].get("active_connections") == 1 else None
    ls = harness.wait_until(listeners_ok, 3) or admin_json(ap, "/listeners")
    by = {x.get("name"): x for x in ls}
    check(set(by) == {"web", "tcp_in"}, "/listeners names web and tcp_in", json.dumps(ls, indent=1))
    w, t = by["web"], by["tcp_in"]
    check(w.get("address") == "127.0.0.1:%d" % sl.port("web") and t.get("address") == "127.0.0.1:%d" %
          sl.port("tcp_in"), "/listeners shows the bound addresses (not :0)", json.dumps(ls, indent=1))
    check(w.get("protocol") == "http" and t.get("protocol") == "tcp", "protocols http and tcp", "")
    check(w.get("accepted") == 5 and w.get("active_connections") == 1 and w.get("requests") == 5,
          "web: accepted 5, active 1 (the held client), requests 5", json.dumps(w, indent=1))
    got = {k: w.get("responses_" + k) for k in ("1xx", "2xx", "3xx", "4xx", "5xx")}
    check(got == {"1xx": 0, "2xx": 4, "3xx": 0, "4xx": 1, "5xx": 0} and w.get("retries") == 0,
          "web: responses_2xx 4, responses_4xx 1, the other classes 0, retries 0", json.dumps(w, indent=1))
    check(t.get("accepted") == 0 and t.get("active_connections") == 0 and t.get("bytes_to_upstream") == 0 and
          t.get("bytes_to_downstream") == 0 and "requests" not in t,
          "tcp_in: nothing yet, bytes fields and no HTTP fields", json.dumps(t, indent=1))
    held.close()

    cfg = admin_json(ap, "/config")
    check(cfg.get("workers") == 3, "/config workers: 3", json.dumps(cfg, indent=1)[:3000])
    cl = {x.get("name"): x for x in cfg.get("listeners", [])}
    check(cl.get("web", {}).get("address") == "127.0.0.1:%d" % sl.port("web") and
          cl.get("tcp_in", {}).get("address") == "127.0.0.1:%d" % sl.port("tcp_in"),
          "/config listeners carry their bound addresses", json.dumps(cfg.get("listeners"), indent=1))
    check(cl["tcp_in"].get("cluster") == "echo" and cl["web"].get("protocol") == "http",
          "/config tcp_in -> cluster echo; web is http", "")
    routes = cl["web"].get("virtual_hosts", [{}])[0].get("routes", [])
    check(routes and routes[0].get("cluster") == "app", "/config web's route goes to app", json.dumps(routes))
    cc = {x.get("name"): x for x in cfg.get("clusters", [])}
    check(set(cc) == {"app", "echo"}, "/config clusters app and echo", json.dumps(cfg.get("clusters"), indent=1))
    check(cc["app"].get("lb_policy") == "least_request" and cc["echo"].get("lb_policy") == "round_robin",
          "lb_policy as configured (least_request) and defaulted (round_robin)", "")
    check(cc["app"].get("connect_timeout") == "1s" and cc["app"].get("type") == "static",
          "connect_timeout 1s as configured, type static by default", json.dumps(cc["app"], indent=1))
    pool = cc["app"].get("pool", {})
    check(pool.get("max_connections") == 1024 and pool.get("max_pending_requests") == 1024 and
          pool.get("idle_timeout") == "60s" and pool.get("min_idle") == 0,
          "pool defaults applied (max_connections 1024, max_pending_requests 1024, idle_timeout 60s)",
          json.dumps(pool))
    check([e.get("address") for e in cc["app"].get("endpoints", [])] == [b.address] and
          cc["app"]["endpoints"][0].get("weight") == 1, "endpoint address and default weight 1",
          json.dumps(cc["app"].get("endpoints")))
    check(cfg.get("admin") is None or isinstance(cfg.get("admin"), dict), "(admin block, if present, is an object)",
          "")
    hu.stop_and_check(sl)


def tcp_info_ok(ti):
    need = ("rtt_us", "rttvar_us", "min_rtt_us", "retransmits", "total_retransmits", "lost", "cwnd", "ssthresh",
            "mss", "delivery_rate_bytes_per_s", "bytes_acked", "bytes_received", "congestion")
    missing = [k for k in need if k not in ti]
    return missing


def case_kernel_queues_of_a_slow_reader():
    """A client that asks for 32 MiB and reads none of it: /connections shows the bytes parked
    in the kernel on its downstream connection (unsent_bytes > 0), and the reader's side
    (unread) on the upstream one, so "where is my data" has an answer."""
    a = HttpBackend("a")
    sl, ap = start([hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])],
                   [hu.cluster("app", [a])], workers=1)
    s = socket.create_connection(("127.0.0.1", sl.port("web")), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"GET /bytes/33554432 HTTP/1.1\r\nHost: x\r\n\r\n")

    def parked():
        cs = admin_json(ap, "/connections?listener=web", quiet=True)
        q = cs[0].get("kernel_queue", {}) if len(cs) == 1 else {}
        return q if q.get("unsent_bytes", 0) > 0 else None
    q = harness.wait_until(parked, 10)
    check(q is not None and q["unsent_bytes"] > 0 and q["unread_bytes"] == 0,
          "the slow reader's downstream connection: unsent_bytes %r > 0 (sluice wrote, the client "
          "does not read)" % (q or {}).get("unsent_bytes"), json.dumps(q))
    cs = admin_json(ap, "/connections?cluster=app")
    check(len(cs) == 1 and set(cs[0].get("kernel_queue", {})) == {"unsent_bytes", "unacked_bytes", "unread_bytes"},
          "the upstream connection reports its kernel queues too", json.dumps(cs))
    s.close()
    hu.stop_and_check(sl)


def case_connections_endpoint():
    a = HttpBackend("a")
    lst = hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])
    other = hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}], name="other")
    sl, ap = start([lst, other], [hu.cluster("app", [a])], workers=2)
    port = sl.port("web")
    # two pooled connections: two concurrent requests
    res = []

    def req(i):
        res.append(hu.request_once(port, "GET", "/delay/300/c%d" % i).status)
    ths = [threading.Thread(target=req, args=(i,), daemon=True) for i in range(2)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(10)
    check(res == [200, 200], "two concurrent requests: 200", repr(res))
    check(a.stats()["connections"] == 2, "the backend saw 2 upstream connections", repr(a.stats()))

    def pooled():
        cs = admin_json(ap, "/connections?cluster=app", quiet=True)
        return cs if len(cs) == 2 and all(c.get("state") == "idle" for c in cs) else None
    cs = harness.wait_until(pooled, 3) or admin_json(ap, "/connections?cluster=app")
    check(len(cs) == 2, "/connections?cluster=app lists the 2 pooled connections", json.dumps(cs, indent=1))
    for c in cs:
        ti = c.get("tcp_info", {})
        check(c.get("role") == "upstream" and c.get("cluster") == "app" and c.get("state") == "idle" and
              c.get("peer") == a.address and c.get("worker") in (0, 1),
              "upstream %s: role upstream, cluster app, state idle, peer %s" % (c.get("local"), a.address),
              json.dumps(c, indent=1))
        check(not tcp_info_ok(ti), "tcp_info has every documented field", repr(tcp_info_ok(ti)))
        check(c.get("kernel_queue") == {"unsent_bytes": 0, "unacked_bytes": 0, "unread_bytes": 0},
              "an idle pooled connection: nothing queued in the kernel either way", json.dumps(c))
        check(ti["rtt_us"] > 0 and ti["min_rtt_us"] > 0 and ti["mss"] > 0 and ti["cwnd"] > 0 and
              ti["bytes_received"] > 0 and ti["bytes_acked"] > 0 and ti["total_retransmits"] == 0 and
              isinstance(ti["congestion"], str) and ti["congestion"],
              "tcp_info: rtt_us %d > 0, mss %d, cwnd %d, bytes_received %d, congestion %s, no retransmits" %
              (ti["rtt_us"], ti["mss"], ti["cwnd"], ti["bytes_received"], ti["congestion"]), json.dumps(ti))
    # the local addresses are real sockets of sluice connected to the backend
    locals_ = sorted(c["local"] for c in cs)
    check(len(set(locals_)) == 2 and all(l.startswith("127.0.0.1:") for l in locals_),
          "two distinct local addresses %r" % locals_, "")
    # a response's size shows in bytes_received
    # a held-open client connection
    held = hu.Client(port)
    check(held.request("GET", "/held").status == 200, "a client connection answered and held open", "")
    me = "127.0.0.1:%d" % held.sock.getsockname()[1]

    def mine(state):
        def f():
            cs = admin_json(ap, "/connections?listener=web", quiet=True)
            m = [c for c in cs if c.get("peer") == me]
            return (cs, m[0]) if m and m[0].get("state") == state else None
        return f
    got = harness.wait_until(mine("idle"), 3)
    cs = admin_json(ap, "/connections?listener=web")
    check(got, "/connections?listener=web lists the held client %s in state idle" % me, json.dumps(cs, indent=1))
    c = got[1]
    check(c.get("role") == "downstream" and c.get("listener") == "web" and
          c.get("local") == "127.0.0.1:%d" % port and "cluster" not in c,
          "it is role downstream, listener web, local = the listener's address", json.dumps(c, indent=1))
    check(all(x.get("role") == "downstream" and x.get("listener") == "web" for x in got[0]),
          "?listener=web lists only web's downstream connections", json.dumps(got[0], indent=1))
    ti = c.get("tcp_info", {})
    check(not tcp_info_ok(ti) and ti["rtt_us"] > 0 and ti["bytes_received"] > 0,
          "its tcp_info: rtt_us %r > 0, bytes_received %r > 0" % (ti.get("rtt_us"), ti.get("bytes_received")),
          json.dumps(ti))
    # a request in flight: state request
    held.send(hu.build_request("GET", "/delay/1500/inflight"))
    check(harness.wait_until(lambda: a.requests_for(lambda x: "/inflight" in x["target"]), 5),
          "a slow request from the held client reached the backend", repr(a.stats()))
    got = harness.wait_until(mine("request"), 1)
    check(got, "while its request is in flight the held client is in state request",
          json.dumps(admin_json(ap, "/connections?listener=web"), indent=1))
    busy = [c for c in admin_json(ap, "/connections?cluster=app") if c.get("state") == "busy"]
    check(len(busy) == 1, "and one pooled upstream connection is busy", json.dumps(busy, indent=1))
    check(held.read_response().status == 200, "the slow request completes with 200", "")
    check(harness.wait_until(mine("idle"), 3), "then the held client is idle again", "")
    # a partial request head: no request yet (informational)
    held.send(b"GET /partial HTTP/1.1\r\nHost: x\r\n")
    harness.wait_until(lambda: mine("request")() or mine("idle")(), 1)
    cur = [c.get("state") for c in admin_json(ap, "/connections?listener=web", quiet=True) if c.get("peer") == me]
    info("with half a request head sent the held client's state is %r" % cur)
    held.close()
    check(harness.wait_until(lambda: not [c for c in admin_json(ap, "/connections?listener=web", quiet=True)
                                          if c.get("peer") == me], 3),
          "after the client closes it is no longer listed", "")
    # the other listener has no connection; the full list has both roles
    check(admin_json(ap, "/connections?listener=other") == [], "/connections?listener=other: []", "")
    allc = admin_json(ap, "/connections")
    # pools are per worker: the held client's worker may have opened a third connection
    open_at_backend = a.stats()["active"]
    check(sorted(c.get("role") for c in allc) == ["upstream"] * open_at_backend and open_at_backend in (2, 3),
          "/connections (no filter): the %d upstream connections open at the backend, no client left" %
          open_at_backend, json.dumps(allc, indent=1))
    # unknown cluster
    r = admin_get(ap, "/connections?cluster=nope")
    check(r.status == 404 and r.body == b"no cluster named nope\n",
          "/connections?cluster=nope: 404 'no cluster named nope'", r.describe())
    r = admin_get(ap, "/connections?listener=nope")
    info("/connections?listener=nope: %d %r" % (r.status, r.body[:80]))
    hu.stop_and_check(sl)


def case_per_route_counters():
    """Per route: responses by class and a duration histogram, labelled by the route's name
    (configured, or "<virtual host>/<index>")."""
    b = HttpBackend("a")
    routes = [{"name": "api", "match": {"prefix": "/api"}, "cluster": "app"},
              {"match": {"prefix": "/"}, "cluster": "app"}]
    sl, ap = start([hu.simple_listener(routes)], [hu.cluster("app", [b])])
    try:
        port = sl.port("web")
        sent = {("api", "2xx"): 7, ("all/1", "2xx"): 4, ("all/1", "5xx"): 2}
        for _ in range(7):
            hu.request_once(port, "GET", "/api/x")
        for _ in range(4):
            hu.request_once(port, "GET", "/other")
        for _ in range(2):
            hu.request_once(port, "GET", "/status/503")
        s = wait_scrape(ap, lambda s: s.get("sluice_route_request_duration_seconds_count",
                                            listener="web", route="all/1") == 6)
        for (route, cls), n in sent.items():
            got = s.get("sluice_route_responses_total", listener="web", route=route, **{"class": cls})
            check(got == n, "route %s: %d %s responses counted (%r)" % (route, n, cls, got),
                  s.excerpt("sluice_route_responses_total"))
        check(s.get("sluice_route_request_duration_seconds_count", listener="web", route="api") == 7,
              "route api: 7 in its duration histogram", s.excerpt("sluice_route_request_duration"))
        check(s.get("sluice_route_request_duration_seconds_count", listener="web", route="all/1") == 6,
              "route all/1: 6 in its duration histogram", s.excerpt("sluice_route_request_duration"))
        hu.stop_and_check(sl)
    finally:
        sl.kill()


TCP_CLOSE_REASONS = ("completed", "idle_timeout", "max_duration", "no_endpoint_reachable", "drain_deadline",
                     "downstream_reset", "upstream_reset")


def closed_by_reason(s, listener):
    return {d["reason"]: v for d, v in s.find("sluice_tcp_connections_closed_total", listener=listener)}


def case_tcp_resets_and_refusals_counted():
    """A reset from either side ends a TCP connection under its own reason, and a TCP connection
    whose endpoint refuses every connect counts its attempts, refusals and the give-up."""
    rst = harness.ResetServer()
    hold = harness.HoldServer()
    _, dead_port = harness.free_port_holder()
    dead = "127.0.0.1:%d" % dead_port
    lst = [{"name": name, "address": "127.0.0.1:0", "protocol": "tcp", "cluster": cluster}
           for name, cluster in (("up_rst", "rst"), ("down_rst", "hold"), ("to_dead", "dead"))]
    sl, ap = start(lst, [hu.cluster("rst", [rst]), hu.cluster("hold", [hold]),
                         hu.cluster("dead", [dead], max_connect_attempts=2)], workers=2)

    # the upstream resets: the client sees a reset too
    c = harness.connect(sl.port("up_rst"))
    c.sendall(b"hello")
    check(rst.got_first.wait(5), "the resetting backend got the client's bytes", "")
    how, _ = harness.wait_closed(c, 5)
    check(how == "reset", "the client's connection is reset after the upstream's reset", how)

    # the client resets once its byte reached the backend
    c = harness.connect(sl.port("down_rst"))
    c.sendall(b"x")
    check(harness.wait_until(lambda: hold.received >= 1, 5), "the holding backend got the client's byte", "")
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()

    # every connect refused: two attempts (max_connect_attempts), then the connection closes
    c = harness.connect(sl.port("to_dead"))
    how, _ = harness.wait_closed(c, 5)
    check(how in ("eof", "reset"), "the connection to the dead cluster is closed", how)

    want_closed = {
        "up_rst": dict.fromkeys(TCP_CLOSE_REASONS, 0) | {"upstream_reset": 1},
        "down_rst": dict.fromkeys(TCP_CLOSE_REASONS, 0) | {"downstream_reset": 1},
        "to_dead": dict.fromkeys(TCP_CLOSE_REASONS, 0) | {"no_endpoint_reachable": 1},
    }
    want_cluster = {
        "sluice_cluster_connect_attempts_total": 2, "sluice_cluster_connect_failures_total": 2,
        "sluice_cluster_connect_refused_total": 2, "sluice_cluster_connect_timeouts_total": 0,
        "sluice_cluster_no_endpoint_reachable_total": 1, "sluice_cluster_no_healthy_endpoint_total": 0,
    }

    def cluster_counts(s):
        return {name: s.get(name, cluster="dead") for name in want_cluster}

    s = wait_scrape(ap, lambda s: all(closed_by_reason(s, l) == w for l, w in want_closed.items()) and
                    cluster_counts(s) == want_cluster, 5)
    for listener, want in want_closed.items():
        got = closed_by_reason(s, listener)
        check(got == want, "sluice_tcp_connections_closed_total{listener=%s}: %s" %
              (listener, ", ".join("%s %d" % (k, v) for k, v in want.items() if v)), repr(got))
    got = cluster_counts(s)
    check(got == want_cluster, "cluster dead: 2 attempts, 2 failures, 2 refused, 0 timeouts, 1 gave up",
          repr(got))
    for cluster in ("rst", "hold"):
        check(s.get("sluice_cluster_connect_refused_total", cluster=cluster) == 0 and
              s.get("sluice_cluster_no_endpoint_reachable_total", cluster=cluster) == 0,
              "cluster %s: nothing refused, nothing unreachable" % cluster, s.excerpt('cluster="%s"' % cluster))
    ls = {x["name"]: x for x in admin_json(ap, "/listeners")}
    check(ls["up_rst"].get("upstream_resets") == 1 and ls["down_rst"].get("downstream_resets") == 1 and
          ls["to_dead"].get("no_endpoint_reachable") == 1,
          "/listeners: upstream_resets 1 (up_rst), downstream_resets 1 (down_rst), no_endpoint_reachable 1 "
          "(to_dead)", json.dumps(ls, indent=1))
    rc = sl.stop()
    harness.check_clean_exit(sl, rc)
    line = sl.find_lines("cluster dead: ")
    check(line and line[0].endswith("cluster dead: connect attempts 2, connect failures 2, no healthy endpoint 0, "
                                    "overflow (max_active_requests) 0, retries refused (breaker or budget) 0, "
                                    "connect timeouts 0, connects refused 2, no endpoint reachable 1, ports exhausted 0, "
                                    "quick ACKs 0, delayed-ACK stalls 0"),
          "the exit summary names every cluster counter", "\n".join(line))
    line = sl.find_lines("listener up_rst: ")
    check(line and line[0].endswith("upstream resets 1"), "the exit summary counts the upstream reset",
          "\n".join(line))


def case_idle_close_by_upstream_counted():
    """A pooled connection the upstream closes while it sits idle leaves the pool and is counted."""
    b = HttpBackend("a", idle_close=0.3)
    lst = hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])
    sl, ap = start([lst], [hu.cluster("app", [b])], workers=2)
    ep = b.address
    r = hu.request_once(sl.port("web"), "GET", "/one")
    check(r.status == 200, "a request: 200", r.describe())
    check(harness.wait_until(lambda: b.stats()["idle_closed"] == 1, 5), "the backend closed its idle connection",
          repr(b.stats()))

    def counted(s):
        return s.get("sluice_endpoint_idle_closed_by_upstream_total", cluster="app", endpoint=ep) == 1 and \
            pool_from_metrics(s, "app", ep).get("idle") == 0
    s = wait_scrape(ap, counted, 5)
    check(s.get("sluice_endpoint_idle_closed_by_upstream_total", cluster="app", endpoint=ep) == 1,
          "sluice_endpoint_idle_closed_by_upstream_total == 1", s.excerpt("idle_closed"))
    check(pool_from_metrics(s, "app", ep).get("idle") == 0, "no idle connection left in the pool",
          s.excerpt("endpoint_connections"))
    check(s.get("sluice_endpoint_stale_at_checkout_total", cluster="app", endpoint=ep) == 0 and
          s.get("sluice_endpoint_connects_total", cluster="app", endpoint=ep) == 1,
          "nothing found stale at checkout, one connect", s.excerpt('endpoint="%s"' % ep))
    e = pool_from_json(admin_json(ap, "/clusters"), "app", ep)
    check(e and e["pool"].get("closed_by_upstream_while_idle") == 1 and e["pool"].get("stale_at_checkout") == 0,
          "/clusters: pool.closed_by_upstream_while_idle 1, stale_at_checkout 0", json.dumps(e, indent=1))
    hu.stop_and_check(sl)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_format_and_exact_request_counters, case_tcp_listener_bytes,
                       case_pool_gauges_agree_with_clusters_json, case_connect_failures_counted,
                       case_listeners_and_config_json, case_connections_endpoint,
                       case_kernel_queues_of_a_slow_reader,
                       case_per_route_counters, case_tcp_resets_and_refusals_counted,
                       case_idle_close_by_upstream_counted])

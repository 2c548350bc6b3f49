#!/usr/bin/env python3
"""The admin dashboard in a real browser.

sluice runs an HTTP listener in front of real backends: cluster `app` has a good endpoint
and one whose health checks answer 503, cluster `dead` one endpoint whose port refuses
connections. Headless Chromium (cdp.py: the DevTools protocol over a pipe) loads
http://ADMIN/ and the test asserts what an operator sees:

- the request rate moves while traffic flows, and once it stops the listener's request and
  5xx counts on the page are exactly those of /metrics;
- the endpoint failing its health checks shows "failing health check" with the cause
  /clusters gives (last_check), the good one "healthy";
- a request whose backend waits 900 ms before answering appears among the slowest with its
  waterfall dominated by the upstream's first byte (the widest bar segment as laid out);
- a request to the dead cluster appears among the failed, and a click shows its access-log
  record (status 502, upstream_connect_failure, the endpoint);
- the Drain button without the token is refused (403) and /clusters is unchanged; with the
  token sluice logged, /clusters says draining and the page shows it; Undrain takes it back;
  a POST carrying an Origin header but no token is refused, one from a script (no Origin)
  is not; the Reload button reloads (unchanged);
- on a phone-sized screen nothing overflows sideways, in dark and in light;
- no console error or uncaught exception; screenshots are saved (SLUICE_ARTIFACT_DIR, else
  the temp directory);
- a strict_dns cluster's name (nsd, dns_server.py) is listed with its answer and record TTL,
  fresh; while nsd does not answer the last good answer shows stale, then fresh again;
- /metrics asked for OpenMetrics (Prometheus's Accept header) parses with a strict parser,
  names counters without _total, and the request-duration bucket of a 300 ms request carries
  its exemplar: the trace id of its record; each pool-wait bucket of the cluster carries the
  request that waited longest in it; without the header it is the 0.0.4 text;
- with `dashboard: false` the page and its data are 404 and POSTs ask for no token.

Skipped where Chromium is not installed.
"""

import json
import os
import re
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
import http_util as hu  # noqa: E402
from http_backend import HttpBackend  # noqa: E402
import cdp  # noqa: E402
import dns_server as ds  # noqa: E402

ADMIN_RE = re.compile(r"admin listening on 127\.0\.0\.1:(\d+)")
TOKEN_RE = re.compile(r"admin dashboard on http://127\.0\.0\.1:\d+/ \(its actions need the token ([0-9a-f]{32})\)")
T = 30.0  # generous bound for anything the page shows after its next poll (1 s)
LOAD_REQUESTS = 5000  # at most: the load stops once the page showed a rate
SLOW_MS = 900


def artifact(name):
    d = os.environ.get("SLUICE_ARTIFACT_DIR") or os.path.join(tempfile.gettempdir(), "sluice-artifacts")
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, name)


def start_config(cfg):
    sl = harness.Sluice(harness.to_yaml(hu._quote(cfg)) + "\n")
    admin = int(ADMIN_RE.search(sl.wait_log(ADMIN_RE, 10)).group(1))
    return sl, admin


def start(backends_good, backend_bad, dead_port):
    hc = {"type": "http", "interval": "300ms", "jitter": "0ms", "timeout": "1s", "healthy_threshold": 1,
          "unhealthy_threshold": 1, "http": {"path": "/hc"}}
    clusters = [hu.cluster("app", [backends_good, backend_bad], health_check=hc, panic_threshold=0),
                hu.cluster("dead", ["127.0.0.1:%d" % dead_port])]
    routes = [{"match": {"prefix": "/down"}, "cluster": "dead"}, {"match": {"prefix": "/"}, "cluster": "app"}]
    cfg = {"workers": 2, "log_level": "info", "drain_timeout": "5s", "admin": {"address": "127.0.0.1:0"},
           "listeners": [hu.simple_listener(routes)], "clusters": clusters}
    sl, admin = start_config(cfg)
    line = sl.wait_log(TOKEN_RE, 10)
    check(line is not None, "sluice logs the dashboard's address and its token", sl.stderr_text()[-2000:])
    return sl, admin, TOKEN_RE.search(line).group(1)


def admin_get(port, target):
    r = hu.request_once(port, "GET", target, host="admin", timeout=10)
    check(r.status == 200, "GET %s: 200" % target, "%d %r" % (r.status, r.body[:200]))
    return r.body.decode()


def admin_post(port, target, headers=None):
    return hu.request_once(port, "POST", target, headers=headers or [], host="admin", timeout=10)


def metric(text, name, labels):
    """The value of one sample of the Prometheus text."""
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r'^(\w+)\{([^}]*)\} (\S+)$', line)
        if m and m.group(1) == name and ",".join(sorted(m.group(2).split(","))) == want:
            return float(m.group(3))
    raise harness.CheckFailed_with("no sample %s{%s} in /metrics" % (name, want), text[:3000])


def endpoint_state(port, cluster, address):
    for c in json.loads(admin_get(port, "/clusters")):
        if c["name"] == cluster:
            for e in c["endpoints"]:
                if e["address"] == address:
                    return e
    raise harness.CheckFailed_with("no endpoint %s in cluster %s" % (address, cluster), "")


def js(s):
    return json.dumps(s)


def wait_page(browser, expression, what, timeout=T):
    return cdp.wait_page(browser, expression, what, timeout)


def cell(selector):
    return "(document.querySelector(%s) || {}).textContent" % js(selector)


def case_dashboard():
    good = HttpBackend("good")
    bad = HttpBackend("bad", status=503)
    holder, dead_port = harness.free_port_holder()
    sl, admin, token = start(good.address, bad.address, dead_port)
    browser = cdp.Browser()
    browser.navigate("http://127.0.0.1:%d/" % admin)
    wait_page(browser, "window.sluiceDashboard && window.sluiceDashboard.updates >= 2", "the page draws twice")

    # Traffic: the rate moves while it flows.
    web = sl.port("web")
    done = threading.Event()
    statuses = []

    def load():
        c = hu.Client(web, timeout=10)
        deadline = time.monotonic() + 60
        try:
            for i in range(LOAD_REQUESTS):
                if done.is_set() or time.monotonic() > deadline:
                    break
                statuses.append(c.request("GET", "/load/%d" % i).status)
        finally:
            c.close()

    t = threading.Thread(target=load, daemon=True)
    t.start()
    rps = wait_page(browser, "(() => { const v = parseFloat(%s); return v > 0 ? v : 0; })()"
                    % cell('[data-card="rps"] .value'), "the requests/s card moves while traffic flows")
    info("requests/s shown under load: %s" % rps)
    done.set()
    t.join(60)
    check(not t.is_alive() and statuses and set(statuses) == {200}, "the load got only 200s",
          repr(sorted(set(statuses))))

    slow = hu.request_once(web, "GET", "/delay/%d" % SLOW_MS, timeout=30)
    check(slow.status == 200, "GET /delay/%d: 200" % SLOW_MS, str(slow.status))
    down = hu.request_once(web, "GET", "/down", timeout=30)
    check(down.status == 502, "GET /down (connection refused): 502", str(down.status))

    # The numbers are those of /metrics once traffic stopped.
    text = admin_get(admin, "/metrics")
    requests = int(metric(text, "sluice_http_requests_total", {"listener": "web"}))
    fivexx = int(metric(text, "sluice_http_responses_total", {"listener": "web", "class": "5xx"}))
    check(requests == len(statuses) + 2, "/metrics counts every request", "%d vs %d" % (requests, len(statuses) + 2))
    shown = wait_page(browser, "%s === %s && %s === %s ? [%s, %s] : null" % (
        cell('tr[data-listener="web"] [data-field="requests"]'), js(str(requests)),
        cell('tr[data-listener="web"] [data-field="5xx"]'), js(str(fivexx)),
        cell('tr[data-listener="web"] [data-field="requests"]'), cell('tr[data-listener="web"] [data-field="5xx"]')),
        "the page shows the listener's requests and 5xx exactly as /metrics (%d, %d)" % (requests, fivexx))
    check(shown == [str(requests), str(fivexx)], "listener web: requests %d, 5xx %d as in /metrics" % (requests, fivexx),
          repr(shown))

    # The failing endpoint, with its cause.
    bad_state = endpoint_state(admin, "app", bad.address)
    check(bad_state["health_check_failed"] and bad_state["last_check"] != "",
          "/clusters: the 503 endpoint failed its health check, with a cause", repr(bad_state))
    row = 'div[data-cluster="app"] tr[data-endpoint="%s"] ' % bad.address
    seen = wait_page(browser, "[%s, %s]" % (cell(row + '[data-field="state"]'), cell(row + '[data-field="cause"]')) +
                     ".every(Boolean) ? [%s, %s] : null" % (cell(row + '[data-field="state"]'), cell(row + '[data-field="cause"]')),
                     "the failing endpoint is listed")
    check(seen == ["failing health check", bad_state["last_check"]],
          "the page shows the endpoint failing its health check, cause %r" % bad_state["last_check"], repr(seen))
    good_row = 'div[data-cluster="app"] tr[data-endpoint="%s"] ' % good.address
    check(browser.evaluate(cell(good_row + '[data-field="state"]')) == "healthy", "the good endpoint shows healthy",
          repr(browser.evaluate(cell(good_row + '[data-field="state"]'))))

    # The slow request's waterfall: the upstream's first byte dominates, as laid out.
    slow_row = '#slow .row[data-target="/delay/%d"]' % SLOW_MS
    wait_page(browser, "document.querySelector(%s) !== null" % js(slow_row), "the slow request is listed")
    layout = browser.evaluate("""(() => {
        const row = document.querySelector(%s);
        const spans = [...row.querySelectorAll('.bar span')].map(s => [s.dataset.phase, s.getBoundingClientRect().width]);
        return {dominant: row.dataset.dominant, status: row.dataset.status, spans};
    })()""" % js(slow_row))
    widths = dict(layout["spans"])
    total = sum(widths.values())
    check(layout["dominant"] == "first_byte" and layout["status"] == "200",
          "the slow request: status 200, the upstream's first byte dominates", repr(layout))
    check(total > 0 and widths.get("first_byte", 0) / total > 0.8,
          "its first-byte segment is most of the bar as drawn (> 80 %)", repr(layout["spans"]))

    # The failed request, and its full record on a click.
    failed_row = '#failed .row[data-target="/down"]'
    wait_page(browser, "document.querySelector(%s) !== null" % js(failed_row), "the failed request is listed")
    record = json.loads(browser.evaluate("""(() => {
        document.querySelector(%s).click();
        return document.getElementById('record').open ? document.getElementById('record-text').textContent : '{}';
    })()""" % js(failed_row)))
    browser.evaluate("document.getElementById('record').close(), true")
    check(record.get("status") == 502 and "upstream_connect_failure" in record.get("flags", []) and
          record.get("cluster") == "dead" and record.get("endpoint") == "127.0.0.1:%d" % dead_port and
          record.get("detail", "") != "",
          "a click shows the failed request's record: 502, upstream_connect_failure, its endpoint and cause",
          repr(record))

    # Drain from the page: refused without the token, done with it.
    def click_drain(action, expect):
        sel = 'div[data-cluster="app"] tr[data-endpoint="%s"] button[data-action="%s"]' % (good.address, action)
        browser.evaluate("document.getElementById('message').hidden = true, true")
        wait_page(browser, "document.querySelector(%s) !== null" % js(sel), "the %s button is shown" % action)
        browser.evaluate("document.querySelector(%s).click(), true" % js(sel))
        return wait_page(browser, "(() => { const m = document.getElementById('message'); "
                         "return !m.hidden && m.textContent.startsWith(%s) ? m.textContent : null; })()" % js(expect),
                         "the page says %r" % expect)

    def set_token(value):
        browser.evaluate("(() => { const t = document.getElementById('token'); t.value = %s; "
                         "t.dispatchEvent(new Event('change')); return true; })()" % js(value))

    set_token("")
    said = click_drain("drain", "403")
    check(said.startswith("403: this action needs the X-Sluice-Token header"), "drain without the token: 403", said)
    check(not endpoint_state(admin, "app", good.address)["draining"], "/clusters: not draining after a refused drain")
    set_token(token)
    said = click_drain("drain", "200")
    check(said == "200: endpoint %s of cluster app is draining" % good.address, "drain with the token: 200", said)
    check(endpoint_state(admin, "app", good.address)["draining"], "/clusters: the endpoint drains")
    shown = wait_page(browser, "%s === 'draining'" % cell(good_row + '[data-field="state"]'), "the page shows it draining")
    said = click_drain("undrain", "200")
    check(said == "200: endpoint %s of cluster app takes new requests again" % good.address, "undrain: 200", said)
    check(not endpoint_state(admin, "app", good.address)["draining"], "/clusters: no longer draining")

    drain = "/clusters/app/endpoints/%s/drain" % good.address
    r = admin_post(admin, drain, [("Origin", "http://evil.example")])
    check(r.status == 403, "a browser's POST (Origin) without the token: 403", "%d %r" % (r.status, r.body))
    check(not endpoint_state(admin, "app", good.address)["draining"], "/clusters: the refused POST drained nothing")
    r = admin_post(admin, drain, [("Origin", "http://127.0.0.1:%d" % admin), ("X-Sluice-Token", token)])
    check(r.status == 200, "a browser's POST with the token: 200", "%d %r" % (r.status, r.body))
    r = admin_post(admin, drain.replace("/drain", "/undrain"))
    check(r.status == 200, "a script's POST (no Origin): 200 as before", "%d %r" % (r.status, r.body))
    r = admin_post(admin, "/dashboard/drain?cluster=app&endpoint=" + good.address)
    check(r.status == 403, "the dashboard's own action without the token: 403 even from a script", str(r.status))

    said = wait_page(browser, "(() => { document.getElementById('message').hidden = true; "
                     "document.getElementById('reload').click(); return true; })()", "reload clicked")
    said = wait_page(browser, "(() => { const m = document.getElementById('message'); "
                     "return !m.hidden ? m.textContent : null; })()", "the reload's outcome is shown")
    check(said == "200: reload unchanged", "the Reload button reloads (the file is unchanged)", said)

    browser.screenshot(artifact("dashboard-wide.png"))
    info("screenshot: %s" % artifact("dashboard-wide.png"))
    # The browser reports the refused drain itself (a 403 it fetched); nothing else.
    refused = "network: Failed to load resource: the server responded with a status of 403 (Forbidden) " \
              "http://127.0.0.1:%d/dashboard/drain?cluster=app&endpoint=%s" % (admin, good.address.replace(":", "%3A"))
    errors = [e for e in browser.console_errors if e != refused]
    check(len(browser.console_errors) == 1 and errors == [],
          "no console error or uncaught exception but the refused drain's 403", "\n".join(browser.console_errors))
    browser.close()
    holder.close()
    hu.stop_and_check(sl)


def case_phone_light_and_dark():
    good = HttpBackend("good")
    bad = HttpBackend("bad", status=503)
    holder, dead_port = harness.free_port_holder()
    sl, admin, _ = start(good.address, bad.address, dead_port)
    for i in range(3):
        hu.request_once(sl.port("web"), "GET", "/delay/%d" % (50 * (i + 1)))
    browser = cdp.Browser()
    browser.viewport(375, 740, mobile=True, scale=2)
    for scheme, background in (("dark", "rgb(18, 20, 23)"), ("light", "rgb(247, 247, 245)")):
        browser.color_scheme(scheme)
        browser.navigate("http://127.0.0.1:%d/" % admin)
        wait_page(browser, "window.sluiceDashboard && window.sluiceDashboard.updates >= 2 && "
                  "document.querySelectorAll('#slow .row').length >= 3", "the page draws the slow requests")
        got = browser.evaluate("[document.documentElement.scrollWidth, window.innerWidth, "
                               "getComputedStyle(document.body).backgroundColor]")
        check(got[0] <= got[1], "%s, 375 px wide: nothing overflows sideways" % scheme, repr(got))
        check(got[2] == background, "%s: the page's background is %s" % (scheme, background), repr(got))
        browser.screenshot(artifact("dashboard-phone-%s.png" % scheme))
    check(browser.console_errors == [], "no console error or uncaught exception", "\n".join(browser.console_errors))
    browser.close()
    holder.close()
    hu.stop_and_check(sl)


def case_dns_names_fresh_then_stale():
    backend = HttpBackend("api")
    ns = ds.NsdServer(["api IN A 127.0.0.1"], ttl=2, minimum=2)
    cfg = {"workers": 2, "log_level": "info", "drain_timeout": "5s", "admin": {"address": "127.0.0.1:0"},
           "dns": ds.dns_block(ns.address, stale_ttl="5m"),
           "listeners": [hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])],
           "clusters": [ds.dns_cluster("app", ["api.test.sluice"],
                                       int(backend.address.split(":")[1]))]}
    sl, admin = start_config(cfg)
    browser = cdp.Browser()
    browser.navigate("http://127.0.0.1:%d/" % admin)
    row = 'tr[data-name="api.test.sluice"] td'

    def dns_row():
        return "[...document.querySelectorAll(%s)].map(td => td.textContent)" % js(row)

    shown = wait_page(browser, "(() => { const r = %s; return r.length === 5 && r[4] === 'fresh' ? r : null; })()"
                      % dns_row(), "the DNS table lists api.test.sluice, fresh")
    check(shown[:3] == ["api.test.sluice", "127.0.0.1", "2 s"],
          "api.test.sluice: answer 127.0.0.1, record TTL 2 s, fresh", repr(shown))
    ns.pause()  # refreshes time out: once the TTL ran out, the last good answer is stale
    shown = wait_page(browser, "(() => { const r = %s; return r.length === 5 && r[4] === 'stale' ? r : null; })()"
                      % dns_row(), "the DNS table shows the answer stale while the server does not answer")
    check(shown[:3] == ["api.test.sluice", "127.0.0.1", "2 s"] and shown[4] == "stale",
          "api.test.sluice: the last good answer 127.0.0.1, stale", repr(shown))
    ns.resume()
    wait_page(browser, "(() => { const r = %s; return r.length === 5 && r[4] === 'fresh'; })()" % dns_row(),
              "fresh again once the server answers")
    check(browser.console_errors == [], "no console error or uncaught exception", "\n".join(browser.console_errors))
    browser.close()
    hu.stop_and_check(sl)


def case_openmetrics_with_exemplars():
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
    good = HttpBackend("good")
    cfg = {"workers": 2, "log_level": "info", "admin": {"address": "127.0.0.1:0"},
           "listeners": [hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])],
           "clusters": [hu.cluster("app", [good])]}
    sl, admin = start_config(cfg)
    web = sl.port("web")
    for i in range(5):
        check(hu.request_once(web, "GET", "/fast/%d" % i).status == 200, "GET /fast/%d: 200" % i)
    check(hu.request_once(web, "GET", "/delay/300", timeout=30).status == 200, "GET /delay/300: 200")
    data = json.loads(admin_get(admin, "/dashboard/data"))
    slow = [r for r in data["slow"] if r["record"]["target"] == "/delay/300"]
    check(len(slow) == 1, "the 300 ms request is among the slowest", repr(data["slow"])[:2000])
    trace_id = slow[0]["record"]["traceparent"].split("-")[1]
    seconds = slow[0]["duration_us"] / 1e6

    prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75," \
           "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"  # what Prometheus sends
    r = hu.request_once(admin, "GET", "/metrics", headers=[("Accept", prom)], host="admin", timeout=10)
    ctype = dict((k.lower(), v) for k, v in r.headers).get("content-type")
    check(r.status == 200 and ctype == "application/openmetrics-text; version=1.0.0; charset=utf-8",
          "Accept: OpenMetrics: 200 application/openmetrics-text; version=1.0.0", "%d %s" % (r.status, ctype))
    text = r.body.decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}  # a strict parser: ends in # EOF
    check(families["sluice_http_requests"].type == "counter", "counters are named without _total",
          families["sluice_http_requests"].type)
    requests = [x.value for x in families["sluice_http_requests"].samples
                if x.name == "sluice_http_requests_total" and x.labels == {"listener": "web"}]
    check(requests == [6.0], "sluice_http_requests_total{listener=web} 6", repr(requests))
    with_exemplar = [(x.labels["le"], x.exemplar) for x in families["sluice_http_request_duration_seconds"].samples
                     if x.name.endswith("_bucket") and x.labels["listener"] == "web" and x.exemplar]
    le = [b for b in ("0.25", "0.5", "1.0", "2.5") if seconds <= float(b)][0]
    found = [e for b, e in with_exemplar if b == le]
    check(len(found) == 1 and found[0].labels == {"trace_id": trace_id} and abs(found[0].value - seconds) < 1e-6,
          "the bucket le=%s has the slow request's exemplar: trace_id %s, %.6f s" % (le, trace_id, seconds),
          repr(with_exemplar))
    # The cluster's pool-wait buckets: each exemplar is the request that waited longest (its
    # pool wait, connect and TLS) among those of the bucket.
    les = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    def bucket_of(sec):
        return next((le for le in les if sec <= le + 1e-12), float("inf"))

    waits = {}
    for r in data["slow"]:
        t = r["record"]["timings_us"]
        if t["pool_wait"] >= 0:
            waits[r["record"]["traceparent"].split("-")[1]] = \
                (t["pool_wait"] + max(0, t["upstream_connect"]) + max(0, t["upstream_tls"])) / 1e6
    longest = {}  # bucket -> its longest wait
    for sec in waits.values():
        b = bucket_of(sec)
        longest[b] = max(longest.get(b, -1), sec)
    got = {float(x.labels["le"]): (x.exemplar.labels["trace_id"], x.exemplar.value)
           for x in families["sluice_cluster_pool_wait_seconds"].samples
           if x.name.endswith("_bucket") and x.labels["cluster"] == "app" and x.exemplar}
    # (requests that waited equally long are equally right)
    check(len(waits) == 6 and sorted(got) == sorted(longest) and
          all(abs(waits.get(t, -1) - longest[b]) < 1e-6 and abs(v - longest[b]) < 1e-6 for b, (t, v) in got.items()),
          "each pool-wait bucket of cluster app has as exemplar its longest wait (%d buckets, 6 requests)" % len(got),
          "got %r, longest %r, waits %r" % (got, longest, waits))
    plain = hu.request_once(admin, "GET", "/metrics", host="admin", timeout=10)
    ctype = dict((k.lower(), v) for k, v in plain.headers).get("content-type")
    check(ctype == "text/plain; version=0.0.4; charset=utf-8" and b"# EOF" not in plain.body and
          b" # {" not in plain.body, "without the Accept header: the 0.0.4 text, no exemplars", ctype)
    hu.stop_and_check(sl)


def case_dashboard_off():
    good = HttpBackend("good")
    cfg = {"workers": 1, "log_level": "info", "admin": {"address": "127.0.0.1:0", "dashboard": False},
           "listeners": [hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])],
           "clusters": [hu.cluster("app", [good])]}
    sl, admin = start_config(cfg)
    for target in ("/", "/dashboard/data", "/dashboard/dashboard.js"):
        r = hu.request_once(admin, "GET", target, host="admin")
        check(r.status == 404, "dashboard: false: GET %s is 404" % target, str(r.status))
    check(not sl.find_lines("admin dashboard on"), "dashboard: false: no dashboard line, no token")
    r = admin_post(admin, "/clusters/app/endpoints/%s/drain" % good.address, [("Origin", "http://x.example")])
    check(r.status == 200, "dashboard: false: POSTs are as before (no token asked)", str(r.status))
    hu.stop_and_check(sl)


if __name__ == "__main__":
    harness.run_cases([case_dashboard, case_phone_light_and_dark, case_dns_names_fresh_then_stale,
                       case_openmetrics_with_exemplars, case_dashboard_off])

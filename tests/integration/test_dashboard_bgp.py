#!/usr/bin/env python3
"""The dashboard's BGP panel, in headless Chromium (cdp.py), without a BGP daemon.

sluice has a `bgp:` block whose one peer is 127.0.0.1 on a port that refuses connections
(a bound socket that does not listen), and two prefixes: one follows cluster `up` (a real
backend, healthy), the other cluster `down` (its only endpoint refuses the TCP health
checks). The page's BGP panel shows exactly what GET /bgp says:

- the peer: its address, AS, state "idle" (connect_retry is long, so it stays idle after
  the first refused connect), no uptime, 0 updates sent and its last error
  "connect: connection refused";
- the prefix of `down`: "not announced", with the reason of its last change
  ("not announced: cluster down has 0 of 1 endpoints usable (min 1)"), 0 / 1 usable;
- the prefix of `up`: "announced", with its reason;
- without a `bgp:` block the panel is hidden; no console error.

Skipped where Chromium is not installed.
"""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
import http_util as hu  # noqa: E402
from http_backend import HttpBackend  # noqa: E402
import cdp  # noqa: E402

ADMIN_RE = re.compile(r"admin listening on 127\.0\.0\.1:(\d+)")
T = 30.0
UP, DOWN = "198.51.100.7/32", "198.51.100.8/32"


def start(cfg):
    sl = harness.Sluice(harness.to_yaml(hu._quote(cfg)) + "\n")
    return sl, int(ADMIN_RE.search(sl.wait_log(ADMIN_RE, 10)).group(1))


def row(selector):
    """The text of each cell of the row `selector`, or null."""
    return "(() => { const r = document.querySelector(%s); return r ? [...r.children].map(td => td.textContent) " \
           ": null; })()" % json.dumps(selector)


def case_bgp_panel():
    if not cdp.CHROMIUM:
        raise harness.Skip("chromium is not installed")
    good = HttpBackend("good")
    holder, dead_port = harness.free_port_holder()
    hc = {"type": "tcp", "interval": "200ms", "jitter": "0ms", "timeout": "1s", "healthy_threshold": 1,
          "unhealthy_threshold": 1}
    cfg = {"workers": 1, "log_level": "info", "admin": {"address": "127.0.0.1:0"},
           "listeners": [hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "up"}])],
           "clusters": [hu.cluster("up", [good], health_check=hc),
                        hu.cluster("down", ["127.0.0.1:%d" % dead_port], health_check=hc)],
           "bgp": {"local_as": 65001, "router_id": "192.0.2.1",
                   "peers": [{"address": "127.0.0.1", "port": dead_port, "remote_as": 65000,
                              "connect_retry": "60s"}],
                   "announce": [{"prefix": UP, "when": {"cluster": "up", "min_healthy": 1}},
                                {"prefix": DOWN, "when": {"cluster": "down", "min_healthy": 1}}]}}
    sl, admin = start(cfg)
    peer_name = "127.0.0.1:%d" % dead_port

    def bgp():
        return json.loads(hu.request_once(admin, "GET", "/bgp", host="admin", timeout=10).body)

    check(harness.wait_until(lambda: bgp()["peers"][0]["last_error"] != "", T, 0.1),
          "GET /bgp: the peer's connect failed", repr(bgp()))
    view = bgp()
    peer = view["peers"][0]
    check((peer["address"], peer["state"], peer["last_error"], peer["updates_sent"]) ==
          (peer_name, "idle", "connect: connection refused", 0),
          "GET /bgp: the peer is idle after connect: connection refused", repr(peer))
    # Once the first health checks have answered, each prefix has its state and reason.
    harness.wait_until(lambda: [p["announced"] for p in bgp()["prefixes"]] == [True, False], T, 0.1)
    prefixes = {p["prefix"]: p for p in bgp()["prefixes"]}
    down, up = prefixes[DOWN], prefixes[UP]
    check((down["announced"], down["reason"]) == (False, "not announced: cluster down has 0 of 1 endpoints usable (min 1)"),
          "GET /bgp: %s not announced, with its reason" % DOWN, repr(down))
    check((up["announced"], up["reason"]) == (True, "cluster up has 1 of 1 endpoints usable (min 1)"),
          "GET /bgp: %s announced, with its reason" % UP, repr(up))

    browser = cdp.Browser()
    browser.navigate("http://127.0.0.1:%d/" % admin)
    cdp.wait_page(browser, "window.sluiceDashboard && window.sluiceDashboard.updates >= 2", "the page draws")
    check(browser.evaluate("document.getElementById('bgp-section').hidden") is False, "the BGP panel is shown")
    check(browser.evaluate("document.getElementById('bgp-speaker').textContent") == "AS 65001 · router id 192.0.2.1",
          "the panel names the speaker: AS 65001, router id 192.0.2.1")
    got = browser.evaluate(row('#bgp-peers tr[data-peer="%s"]' % peer_name))
    check(got == [peer_name, "65000", "idle", "–", "0", "0", "connect: connection refused"],
          "the peer's row: %s, AS 65000, idle, no uptime, 0 updates sent and received, connect: connection refused"
          % peer_name, repr(got))
    got = browser.evaluate(row('#bgp-prefixes tr[data-prefix="%s"]' % DOWN))
    check(got == [DOWN, "not announced", "not announced: cluster down has 0 of 1 endpoints usable (min 1)", "cluster down ≥ 1",
                  "0 / 1", "0"],
          "%s: not announced, with the reason of its last change" % DOWN, repr(got))
    got = browser.evaluate(row('#bgp-prefixes tr[data-prefix="%s"]' % UP))
    check(got == [UP, "announced", "cluster up has 1 of 1 endpoints usable (min 1)", "cluster up ≥ 1", "1 / 1",
                  "1"],
          "%s: announced, with its reason" % UP, repr(got))
    d = os.environ.get("SLUICE_ARTIFACT_DIR") or "/tmp/sluice-artifacts"
    os.makedirs(d, exist_ok=True)
    browser.screenshot(os.path.join(d, "dashboard-bgp.png"))
    check(browser.console_errors == [], "no console error or uncaught exception", "\n".join(browser.console_errors))
    browser.close()
    hu.stop_and_check(sl)
    holder.close()


def case_no_bgp_no_panel():
    if not cdp.CHROMIUM:
        raise harness.Skip("chromium is not installed")
    good = HttpBackend("good")
    cfg = {"workers": 1, "log_level": "info", "admin": {"address": "127.0.0.1:0"},
           "listeners": [hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])],
           "clusters": [hu.cluster("app", [good])]}
    sl, admin = start(cfg)
    data = json.loads(hu.request_once(admin, "GET", "/dashboard/data", host="admin", timeout=10).body)
    check("bgp" not in data, "without bgp: the data has no bgp key")
    browser = cdp.Browser()
    browser.navigate("http://127.0.0.1:%d/" % admin)
    cdp.wait_page(browser, "window.sluiceDashboard && window.sluiceDashboard.updates >= 1", "the page draws")
    check(browser.evaluate("document.getElementById('bgp-section').hidden") is True,
          "without bgp: the BGP panel is hidden")
    check(browser.console_errors == [], "no console error or uncaught exception", "\n".join(browser.console_errors))
    browser.close()
    hu.stop_and_check(sl)


if __name__ == "__main__":
    harness.run_cases([case_bgp_panel, case_no_bgp_no_panel])

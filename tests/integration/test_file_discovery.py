#!/usr/bin/env python3
"""Endpoints from a watched JSON file (cluster type: file).

- keys of the file followed: an endpoint added, a weight changed (the split moves), one
  removed; traffic follows each rewrite (in place or by rename), and no request fails;
- bad input: invalid JSON keeps the last set (logged with the file and where, state stale,
  failures counted), entries that are not endpoints are logged and skipped while the rest
  applies; a file missing at start gives 503 until it appears;
- churn far past the endpoint table: test_discovery_churn.py;
- `sluice check`: type file without file.path, or with endpoints, is a located error.
"""

import collections
import json
import os
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
import http_util as hu  # noqa: E402
from test_metrics import admin_json, scrape  # noqa: E402
from test_endpoint_drain import start  # noqa: E402


class AnyLoopback:
    """One HTTP server for every 127.0.0.0/8 address at one port: it answers with the
    address it was reached at, so a test can list thousands of distinct endpoints."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                body = self.connection.getsockname()[0].encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        # Bound to the wildcard only because one socket cannot take all of 127.0.0.0/8;
        # every connection made to it in these tests goes to a loopback address.
        self.server = Server(("0.0.0.0", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        harness.register_cleanup(self.stop)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def write_atomic(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(doc if isinstance(doc, str) else json.dumps(doc))
    os.rename(tmp, path)


def file_cluster(path, **kw):
    c = {"name": "app", "type": "file", "file": {"path": path}, "connect_timeout": "1s"}
    c.update(kw)
    return c


def listed(ap):
    """The cluster's endpoints not removed, as {address: weight}, and its source block."""
    cl = [c for c in admin_json(ap, "/clusters", quiet=True) if c["name"] == "app"][0]
    return {e["address"]: e["weight"] for e in cl["endpoints"] if not e["removed"]}, cl.get("source")


def wait_listed(ap, want, timeout=10):
    last = [None]

    def cond():
        last[0] = listed(ap)[0]
        return last[0] == want
    harness.wait_until(cond, timeout, 0.01)
    return last[0]


def spread(port, n):
    """n requests on one keep-alive connection: Counter of answering addresses."""
    c = hu.Client(port, timeout=10)
    out = collections.Counter()
    try:
        for i in range(n):
            r = c.request("GET", "/s/%d" % i)
            out[r.body.decode() if r.status == 200 else "status %d" % r.status] += 1
    finally:
        c.close()
    return out


def case_file_followed():
    be = AnyLoopback()
    d = tempfile.mkdtemp(prefix="sluice-file-")
    path = os.path.join(d, "app.json")
    a, b, c = ("127.0.10.%d:%d" % (i, be.port) for i in (1, 2, 3))
    write_atomic(path, {"endpoints": [{"address": a, "weight": 1, "zone": "x"}]})
    sl, ap = start([file_cluster(path)], workers=2)
    port = sl.port("web")
    got = wait_listed(ap, {a: 1})
    check(got == {a: 1}, "the file's one endpoint is listed", repr(got))
    _, src = listed(ap)
    check(src == {"type": "file", "target": path, "state": "synced", "endpoints": 1, "updates": 1,
                  "failures": 0, "invalid_entries": 0},
          "/clusters shows the source: file, synced, 1 endpoint, 1 update", repr(src))
    check(spread(port, 20) == {"127.0.10.1": 20}, "20 requests go to 127.0.10.1", "")

    # Added, and a weight: 1 and 3 (written in place, not renamed).
    with open(path, "w") as f:
        json.dump([{"address": a}, {"address": b, "weight": 3}], f)
    got = wait_listed(ap, {a: 1, b: 3})
    check(got == {a: 1, b: 3}, "rewritten in place: both listed, weights 1 and 3", repr(got))
    s = spread(port, 400)
    check(s["127.0.10.1"] + s["127.0.10.2"] == 400 and 70 <= s["127.0.10.1"] <= 130,
          "the split follows the weights 1:3 (%d:%d of 400)" % (s["127.0.10.1"], s["127.0.10.2"]), repr(s))

    # Removed and replaced, by rename.
    mark = sl.line_count()
    write_atomic(path, [{"address": c}])
    got = wait_listed(ap, {c: 1})
    check(got == {c: 1}, "renamed over: only 127.0.10.3 listed", repr(got))
    check(sl.find_lines("cluster app: endpoint %s left the answer" % a, mark),
          "log: endpoint %s left" % a, hu.log_tail(sl))
    check(spread(port, 20) == {"127.0.10.3": 20}, "20 requests go to 127.0.10.3", "")
    hu.stop_and_check(sl)


def case_bad_input_keeps_the_rest():
    be = AnyLoopback()
    d = tempfile.mkdtemp(prefix="sluice-file-")
    path = os.path.join(d, "app.json")
    a, b = ("127.0.11.%d:%d" % (i, be.port) for i in (1, 2))
    # Missing at start: 503 until it appears.
    sl, ap = start([file_cluster(path)], workers=2)
    port = sl.port("web")
    r = hu.request_once(port, "GET", "/x")
    check(r.status == 503, "no file yet: 503", r.describe())
    _, src = listed(ap)
    check(src["state"] == "stale" and src["failures"] == 1 and src["endpoints"] == 0,
          "source stale, 1 failure, 0 endpoints", repr(src))
    check(sl.find_lines("cluster app: %s: No such file or directory; no endpoints until it can be read" % path),
          "log: the file is missing, no endpoints until it can be read", hu.log_tail(sl))

    mark = sl.line_count()
    huge = "9" * 5000
    write_atomic(path, [{"address": a}, {"address": "not-an-address"}, {"weight": 2},
                        {"address": b, "weight": 0}, "text", {"address": a, "weight": 2},
                        {"address": "127.0.11.9:" + huge}])
    got = wait_listed(ap, {a: 1})
    check(got == {a: 1}, "the one good entry applies", repr(got))
    for why in ["endpoints[1]: \"address\" 'not-an-address' is not IP:PORT or [IPv6]:PORT with a port from 1 to 65535",
                "endpoints[2]: no \"address\"",
                "endpoints[3]: \"weight\" is not a whole number from 1 to 1000",
                "endpoints[4]: expected an object such as {\"address\": \"10.0.0.5:8080\"}",
                "endpoints[5]: %s is listed already" % a]:
        line = "cluster app: %s: %s; skipped" % (path, why)
        check(sl.find_lines(line, mark), "log: '%s'" % line, hu.log_tail(sl))
    _, src = listed(ap)
    check(src["state"] == "synced" and src["invalid_entries"] == 6 and src["endpoints"] == 1,
          "source synced, 6 invalid entries counted, 1 endpoint", repr(src))
    check(spread(port, 10) == {"127.0.11.1": 10}, "10 requests go to 127.0.11.1", "")

    mark = sl.line_count()
    broken = '[{"address": "%s"},' % b
    write_atomic(path, broken)
    # The end of input is where nlohmann/json says the value is missing: one past the text.
    line = "cluster app: %s: parse error at line 1, column %d: syntax error while parsing value" % (
        path, len(broken) + 1)
    check(sl.wait_log(line, 5, mark), "log: '%s...'" % line, hu.log_tail(sl))
    _, src = listed(ap)
    check(src["state"] == "stale" and src["failures"] == 2, "invalid JSON: stale, 2 failures", repr(src))
    check(listed(ap)[0] == {a: 1}, "the last good set stays", repr(listed(ap)[0]))
    check(spread(port, 10) == {"127.0.11.1": 10}, "traffic still goes to 127.0.11.1", "")
    s = scrape(ap)
    labels = {"cluster": "app", "source": "file"}
    vals = (s.get("sluice_discovery_source_state", state="stale", **labels),
            s.get("sluice_discovery_source_state", state="synced", **labels),
            s.get("sluice_discovery_failures_total", **labels),
            s.get("sluice_discovery_invalid_entries_total", **labels),
            s.get("sluice_discovery_endpoints", **labels), s.get("sluice_discovery_updates_total", **labels))
    check(vals == (1, 0, 2, 6, 1, 1), "metrics: state stale 1, synced 0, failures 2, invalid 6, endpoints 1, "
          "updates 1", repr(vals))
    write_atomic(path, [{"address": b}])
    got = wait_listed(ap, {b: 1})
    check(got == {b: 1}, "a good file again: followed", repr(got))
    check(listed(ap)[1]["state"] == "synced", "source synced again", repr(listed(ap)[1]))
    hu.stop_and_check(sl)


def case_check_errors():
    d = tempfile.mkdtemp(prefix="sluice-file-")
    cfg = os.path.join(d, "c.yaml")
    for file, want in (("{}", "%s:14:11: clusters[0].file: missing required key 'path'" % cfg),
                       ("{path: /etc/sluice/app.json, batch_window: 1m}",
                        "%s:14:54: clusters[0].file.batch_window: expected a duration from 0s to 10s, got 1m"
                        % cfg)):
        with open(cfg, "w") as f:
            f.write("listeners:\n  - name: web\n    address: 127.0.0.1:0\n    protocol: http\n"
                    "    virtual_hosts:\n      - name: all\n        domains: ['*']\n"
                    "        routes:\n          - match: {prefix: /}\n            cluster: app\n"
                    "clusters:\n  - name: app\n    type: file\n    file: %s\n" % file)
        r = harness.run_sluice_cmd(["check", "-c", cfg])
        check(r.returncode != 0 and want in r.stderr.splitlines(), "check: '%s'" % want, r.stderr)


if __name__ == "__main__":
    harness.run_cases([case_file_followed, case_bad_input_keeps_the_rest, case_check_errors])

#!/usr/bin/env python3
"""Endpoint churn far past the endpoint table (4,096 slots): a `type: file` cluster
(`batch_window: 0s`) whose file lists 48 addresses at a time; each step renames a new file
over it that replaces 40 of them (the oldest) by addresses never listed before, until 100,000
distinct addresses have passed through the cluster; requests go through sluice all along.

The addresses are 127.X.Y.Z on one port, all answered by one server bound to the wildcard
address, which answers with the local address the connection arrived on (getsockname): so
each answer names the endpoint sluice chose.

Checked:
- every step's set is listed by /clusters (lockstep: the next file is written once it is);
- the table (`endpoint_slots` in /clusters, read at every step) stays within 4 x 48 slots;
- every request succeeded, and went to an address that was live at that time, defined
  exactly: the address had been written to the file before the answer came, and its removal
  had not provably reached every worker when the request was sent. "Provably reached" is the
  answer to a /clusters request made after /clusters first listed a set without the address:
  /clusters collects from every worker through its queue, behind the new snapshot. A request
  sent before that may still go to the departed address (just departed, its pool draining);
- no set refused (sluice_health_endpoint_sets_refused_total 0), every departed endpoint's
  slot reclaimed, and the count of distinct addresses reached.

The whole count runs in 60-76 s under AddressSanitizer (the CI's Debug build; 24-30 ms a step
on a busy 2-core machine) and in 9 s with a release build. SLUICE_CHURN_ADDRESSES sets another count;
bench/discovery_churn.py runs the same churn with its own options and prints the samples.
"""

import collections
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
import http_util as hu  # noqa: E402
from test_endpoint_drain import admin_config, ADMIN_RE  # noqa: E402
from test_file_discovery import AnyLoopback, file_cluster, write_atomic  # noqa: E402
from test_metrics import admin_json, scrape  # noqa: E402

LIVE, REPLACED = 48, 40
ADDRESSES = 100000


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Traffic:
    """Requests through sluice on one keep-alive connection, back to back, in a thread of
    their own: each recorded as (sent, answered, status, answering address)."""

    def __init__(self, port):
        self.port = port
        self.records = []
        self.stopping = False
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        c = None
        try:
            c = hu.Client(self.port, timeout=10)
            i = 0
            while not self.stopping:
                t0 = time.monotonic()
                r = c.request("GET", "/churn/%d" % i)
                self.records.append((t0, time.monotonic(), r.status, r.body.decode("latin-1")))
                i += 1
        except Exception as e:  # noqa: BLE001 - reported by the case
            self.error = repr(e)
        finally:
            if c:
                c.close()

    def stop(self):
        self.stopping = True
        self.thread.join(15)


def churn(addresses, sample_every=250, out=print, live_n=LIVE, replaced_n=REPLACED):
    """Runs the churn for `addresses` distinct addresses; returns a dict of figures and the
    problems found (empty: none)."""
    be = AnyLoopback()
    d = tempfile.mkdtemp(prefix="sluice-churn-")
    path = os.path.join(d, "app.json")
    n = [0]

    def fresh():
        i = n[0]
        n[0] += 1
        return "127.%d.%d.%d" % (20 + i // 65536, (i // 256) % 256, i % 256)

    live = [fresh() for _ in range(live_n)]
    written = {ip: 0.0 for ip in live}  # ip -> when the file first listed it
    gone = {}                            # ip -> when its removal provably reached every worker

    def write(ips):
        write_atomic(path, [{"address": "%s:%d" % (ip, be.port)} for ip in ips])

    write(live)
    cluster = file_cluster(path)
    cluster["file"]["batch_window"] = "0s"
    # info, not debug: a line per endpoint added and left is enough (debug adds one per slot).
    sl = harness.Sluice(admin_config([cluster], workers=2), log_level="info")
    admin = int(ADMIN_RE.search(sl.wait_log(ADMIN_RE, 5)).group(1))
    # Fewer lines still while churning: log_level warn through a reload.
    with open(sl.config_path) as f:
        text = f.read()
    with open(sl.config_path, "w") as f:
        f.write(text.replace("log_level: debug", "log_level: warn"))
    r = hu.request_once(admin, "POST", "/reload", body=b"", host="admin", timeout=20)
    problems = [] if r.status == 200 else ["the reload to log_level warn: %s" % r.describe()]

    def clusters():
        cl = [c for c in admin_json(admin, "/clusters", quiet=True) if c["name"] == "app"][0]
        return {e["address"].rsplit(":", 1)[0] for e in cl["endpoints"] if not e["removed"]}, cl["endpoint_slots"]

    want = set(live)
    listed, slots = clusters()
    deadline = time.monotonic() + 10
    while listed != want and time.monotonic() < deadline:
        listed, slots = clusters()
    if listed != want:
        problems.append("the first set is not listed: %r" % sorted(listed)[:5])
    traffic = Traffic(sl.port("web"))
    steps = (addresses - live_n + replaced_n - 1) // replaced_n
    most_slots, unconfirmed, samples = slots, [], []
    t0 = time.monotonic()
    out("step  addresses  seconds  rss_kib  table_slots")
    for step in range(1, steps + 1):
        k = min(replaced_n, addresses - n[0])  # the last step may replace fewer
        left = live[:k]
        live = live[k:] + [fresh() for _ in range(k)]
        now = time.monotonic()
        for ip in live[live_n - k:]:
            written[ip] = now
        write(live)
        want = set(live)
        polled = 0
        while True:
            listed, slots = clusters()
            polled += 1
            # The first answer to a request made after the previous set was listed: the
            # previous step's departed endpoints are out of every worker's balancer.
            if polled == 1:
                for ip in unconfirmed:
                    gone[ip] = time.monotonic()
                unconfirmed = []
            most_slots = max(most_slots, slots)
            if listed == want:
                break
            if time.monotonic() - now > 20:
                problems.append("step %d: the set is not listed within 20 s" % step)
                break
        unconfirmed = left
        if step % sample_every == 0 or step == steps:
            sample = (step, n[0], time.monotonic() - t0, rss_kib(sl.pid), slots)
            samples.append(sample)
            out("%5d  %9d  %7.1f  %7d  %11d" % sample)
        if problems:
            break
    seconds = time.monotonic() - t0
    traffic.stop()
    listed, slots = clusters()
    for ip in unconfirmed:
        gone[ip] = time.monotonic()

    # Every request: answered 200 by an address live when it was sent (as defined above).
    statuses = collections.Counter(st for _, _, st, _ in traffic.records)
    wrong = []
    for sent, answered, status, ip in traffic.records:
        if status != 200:
            continue
        if ip not in written or written[ip] > answered or (ip in gone and sent > gone[ip]):
            wrong.append((round(sent - t0, 3), ip, written.get(ip), gone.get(ip)))
    departed = n[0] - live_n
    s = {}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        s = scrape(admin)
        if s.get("sluice_health_endpoint_slots_reclaimed_total") == departed:
            break
        time.sleep(0.1)
    figures = {
        "addresses": n[0], "steps": steps, "seconds": seconds, "requests": len(traffic.records),
        "statuses": dict(statuses), "wrong": len(wrong), "most_slots": most_slots,
        "refused": s.get("sluice_health_endpoint_sets_refused_total"),
        "reclaimed": s.get("sluice_health_endpoint_slots_reclaimed_total"), "departed": departed,
        "updates": s.get("sluice_discovery_updates_total", cluster="app", source="file"),
        "rss_kib": [x[3] for x in samples], "samples": samples,
    }
    if figures["reclaimed"] != departed:
        cl = [c for c in admin_json(admin, "/clusters", quiet=True) if c["name"] == "app"][0]
        held = [e for e in cl["endpoints"] if e["removed"]]
        problems.append("%d departed endpoints still hold their slots, e.g. %r" % (len(held), held[:3]))
    if traffic.error:
        problems.append("the traffic thread failed: %s" % traffic.error)
    if wrong:
        problems.append("%d requests went to an address not live when sent, e.g. %r" % (len(wrong), wrong[:3]))
    rc = sl.stop()
    if rc != 0:
        problems.append("sluice exited %r" % rc)
    return figures, problems


def case_churn_100000_addresses():
    addresses = int(os.environ.get("SLUICE_CHURN_ADDRESSES", ADDRESSES))
    f, problems = churn(addresses, out=info)
    check(not problems, "the churn ran through", "\n".join(problems))
    check(f["addresses"] == addresses, "%d distinct addresses passed through the cluster, %d at a time, in %d "
          "steps" % (f["addresses"], LIVE, f["steps"]), repr(f["addresses"]))
    check(f["most_slots"] <= 4 * LIVE, "the table never held more than %d slots (at most %d at a step)" % (
        4 * LIVE, f["most_slots"]), repr(f["most_slots"]))
    check(f["refused"] == 0, "no set refused (sluice_health_endpoint_sets_refused_total 0)", repr(f["refused"]))
    check(f["reclaimed"] == f["departed"], "all %d departed endpoints' slots reclaimed" % f["departed"],
          repr(f["reclaimed"]))
    check(f["updates"] is not None and f["updates"] >= f["steps"] + 1,
          "every step's file read and applied (%r updates for %d sets)" % (f["updates"], f["steps"] + 1), "")
    check(f["requests"] > 0 and f["statuses"] == {200: f["requests"]},
          "all %d requests sent during the churn answered 200" % f["requests"], repr(f["statuses"]))
    check(f["wrong"] == 0, "every request went to an address live when it was sent", repr(f["wrong"]))
    info("%d distinct addresses in %.1f s (%.1f ms a step), %d requests, RSS %s KiB" % (
        f["addresses"], f["seconds"], 1000 * f["seconds"] / f["steps"], f["requests"],
        " -> ".join(str(x) for x in f["rss_kib"][:1] + f["rss_kib"][-1:])))


if __name__ == "__main__":
    harness.run_cases([case_churn_100000_addresses])

#!/usr/bin/python3
"""Endpoint churn far past the endpoint table: a `type: file` cluster whose file lists a few
dozen addresses at a time, each rewrite naming only addresses never seen before, until
--addresses distinct ones have passed through (100,000 by default: the churn of a
cluster following pods for hours, compressed into minutes; what matters to the table is the
count, not the clock).

At each step it waits until /clusters lists exactly the file's set, sends a few requests and
checks each was answered by an address listed at that time (the backend answers with the
address it was reached at: one server for all of 127.0.0.0/8). Every --sample steps it
records sluice's RSS (VmRSS), the table's size (sluice_cluster_endpoint_slots) and the
reclaimed-slot counter. At the end: every departed endpoint's slot reclaimed, no set refused,
the table bounded, RSS flat.

    SLUICE_BIN=build/release/sluice bench/discovery_churn.py [--addresses N] [--live N]

Uses the integration tests' helpers (tests/integration); runs on loopback only.
"""

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402
from test_file_discovery import AnyLoopback, file_cluster, spread, wait_listed, write_atomic  # noqa: E402
from test_endpoint_drain import start  # noqa: E402
from test_metrics import scrape  # noqa: E402


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap_ = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap_.add_argument("--addresses", type=int, default=100000, help="distinct addresses in all")
    ap_.add_argument("--live", type=int, default=40, help="addresses listed at a time")
    ap_.add_argument("--requests", type=int, default=4, help="requests per step")
    ap_.add_argument("--sample", type=int, default=250, help="steps between two samples")
    ap_.add_argument("--limit", type=float, default=1800, help="seconds before giving up")
    args = ap_.parse_args()
    if args.addresses > 60 * 65536:
        sys.exit("discovery_churn: at most %d addresses (127.20.0.0 onwards)" % (60 * 65536))

    be = AnyLoopback()
    path = os.path.join(tempfile.mkdtemp(prefix="sluice-churn-"), "app.json")
    n = [0]

    def batch():
        out = {}
        for _ in range(args.live):
            i = n[0]
            n[0] += 1
            out["127.%d.%d.%d:%d" % (20 + i // 65536, (i // 256) % 256, i % 256, be.port)] = 1
        return out

    cur = batch()
    write_atomic(path, [{"address": a} for a in cur])
    sl, admin = start([file_cluster(path)], workers=2)
    port = sl.port("web")
    steps = max(1, args.addresses // args.live - 1)
    t0 = time.monotonic()
    wrong = mismatched = 0
    print("step  addresses  seconds  rss_kib  table_slots  reclaimed")
    for step in range(steps + 1):
        if wait_listed(admin, cur) != cur:
            mismatched += 1
        ips = {a.rsplit(":", 1)[0] for a in cur}
        wrong += sum(v for k, v in spread(port, args.requests).items() if k not in ips)
        if step % args.sample == 0 or step == steps:
            s = scrape(admin)
            print("%5d  %9d  %7.1f  %7d  %11s  %9s" % (
                step, n[0], time.monotonic() - t0, rss_kib(sl.pid),
                s.get("sluice_cluster_endpoint_slots", cluster="app"),
                s.get("sluice_health_endpoint_slots_reclaimed_total")), flush=True)
        if time.monotonic() - t0 > args.limit:
            sys.exit("discovery_churn: gave up after %.0f s at step %d" % (args.limit, step))
        if step < steps:
            cur = batch()
            write_atomic(path, [{"address": a} for a in cur])
    departed = n[0] - args.live
    s = {}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        s = scrape(admin)
        if s.get("sluice_health_endpoint_slots_reclaimed_total") == departed:
            break
        time.sleep(0.1)
    reclaimed = s.get("sluice_health_endpoint_slots_reclaimed_total")
    refused = s.get("sluice_health_endpoint_sets_refused_total")
    slots = s.get("sluice_cluster_endpoint_slots", cluster="app")
    print("distinct addresses %d in %.1f s; sets not listed in time %d; requests to an address not "
          "listed %d; slots reclaimed %s of %d departed; sets refused %s; table %s slots for %d listed"
          % (n[0], time.monotonic() - t0, mismatched, wrong, reclaimed, departed, refused, slots, args.live))
    ok = mismatched == 0 and wrong == 0 and reclaimed == departed and refused == 0
    sl.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Endpoint churn far past the endpoint table: a `type: file` cluster whose file lists --live
addresses at a time, each rewrite replacing --replaced of them by addresses never seen before,
until --addresses distinct ones have passed through (100,000 by default: the churn of a
cluster following pods for hours, compressed into a minute; what matters to the table is the
count, not the clock). Requests go through sluice all along.

The churn itself is tests/integration/test_discovery_churn.py's (the CI runs it with the
defaults): lockstep with /clusters, each request checked against the addresses live when it
was sent, the table's size read at every step. This script runs it with other counts and
prints, every --sample steps, the step, the addresses so far, the seconds, sluice's RSS and
the table's size; at the end the figures.

    SLUICE_BIN=build/release/sluice bench/discovery_churn.py [--addresses N] [--live N] [--replaced N]

Runs on loopback only.
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402
from test_discovery_churn import churn, LIVE, REPLACED  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--addresses", type=int, default=100000, help="distinct addresses in all")
    p.add_argument("--live", type=int, default=LIVE, help="addresses listed at a time")
    p.add_argument("--replaced", type=int, default=REPLACED, help="addresses replaced per step")
    p.add_argument("--sample", type=int, default=250, help="steps between two samples")
    args = p.parse_args()
    if not 0 < args.replaced <= args.live:
        sys.exit("discovery_churn: --replaced must be from 1 to --live")
    if args.addresses > 60 * 65536:
        sys.exit("discovery_churn: at most %d addresses (127.20.0.0 onwards)" % (60 * 65536))
    if not os.environ.get("SLUICE_BIN"):
        sys.exit("discovery_churn: set SLUICE_BIN to the sluice binary")
    try:
        f, problems = churn(args.addresses, args.sample, print, args.live, args.replaced)
    finally:
        harness.cleanup_all()
    print("distinct addresses %d in %.1f s (%.1f ms a step, %d steps); requests %d %r, %d to an address not "
          "live; table at most %d slots for %d listed; slots reclaimed %s of %d departed; sets refused %s; "
          "sets applied %s" % (
              f["addresses"], f["seconds"], 1000 * f["seconds"] / max(1, f["steps"]), f["steps"], f["requests"],
              f["statuses"], f["wrong"], f["most_slots"], args.live, f["reclaimed"], f["departed"], f["refused"],
              f["updates"]))
    for why in problems:
        print("problem: " + why)
    ok = not problems and f["refused"] == 0 and f["reclaimed"] == f["departed"] and \
        f["statuses"] == {200: f["requests"]}
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

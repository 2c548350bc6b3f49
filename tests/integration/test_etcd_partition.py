#!/usr/bin/env python3
"""A network partition between sluice and a running etcd (Debian's etcd-server), made with an
nftables rule that drops every packet to and from etcd's client port, inside a network
namespace the test creates (the script re-runs itself under `unshare -n`). The test's own
etcd calls go through a second client URL (127.0.0.2) the rule leaves alone.

During the partition: the cluster keeps its endpoints and serves; the source turns stale; the
registration's keepalives fail and etcd expires its lease (the key goes). Meanwhile a key is
deleted, one added, one changed, and etcd compacts past the revision sluice saw.

After the partition heals: the watch is made again, hears that its revision was compacted,
reads the prefix again and ends with the right set; the registration hears its lease is gone,
grants a new one and puts its key again.
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
import http_util as hu  # noqa: E402
from test_etcd_discovery import Etcd, PREFIX, etcd_cluster, source  # noqa: E402
from test_etcd_registration import KEY, VALUE, registered, view  # noqa: E402
from test_endpoint_drain import start  # noqa: E402
from test_file_discovery import AnyLoopback, spread, wait_listed  # noqa: E402

TABLE = "sluice_partition"


def nft(script):
    r = subprocess.run(["nft", "-f", "-"], input=script, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=10)
    if r.returncode != 0:
        raise harness.CheckFailed_with("nft -f", script + r.stdout)


def partition(port):
    nft("table inet %s {\n chain out {\n  type filter hook output priority 0; policy accept;\n"
        "  ip daddr 127.0.0.1 tcp dport %d drop\n  ip saddr 127.0.0.1 tcp sport %d drop\n }\n}\n"
        % (TABLE, port, port))


def heal():
    nft("delete table inet %s\n" % TABLE)


def case_partition_keeps_serving_and_catches_up():
    be = AnyLoopback()
    etcd = Etcd(side_door=True)
    a, b, c = ("127.0.38.%d:%d" % (i, be.port) for i in (1, 2, 3))
    etcd.put(PREFIX + "a", {"address": a})
    etcd.put(PREFIX + "b", {"address": b})
    reg = {"endpoints": [etcd.address], "key": KEY, "address": "127.0.40.1:8080", "ttl": "3s"}
    sl, ap = start([etcd_cluster(etcd, watch_timeout="3s")], workers=2, extra={"registration": reg})
    port = sl.port("web")
    check(wait_listed(ap, {a: 1, b: 1}) == {a: 1, b: 1}, "listed: a and b", "")
    check(harness.wait_until(lambda: registered(etcd) is not None and view(ap).get("state") == "registered", 10),
          "registered in etcd", repr(view(ap)))
    lease = registered(etcd)[1]
    mark = sl.line_count()

    partition(etcd.client_port)
    try:
        line = "cluster app: etcd %s: no event or progress notification for 3s; keeping the last 2 endpoints, " \
               "trying again" % etcd.address
        check(sl.wait_log(line, 15, mark), "log: '%s'" % line, hu.log_tail(sl))
        check(harness.wait_until(lambda: source(ap)["state"] == "stale", 5), "the source is stale",
              repr(source(ap)))
        s = spread(port, 20)
        check(s == {"127.0.38.1": 10, "127.0.38.2": 10}, "partitioned: 20 requests still split over a and b",
              repr(dict(s)))
        # Changes sluice cannot see yet, then a compaction past everything it saw.
        etcd.delete(PREFIX + "a")
        etcd.put(PREFIX + "c", {"address": c})
        etcd.compact(etcd.put(PREFIX + "b", {"address": b, "weight": 3}))
        # The registration's keepalives cannot reach etcd: its lease expires, the key goes.
        check(harness.wait_until(lambda: registered(etcd) is None, 15, 0.1),
              "etcd expired the registration's lease %x during the partition" % lease, "")
        # A keepalive whose packets are dropped fails after the 3 s call bound.
        check(harness.wait_until(lambda: view(ap)["failures"] >= 1, 10), "sluice counts failed keepalives",
              repr(view(ap)))
        s = spread(port, 20)
        check(s == {"127.0.38.1": 10, "127.0.38.2": 10}, "still partitioned: still served by a and b",
              repr(dict(s)))
    finally:
        heal()

    got = wait_listed(ap, {b: 3, c: 1}, 20)
    check(got == {b: 3, c: 1}, "healed: b with weight 3 and c, a gone", repr(got))
    check(sl.find_lines("etcd compacted past revision", mark), "log: the resumed watch was compacted; read again",
          hu.log_tail(sl))
    check(harness.wait_until(lambda: source(ap)["state"] == "synced", 10), "the source is synced again",
          repr(source(ap)))
    check(harness.wait_until(lambda: registered(etcd) is not None and registered(etcd)[1] != lease, 20, 0.1),
          "healed: the key is put again under a new lease", repr(registered(etcd)))
    check(registered(etcd)[0] == VALUE and view(ap)["leases_lost"] == 1, "the same value; 1 lease lost",
          repr(view(ap)))
    s = spread(port, 40)
    check(s == {"127.0.38.2": 30, "127.0.38.3": 10}, "40 requests split 3:1 over b and c", repr(dict(s)))
    hu.stop_and_check(sl)
    check(registered(etcd) is None, "SIGTERM: the key is gone", repr(registered(etcd)))


if __name__ == "__main__":
    harness.reexec_in_netns_or_skip()
    harness.run_cases([case_partition_keeps_serving_and_catches_up])

#!/usr/bin/env python3
"""A path that refuses joined sends: in a network namespace whose loopback MTU is 1,500, UDP
GSO segments of 2,000 bytes are refused by the kernel (EINVAL), while single datagrams of that
size still go (fragmented). An echo backend answers each request with a burst of 20 such
datagrams; sluice (GSO on) reads them in batches and tries to send runs of them joined, the
kernel refuses, and sluice sends them one by one: the client receives every datagram, the same
bytes, in order, and nothing is counted dropped."""

import os
import select
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
import udp_util as uu  # noqa: E402

BURST = 20
SIZE = 2000


class BurstEcho:
    """Answers each datagram with BURST datagrams of SIZE bytes, numbered, sent back to back."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        harness.register_cleanup(self.stop)

    def _run(self):
        while not self._stop:
            r, _, _ = select.select([self.sock], [], [], 0.05)
            if not r:
                continue
            data, peer = self.sock.recvfrom(70000)
            for i in range(BURST):
                self.sock.sendto(burst_datagram(data, i), peer)

    def stop(self):
        self._stop = True
        self._t.join(2)
        self.sock.close()


def burst_datagram(request, i):
    head = request[:8] + b" %02d " % i
    return (head * (SIZE // len(head) + 1))[:SIZE]


def case_refused_joins_go_out_one_by_one():
    subprocess.run(["ip", "link", "set", "lo", "mtu", "1500"], check=True)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.setsockopt(17, 103, SIZE)  # UDP_SEGMENT
    except OSError:
        raise harness.Skip("the kernel refuses UDP_SEGMENT")
    finally:
        probe.close()
    echo = BurstEcho()
    listener = {"name": "udp_in", "address": "127.0.0.1:0", "protocol": "udp", "cluster": "b",
                "udp": {"max_datagram_size": 4000}}
    sl, ap = uu.start([listener], [{"name": "b", "endpoints": [{"address": echo.address}]}])
    port = sl.port("udp_in")
    c = uu.client()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    bad = []
    for round_ in range(10):
        request = b"req%05d" % round_
        c.sendto(request, ("127.0.0.1", port))
        got = []
        while len(got) < BURST:
            try:
                got.append(c.recv(70000))
            except socket.timeout:
                break
        if got != [burst_datagram(request, i) for i in range(BURST)]:
            bad.append((round_, [len(g) for g in got]))
    check(not bad, "10 bursts of %d datagrams of %d bytes (over the MTU: GSO refused) came back "
          "whole and in order" % (BURST, SIZE), repr(bad[:2]))
    down = uu.sample(ap, "sluice_udp_datagrams_total", listener="udp_in", direction="downstream")
    gso = uu.sample(ap, "sluice_udp_offload_datagrams_total", listener="udp_in", offload="gso")
    dropped = uu.metrics(ap, "sluice_udp_datagrams_dropped_total")
    check(down == 10 * BURST and gso == 0 and all(v == 0 for v in dropped.values()),
          "%d datagrams to the client, none of them joined, none dropped" % (10 * BURST),
          "down %r gso %r dropped %r" % (down, gso, dropped))
    reads = uu.sample(ap, "sluice_udp_batches_total", listener="udp_in", call="recvmmsg")
    print("info   %d datagrams read in %r recvmmsg calls (fewer calls than datagrams: joins were tried)"
          % (10 + 10 * BURST, reads), flush=True)
    sl.stop()


if __name__ == "__main__":
    harness.reexec_in_netns_or_skip()
    harness.run_cases([case_refused_joins_go_out_one_by_one])

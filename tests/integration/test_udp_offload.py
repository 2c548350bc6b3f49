#!/usr/bin/env python3
"""Datagram boundaries through the UDP proxy with the kernel's segmentation offloads on and
off. Clients send bursts of datagrams of varied sizes (from 0 bytes to max_datagram_size),
part of them joined into one UDP_SEGMENT (GSO) send; the echo backend answers each burst the
same way. sluice reads with UDP_GRO (joined datagrams arrive as one read, cut apart again)
and sends runs of one session joined (GSO): every client must get back exactly the
datagrams it sent, the same sizes, bytes and order. With `udp.gro: false` and `udp.gso:
false` the same traffic passes the same way and the offload counters stay at 0. With
`udp.proxy_protocol` a joined run reaches the backend with the PROXY v2 header in front of
each datagram. A reload turning GRO off applies to the listener's socket and new sessions."""

import json
import os
import select
import socket
import struct
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
import http_util as hu  # noqa: E402
import udp_util as uu  # noqa: E402

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
MAX_DATAGRAM = 1400
ROUNDS = 8
CLIENTS = 3


def kernel_offers_offloads():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(SOL_UDP, UDP_SEGMENT, 1000)
        s.setsockopt(SOL_UDP, UDP_GRO, 1)
        return True
    except OSError:
        return False
    finally:
        s.close()


def runs(datagrams):
    """Splits datagrams into what one GSO send can carry: one size, the last may be
    shorter but not empty; an empty datagram alone."""
    out, i = [], 0
    while i < len(datagrams):
        size = len(datagrams[i])
        j = i + 1
        if size > 0:
            while j < len(datagrams) and j - i < 64 and 0 < len(datagrams[j]) <= size:
                j += 1
                if len(datagrams[j - 1]) < size:
                    break
        out.append(datagrams[i:j])
        i = j
    return out


def send_joined(sock, datagrams, to=None):
    """Sends datagrams in order, each run of two or more as one UDP_SEGMENT send; returns
    how many went joined."""
    joined = 0
    for run in runs(datagrams):
        args = [(SOL_UDP, UDP_SEGMENT, struct.pack("H", len(run[0])))] if len(run) > 1 else []
        if to is None:
            sock.sendmsg(run, args)
        else:
            sock.sendmsg(run, args, 0, to)
        if len(run) > 1:
            joined += len(run)
    return joined


class JoiningEcho:
    """A UDP echo backend that answers what one wake-up brings, in order, with joined sends
    where it can. `joined` counts the datagrams it sent joined. With `strip`, each datagram
    must start with that many bytes of PROXY v2 header (kept in `headers`), echoed without."""

    def __init__(self, strip=0):
        self.strip = strip
        self.headers = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.joined = 0
        self.received = 0
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        harness.register_cleanup(self.stop)

    def _run(self):
        while not self._stop:
            r, _, _ = select.select([self.sock], [], [], 0.05)
            if not r:
                continue
            by_peer = {}
            order = []
            while True:
                try:
                    data, peer = self.sock.recvfrom(70000)
                except BlockingIOError:
                    break
                except OSError:
                    return
                self.received += 1
                if self.strip:
                    self.headers.append(data[:self.strip])
                    data = data[self.strip:]
                if peer not in by_peer:
                    by_peer[peer] = []
                    order.append(peer)
                by_peer[peer].append(data)
            for peer in order:
                try:
                    self.joined += send_joined(self.sock, by_peer[peer], peer)
                except OSError:
                    pass

    def stop(self):
        if self._stop:
            return
        self._stop = True
        self._t.join(2)
        self.sock.close()


def burst(client, round_):
    """31 datagrams of varied sizes, each one's bytes its own: runs of one size with a
    shorter last one, single sizes, 1 byte, an empty one and the largest allowed."""
    sizes = ([100] * 6 + [37] + [MAX_DATAGRAM] * 4 + [1, 0, 999, 5, 5, 5] + [512] * 9 +
             [513, 64, 63, MAX_DATAGRAM, 1200])
    out = []
    for i, size in enumerate(sizes):
        head = b"c%d r%d d%d " % (client, round_, i)
        out.append((head * (size // len(head) + 1))[:size])
    return out


def exchange_bursts(port):
    """Sends ROUNDS bursts from CLIENTS client sockets; returns (mismatches, client-joined
    datagrams, datagrams sent)."""
    clients = [uu.client() for _ in range(CLIENTS)]
    bad, joined, total = [], 0, 0
    for round_ in range(ROUNDS):
        sent = {}
        for c, sock in enumerate(clients):
            sent[c] = burst(c, round_)
            total += len(sent[c])
            joined += send_joined(sock, sent[c], ("127.0.0.1", port))
        for c, sock in enumerate(clients):
            got = []
            while len(got) < len(sent[c]):
                try:
                    got.append(sock.recv(70000))
                except socket.timeout:
                    break
            if got != sent[c]:
                bad.append((c, round_, [len(d) for d in sent[c]], [len(d) for d in got]))
    return bad, joined, total


def offload_counts(ap):
    return (uu.sample(ap, "sluice_udp_offload_datagrams_total", listener="udp_in", offload="gro"),
            uu.sample(ap, "sluice_udp_offload_datagrams_total", listener="udp_in", offload="gso"))


def start(echo, **udp):
    udp.setdefault("max_datagram_size", MAX_DATAGRAM)
    listener = {"name": "udp_in", "address": "127.0.0.1:0", "protocol": "udp",
                "cluster": "backends", "udp": udp}
    return uu.start([listener], [{"name": "backends", "endpoints": [{"address": echo.address}]}],
                    workers=2)


def case_boundaries_kept_with_gro_and_gso():
    if not kernel_offers_offloads():
        raise harness.Skip("the kernel refuses UDP_SEGMENT or UDP_GRO")
    echo = JoiningEcho()
    sl, ap = start(echo)
    check(sl.wait_log("the kernel offers GSO (UDP_SEGMENT): yes, GRO (UDP_GRO): yes", 5) is not None,
          "sluice logs what the kernel offers: GSO yes, GRO yes")
    bad, joined, total = exchange_bursts(sl.port("udp_in"))
    check(not bad, "%d bursts of 31 datagrams (0 to %d bytes, %d of them sent joined by the "
          "clients) came back with the same sizes, bytes and order" % (ROUNDS * CLIENTS, MAX_DATAGRAM, joined),
          repr(bad[:2]))
    up = uu.sample(ap, "sluice_udp_datagrams_total", listener="udp_in", direction="upstream")
    down = uu.sample(ap, "sluice_udp_datagrams_total", listener="udp_in", direction="downstream")
    check(up == total and down == total and echo.received == total,
          "sluice_udp_datagrams_total: %d each way, and the backend received %d" % (total, total),
          "up %r down %r backend %r" % (up, down, echo.received))
    gro, gso = offload_counts(ap)
    # On loopback only a joined send arrives joined: the clients' and the backend's.
    check(gro == joined + echo.joined,
          "offload gro counts the %d datagrams the clients and the backend sent joined" %
          (joined + echo.joined), "gro %r" % gro)
    # Each joined read of a client is one session's run, sent on joined.
    check(gso is not None and gso >= joined,
          "offload gso: at least the %d datagrams that arrived joined from clients went on joined"
          % joined, "gso %r" % gso)
    dropped = uu.metrics(ap, "sluice_udp_datagrams_dropped_total")
    check(all(v == 0 for v in dropped.values()), "no datagram dropped", repr(dropped))


def case_boundaries_kept_with_offloads_off():
    echo = JoiningEcho()
    sl, ap = start(echo, gro=False, gso=False)
    bad, joined, total = exchange_bursts(sl.port("udp_in"))
    check(not bad, "with gro and gso off the %d bursts came back the same (%d datagrams sent "
          "joined by the clients, cut by the kernel)" % (ROUNDS * CLIENTS, joined), repr(bad[:2]))
    up = uu.sample(ap, "sluice_udp_datagrams_total", listener="udp_in", direction="upstream")
    check(up == total, "sluice_udp_datagrams_total{direction=upstream} == %d" % total, repr(up))
    gro, gso = offload_counts(ap)
    check(gro == 0 and gso == 0, "offload counters stay 0 (gro %r, gso %r)" % (gro, gso))


def case_proxy_header_on_each_joined_datagram():
    if not kernel_offers_offloads():
        raise harness.Skip("the kernel refuses UDP_SEGMENT or UDP_GRO")
    echo = JoiningEcho(strip=28)
    sl, ap = start(echo, proxy_protocol=True)
    port = sl.port("udp_in")
    c = uu.client()
    sent = [b"p%02d" % i + b"." * 97 for i in range(12)] + [b"tail"]
    joined = send_joined(c, sent, ("127.0.0.1", port))
    got = []
    while len(got) < len(sent):
        try:
            got.append(c.recv(70000))
        except socket.timeout:
            break
    check(joined == 13 and got == sent, "13 datagrams sent joined came back the same through a PROXY v2 listener")
    me = c.getsockname()[1]
    want = (b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a\x21\x12\x00\x0c" +
            bytes([127, 0, 0, 1, 127, 0, 0, 1]) + struct.pack("!HH", me, port))
    check(len(echo.headers) == 13 and all(h == want for h in echo.headers),
          "the backend got 13 datagrams, each starting with the 28-byte PROXY v2 header naming the client",
          repr(echo.headers[:2]))
    _, gso = offload_counts(ap)
    check(gso is not None and gso >= 13, "they went to the backend joined, a header in each segment (gso %r)" % gso)


def case_reload_turns_gro_off():
    if not kernel_offers_offloads():
        raise harness.Skip("the kernel refuses UDP_SEGMENT or UDP_GRO")
    echo = JoiningEcho()
    sl, ap = start(echo)
    port = sl.port("udp_in")
    c = uu.client()
    sent = [b"x" * 300] * 5 + [b"y" * 20]
    send_joined(c, sent, ("127.0.0.1", port))
    got = [c.recv(70000) for _ in sent]
    check(got == sent, "6 datagrams (5 joined by size and a shorter one) came back")
    before, _ = offload_counts(ap)
    listener = {"name": "udp_in", "address": "127.0.0.1:0", "protocol": "udp",
                "cluster": "backends", "udp": {"gro": False, "max_datagram_size": MAX_DATAGRAM}}
    with open(sl.config_path + ".tmp", "w") as f:
        f.write(uu.config([listener], [{"name": "backends",
                                        "endpoints": [{"address": echo.address}]}], 2))
    os.replace(sl.config_path + ".tmp", sl.config_path)
    r = hu.request_once(ap, "POST", "/reload", body=b"", host="admin", timeout=20)
    reply = json.loads(r.body)
    check(r.status == 200 and reply.get("result") == "applied", "the reload is applied", r.body.decode())
    # A new client socket: a new session, whose upstream socket has GRO off as well.
    c2 = uu.client()
    send_joined(c2, sent, ("127.0.0.1", port))
    got = [c2.recv(70000) for _ in sent]
    check(got == sent, "after the reload the same datagrams came back the same")
    after, _ = offload_counts(ap)
    check(after == before, "no datagram was read joined after the reload (gro %r -> %r)" % (before, after))


if __name__ == "__main__":
    harness.run_cases([case_boundaries_kept_with_gro_and_gso, case_boundaries_kept_with_offloads_off,
                       case_proxy_header_on_each_joined_datagram, case_reload_turns_gro_off])

#!/usr/bin/env python3
"""Binary upgrade with datagram listeners: every UDP socket of a `protocol: udp` listener and
of a `protocol: stun` listener (its RFC 5780 alternate-address sockets too) and the STUN-over-TCP
listening socket go to the new process, which binds none of them again.

- request/response clients that retry keep getting answers across the upgrade (a UDP echo
  through sluice, STUN Binding requests to each of the four STUN addresses, one STUN request
  over TCP after it): every request is answered, and none sent after the new process said ready
  needs a second try;
- the same sockets (inodes) on the same ports before and after, now held by the new pid;
- a UDP session open across the upgrade: its client's next datagram is answered from a new
  upstream socket (the backend sees a new source port); the old process logs '1 sessions end
  with the upgrade' and its exit summary counts it ('ended by a binary upgrade 1');
- workers 2 -> 1: both handed-over UDP sockets are read by the one worker; 30 client sockets
  (spread by the kernel over both) all get answers; likewise 4 -> 2 with 100 client sockets;
- workers 1 -> 2: the second worker binds its own sockets beside the handed ones (the
  alternate port stays); every STUN address answers 20 clients.
"""

import os
import re
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info, wait_until  # noqa: E402
import http_util as hu  # noqa: E402
import test_upgrade as tu  # noqa: E402
import udp_util as uu  # noqa: E402

STUN_ALT_RE = re.compile(r"listener stun_in listening on 127\.0\.0\.1:(\d+) "
                         r"\(stun, udp and tcp, alternate address 127\.0\.0\.2:(\d+)\)")
MAGIC = 0x2112A442


def udp_inodes(ip, port):
    """Inodes of the UDP sockets bound to ip:port."""
    want = "%08X:%04X" % (struct.unpack("<I", socket.inet_aton(ip))[0], port)
    out = set()
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[1] == want:
                out.add(int(parts[9]))
    return out


def binding_request(tid):
    return struct.pack("!HHI", 0x0001, 0, MAGIC) + tid


def is_binding_success(data, tid):
    return (data is not None and len(data) >= 20 and struct.unpack("!H", data[:2])[0] == 0x0101 and
            data[8:20] == tid)


class Asker:
    """A request/response client in a thread: sends a request to each target in turn and waits
    up to `wait` s for its answer, sending it again (at most 10 times) until answered. Counts
    answers, tries that got none, and those of requests first sent after `ready_at`."""

    def __init__(self, name, targets, make, answered, wait=1.0):
        self.name, self.targets, self.make, self.answered, self.wait = name, targets, make, answered, wait
        self.sock = uu.client()
        self.sock.settimeout(0.05)
        self.ok = 0
        self.retries = 0
        self.retries_after_ready = 0
        self.unanswered = []
        self.ready_at = None
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        harness.register_cleanup(self.stop)

    def _ask(self, seq, target):
        payload, tid = self.make(seq)
        sent_at = time.monotonic()
        for attempt in range(10):
            self.sock.sendto(payload, target)
            deadline = time.monotonic() + self.wait
            while time.monotonic() < deadline:
                try:
                    data, peer = self.sock.recvfrom(2048)
                except socket.timeout:
                    continue
                if self.answered(data, tid):
                    return True
            self.retries += 1
            if self.ready_at is not None and sent_at > self.ready_at:
                self.retries_after_ready += 1
        return False

    def _run(self):
        seq = 0
        while not self._stop:
            target = self.targets[seq % len(self.targets)]
            if self._ask(seq, target):
                self.ok += 1
            else:
                self.unanswered.append((seq, target))
            seq += 1
            time.sleep(0.005)

    def stop(self):
        self._stop = True
        self._t.join(15)


def echo_request(seq):
    payload = b"ask %d" % seq
    return payload, payload


def stun_request(seq):
    tid = struct.pack("!III", 7, 7, seq)
    return binding_request(tid), tid


def stun_over_tcp(port):
    tid = b"over-tcp-123"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(binding_request(tid))
        data = b""
        while len(data) < 20:
            chunk = c.recv(2048)
            if not chunk:
                break
            data += chunk
        if len(data) >= 4:
            want = 20 + struct.unpack("!H", data[2:4])[0]
            while len(data) < want:
                chunk = c.recv(2048)
                if not chunk:
                    break
                data += chunk
    return is_binding_success(data, tid)


def setup(echo, workers):
    return tu.config(
        [{"name": "udp_in", "address": "127.0.0.1:0", "protocol": "udp", "cluster": "echo",
          "udp": {"idle_timeout": "1s"}},
         {"name": "stun_in", "address": "127.0.0.1:0", "protocol": "stun",
          "stun": {"alternate_address": "127.0.0.2:0", "tcp": True, "rate_limit": 10000,
                   "rate_burst": 10000}}],
        [{"name": "echo", "endpoints": [{"address": echo.address}]}], workers=workers, drain_timeout="5s")


def sockets_of(udp_port, stun_port, alt_port):
    """Every socket of the two listeners, by what it is."""
    return {
        "udp_in": udp_inodes("127.0.0.1", udp_port),
        "stun_in": udp_inodes("127.0.0.1", stun_port),
        "stun_in alternate port": udp_inodes("127.0.0.1", alt_port),
        "stun_in alternate ip": udp_inodes("127.0.0.2", stun_port),
        "stun_in alternate ip and port": udp_inodes("127.0.0.2", alt_port),
        "stun_in tcp": tu.listen_inodes(stun_port),
    }


def test_datagrams_answered_across_the_upgrade():
    echo = uu.UdpEcho(prefix=b"echo:")
    sl = tu.start_sluice(setup(echo, workers=2))
    gen1 = sl.pid
    ap = tu.admin_port(sl)
    udp_port = sl.port("udp_in")
    m = STUN_ALT_RE.search(sl.wait_log(STUN_ALT_RE, 5) or "")
    check(m is not None, "the stun listener logs its address and alternate address", hu.log_tail(sl, 20))
    stun_port, alt_port = int(m.group(1)), int(m.group(2))
    before = sockets_of(udp_port, stun_port, alt_port)
    check(all(len(v) == 2 for v in before.values()) and
          set().union(*before.values()) <= tu.socket_inodes(gen1),
          "before: pid %d holds 2 sockets (one per worker) of each of the 6 addresses" % gen1, repr(before))

    # A session open before the upgrade.
    held = uu.client()
    check(uu.exchange(held, udp_port, b"before") == b"echo:before", "a UDP session answers before the upgrade")
    peers_before = set(echo.peers)

    stun_targets = [("127.0.0.1", stun_port), ("127.0.0.1", alt_port), ("127.0.0.2", stun_port),
                    ("127.0.0.2", alt_port)]
    askers = [Asker("udp %d" % i, [("127.0.0.1", udp_port)], echo_request,
                    lambda data, p: data == b"echo:" + p) for i in range(3)]
    askers += [Asker("stun %d" % i, stun_targets, stun_request, is_binding_success) for i in range(2)]
    check(wait_until(lambda: all(a.ok >= 20 for a in askers), 30),
          "each of 3 UDP and 2 STUN clients has 20 answers", repr([a.ok for a in askers]))

    mark = sl.line_count()
    status, body = tu.post_upgrade(ap)
    ready_at = time.monotonic()
    for a in askers:
        a.ready_at = ready_at
    gen2 = tu.check_upgraded(status, body, gen1)
    check(sl.find_lines("upgrade: listener udp_in takes over 2 sockets", mark) and
          sl.find_lines("upgrade: listener stun_in takes over 2 sockets with their alternate-address "
                        "sockets and their tcp sockets", mark),
          "the new process logs that it took over the sockets of udp_in and stun_in (alternates, tcp)",
          hu.log_tail(sl, 40))
    at_ready = [a.ok for a in askers]
    check(wait_until(lambda: all(a.ok >= n + 20 for a, n in zip(askers, at_ready)), 30),
          "each client has 20 more answers after the new process said ready",
          repr([a.ok for a in askers]))

    # The session held across the upgrade: its next datagram opens one in the new process.
    check(uu.exchange(held, udp_port, b"after") == b"echo:after",
          "the session open before the upgrade: its next datagram is answered")
    check(len(echo.peers - peers_before) >= 1,
          "from a new upstream socket (the backend sees a source port it had not seen)")
    check(stun_over_tcp(stun_port), "a STUN Binding request over TCP is answered after the upgrade")

    rc = tu.wait_old_exit(sl, 10)
    check(rc == 0, "the old process exits 0 (its UDP sessions end at their idle timeout)",
          "rc %r\n%s" % (rc, hu.log_tail(sl, 40)))
    lines = sl.find_lines(re.compile(r"udp udp_in: \d+ sessions end with the upgrade"), mark)
    check(len(lines) >= 1, "the old process logs 'udp udp_in: N sessions end with the upgrade; their "
          "clients continue in the new process'", hu.log_tail(sl, 60))
    ended = sum(int(re.search(r"udp_in: (\d+) sessions", line).group(1)) for line in lines)
    summary = sl.find_lines(re.compile(r"listener udp_in: sessions \d+"), mark)
    counted = [int(re.search(r"ended by a binary upgrade (\d+)", line).group(1)) for line in summary
               if "ended by a binary upgrade" in line]
    check(counted == [ended] and ended >= 3,
          "its exit summary counts the %d sessions the upgrade ended ('ended by a binary upgrade %d')"
          % (ended, ended), "\n".join(summary))

    at_exit = [a.ok for a in askers]
    check(wait_until(lambda: all(a.ok >= n + 20 for a, n in zip(askers, at_exit)), 30),
          "each client has 20 more answers after the old process exited", repr([a.ok for a in askers]))
    for a in askers:
        a.stop()
    total = sum(a.ok for a in askers)
    info("%d requests answered; tries without an answer: %r" % (total, [a.retries for a in askers]))
    check(all(not a.unanswered for a in askers), "every request was answered (%d)" % total,
          repr([a.unanswered[:3] for a in askers]))
    check(all(a.retries_after_ready == 0 for a in askers),
          "no request sent after the new process said ready needed a second try",
          repr([a.retries_after_ready for a in askers]))
    check(all(a.retries == 0 for a in askers), "no request at all needed a second try",
          repr([a.retries for a in askers]))

    after = sockets_of(udp_port, stun_port, alt_port)
    check(after == before, "the same sockets (inodes) serve all 6 addresses: handed over, none bound again",
          "%r vs %r" % (after, before))
    check(set().union(*after.values()) <= tu.socket_inodes(gen2), "the new pid %d holds them" % gen2)
    tu.stop_pid(gen2, sl)


def fewer_workers_read_every_handed_socket(old, new, flows):
    echo = uu.UdpEcho(prefix=b"echo:")
    sl = tu.start_sluice(setup(echo, workers=old))
    gen1 = sl.pid
    ap = tu.admin_port(sl)
    udp_port = sl.port("udp_in")
    before = udp_inodes("127.0.0.1", udp_port)
    check(len(before) == old, "pid %d has %d UDP sockets on port %d" % (gen1, old, udp_port), repr(before))
    tu.rewrite(sl, setup(echo, workers=new))
    mark = sl.line_count()
    status, body = tu.post_upgrade(ap)
    gen2 = tu.check_upgraded(status, body, gen1)
    check(sl.find_lines("upgrade: listener udp_in takes over %d sockets" % old, mark),
          "the new process (%d workers) takes over all %d sockets" % (new, old), hu.log_tail(sl, 40))
    rc = tu.wait_old_exit(sl, 10)
    check(rc == 0, "the old process exits 0", "rc %r\n%s" % (rc, hu.log_tail(sl, 40)))
    check(udp_inodes("127.0.0.1", udp_port) == before and before <= tu.socket_inodes(gen2),
          "the same %d sockets, now held by pid %d" % (old, gen2), repr(udp_inodes("127.0.0.1", udp_port)))
    # The kernel spreads client addresses over every socket: each is read.
    clients = [uu.client() for _ in range(flows)]
    bad = [i for i, c in enumerate(clients) if uu.exchange(c, udp_port, b"c%d" % i) != b"echo:c%d" % i]
    check(not bad, "%d client sockets, spread over the %d handed sockets, all get answers" % (flows, old),
          repr(bad))
    tu.stop_pid(gen2, sl)


def test_fewer_workers_read_every_handed_socket():
    fewer_workers_read_every_handed_socket(2, 1, 30)


def test_four_workers_to_two_read_every_handed_socket():
    fewer_workers_read_every_handed_socket(4, 2, 100)


def test_more_workers_bind_beside_the_handed_sockets():
    echo = uu.UdpEcho(prefix=b"echo:")
    sl = tu.start_sluice(setup(echo, workers=1))
    gen1 = sl.pid
    ap = tu.admin_port(sl)
    m = STUN_ALT_RE.search(sl.wait_log(STUN_ALT_RE, 5) or "")
    check(m is not None, "the stun listener logs its address and alternate address", hu.log_tail(sl, 20))
    stun_port, alt_port = int(m.group(1)), int(m.group(2))
    before = sockets_of(sl.port("udp_in"), stun_port, alt_port)
    tu.rewrite(sl, setup(echo, workers=2))
    mark = sl.line_count()
    status, body = tu.post_upgrade(ap)
    gen2 = tu.check_upgraded(status, body, gen1)
    check(sl.find_lines("listener stun_in listening on 127.0.0.1:%d (stun, udp and tcp, alternate address "
                        "127.0.0.2:%d)" % (stun_port, alt_port), mark),
          "the new process (2 workers) keeps the alternate port %d" % alt_port, hu.log_tail(sl, 40))
    rc = tu.wait_old_exit(sl, 10)
    check(rc == 0, "the old process exits 0", "rc %r\n%s" % (rc, hu.log_tail(sl, 40)))
    after = sockets_of(sl.port("udp_in"), stun_port, alt_port)
    check(all(before[k] < after[k] and len(after[k]) == 2 for k in before) and
          set().union(*after.values()) <= tu.socket_inodes(gen2),
          "each address has the handed socket and one more bound beside it, all held by pid %d" % gen2,
          "%r vs %r" % (before, after))
    targets = [("127.0.0.1", stun_port), ("127.0.0.1", alt_port), ("127.0.0.2", stun_port),
               ("127.0.0.2", alt_port)]
    bad = []
    for i in range(20):
        c = uu.client()
        for t in targets:
            payload, tid = stun_request(i)
            c.sendto(payload, t)
            try:
                data, _ = c.recvfrom(2048)
            except socket.timeout:
                data = None
            if not is_binding_success(data, tid):
                bad.append((i, t))
    check(not bad, "20 clients get a Binding answer on each of the 4 STUN addresses", repr(bad[:5]))
    tu.stop_pid(gen2, sl)


if __name__ == "__main__":
    hu.use_default_bin()
    tu.become_subreaper()
    import atexit
    atexit.register(tu.kill_all_sluice)
    harness.run_cases([
        test_datagrams_answered_across_the_upgrade,
        test_fewer_workers_read_every_handed_socket,
        test_four_workers_to_two_read_every_handed_socket,
        test_more_workers_bind_beside_the_handed_sockets,
    ])

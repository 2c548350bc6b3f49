#!/usr/bin/env python3
"""Which UDP sessions survive a change, counted (docs/udp.md, "Sessions and workers"):

- the kernel alone: with an unchanged SO_REUSEPORT group no flow changes socket; when a second
  socket joins a group of one, the flows that change socket all go to the new one, and some
  (but not all) of 400 flows do;
- sluice: 40 client sockets through a UDP listener with 2 workers; after a reload with
  nothing changed every flow keeps its session (the same upstream socket, no new session);
- after a binary upgrade every flow's next datagram opens a new session in the new process
  (its sluice_udp_sessions_total counts 40; the backend sees 40 new upstream sockets)."""

import json
import os
import select
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
import http_util as hu  # noqa: E402
import udp_util as uu  # noqa: E402

FLOWS = 40


def reuseport_socket(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.setblocking(False)
    harness.register_cleanup(s.close)
    return s


def which_socket(servers, clients, port):
    """{client index: server index}, 50 clients at a time (no receive buffer overflows)."""
    seen = {}
    for first in range(0, len(clients), 50):
        chunk = range(first, min(first + 50, len(clients)))
        for i in chunk:
            clients[i].sendto(b"%d" % i, ("127.0.0.1", port))
        deadline = time.monotonic() + 5
        while any(i not in seen for i in chunk) and time.monotonic() < deadline:
            r, _, _ = select.select(servers, [], [], 0.1)
            for s in r:
                while True:
                    try:
                        data, _ = s.recvfrom(100)
                    except BlockingIOError:
                        break
                    seen[int(data)] = servers.index(s)
    return seen


def case_kernel_keeps_a_flow_while_the_group_stays():
    first = reuseport_socket(0)
    port = first.getsockname()[1]
    servers = [first, reuseport_socket(port)]
    clients = [uu.client() for _ in range(400)]
    a = which_socket(servers, clients, port)
    b = which_socket(servers, clients, port)
    check(len(a) == 400 and a == b, "an unchanged group of 2 sockets: 0 of 400 flows change socket",
          "%d read, %d moved" % (len(b), sum(1 for i in a if a[i] != b.get(i))))
    one = reuseport_socket(0)
    port = one.getsockname()[1]
    servers = [one]
    before = which_socket(servers, clients, port)
    servers.append(reuseport_socket(port))
    after = which_socket(servers, clients, port)
    moved = [i for i in range(400) if before.get(i) != after.get(i)]
    check(len(before) == 400 and len(after) == 400 and 0 < len(moved) < 400 and
          all(after[i] == 1 for i in moved),
          "a second socket joins: %d of 400 flows change socket, every one to the new socket" % len(moved))


class PortEcho:
    """Answers each datagram with the source port it came from; `peers` counts them."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.peers = set()
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        harness.register_cleanup(self.stop)

    def _run(self):
        while not self._stop:
            r, _, _ = select.select([self.sock], [], [], 0.05)
            if r:
                data, peer = self.sock.recvfrom(2048)
                self.peers.add(peer)
                self.sock.sendto(b"%d" % peer[1], peer)

    def stop(self):
        self._stop = True
        self._t.join(2)
        self.sock.close()


def listener():
    return {"name": "udp_in", "address": "127.0.0.1:0", "protocol": "udp", "cluster": "echo",
            "udp": {"max_sessions_per_source": 0}}


def upstream_ports(clients, port):
    return [uu.exchange(c, port, b"x") for c in clients]


def case_reload_keeps_every_session():
    echo = PortEcho()
    clusters = [{"name": "echo", "endpoints": [{"address": echo.address}]}]
    sl, ap = uu.start([listener()], clusters, workers=2)
    port = sl.port("udp_in")
    clients = [uu.client() for _ in range(FLOWS)]
    before = upstream_ports(clients, port)
    check(None not in before and len(set(before)) == FLOWS, "%d flows, %d upstream sockets" % (FLOWS, FLOWS))
    r = hu.request_once(ap, "POST", "/reload", body=b"", host="admin", timeout=20)
    check(r.status == 200, "a reload with nothing changed is applied", r.body.decode())
    after = upstream_ports(clients, port)
    moved = sum(1 for x, y in zip(before, after) if x != y)
    check(moved == 0 and uu.sample(ap, "sluice_udp_sessions_total", listener="udp_in") == FLOWS,
          "after the reload 0 of %d flows moved: the same upstream sockets, no new session" % FLOWS,
          "moved %d" % moved)
    sl.stop()


def case_upgrade_moves_every_session():
    echo = PortEcho()
    clusters = [{"name": "echo", "endpoints": [{"address": echo.address}]}]
    sl, ap = uu.start([listener()], clusters, workers=2)
    port = sl.port("udp_in")
    clients = [uu.client() for _ in range(FLOWS)]
    before = upstream_ports(clients, port)
    r = hu.request_once(ap, "POST", "/upgrade", body=b"", host="admin", timeout=60)
    reply = json.loads(r.body)
    new_pid = int(reply.get("pid") or 0)
    if new_pid:
        harness.register_cleanup(lambda: stop_pid(new_pid))
    check(r.status == 200 and reply.get("result") == "upgraded", "the upgrade is done", r.body.decode())
    # The old process stops reading at once; its exit is not needed for what follows.
    after = upstream_ports(clients, port)
    moved = sum(1 for x, y in zip(before, after) if x is None or y is None or x != y)
    check(None not in after and moved == FLOWS,
          "after the upgrade %d of %d flows moved (each answered through a new upstream socket)" % (moved, FLOWS))
    sessions = uu.sample(ap, "sluice_udp_sessions_total", listener="udp_in")
    check(sessions == FLOWS and len(echo.peers) == 2 * FLOWS,
          "the new process opened %d sessions; the backend saw %d upstream sockets in all" % (FLOWS, 2 * FLOWS),
          "sessions %r, peers %d" % (sessions, len(echo.peers)))
    sl.stop()


def stop_pid(pid):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(150):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    harness.run_cases([case_kernel_keeps_a_flow_while_the_group_stays, case_reload_keeps_every_session,
                       case_upgrade_moves_every_session])

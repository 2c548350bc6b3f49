#!/usr/bin/env python3
"""How many UDP flows change socket (and so worker) when the set of SO_REUSEPORT sockets on
one address changes: what a changed `workers` count does to sluice's UDP sessions.

Part 1, the kernel alone: W sockets bound with SO_REUSEPORT on 127.0.0.1:PORT, FLOWS client
sockets (one 4-tuple each) send one datagram each; which socket read it is noted. Then the set
changes and every client sends again:
  grow     W' - W sockets are added to the same group (a new process that inherits W sockets
           and binds the rest, or one that binds more beside the old ones);
  shrink   the last W - W' sockets are closed;
  rebuild  all are closed and W' new ones bound (a restart).
A flow "moves" when a socket other than its first one (by bind order) reads its datagram.

Part 2, sluice: a UDP listener with W workers in front of an echo backend that answers with
the source port it saw (the session's upstream socket); FLOWS client sockets exchange one
datagram each, then (a) a reload with nothing changed and each client sends again; (b) a binary upgrade (POST /upgrade) to W' workers, and (c) a restart
with W' workers. A flow whose upstream port changed lost its session (a new one was opened).

Usage: bench/udp_steering.py [--flows N] [--pairs 1:2,2:3,2:4,4:3,4:8] [--sluice PATH]
Runs in a few seconds on loopback; not a benchmark (nothing is timed).
"""

import argparse
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request


def reuseport_socket(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.setblocking(False)
    return s


def which_socket(servers, clients, port):
    """{client index: server index} after each client sends one datagram (100 at a time, read
    before the next 100: no receive buffer overflows)."""
    seen = {}
    poller = select.poll()
    by_fd = {s.fileno(): s for s in servers}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    for first in range(0, len(clients), 100):
        chunk = range(first, min(first + 100, len(clients)))
        for i in chunk:
            clients[i].sendto(b"%d" % i, ("127.0.0.1", port))
        deadline = time.monotonic() + 5
        while any(i not in seen for i in chunk) and time.monotonic() < deadline:
            for fd, _ in poller.poll(100):
                s = by_fd[fd]
                while True:
                    try:
                        data, _ = s.recvfrom(100)
                    except BlockingIOError:
                        break
                    seen[int(data)] = servers.index(s)
    return seen


def kernel_case(w, w2, how, flows):
    probe = reuseport_socket(0)
    port = probe.getsockname()[1]
    servers = [probe] + [reuseport_socket(port) for _ in range(w - 1)]
    clients = []
    for _ in range(flows):
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.bind(("127.0.0.1", 0))
        clients.append(c)
    before = which_socket(servers, clients, port)
    if how == "grow":
        servers += [reuseport_socket(port) for _ in range(w2 - w)]
    elif how == "shrink":
        for s in servers[w2:]:
            s.close()
        servers = servers[:w2]
    else:
        for s in servers:
            s.close()
        servers = [reuseport_socket(port) for _ in range(w2)]
    after = which_socket(servers, clients, port)
    if len(before) != flows or len(after) != flows:
        sys.exit("kernel case %d -> %d %s: %d and %d of %d datagrams read" %
                 (w, w2, how, len(before), len(after), flows))
    moved = sum(1 for i in range(flows) if before[i] != after[i])
    for s in servers + clients:
        s.close()
    return moved


class PortEcho(threading.Thread):
    """Answers each datagram with the source port it came from."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.start()

    def run(self):
        while not self.stop:
            r, _, _ = select.select([self.sock], [], [], 0.1)
            if r:
                data, peer = self.sock.recvfrom(2048)
                self.sock.sendto(b"%d" % peer[1], peer)


def sluice_config(workers, port, admin, backend):
    return json.dumps({
        "workers": workers, "log_level": "info", "drain_timeout": "1s",
        "admin": {"address": "127.0.0.1:%d" % admin},
        "listeners": [{"name": "udp_in", "address": "127.0.0.1:%d" % port, "protocol": "udp",
                       "cluster": "echo", "udp": {"max_sessions_per_source": 0}}],
        "clusters": [{"name": "echo", "endpoints": [{"address": "127.0.0.1:%d" % backend}]}]})


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_sluice(binary, path, log):
    p = subprocess.Popen([binary, "run", "-c", path], stdout=log, stderr=log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with open(log.name) as f:
            if "sluice ready" in f.read():
                return p
        time.sleep(0.05)
    p.kill()
    sys.exit("sluice did not start; see " + log.name)


def upstream_ports(clients, port):
    out = []
    for c in clients:
        c.sendto(b"x", ("127.0.0.1", port))
        try:
            out.append(int(c.recv(100)))
        except socket.timeout:
            out.append(None)
    return out


def post(admin, target):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (admin, target), data=b"", method="POST",
                                 headers={"Host": "admin"})
    try:
        return json.loads(urllib.request.urlopen(req, timeout=60).read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def sluice_case(binary, w, w2, flows):
    """Sessions (of `flows`) whose upstream socket changed across a reload with nothing
    changed, a binary upgrade to W' workers and a restart with W' workers."""
    d = tempfile.mkdtemp(prefix="udp-steering-")
    echo = PortEcho()
    port, admin = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    path = os.path.join(d, "sluice.json")
    log = open(os.path.join(d, "sluice.log"), "w")

    def write(workers):
        with open(path, "w") as f:
            f.write(sluice_config(workers, port, admin, echo.port))

    clients = []
    for _ in range(flows):
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.bind(("127.0.0.1", 0))
        c.settimeout(1)
        clients.append(c)
    moved = lambda a, b: sum(1 for x, y in zip(a, b) if x is None or x != y)  # noqa: E731
    write(w)
    p = start_sluice(binary, path, log)
    first = upstream_ports(clients, port)
    post(admin, "/reload")
    reloaded = moved(first, upstream_ports(clients, port))
    write(w2)
    reply = post(admin, "/upgrade")
    if reply.get("result") == "upgraded":
        p.wait(30)  # the old process drains and exits
        after = upstream_ports(clients, port)
        upgraded = "%d" % moved(first, after)
        lost = sum(1 for x in after if x is None)
        if lost:
            upgraded += " (%d unanswered)" % lost
        os.kill(int(reply["pid"]), signal.SIGTERM)
        for _ in range(200):
            try:
                os.kill(int(reply["pid"]), 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
    else:
        upgraded = "failed: %s" % reply.get("error")
        p.send_signal(signal.SIGTERM)
        p.wait(20)
    write(w)
    p = start_sluice(binary, path, log)
    first = upstream_ports(clients, port)
    p.send_signal(signal.SIGTERM)
    p.wait(20)
    write(w2)
    p = start_sluice(binary, path, log)
    restarted = moved(first, upstream_ports(clients, port))
    p.send_signal(signal.SIGTERM)
    p.wait(20)
    echo.stop = True
    for c in clients:
        c.close()
    shutil.rmtree(d, ignore_errors=True)
    return reloaded, upgraded, restarted


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flows", type=int, default=1000)
    ap.add_argument("--pairs", default="1:2,2:3,2:4,3:2,4:3,4:8,8:4")
    ap.add_argument("--sluice", default=os.environ.get("SLUICE_BIN", ""))
    args = ap.parse_args()
    pairs = [tuple(int(x) for x in p.split(":")) for p in args.pairs.split(",")]
    print("kernel: flows (of %d) that change socket when the SO_REUSEPORT set changes" % args.flows)
    print("%-10s %8s %8s %8s" % ("W -> W'", "grow", "shrink", "rebuild"))
    for w, w2 in pairs:
        grow = kernel_case(w, w2, "grow", args.flows) if w2 > w else None
        shrink = kernel_case(w, w2, "shrink", args.flows) if w2 < w else None
        rebuild = kernel_case(w, w2, "rebuild", args.flows)
        cell = lambda v: "-" if v is None else "%.1f%%" % (100.0 * v / args.flows)  # noqa: E731
        print("%-10s %8s %8s %8s" % ("%d -> %d" % (w, w2), cell(grow), cell(shrink), cell(rebuild)))
    if args.sluice:
        flows = min(args.flows, 200)
        print("\nsluice: sessions (of %d) whose upstream socket changed" % flows)
        print("%-10s %8s %20s %8s" % ("W -> W'", "reload", "upgrade", "restart"))
        for w, w2 in pairs:
            r, u, s = sluice_case(args.sluice, w, w2, flows)
            print("%-10s %8s %20s %8s" % ("%d -> %d" % (w, w2), r, u, s))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Several listeners and clusters, weighted round robin, source address, log format, fd hygiene.

- two listeners, each routed to its own cluster;
- endpoints with weights 1 and 2 get connections in a 1:2 ratio (one worker);
- cluster source_address 127.0.0.2: the backend sees connections from 127.0.0.2;
- every log line has the form `<ISO time> <level> [<thread>] <message>`;
- a listener address already in use: exit non-zero with a message naming it;
- 600 short connections (some to a cluster whose endpoint refuses) leave no socket
  behind (idle splice pipes kept for reuse are bounded).
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (EchoServer, Sluice, TcpServer, check, check_clean_exit, connect, echo_roundtrip, free_port_holder,
                     info, register_cleanup, run_cases, run_sluice_cmd, tcp_config, to_yaml, wait_closed, wait_until)


class NamedServer(TcpServer):
    """Sends its name, then echoes; remembers the peers' addresses."""

    def __init__(self, name, *a, **kw):
        self.name = name.encode()
        self.peers = []
        super().__init__(*a, **kw)

    def handle(self, conn):
        with self._lock:
            self.peers.append(conn.getpeername())
        conn.sendall(self.name + b"\n")
        while True:
            d = conn.recv(65536)
            if not d:
                break
            conn.sendall(d)
        conn.shutdown(socket.SHUT_WR)


def read_line(s, timeout=5):
    s.settimeout(timeout)
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(1)
        if not d:
            break
        buf += d
    return buf.strip()


def test_two_listeners_two_clusters():
    with NamedServer("alpha") as a, NamedServer("beta") as b:
        cfg = to_yaml({
            "workers": 2,
            "drain_timeout": "5s",
            "listeners": [
                {"name": "in_a", "address": "127.0.0.1:0", "protocol": "tcp", "cluster": "ca"},
                {"name": "in_b", "address": "127.0.0.1:0", "protocol": "tcp", "cluster": "cb"},
            ],
            "clusters": [
                {"name": "ca", "endpoints": [{"address": a.address}]},
                {"name": "cb", "endpoints": [{"address": b.address}]},
            ],
        }) + "\n"
        with Sluice(cfg) as sl:
            pa, pb = sl.port("in_a"), sl.port("in_b")
            check(pa != pb, "each listener logs its own port (%d, %d)" % (pa, pb))
            for port, want in ((pa, b"alpha"), (pb, b"beta"), (pa, b"alpha"), (pb, b"beta")):
                s = connect(port)
                got = read_line(s)
                check(got == want and echo_roundtrip(s, b"data"),
                      "listener on port %d reaches %s" % (port, want.decode()), "got %r" % got)
                s.close()
            check_clean_exit(sl, sl.stop())


def test_weighted_round_robin():
    with NamedServer("one") as w1, NamedServer("two") as w2:
        cfg = tcp_config([{"address": w1.address, "weight": 1}, {"address": w2.address, "weight": 2}], workers=1)
        with Sluice(cfg) as sl:
            port = sl.port()
            counts = {b"one": 0, b"two": 0}
            for i in range(30):
                s = connect(port)
                name = read_line(s)
                counts[name] = counts.get(name, 0) + 1
                s.close()
            info("30 connections: weight 1 got %d, weight 2 got %d" % (counts[b"one"], counts[b"two"]))
            check(counts[b"one"] == 10 and counts[b"two"] == 20,
                  "weights 1 and 2 share 30 connections 10:20", repr(counts))
            check_clean_exit(sl, sl.stop())


def test_source_address():
    with NamedServer("src") as srv:
        cfg = tcp_config([srv.address], cluster={"source_address": "127.0.0.2"})
        with Sluice(cfg) as sl:
            for i in range(3):
                s = connect(sl.port())
                check(read_line(s) == b"src", "connection %d proxied" % (i + 1))
                s.close()
            ips = sorted(set(p[0] for p in srv.peers))
            check(ips == ["127.0.0.2"], "backend sees connections from source_address 127.0.0.2", repr(srv.peers))
            ports = set(p[1] for p in srv.peers)
            check(len(ports) == 3, "each upstream connection has its own source port", repr(srv.peers))
            check_clean_exit(sl, sl.stop())


LINE_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})? "
                         r"(debug|info|warn|error) \[[^\]]+\] \S.*$")


def test_log_format():
    with EchoServer() as echo:
        _, dead = free_port_holder()
        cfg = tcp_config([echo.address, "127.0.0.1:%d" % dead], cluster={"max_connect_attempts": 1})
        with Sluice(cfg, log_level="debug") as sl:
            for i in range(4):
                s = connect(sl.port())
                s.sendall(b"x")
                wait_closed(s, 0.2)
                s.close()
            rc = sl.stop()
            bad = [l for l in sl.lines if not LINE_FORMAT.match(l)]
            check(not bad, "all %d log lines read '<ISO time> <level> [<thread>] <message>'" % len(sl.lines),
                  "\n".join(bad[:20]))
            levels = set(LINE_FORMAT.match(l).group(3) for l in sl.lines if LINE_FORMAT.match(l))
            info("levels seen: %s" % " ".join(sorted(levels)))
            check(sl.stdout_lines == [], "nothing on stdout while running", "\n".join(sl.stdout_lines[:10]))
            check_clean_exit(sl, rc)


def test_log_level_filters():
    with EchoServer() as echo:
        with Sluice(tcp_config([echo.address]), log_level="info") as sl:
            for i in range(3):
                s = connect(sl.port())
                echo_roundtrip(s, b"x")
                s.close()
            rc = sl.stop()
            dbg = [l for l in sl.lines if re.match(r"^\S+ debug ", l)]
            check(not dbg, "--log-level info prints no debug lines", "\n".join(dbg[:10]))
            check_clean_exit(sl, rc)


def test_no_fd_leak():
    with EchoServer() as echo:
        _, dead = free_port_holder()
        cfg = to_yaml({
            "workers": 2,
            "drain_timeout": "5s",
            "listeners": [
                {"name": "good", "address": "127.0.0.1:0", "protocol": "tcp", "cluster": "up"},
                {"name": "bad", "address": "127.0.0.1:0", "protocol": "tcp", "cluster": "down"},
            ],
            "clusters": [
                {"name": "up", "endpoints": [{"address": echo.address}]},
                {"name": "down", "endpoints": [{"address": "127.0.0.1:%d" % dead}]},
            ],
        }) + "\n"
        with Sluice(cfg, log_level="info") as sl:
            good, bad = sl.port("good"), sl.port("bad")
            # warm up (lazily created resources such as pipe pools), then take the baseline
            for i in range(4):
                s = connect(good)
                echo_roundtrip(s, b"warm")
                s.close()
            wait_until(lambda: echo.accepted >= 4, 5)
            wait_until(lambda: stable_fds(sl), 5)
            base = fd_kinds(sl)
            info("baseline: %s" % base)
            failures = []

            def worker(k):
                for i in range(100):
                    try:
                        if i % 4 == 3:
                            s = connect(bad)
                            how, _ = wait_closed(s, 5)
                            if how == "timeout":
                                failures.append("conn to refused cluster not closed")
                        else:
                            s = connect(good)
                            if not echo_roundtrip(s, os.urandom(1 + (i * 37) % 5000)):
                                failures.append("echo failed")
                            if i % 3 == 0:
                                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                        s.close()
                    except OSError as e:
                        failures.append(repr(e))

            threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            check(not failures and not any(t.is_alive() for t in threads),
                  "600 short connections (normal, reset by the client, refused upstream) all behave",
                  "\n".join(failures[:10]))
            # sockets must all be closed; idle splice pipes may stay in the workers' pools, but no more
            # than the connections in flight at once could have used (6 clients x 2 directions,
            # with slack for connections sluice had not yet seen closed)
            settled = wait_until(lambda: fd_kinds(sl)["socket"] <= base["socket"] and
                                 fd_kinds(sl)["other"] <= base["other"], 10)
            now = fd_kinds(sl)
            info("fds after: %s (before: %s)" % (now, base))
            check(settled, "sluice's sockets and other fds return to the baseline", fd_listing(sl))
            check(now["pipe"] <= base["pipe"] + 48, "idle pipes kept are bounded (%d pipe fds, %d before)" %
                  (now["pipe"], base["pipe"]), fd_listing(sl))
            check_clean_exit(sl, sl.stop())


def fd_kinds(sl):
    kinds = {"socket": 0, "pipe": 0, "other": 0}
    try:
        for fd in os.listdir("/proc/%d/fd" % sl.pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (sl.pid, fd))
            except OSError:
                continue
            kind = target.split(":", 1)[0]
            kinds[kind if kind in kinds else "other"] += 1
    except OSError:
        pass
    return kinds


def fd_listing(sl):
    try:
        fds = sorted(os.listdir("/proc/%d/fd" % sl.pid), key=int)
        return "\n".join("%s -> %s" % (fd, os.readlink("/proc/%d/fd/%s" % (sl.pid, fd))) for fd in fds)
    except OSError as e:
        return repr(e)


def stable_fds(sl):
    """The fd count once two reads 50 ms apart agree."""
    a = sl.open_fds()
    t0 = time.monotonic()
    wait_until(lambda: time.monotonic() - t0 >= 0.05, 1)
    b = sl.open_fds()
    return b if a == b else None


def test_address_in_use():
    """A listener address that is taken: sluice reports it and exits non-zero instead of running half-bound."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    register_cleanup(taken.close)
    port = taken.getsockname()[1]
    cfg = tcp_config(["127.0.0.1:9"], listener={"address": "127.0.0.1:%d" % port})
    tmp = tempfile.mkdtemp(prefix="sluice-it-")
    register_cleanup(lambda: shutil.rmtree(tmp, ignore_errors=True))
    path = os.path.join(tmp, "inuse.yaml")
    with open(path, "w") as f:
        f.write(cfg)
    try:
        p = run_sluice_cmd(["run", "-c", path], timeout=10)
        rc, err = p.returncode, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, err = None, (e.stderr or b"").decode(errors="replace")
    info("stderr: %s" % (err.strip().splitlines()[-1] if err.strip() else "(empty)"))
    check(rc not in (None, 0), "sluice run exits non-zero when its listener address is in use", "rc=%r\n%s" % (rc, err))
    check("127.0.0.1:%d" % port in err and "sluice ready" not in err,
          "the message names the address and sluice never reports ready", err)
    taken.close()


if __name__ == "__main__":
    run_cases([test_two_listeners_two_clusters, test_weighted_round_robin, test_source_address, test_log_format,
               test_log_level_filters, test_no_fd_leak, test_address_in_use])

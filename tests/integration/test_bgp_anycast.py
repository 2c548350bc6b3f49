#!/usr/bin/env python3
"""Anycast end to end: two sluice instances, each in a network namespace of its own (sites a and
b), own the same address (198.51.100.10 on their loopback) and announce it over TCP-MD5 to
BIRD 2 in a router namespace, which installs both paths into its kernel table as one
multipath route (`merge paths on`; `fib_multipath_hash_policy=1` spreads flows by port).
The test's own namespace is the client, behind the router. Each site's sluice proxies TCP to a
backend in its namespace that names the site first, so every answer says who served it.
- a new connection per request, continuously (bounded count and time): both sites serve;
- long-lived connections are opened to both sites before the stop;
- SIGTERM to one site: once the router's kernel route has lost its next hop (the
  GRACEFUL_SHUTDOWN community made BIRD prefer the other path, before the withdrawal), every
  later connection lands on the other site and none fails; then the path is withdrawn, the
  stopping instance drains and exits 0;
- the long-lived connections to the stopped site are reset when the router rehashes them to
  the other site (which has no such connection): every one of them, and none of those to
  the other site (the known anycast limit, counted and printed).
"""
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BannerServer, Skip, Sluice, check, check_clean_exit, info,  # noqa: E402
                     reexec_in_netns_or_skip, register_cleanup, run_cases, sh, wait_until)
from test_bgp import BIRD_IP, PASSWORD, SLUICE_IP, Bird  # noqa: E402
from test_bgp_ecmp import fib, paths  # noqa: E402

ANYCAST = "198.51.100.10"
PREFIX = ANYCAST + "/32"
PORT = 8080
CLIENT_IP, ROUTER_IP = SLUICE_IP, BIRD_IP  # the veth pair Bird's namespace comes with
SITES = {"a": ("10.0.1.1", "10.0.1.2"), "b": ("10.0.2.1", "10.0.2.2")}  # router's side, site's side
CLONE_NEWNET = 0x40000000
MAX_REQUESTS = 100000

ROUTER_CONF = """
router id {router_ip};
log stderr all;
timeformat protocol iso long ms;
protocol device {{}}
filter gshut {{
  if (65535, 0) ~ bgp_community then bgp_local_pref = 0;
  accept;
}}
{sites}
# Equally good BGP paths go to the kernel as one multipath route.
protocol kernel {{
  ipv4 {{ export all; }};
  merge paths on;
}}
"""

SITE_PROTOCOL = """
protocol bgp site_{name} {{
  local {router} as 65000;
  neighbor {site} as 65001;
  passive on;
  password "{password}";
  hold time 9;
  error wait time 1, 2;
  ipv4 {{ import filter gshut; export none; }};
}}
"""

SITE_CONFIG = """workers: 1
drain_timeout: 4s
admin:
  address: 127.0.0.1:0
listeners:
  - name: tcp_in
    address: {anycast}:{port}
    protocol: tcp
    cluster: api
clusters:
  - name: api
    connect_timeout: 1s
    health_check:
      type: tcp
      interval: 100ms
      timeout: 500ms
      unhealthy_threshold: 1
      healthy_threshold: 1
    endpoints:
      - address: {backend}
bgp:
  local_as: 65001
  router_id: {site}
  hold_down: 1s
  shutdown_delay: 3s
  peers:
    - address: {router}
      local_address: {site}
      remote_as: 65000
      hold_time: 9s
      password: {password}
      connect_retry: 200ms
  announce:
    - prefix: {prefix}
      when: {{cluster: api, min_healthy: 50%}}
"""


class Router(Bird):
    """BIRD in the router namespace: one BGP session per site, ECMP into the kernel table,
    forwarding on, multipath hashed by ports. Bird's veth pair leads to the client (this
    script's namespace)."""

    def __init__(self):
        if not shutil.which("bird") or not shutil.which("birdc"):
            raise Skip("bird2 is not installed (scripts/bootstrap installs it)")
        self.dir = tempfile.mkdtemp(prefix="sluice-anycast-")
        register_cleanup(lambda: shutil.rmtree(self.dir, ignore_errors=True))
        self.sock = os.path.join(self.dir, "bird.ctl")
        self.conf = os.path.join(self.dir, "bird.conf")
        sites = "".join(SITE_PROTOCOL.format(name=n, router=r, site=s, password=PASSWORD)
                        for n, (r, s) in SITES.items())
        with open(self.conf, "w") as f:
            f.write(ROUTER_CONF.format(router_ip=ROUTER_IP, sites=sites))
        self.make_namespace()
        for key, value in (("net.ipv4.ip_forward", "1"), ("net.ipv4.fib_multipath_hash_policy", "1")):
            sh(self.nsenter(["sysctl", "-q", "-w", "%s=%s" % (key, value)]))
        self.proc = None
        self.start()


class Site:
    """A network namespace joined to the router by a veth pair, the anycast address on its
    loopback, a default route back through the router, and a backend that names the site."""

    def __init__(self, name, router):
        self.name = name
        self.router_ip, self.ip = SITES[name]
        self.holder = subprocess.Popen(["unshare", "-n", "--", "sleep", "600"], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        register_cleanup(self._stop_holder)
        ns = "/proc/%d/ns/net" % self.holder.pid
        check(wait_until(lambda: os.readlink(ns) != os.readlink("/proc/self/ns/net"), 10),
              "site %s's network namespace is up" % name)
        outer, inner = "site%s0" % name, "site%s1" % name
        sh(router.nsenter(["ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns",
                           str(self.holder.pid)]))
        sh(router.nsenter(["ip", "addr", "add", self.router_ip + "/24", "dev", outer]))
        sh(router.nsenter(["ip", "link", "set", outer, "up"]))
        for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", PREFIX, "dev", "lo"],
                    ["ip", "addr", "add", self.ip + "/24", "dev", inner], ["ip", "link", "set", inner, "up"],
                    ["ip", "route", "add", "default", "via", self.router_ip]):
            sh(self.nsenter(cmd))
        with self.inside():
            self.backend = BannerServer()
        self.backend.banner = ("site-%s\n" % name).encode()
        self.sluice = None

    def nsenter(self, cmd):
        return ["nsenter", "-t", str(self.holder.pid), "-n", "--"] + cmd

    @contextmanager
    def inside(self):
        """This thread in the site's namespace: sockets made and processes started here are the site's."""
        libc = ctypes.CDLL(None, use_errno=True)
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        there = os.open("/proc/%d/ns/net" % self.holder.pid, os.O_RDONLY)
        try:
            if libc.setns(there, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into site %s" % self.name)
            try:
                yield
            finally:
                if libc.setns(home, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back from site %s" % self.name)
        finally:
            os.close(there)
            os.close(home)

    def start_sluice(self):
        with self.inside():
            self.sluice = Sluice(SITE_CONFIG.format(anycast=ANYCAST, port=PORT, backend=self.backend.address,
                                                    site=self.ip, router=self.router_ip, password=PASSWORD,
                                                    prefix=PREFIX), log_level="info")
        return self.sluice

    def _stop_holder(self):
        if self.holder.poll() is None:
            self.holder.kill()
            self.holder.wait(10)


def read_line(s):
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(64)
        if not chunk:
            break
        data += chunk
    return data


class Client:
    """A new connection per request to the anycast address, one after another, until stopped
    (or MAX_REQUESTS, or the time limit): each sends a request and reads the whole answer,
    which names the site that served it. Records (start, end, site or None, error)."""

    def __init__(self, limit_s):
        self.results = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + limit_s
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        register_cleanup(self.stop)

    def _one(self, n):
        body = b"request-%d" % n
        s = socket.create_connection((ANYCAST, PORT), timeout=5)
        try:
            s.sendall(body)
            s.shutdown(socket.SHUT_WR)
            answer = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
        finally:
            s.close()
        site, sep, echoed = answer.partition(b"\n")
        if not sep or echoed != body or not site.startswith(b"site-"):
            raise ValueError("unexpected answer %r" % answer[:100])
        return site.decode()[len("site-"):]

    def _run(self):
        n = 0
        while not self._stop.is_set() and n < MAX_REQUESTS and time.monotonic() < self._deadline:
            start = time.monotonic()
            try:
                site, error = self._one(n), None
            except (OSError, ValueError) as e:
                site, error = None, repr(e)
            with self._lock:
                self.results.append((start, time.monotonic(), site, error))
            n += 1

    def snapshot(self):
        with self._lock:
            return list(self.results)

    def served(self, site):
        return sum(1 for r in self.snapshot() if r[2] == site)

    def completed_after(self, t):
        return sum(1 for r in self.snapshot() if r[0] > t)

    def stop(self):
        self._stop.set()
        self._thread.join(20)


def open_long_lived():
    """Long-lived connections until each site holds at least 3 (at most 64 tries): {site: [socket]}."""
    conns = {"a": [], "b": []}
    for _ in range(64):
        if min(len(v) for v in conns.values()) >= 3:
            break
        s = socket.create_connection((ANYCAST, PORT), timeout=5)
        register_cleanup(s.close)
        line = read_line(s)
        check(line in (b"site-a\n", b"site-b\n"), "a long-lived connection is greeted by its site", repr(line))
        conns[line.decode()[len("site-"):-1]].append(s)
    return conns


def probe(s, payload=b"still there?"):
    """'echo' when the connection still answers, else what ended it."""
    try:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(len(payload) - len(got))
            if not chunk:
                return "closed"
            got += chunk
        return "echo" if got == payload else "garbled"
    except ConnectionResetError:
        return "reset"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return repr(e)


def case_anycast_moves_new_flows_and_resets_long_lived_ones():
    router = Router()
    sh(["ip", "route", "add", PREFIX, "via", ROUTER_IP])
    # The client opens many short connections: reuse TIME_WAIT ports, widen the range.
    for path, value in (("/proc/sys/net/ipv4/tcp_tw_reuse", "1"),
                        ("/proc/sys/net/ipv4/ip_local_port_range", "1024 65000")):
        with open(path, "w") as f:
            f.write(value)
    sites = {n: Site(n, router) for n in SITES}
    for site in sites.values():
        site.start_sluice()
    hops = sorted(s.ip for s in sites.values())
    both = wait_until(lambda: (lambda p: p if len(p) == 2 else None)(paths(router, PREFIX)), 30)
    check(both is not None and {k: v[1] for k, v in both.items()} == {"site_" + n: s.ip for n, s in sites.items()},
          "the router holds both sites' paths, each with its site's next hop",
          repr(paths(router, PREFIX)) + "\n" + router.cli("show protocols all").stdout)
    check(wait_until(lambda: fib(router, PREFIX) == hops, 20),
          "the router's kernel route has both next hops %s" % hops, repr(fib(router, PREFIX)))

    client = Client(limit_s=120)
    check(wait_until(lambda: min(client.served(n) for n in SITES) >= 20, 30),
          "new connections spread over both sites before the stop (20 each at least)",
          repr({n: client.served(n) for n in SITES}))
    check(all(r[3] is None for r in client.snapshot()), "no request fails before the stop",
          repr([r for r in client.snapshot() if r[3]][:5]))
    info("before the stop: site a served %d requests, site b %d" % (client.served("a"), client.served("b")))
    long_lived = open_long_lived()
    check(min(len(v) for v in long_lived.values()) >= 3, "long-lived connections to both sites",
          repr({k: len(v) for k, v in long_lived.items()}))

    # Stop the site BIRD prefers: its best path visibly moves.
    best = [k for k, v in paths(router, PREFIX).items() if v[0]]
    check(len(best) == 1, "the router has one best path", repr(paths(router, PREFIX)))
    gone = best[0][len("site_"):]
    kept = "b" if gone == "a" else "a"
    stopping, staying = sites[gone], sites[kept]
    info("stopping site %s; site %s stays" % (gone, kept))
    stopping.sluice.signal(signal.SIGTERM)
    check(wait_until(lambda: fib(router, PREFIX) == [staying.ip], 10),
          "the router's kernel route keeps only site %s's next hop" % kept, repr(fib(router, PREFIX)))
    moved_at = time.monotonic()
    check(not stopping.sluice.find_lines("sluice draining: stopped accepting"),
          "the stopping site still accepts when the route moves", stopping.sluice.stderr_text()[-2000:])
    withdrawn = wait_until(lambda: list(paths(router, PREFIX)) == ["site_" + kept], 20)
    withdrawn_at = time.monotonic()
    check(withdrawn, "then site %s's path is withdrawn" % gone, repr(paths(router, PREFIX)))

    # The rehash: the stopped site's long-lived flows now reach the other site, which resets them.
    outcomes = {n: [probe(s) for s in conns] for n, conns in long_lived.items()}
    reset = outcomes[gone].count("reset")
    info("long-lived connections to the stopped site reset by the rehash: %d of %d (to the other site: %d of %d)"
         % (reset, len(outcomes[gone]), outcomes[kept].count("reset"), len(outcomes[kept])))
    check(outcomes[gone] == ["reset"] * len(outcomes[gone]),
          "every long-lived connection to the stopped site is reset once the router rehashes it",
          repr(outcomes))
    check(outcomes[kept] == ["echo"] * len(outcomes[kept]),
          "every long-lived connection to the other site carries on", repr(outcomes))

    check(stopping.sluice.wait_log("sluice draining: stopped accepting", 20),
          "the stopped site drains after its withdrawal", stopping.sluice.stderr_text()[-2000:])
    check_clean_exit(stopping.sluice, stopping.sluice.wait_exit(30))
    exited_at = time.monotonic()
    check(wait_until(lambda: client.completed_after(exited_at) >= 100, 30),
          "requests go on after the stopped site exited", "%d" % client.completed_after(exited_at))
    client.stop()

    results = client.snapshot()
    later = [r for r in results if r[0] > moved_at]
    failed_later = [r for r in later if r[3] is not None]
    wrong_site = [r for r in later if r[2] not in (None, kept)]
    failed_before = [r[3] for r in results if r[0] <= moved_at and r[3]]
    info("%d requests: %d before the route moved (%d failed: %s), %d after it (%d after the withdrawal), "
         "%d of those failed, %d served by site %s"
         % (len(results), len(results) - len(later), len(failed_before), "; ".join(failed_before[:3]) or "-",
            len(later), sum(1 for r in results if r[0] > withdrawn_at), len(failed_later), len(wrong_site), gone))
    check(len(later) >= 100, "requests started after the route moved", "%d" % len(later))
    check(failed_later == [], "no request started after the route moved fails", repr(failed_later[:5]))
    check(wrong_site == [], "every request started after the route moved lands on site %s" % kept,
          repr(wrong_site[:5]))
    check(all(probe(s) == "echo" for s in long_lived[kept]), "the other site's long-lived connections still echo")
    check_clean_exit(staying.sluice, staying.sluice.stop(30))


if __name__ == "__main__":
    reexec_in_netns_or_skip()
    run_cases([case_anycast_moves_new_flows_and_resets_long_lived_ones])

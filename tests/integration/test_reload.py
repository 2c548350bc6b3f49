#!/usr/bin/env python3
"""Configuration reload in place (`POST /reload` on the admin address), traffic across it.

- routes and endpoints change under load: configs A and B alternate 100 times
  (SLUICE_RELOAD_STORM) after 30 warm-up reloads (a route's cluster, a new prefix, a second
  endpoint, a second listener) while keep-alive and new-connection clients send requests to
  the listener that stays: no failed request, each answer from A's or B's routing; the
  second listener serves under B and refuses under A; afterwards the same descriptors as
  before (by kind), RSS within 10 %, the generation and sluice_config_reloads_total count
  every reload;
- a TCP tunnel and a download fed piece by piece by the test, both opened before 10 reloads
  (one of them changes the TCP listener's idle_timeout): the tunnel echoes, the download
  arrives whole, new tunnels get the new idle_timeout while the old one keeps its own;
- a listener added by a reload serves; a removed one (and its cluster) refuses new
  connections at once while a request in flight on it completes; a listener moved to
  another address; a removed cluster added back; the changes listed are those of
  `sluice check --diff`;
- an HTTP/2 connection: new streams follow the new routes, a held stream completes;
- a TLS listener's certificate changed: new handshakes get it, older connections go on;
- a tunnel on a removed TCP listener is closed at drain_timeout, as the reply says;
- a listener turned from HTTP to TCP and back, a TCP listener's cluster changed: new
  connections follow, open tunnels stay where they were;
- a backlog change does what the reply lists (the same sockets, the new backlog in ss);
- a listener on a fixed port re-bound (backlog changed) under load, and one removed and
  re-added: sluice keeps running, no accepted connection fails.

Each case ends with SIGTERM: exit 0 and no sanitizer report. What a reload keeps and
reports (cluster state, invalid files, settings only a restart changes, coalescing, dry
run) is in test_reload_state.py, which imports the helpers here.
"""

import collections
import hashlib
import json
import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info, soft_check  # noqa: E402
from http_backend import (HttpBackend, PeerClosed, SockReader, header_values, parse_head,  # noqa: E402
                          pattern_slice)
import http_util as hu  # noqa: E402

# Reloads in the storm of case 1 (even: it ends on config A).
STORM = 2 * (hu.env_number("SLUICE_RELOAD_STORM", 100) // 2)
WARM = 30
ADMIN_RE = re.compile(r"admin listening on 127\.0\.0\.1:(\d+)")
METRIC_RE = re.compile(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", re.M)


# --------------------------------------------------------------------------
# helpers


def make_config(listeners, clusters, workers=2, log_level=None, admin="127.0.0.1:0", extra=None,
                drain_timeout="5s"):
    cfg = {"workers": workers, "drain_timeout": drain_timeout, "admin": {"address": admin}}
    if log_level:
        cfg["log_level"] = log_level
    cfg["listeners"] = listeners
    cfg["clusters"] = clusters
    cfg.update(extra or {})
    return harness.to_yaml(hu._quote(cfg)) + "\n"


def route(prefix, cluster, **kw):
    r = {"match": {"prefix": prefix}, "cluster": cluster}
    r.update(kw)
    return r


def http_listener(name, routes, **kw):
    return hu.simple_listener(routes, name=name, **kw)


def web(cluster, spare):
    """Listener web: / to `cluster`, /spare to `spare` (so that no cluster is unused)."""
    return http_listener("web", [route("/spare", spare), route("/", cluster)])


def tcp_listener(name, cluster, **kw):
    lst = {"name": name, "address": "127.0.0.1:0", "protocol": "tcp", "cluster": cluster}
    lst.update(kw)
    return lst


def parse_metrics(text):
    return {k: float(v) for k, v in METRIC_RE.findall(text)}


class Reloadable:
    """A running sluice with an admin listener, whose configuration file the test rewrites."""

    def __init__(self, text, **kw):
        self.sl = harness.Sluice(text, **kw)
        self.text = text
        line = self.sl.wait_log(ADMIN_RE, 10)
        if not line:
            raise harness.CheckFailed_with("no 'admin listening on 127.0.0.1:PORT' line", self.sl.stderr_text())
        self.admin = int(ADMIN_RE.search(line).group(1))
        self.path = self.sl.config_path

    def write(self, text):
        """Replaces the file in one step (a reload never reads half of it)."""
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.path)
        self.text = text

    def admin_request(self, method, target, timeout=20):
        return hu.request_once(self.admin, method, target, body=b"" if method == "POST" else None,
                               host="admin", timeout=timeout)

    def reload(self, dry_run=False):
        """POST /reload; returns (status, reply as a dict)."""
        r = self.admin_request("POST", "/reload?dry_run=1" if dry_run else "/reload")
        try:
            return r.status, json.loads(r.body)
        except ValueError:
            return r.status, {"body": r.body.decode("latin-1")}

    def apply(self, text, what):
        """Writes text, reloads, and checks that it was applied; returns the reply."""
        self.write(text)
        status, reply = self.reload()
        check(status == 200 and reply.get("result") == "applied" and not reply.get("errors"),
              "%s: reload applied" % what, "%d %r\n%s" % (status, reply, hu.log_tail(self.sl)))
        return reply

    def metrics(self):
        return parse_metrics(self.admin_request("GET", "/metrics").body.decode())

    def reload_counts(self):
        m = self.metrics()
        return {k: int(m.get('sluice_config_reloads_total{result="%s"}' % k, -1))
                for k in ("applied", "unchanged", "failed")}

    def generation(self):
        return int(self.metrics().get("sluice_config_generation", -1))

    def json(self, target):
        return json.loads(self.admin_request("GET", target).body)

    def endpoint(self, cluster, address):
        for c in self.json("/clusters"):
            if c["name"] == cluster:
                for e in c["endpoints"]:
                    if e["address"] == address:
                        return e
        return None


def check_diff(rl, old_text, new_text, changes, what):
    """changes (a reply's list) are exactly the lines `sluice check -c NEW --diff OLD` prints."""
    old = os.path.join(rl.sl.tmpdir, "diff-old.yaml")
    with open(old, "w") as f:
        f.write(old_text)
    p = harness.run_sluice_cmd(["check", "-c", rl.path, "--diff", old])
    want = p.stdout.splitlines()[1:]
    check(p.returncode == 0 and changes == want, "%s: the changes are those `sluice check --diff` lists" % what,
          "reply:\n%s\nsluice check --diff (rc %d):\n%s%s" % ("\n".join(changes), p.returncode, p.stdout, p.stderr))


def served_by(r):
    return r.header("x-backend") if r.status == 200 else "status %d" % r.status


class GateBackend(harness.TcpServer):
    """HTTP/1.1 keep-alive backend: a path under /hold waits for release() before its answer;
    any other answers at once. Answers are JSON {backend, target} with X-Backend."""

    def __init__(self, name):
        self.name = name
        self.gate = threading.Event()
        self.held = 0
        self.targets = []
        super().__init__()

    def release(self):
        self.gate.set()

    def stop(self):
        self.gate.set()
        super().stop()

    def handle(self, conn):
        reader = SockReader(conn)
        while True:
            try:
                head = reader.read_until(b"\r\n\r\n")
            except (PeerClosed, OSError):
                return
            start, headers = parse_head(head)
            target = start.split(" ")[1]
            cl = header_values(headers, "content-length")
            if cl:
                reader.discard(int(cl[0]))
            with self._lock:
                self.targets.append(target)
            if target.startswith("/hold"):
                with self._lock:
                    self.held += 1
                if not self.gate.wait(30):
                    return
            body = json.dumps({"backend": self.name, "target": target}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Backend: %s\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (self.name.encode(), len(body), body))


class TrickleBackend(harness.TcpServer):
    """/trickle: a head announcing PIECES pieces of PIECE pattern bytes, then one piece each
    time the test calls feed(). Anything else: 200 with X-Backend."""

    PIECE = 64 * 1024

    def __init__(self, name, pieces):
        self.name = name
        self.pieces = pieces
        self.feeds = threading.Semaphore(0)
        super().__init__()

    def feed(self):
        self.feeds.release()

    def handle(self, conn):
        reader = SockReader(conn)
        while True:
            try:
                head = reader.read_until(b"\r\n\r\n")
            except (PeerClosed, OSError):
                return
            target = parse_head(head)[0].split(" ")[1]
            hdr = "HTTP/1.1 200 OK\r\nX-Backend: %s\r\nContent-Length: %d\r\n\r\n"
            if target != "/trickle":
                conn.sendall((hdr % (self.name, 2)).encode() + b"ok")
                continue
            conn.sendall((hdr % (self.name, self.pieces * self.PIECE)).encode())
            for i in range(self.pieces):
                if not self.feeds.acquire(timeout=30):
                    return
                conn.sendall(pattern_slice(i * self.PIECE, self.PIECE))


def tcp_fd_table():
    """inode -> (state, local port) for every TCP socket in this network namespace."""
    out = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path) as f:
            next(f)
            for line in f:
                p = line.split()
                out[p[9]] = (p[3], int(p[1].rsplit(":", 1)[1], 16))
    return out


def fd_kinds(pid):
    """What the process has open, by kind: listening sockets by port, other TCP sockets by
    state, pipes, eventfds, timerfds, epoll, files by path."""
    table = tcp_fd_table()
    kinds = collections.Counter()
    d = "/proc/%d/fd" % pid
    for fd in os.listdir(d):
        try:
            link = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]$", link)
        if m and m.group(1) in table:
            state, port = table[m.group(1)]
            kinds["tcp listen :%d" % port if state == "0A" else "tcp state %s" % state] += 1
        elif m:
            kinds["socket (not tcp)"] += 1
        else:
            kinds[re.sub(r":\[\d+\]$", "", link)] += 1
    return kinds


def no_tcp_connections(pid):
    k = fd_kinds(pid)
    return not any(x.startswith("tcp state") for x in k)


# --------------------------------------------------------------------------
# 1. routes and endpoints change under load


class Load:
    """Clients sending GETs to `port` until stop(): `keepalive` threads on one connection each,
    `fresh` threads on a new connection per request. Paths cycle through `paths`; every
    answer is recorded as (path, status, X-Backend), every exception as an error."""

    def __init__(self, port, paths, keepalive=3, fresh=2):
        self.port = port
        self.paths = paths
        self.results = []
        self.errors = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ths = ([threading.Thread(target=self._run, args=(t, True), daemon=True) for t in range(keepalive)] +
                     [threading.Thread(target=self._run, args=(keepalive + t, False), daemon=True)
                      for t in range(fresh)])
        for th in self._ths:
            th.start()
        harness.register_cleanup(self.stop)

    def _run(self, t, keepalive):
        c = None
        i = 0
        while not self._stop.is_set():
            path = self.paths[i % len(self.paths)]
            target = "%s/%d/%d" % (path, t, i)
            try:
                if c is None:
                    c = hu.Client(self.port, timeout=10)
                r = c.request("GET", target)
                with self._lock:
                    self.results.append((path, r.status, served_by(r)))
                if not keepalive or "close" in r.tokens("connection"):
                    if keepalive:
                        with self._lock:
                            self.errors.append("thread %d %s: Connection: close" % (t, target))
                    c.close()
                    c = None
            except Exception as e:
                with self._lock:
                    self.errors.append("thread %d %s: %r" % (t, target, e))
                if c:
                    c.close()
                c = None
            i += 1
        if c:
            c.close()

    def count(self):
        with self._lock:
            return len(self.results)

    def stop(self):
        self._stop.set()
        for th in self._ths:
            th.join(15)
        return not any(th.is_alive() for th in self._ths)


def case_routes_and_endpoints_under_load():
    # RSS is compared before and after: keep ASan's quarantine of freed memory small, or it
    # grows with any traffic (no effect on a build without ASan)
    before = os.environ.get("ASAN_OPTIONS")
    os.environ["ASAN_OPTIONS"] = "detect_leaks=1:quarantine_size_mb=1"
    try:
        routes_and_endpoints_under_load()
    finally:
        if before is None:
            del os.environ["ASAN_OPTIONS"]
        else:
            os.environ["ASAN_OPTIONS"] = before


def routes_and_endpoints_under_load():
    a1, a2, b = HttpBackend("a1"), HttpBackend("a2"), HttpBackend("b")
    pool = {"idle_timeout": "300ms"}
    conf_a = make_config(
        [http_listener("web", [route("/svc", "alpha"), route("/api", "alpha"), route("/", "alpha")])],
        [hu.cluster("alpha", [a1], pool=pool), hu.cluster("beta", [b], pool=pool)], log_level="info")
    conf_b = make_config(
        [http_listener("web", [route("/svc", "beta"), route("/api/v2", "beta"), route("/api", "alpha"),
                               route("/", "alpha")]),
         http_listener("extra", [route("/", "beta")])],
        [hu.cluster("alpha", [a1, a2], pool=pool), hu.cluster("beta", [b], pool=pool)], log_level="info")
    allowed = {"/svc": {"a1", "b"}, "/api/v2": {"a1", "b"}, "/api/v1": {"a1", "a2"}, "/other": {"a1", "a2"}}
    rl = Reloadable(conf_a, log_level="info")
    sl = rl.sl
    port = sl.port("web")
    pid = sl.pid

    def storm(n, first, load):
        """n reloads, alternating B and A; under B the extra listener serves, under A it refuses."""
        for i in range(first, first + n):
            to_b = i % 2 == 1
            mark = sl.line_count()
            rl.write(conf_b if to_b else conf_a)
            status, reply = rl.reload()
            if not (status == 200 and reply.get("result") == "applied" and reply.get("generation") == i):
                return "reload %d: %d %r" % (i, status, reply)
            if to_b:
                line = sl.wait_log(re.compile(r"listener extra listening on 127\.0\.0\.1:\d+ "), 5, mark)
                if not line:
                    return "reload %d: no 'listener extra listening on' line" % i
                xport = int(re.search(r":(\d+) ", line).group(1))
                r = hu.request_once(xport, "GET", "/x/%d" % i)
                if served_by(r) != "b":
                    return "reload %d: the extra listener answered %s" % (i, r.describe())
            elif not harness.is_refused(sl.ports["extra"]):
                return "reload %d: the removed extra listener (port %d) still accepts" % (i, sl.ports["extra"])
            if load.errors:
                return "reload %d: client errors" % i
        return None

    # warm-up: the load and 30 reloads, so that whatever is made once is made before the
    # baseline
    paths = list(allowed)
    load = Load(port, paths)
    check(harness.wait_until(lambda: load.count() >= 100 or load.errors, 10),
          "load running (%d answers)" % load.count(), "\n".join(load.errors[:5]))
    problem = storm(WARM, 1, load)
    load.stop()
    check(problem is None and not load.errors, "warm-up: %d reloads under load" % WARM,
          "%s\n%s\n%s" % (problem, "\n".join(load.errors[:10]), hu.log_tail(sl)))
    check(harness.wait_until(lambda: no_tcp_connections(pid), 10),
          "after the warm-up every client and pooled connection closes", repr(fd_kinds(pid)))
    base_fds = fd_kinds(pid)
    base_rss = hu.vmrss_kib(pid)
    info("baseline: %d descriptors, RSS %d KiB" % (sum(base_fds.values()), base_rss))

    load = Load(port, paths)
    harness.wait_until(lambda: load.count() >= 50 or load.errors, 10)
    t0 = time.monotonic()
    problem = storm(STORM, WARM + 1, load)
    took = time.monotonic() - t0
    n_during = load.count()
    stopped = load.stop()
    info("%d reloads in %.1f s; %d requests answered meanwhile" % (STORM, took, n_during))
    check(problem is None, "%d reloads alternating A and B, each applied with the next generation; the extra "
          "listener serves under B and refuses under A" % STORM, "%s\n%s" % (problem, hu.log_tail(sl)))
    check(stopped, "the client threads finished")
    check(not load.errors, "no failed request, reset or closed connection among %d" % len(load.results),
          "\n".join(load.errors[:10]))
    statuses = collections.Counter(s for _, s, _ in load.results)
    check(set(statuses) == {200}, "every answer is 200", repr(statuses))
    wrong = collections.Counter((p, be) for p, _, be in load.results if be not in allowed[p])
    soft_check(not wrong, "every answer comes from A's or B's routing", repr(wrong))
    seen = collections.Counter((p, be) for p, _, be in load.results)
    info("answers by (path, backend): %s" % dict(seen))
    check(seen[("/svc", "b")] > 0 and seen[("/api/v2", "b")] > 0 and seen[("/other", "a2")] > 0,
          "B's routes and endpoint took traffic during the storm", repr(dict(seen)))

    # A is in force: its routes only, a2 no longer used
    a2_before = a2.stats()["requests"]
    got = collections.Counter()
    for p in paths:
        for i in range(5):
            got[(p, served_by(hu.request_once(port, "GET", "%s/after/%d" % (p, i))))] += 1
    check(got == collections.Counter({(p, "a1"): 5 for p in paths}),
          "after the storm (A in force) every path is served by a1", repr(got))
    check(a2.stats()["requests"] == a2_before, "the removed endpoint a2 gets no new request")

    m = rl.metrics()
    check(int(m.get("sluice_config_generation", -1)) == WARM + STORM, "sluice_config_generation is %d" % (WARM + STORM),
          repr(m.get("sluice_config_generation")))
    counts = rl.reload_counts()
    check(counts == {"applied": WARM + STORM, "unchanged": 0, "failed": 0},
          "sluice_config_reloads_total: applied %d, unchanged 0, failed 0" % (WARM + STORM), repr(counts))
    life = {k: v for k, v in m.items() if k.startswith("sluice_lifecycle_state")}
    check(life.get('sluice_lifecycle_state{state="ready"}') == 1 and
          life.get('sluice_lifecycle_state{state="reloading"}') == 0,
          "lifecycle state ready (reloading 0)", repr(life))
    check(harness.wait_until(lambda: fd_kinds(pid) == base_fds, 10),
          "the same descriptors as before the %d reloads (%d)" % (STORM, sum(base_fds.values())),
          "before: %r\nafter:  %r" % (dict(base_fds), dict(fd_kinds(pid))))
    rss = hu.vmrss_kib(pid)
    info("RSS %d KiB after the storm (baseline %d KiB, %+.1f %%)"
         % (rss, base_rss, 100.0 * (rss - base_rss) / base_rss))
    check(rss <= base_rss * 1.10, "RSS within 10 %% of the baseline (%d KiB, baseline %d KiB)" % (rss, base_rss))
    hu.stop_and_check(sl)


# --------------------------------------------------------------------------
# 2. a tunnel and a slow download across reloads


def case_tunnel_and_download_across_reloads():
    echo = harness.EchoServer()
    pieces = 12
    slow = TrickleBackend("slow", pieces)
    other = HttpBackend("other")

    def conf(i, idle):
        routes = [route("/trickle", "slow")]
        if i % 2 == 1:
            routes.insert(0, route("/side", "other", timeout="5s"))
        return make_config(
            [tcp_listener("tcp_in", "echo", idle_timeout=idle), http_listener("web", routes)],
            [hu.cluster("echo", [echo.address]),
             hu.cluster("slow", [slow], connect_timeout="2s" if i % 2 == 1 else "1s"),
             hu.cluster("other", [other])])

    rl = Reloadable(conf(0, "300s"))
    sl = rl.sl
    tport, wport = sl.port("tcp_in"), sl.port("web")
    tunnel = harness.connect(tport)
    check(harness.echo_roundtrip(tunnel, b"before"), "the tunnel echoes before the reloads")
    dl = hu.Client(wport, timeout=10)
    dl.send(hu.build_request("GET", "/trickle"))
    dl.reader.deadline = time.monotonic() + 10
    start, headers = parse_head(dl.reader.read_until(b"\r\n\r\n"))
    check(start == "HTTP/1.1 200 OK" and header_values(headers, "content-length") == [str(pieces * slow.PIECE)],
          "the download's head arrives (200, Content-Length %d)" % (pieces * slow.PIECE), start)
    digest = hashlib.sha256()
    received = 0

    def piece():
        nonlocal received
        slow.feed()
        dl.reader.deadline = time.monotonic() + 10
        data = dl.reader.read_exact(slow.PIECE)
        digest.update(data)
        received += len(data)

    piece()
    fresh = None
    for i in range(1, 11):
        idle = "1s" if i >= 5 else "300s"
        reply = rl.apply(conf(i, idle), "reload %d%s" % (i, " (tcp_in idle_timeout 300s -> 1s)" if i == 5 else ""))
        if i == 5:
            info("reload 5 changes: %s" % reply["changes"])
            cfg_tcp = [x for x in rl.json("/config")["listeners"] if x["name"] == "tcp_in"][0]
            check(cfg_tcp["idle_timeout"] == "1s", "/config shows tcp_in idle_timeout 1s", repr(cfg_tcp))
            fresh = harness.connect(tport)
            check(harness.echo_roundtrip(fresh, b"fresh"), "a new tunnel after reload 5 echoes")
        check(harness.echo_roundtrip(tunnel, b"after reload %d" % i), "the old tunnel echoes after reload %d" % i)
        piece()
        check(received == (i + 1) * slow.PIECE, "download: piece %d of %d arrived after reload %d" % (i + 1, pieces, i))
    # a probe opened now is closed after 1 s idle; the old tunnel has been idle longer by then
    probe = harness.connect(tport)
    check(harness.echo_roundtrip(probe, b"probe"), "a probe tunnel echoes")
    how, idle_for = harness.wait_closed(probe, 5)
    check(how in ("eof", "reset") and 0.8 <= idle_for <= 3.0,
          "a tunnel opened after reload 5 is closed after ~1 s idle (closed %s after %.2f s)" % (how, idle_for))
    how, _ = harness.wait_closed(fresh, 1)
    check(how in ("eof", "reset"), "so is the one opened right after reload 5 (%s)" % how)
    check(harness.echo_roundtrip(tunnel, b"still here"),
          "the tunnel opened before the reloads keeps idle_timeout 300s: it still echoes after more than 1 s idle")
    piece()
    want = hashlib.sha256(b"".join(bytes(pattern_slice(i * slow.PIECE, slow.PIECE)) for i in range(pieces)))
    check(received == pieces * slow.PIECE and digest.hexdigest() == want.hexdigest(),
          "the download completes intact (%d bytes, sha256)" % received)
    r = dl.request("GET", "/trickle-after")
    check(r.status == 200 and r.body == b"ok", "the download's connection serves its next request", r.describe())
    check(rl.generation() == 10, "generation 10 after 10 reloads")
    tunnel.close()
    dl.close()
    hu.stop_and_check(sl)


# --------------------------------------------------------------------------
# 4. listeners added and removed


def case_listener_added_and_removed():
    """A: web and old (to cluster held). B: old and cluster held removed, fresh added, with a
    request in flight on old. C: web moves to 127.0.0.2, held comes back behind fresh."""
    a = HttpBackend("a")
    gate = GateBackend("g")
    conf_a = make_config([http_listener("web", [route("/", "app")]), http_listener("old", [route("/", "held")])],
                         [hu.cluster("app", [a]), hu.cluster("held", [gate])])
    conf_b = make_config([http_listener("web", [route("/", "app")]), http_listener("fresh", [route("/", "app")])],
                         [hu.cluster("app", [a])])
    conf_c = make_config([http_listener("web", [route("/", "app")], address="127.0.0.2:0"),
                          http_listener("fresh", [route("/", "held")])],
                         [hu.cluster("app", [a]), hu.cluster("held", [gate])])
    rl = Reloadable(conf_a)
    sl = rl.sl
    old_port, web_port = sl.port("old"), sl.port("web")
    inflight = hu.Client(old_port, timeout=15)
    inflight.send(hu.build_request("GET", "/hold/1"))
    check(harness.wait_until(lambda: gate.held == 1, 5), "a request is in flight on listener old")
    idle = hu.Client(old_port, timeout=5)
    check(served_by(idle.request("GET", "/quick")) == "g", "a keep-alive connection on old has been served")
    mark = sl.line_count()
    reply = rl.apply(conf_b, "B: old and its cluster removed, fresh added")
    check_diff(rl, conf_a, conf_b, reply["changes"], "B")
    line = sl.wait_log(re.compile(r"listener fresh listening on 127\.0\.0\.1:\d+ "), 5, mark)
    check(line is not None, "log: listener fresh listening on 127.0.0.1:PORT", hu.log_tail(sl))
    fresh_port = sl.port("fresh")
    check(served_by(hu.request_once(fresh_port, "GET", "/new")) == "a", "the new listener serves")
    check(harness.is_refused(old_port), "the removed listener refuses new connections at once")
    listeners = [x["name"] for x in rl.json("/listeners")]
    check(listeners == ["web", "fresh"], "/listeners lists web and fresh", repr(listeners))
    clusters = [x["name"] for x in rl.json("/clusters")]
    check(clusters == ["app"], "/clusters lists app only", repr(clusters))
    # An idle keep-alive connection on a removed listener is not cut under a request the client
    # may be sending: its next request is answered, with Connection: close, and then it closes.
    r = idle.request("GET", "/quick")
    check(served_by(r) == "g" and r.header("connection") == "close",
          "the idle keep-alive connection on old: its next request is answered with Connection: close",
          r.describe())
    how, extra, _ = idle.wait_closed(5)
    check(how == "eof" and extra == b"", "... and then it is closed (%s)" % how)
    gate.release()
    r = inflight.read_response()
    check(r.status == 200 and r.json() == {"backend": "g", "target": "/hold/1"},
          "the request in flight on the removed listener (and removed cluster) completes", r.describe())
    info("its response carried Connection: %s" % r.header("connection"))

    mark = sl.line_count()
    reply = rl.apply(conf_c, "C: web moves to 127.0.0.2, held is back behind fresh")
    check_diff(rl, conf_b, conf_c, reply["changes"], "C")
    line = sl.wait_log(re.compile(r"listener web listening on 127\.0\.0\.2:\d+ "), 5, mark)
    check(line is not None, "log: listener web listening on 127.0.0.2:PORT", hu.log_tail(sl))
    moved = int(re.search(r":(\d+) ", line).group(1))
    r = hu.Client(moved, host="127.0.0.2").request("GET", "/moved")
    check(served_by(r) == "a", "web serves on 127.0.0.2:%d" % moved, r.describe())
    check(harness.is_refused(web_port), "web's old address 127.0.0.1:%d refuses" % web_port)
    check(served_by(hu.request_once(fresh_port, "GET", "/back")) == "g", "fresh serves from the re-added held")
    addresses = {x["name"]: x["address"] for x in rl.json("/listeners")}
    check(addresses == {"web": "127.0.0.2:%d" % moved, "fresh": "127.0.0.1:%d" % fresh_port},
          "/listeners shows the addresses in force", repr(addresses))
    hu.stop_and_check(sl)


def case_listener_kind_and_cluster_change():
    """A: svc (http to app) and tcp_in (tcp to echo). B: svc turns tcp (to echo), tcp_in goes
    to a banner server. Then A again."""
    a = HttpBackend("a")
    echo, banner = harness.EchoServer(), harness.BannerServer()
    clusters = [hu.cluster("app", [a]), hu.cluster("echo", [echo.address]), hu.cluster("banner", [banner.address])]
    conf_a = make_config([http_listener("svc", [route("/", "app")]), tcp_listener("tcp_in", "echo"),
                          tcp_listener("spare", "banner")], clusters)
    conf_b = make_config([tcp_listener("svc", "echo"), tcp_listener("tcp_in", "banner"),
                          http_listener("spare", [route("/", "app")])], clusters)
    rl = Reloadable(conf_a)
    sl = rl.sl
    svc, tport = sl.port("svc"), sl.port("tcp_in")
    keep = hu.Client(svc, timeout=5)
    check(served_by(keep.request("GET", "/1")) == "a", "svc speaks HTTP under A (keep-alive connection)")
    tunnel = harness.connect(tport)
    check(harness.echo_roundtrip(tunnel, b"one"), "tcp_in echoes under A")
    rl.apply(conf_b, "B: svc http -> tcp, tcp_in echo -> banner")
    check(sl.port("svc") == svc and sl.port("tcp_in") == tport, "both keep their ports")
    raw = harness.connect(svc)
    check(harness.echo_roundtrip(raw, b"GET / HTTP/1.1\r\n\r\n"), "a new connection to svc is a tunnel to echo")
    how, extra, _ = keep.wait_closed(5)
    check(how in ("eof", "reset") and extra == b"", "the idle HTTP keep-alive connection on svc is closed (%s)" % how)
    fresh = harness.connect(tport)
    fresh.settimeout(5)
    got = harness.recv_exact(fresh, len(harness.BannerServer.banner))
    check(got == harness.BannerServer.banner, "a new connection to tcp_in reaches the banner server", repr(got))
    check(harness.echo_roundtrip(tunnel, b"two"), "the tunnel opened under A still reaches echo")
    rl.apply(conf_a, "A again")
    r = hu.request_once(svc, "GET", "/2")
    check(served_by(r) == "a", "svc speaks HTTP again", r.describe())
    check(harness.echo_roundtrip(raw, b"still a tunnel"), "the tunnel opened on svc under B still echoes")
    for s in (raw, tunnel, fresh):
        s.close()
    hu.stop_and_check(sl)


def case_http2_connection_across_reload():
    """An HTTP/2 connection (prior knowledge) with a stream held upstream: after the reload
    its new streams follow the new routes, the held one completes from the old, no GOAWAY."""
    from h2_frames import H2Client
    a, b = HttpBackend("a"), HttpBackend("b")
    gate = GateBackend("g")
    clusters = [hu.cluster("app", [a]), hu.cluster("other", [b]), hu.cluster("held", [gate])]

    def conf(cluster):
        return make_config([http_listener("web", [route("/hold", "held"), route("/", cluster)],
                                          http2={"prior_knowledge": True})], clusters)

    rl = Reloadable(conf("app"))
    h2 = H2Client(rl.sl.port("web"))
    h2.handshake()
    r = h2.response(h2.request(path="/before"), 10)
    check(r.status == 200 and r.header("x-backend") == "a", "HTTP/2: / is served by a", r.describe())
    held = h2.request(path="/hold/1")
    check(harness.wait_until(lambda: gate.held == 1, 5), "a stream is held upstream")
    rl.apply(conf("other"), "/ app -> other")
    r = h2.response(h2.request(path="/after"), 10)
    check(r.status == 200 and r.header("x-backend") == "b", "a new stream on the same connection: served by b",
          r.describe())
    gate.release()
    r = h2.response(held, 10)
    check(r.status == 200 and r.ended and r.json() == {"backend": "g", "target": "/hold/1"},
          "the held stream completes", r.describe())
    check(h2.goaway_code() is None, "no GOAWAY", h2.transcript())
    h2.close()
    hu.stop_and_check(rl.sl)


def case_tls_certificate_changed():
    """A TLS listener whose certificate the file changes: new handshakes get the new one, a
    connection made before keeps working."""
    import ssl
    import tls_pki
    pki = tls_pki.default()
    one, two = pki.leaf(dns=("one.test",)), pki.leaf(dns=("two.test",))
    a = HttpBackend("a")

    def conf(cert):
        tls = {"certificates": [{"certificate_chain": cert.chain, "private_key": cert.key}]}
        return make_config([http_listener("web", [route("/", "app")], tls=tls)], [hu.cluster("app", [a])])

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(pki.ca_file)

    def connect_tls():
        s = ctx.wrap_socket(harness.connect(rl.sl.port("web")), server_hostname="localhost")
        harness.register_cleanup(s.close)
        cn = dict(x[0] for x in s.getpeercert()["subject"])["commonName"]
        return s, cn

    def get(s, target):
        s.sendall(hu.build_request("GET", target))
        r = SockReader(s)
        r.deadline = time.monotonic() + 5
        return hu.read_response(r)

    rl = Reloadable(conf(one))
    old, cn = connect_tls()
    check(cn == "one.test", "the listener presents one.test", cn)
    check(served_by(get(old, "/1")) == "a", "served over TLS")
    rl.apply(conf(two), "certificate one.test -> two.test")
    new, cn = connect_tls()
    check(cn == "two.test", "a new handshake gets two.test", cn)
    check(served_by(get(new, "/2")) == "a", "served over the new handshake")
    check(served_by(get(old, "/3")) == "a", "the connection made before the reload keeps working")
    rl.apply(conf(one), "certificate two.test -> one.test")
    third, cn = connect_tls()
    check(cn == "one.test", "and back: one.test", cn)
    for s in (old, new, third):
        s.close()
    hu.stop_and_check(rl.sl)


def case_removed_tcp_listener_drains_within_drain_timeout():
    """A tunnel on a removed TCP listener is closed at drain_timeout (1s), as the reply says."""
    echo = harness.EchoServer()
    a = HttpBackend("a")
    clusters = [hu.cluster("echo", [echo.address]), hu.cluster("app", [a])]
    conf_a = make_config([http_listener("web", [route("/", "app")]), tcp_listener("old", "echo")], clusters,
                         drain_timeout="1s")
    conf_b = make_config([http_listener("web", [route("/", "app")])], clusters, drain_timeout="1s")
    rl = Reloadable(conf_a)
    sl = rl.sl
    tunnel = harness.connect(sl.port("old"))
    check(harness.echo_roundtrip(tunnel, b"before"), "a tunnel on old echoes")
    reply = rl.apply(conf_b, "old removed")
    said = "listener old: removed from 127.0.0.1:0: stops accepting, its connections drain (drain_timeout 1s)"
    check(said in reply["changes"], "the reply says: %s" % said, repr(reply["changes"]))
    t0 = time.monotonic()
    check(harness.echo_roundtrip(tunnel, b"after"), "the tunnel still echoes right after the reload")
    how, _ = harness.wait_closed(tunnel, 4)
    took = time.monotonic() - t0
    check(how in ("eof", "reset") and took <= 3.0,
          "the tunnel is closed within drain_timeout (1s) + 2 s (%s after %.2f s)" % (how, took))
    hu.stop_and_check(sl)


def free_port():
    """A port nothing listens on now (the socket that found it is closed again)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sanitizer_excerpt(sl):
    """The first lines of an AddressSanitizer report in sluice's stderr (None without one)."""
    if not sl.sanitizer_report():
        return None
    text = sl.stderr_text()
    start = text.find("ERROR: AddressSanitizer")
    lines = [l for l in text[start:start + 8000].splitlines() if l.startswith(("ERROR", "READ", "WRITE", "    #",
             "freed", "previously", "0x")) and "std::" not in l and "/usr/bin/../lib" not in l]
    return "\n".join(lines[:40])


def reloads_under_load(rl, conf, n, each=None):
    """n reloads (conf(i) for i in 1..n), each waited for; `each(i)` may return a problem.
    Returns the first problem (a reply that is not applied, an exception) or None."""
    for i in range(1, n + 1):
        rl.write(conf(i))
        try:
            status, reply = rl.reload()
            if status != 200 or reply.get("result") != "applied":
                return "reload %d: %d %r" % (i, status, reply)
            problem = each(i) if each else None
        except Exception as e:
            problem = "reload %d: %r" % (i, e)
        if problem:
            return problem
    return None


def check_survived(sl, problem, what):
    report = sanitizer_excerpt(sl)
    if report:
        info("sanitizer report:\n" + report)
    check(problem is None and sl.alive(), what,
          "%s\nsluice exit status: %s\n%s" % (problem, sl.proc.poll(), "" if report else hu.log_tail(sl)))


def case_rebind_on_a_fixed_port_under_load():
    """web on a fixed port; 20 reloads alternate its backlog, so its sockets are made again on
    the same port, while clients open a new connection for each request: nothing fails.
    (New connections only: a re-bound listener's keep-alive connections are drained, closed
    when idle, which a client sees as a close between two requests.)"""
    a = HttpBackend("a")
    wport = free_port()

    def conf(i):
        return make_config([http_listener("web", [route("/", "app")], address="127.0.0.1:%d" % wport,
                                          backlog=128 if i % 2 else 256)], [hu.cluster("app", [a])])

    rl = Reloadable(conf(0))
    sl = rl.sl
    load = Load(wport, ["/r"], keepalive=0, fresh=4)
    check(harness.wait_until(lambda: load.count() >= 50 or load.errors, 10), "load running")
    problem = reloads_under_load(rl, conf, 20)
    load.stop()
    check_survived(sl, problem, "20 reloads re-binding web on port %d under load" % wport)
    check(not load.errors, "no failed request or connection among %d" % len(load.results), "\n".join(load.errors[:10]))
    statuses = collections.Counter(st for _, st, _ in load.results)
    check(set(statuses) == {200}, "every answer is 200", repr(statuses))
    hu.stop_and_check(sl)


def case_remove_and_readd_on_a_fixed_port_under_load():
    """extra on a fixed port, removed and re-added by 20 reloads while clients open a new
    connection for each request: while it is removed, connects are refused; a connection
    whose connect succeeded is answered (refusals aside, nothing fails but the resets the
    kernel gives connections completed as the last listening socket closes)."""
    a = HttpBackend("a")
    xport = free_port()

    def conf(i):
        lst = [http_listener("web", [route("/", "app")])]
        if i % 2 == 0:
            lst.append(http_listener("extra", [route("/", "app")], address="127.0.0.1:%d" % xport))
        return make_config(lst, [hu.cluster("app", [a])])

    rl = Reloadable(conf(0))
    sl = rl.sl
    load = Load(xport, ["/r"], keepalive=0, fresh=4)
    check(harness.wait_until(lambda: load.count() >= 50 or load.errors, 10), "load running")
    problem = reloads_under_load(rl, conf, 20, lambda i: None if (i % 2 == 0) != harness.is_refused(xport)
                                 else "reload %d: extra %s" % (i, "refuses" if i % 2 == 0 else "still accepts"))
    load.stop()
    check_survived(sl, problem, "20 reloads removing and re-adding extra on port %d under load" % xport)
    refused = [e for e in load.errors if "ConnectionRefusedError" in e]
    failed = [e for e in load.errors if "ConnectionRefusedError" not in e]
    info("%d answers, %d connects refused while extra was removed" % (len(load.results), len(refused)))
    check(refused, "connects were refused while extra was removed")
    # The one loss the kernel does not let a process avoid: a connection whose handshake
    # completes in the instant between a worker's last accept() and the close() of the last
    # listening socket of a port is reset. At most one per worker and removal (10 removals).
    check(all("ConnectionResetError" in e for e in failed) and len(failed) <= 20,
          "accepted connections are answered, but for the few resets of the closing instant "
          "(%d answers, %d resets)" % (len(load.results), len(failed)), "\n".join(failed[:10]))
    statuses = collections.Counter(st for _, st, _ in load.results)
    check(set(statuses) == {200}, "every answer is 200", repr(statuses))
    hu.stop_and_check(sl)


def listen_sockets(port):
    """(inodes, backlogs) of the sockets listening on 127.0.0.1:port (backlog: ss's Send-Q)."""
    inodes = sorted(ino for ino, (state, p) in tcp_fd_table().items() if state == "0A" and p == port)
    out = harness.sh(["ss", "-Hltn", "sport = :%d" % port]).stdout.split("\n")
    return inodes, sorted(int(l.split()[2]) for l in out if l.strip())


def case_backlog_change_as_listed():
    """A backlog change, with nothing connecting: the sockets do what the reply says."""
    a = HttpBackend("a")
    port = free_port()

    def conf(backlog):
        return make_config([http_listener("web", [route("/", "app")], address="127.0.0.1:%d" % port,
                                          backlog=backlog)], [hu.cluster("app", [a])])

    rl = Reloadable(conf(256))
    inodes, backlogs = listen_sockets(port)
    check(len(inodes) == 2 and backlogs == [256, 256], "2 sockets (one per worker) listen with backlog 256",
          repr((inodes, backlogs)))
    reply = rl.apply(conf(128), "backlog 256 -> 128")
    check("listener web: backlog 256 -> 128 (applied to its listening sockets)" in reply["changes"],
          "the reply lists 'listener web: backlog 256 -> 128 (applied to its listening sockets)'",
          repr(reply["changes"]))
    keeps = "listener web (127.0.0.1:%d): unchanged address: keeps its sockets" % port in reply["changes"]
    after = listen_sockets(port)
    check(after[1] == [128, 128], "2 sockets listen with backlog 128", repr(after))
    check((after[0] == inodes) == keeps, "the sockets are %s, as the reply says" % (
          "the same" if keeps else "new"), "reply: %r\nbefore %r\nafter  %r" % (reply["changes"], inodes, after[0]))
    check(served_by(hu.request_once(port, "GET", "/x")) == "a", "web serves")
    hu.stop_and_check(rl.sl)


if __name__ == "__main__":
    hu.use_default_bin()
    cases = [case_routes_and_endpoints_under_load, case_tunnel_and_download_across_reloads,
             case_listener_added_and_removed, case_listener_kind_and_cluster_change,
             case_http2_connection_across_reload, case_tls_certificate_changed,
             case_removed_tcp_listener_drains_within_drain_timeout,
             case_backlog_change_as_listed, case_rebind_on_a_fixed_port_under_load,
             case_remove_and_readd_on_a_fixed_port_under_load]
    # names on the command line: only those cases
    harness.run_cases([c for c in cases if not sys.argv[1:] or c.__name__ in sys.argv[1:]])

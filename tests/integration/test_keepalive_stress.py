#!/usr/bin/env python3
"""Thousands of concurrent keep-alive connections through sluice, on each event backend (and on
io_uring with multishot accept, SLUICE_IO_URING_ACCEPT=multishot).

SLUICE_STRESS_CONNECTIONS (default 9000) client connections stay open at once; every one
sends SLUICE_STRESS_ROUNDS (default 3) requests, at most WINDOW in flight across all of
them, each for its own target. Checked: every request is answered 200 with the backend's
echo of exactly that target, in order on its connection; sluice counts every connection
open while they idle (sluice_listener_connections_active), and once the clients close, the
count and sluice's descriptors (once the idle upstream connections time out) return to
where they started (no leak), and sluice exits
cleanly. The resident memory sluice gained per idle connection is printed (an information,
not a benchmark: bench/run idle_conns is that)."""

import errno
import json
import os
import re
import resource
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
from http_backend import BackendProcess  # noqa: E402
import http_util as hu  # noqa: E402

CONNECTIONS = int(hu.env_number("SLUICE_STRESS_CONNECTIONS", 9000))
ROUNDS = int(hu.env_number("SLUICE_STRESS_ROUNDS", 3))
WINDOW = 128            # requests in flight at once, across all connections
CONNECT_BATCH = 500     # connects in flight at once (the listen backlog is 1024)
PHASE_SECONDS = 90.0    # bound on each phase (connect, one round of requests, close)
ADMIN_RE = re.compile(r"admin listening on 127\.0\.0\.1:(\d+)")
ACTIVE_RE = re.compile(r'^sluice_listener_connections_active\{listener="web"\} (\d+)$', re.M)


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        raise harness.Skip("RLIMIT_NOFILE hard limit %d < %d needed" % (hard, want))
    if soft == resource.RLIM_INFINITY or soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def start(backend_name, backend, extra_env=None):
    cfg = {"workers": 2, "log_level": "info", "drain_timeout": "5s",
           "admin": {"address": "127.0.0.1:0"},
           "listeners": [hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}],
                                            http={"keepalive_timeout": "300s"})],
           "clusters": [hu.cluster("app", [backend], pool={"max_connections": 256, "idle_timeout": "1s"})]}
    text = harness.to_yaml(hu._quote(cfg)) + "\n"
    env = dict({"SLUICE_EVENT_BACKEND": backend_name}, **(extra_env or {}))
    # the downstream connections, the upstream pool and room for the rest
    sl = harness.Sluice(text, log_level="info", nofile=CONNECTIONS + 2048, env=env)
    line = sl.wait_log(lambda l: ADMIN_RE.search(l), 10)
    if not line:
        raise harness.CheckFailed_with("no 'admin listening on 127.0.0.1:PORT' line", sl.stderr_text())
    return sl, int(ADMIN_RE.search(line).group(1))


def active_connections(admin_port):
    r = hu.request_once(admin_port, "GET", "/metrics", host="admin", timeout=10)
    m = ACTIVE_RE.search(r.body.decode("utf-8", "replace"))
    return int(m.group(1)) if m else None


class Conn:
    def __init__(self, i):
        self.i = i
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.buf = b""
        self.target = None
        self.answered = 0


def connect_all(port):
    sel = selectors.DefaultSelector()
    conns = []
    pending = 0
    deadline = time.monotonic() + PHASE_SECONDS
    i = 0
    while i < CONNECTIONS or pending:
        while i < CONNECTIONS and pending < CONNECT_BATCH:
            c = Conn(i)
            conns.append(c)
            rc = c.sock.connect_ex(("127.0.0.1", port))
            if rc not in (0, errno.EINPROGRESS):
                check(False, "connect %d starts" % i, os.strerror(rc))
            sel.register(c.sock, selectors.EVENT_WRITE, c)
            pending += 1
            i += 1
        if time.monotonic() > deadline:
            check(False, "%d connections within %.0f s" % (CONNECTIONS, PHASE_SECONDS),
                  "%d connected, %d pending" % (i - pending, pending))
        for key, _ in sel.select(1.0):
            c = key.data
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err != 0:
                check(False, "connection %d is established" % c.i, os.strerror(err))
            sel.unregister(c.sock)
            pending -= 1
    sel.close()
    check(len(conns) == CONNECTIONS, "%d connections established" % CONNECTIONS)
    return conns


def parse_response(c):
    """A complete response at the head of c.buf: (status, body) and consumes it, else None."""
    end = c.buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = c.buf[:end].decode("latin-1").split("\r\n")
    status = int(head[0].split(" ")[1])
    length = None
    for h in head[1:]:
        k, _, v = h.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v.strip())
    if length is None:
        check(False, "connection %d: the response has a Content-Length" % c.i, repr(head))
    if len(c.buf) < end + 4 + length:
        return None
    body = c.buf[end + 4:end + 4 + length]
    c.buf = c.buf[end + 4 + length:]
    return status, body


def request_round(conns, rnd):
    """One request on every connection, WINDOW in flight; checks every answer."""
    sel = selectors.DefaultSelector()
    unsent = list(reversed(conns))
    inflight = 0
    done = 0
    deadline = time.monotonic() + PHASE_SECONDS
    while done < len(conns):
        while unsent and inflight < WINDOW:
            c = unsent.pop()
            c.target = "/c%d/r%d" % (c.i, rnd)
            req = ("GET %s HTTP/1.1\r\nHost: stress.test\r\n\r\n" % c.target).encode()
            if c.sock.send(req) != len(req):
                check(False, "connection %d: request sent whole" % c.i)
            sel.register(c.sock, selectors.EVENT_READ, c)
            inflight += 1
        if time.monotonic() > deadline:
            check(False, "round %d answered within %.0f s" % (rnd, PHASE_SECONDS),
                  "%d of %d answered" % (done, len(conns)))
        for key, _ in sel.select(1.0):
            c = key.data
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                check(False, "connection %d stays open in round %d" % (c.i, rnd), "EOF before the response")
            c.buf += data
            got = parse_response(c)
            if got is None:
                continue
            status, body = got
            target = json.loads(body).get("target") if status == 200 else None
            if status != 200 or target != c.target or c.buf:
                check(False, "connection %d round %d: 200, the answer to its own request, nothing after" %
                      (c.i, rnd), "status %d, asked %s, got the answer for %s, then %r" %
                      (status, c.target, target, c.buf[:200]))
            c.answered += 1
            sel.unregister(c.sock)
            inflight -= 1
            done += 1
    sel.close()
    check(done == len(conns), "round %d: all %d requests answered 200, each with its own target" %
          (rnd, len(conns)))


def stress(backend_name, env=None, multishot=False):
    raise_nofile(CONNECTIONS + 1024)
    backend = BackendProcess("stress")
    try:
        sl, admin = start(backend_name, backend, env)
    except harness.CheckFailed as e:
        if backend_name == "io_uring" and "io_uring is not available" in str(e):
            raise harness.Skip("io_uring unavailable here")
        raise
    fds_before = sl.open_fds()
    rss_before = hu.vmrss_kib(sl.pid)
    t0 = time.monotonic()
    conns = connect_all(sl.port("web"))
    info("%s: %d connections in %.1f s" % (backend_name, len(conns), time.monotonic() - t0))
    for rnd in range(ROUNDS):
        t0 = time.monotonic()
        request_round(conns, rnd)
        info("%s: round %d, %d requests in %.1f s" % (backend_name, rnd, len(conns), time.monotonic() - t0))
        if rnd == 0:
            # every connection has spoken, so sluice accepted every one (defer_accept)
            got = harness.wait_until(lambda: active_connections(admin) == CONNECTIONS, 20, 0.2)
            check(got, "sluice_listener_connections_active is %d while they idle" % CONNECTIONS,
                  "%r" % active_connections(admin))
            rss = hu.vmrss_kib(sl.pid)
            info("%s: RSS %d -> %d KiB with %d idle connections: %.2f KiB per connection "
                 "(ASan build: inflated; bench/run idle_conns measures)" %
                 (backend_name, rss_before, rss, CONNECTIONS, (rss - rss_before) / CONNECTIONS))
    check(all(c.answered == ROUNDS for c in conns), "every connection got %d answers" % ROUNDS)
    check(sl.alive(), "sluice is running after %d requests" % (CONNECTIONS * ROUNDS))
    t0 = time.monotonic()
    for c in conns:
        c.sock.close()
    gone = harness.wait_until(lambda: active_connections(admin) == 0, PHASE_SECONDS, 0.2)
    check(gone, "sluice_listener_connections_active returns to 0 once the clients closed",
          "%r" % active_connections(admin))
    # downstream connections closed, idle upstream ones after pool.idle_timeout (1 s)
    fds = harness.wait_until(lambda: sl.open_fds() == fds_before, 20, 0.2)
    check(fds, "sluice's descriptors return to the %d it had at start" % fds_before,
          "%d now" % sl.open_fds())
    info("%s: closed in %.1f s; %d fds at start, %d now" %
         (backend_name, time.monotonic() - t0, fds_before, sl.open_fds()))
    r = hu.request_once(sl.port("web"), "GET", "/after", host="stress.test", timeout=10)
    check(r.status == 200 and json.loads(r.body)["target"] == "/after",
          "a new request is served after the stress", r.describe())
    refused = sl.find_lines("completion-based accept refused") if multishot else []
    hu.stop_and_check(sl)
    backend.stop()
    if refused:
        # the listeners polled instead: what passed says nothing of multishot accept
        raise harness.Skip("the kernel refused multishot accept: %s" % refused[0])


def case_epoll():
    stress("epoll")


def case_io_uring():
    stress("io_uring")


def case_io_uring_multishot_accept():
    stress("io_uring", {"SLUICE_IO_URING_ACCEPT": "multishot"}, multishot=True)


if __name__ == "__main__":
    harness.CASE_TIMEOUT = 400  # each phase is bounded by PHASE_SECONDS
    harness.run_cases([case_epoll, case_io_uring, case_io_uring_multishot_accept])

#!/usr/bin/env python3
"""Ephemeral port exhaustion, named for what it is.

Runs in its own network namespace (re-executes itself under `unshare -n`; skipped when that
is not permitted) with net.ipv4.ip_local_port_range set to 10 ports (40000-40009) and
net.ipv4.tcp_tw_reuse off. Every server listens on a fixed port outside that range, so the
10 ports are all there is for sluice's upstream connections; the test's own client sockets
bind fixed source ports outside it too.

- HTTP, pool.max_requests_per_connection 1: sluice closes each upstream connection after its
  request, so each leaves its local port in TIME_WAIT. The pool's early warning names the
  measured rate (not 0) and the range; 10 requests succeed; once the kernel shows 10 sockets
  in TIME_WAIT towards the backend, the 11th request gets a 503 that says no local port is
  left, and the log says the ephemeral ports towards the backend are exhausted, with the range
  and the TIME_WAIT count.
- TCP: 10 proxied connections, each closed by the client (sluice then closes its upstream
  first); the 11th is closed with a log line that says the same."""

import os
import re
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import EchoServer, check, echo_roundtrip, info, sh, wait_until  # noqa: E402
from http_backend import HttpBackend  # noqa: E402
import http_util as hu  # noqa: E402

LOW, HIGH = 40000, 40009
HTTP_PORT, BACKEND_PORT, TCP_PORT, ECHO_PORT = 20000, 20001, 20002, 20003
ADVICE_HTTP = ("widen net.ipv4.ip_local_port_range, reuse connections longer (raise "
               "pool.max_requests_per_connection and pool.idle_timeout), or enable net.ipv4.tcp_tw_reuse")
ADVICE_TCP = "widen net.ipv4.ip_local_port_range or enable net.ipv4.tcp_tw_reuse"


def exhausted_text(port, time_wait, advice):
    return ("no free local port to connect to 127.0.0.1:%d: the %d ephemeral ports "
            "(net.ipv4.ip_local_port_range %d-%d) are exhausted towards it, %d sockets towards it "
            "in TIME_WAIT (to fix: %s)" % (port, HIGH - LOW + 1, LOW, HIGH, time_wait, advice))


def client(port, source_port):
    """A connection to 127.0.0.1:port from a fixed source port (outside the tiny range)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    harness.register_cleanup(s.close)
    s.bind(("127.0.0.1", source_port))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def get(target, source_port):
    """GET target with Connection: close; returns (status line, body) once sluice closes."""
    s = client(HTTP_PORT, source_port)
    s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target.encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0], body


def time_wait_towards(port):
    """Sockets in TIME_WAIT towards 127.0.0.1:port, as ss counts them."""
    p = sh(["ss", "-Htn", "state", "time-wait", "dst", "127.0.0.1:%d" % port])
    return len([l for l in p.stdout.splitlines() if l.strip()])


def start_sluice():
    listeners = [
        hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}], address="127.0.0.1:%d" % HTTP_PORT),
        {"name": "tcp_in", "address": "127.0.0.1:%d" % TCP_PORT, "protocol": "tcp", "cluster": "echo"},
    ]
    clusters = [
        hu.cluster("app", ["127.0.0.1:%d" % BACKEND_PORT], pool={"max_requests_per_connection": 1}),
        hu.cluster("echo", ["127.0.0.1:%d" % ECHO_PORT]),
    ]
    return hu.start_sluice(listeners, clusters, workers=1)


def case_http_pool():
    b = HttpBackend("a", port=BACKEND_PORT)
    sl = start_sluice()
    statuses = [get("/r%d" % i, 30000 + i)[0] for i in range(10)]
    check(statuses == [b"HTTP/1.1 200 OK"] * 10, "10 requests on 10 fresh upstream connections: 200 each",
          repr(statuses))
    warning = sl.wait_log("new connections in", 5)
    info("warning: %s" % warning)
    m = re.search(r"pool 127\.0\.0\.1:%d: opened (\d+) new connections in ([\d.]+)s on this worker "
                  r"\(at least ([\d.]+)/s\); at that rate the 10 ephemeral ports "
                  r"\(net\.ipv4\.ip_local_port_range %d-%d\) fill with TIME_WAIT in (\d+)s" %
                  (BACKEND_PORT, LOW, HIGH), warning or "")
    check(m is not None and int(m.group(1)) >= 2 and float(m.group(3)) >= 2.0 and int(m.group(4)) <= 5,
          "the early warning gives the measured rate (>= 2.0/s), the range 40000-40009 and when it fills",
          warning)
    check(len(sl.find_lines("new connections in")) == 1, "the early warning is logged once",
          "\n".join(sl.find_lines("new connections in")))
    tw = wait_until(lambda: time_wait_towards(BACKEND_PORT) == 10, 10, 0.05)
    check(tw, "the kernel shows 10 sockets in TIME_WAIT towards the backend (ss)",
          "%d" % time_wait_towards(BACKEND_PORT))
    status, body = get("/r10", 30010)
    want = "upstream connect error: " + exhausted_text(BACKEND_PORT, 10, ADVICE_HTTP)
    check(status == b"HTTP/1.1 503 Service Unavailable" and
          body == b"no local port left for an upstream connection\n",
          "the 11th request: 503 saying no local port is left, without internal addresses",
          "%r %r" % (status, body))
    line = sl.wait_log("GET /r10: ", 5)
    check(line is not None and line.endswith("GET /r10: " + want),
          "sluice logs the whole reason: the endpoint, the range and the TIME_WAIT count", line)
    check(b.stats()["requests"] == 10, "the backend saw the 10 requests only", repr(b.stats()))
    hu.stop_and_check(sl)
    b.stop()


def case_tcp_proxy():
    echo = EchoServer(port=ECHO_PORT)
    sl = start_sluice()
    for i in range(10):
        s = client(TCP_PORT, 31000 + i)
        ok = echo_roundtrip(s, b"x%d" % i)
        s.close()
        if not ok:
            break
    check(ok, "10 connections proxied to the echo server")
    tw = wait_until(lambda: time_wait_towards(ECHO_PORT) == 10, 10, 0.05)
    check(tw, "the kernel shows 10 sockets in TIME_WAIT towards the echo server (ss)",
          "%d" % time_wait_towards(ECHO_PORT))
    s = client(TCP_PORT, 31010)
    got = s.recv(10)
    check(got == b"", "the 11th connection is closed by sluice", repr(got))
    line = sl.wait_log("no endpoint reachable in cluster echo", 5)
    info("log: %s" % line)
    # the cluster's default max_connect_attempts: 3, each to the one endpoint
    failure = "127.0.0.1:%d: %s" % (ECHO_PORT, exhausted_text(ECHO_PORT, 10, ADVICE_TCP))
    check(line is not None and
          line.endswith("tcp tcp_in: closing downstream 127.0.0.1:31010: no endpoint reachable in cluster echo "
                        "after 3 attempts (%s)" % "; ".join([failure] * 3)),
          "the log line says the ports towards the endpoint are exhausted, with the range and the TIME_WAIT count",
          line)
    hu.stop_and_check(sl)
    echo.stop()


if __name__ == "__main__":
    hu.use_default_bin()
    harness.reexec_in_netns_or_skip()
    sh(["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=%d %d" % (LOW, HIGH)])
    sh(["sysctl", "-q", "-w", "net.ipv4.tcp_tw_reuse=0"])
    harness.run_cases([case_http_pool, case_tcp_proxy])

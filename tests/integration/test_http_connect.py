#!/usr/bin/env python3
"""CONNECT: refused with 405 unless the listener allows it; when allowed, routed by its
authority, forwarded upstream as CONNECT, and a 2xx answer turns both connections into a
byte tunnel that closes when both sides have finished."""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
import http_util as hu  # noqa: E402


class ConnectBackend(harness.TcpServer):
    """Answers CONNECT with 200 (or `status`), then echoes bytes upper-cased."""

    def __init__(self, status=200):
        self.status = status
        self.heads = []
        super().__init__()

    def handle(self, conn):
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = conn.recv(65536)
            if not d:
                return
            buf += d
        head, rest = buf.split(b"\r\n\r\n", 1)
        self.heads.append(head)
        if self.status != 200:
            body = b"denied"
            conn.sendall(b"HTTP/1.1 %d Nope\r\nContent-Length: %d\r\n\r\n%s" % (self.status, len(body), body))
            conn.close()
            return
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n" + rest.upper())
        while True:
            d = conn.recv(65536)
            if not d:
                break
            conn.sendall(d.upper())
        conn.close()


def start(backend, allow):
    routes = [{"match": {"prefix": "/"}, "cluster": "app"}]
    return hu.start_sluice([hu.simple_listener(routes, http={"allow_connect": allow})],
                           [hu.cluster("app", [backend])], workers=1)


def case_connect_refused_by_default():
    b = ConnectBackend()
    sl = start(b, False)
    r, _ = hu.raw_exchange(sl.port("web"), b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    check(r.startswith(b"HTTP/1.1 405"), "CONNECT without allow_connect: 405", repr(r[:80]))
    check(b.accepted == 0, "nothing reached the backend", "accepted %d" % b.accepted)
    hu.stop_and_check(sl)


def case_connect_tunnel():
    b = ConnectBackend()
    sl = start(b, True)
    s = harness.connect(sl.port("web"))
    s.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\nhello")
    got = b""
    s.settimeout(5)
    while b"HELLO" not in got:
        d = s.recv(65536)
        if not d:
            break
        got += d
    check(got.startswith(b"HTTP/1.1 200") and got.endswith(b"HELLO"),
          "CONNECT allowed: 200 then the tunnel carries bytes sent right behind the request", repr(got))
    check(b.heads and b.heads[0].startswith(b"CONNECT example.com:443 HTTP/1.1"),
          "the backend received CONNECT with the authority-form target", repr(b.heads[:1]))
    s.sendall(b" world")
    check(harness.recv_exact(s, 6) == b" WORLD", "bytes flow both ways through the tunnel")
    s.shutdown(socket.SHUT_WR)
    check(harness.wait_closed(s, 5), "half-close ends the tunnel: sluice closes the client side")
    s.close()
    hu.stop_and_check(sl)


def case_connect_denied_upstream():
    b = ConnectBackend(status=403)
    sl = start(b, True)
    r, _ = hu.raw_exchange(sl.port("web"), b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    check(r.startswith(b"HTTP/1.1 403") and b"Connection: close" in r and r.endswith(b"denied"),
          "an upstream refusal is passed on with its body and the connection closes", repr(r[:200]))
    hu.stop_and_check(sl)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_connect_refused_by_default, case_connect_tunnel, case_connect_denied_upstream])

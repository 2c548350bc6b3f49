#!/usr/bin/env python3
"""Upgrade (WebSocket-style) through the HTTP listener: after the backend's 101 the
connection is a byte tunnel (echo both ways, large payloads, half-close), and a
backend that refuses the upgrade keeps plain HTTP on the connection."""

import base64
import hashlib
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
from http_backend import HttpBackend, header_values  # noqa: E402
import http_util as hu  # noqa: E402

WS_KEY = base64.b64encode(b"sluice-test-key!").decode()
WS_ACCEPT = base64.b64encode(hashlib.sha1((WS_KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode())
                             .digest()).decode()


def start(backend):
    return hu.start_sluice([hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])],
                           [hu.cluster("app", [backend])])


def upgrade_request(path="/upgrade", extra=b""):
    return (b"GET %s HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path.encode(), WS_KEY.encode()) + extra)


def case_websocket_echo():
    b = HttpBackend("ws")
    sl = start(b)
    c = hu.Client(sl.port("web"), timeout=10)
    c.send(upgrade_request())
    r = c.read_response()
    check(r.status == 101, "upgrade request: 101 Switching Protocols", r.describe())
    check(r.header("upgrade") == "websocket" and "upgrade" in r.tokens("connection"),
          "the 101 keeps Upgrade: websocket and Connection: Upgrade", r.describe())
    check(r.header("sec-websocket-accept") == WS_ACCEPT, "Sec-WebSocket-Accept passes through", r.describe())
    rec = b.requests_for(lambda x: x["target"] == "/upgrade")[0]
    check(header_values(rec["headers"], "upgrade") == ["websocket"] and
          "upgrade" in ",".join(header_values(rec["headers"], "connection")).lower(),
          "the backend received Upgrade: websocket and Connection: upgrade", repr(rec["headers"]))
    # the tunnel: bytes both ways, including ones that look like HTTP
    for msg in (b"hello", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00\xff" * 1000):
        c.send(msg)
        c.reader.deadline = time.monotonic() + 5
        got = c.reader.read_exact(len(msg))
        c.reader.deadline = None
        check(got == msg, "echo of %d bytes through the tunnel" % len(msg), repr(got[:80]))
    # a large payload both ways at once
    payload = os.urandom(8 * 1024 * 1024)
    t = threading.Thread(target=c.sock.sendall, args=(payload,), daemon=True)
    t.start()
    c.reader.deadline = time.monotonic() + 30
    got = c.reader.read_exact(len(payload))
    c.reader.deadline = None
    t.join(10)
    check(hashlib.sha256(got).digest() == hashlib.sha256(payload).digest(),
          "8 MiB echoed intact through the tunnel", "got %d bytes" % len(got))
    # half-close: the client's FIN reaches the backend, which closes; the client sees EOF
    peer = "127.0.0.1:%d" % c.sock.getsockname()[1]
    c.sock.shutdown(socket.SHUT_WR)
    how, extra, took = c.wait_closed(5)
    check(how == "eof" and not extra, "client half-close propagates; the tunnel ends with EOF", "%s %r" % (how, extra))
    check(harness.wait_until(lambda: b.stats()["active"] == 0, 5), "the upstream tunnel connection is closed",
          repr(b.stats()))
    # both directions are finished: sluice must release the client connection now, not at shutdown
    closed = sl.wait_log("%s closed" % peer, 3)
    check(closed is not None, "sluice closes the finished tunnel (log '%s closed: ...')" % peer,
          hu.log_tail(sl, 10))
    c.close()
    hu.stop_and_check(sl)


def case_data_right_after_upgrade_request():
    b = HttpBackend("ws")
    sl = start(b)
    c = hu.Client(sl.port("web"), timeout=10)
    c.send(upgrade_request(extra=b"early bytes"))
    r = c.read_response()
    check(r.status == 101, "upgrade request with bytes right behind it: 101", r.describe())
    c.reader.deadline = time.monotonic() + 5
    try:
        got = c.reader.read_exact(len(b"early bytes"))
    except Exception as e:
        got = repr(e).encode()
    check(got == b"early bytes", "bytes sent right after the upgrade request reach the backend and come back",
          repr(got))
    c.close()
    hu.stop_and_check(sl)


def case_upgrade_refused_stays_http():
    b = HttpBackend("plain")
    sl = start(b)
    c = hu.Client(sl.port("web"), timeout=5)
    c.send(upgrade_request("/not-upgrading"))
    r = c.read_response()
    check(r.status == 200 and r.json()["target"] == "/not-upgrading",
          "backend answers the upgrade request with 200: passed through", r.describe())
    if "close" in r.tokens("connection"):
        how, extra, _ = c.wait_closed(3)
        check(how == "eof" and not extra, "the response said Connection: close, and sluice closes the connection",
              "%s %r" % (how, extra))
    else:
        r = c.request("GET", "/next")
        check(r.status == 200 and r.json()["target"] == "/next", "the connection keeps speaking HTTP", r.describe())
    c.close()
    hu.stop_and_check(sl)


def case_upgrade_answered_locally_closes():
    """An upgrade request that sluice answers itself (here 404: no route) is never followed
    on that connection: what the client sent behind it is the other protocol's bytes, not a
    request, and reading them as one would let a client smuggle a request past whatever in
    front of sluice switched to tunnelling when it saw the upgrade."""
    b = HttpBackend("app")
    sl = hu.start_sluice([hu.simple_listener([{"match": {"prefix": "/app"}, "cluster": "app"}])],
                         [hu.cluster("app", [b])])
    c = hu.Client(sl.port("web"), timeout=5)
    c.send(upgrade_request("/nowhere", extra=b"GET /app/smuggled HTTP/1.1\r\nHost: ws.test\r\n\r\n"))
    r = c.read_response()
    check(r.status == 404 and r.tokens("connection") == ["close"],
          "the upgrade request without a route: 404 with Connection: close", r.describe())
    how, extra, _ = c.wait_closed(3)
    check(how == "eof" and extra == b"", "sluice closes the connection after the 404, answering nothing more",
          "%s %r" % (how, extra))
    check(b.requests_for(lambda x: x["target"] == "/app/smuggled") == [],
          "the bytes behind the upgrade request never reach the backend as a request", repr(b.stats()))
    c.close()
    hu.stop_and_check(sl)


def case_many_tunnels():
    b = HttpBackend("ws")
    sl = start(b)
    clients = []
    for i in range(20):
        c = hu.Client(sl.port("web"), timeout=10)
        c.send(upgrade_request())
        clients.append(c)
    ok = 0
    for i, c in enumerate(clients):
        r = c.read_response()
        msg = b"tunnel %d" % i
        c.send(msg)
        c.reader.deadline = time.monotonic() + 5
        if r.status == 101 and c.reader.read_exact(len(msg)) == msg:
            ok += 1
        c.reader.deadline = None
    check(ok == 20, "20 concurrent tunnels each echo their own bytes", "%d ok" % ok)
    peers = ["127.0.0.1:%d" % c.sock.getsockname()[1] for c in clients]
    for c in clients:
        c.close()
    check(harness.wait_until(lambda: b.stats()["active"] == 0, 5),
          "closing the clients closes every upstream tunnel connection", repr(b.stats()))
    done = harness.wait_until(lambda: all(sl.find_lines("%s closed" % p) for p in peers), 3)
    missing = [p for p in peers if not sl.find_lines("%s closed" % p)]
    check(done, "sluice releases all 20 client connections of the closed tunnels (log '<peer> closed')",
          "%d of 20 still open: %s\n%s" % (len(missing), " ".join(missing), hu.log_tail(sl, 10)))
    hu.stop_and_check(sl)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_websocket_echo, case_data_right_after_upgrade_request, case_upgrade_refused_stays_http,
                       case_upgrade_answered_locally_closes, case_many_tunnels])

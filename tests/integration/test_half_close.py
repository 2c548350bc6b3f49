#!/usr/bin/env python3
"""Half-close and reset propagation.

- The client sends a request and shuts down its write side; the backend sees
  EOF, then sends a 5 MB answer and closes; the client receives all of it.
- The backend aborts with an RST: the client sees a reset (ConnectionResetError).
- The client aborts with an RST: the backend sees a reset.
"""

import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (FLAG_ANSWER_AFTER_EOF, DataClient, DataServer, ResetServer, Sluice, TcpServer, check,
                     check_clean_exit, connect, recv_until_closed, run_cases, tcp_config, verify_exchange,
                     wait_until)

ANSWER = 5 * 1024 * 1024


def half_close(splice):
    with DataServer() as backend:
        with Sluice(tcp_config([backend.address], listener={"splice": splice})) as sl:
            req = 64 * 1024
            client = DataClient(sl.port(), 7, req, ANSWER, flags=FLAG_ANSWER_AFTER_EOF, timeout=30)
            done = client.wait(30)
            check(done, "client receives the answer after shutting its write side (splice: %s)"
                  % str(splice).lower(),
                  "client got %d of %d bytes\n%s" % (client.recv.nbytes, ANSWER, sl.stderr_text()[-3000:]))
            r = backend.results.get(7)
            check(r is not None and r["recv"].done.is_set() and r["recv"].nbytes == req,
                  "backend saw EOF after the whole request", repr(r and r["recv"].nbytes))
            problem = verify_exchange(backend, client, req, ANSWER)
            check(problem is None, "full 5 MB answer arrives intact after the client's FIN", problem)
            check(client.recv.error is None, "client sees a clean EOF at the end", repr(client.recv.error))
            client.close()
            check_clean_exit(sl, sl.stop())


def test_half_close_splice():
    half_close(True)


def test_half_close_buffered():
    half_close(False)


def test_backend_half_close_reaches_client():
    """Other direction: the backend shuts its write side first; the client sees EOF but can still send."""
    class BackendFinFirst(TcpServer):
        def __init__(self, *a, **kw):
            self.got = bytearray()
            self.got_eof = threading.Event()
            super().__init__(*a, **kw)

        def handle(self, conn):
            conn.sendall(b"hello, then FIN")
            conn.shutdown(socket.SHUT_WR)
            while True:
                d = conn.recv(65536)
                if not d:
                    break
                self.got += d
            self.got_eof.set()

    with BackendFinFirst() as backend:
        with Sluice(tcp_config([backend.address])) as sl:
            s = connect(sl.port())
            data, how = recv_until_closed(s, 5)
            check(how == "eof" and data == b"hello, then FIN", "client gets the backend's data, then EOF",
                  "data=%r how=%s" % (data, how))
            payload = b"x" * 200000
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            check(backend.got_eof.wait(10) and bytes(backend.got) == payload,
                  "client can still send after the backend's FIN; backend receives all, then EOF",
                  "backend got %d bytes, eof=%s" % (len(backend.got), backend.got_eof.is_set()))
            s.close()
            check_clean_exit(sl, sl.stop())


def test_backend_rst_reaches_client():
    with ResetServer() as backend:
        with Sluice(tcp_config([backend.address])) as sl:
            s = connect(sl.port())
            s.sendall(b"hello")
            check(backend.got_first.wait(5), "backend receives the client's first bytes")
            data, how = recv_until_closed(s, 5)
            check(how == "reset", "backend's RST reaches the client as a reset (ConnectionResetError)",
                  "client saw %s (data %r)" % (how, data))
            s.close()
            check_clean_exit(sl, sl.stop())


def test_client_rst_reaches_backend():
    class Watcher(TcpServer):
        def __init__(self, *a, **kw):
            self.outcome = None
            self.got_first = threading.Event()
            super().__init__(*a, **kw)

        def handle(self, conn):
            conn.settimeout(10)
            try:
                conn.recv(65536)
                self.got_first.set()
                d = conn.recv(65536)
                self.outcome = "eof" if not d else "data"
            except ConnectionResetError:
                self.outcome = "reset"
            except socket.timeout:
                self.outcome = "timeout"

    with Watcher() as backend:
        with Sluice(tcp_config([backend.address])) as sl:
            s = connect(sl.port())
            s.sendall(b"hello")
            check(backend.got_first.wait(5), "backend receives the client's first bytes")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
            wait_until(lambda: backend.outcome is not None, 10)
            check(backend.outcome == "reset", "client's RST reaches the backend as a reset",
                  "backend saw %s" % backend.outcome)
            check_clean_exit(sl, sl.stop())


def test_backend_sends_and_closes_before_client_reads():
    """The backend writes 1 MB and closes at once; the client only starts reading after that:
    sluice must deliver every byte it holds before passing the close on."""
    size = 1024 * 1024
    payload = os.urandom(size)

    class SendAndClose(TcpServer):
        def __init__(self, *a, **kw):
            self.closed = threading.Event()
            super().__init__(*a, **kw)

        def handle(self, conn):
            conn.sendall(payload)
            conn.close()
            self.closed.set()

    with SendAndClose() as backend:
        with Sluice(tcp_config([backend.address])) as sl:
            s = connect(sl.port())
            check(backend.closed.wait(20), "backend wrote 1 MB and closed while the client was not reading")
            data, how = recv_until_closed(s, 20)
            check(how == "eof" and data == payload, "client then receives all 1 MB and EOF",
                  "got %d bytes, %s" % (len(data), how))
            s.close()
            check_clean_exit(sl, sl.stop())


def test_client_sends_and_closes_at_once():
    """The client writes 3 MB and closes (not just shuts down) at once; the backend gets every byte."""
    size = 3 * 1024 * 1024
    payload = os.urandom(size)

    class Collect(TcpServer):
        def __init__(self, *a, **kw):
            self.got = bytearray()
            self.eof = threading.Event()
            super().__init__(*a, **kw)

        def handle(self, conn):
            while True:
                d = conn.recv(262144)
                if not d:
                    break
                self.got += d
            self.eof.set()

    with Collect() as backend:
        with Sluice(tcp_config([backend.address])) as sl:
            s = connect(sl.port())
            s.sendall(payload)
            s.close()
            check(backend.eof.wait(20), "backend sees EOF after the client closed", "got %d" % len(backend.got))
            check(bytes(backend.got) == payload, "backend received all 3 MB", "got %d bytes" % len(backend.got))
            check_clean_exit(sl, sl.stop())


if __name__ == "__main__":
    run_cases([test_half_close_splice, test_half_close_buffered, test_backend_half_close_reaches_client,
               test_backend_rst_reaches_client, test_client_rst_reaches_backend,
               test_backend_sends_and_closes_before_client_reads, test_client_sends_and_closes_at_once])

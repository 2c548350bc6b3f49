"""The backend many people run: Python's http.server, a ThreadingHTTPServer with keep-alive,
as it comes (Nagle's algorithm on, its listen backlog of 5). A response's head and its body
leave in two sends, so on a reused connection the body waits for the peer's ACK of the head.

It runs in a process of its own (NagleBackendProcess, or `python3 nagle_backend.py`, which
prints "listening on 127.0.0.1:PORT"), so that a test's clients and log readers do not share
its interpreter lock.

  GET  any path   200, a body of 100 bytes
  POST any path   200, "got N\\n" for a request body of N bytes
"""

import http.server
import os
import re
import select
import signal
import subprocess
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def do_GET(self):  # noqa: N802
        body = b"x" * 100
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()  # one send for the head ...
        self.wfile.write(body)  # ... and one for the body: Nagle holds it until the ACK

    def do_POST(self):  # noqa: N802
        n = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(n)
        body = b"got %d\n" % len(data)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class NagleBackendProcess:
    """This module as a process of its own on 127.0.0.1:<ephemeral>."""

    def __init__(self):
        import harness  # the test's module, beside this one

        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     preexec_fn=harness.die_with_parent)
        harness.register_cleanup(self.stop)
        line = b""
        deadline = time.monotonic() + 15
        while not line.endswith(b"\n"):
            r, _, _ = select.select([self.proc.stdout], [], [], max(0, deadline - time.monotonic()))
            if not r:
                raise RuntimeError("the Python backend did not report its port")
            b = os.read(self.proc.stdout.fileno(), 1)
            if not b:
                raise RuntimeError("the Python backend exited (%s)" % self.proc.poll())
            line += b
        self.port = int(re.search(rb"listening on 127\.0\.0\.1:(\d+)", line).group(1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def main():
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""HTTP/2 flow-control windows on a long path: through a path that delays every byte by 10 ms
each way (a 20 ms round trip: tc netem on the loopback of a network namespace where the kernel
has netem, else a relay that holds each chunk 10 ms before passing it on), an 8 MiB upload
through sluice with its default windows (1 MiB per stream, 4 MiB per connection) is not held
to HTTP/2's 64 KiB default, which allows one window per round trip (64 KiB / 20 ms = 3.2 MB/s,
so at least 2.6 s for 8 MiB). The same upload to a listener announcing 64 KiB windows is the
control: it shows the throttle is real on this path."""

import hashlib
import json
import os
import collections
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
from http_backend import HttpBackend  # noqa: E402
import http_util as hu  # noqa: E402

SIZE = 8 * 1024 * 1024


DELAY = 0.010


class DelayRelay(harness.TcpServer):
    """Passes bytes both ways between a client and 127.0.0.1:target, each chunk DELAY late."""

    def __init__(self, target):
        self.target = target
        super().__init__()

    def handle(self, conn):
        up = socket.create_connection(("127.0.0.1", self.target))
        done = threading.Event()
        ts = [threading.Thread(target=self._pipe, args=(conn, up, done), daemon=True),
              threading.Thread(target=self._pipe, args=(up, conn, done), daemon=True)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        for s in (conn, up):
            s.close()

    def _pipe(self, src, dst, done):
        q = collections.deque()
        cv = threading.Condition()

        def sender():
            while True:
                with cv:
                    while not q:
                        cv.wait()
                    due, data = q.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)  # the delay being simulated, not a synchronisation
                if data is None:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                try:
                    dst.sendall(data)
                except OSError:
                    return
        t = threading.Thread(target=sender, daemon=True)
        t.start()
        while True:
            try:
                data = src.recv(262144)
            except OSError:
                data = b""
            with cv:
                q.append((time.monotonic() + DELAY, data or None))
                cv.notify()
            if not data:
                break
        t.join(120)


def netem_available():
    p = subprocess.run(["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "10ms"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p.returncode == 0


def upload(port, path):
    t0 = time.monotonic()
    with open(path, "rb") as f:
        p = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-X", "POST", "--data-binary", "@-",
                            "-H", "content-type: application/octet-stream",
                            "http://127.0.0.1:%d/sink" % port], stdin=f, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60, preexec_fn=harness.die_with_parent)
    took = time.monotonic() - t0
    try:
        r = json.loads(p.stdout)
    except ValueError:
        r = {"raw": p.stdout[:200], "stderr": p.stderr.decode("utf-8", "replace")}
    return r, took


def case_upload_not_throttled_by_a_64k_window():
    netem = netem_available()
    info("the 20 ms round trip: %s" % ("tc netem on lo" if netem else
                                          "a delaying relay (this kernel has no netem qdisc)"))
    b = HttpBackend("b")
    small = {"prior_knowledge": True, "initial_stream_window": 65535, "initial_connection_window": 65535}
    sl = hu.start_sluice([hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}],
                                             http2={"prior_knowledge": True}),
                          hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}], name="small",
                                             http2=small)],
                         [hu.cluster("app", [b])])
    blob = os.urandom(SIZE)
    want = hashlib.sha256(blob).hexdigest()
    path = "/tmp/sluice-h2-window-%d" % os.getpid()
    with open(path, "wb") as f:
        f.write(blob)
    harness.register_cleanup(lambda: os.path.exists(path) and os.unlink(path))
    ports = {"small": sl.port("small"), "web": sl.port("web")}
    if not netem:
        for name in ports:
            relay = DelayRelay(ports[name])
            harness.register_cleanup(relay.stop)
            ports[name] = relay.port
    r_small, t_small = upload(ports["small"], path)
    r_big, t_big = upload(ports["web"], path)
    info("8 MiB upload over a 20 ms round trip: %.2f s with 64 KiB windows, %.2f s with the defaults"
         % (t_small, t_big))
    for r, what in ((r_small, "64 KiB windows"), (r_big, "default windows")):
        check(r.get("body_len") == SIZE and r.get("body_sha256") == want,
              "the upload arrives whole (%s)" % what, repr(r))
    check(t_small >= 2.0, "64 KiB windows hold the upload to about one window per round trip (%.2f s >= 2.0 s)"
          % t_small)
    check(t_big * 2.5 < t_small, "the default windows upload at least 2.5x faster (%.2f s vs %.2f s)"
          % (t_big, t_small))
    hu.stop_and_check(sl)


if __name__ == "__main__":
    harness.reexec_in_netns_or_skip()
    hu.use_default_bin()
    harness.run_cases([case_upload_not_throttled_by_a_64k_window])

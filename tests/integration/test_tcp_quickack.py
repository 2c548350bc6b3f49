"""Nagle against delayed ACK, absorbed: a Python http.server backend (keep-alive, Nagle on,
the response head and body written in two sends) behind sluice. On a reused connection the
backend holds its body until sluice's kernel acknowledges the head, which a delayed ACK puts
off by 40 ms or more; sluice acknowledges at once after a small read that leaves a response
incomplete (socket_options.quickack, on by default). Measured both ways in one run: with
quickack off every request waits for the delayed ACK, with it on they do not. The same for a
client that writes a POST's head and body separately, Nagle on, on a reused connection."""

import http.server
import os
import socket
import socketserver
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
import http_util as hu  # noqa: E402
import test_metrics as tm  # noqa: E402

CLIENTS = 8
REQUESTS_PER_CLIENT = 10
SINGLE_REQUESTS = 21  # one client: 20 timed after the first


class _Handler(http.server.BaseHTTPRequestHandler):
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


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def start_backend():
    srv = _Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    harness.register_cleanup(srv.shutdown)
    return srv.server_address[1]


def per_request_ms(port, path="/x", clients=CLIENTS, requests=REQUESTS_PER_CLIENT):
    """`clients` keep-alive clients, `requests` each (the first on each warms the upstream
    connection and is not counted): the median milliseconds per request."""
    times, errors = [], []
    lock = threading.Lock()

    def client():
        try:
            c = hu.Client(port, timeout=10)
            for i in range(requests):
                t0 = time.monotonic()
                r = c.request("GET", path)
                dt = (time.monotonic() - t0) * 1000
                if r.status != 200:
                    raise RuntimeError("status %d" % r.status)
                if i > 0:
                    with lock:
                        times.append(dt)
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(repr(e))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check(not errors and len(times) == clients * (requests - 1),
          "every request through sluice answered 200", repr(errors[:3]))
    return statistics.median(times)


def start(backend_port, quickack):
    cluster = hu.cluster("py", ["127.0.0.1:%d" % backend_port],
                         socket_options={"quickack": quickack})
    listener = hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "py"}],
                                  socket_options={"quickack": quickack})
    # At info: a debug line per request would keep the test's log reader thread busy, and it
    # shares one interpreter lock with the backend and the clients being timed.
    sl = harness.Sluice(tm.make_config([listener], [cluster], workers=1), log_level="info")
    line = sl.wait_log(tm.ADMIN_RE, 5)
    check(line is not None, "sluice's admin listener is up", sl.stderr_text())
    return sl, int(tm.ADMIN_RE.search(line).group(1))


def case_nagle_backend():
    port = start_backend()
    medians = {}
    single = {}
    acks = {}
    stalls = {}
    for quickack in (False, True):
        sl, ap = start(port, quickack)
        medians[quickack] = per_request_ms(sl.port("web"))
        # One client alone: the time each request costs, without the queueing of 8 clients
        # on one worker and one Python interpreter (backend and clients share its lock).
        single[quickack] = per_request_ms(sl.port("web"), clients=1, requests=SINGLE_REQUESTS)
        m = tm.scrape(ap)
        acks[quickack] = m.get("sluice_cluster_quick_acks_total", cluster="py")
        stalls[quickack] = m.get("sluice_cluster_delayed_ack_stalls_total", cluster="py")
        hu.stop_and_check(sl)
    harness.info("median per request, 8 clients: quickack off %.1f ms, on %.1f ms; one client: off %.1f ms, "
                 "on %.2f ms (%.0fx)" % (medians[False], medians[True], single[False], single[True],
                                         single[False] / single[True]))
    check(medians[False] >= 30,
          "quickack off: a reused connection waits for the delayed ACK (median %.1f ms >= 30 ms)" % medians[False])
    # (with it on, the Python backend's own speed with 8 clients sets the pace: a few ms)
    # (the stall counter below is the exact signal; the times only show its size, and a busy
    # machine slows the Python backend itself, so the margin here is 2x, not the 7x measured
    # on an idle one)
    check(medians[True] < 30 and medians[False] >= 2 * medians[True],
          "quickack on: below the delayed-ACK band and at least 2x faster per request (%.1f ms against %.1f ms)"
          % (medians[True], medians[False]))
    # The trap's cost per request, alone. Measured 36-70x with the sanitizer build on a busy
    # two-core machine in most runs, but 7x and 12x in some (another process took the CPU
    # during the 20 timed requests): the bound is 5x, not 10x, so that it does not fail
    # with the machine's load. With 8 clients the worker's CPU time per request under the
    # sanitizer, queued 8 deep, sets the pace instead: 4-7x there, hence the 2x above.
    check(single[False] >= 5 * single[True],
          "one client: quickack on makes each reused request at least 5x faster (%.2f ms against %.1f ms)"
          % (single[True], single[False]))
    # Named: each stalled response (a reused connection, body 35-250 ms after its head) moves a
    # counter and gets the access-log flag delayed_ack_stall.
    check(stalls[False] >= CLIENTS * (REQUESTS_PER_CLIENT - 1) // 2 and stalls[True] == 0,
          "sluice_cluster_delayed_ack_stalls_total: most reused requests with quickack off (%r of %d), "
          "none with it on" % (stalls[False], CLIENTS * (REQUESTS_PER_CLIENT - 1)), repr(stalls))
    # (not one per request: when the head and the body arrive in one read there is nothing to ACK early)
    check(acks[False] == 0 and acks[True] >= 1,
          "sluice_cluster_quick_acks_total: 0 with quickack off, counted with it on (%r)" % acks[True], repr(acks))


def post_in_two_writes_ms(port, n=6):
    """One keep-alive connection, Nagle on (no TCP_NODELAY): POST head and body in two sends.
    The first request warms the connection; the median of the others in milliseconds."""
    s = harness.connect(port, timeout=10)
    reader = hu.SockReader(s)
    body = b"b" * 50
    times = []
    for i in range(n):
        head = ("POST /p HTTP/1.1\r\nHost: test.local\r\nContent-Length: %d\r\n\r\n" % len(body)).encode()
        t0 = time.monotonic()
        s.sendall(head)
        s.sendall(body)
        r = hu.read_response(reader, "POST")
        if r.status != 200 or r.body != b"got 50\n":
            raise harness.CheckFailed_with("POST answered 200 'got 50'", r.describe())
        if i > 0:
            times.append((time.monotonic() - t0) * 1000)
    s.close()
    return statistics.median(times)


def case_client_writes_head_and_body_apart():
    port = start_backend()
    medians = {}
    acks = {}
    for quickack in (False, True):
        sl, ap = start(port, quickack)
        medians[quickack] = post_in_two_writes_ms(sl.port("web"))
        acks[quickack] = tm.scrape(ap).get("sluice_http_quick_acks_total", listener="web")
        hu.stop_and_check(sl)
    harness.info("POST in two writes, median: quickack off %.1f ms, on %.1f ms" % (medians[False], medians[True]))
    check(medians[False] >= 30,
          "quickack off: the client's body waits for sluice's delayed ACK of the head (%.1f ms)" % medians[False])
    check(medians[True] * 5 <= medians[False],
          "quickack on: the body follows at once (%.1f ms against %.1f ms)" % (medians[True], medians[False]))
    check(acks[False] == 0 and acks[True] >= 1,
          "sluice_http_quick_acks_total: 0 off, counted on (%r)" % acks[True], repr(acks))


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_nagle_backend, case_client_writes_head_and_body_apart])

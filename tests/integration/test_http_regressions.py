#!/usr/bin/env python3
"""Regressions in the HTTP proxy path, each with an upstream or client that misbehaves in a
precise way: bytes past the end of a response are not taken as the next client's response;
an upstream FIN or stray bytes while a response is handed to a slow client leaves the pool
intact; a request body that outgrows the replay buffer while a retry waits is answered 502
and never re-sent truncated (and `retries.replay_buffer` is accepted); an active tunnel
outlives upstream_idle_timeout; a client that pipelines without reading keeps VmRSS bounded;
a Connection: close response to a slow reader is delivered whole."""

import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
from http_backend import HttpBackend, PeerClosed, SockReader, parse_head, pattern_bytes, read_chunked  # noqa: E402
import http_util as hu  # noqa: E402


# --------------------------------------------------------------------------
# pieces shared by the cases


class ScriptedBackend(harness.TcpServer):
    """A raw HTTP/1.1 upstream: script(backend, conn_no, req_no, start_line, reader, sock) answers
    each request head (conn_no and req_no count from 1) and returns False to end the connection.
    Every request head is recorded in .heads as (conn_no, req_no, start_line)."""

    def __init__(self, script):
        self.script = script
        self.heads = []
        self.socks = {}
        self._conn_no = 0
        super().__init__()

    def handle(self, conn):
        with self._lock:
            self._conn_no += 1
            n = self._conn_no
            self.socks[n] = conn
        reader = SockReader(conn)
        k = 0
        while True:
            try:
                head = reader.read_until(b"\r\n\r\n", 1 << 20)
            except PeerClosed:
                return
            k += 1
            start, _ = parse_head(head)
            with self._lock:
                self.heads.append((n, k, start))
            if self.script(self, n, k, start, reader, conn) is False:
                return

    def heads_on(self, pred):
        with self._lock:
            return [h for h in self.heads if pred(h)]


def ok_response(body, extra_headers=b""):
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra_headers, body)


def route(**kw):
    r = {"match": {"prefix": "/"}, "cluster": "app"}
    r.update(kw)
    return r


def start(backend, routes=None, workers=1, **kw):
    return hu.start_sluice([hu.simple_listener(routes or [route()])], [hu.cluster("app", [backend])],
                           workers=workers, **kw)


def slow_client_socket(port, rcvbuf):
    """A client socket with a small receive buffer (set before connecting, so the window is small)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    harness.register_cleanup(s.close)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def tcp_socket_state(local_port, remote_port):
    """(state, tx_queue, rx_queue) of the loopback IPv4 TCP socket local_port -> remote_port, or None
    (TIME_WAIT entries are skipped)."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            if (p[3] != "06" and int(p[1].rsplit(":", 1)[1], 16) == local_port and
                    int(p[2].rsplit(":", 1)[1], 16) == remote_port):
                tx, rx = p[4].split(":")
                return int(p[3], 16), int(tx, 16), int(rx, 16)
    return None


def request_log_for(sl, target):
    return [r for r in hu.request_log(sl) if r["target"] == target]


def safe_request(port, method, target, timeout=10.0):
    """request_once that returns the exception instead of raising it."""
    try:
        return hu.request_once(port, method, target, timeout=timeout)
    except Exception as e:  # reset, EOF or timeout: reported by the caller's check
        return e


def describe(r):
    return r.describe() if isinstance(r, hu.Response) else repr(r)


class RssSampler:
    """Samples VmRSS of a process every 20 ms in a thread."""

    def __init__(self, pid):
        self.pid = pid
        self.samples = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        harness.register_cleanup(self.stop)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.samples.append(hu.vmrss_kib(self.pid))
            except OSError:
                return
            self._stop.wait(0.02)

    def peak(self):
        return max(self.samples) if self.samples else -1

    def stop(self):
        self._stop.set()
        self._t.join(2)
        return self.peak()


# --------------------------------------------------------------------------
# 1. bytes past the end of a response


def case_bytes_past_a_response_are_not_the_next_response():
    leftover = ok_response(b"LEFTOVER", b"X-Leftover: 1\r\n")

    def script(be, n, k, start_line, reader, sock):
        target = start_line.split()[1]
        resp = ok_response(("answer for %s" % target).encode())
        if n == 1 and k == 1:
            resp += leftover  # a whole second response nobody asked for, in the same write
        sock.sendall(resp)

    be = ScriptedBackend(script)
    sl = start(be)
    port = sl.port("web")
    a = safe_request(port, "GET", "/a")
    check(isinstance(a, hu.Response) and a.status == 200 and a.body == b"answer for /a",
          "client A gets its response (the upstream appends a second, unrequested response)", describe(a))
    for i, target in enumerate(("/b", "/c", "/d")):
        r = safe_request(port, "GET", target)
        check(isinstance(r, hu.Response) and r.status == 200 and
              r.body == ("answer for %s" % target).encode() and not r.has("x-leftover"),
              "client %s on another connection gets its own response to %s, not the leftover bytes" %
              ("BCD"[i], target), describe(r) + "\n" + hu.log_tail(sl, 12))
    got = [h[2] for h in be.heads_on(lambda h: True)]
    check(got == ["GET /a HTTP/1.1", "GET /b HTTP/1.1", "GET /c HTTP/1.1", "GET /d HTTP/1.1"],
          "the upstream received each request once, in order", repr(be.heads))
    check(not be.heads_on(lambda h: h[0] == 1 and h[1] > 1),
          "the upstream connection with unread bytes past its response was not used again", repr(be.heads))
    hu.stop_and_check(sl)


# --------------------------------------------------------------------------
# 2. upstream FIN or stray bytes while a response goes to a slow client

INTERIM_COUNT = 512  # ~4 MiB of 103 responses: far more than the client's socket buffers hold
INTERIM = (b"HTTP/1.1 103 Early Hints\r\nLink: </static/" + b"x" * 8000 + b">; rel=preload\r\n\r\n")
FINAL_FIRST = ok_response(b"first")


def _handoff_to_slow_client(mode):
    """The upstream's answer to client A (which does not read) is ~4 MiB of 103 responses and
    then a 5-byte 200, so that when the 200 completes, A's output is far above the high
    watermark and sluice has stopped reading the upstream connection. The 200 is followed by
    a FIN (mode 'fin') or a stray byte (mode 'stray') in the same TCP segment (TCP_CORK), sent
    once sluice has read every interim response, so sluice reads them together with the 200."""
    interims_sent = threading.Event()
    go = threading.Event()
    tail_sent = threading.Event()
    tail = FINAL_FIRST + (b"X" if mode == "stray" else b"")

    def script(be, n, k, start_line, reader, sock):
        if n == 1 and k == 1:
            sock.sendall(INTERIM * INTERIM_COUNT)
            interims_sent.set()
            if not go.wait(30):
                return False
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            sock.sendall(tail)
            if mode == "fin":
                sock.shutdown(socket.SHUT_WR)  # the FIN rides on the corked segment
            else:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
            tail_sent.set()
            # keep the socket open until sluice closes it (or the backend stops)
            try:
                while sock.recv(65536):
                    pass
            except OSError:
                pass
            return False
        sock.sendall(ok_response(b"second"))

    be = ScriptedBackend(script)
    sl = start(be)
    port = sl.port("web")
    a = slow_client_socket(port, 4096)
    a.sendall(b"GET /first HTTP/1.1\r\nHost: test.local\r\n\r\n")
    check(interims_sent.wait(20), "the upstream wrote %d interim responses (%d bytes) to client A, which does "
          "not read" % (INTERIM_COUNT, INTERIM_COUNT * len(INTERIM)), hu.log_tail(sl))
    up = be.socks[1]
    be_port, sl_port = up.getsockname()[1], up.getpeername()[1]

    def all_read():
        st_be, st_sl = tcp_socket_state(be_port, sl_port), tcp_socket_state(sl_port, be_port)
        return st_be is not None and st_sl is not None and st_be[1] == 0 and st_sl[2] == 0
    check(harness.wait_until(all_read, 20), "sluice has read all interim responses from the upstream",
          "backend %r, sluice %r" % (tcp_socket_state(be_port, sl_port), tcp_socket_state(sl_port, be_port)))

    go.set()
    check(tail_sent.wait(10), "the upstream sent the final response%s in one segment" %
          (" and its FIN" if mode == "fin" else " and one stray byte"))
    check(harness.wait_until(lambda: request_log_for(sl, "/first"), 10),
          "sluice finishes client A's exchange (request log line for /first)", hu.log_tail(sl))
    info("request log: %s" % request_log_for(sl, "/first")[0]["line"])
    check(sl.alive(), "sluice is still running", hu.log_tail(sl, 60))

    r = safe_request(port, "GET", "/second")
    check(isinstance(r, hu.Response) and r.status == 200 and r.body == b"second",
          "client B then gets its own response", describe(r) + "\n" + hu.log_tail(sl, 60))
    check(be.heads_on(lambda h: h[2] == "GET /second HTTP/1.1" and h[0] >= 2),
          "client B's request went over a new upstream connection", repr(be.heads))
    check(sl.alive(), "sluice is still running after client B", hu.log_tail(sl, 60))

    reader = SockReader(a)
    reader.deadline = time.monotonic() + 20
    try:
        resp = hu.read_response(reader)
    except Exception as e:
        resp = e
    check(isinstance(resp, hu.Response) and resp.status == 200 and resp.body == b"first" and
          len(resp.interim) == INTERIM_COUNT and all(st == 103 for st, _ in resp.interim),
          "client A, reading at last, gets the %d interim responses and its 200 with body 'first'" %
          INTERIM_COUNT, describe(resp) if isinstance(resp, hu.Response) else repr(resp))
    a.close()
    hu.stop_and_check(sl)


def case_upstream_fin_during_slow_handoff():
    _handoff_to_slow_client("fin")


def case_upstream_stray_bytes_during_slow_handoff():
    _handoff_to_slow_client("stray")


# --------------------------------------------------------------------------
# 3. body outgrowing the replay buffer while a retry waits

REPLAY_BUFFER = 16 * 1024


def _chunk(data):
    return b"%x\r\n" % len(data) + data + b"\r\n"


def _retry_with_body_growing(b_len):
    """Client A sends a chunked PUT: 500 'A's, the first upstream connection resets once they
    arrived, and while the retry waits out its backoff (0.5-1 s) the client sends b_len 'B's,
    then, once the retry connected, 100 'C's and the last chunk.
    Returns (sluice, backend, response or exception, bodies received by later connections)."""
    first_body_in = threading.Event()
    later = []

    def script(be, n, k, start_line, reader, sock):
        if n == 1:
            while bytes(reader.buf).count(b"A") < 500:
                reader._fill()
            first_body_in.set()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False  # closed with RST, no response
        parts = []
        reader.deadline = time.monotonic() + 10
        read_chunked(reader, parts.append)
        reader.deadline = None
        body = b"".join(parts)
        with be._lock:
            later.append((n, start_line, body))
        sock.sendall(ok_response(b"got %d body bytes" % len(body)))

    be = ScriptedBackend(script)
    rt = route(retries={"retry_on": ["reset-before-response"], "num_retries": 1,
                        "backoff": {"base": "1s", "max": "1s"}, "replay_buffer": "16KiB"})
    sl = start(be, routes=[rt])
    p = harness.run_sluice_cmd(["check", "-c", sl.config_path])
    check(p.returncode == 0, "`sluice check` accepts retries.replay_buffer: 16KiB",
          "rc=%d\n%s%s\n%s" % (p.returncode, p.stdout, p.stderr, sl.config_text))
    c = hu.Client(sl.port("web"), timeout=10)
    c.send(b"PUT /up HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunk(b"A" * 500))
    check(first_body_in.wait(10), "the first upstream connection received the first 500 body bytes, then reset",
          hu.log_tail(sl))
    line = sl.wait_log("retry 1 of 1", 10)
    check(line is not None, "sluice schedules a retry after the reset", hu.log_tail(sl))
    info(line)
    c.send(_chunk(b"B" * b_len))
    check(harness.wait_until(lambda: be.accepted >= 2, 10), "the retry opens a second upstream connection",
          hu.log_tail(sl))
    try:
        c.send(_chunk(b"C" * 100) + b"0\r\n\r\n")
    except OSError as e:  # sluice may already have answered and closed
        info("sending the rest of the body: %r" % e)
    try:
        r = c.read_response(timeout=10)
    except Exception as e:
        r = e
    c.close()
    return sl, be, r, later


def case_body_outgrowing_replay_buffer_during_retry():
    sl, be, r, later = _retry_with_body_growing(2 * REPLAY_BUFFER + 1000)
    check(isinstance(r, hu.Response) and r.status == 502,
          "a body that outgrew the %d-byte replay buffer while the retry waited: the client gets 502" %
          REPLAY_BUFFER, describe(r) + "\n" + hu.log_tail(sl, 20))
    check(not be.heads_on(lambda h: h[0] >= 2) and not later,
          "the retry connection received no request at all (no truncated body)",
          "requests %r, bodies %r" % (be.heads, [(n, s, len(b)) for n, s, b in later]))
    hu.stop_and_check(sl)


def case_body_within_replay_buffer_is_resent_whole():
    sl, be, r, later = _retry_with_body_growing(1000)
    full = b"A" * 500 + b"B" * 1000 + b"C" * 100
    check(isinstance(r, hu.Response) and r.status == 200 and r.body == b"got %d body bytes" % len(full),
          "a body that fits the replay buffer: the retry succeeds with 200", describe(r) + "\n" + hu.log_tail(sl, 20))
    check(len(later) == 1 and later[0][2] == full,
          "the retry connection received the whole %d-byte body" % len(full),
          repr([(n, s, len(b), b.count(b"A"), b.count(b"B"), b.count(b"C")) for n, s, b in later]))
    hu.stop_and_check(sl)


# --------------------------------------------------------------------------
# 4. an active tunnel and upstream_idle_timeout

def case_active_tunnel_outlives_upstream_idle_timeout():
    b = HttpBackend("ws")
    sl = start(b, routes=[route(upstream_idle_timeout="1s")])
    c = hu.Client(sl.port("web"), timeout=10)
    c.send(b"GET /upgrade HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    r = c.read_response()
    check(r.status == 101, "upgrade: 101 Switching Protocols", r.describe())
    t0 = time.monotonic()
    echoed = 0
    failure = None
    for i in range(15):  # a message every 200 ms for 3 s: never idle for the 1 s limit
        msg = b"ping %d" % i
        try:
            c.send(msg)
            c.reader.deadline = time.monotonic() + 2
            got = c.reader.read_exact(len(msg))
        except Exception as e:
            failure = "message %d after %.2f s: %r" % (i, time.monotonic() - t0, e)
            break
        finally:
            c.reader.deadline = None
        if got != msg:
            failure = "message %d: got %r" % (i, got)
            break
        echoed += 1
        time.sleep(0.2)  # the traffic pattern under test
    took = time.monotonic() - t0
    check(failure is None and echoed == 15 and took > 2.5,
          "a tunnel with traffic every 200 ms stays open for %.1f s past upstream_idle_timeout 1s" % took,
          "%s\n%s" % (failure, hu.log_tail(sl, 10)))
    check(not sl.find_lines("timed out"), "sluice logged no timeout for the tunnel", hu.log_tail(sl, 10))
    c.sock.shutdown(socket.SHUT_WR)
    how, extra, _ = c.wait_closed(5)
    check(how == "eof" and not extra, "the tunnel still ends normally (client half-close -> EOF)",
          "%s %r" % (how, extra))
    c.close()
    hu.stop_and_check(sl)


# --------------------------------------------------------------------------
# 5. a client that pipelines and never reads

PIPELINE_RSS_LIMIT_KIB = 48 * 1024
PIPELINE_TOTAL_BYTES = 32 * 1024 * 1024
PIPELINE_STALL_S = 2.0
DIRECT_BODY = "x" * 4096  # each 31-byte request asks for a ~4 KiB response


def case_pipelining_client_that_never_reads_bounded_rss():
    # an AddressSanitizer build keeps freed memory in a quarantine (256 MiB by default), which would
    # show up as RSS growth; keep it small here so the bound measures sluice, not the sanitizer
    saved = os.environ.get("ASAN_OPTIONS")
    asan = saved or "detect_leaks=1"
    if "quarantine_size_mb" not in asan:
        os.environ["ASAN_OPTIONS"] = asan + ":quarantine_size_mb=8:thread_local_quarantine_size_kb=256"
    try:
        routes = [{"match": {"prefix": "/direct"}, "direct_response": {"status": 200, "body": DIRECT_BODY}}]
        sl = hu.start_sluice([hu.simple_listener(routes)], [hu.cluster("app", ["127.0.0.1:9"])], workers=1)
    finally:
        if saved is None:
            os.environ.pop("ASAN_OPTIONS", None)
        else:
            os.environ["ASAN_OPTIONS"] = saved
    port = sl.port("web")
    for _ in range(3):
        r = safe_request(port, "GET", "/direct")
        check(isinstance(r, hu.Response) and r.status == 200 and r.body == DIRECT_BODY.encode(),
              "warm-up request: 200 with the 4 KiB direct response", describe(r))
    base = hu.vmrss_kib(sl.pid)
    sampler = RssSampler(sl.pid)
    a = slow_client_socket(port, 4096)
    req = b"GET /direct HTTP/1.1\r\nHost: x\r\n\r\n"
    block = req * 20000
    a.settimeout(PIPELINE_STALL_S)
    sent = 0
    how = "all sent"
    t0 = time.monotonic()
    while sent < PIPELINE_TOTAL_BYTES:
        if sampler.peak() - base > PIPELINE_RSS_LIMIT_KIB:
            how = "stopped: RSS bound exceeded"
            break
        if time.monotonic() - t0 > 20:
            how = "stopped after 20 s"
            break
        try:
            n = a.send(block)
        except socket.timeout:
            how = "sluice stopped reading (no progress for %.0f s)" % PIPELINE_STALL_S
            break
        except OSError as e:
            how = "send failed: %r" % e
            break
        sent += n
    peak = sampler.stop()
    info("pipelined %d requests (%d bytes) in %.1f s, %s; VmRSS %d KiB -> peak %d KiB (+%d KiB)" % (
        sent // len(req), sent, time.monotonic() - t0, how, base, peak, peak - base))
    check(peak - base < PIPELINE_RSS_LIMIT_KIB,
          "sluice VmRSS grew less than %d MiB while the client pipelined without reading" %
          (PIPELINE_RSS_LIMIT_KIB // 1024), "baseline %d KiB, peak %d KiB; %s" % (base, peak, how))
    check(sl.alive(), "sluice is still running", hu.log_tail(sl, 40))
    r = safe_request(port, "GET", "/direct", timeout=5)
    check(isinstance(r, hu.Response) and r.status == 200, "another client is still served at once", describe(r))
    reader = SockReader(a)
    reader.deadline = time.monotonic() + 10
    try:
        first = [hu.read_response(reader) for _ in range(3)]
    except Exception as e:
        first = [e]
    check(all(isinstance(x, hu.Response) and x.status == 200 and x.body == DIRECT_BODY.encode() for x in first),
          "the pipelining client, reading at last, gets well-formed responses", repr(first))
    a.close()
    hu.stop_and_check(sl)


# --------------------------------------------------------------------------
# 6. Connection: close response to a slow reader

LINGER_BODY = 960 * 1024  # under the 1 MiB output high watermark: sluice reads all of it at once
SLOW_READ = 4096
SLOW_PAUSE_S = 0.015      # at most ~270 KB/s: the queued response takes well over 2 s to drain
KERNEL_SLACK = 128 * 1024  # more than sluice's 16 KiB send buffer and the client's 16 KiB receive buffer hold


def case_close_response_to_slow_reader_complete():
    body = pattern_bytes(LINGER_BODY)
    upstream_done = {}

    def script(be, n, k, start_line, reader, sock):
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        with be._lock:
            upstream_done[start_line.split()[1]] = time.monotonic()

    be = ScriptedBackend(script)
    # a small send buffer on the client side keeps the response in sluice's own queue, not the kernel's
    sl = hu.start_sluice([hu.simple_listener([route(timeout="60s")], socket_options={"send_buffer": "16KiB"})],
                         [hu.cluster("app", [be])], workers=1)
    for version, extra in (("1.1", b"Connection: close\r\n"), ("1.0", b"")):
        s = slow_client_socket(sl.port("web"), 16384)
        target = "/big-%s" % version
        s.sendall(b"GET %s HTTP/%s\r\nHost: test.local\r\n%s\r\n" % (target.encode(), version.encode(), extra))
        data = bytearray()
        progress = []  # (time, bytes received so far)
        how = "eof"
        t0 = time.monotonic()
        s.settimeout(5)
        while True:
            if time.monotonic() - t0 > 20:
                how = "timeout (20 s)"
                break
            try:
                d = s.recv(SLOW_READ)
            except socket.timeout:
                how = "timeout (no byte for 5 s)"
                break
            except ConnectionResetError:
                how = "reset"
                break
            if not d:
                break
            data += d
            progress.append((time.monotonic(), len(data)))
            time.sleep(SLOW_PAUSE_S)  # the slow reader under test
        s.close()
        head, _, got = bytes(data).partition(b"\r\n\r\n")
        total = len(data) - len(got) + len(body)
        done_at = upstream_done.get(target)
        # bytes the client had 2.5 s after the upstream finished: the rest was still in sluice's queue
        # when its 2 s lingering-close timer first ran (the kernel holds far less than KERNEL_SLACK)
        had = max([n for t, n in progress if done_at is not None and t <= done_at + 2.5] or [0])
        info("HTTP/%s: %d of %d body bytes in %.1f s, ended by %s; 2.5 s after the upstream finished the "
             "client had %d of %d bytes" % (version, len(got), len(body), time.monotonic() - t0, how, had, total))
        check(done_at is not None and had < total - KERNEL_SLACK,
              "HTTP/%s: the response was still queued in sluice more than 2 s after the upstream finished" % version,
              "had %d of %d bytes" % (had, total))
        check(head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower(),
              "HTTP/%s: 200 with Connection: close" % version, repr(head[:300]))
        check(how == "eof" and len(got) == len(body) and got == body,
              "HTTP/%s: the slow reader receives the whole %d-byte body, then EOF" % (version, len(body)),
              "%d bytes, %s\n%s" % (len(got), how, hu.log_tail(sl, 10)))
    hu.stop_and_check(sl)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_bytes_past_a_response_are_not_the_next_response,
                       case_upstream_fin_during_slow_handoff,
                       case_upstream_stray_bytes_during_slow_handoff,
                       case_body_outgrowing_replay_buffer_during_retry,
                       case_body_within_replay_buffer_is_resent_whole,
                       case_active_tunnel_outlives_upstream_idle_timeout,
                       case_pipelining_client_that_never_reads_bounded_rss,
                       case_close_response_to_slow_reader_complete])

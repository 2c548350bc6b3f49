#!/usr/bin/env python3
"""Streaming bodies through the HTTP listener: a large chunked download (1 GiB by default,
SLUICE_HTTP_STREAM_BYTES to change it) read by curl within a time bound while sluice's VmRSS
stays bounded; sha256-checked downloads (chunked and Content-Length); a large chunked upload
with bounded RSS."""

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
from http_backend import BackendProcess, pattern_sha256  # noqa: E402
import http_util as hu  # noqa: E402

STREAM_BYTES = hu.env_number("SLUICE_HTTP_STREAM_BYTES", 1 << 30)
STREAM_TIMEOUT = hu.env_number("SLUICE_HTTP_STREAM_TIMEOUT", 40.0)
RSS_GROWTH_LIMIT_KIB = 64 * 1024


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

    def stop(self):
        self._stop.set()
        self._t.join(2)
        return max(self.samples) if self.samples else -1


def start(backend, workers=2):
    # the route timeout covers the whole exchange: make room for a slow (sanitizer) build
    return hu.start_sluice([hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app", "timeout": "600s"}])],
                           [hu.cluster("app", [backend])], workers=workers)


def case_large_streamed_download_bounded_rss():
    be = BackendProcess("stream")
    sl = start(be)
    port = sl.port("web")
    # warm up the worker's buffers and pools before the baseline
    for _ in range(4):
        r = hu.request_once(port, "GET", "/stream/4000000?chunk=262144")
        check(r.status == 200 and len(r.body) == 4000000, "warm-up download of 4 MB", repr(r))
    base = hu.vmrss_kib(sl.pid)
    info("sluice VmRSS before the download: %d KiB" % base)
    sampler = RssSampler(sl.pid)
    t0 = time.monotonic()
    p = subprocess.Popen(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                          "http://127.0.0.1:%d/stream/%d?chunk=262144" % (port, STREAM_BYTES)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=harness.die_with_parent)
    harness.register_cleanup(lambda: p.poll() is None and p.kill())
    try:
        out, err = p.communicate(timeout=STREAM_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        sampler.stop()
        check(False, "curl downloads %d bytes within %.0f s" % (STREAM_BYTES, STREAM_TIMEOUT),
              "timed out; %s %s\n%s" % (out, err, hu.log_tail(sl)))
    elapsed = time.monotonic() - t0
    peak = sampler.stop()
    info("downloaded %d bytes in %.1f s (%.0f MB/s); VmRSS peak %d KiB (+%d KiB), %d samples" % (
        STREAM_BYTES, elapsed, STREAM_BYTES / elapsed / 1e6, peak, peak - base, len(sampler.samples)))
    check(p.returncode == 0 and out.decode() == "200 %d" % STREAM_BYTES,
          "curl downloaded all %d streamed bytes with status 200" % STREAM_BYTES,
          "curl rc %d, %r, %s" % (p.returncode, out, err.decode()))
    check(peak - base < RSS_GROWTH_LIMIT_KIB, "sluice VmRSS grew less than 64 MiB during the download",
          "baseline %d KiB, peak %d KiB" % (base, peak))
    hu.stop_and_check(sl)


def case_downloads_intact():
    be = BackendProcess("stream")
    sl = start(be)
    port = sl.port("web")
    n = 64 * 1024 * 1024 + 7
    for path, framing in (("/stream/%d?chunk=100003" % n, "chunked"), ("/bytes/%d" % n, "content-length")):
        c = hu.Client(port, timeout=30)
        r = c.request("GET", path)
        check(r.status == 200 and r.framing == framing, "GET %s: 200, %s" % (path, framing), repr(r))
        check(len(r.body) == n and hashlib.sha256(r.body).hexdigest() == pattern_sha256(n),
              "%d bytes arrive intact (sha256)" % n, "got %d bytes" % len(r.body))
        # and the connection is still usable
        r = c.request("GET", "/after")
        check(r.status == 200 and r.json()["target"] == "/after", "the keep-alive connection serves the next request",
              repr(r))
        c.close()
    hu.stop_and_check(sl)


def case_large_chunked_upload_bounded_rss():
    be = BackendProcess("sink")
    sl = start(be)
    port = sl.port("web")
    n = 256 * 1024 * 1024
    base = hu.vmrss_kib(sl.pid)
    sampler = RssSampler(sl.pid)
    s = hu.Client(port, timeout=30)
    s.send(b"POST /sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    h = hashlib.sha256()
    block = os.urandom(1 << 20)
    t0 = time.monotonic()
    sent = 0
    while sent < n:
        piece = block[: min(len(block), n - sent)]
        h.update(piece)
        s.sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        sent += len(piece)
    s.sock.sendall(b"0\r\n\r\n")
    r = s.read_response(timeout=30)
    elapsed = time.monotonic() - t0
    peak = sampler.stop()
    info("uploaded %d bytes in %.1f s; VmRSS peak +%d KiB" % (n, elapsed, peak - base))
    check(r.status == 200 and r.json()["body_len"] == n and r.json()["body_sha256"] == h.hexdigest(),
          "backend received the %d-byte chunked upload intact" % n, r.describe())
    check(peak - base < RSS_GROWTH_LIMIT_KIB, "sluice VmRSS grew less than 64 MiB during the upload",
          "baseline %d KiB, peak %d KiB" % (base, peak))
    hu.stop_and_check(sl)


def case_client_stops_reading():
    """A client that stops reading a big download: sluice must not buffer the rest."""
    be = BackendProcess("stream")
    sl = start(be)
    port = sl.port("web")
    base = hu.vmrss_kib(sl.pid)
    s = harness.connect(port, timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.sendall(b"GET /stream/%d?chunk=262144 HTTP/1.1\r\nHost: x\r\n\r\n" % (512 * 1024 * 1024))
    first = s.recv(65536)
    check(first.startswith(b"HTTP/1.1 200"), "download started", repr(first[:100]))
    # the backend keeps writing until sluice applies backpressure; RSS must level off
    samples = []
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        samples.append(hu.vmrss_kib(sl.pid))
        time.sleep(0.05)
    peak = max(samples)
    info("VmRSS with a stalled reader: baseline %d KiB, peak %d KiB" % (base, peak))
    check(peak - base < RSS_GROWTH_LIMIT_KIB, "sluice VmRSS stays within 64 MiB of baseline with a stalled reader",
          "baseline %d KiB, peak %d KiB" % (base, peak))
    s.close()
    hu.stop_and_check(sl)


if __name__ == "__main__":
    hu.use_default_bin()
    # an AddressSanitizer build keeps freed memory in a quarantine (256 MiB by default), which would
    # show up as RSS growth; keep it small so the RSS bound measures sluice, not the sanitizer
    asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1")
    if "quarantine_size_mb" not in asan:
        os.environ["ASAN_OPTIONS"] = asan + ":quarantine_size_mb=8:thread_local_quarantine_size_kb=256"
    harness.run_cases([case_large_streamed_download_bounded_rss, case_downloads_intact,
                       case_large_chunked_upload_bounded_rss, case_client_stops_reading])

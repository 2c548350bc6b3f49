#!/usr/bin/env python3
"""`sluice probe` over HTTP/2: --http2 (cleartext, prior knowledge), ALPN h2 on https by default,
--http1.1, the protocol line, the stream id and the server's SETTINGS in the report, and the
error when the server does not speak HTTP/2.

The peers are real: nghttpd (cleartext and TLS, with a test PKI from tls_pki.py), sluice itself
as an HTTP/2 server (a TLS listener offering h2 and http/1.1, a cleartext one with prior
knowledge) in front of http_backend.py, `openssl s_server -www` offering http/1.1 only, and
http_backend.py as an HTTP/1.1 server. Re-runs itself inside a new network namespace
(`unshare -n`) so every port is its own.
"""

import atexit
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (HoldServer, Skip, TcpServer, check, die_with_parent, register_cleanup,  # noqa: E402
                     run_cases, run_sluice_cmd, wait_until)
from http_backend import HttpBackend  # noqa: E402
import http_util as hu  # noqa: E402
import tls_pki  # noqa: E402

import hpack  # noqa: E402

NGHTTPD = shutil.which("nghttpd") or "/usr/bin/nghttpd"
BIG = 3 * 1024 * 1024 + 7  # more than the probe's 1 MiB stream window: it must acknowledge DATA
SMALL = 1234
PHASES = ["dns", "connect", "request_sent", "first_byte", "body"]
TLS_PHASES = ["dns", "connect", "tls", "request_sent", "first_byte", "body"]


def htdocs():
    if "dir" not in DOCS:
        d = tempfile.mkdtemp(prefix="sluice-probe-h2-")
        atexit.register(shutil.rmtree, d, ignore_errors=True)  # shared by every case
        with open(os.path.join(d, "big"), "wb") as f:
            f.write(bytes(i % 251 for i in range(BIG)))
        with open(os.path.join(d, "small"), "wb") as f:
            f.write(b"s" * SMALL)
        DOCS["dir"] = d
    return DOCS["dir"]


DOCS = {}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class Nghttpd:
    """nghttpd serving htdocs() on 127.0.0.1:<free port>, cleartext or TLS (`cert`: a tls_pki.Cert)."""

    def __init__(self, cert=None, extra=()):
        if not os.access(NGHTTPD, os.X_OK):
            raise Skip("nghttpd is not installed")
        self.port = free_port()
        cmd = [NGHTTPD, "-a", "127.0.0.1", "-d", htdocs()] + list(extra)
        cmd += [str(self.port), cert.key, cert.chain] if cert else ["--no-tls", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=die_with_parent)
        register_cleanup(self.stop)
        if not wait_until(lambda: self.proc.poll() is not None or accepts(self.port), 10):
            raise RuntimeError("nghttpd did not start listening on %d" % self.port)
        if self.proc.poll() is not None:
            raise RuntimeError("nghttpd exited: %s" % self.proc.stderr.read().decode())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


class SServer:
    """`openssl s_server -www` on 127.0.0.1:<free port>, offering ALPN `alpn` (None: ignoring ALPN)."""

    def __init__(self, cert, alpn="http/1.1"):
        self.port = free_port()
        cmd = ["openssl", "s_server", "-www", "-accept", "127.0.0.1:%d" % self.port, "-cert", cert.cert,
               "-key", cert.key, "-cert_chain", cert.chain] + (["-alpn", alpn] if alpn else [])
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
        register_cleanup(self.stop)
        if not wait_until(lambda: self.proc.poll() is not None or accepts(self.port), 10) or self.proc.poll():
            raise RuntimeError("openssl s_server did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


class FinServer(TcpServer):
    """Ends its side of every connection (FIN) as soon as it is accepted, then reads until the
    client closes (closing with unread bytes would send RST instead)."""

    def handle(self, conn):
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(65536):
            pass


class RawH2Server(TcpServer):
    """Speaks HTTP/2 frame by frame: reads the client preface and frames up to the request's
    HEADERS, answers with its own SETTINGS (`settings`: (id, value) pairs) and then `frames`
    (raw bytes), and holds the connection until the client closes it."""

    PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    def __init__(self, settings, frames):
        self.settings = settings
        self.frames = frames
        super().__init__()

    @staticmethod
    def frame(ftype, flags, stream, payload=b""):
        return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload

    @staticmethod
    def headers(fields, end_stream):
        block = hpack.Encoder().encode(fields)
        return RawH2Server.frame(0x1, 0x4 | (0x1 if end_stream else 0), 1, block)

    def handle(self, conn):
        buf = b""

        def need(n):
            nonlocal buf
            while len(buf) < n:
                chunk = conn.recv(65536)
                if not chunk:
                    raise EOFError("the client closed")
                buf += chunk

        need(len(self.PREFACE))
        buf = buf[len(self.PREFACE):]
        while True:  # frames up to the request's HEADERS (bounded by the client closing)
            need(9)
            length, ftype = int.from_bytes(buf[:3], "big"), buf[3]
            need(9 + length)
            buf = buf[9 + length:]
            if ftype == 0x1:
                break
        payload = b"".join(i.to_bytes(2, "big") + v.to_bytes(4, "big") for i, v in self.settings)
        conn.sendall(self.frame(0x4, 0, 0, payload) + self.frame(0x4, 0x1, 0) + self.frames)
        while conn.recv(65536):
            pass


def probe(args, timeout=30):
    t0 = time.monotonic()
    p = run_sluice_cmd(["probe"] + args, timeout=timeout)
    p.elapsed = time.monotonic() - t0
    return p


def describe(p):
    return "exit %s after %.2f s\nstdout:\n%s\nstderr:\n%s" % (p.returncode, p.elapsed, p.stdout, p.stderr)


def probe_json(args):
    p = probe(args + ["--json"])
    try:
        return p, json.loads(p.stdout)
    except ValueError:
        check(False, "the output is one JSON object", describe(p))


def check_ok(p, what):
    check(p.returncode == 0 and p.stderr == "", "%s: exit 0, nothing on stderr" % what, describe(p))


def check_failure(p, status, line, what):
    """The exit status and exactly this one stderr line."""
    check(p.returncode == status and p.stderr.splitlines() == ["sluice probe: " + line],
          "%s: exit %d and stderr 'sluice probe: %s'" % (what, status, line), describe(p))


def waterfall_phases(stdout):
    names = []
    for line in stdout.splitlines():
        m = re.match(r"^(\w+)\s+\d+\.\d{3}\s+\d+\.\d{3}(?:  [ #]*#)?$", line)
        if m:
            names.append(m.group(1))
    return names


def lines_matching(stdout, prefix):
    return [line for line in stdout.splitlines() if line.startswith(prefix)]


def body_lines(stdout):
    return [line for line in stdout.splitlines() if re.match(r"^body       \d+ bytes$", line)]


def check_timings(d, tls, what):
    """Every phase present (an int >= 0), first_byte and body measured, and they add up to the total."""
    keys = [d["dns"]["us"], d["connect"]["us"]] + ([d["tls"]["us"]] if tls else [])
    keys += [d["request_sent_us"], d["first_byte_us"], d["body_us"]]
    check(all(isinstance(v, int) and v >= 0 for v in keys) and isinstance(d["total_us"], int)
          and sum(keys) <= d["total_us"] <= sum(keys) + 50 and isinstance(d["tcp_info"], dict),
          "%s: every phase timed, adding up to the total; tcp_info read" % what,
          "phases %s total %s" % (keys, d["total_us"]))


def localhost_url(port, path):
    return ["https://localhost:%d%s" % (port, path), "--resolve", "localhost:%d:127.0.0.1" % port,
            "--cacert", tls_pki.default().ca_file]


# --------------------------------------------------------------------------
# nghttpd


def test_cleartext_prior_knowledge():
    with Nghttpd(extra=["-m", "7", "-w", "20"]) as n:
        url = "http://127.0.0.1:%d/big" % n.port
        p = probe([url, "--http2"])
        check_ok(p, "--http2 to nghttpd --no-tls")
        check(waterfall_phases(p.stdout) == PHASES + ["total"], "the waterfall: every phase, then total", p.stdout)
        check(lines_matching(p.stdout, "protocol") ==
              ["protocol   HTTP/2  stream 1  server max_concurrent_streams 7  initial_window_size 1048575"],
              "the protocol line: HTTP/2, stream 1 and nghttpd's SETTINGS (-m 7, -w 20)", p.stdout)
        check(lines_matching(p.stdout, "HTTP/") == ["HTTP/2 200"], "the status line: HTTP/2 200", p.stdout)
        check(lines_matching(p.stdout, "  content-length") == ["  content-length: %d" % BIG]
              and body_lines(p.stdout) == ["body       %d bytes" % BIG],
              "content-length and the body size: %d bytes" % BIG, p.stdout)

        p, d = probe_json([url, "--http2"])
        check(p.returncode == 0 and d["exit_status"] == 0 and d["status"] == 200 and d["body_bytes"] == BIG
              and d["headers"]["content-length"] == str(BIG) and d["reason"] == "",
              "--json: 200, %d bytes, no reason phrase" % BIG, describe(p))
        check(d["protocol"] == "HTTP/2" and d["tls"] is None
              and d["http2"] == {"stream_id": 1, "peer_settings": {"max_concurrent_streams": 7,
                                                                  "initial_window_size": 1048575}},
              "--json: protocol HTTP/2, stream 1, the server's SETTINGS", d)
        check_timings(d, False, "--json")

        p, d = probe_json(["http://127.0.0.1:%d/missing" % n.port, "--http2"])
        check(p.returncode == 0 and d["status"] == 404 and d["protocol"] == "HTTP/2",
              "a missing file: HTTP/2 404, exit 0", describe(p))
        p, d = probe_json(["http://127.0.0.1:%d/small" % n.port, "--http2", "-X", "HEAD"])
        check(p.returncode == 0 and d["status"] == 200 and d["body_bytes"] == 0
              and d["headers"]["content-length"] == str(SMALL), "HEAD: 200, content-length %d, no body" % SMALL,
              describe(p))

        p, d = probe_json([url, "--http2", "-n", "3"])
        s = d["summary"]
        check(p.returncode == 0 and s["ok"] == 3 and s["protocols"] == {"HTTP/2": 3}
              and [(r["http2"]["stream_id"], r["body_bytes"]) for r in d["runs"]] == [(1, BIG)] * 3,
              "-n 3: three HTTP/2 runs, each on stream 1 of its own connection", describe(p))
        p = probe([url, "--http2", "-n", "3"])
        check(lines_matching(p.stdout, "protocol") == ["protocol    HTTP/2 x3"], "-n 3: the protocol count",
              p.stdout)


def test_tls_alpn_h2():
    srv = tls_pki.leaf(["localhost"], ["127.0.0.1"])
    with Nghttpd(cert=srv, extra=["-m", "9", "-w", "18"]) as n:
        args = localhost_url(n.port, "/small")
        p = probe(args)
        check_ok(p, "https to nghttpd")
        check(waterfall_phases(p.stdout) == TLS_PHASES + ["total"], "the waterfall: every phase, then total",
              p.stdout)
        check(re.search(r"^tls        TLSv1\.3  TLS_\w+  alpn h2  new session  \(\d+\.\d{3} ms\)$", p.stdout, re.M),
              "ALPN offers h2 and http/1.1 by default; nghttpd selects h2", p.stdout)
        check(lines_matching(p.stdout, "protocol") ==
              ["protocol   HTTP/2  stream 1  server max_concurrent_streams 9  initial_window_size 262143"],
              "the protocol line: HTTP/2 over TLS, nghttpd's SETTINGS (-m 9, -w 18)", p.stdout)
        check(lines_matching(p.stdout, "HTTP/") == ["HTTP/2 200"]
              and body_lines(p.stdout) == ["body       %d bytes" % SMALL],
              "HTTP/2 200, %d bytes" % SMALL,
              p.stdout)
        p, d = probe_json(args)
        check(p.returncode == 0 and d["tls"]["alpn"] == "h2" and d["protocol"] == "HTTP/2"
              and d["http2"] == {"stream_id": 1, "peer_settings": {"max_concurrent_streams": 9,
                                                                  "initial_window_size": 262143}}
              and d["status"] == 200 and d["body_bytes"] == SMALL, "--json: alpn h2, HTTP/2, 200", describe(p))
        check_timings(d, True, "--json over TLS")
        p, d = probe_json(localhost_url(n.port, "/big") + ["--http2"])
        check(p.returncode == 0 and d["protocol"] == "HTTP/2" and d["body_bytes"] == BIG,
              "--http2 on https (ALPN h2 only): %d bytes" % BIG, describe(p))


# --------------------------------------------------------------------------
# sluice as the HTTP/2 server


def test_sluice_server():
    srv = tls_pki.leaf(["localhost"], ["127.0.0.1"])
    b = HttpBackend("b")
    tls = {"certificates": [{"certificate_chain": srv.chain, "private_key": srv.key}]}
    h2 = {"max_concurrent_streams": 13, "initial_stream_window": 131072}
    sl = hu.start_sluice([hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}], name="tls", tls=tls,
                                             http2=h2),
                          hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}], name="clear",
                                             http2=dict(h2, prior_knowledge=True))],
                         [hu.cluster("app", [b])])
    tls_port, clear_port = sl.port("tls"), sl.port("clear")
    settings = {"max_concurrent_streams": 13, "initial_window_size": 131072}

    p, d = probe_json(localhost_url(tls_port, "/bytes/300000"))
    check(p.returncode == 0 and d["tls"]["alpn"] == "h2" and d["protocol"] == "HTTP/2"
          and d["http2"] == {"stream_id": 1, "peer_settings": settings}
          and d["status"] == 200 and d["body_bytes"] == 300000,
          "sluice's TLS listener: ALPN h2, its SETTINGS, 200 and 300000 bytes", describe(p))
    check_timings(d, True, "sluice over TLS")

    p, d = probe_json(localhost_url(tls_port, "/bytes/300000") + ["--http1.1"])
    check(p.returncode == 0 and d["tls"]["alpn"] == "http/1.1" and d["protocol"] == "HTTP/1.1"
          and d["http2"] is None and d["status"] == 200 and d["body_bytes"] == 300000,
          "--http1.1: ALPN offers http/1.1 alone; HTTP/1.1, 200, 300000 bytes", describe(p))
    p = probe(localhost_url(tls_port, "/bytes/10") + ["--http1.1"])
    check(lines_matching(p.stdout, "protocol") == ["protocol   HTTP/1.1"]
          and lines_matching(p.stdout, "HTTP/") == ["HTTP/1.1 200 OK"], "--http1.1: the protocol line", p.stdout)

    p, d = probe_json(localhost_url(tls_port, "/") + ["-n", "3"])
    check(p.returncode == 0 and d["summary"]["protocols"] == {"HTTP/2": 3}
          and [(r["tls"]["alpn"], r["http2"]["stream_id"], r["status"]) for r in d["runs"]] == [("h2", 1, 200)] * 3
          and d["runs"][1]["tls"]["resumed"] is True, "-n 3: HTTP/2 each time; the second run resumes the session",
          describe(p))

    p, d = probe_json(["http://127.0.0.1:%d/bytes/5000" % clear_port, "--http2"])
    check(p.returncode == 0 and d["protocol"] == "HTTP/2" and d["http2"] == {"stream_id": 1, "peer_settings": settings}
          and d["status"] == 200 and d["body_bytes"] == 5000,
          "--http2 to a prior-knowledge listener: HTTP/2, 200, 5000 bytes", describe(p))
    check_timings(d, False, "sluice cleartext")
    p, d = probe_json(["http://127.0.0.1:%d/bytes/5000" % clear_port])
    check(p.returncode == 0 and d["protocol"] == "HTTP/1.1" and d["http2"] is None and d["body_bytes"] == 5000,
          "an http:// URL without --http2 speaks HTTP/1.1 (the listener takes both)", describe(p))
    hu.stop_and_check(sl)


# --------------------------------------------------------------------------
# servers that do not speak HTTP/2


def test_http1_server():
    b = HttpBackend("b")
    sl = hu.start_sluice([hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}], name="web")],
                         [hu.cluster("app", [b])])
    try:
        url = "http://127.0.0.1:%d/" % sl.port("web")
        p = probe([url, "--http2"])
        check_failure(p, 12, 'the server does not speak HTTP/2: it answered "HTTP/1.1 400 Bad Request"',
                      "--http2 to an HTTP/1.1 server")
        check(p.elapsed < 4, "no wait for a timeout (%.2f s)" % p.elapsed, describe(p))
        check(lines_matching(p.stdout, "protocol") == ["protocol   HTTP/2  stream 1  (no SETTINGS from the server)"]
              and lines_matching(p.stdout, "error ") ==
              ['error      the server does not speak HTTP/2: it answered "HTTP/1.1 400 Bad Request" (no_http2)'],
              "the report: HTTP/2 was tried, no SETTINGS came, the error", p.stdout)
        p, d = probe_json([url, "--http2"])
        check(d["error"] == {"kind": "no_http2",
                             "message": 'the server does not speak HTTP/2: it answered "HTTP/1.1 400 Bad Request"'}
              and d["exit_status"] == 12 and d["status"] is None and d["protocol"] == "HTTP/2"
              and d["http2"] == {"stream_id": 1, "peer_settings": None} and isinstance(d["first_byte_us"], int)
              and d["body_us"] is None, "--json: no_http2, exit 12, no response", d)
        p, d = probe_json([url])
        check(p.returncode == 0 and d["protocol"] == "HTTP/1.1" and d["status"] == 200,
              "the same server without --http2: HTTP/1.1 200", describe(p))
    finally:
        hu.stop_and_check(sl)
    # http_backend.py takes the preface's "PRI * HTTP/2.0" for a request, and answers it.
    p = probe(["http://127.0.0.1:%d/" % b.port, "--http2"])
    check_failure(p, 12, 'the server does not speak HTTP/2: it answered "HTTP/1.1 200 OK"',
                  "--http2 to a server that answers the preface as an HTTP/1 request")

    p_ = tls_pki.leaf(["localhost"], ["127.0.0.1"])
    with SServer(p_) as s:
        p, d = probe_json(localhost_url(s.port, "/"))
        check(p.returncode == 0 and d["tls"]["alpn"] == "http/1.1" and d["protocol"] == "HTTP/1.1"
              and d["http2"] is None and d["status"] == 200,
              "https to a server offering http/1.1 only: ALPN http/1.1, HTTP/1.1", describe(p))
        p = probe(localhost_url(s.port, "/") + ["--http2"])
        check_failure(p, 12, "the server does not speak HTTP/2: it refused ALPN h2 (tlsv1 alert no application "
                      "protocol)", "--http2 on https to a server without h2 (RFC 7301 alert)")
        check(waterfall_phases(p.stdout) == ["dns", "connect", "tls", "total"],
              "nothing is sent after the handshake", p.stdout)
    with SServer(p_, alpn=None) as s:
        p, d = probe_json(localhost_url(s.port, "/"))
        check(p.returncode == 0 and d["tls"]["alpn"] is None and d["protocol"] == "HTTP/1.1" and d["status"] == 200,
              "https to a server that ignores ALPN: HTTP/1.1", describe(p))
        p, d = probe_json(localhost_url(s.port, "/") + ["--http2"])
        check(p.returncode == 12 and d["error"] == {"kind": "no_http2", "message": "the server does not speak "
                                                    "HTTP/2: ALPN selected no protocol"}
              and d["protocol"] is None and d["http2"] is None and d["request_sent_us"] is None,
              "--http2 on https to a server that ignores ALPN: exit 12, nothing sent", describe(p))

    with FinServer() as c:
        p = probe(["http://127.0.0.1:%d/" % c.port, "--http2"])
        check_failure(p, 7, "connection closed before a complete response (no HTTP/2 SETTINGS from the server)",
                      "--http2 to a server that closes at once")
    with HoldServer() as h:
        p = probe(["http://127.0.0.1:%d/" % h.port, "--http2", "--timeout", "300ms"])
        check_failure(p, 9, "no response within 300ms after the request was sent",
                      "--http2 to a server that never answers")
        check(0.3 <= p.elapsed < 5, "gives up after about 300 ms (%.2f s)" % p.elapsed, describe(p))


def test_raw_http2_peers():
    """Frame-level peers for what nghttpd does not do: no MAX_CONCURRENT_STREAMS, a refused
    stream, a body that stalls."""
    f = RawH2Server.frame
    with RawH2Server([(0x4, 70000)], RawH2Server.headers([(":status", "204")], True)) as s:
        p = probe(["http://127.0.0.1:%d/" % s.port, "--http2"])
        check_ok(p, "a 204 from a server that sets no stream limit")
        check(lines_matching(p.stdout, "protocol") ==
              ["protocol   HTTP/2  stream 1  server max_concurrent_streams unlimited  initial_window_size 70000"]
              and lines_matching(p.stdout, "HTTP/") == ["HTTP/2 204"] and body_lines(p.stdout) == ["body       0 bytes"],
              "no MAX_CONCURRENT_STREAMS: unlimited; HTTP/2 204, no body", p.stdout)
        p, d = probe_json(["http://127.0.0.1:%d/" % s.port, "--http2"])
        check(d["http2"] == {"stream_id": 1, "peer_settings": {"max_concurrent_streams": None,
                                                              "initial_window_size": 70000}},
              "--json: max_concurrent_streams null when not sent", d["http2"])
    with RawH2Server([], f(0x3, 0, 1, (0x7).to_bytes(4, "big"))) as s:  # RST_STREAM REFUSED_STREAM
        p = probe(["http://127.0.0.1:%d/" % s.port, "--http2"])
        check_failure(p, 7, "HTTP/2 stream 1 ended before a complete response: REFUSED_STREAM (refused: the "
                      "server did not process it)", "a refused stream")
        check(lines_matching(p.stdout, "protocol") ==
              ["protocol   HTTP/2  stream 1  server max_concurrent_streams unlimited  initial_window_size 65535"],
              "the server's (empty) SETTINGS are shown", p.stdout)
    stall = RawH2Server.headers([(":status", "200"), ("content-length", "10")], False) + f(0x0, 0, 1, b"abc")
    with RawH2Server([(0x3, 1)], stall) as s:
        p, d = probe_json(["http://127.0.0.1:%d/" % s.port, "--http2", "--timeout", "300ms"])
        check(p.returncode == 9 and d["error"] == {"kind": "response_timeout",
                                                   "message": "the response body stalled: nothing for 300ms after 3 "
                                                              "bytes"}
              and d["status"] == 200 and d["body_bytes"] == 3 and isinstance(d["body_us"], int),
              "a body that stalls after 3 of 10 bytes: exit 9", describe(p))


def test_protocol_errors():
    """A peer that breaks HTTP/2: a connection error exits 8, a stream error 7."""
    f = RawH2Server.frame
    with RawH2Server([], f(0x0, 0, 0, b"x")) as s:  # DATA on stream 0 (RFC 9113 §6.1)
        p, d = probe_json(["http://127.0.0.1:%d/" % s.port, "--http2"])
        check(p.returncode == 8 and d["error"] == {"kind": "malformed_response",
                                                   "message": "HTTP/2 connection error: PROTOCOL_ERROR (GOAWAY sent)"},
              "DATA on stream 0: a connection error, exit 8", describe(p))
    too_long = RawH2Server.headers([(":status", "200"), ("content-length", "2")], False) + f(0x0, 0x1, 1, b"abc")
    with RawH2Server([], too_long) as s:  # more DATA than content-length (RFC 9113 §8.1.1)
        p = probe(["http://127.0.0.1:%d/" % s.port, "--http2"])
        check_failure(p, 7, "HTTP/2 stream 1 ended before a complete response: PROTOCOL_ERROR",
                      "3 bytes of DATA after content-length: 2")
        check(lines_matching(p.stdout, "HTTP/") == ["HTTP/2 200"], "the response head is still shown", p.stdout)


def test_usage():
    p = probe(["http://127.0.0.1:1/", "--http2", "--http1.1"])
    check_failure(p, 2, "--http2 and --http1.1 exclude each other", "both versions")
    p = run_sluice_cmd(["probe", "--help"])
    check(p.returncode == 0 and "    12 --http2 and the server does not speak HTTP/2\n" in p.stdout,
          "--help documents exit status 12", p.stdout)


if __name__ == "__main__":
    harness.reexec_in_netns_or_skip()
    run_cases([test_cleartext_prior_knowledge, test_tls_alpn_h2, test_sluice_server, test_http1_server,
               test_raw_http2_peers, test_protocol_errors, test_usage])

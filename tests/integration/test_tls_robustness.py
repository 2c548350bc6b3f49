#!/usr/bin/env python3
"""TLS termination under bad input, certificate changes and load, checked as a client sees it.

- Bad input on an HTTP TLS listener (one worker, handshake_timeout 500ms): garbage and a
  plain-text HTTP request instead of a ClientHello, a silent client, a ClientHello sent one
  byte every 100 ms, a truncated record, a record that does not decrypt and a TLS 1.2
  renegotiation attempt each end their own connection with the reason logged and counted
  (a ClientHello in three pieces within the timeout is served), while a well-behaved client
  on other connections keeps getting 200s during every one of them; the exit summary counts
  exactly what was sent.
- Certificate files rewritten under continuous new connections: the new certificate is
  served once sluice says so (by both workers), an inconsistent set (a key that does not
  match) and an expired certificate are refused and the last good certificate stays, and a
  Kubernetes-style `..data` symlink flip is followed, twice; no connection fails, and the
  reload gauges count each outcome.
- OCSP stapling: a stale response is not stapled (a warning at load), a fresh one written
  over it is stapled from then on (`openssl s_client -status`), a stale one again is not.
- /metrics after a known number of full and resumed handshakes (TLS 1.3 tickets resumed on
  either of two workers, a TLS 1.2 ticket, tickets on a listener with early data) and client
  certificates (required: a client without one reads certificate_required): exact counters,
  the certificate's expiry gauge, the exit summary.
- A TLS `tcp` listener: bytes both ways, then the client's close_notify + FIN reaches the
  backend as a FIN while the backend's remaining bytes still arrive, then sluice's
  close_notify; and the other way round.
- An HTTP request followed at once by the client's FIN (cleartext) or close_notify + FIN
  (TLS 1.2 and 1.3, the request in its own segment or with the client's Finished) gets the
  whole response.
- SIGTERM: an idle TLS keep-alive connection gets close_notify and FIN, one in its handshake
  is closed, sluice exits at once.

Clients: Python's ssl module (sockets and MemoryBIO) and `openssl s_client`. Needs
/usr/bin/python3 with prometheus_client and the openssl CLI."""

import datetime
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
from http_backend import HttpBackend, SockReader  # noqa: E402
import http_util as hu  # noqa: E402
import tls_pki  # noqa: E402

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # reported by the cases that scrape (run with /usr/bin/python3)
    text_string_to_metric_families = None

OPENSSL = shutil.which("openssl")
ADMIN_RE = re.compile(r"admin listening on 127\.0\.0\.1:(\d+)")
DIRECT = [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": "tls ok\n"}}]
# handshake_timeout 500ms as the client measures it: sluice may accept (and arm the timer)
# a little before connect() returns here, and its loop reads the clock once per iteration.
TIMEOUT_MIN = 0.49
FORWARD = [{"match": {"prefix": "/"}, "cluster": "app"}]


# --------------------------------------------------------------------------
# sluice, its admin endpoint and its metrics


def pki():
    return tls_pki.default()


def tmp_dir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def cert_entry(chain, key, ocsp=None):
    e = {"certificate_chain": chain, "private_key": key}
    if ocsp:
        e["ocsp_response"] = ocsp
    return e


def tls_listener(certificates, routes=None, name="web", protocol="http", cluster=None, **tls):
    t = {"certificates": certificates}
    t.update(tls)
    if protocol == "tcp":
        return {"name": name, "address": "127.0.0.1:0", "protocol": "tcp", "cluster": cluster, "tls": t}
    return hu.simple_listener(routes or DIRECT, name=name, tls=t)


def start(listeners, clusters=(), workers=1):
    """sluice with an admin endpoint; returns (sluice, admin port)."""
    cfg = {"workers": workers, "log_level": "debug", "drain_timeout": "5s",
           "admin": {"address": "127.0.0.1:0"}, "listeners": listeners, "clusters": list(clusters)}
    sl = harness.Sluice(harness.to_yaml(hu._quote(cfg)) + "\n")
    line = sl.wait_log(ADMIN_RE, 5)
    if not line:
        raise harness.CheckFailed_with("no 'admin listening on 127.0.0.1:PORT' line", sl.stderr_text())
    return sl, int(ADMIN_RE.search(line).group(1))


def scrape(ap):
    """/metrics as {(name, sorted labels): value}."""
    if text_string_to_metric_families is None:
        raise harness.CheckFailed_with("prometheus_client is importable (run with /usr/bin/python3)",
                                       sys.executable)
    r = hu.request_once(ap, "GET", "/metrics", host="admin", timeout=5)
    if r.status != 200:
        check(False, "GET /metrics: 200", r.describe())
    out = {}
    for fam in text_string_to_metric_families(r.body.decode("utf-8")):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def tls_counters(ap, listener="web"):
    """The listener's TLS counters from /metrics, as ints."""
    s = scrape(ap)
    fail = "sluice_tls_handshake_failures_total"
    return {"handshakes": sample(s, "sluice_tls_handshakes_total", listener=listener),
            "resumed": sample(s, "sluice_tls_resumed_total", listener=listener),
            "protocol": sample(s, fail, listener=listener, reason="protocol"),
            "timeout": sample(s, fail, listener=listener, reason="timeout"),
            "closed": sample(s, fail, listener=listener, reason="closed")}


def wait_counters(ap, want, timeout=3.0, listener="web"):
    """Scrapes until the TLS counters named in `want` have those values; returns the last."""
    last = [None]

    def cond():
        last[0] = tls_counters(ap, listener)
        return all(last[0][k] == v for k, v in want.items())
    harness.wait_until(cond, timeout, 0.02)
    return last[0]


def cert_gauges(ap, listener, certificate):
    s = scrape(ap)
    return {k: sample(s, "sluice_tls_certificate_" + k, listener=listener, certificate=certificate)
            for k in ("expiry_seconds", "reloads", "reload_failures")}


def exit_summary(sl, listener="web"):
    """Stops sluice (checking a clean exit; once) and returns its summary lines for the
    listener: (the listener's line, its tls line)."""
    if sl.alive():
        hu.stop_and_check(sl)
    main = sl.find_lines(re.compile(r"\[main\] listener %s: " % re.escape(listener)))
    tls = sl.find_lines(re.compile(r"\[main\] listener %s tls: " % re.escape(listener)))
    strip = lambda lines: [harness.LOG_RE.match(l).group(4) for l in lines]
    return strip(main), strip(tls)


def main_lines(sl):
    """The main thread's log lines (the workers' per-connection lines left out)."""
    return "\n".join(sl.find_lines("[main]"))


def summary_line(listener, handshakes, resumed=0, protocol=0, timeout=0, closed=0, client_certs=0):
    """The listener's tls line of the exit summary (no early data in these cases)."""
    return ("listener %s tls: handshakes %d, resumed %d, failed (protocol) %d, failed (timeout) %d, "
            "failed (closed by the client) %d, requests served from early data 0, early requests held 0, "
            "early requests answered 425 0, client certificates verified %d" %
            (listener, handshakes, resumed, protocol, timeout, closed, client_certs))


def listener_counts(line):
    """accepted / requests / 2xx from a listener's exit summary line."""
    return {k: int(re.search(r"\b%s (\d+)" % k, line).group(1)) for k in ("accepted", "requests", "2xx")}


# --------------------------------------------------------------------------
# TLS clients


def client_context():
    """Verifies sluice's certificate against the test root and the name localhost."""
    return ssl.create_default_context(cafile=pki().ca_file)


class Fetched:
    def __init__(self, status, serial, cn, session, reused, body, local_port):
        self.status, self.serial, self.cn = status, serial, cn
        self.session, self.reused, self.body, self.local_port = session, reused, body, local_port


def https_get(port, ctx, target="/", session=None, timeout=5.0):
    """A new connection, a full (or resumed) handshake, GET target with Connection: close,
    the response read to the end. Returns a Fetched."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    local_port = raw.getsockname()[1]
    s = raw
    try:
        s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)  # takes raw's descriptor
        cert = s.getpeercert()
        s.sendall(b"GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % target.encode())
        reader = SockReader(s)
        reader.deadline = time.monotonic() + timeout
        resp = hu.read_response(reader)
        cn = [v for rdn in cert["subject"] for (k, v) in rdn if k == "commonName"]
        return Fetched(resp.status, cert["serialNumber"], cn[0] if cn else None, s.session, s.session_reused,
                       resp.body, local_port)
    finally:
        s.close()


class Prober(threading.Thread):
    """A well-behaved client: new TLS connections, each with one GET, one after the other
    (a pause between them) until stopped, at most max_conns or max_seconds. Records
    (start, end, status, serial, cn, error) per connection."""

    def __init__(self, port, max_conns, max_seconds, pause=0.0):
        super().__init__(daemon=True)
        self.port, self.max_conns, self.max_seconds, self.pause = port, max_conns, max_seconds, pause
        self.ctx = client_context()
        self.results = []
        self._lock = threading.Lock()
        self._halt = threading.Event()
        harness.register_cleanup(self.finish)

    def run(self):
        deadline = time.monotonic() + self.max_seconds
        for _ in range(self.max_conns):
            if self._halt.is_set() or time.monotonic() > deadline:
                break
            t0 = time.monotonic()
            try:
                f = https_get(self.port, self.ctx)
                rec = (t0, time.monotonic(), f.status, f.serial, f.cn, None)
            except Exception as e:  # recorded and asserted on: every connection must work
                rec = (t0, time.monotonic(), None, None, None, repr(e))
            with self._lock:
                self.results.append(rec)
            if self.pause:
                self._halt.wait(self.pause)  # pacing, not synchronisation

    def snapshot(self):
        with self._lock:
            return list(self.results)

    def count(self):
        with self._lock:
            return len(self.results)

    def finish(self):
        self._halt.set()
        self.join(15)
        return self.snapshot()


def client_hello():
    """The bytes of a real ClientHello (Python's ssl writing into a memory BIO)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class TlsClient:
    """A TLS client over a plain socket through memory BIOs, so that it can send close_notify
    and FIN (a half-close) and keep reading."""

    def __init__(self, port, timeout=5.0, version=None):
        self.sock = harness.connect(port, timeout=timeout)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        ctx = client_context()
        if version:
            ctx.minimum_version = ctx.maximum_version = version
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        self.timeout = timeout
        self.socket_eof = False

    def _flush(self):
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if data:
            self.incoming.write(data)
        else:
            self.socket_eof = True
            self.incoming.write_eof()

    def handshake(self, flush_last=True):
        """flush_last False: the client's last flight (its Finished) stays in the memory BIO,
        to go out with whatever is written next, in one segment."""
        for _ in range(100):  # a handshake takes a few round trips
            try:
                self.obj.do_handshake()
                if flush_last:
                    self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
        raise RuntimeError("handshake did not finish in 100 round trips")

    def send(self, data):
        self.obj.write(data)
        self._flush()

    def recv_exact(self, n):
        out = bytearray()
        while len(out) < n:
            try:
                out += self.obj.read(n - len(out))
            except ssl.SSLWantReadError:
                self._fill()
        return bytes(out)

    def close_write(self):
        """close_notify, then FIN; reading goes on."""
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:  # sent ours, the peer's has not come yet
            pass
        self._flush()
        self.sock.shutdown(socket.SHUT_WR)

    def read_to_end(self):
        """Everything until the stream ends: (data, how), how being 'close_notify' or what
        ended it otherwise."""
        out = bytearray()
        while True:
            try:
                data = self.obj.read(65536)
                if not data:
                    return bytes(out), "close_notify"
                out += data
            except ssl.SSLWantReadError:
                if self.socket_eof:
                    return bytes(out), "eof without close_notify"
                self._fill()
            except ssl.SSLZeroReturnError:
                return bytes(out), "close_notify"
            except ssl.SSLError as e:
                return bytes(out), "TLS error " + str(e.reason)  # an alert from sluice, for one
            except OSError as e:
                return bytes(out), repr(e)

    def close(self):
        self.sock.close()


def raw_connect(port):
    s = harness.connect(port, timeout=5)
    return s, s.getsockname()[1]


class SClient:
    """`openssl s_client` with its stdin a pipe; its stdout and stderr collected as lines."""

    def __init__(self, args):
        self.proc = subprocess.Popen([OPENSSL, "s_client"] + args, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     preexec_fn=harness.die_with_parent)
        harness.register_cleanup(self.kill)
        self.out, self.err = [], []
        self._cv = threading.Condition()
        self._threads = [threading.Thread(target=self._read, args=(f, sink), daemon=True)
                         for f, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._threads:
            t.start()

    def _read(self, stream, sink):
        for raw in iter(stream.readline, b""):
            with self._cv:
                sink.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def wait_line(self, pred, timeout, stream="out"):
        """Index of the first line of stdout (or stderr) for which pred holds, or None."""
        lines = self.out if stream == "out" else self.err
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for i, l in enumerate(lines):
                    if pred(l):
                        return i
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and not any(t.is_alive() for t in self._threads):
                    return None
                self._cv.wait(min(left, 0.05))

    def send(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def wait(self, timeout):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        for t in self._threads:
            t.join(2)
        return rc

    def text(self):
        with self._cv:
            return "\n".join(self.out) + "\n--- stderr ---\n" + "\n".join(self.err)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def s_client_status(port):
    """`openssl s_client -status` (stdin closed at once): (exit code, output lines)."""
    p = subprocess.run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "localhost",
                        "-CAfile", pki().ca_file, "-verify_return_error", "-status"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20,
                       preexec_fn=harness.die_with_parent)
    return p.returncode, [l.strip() for l in p.stdout.decode("utf-8", "replace").splitlines()]


def not_after(cert_file):
    """The certificate's notAfter, in seconds since the epoch."""
    out = subprocess.run([OPENSSL, "x509", "-in", cert_file, "-noout", "-enddate"], stdout=subprocess.PIPE,
                         text=True, timeout=20).stdout.strip()
    return ssl.cert_time_to_seconds(out.split("=", 1)[1])


def iso_time(epoch):
    """A time as sluice writes it in messages: ISO 8601 UTC with milliseconds."""
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def need_openssl():
    if not OPENSSL:
        raise harness.Skip("no openssl CLI")


# --------------------------------------------------------------------------
# 1. bad input on an HTTP TLS listener, a well-behaved client served all along


def case_bad_input_does_not_disturb_other_clients():
    need_openssl()
    b = HttpBackend("app")
    leaf = pki().leaf()
    lst = tls_listener([cert_entry(leaf.chain, leaf.key)], routes=FORWARD, handshake_timeout="500ms")
    sl, ap = start([lst], [hu.cluster("app", [b])], workers=1)
    port = sl.port("web")
    ctx = client_context()

    # A keep-alive TLS connection that gets a request between every bad input.
    keep_raw = harness.connect(port, timeout=5)
    keep = ctx.wrap_socket(keep_raw, server_hostname="localhost")
    keep_reader = SockReader(keep)
    keep_requests = [0]

    def keepalive_get(when):
        keep.sendall(b"GET /keepalive HTTP/1.1\r\nHost: localhost\r\n\r\n")
        keep_reader.deadline = time.monotonic() + 5
        r = hu.read_response(keep_reader)
        keep_requests[0] += 1
        check(r.status == 200, "%s: the keep-alive TLS connection gets 200 (request %d on it)" %
              (when, keep_requests[0]), r.describe())

    keepalive_get("before")
    prober = Prober(port, max_conns=400, max_seconds=40, pause=0.02)
    prober.start()
    check(harness.wait_until(lambda: prober.count() >= 2, 10), "the prober's first connections are done", "")
    phases = []  # (name, start, end) of the bad connections that lasted long enough to overlap

    def bad_protocol(name, payload, reason, protocol_count):
        s, cport = raw_connect(port)
        s.sendall(payload)
        data, how = harness.recv_until_closed(s, 5)
        s.close()
        check(how == "reset" and data == b"",
              "%s: sluice resets the connection without sending anything (%s, %r)" % (name, how, data[:40]), "")
        want = "http web: 127.0.0.1:%d: TLS handshake failed: %s" % (cport, reason)
        line = sl.wait_log(lambda l: l.endswith(want), 3)
        check(line is not None, "%s: logged '%s'" % (name, want), hu.log_tail(sl))
        c = wait_counters(ap, {"protocol": protocol_count})
        check(c["protocol"] == protocol_count,
              "%s: sluice_tls_handshake_failures_total{reason=\"protocol\"} == %d" % (name, protocol_count), repr(c))
        keepalive_get(name)

    # (a) garbage, then a plain-text request, where a ClientHello should be
    bad_protocol("garbage", b"\x00\x01\x02\x03 this is not a ClientHello\r\n\r\n", "wrong version number", 1)
    bad_protocol("plain HTTP", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "http request", 2)

    # (b) a client that connects and sends nothing
    s, cport = raw_connect(port)
    t0 = time.monotonic()
    how, took = harness.wait_closed(s, 5)
    phases.append(("silent client", t0, time.monotonic()))
    s.close()
    check(how == "reset" and TIMEOUT_MIN <= took < 3,
          "silent client: reset after %.3f s (handshake_timeout 500ms; between 0.5 and 3 s)" % took, how)
    want = "http web: 127.0.0.1:%d: TLS handshake not finished within 500ms" % cport
    check(sl.wait_log(lambda l: l.endswith(want), 3) is not None, "silent client: logged '%s'" % want,
          hu.log_tail(sl))
    c = wait_counters(ap, {"timeout": 1})
    check(c["timeout"] == 1, "silent client: failures{reason=\"timeout\"} == 1", repr(c))
    keepalive_get("silent client")

    # (c) a valid ClientHello, one byte every 100 ms: the timeout counts from the connect
    hello = client_hello()
    s, cport = raw_connect(port)
    t0 = time.monotonic()
    sent, how, took = 0, "timeout", 0.0
    for i in range(len(hello)):  # bounded: the ClientHello's length (hundreds of bytes)
        try:
            s.sendall(hello[i:i + 1])
            sent += 1
        except OSError:
            how = "reset"
            break
        data, how = harness.recv_until_closed(s, 0.1)  # the 100 ms between bytes
        if how != "timeout":
            break
    took = time.monotonic() - t0
    phases.append(("slow ClientHello", t0, time.monotonic()))
    s.close()
    check(how == "reset" and TIMEOUT_MIN <= took < 3 and sent < len(hello),
          "ClientHello at one byte per 100 ms: reset after %.3f s, %d of its %d bytes sent" %
          (took, sent, len(hello)), how)
    want = "http web: 127.0.0.1:%d: TLS handshake not finished within 500ms" % cport
    check(sl.wait_log(lambda l: l.endswith(want), 3) is not None, "slow ClientHello: logged '%s'" % want,
          hu.log_tail(sl))
    c = wait_counters(ap, {"timeout": 2})
    check(c["timeout"] == 2, "slow ClientHello: failures{reason=\"timeout\"} == 2", repr(c))
    keepalive_get("slow ClientHello")

    # (d) a truncated record: the first 10 bytes of a ClientHello, then the client's FIN
    s, cport = raw_connect(port)
    s.sendall(hello[:10])
    s.shutdown(socket.SHUT_WR)
    data, how = harness.recv_until_closed(s, 5)
    s.close()
    check(how == "reset" and data == b"", "truncated ClientHello then FIN: reset, nothing sent (%s)" % how, "")
    want = "http web: 127.0.0.1:%d: TLS handshake failed: connection closed during the handshake" % cport
    check(sl.wait_log(lambda l: l.endswith(want), 3) is not None, "truncated record: logged '%s'" % want,
          hu.log_tail(sl))
    c = wait_counters(ap, {"closed": 1})
    check(c["closed"] == 1, "truncated record: failures{reason=\"closed\"} == 1", repr(c))
    keepalive_get("truncated record")

    # A ClientHello in three pieces 100 ms apart, well within the timeout: served
    c = TlsClient(port)
    try:
        c.obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    first = c.outgoing.read()
    cut = [0, len(first) // 3, 2 * len(first) // 3, len(first)]
    for i in range(3):
        c.sock.sendall(first[cut[i]:cut[i + 1]])
        if i < 2:
            _, how = harness.recv_until_closed(c.sock, 0.1)  # the 100 ms between pieces
            check(how == "timeout", "ClientHello in pieces: still open after piece %d" % (i + 1), how)
    c.sock.settimeout(5)
    c.handshake()
    c.send(b"GET /pieces HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    data, how = c.read_to_end()
    c.close()
    check(data.startswith(b"HTTP/1.1 200 OK\r\n") and how == "close_notify",
          "ClientHello in three pieces 100 ms apart: handshake done, 200, close_notify (%s)" % how, repr(data[:200]))
    keepalive_get("ClientHello in pieces")

    # After the handshake, a record that does not decrypt: that connection ends with an alert
    c = TlsClient(port)
    c.handshake()
    c.sock.sendall(b"\x17\x03\x03\x00\x20" + bytes(32))  # application data, 32 bytes of zeros
    data, how = c.read_to_end()
    c.close()
    check(data == b"" and how == "TLS error SSLV3_ALERT_BAD_RECORD_MAC",
          "a record that does not decrypt: the client reads the alert bad_record_mac (%s)" % how, "")
    keepalive_get("bad record")

    # (e) TLS 1.2 renegotiation asked by the client (s_client's R command): refused
    sc = SClient(["-connect", "127.0.0.1:%d" % port, "-servername", "localhost", "-CAfile", pki().ca_file,
                  "-verify_return_error", "-tls1_2", "-crlf"])
    got = sc.wait_line(lambda l: l.startswith("New, TLSv1.2, Cipher is "), 10)
    check(got is not None, "s_client -tls1_2: handshake done", sc.text()[-3000:])
    sc.send(b"GET /before-renegotiation HTTP/1.1\nHost: localhost\n\n")
    got = sc.wait_line(lambda l: l == "HTTP/1.1 200 OK", 10)
    check(got is not None, "s_client -tls1_2: GET -> HTTP/1.1 200 OK", sc.text()[-3000:])
    sc.send(b"R\n")
    rc = sc.wait(10)
    tail = sc.err[-2:]
    ok = (rc == 1 and len(tail) == 2 and tail[0] == "RENEGOTIATING" and
          re.fullmatch(r"[0-9A-F]+:error:0A000153:SSL routines:ssl3_read_bytes:no renegotiation:\S+:\d+:", tail[1]))
    check(ok, "s_client R: its stderr ends with 'RENEGOTIATING' and '...:error:0A000153:SSL routines:"
          "ssl3_read_bytes:no renegotiation:...', exit code 1 (%r)" % rc, sc.text()[-3000:])
    keepalive_get("renegotiation")

    # The prober was served during the long bad connections, not only after them.
    results = prober.finish()
    failures = [r for r in results if r[2] != 200]
    check(not failures, "the prober's %d new TLS connections all got 200" % len(results), repr(failures[:5]))
    for name, a, z in phases:
        inside = [r for r in results if r[0] >= a and r[1] <= z]
        check(inside, "%s (%.2f s): prober connections were served while it was open (%d)" %
              (name, z - a, len(inside)), "")
    keep.close()

    # the prober's, the keep-alive connection, the ClientHello in pieces, the bad record, s_client
    handshakes = len(results) + 1 + 1 + 1 + 1
    c = wait_counters(ap, {"handshakes": handshakes})
    want = {"handshakes": handshakes, "resumed": 0, "protocol": 2, "timeout": 2, "closed": 1}
    check(c == want, "/metrics: %r" % want, repr(c))
    main, tls = exit_summary(sl)
    check(tls == [summary_line("web", handshakes, protocol=2, timeout=2, closed=1)],
          "exit summary: '%s'" % summary_line("web", handshakes, protocol=2, timeout=2, closed=1), repr(tls))
    counts = listener_counts(main[0]) if len(main) == 1 else None
    # accepted: those with a handshake and the five bad ones; requests: the prober's, the
    # keep-alive ones, the ClientHello in pieces and s_client's
    want = {"accepted": handshakes + 5, "requests": len(results) + keep_requests[0] + 2,
            "2xx": len(results) + keep_requests[0] + 2}
    check(counts == want, "exit summary of listener web: %r" % want, repr(main))


# --------------------------------------------------------------------------
# 2. certificate files changed under continuous new connections


def write_atomically(path, src):
    """Replaces path with a copy of src (a temporary file renamed over it)."""
    tmp = path + ".tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, path)


def served_after(prober, t, n, timeout=10.0):
    """The prober's connections that started after t, once there are at least n (or the
    timeout passed)."""
    after = lambda: [r for r in prober.snapshot() if r[0] >= t]
    harness.wait_until(lambda: len(after()) >= n, timeout, 0.01)
    return after()


def check_served(prober, t, cert, what, n=10):
    """The next n connections (at least) started after t all saw cert."""
    cn = cert_cn(cert)
    got = served_after(prober, t, n)
    wrong = [r for r in got if (r[2], r[3], r[4]) != (200, cert.serial, cn)]
    check(len(got) >= n and not wrong,
          "%s: the %d connections started afterwards all got 200 and the certificate with serial %s, CN %s" %
          (what, len(got), cert.serial, cn), "not so: %r" % wrong[:5])


def cert_cn(cert):
    return SWAP_CNS.get(cert.name, "localhost")


def subject_cn(cn):
    """The subject as sluice logs it (RFC 2253: the last RDN first)."""
    return "O=sluice tests,CN=%s" % cn


SWAP_CNS = {}


def swap_certs():
    """Three server certificates for localhost told apart by their serial and CN (the first
    name: localhost, swap-b.test, swap-c.test)."""
    p = pki()
    certs = (p.leaf(), p.leaf(("swap-b.test", "localhost"), ("127.0.0.1",)),
             p.leaf(("swap-c.test", "localhost"), ("127.0.0.1",)))
    SWAP_CNS.update({certs[1].name: "swap-b.test", certs[2].name: "swap-c.test"})
    return certs


def check_no_failures(results, what):
    failures = [r for r in results if r[2] != 200 or r[5] is not None]
    check(not failures, "%s: all %d new TLS connections made during it got 200" % (what, len(results)),
          repr(failures[:5]))


def case_certificate_files_rewritten_under_load():
    a, b, c = swap_certs()
    d = tmp_dir("sluice-tls-swap-")
    crt, key = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
    shutil.copyfile(a.chain, crt)
    shutil.copyfile(a.key, key)
    sl, ap = start([tls_listener([cert_entry(crt, key)])], workers=2)  # each worker swaps its own
    port = sl.port("web")
    g = cert_gauges(ap, "web", crt)
    check(g["reloads"] == 0 and g["reload_failures"] == 0, "at start: reloads 0, reload_failures 0", repr(g))
    prober = Prober(port, max_conns=3000, max_seconds=40)
    prober.start()
    check_served(prober, 0, a, "at start")

    # (a) both files replaced by another certificate's
    mark = sl.line_count()
    write_atomically(crt, b.chain)
    write_atomically(key, b.key)
    want = "listener web: tls: serving %s (%s) for new handshakes" % (subject_cn("swap-b.test"), crt)
    line = sl.wait_log(lambda l: l.endswith(want), 5, start=mark)
    t_seen = time.monotonic()
    check(line is not None, "new files: logged '%s'" % want, main_lines(sl))
    check_served(prober, t_seen, b, "after the serving line")
    g = cert_gauges(ap, "web", crt)
    check(g["reloads"] == 1 and g["reload_failures"] == 0, "gauges: reloads 1, reload_failures 0", repr(g))

    # (b) a certificate whose key is not the one beside it: refused, the last good one stays
    mark = sl.line_count()
    write_atomically(crt, c.chain)
    want = ("listener web: tls: the changed certificate files are not used, the last good ones stay in force: "
            "%s: the private key does not match the certificate in %s (%s)" % (key, crt, subject_cn("swap-c.test")))
    line = sl.wait_log(lambda l: "the changed certificate files are not used" in l, 5, start=mark)
    t_seen = time.monotonic()
    check(line is not None and line.endswith(want), "mismatched key: logged '%s'" % want, main_lines(sl))
    check_served(prober, t_seen, b, "after the refusal")
    g = cert_gauges(ap, "web", crt)
    check(g["reloads"] == 1 and g["reload_failures"] == 1, "gauges: reloads 1, reload_failures 1", repr(g))

    # an expired certificate with its own key: refused too
    expired = pki().expired()
    mark = sl.line_count()
    write_atomically(crt, expired.chain)
    write_atomically(key, expired.key)
    want = ("listener web: tls: the changed certificate files are not used, the last good ones stay in force: "
            "%s: the certificate (%s) expired at %s" %
            (crt, subject_cn("localhost"), iso_time(not_after(expired.cert))))
    line = sl.wait_log("the changed certificate files are not used", 5, start=mark)
    t_seen = time.monotonic()
    check(line is not None and line.endswith(want), "expired certificate: logged '%s'" % want, main_lines(sl))
    check_served(prober, t_seen, b, "after the second refusal")
    g = cert_gauges(ap, "web", crt)
    check(g["reloads"] == 1 and g["reload_failures"] == 2, "gauges: reloads 1, reload_failures 2", repr(g))

    # a good set again
    mark = sl.line_count()
    write_atomically(crt, c.chain)
    write_atomically(key, c.key)
    want = "listener web: tls: serving %s (%s) for new handshakes" % (subject_cn("swap-c.test"), crt)
    line = sl.wait_log(lambda l: l.endswith(want), 5, start=mark)
    t_seen = time.monotonic()
    check(line is not None, "a good set again: logged '%s'" % want, main_lines(sl))
    check_served(prober, t_seen, c, "after the good set")
    g = cert_gauges(ap, "web", crt)
    check(g["reloads"] == 2 and g["reload_failures"] == 2, "gauges: reloads 2, reload_failures 2", repr(g))
    check(sl.find_lines("the changed certificate files are not used", start=mark) == [],
          "no refusal for the good set", main_lines(sl))

    results = prober.finish()
    check_no_failures(results, "the whole case")
    main, tls = exit_summary(sl)
    check(tls == [summary_line("web", len(results))], "exit summary: '%s'" % summary_line("web", len(results)),
          repr(tls))



def kubernetes_dir(root, stamp, cert):
    """A timestamped data directory as the kubelet writes it, holding tls.crt and tls.key."""
    d = os.path.join(root, "..2026_12_03_00_00_%02d.%09d" % (stamp, stamp))
    os.mkdir(d)
    shutil.copyfile(cert.chain, os.path.join(d, "tls.crt"))
    shutil.copyfile(cert.key, os.path.join(d, "tls.key"))
    return os.path.basename(d)


def kubernetes_flip(root, data_dir):
    """..data points at data_dir, atomically: a new symlink renamed over the old one."""
    tmp = os.path.join(root, "..data_tmp")
    os.symlink(data_dir, tmp)
    os.rename(tmp, os.path.join(root, "..data"))


def case_certificate_kubernetes_secret_flip():
    a, b, c = swap_certs()
    root = tmp_dir("sluice-tls-k8s-")
    first = kubernetes_dir(root, 1, a)
    os.symlink(first, os.path.join(root, "..data"))
    crt, key = os.path.join(root, "tls.crt"), os.path.join(root, "tls.key")
    os.symlink("..data/tls.crt", crt)
    os.symlink("..data/tls.key", key)
    sl, ap = start([tls_listener([cert_entry(crt, key)])])
    port = sl.port("web")
    prober = Prober(port, max_conns=3000, max_seconds=40)
    prober.start()
    check_served(prober, 0, a, "at start")

    old = first
    for n, (cert, cn) in enumerate(((b, "swap-b.test"), (c, "swap-c.test")), start=1):
        new = kubernetes_dir(root, n + 1, cert)
        mark = sl.line_count()
        kubernetes_flip(root, new)
        shutil.rmtree(os.path.join(root, old))  # the kubelet removes the old data directory
        old = new
        want = "listener web: tls: serving %s (%s) for new handshakes" % (subject_cn(cn), crt)
        line = sl.wait_log(lambda l: l.endswith(want), 5, start=mark)
        t_seen = time.monotonic()
        check(line is not None, "flip %d of ..data: logged '%s'" % (n, want), main_lines(sl))
        check_served(prober, t_seen, cert, "after flip %d" % n)
        g = cert_gauges(ap, "web", crt)
        check(g["reloads"] == n and g["reload_failures"] == 0, "gauges: reloads %d, reload_failures 0" % n,
              repr(g))

    results = prober.finish()
    check_no_failures(results, "the whole case")
    main, tls = exit_summary(sl)
    check(tls == [summary_line("web", len(results))], "exit summary: '%s'" % summary_line("web", len(results)),
          repr(tls))


# --------------------------------------------------------------------------
# 3. OCSP stapling


def stapled(port):
    """What `openssl s_client -status` says about the OCSP response: (exit code, the status
    lines). The exit code is 0 only when the certificate verified (-verify_return_error)."""
    rc, lines = s_client_status(port)
    keep = [l for l in lines if l.startswith(("OCSP response:", "OCSP Response Status:", "Cert Status:"))]
    return rc, keep


def next_update(der):
    """nextUpdate of an OCSP response as sluice writes times (ISO 8601 UTC, milliseconds)."""
    out = subprocess.run([OPENSSL, "ocsp", "-respin", der, "-resp_text", "-noverify"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, timeout=20).stdout
    m = re.search(r"Next Update: (\w+ +\d+ \d\d:\d\d:\d\d \d{4} GMT)", out)
    return iso_time(ssl.cert_time_to_seconds(m.group(1)))


def case_ocsp_stapling_follows_the_file():
    need_openssl()
    leaf = pki().leaf()
    good = pki().ocsp_response(leaf, "good")
    stale = pki().ocsp_response(leaf, "good", stale=True)
    d = tmp_dir("sluice-tls-ocsp-")
    ocsp = os.path.join(d, "ocsp.der")
    shutil.copyfile(stale, ocsp)
    sl, ap = start([tls_listener([cert_entry(leaf.chain, leaf.key, ocsp)])])
    port = sl.port("web")
    why = "%s: OCSP response not stapled: it is stale: its nextUpdate %s has passed" % (ocsp, next_update(stale))
    want = "%s:11:7: warning: listeners[0].tls: %s" % (sl.config_path, why)
    check(sl.find_lines(lambda l: l.endswith(" warn [main] " + want)),
          "a stale response at load: sluice starts and warns '%s'" % want, main_lines(sl))
    none = ["OCSP response: no response sent"]
    yes = ["OCSP response:", "OCSP Response Status: successful (0x0)", "Cert Status: good"]
    rc, got = stapled(port)
    check(rc == 0 and got == none, "s_client -status: %r" % none, "%r %r" % (rc, got))

    for n, (src, want, what) in enumerate(((good, yes, "a fresh response written over it"),
                                           (stale, none, "the stale one again")), start=1):
        mark = sl.line_count()
        write_atomically(ocsp, src)
        line = sl.wait_log("listener web: tls: serving ", 5, start=mark)
        check(line is not None, "%s: the files are read again (a 'serving' line)" % what, main_lines(sl))
        warned = sl.find_lines(lambda l: l.endswith(" warn [main] listener web: tls: " + why), start=mark)
        check(bool(warned) == (src == stale), "%s: %s" % (what, "warned stale" if src == stale else "no warning"),
              main_lines(sl))
        rc, got = stapled(port)
        check(rc == 0 and got == want, "%s: s_client -status: %r" % (what, want), "%r %r" % (rc, got))
        g = cert_gauges(ap, "web", leaf.chain)
        check(g["reloads"] == n and g["reload_failures"] == 0, "gauges: reloads %d, reload_failures 0" % n, repr(g))
    hu.stop_and_check(sl)


# --------------------------------------------------------------------------
# 4. handshake counters and the certificate expiry gauge


def case_handshake_counters_and_expiry_gauge():
    need_openssl()
    leaf = pki().leaf()
    # Two workers: the kernel spreads connections between them, and a ticket from one must
    # resume on the other (their ticket keys are shared).
    # and a listener that requires client certificates
    mtls = tls_listener([cert_entry(leaf.chain, leaf.key)], name="mtls", client_ca=pki().ca_file, verify="required")
    # and one that allows early data (0-RTT): its tickets resume like any other
    early = tls_listener([cert_entry(leaf.chain, leaf.key)], name="early", early_data={"enabled": True})
    sl, ap = start([tls_listener([cert_entry(leaf.chain, leaf.key)]), mtls, early], workers=2)
    port = sl.port("web")
    ctx = client_context()
    full, resumed = 3, 0
    session = None
    for i in range(full):
        f = https_get(port, ctx)
        check(f.status == 200 and not f.reused, "full handshake %d: 200, not resumed" % (i + 1), "")
        session = f.session
    workers = set()
    for i in range(64):  # until both workers resumed a session, at least 4 times; bounded
        if len(workers) == 2 and resumed >= 4:
            break
        f = https_get(port, ctx, session=session)
        resumed += 1
        if not (f.status == 200 and f.reused):
            check(False, "handshake %d with the last session's ticket: 200, resumed" % resumed, "reused %r" % f.reused)
        line = sl.wait_log(re.compile(r"\[w(\d)\] http web: 127\.0\.0\.1:%d: TLSv1\.3 .* resumed$" % f.local_port), 3)
        check(line is not None, "sluice logged the resumed handshake from port %d" % f.local_port, hu.log_tail(sl, 10))
        workers.add(re.search(r"\[w(\d)\]", line).group(1))
        session = f.session
    check(workers == {"0", "1"}, "%d handshakes with the last session's ticket: all 200 and resumed, on both "
          "workers" % resumed, repr(workers))
    # TLS 1.2 too, with s_client: its session (a ticket inside the handshake) saved, then offered
    sess = os.path.join(tmp_dir("sluice-tls-sess-"), "tls12.sess")
    for flag, word in (("-sess_out", "New"), ("-sess_in", "Reused")):
        p = subprocess.run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "localhost",
                            "-CAfile", pki().ca_file, "-verify_return_error", "-tls1_2", flag, sess],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20,
                           preexec_fn=harness.die_with_parent)
        out = p.stdout.decode("utf-8", "replace").splitlines()
        got = [l for l in out if l.startswith(("New, ", "Reused, "))]
        check(p.returncode == 0 and got == ["%s, TLSv1.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256" % word],
              "s_client -tls1_2 %s: '%s, TLSv1.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256'" % (flag, word),
              "%r %r" % (p.returncode, got))
    full += 1
    resumed += 1
    want = {"handshakes": full + resumed, "resumed": resumed, "protocol": 0, "timeout": 0, "closed": 0}
    c = wait_counters(ap, want)
    check(c == want, "/metrics: %r" % want, repr(c))
    s = scrape(ap)
    n = sample(s, "sluice_tls_handshake_duration_seconds_count", listener="web")
    check(n == full + resumed, "sluice_tls_handshake_duration_seconds_count == %d" % (full + resumed), repr(n))
    expiry = sample(s, "sluice_tls_certificate_expiry_seconds", listener="web", certificate=leaf.chain)
    left = not_after(leaf.cert) - time.time()
    check(expiry is not None and abs(expiry - left) < 60,
          "sluice_tls_certificate_expiry_seconds %r is notAfter - now (%.0f) within a minute" % (expiry, left), "")

    # client certificates: two clients with one, one without (refused: required)
    client = pki().client()
    with_cert = client_context()
    with_cert.load_cert_chain(client.chain, client.key)
    for i in range(2):
        f = https_get(sl.port("mtls"), with_cert)
        check(f.status == 200, "mtls: client certificate %d: 200" % (i + 1), "")
    raw = harness.connect(sl.port("mtls"))
    cport = raw.getsockname()[1]
    try:
        # TLS 1.3: the client's side of the handshake is done before sluice has seen its empty
        # Certificate; sluice's answer is the next thing to read (a write first could race
        # with the reset that follows the alert).
        https = client_context().wrap_socket(raw, server_hostname="localhost")
        outcome = repr(https.recv(100))
    except ssl.SSLError as e:
        outcome = e.reason
    finally:
        raw.close()
    check(outcome == "TLSV13_ALERT_CERTIFICATE_REQUIRED",
          "mtls: a client without a certificate gets the alert certificate_required", outcome)
    want = "http mtls: 127.0.0.1:%d: TLS handshake failed: peer did not return a certificate" % cport
    check(sl.wait_log(lambda l: l.endswith(want), 3) is not None, "mtls: logged '%s'" % want, hu.log_tail(sl, 10))
    c = wait_counters(ap, {"handshakes": 2, "protocol": 1}, listener="mtls")
    n = sample(scrape(ap), "sluice_tls_client_certificates_total", listener="mtls")
    check(c["handshakes"] == 2 and c["protocol"] == 1 and n == 2,
          "mtls: handshakes 2, failures{reason=\"protocol\"} 1, sluice_tls_client_certificates_total 2",
          "%r %r" % (c, n))

    # early_data enabled: a ticket resumes (OpenSSL's anti-replay cache would refuse them all)
    f = https_get(sl.port("early"), ctx)
    check(f.status == 200 and not f.reused, "early: full handshake: 200", "")
    for i in range(3):
        f = https_get(sl.port("early"), ctx, session=f.session)
        check(f.status == 200 and f.reused, "early: handshake %d with the last ticket: 200, resumed" % (i + 1),
              "reused %r" % f.reused)
    c = wait_counters(ap, {"handshakes": 4, "resumed": 3}, listener="early")
    check(c["handshakes"] == 4 and c["resumed"] == 3, "early: handshakes 4, resumed 3", repr(c))

    _, tls = exit_summary(sl)
    line = summary_line("web", full + resumed, resumed=resumed)
    check(tls == [line], "exit summary: '%s'" % line, repr(tls))
    _, tls = exit_summary(sl, "mtls")
    line = summary_line("mtls", 2, protocol=1, client_certs=2)
    check(tls == [line], "exit summary: '%s'" % line, repr(tls))
    _, tls = exit_summary(sl, "early")
    check(tls == [summary_line("early", 4, resumed=3)], "exit summary: '%s'" % summary_line("early", 4, resumed=3),
          repr(tls))


# --------------------------------------------------------------------------
# 5. a TLS tcp listener: bytes both ways, then half-close


class HalfCloseBackend(harness.TcpServer):
    """Echoes until the client's FIN, then sends `tail` and closes."""

    tail = b""

    def __init__(self, tail):
        self.tail = tail
        self.received = bytearray()
        self.eof = threading.Event()
        super().__init__()

    def handle(self, conn):
        while True:
            data = conn.recv(65536)
            if not data:
                break
            with self._lock:
                self.received += data
            conn.sendall(data)
        self.eof.set()
        conn.sendall(self.tail)
        conn.shutdown(socket.SHUT_WR)


class ServerFirstCloseBackend(harness.TcpServer):
    """Sends `greeting` and its FIN at once, then reads until the client's FIN."""

    def __init__(self, greeting):
        self.greeting = greeting
        self.received = bytearray()
        self.eof = threading.Event()
        super().__init__()

    def handle(self, conn):
        conn.sendall(self.greeting)
        conn.shutdown(socket.SHUT_WR)
        while True:
            data = conn.recv(65536)
            if not data:
                break
            with self._lock:
                self.received += data
        self.eof.set()


def case_tcp_listener_half_close():
    leaf = pki().leaf()
    tail = bytes(range(256)) * 1024  # 256 KiB, sent by the backend after the client's FIN
    backend = HalfCloseBackend(tail)
    greeting = b"hello, then FIN\n"
    backend2 = ServerFirstCloseBackend(greeting)
    lst = tls_listener([cert_entry(leaf.chain, leaf.key)], name="tcp_tls", protocol="tcp", cluster="app",
                       handshake_timeout="500ms")
    lst2 = tls_listener([cert_entry(leaf.chain, leaf.key)], name="tcp_tls2", protocol="tcp", cluster="app2")
    sl, ap = start([lst, lst2], [hu.cluster("app", [backend]), hu.cluster("app2", [backend2])])
    port = sl.port("tcp_tls")

    # the client half-closes first
    c = TlsClient(port)
    c.handshake()
    ping = b"ping through TLS\n" * 100
    c.send(ping)
    check(c.recv_exact(len(ping)) == ping, "%d bytes to the backend and back through the TLS listener" % len(ping),
          "")
    c.close_write()
    check(backend.eof.wait(5), "the client's close_notify + FIN reaches the backend as a FIN", main_lines(sl))
    check(bytes(backend.received) == ping, "the backend got exactly the client's %d bytes" % len(ping),
          "%d bytes" % len(backend.received))
    data, how = c.read_to_end()
    check(data == tail and how == "close_notify",
          "after the half-close, the backend's %d bytes arrive whole, then sluice's close_notify" % len(tail),
          "%d bytes, %s" % (len(data), how))
    rest, how = harness.recv_until_closed(c.sock, 5)
    check(rest == b"" and how == "eof", "then sluice's FIN (%s)" % how, repr(rest[:40]))
    c.close()

    # the backend half-closes first: the client gets close_notify + FIN and may still send
    c = TlsClient(sl.port("tcp_tls2"))
    c.handshake()
    data, how = c.read_to_end()
    check(data == greeting and how == "close_notify",
          "the backend's greeting, then its FIN as close_notify (%s)" % how, "%r" % data)
    rest, how = harness.recv_until_closed(c.sock, 5)
    check(rest == b"" and how == "eof", "then sluice's FIN (%s)" % how, repr(rest[:40]))
    late = b"written after sluice's close_notify\n" * 50
    c.send(late)
    c.close_write()
    check(backend2.eof.wait(5), "the client's bytes and FIN reach the backend", main_lines(sl))
    check(bytes(backend2.received) == late, "the backend got exactly the %d bytes sent after its FIN" % len(late),
          "%d bytes" % len(backend2.received))
    c.close()

    # bad input on a TLS tcp listener: the same reasons, logged as tcp
    s, cport = raw_connect(port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data, how = harness.recv_until_closed(s, 5)
    s.close()
    want = "tcp tcp_tls: 127.0.0.1:%d: TLS handshake failed: http request" % cport
    check(data == b"" and how == "reset" and sl.wait_log(lambda l: l.endswith(want), 3) is not None,
          "plain HTTP on the TLS tcp listener: closed (%s), logged '%s'" % (how, want), main_lines(sl))
    s, cport = raw_connect(port)
    how, took = harness.wait_closed(s, 5)
    s.close()
    want = "tcp tcp_tls: 127.0.0.1:%d: TLS handshake not finished within 500ms" % cport
    check(how == "reset" and TIMEOUT_MIN <= took < 3 and sl.wait_log(lambda l: l.endswith(want), 3) is not None,
          "silent client on the TLS tcp listener: reset after %.3f s, logged '%s'" % (took, want), main_lines(sl))
    c = wait_counters(ap, {"protocol": 1, "timeout": 1}, listener="tcp_tls")
    want = {"handshakes": 1, "resumed": 0, "protocol": 1, "timeout": 1, "closed": 0}
    check(c == want, "/metrics of tcp_tls: %r" % want, repr(c))
    _, tls = exit_summary(sl, "tcp_tls")
    line = summary_line("tcp_tls", 1, protocol=1, timeout=1)
    check(tls == [line], "exit summary: '%s'" % line, repr(tls))


# --------------------------------------------------------------------------
# 6. an HTTP request, then the client's close_notify and FIN


def case_http_request_then_half_close():
    leaf = pki().leaf()
    plain = hu.simple_listener(DIRECT, name="plain")
    sl, ap = start([tls_listener([cert_entry(leaf.chain, leaf.key)]), plain])
    request = b"GET /direct HTTP/1.1\r\nHost: localhost\r\n\r\n"
    body = b"tls ok\n"
    want = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s" % (len(body), body)

    # cleartext: the request and the FIN
    s = harness.connect(sl.port("plain"))
    s.sendall(request)
    s.shutdown(socket.SHUT_WR)
    data, how = harness.recv_until_closed(s, 5)
    s.close()
    check(data == want and how == "eof", "cleartext: request then FIN: the whole response, then FIN (%s)" % how,
          repr(data))

    # TLS: the request, close_notify and FIN; with the client's Finished in the same segment or not
    handshakes = 0
    for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        for coalesced in (False, True):
            what = "%s, request %s" % (version.name, "in the segment of the client's Finished" if coalesced
                                       else "after the handshake")
            c = TlsClient(sl.port("web"), version=version)
            c.handshake(flush_last=not coalesced)
            handshakes += 1
            c.obj.write(request)
            c.close_write()
            data, how = c.read_to_end()
            rest, end = harness.recv_until_closed(c.sock, 5)
            c.close()
            check(data == want and how == "close_notify" and rest == b"" and end == "eof",
                  "%s, then close_notify + FIN: the whole response, close_notify, FIN" % what,
                  "%r, %s, then %r %s" % (data, how, rest, end))
    main, tls = exit_summary(sl)
    check(tls == [summary_line("web", handshakes)], "exit summary: '%s'" % summary_line("web", handshakes),
          repr(tls))
    counts = listener_counts(main[0]) if len(main) == 1 else None
    check(counts == {"accepted": handshakes, "requests": handshakes, "2xx": handshakes},
          "exit summary of listener web: %d requests, all 2xx" % handshakes, repr(main))


# --------------------------------------------------------------------------
# 7. drain with TLS connections open


def case_drain_closes_tls_connections_cleanly():
    leaf = pki().leaf()
    sl, ap = start([tls_listener([cert_entry(leaf.chain, leaf.key)], handshake_timeout="10s")])
    port = sl.port("web")
    c = TlsClient(port)
    c.handshake()
    c.send(b"GET /idle-after HTTP/1.1\r\nHost: localhost\r\n\r\n")
    head = c.recv_exact(17)
    check(head == b"HTTP/1.1 200 OK\r\n", "a keep-alive TLS connection: 200", repr(head))
    silent = harness.connect(port)  # mid-handshake: nothing sent
    active = harness.wait_until(
        lambda: sample(scrape(ap), "sluice_listener_connections_active", listener="web") == 2, 3, 0.02)
    check(active, "sluice_listener_connections_active == 2 (both accepted)", "")
    t0 = time.monotonic()
    sl.signal(signal.SIGTERM)
    data, how = c.read_to_end()
    rest, end = harness.recv_until_closed(c.sock, 5)
    took = time.monotonic() - t0
    c.close()
    check(how == "close_notify" and rest == b"" and end == "eof" and took < 3,
          "SIGTERM: the idle keep-alive connection gets the rest of its response, close_notify and FIN "
          "within %.2f s" % took, "%s %r %s" % (how, rest, end))
    how, waited = harness.wait_closed(silent, 5)
    check(how == "eof" and time.monotonic() - t0 < 3,
          "SIGTERM: the connection still in its handshake is closed (%s), not left to its 10 s timeout" % how, "")
    rc = sl.wait_exit(10)
    harness.check_clean_exit(sl, rc, "sluice exits 0 once both are closed (%.2f s)" % (time.monotonic() - t0))
    _, tls = exit_summary(sl)
    check(tls == [summary_line("web", 1)], "exit summary: '%s'" % summary_line("web", 1), repr(tls))


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_bad_input_does_not_disturb_other_clients, case_certificate_files_rewritten_under_load,
                       case_certificate_kubernetes_secret_flip, case_ocsp_stapling_follows_the_file,
                       case_handshake_counters_and_expiry_gauge, case_tcp_listener_half_close,
                       case_http_request_then_half_close, case_drain_closes_tls_connections_cleanly])

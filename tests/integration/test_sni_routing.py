#!/usr/bin/env python3
"""SNI routing on a tcp listener, without terminating TLS.

Three real TLS servers (`openssl s_server -www`, each with its own self-signed certificate
made here with the openssl CLI) sit behind one tcp listener with sni_routes: an exact name,
a one-label wildcard, and the listener's own cluster as the default. Checked:
- `openssl s_client -servername a.example.com` gets backend A's certificate (its subject,
  exactly) and the backend's answer through sluice; the wildcard name gets B; no SNI, a name
  two labels under the wildcard and an unknown name get the default; names match in any case.
- Garbage instead of a ClientHello ("GET / HTTP/1.1"), a broken ClientHello and a client
  that closes at once are each closed with their logged reason and counter, reach no backend,
  while a TLS session opened before them goes on and new clients are served.
- A ClientHello sent in pieces within sni_timeout is routed, and so is one split into two TLS
  records (the backend completes the handshake: the bytes reach it unchanged); one that
  stalls is cut at sni_timeout, and so is a client that sends nothing.
- The access log says the server name and the cluster it chose; the counters are exact.
"""

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
import http_util as hu  # noqa: E402

ADMIN_RE = re.compile(r"admin listening on 127\.0\.0\.1:(\d+)")
ACCEPT_RE = re.compile(r"^ACCEPT 127\.0\.0\.1:(\d+)$")
SNI_KEYS = ("sni_routed", "sni_default", "sni_not_tls", "sni_malformed", "sni_timeouts")


# --------------------------------------------------------------------------
# certificates and TLS backends


def tmp_dir():
    d = tempfile.mkdtemp(prefix="sluice-sni-")
    harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


class Cert:
    """A self-signed P-256 certificate for `cn`, made with the openssl CLI."""

    def __init__(self, directory, name, cn):
        self.cert = os.path.join(directory, name + ".pem")
        self.key = os.path.join(directory, name + ".key")
        harness.sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj", "/CN=" + cn])
        # The subject as the openssl CLI prints it, s_client included ("subject=CN = a.example.com").
        self.subject = harness.sh(["openssl", "x509", "-in", self.cert, "-noout", "-subject"]).stdout.strip()
        with open(self.cert) as f:
            self.der = ssl.PEM_cert_to_DER_cert(f.read())


class TlsServer:
    """`openssl s_server -www` on 127.0.0.1, on the port the kernel picks."""

    def __init__(self, cert):
        self.cert = cert
        self.proc = subprocess.Popen(
            ["openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", cert.cert, "-key", cert.key, "-www"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            preexec_fn=harness.die_with_parent, text=True)
        harness.register_cleanup(self.stop)
        self.port = None
        seen = []
        deadline = time.monotonic() + 10
        while self.port is None and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            m = ACCEPT_RE.match(line.strip())
            if m:
                self.port = int(m.group(1))
        if self.port is None:
            raise harness.CheckFailed_with("openssl s_server says ACCEPT 127.0.0.1:PORT", "".join(seen))
        # Keep its pipe drained so it never blocks writing its log.
        self._drain = threading.Thread(target=lambda: self.proc.stdout.read(), daemon=True)
        self._drain.start()
        self.address = "127.0.0.1:%d" % self.port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


# --------------------------------------------------------------------------
# clients


def s_client(port, servername):
    """openssl s_client through sluice, asking for /; servername None sends no SNI.
    Returns (the certificate subject it saw, the first line of the HTTP answer, its output)."""
    args = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-ign_eof"]
    args += ["-noservername"] if servername is None else ["-servername", servername]
    p = subprocess.run(args, input="GET / HTTP/1.0\r\n\r\n", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=20, preexec_fn=harness.die_with_parent)
    subject = next((l for l in p.stdout.splitlines() if l.startswith("subject=")), None)
    status = next((l for l in p.stdout.splitlines() if l.startswith("HTTP/")), None)
    return subject, status, p.stdout


class MemoryTls:
    """A TLS client whose ClientHello the test holds as bytes (ssl.MemoryBIO), to send them
    over a plain socket however it likes, then finish the handshake over that socket."""

    def __init__(self, server_name):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=server_name)
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        self.hello = self.outgoing.read()

    def _pump(self, sock, step):
        while True:
            try:
                result = step()
            except ssl.SSLWantReadError:
                pending = self.outgoing.read()
                if pending:
                    sock.sendall(pending)
                data = sock.recv(65536)
                if not data:
                    raise harness.CheckFailed_with("the TLS peer stays open", "EOF before the step finished")
                self.incoming.write(data)
                continue
            pending = self.outgoing.read()
            if pending:
                sock.sendall(pending)
            return result

    def finish(self, sock):
        """Completes the handshake (the ClientHello was sent already); returns the server's DER certificate."""
        self._pump(sock, self.obj.do_handshake)
        return self.obj.getpeercert(binary_form=True)

    def get(self, sock):
        """GET / over the session; returns the status line of the answer."""
        self.obj.write(b"GET / HTTP/1.0\r\n\r\n")
        sock.sendall(self.outgoing.read())
        answer = b""
        while b"\r\n" not in answer:
            try:
                answer += self._pump(sock, lambda: self.obj.read(65536))
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
        return answer.split(b"\r\n", 1)[0].decode("latin-1")


# --------------------------------------------------------------------------
# sluice


def start(servers, sni_timeout=None, access_log=None):
    a, b, default = servers
    lst = {"name": "tls_in", "address": "127.0.0.1:0", "protocol": "tcp", "cluster": "fallback",
           "sni_routes": [{"names": ["a.example.com"], "cluster": "exact"},
                          {"names": ["*.example.net"], "cluster": "wild"}]}
    if sni_timeout:
        lst["sni_timeout"] = sni_timeout
    if access_log:
        lst["access_log"] = {"path": access_log}
    cfg = {"workers": 2, "log_level": "debug", "drain_timeout": "5s", "admin": {"address": "127.0.0.1:0"},
           "listeners": [lst],
           "clusters": [hu.cluster("exact", [a]), hu.cluster("wild", [b]), hu.cluster("fallback", [default])]}
    sl = harness.Sluice(harness.to_yaml(hu._quote(cfg)) + "\n")
    line = sl.wait_log(ADMIN_RE, 5)
    if not line:
        raise harness.CheckFailed_with("no 'admin listening on 127.0.0.1:PORT' line", sl.stderr_text())
    return sl, int(ADMIN_RE.search(line).group(1))


def sni_counters(ap):
    r = hu.request_once(ap, "GET", "/listeners", host="admin", timeout=5)
    if r.status != 200:
        check(False, "GET /listeners: 200", r.describe())
    ls = {x["name"]: x for x in json.loads(r.body)}
    return {k: ls["tls_in"].get(k) for k in SNI_KEYS}


def connections(ap):
    """The listener's downstream connections in /connections."""
    r = hu.request_once(ap, "GET", "/connections?listener=tls_in", host="admin", timeout=5)
    if r.status != 200:
        check(False, "GET /connections?listener=tls_in: 200", r.describe())
    return json.loads(r.body)


def wait_counters(ap, want, what):
    """The listener's SNI counters, polled until they are `want` (merged from the workers when asked)."""
    got = harness.wait_until(lambda: sni_counters(ap) == want and want, 5) or sni_counters(ap)
    check(got == want, what, "got %r\nwant %r" % (got, want))


def counts(**kw):
    return dict(dict.fromkeys(SNI_KEYS, 0), **kw)


def logged(sl, start, message):
    """Waits for a warn line whose message is exactly `message`."""
    def match(line):
        m = harness.LOG_RE.match(line)
        return m is not None and m.group(2).lower().startswith("warn") and m.group(4) == message
    line = sl.wait_log(match, 5, start)
    check(line is not None, "logged at warn: %s" % message, sl.stderr_text(start)[-3000:])


def read_log(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f.read().splitlines() if l.strip()]
    except FileNotFoundError:
        return []


def backends():
    d = tmp_dir()
    certs = [Cert(d, "a", "a.example.com"), Cert(d, "b", "*.example.net"), Cert(d, "default", "default.example")]
    return certs, [TlsServer(c) for c in certs]


# --------------------------------------------------------------------------
# cases


def case_routes_by_server_name():
    (a, b, default), servers = backends()
    log_path = os.path.join(tmp_dir(), "access.log")
    sl, ap = start(servers, access_log=log_path)
    port = sl.port("tls_in")
    cases = [
        ("a.example.com", a, "exact", "the exact name reaches A"),
        ("shop.example.net", b, "wild", "a name one label under *.example.net reaches B"),
        ("A.Example.COM", a, "exact", "names match in any case"),
        (None, default, "fallback", "no SNI goes to the listener's cluster"),
        ("deep.shop.example.net", default, "fallback", "two labels under the wildcard: the default"),
        ("example.net", default, "fallback", "the wildcard's own domain: the default"),
        ("other.example.org", default, "fallback", "an unknown name: the default"),
    ]
    for name, cert, cluster, what in cases:
        subject, status, out = s_client(port, name)
        check(subject == cert.subject and status == "HTTP/1.0 200 ok",
              "%s: s_client -servername %s saw '%s' and got 'HTTP/1.0 200 ok'" % (what, name, cert.subject),
              "subject %r, status %r\n%s" % (subject, status, out[-2000:]))
    wait_counters(ap, counts(sni_routed=3, sni_default=4), "3 connections routed by name, 4 to the default")
    r = hu.request_once(ap, "GET", "/config", host="admin", timeout=5)
    listener = json.loads(r.body)["listeners"][0] if r.status == 200 else {}
    want = [{"names": ["a.example.com"], "cluster": "exact"}, {"names": ["*.example.net"], "cluster": "wild"}]
    check(listener.get("sni_routes") == want and listener.get("sni_timeout") == "5s" and
          listener.get("cluster") == "fallback",
          "GET /config: the listener's sni_routes, sni_timeout 5s and default cluster", r.describe())
    entries = harness.wait_until(lambda: len(read_log(log_path)) == len(cases) and read_log(log_path), 5)
    got = sorted((e["sni"], e["cluster"], e["endpoint"]) for e in entries or [])
    want = sorted(((name or "").lower(), cluster, {"exact": servers[0], "wild": servers[1],
                                                  "fallback": servers[2]}[cluster].address)
                  for name, _, cluster, _ in cases)
    check(got == want, "the access log has each connection's server name, cluster and endpoint",
          "got %r\nwant %r" % (got, want))
    hu.stop_and_check(sl)


def case_garbage_is_closed_while_others_are_served():
    (a, b, _), servers = backends()
    log_path = os.path.join(tmp_dir(), "access.log")
    sl, ap = start(servers, access_log=log_path)
    port = sl.port("tls_in")

    # A session opened first, and used again after the garbage.
    open_session = harness.connect(port)
    tls = MemoryTls("a.example.com")
    open_session.sendall(tls.hello)
    check(tls.finish(open_session) == a.der, "a TLS session through sluice gets A's certificate", "")

    def refused(payload, fin, message, counter_state):
        start_line = sl.line_count()
        c = harness.connect(port)
        me = "127.0.0.1:%d" % c.getsockname()[1]
        c.sendall(payload)
        if fin:
            c.shutdown(socket.SHUT_WR)
        data, how = harness.recv_until_closed(c, 5)
        check(data == b"" and how == "eof", "%s: closed with nothing sent back" % message, "%r %s" % (data, how))
        logged(sl, start_line, "tcp tls_in: closing downstream %s: %s" % (me, message))
        wait_counters(ap, counter_state, "counted: %s" % message)
        entry = harness.wait_until(lambda: [e for e in read_log(log_path) if e["downstream"] == me], 5)
        check(entry and entry[0]["close_reason"] == message and entry[0]["cluster"] == "" and
              entry[0]["endpoint"] == "" and entry[0]["sni"] == "" and entry[0]["attempts"] == 0,
              "access log: close_reason '%s', no cluster, no endpoint, no attempt" % message, repr(entry))

    hello = MemoryTls("a.example.com").hello
    refused(b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n", False, "not TLS: not a TLS handshake record",
            counts(sni_routed=1, sni_not_tls=1))
    server_hello = bytearray(hello)
    server_hello[5] = 2  # a handshake record holding a ServerHello
    refused(bytes(server_hello), False,
            "malformed ClientHello: the first handshake message is not a ClientHello",
            counts(sni_routed=1, sni_not_tls=1, sni_malformed=1))
    refused(b"", True, "downstream closed before sending a ClientHello",
            counts(sni_routed=1, sni_not_tls=1, sni_malformed=2))
    refused(hello[:40], True, "downstream closed before its ClientHello was complete",
            counts(sni_routed=1, sni_not_tls=1, sni_malformed=3))

    check(tls.get(open_session) == "HTTP/1.0 200 ok", "the session opened before the garbage still works", "")
    open_session.close()
    subject, status, out = s_client(port, "x.example.net")
    check(subject == b.subject and status == "HTTP/1.0 200 ok", "a new client is served (B)", out[-2000:])
    hu.stop_and_check(sl)


def case_slow_client_hello_within_timeout():
    (a, _, _), servers = backends()
    sl, ap = start(servers, sni_timeout="5s")
    port = sl.port("tls_in")
    c = harness.connect(port, timeout=10)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tls = MemoryTls("a.example.com")
    hello = tls.hello
    pieces = [hello[i:i + 40] for i in range(0, len(hello), 40)]
    me = "127.0.0.1:%d" % c.getsockname()[1]
    t0 = time.monotonic()
    for i, piece in enumerate(pieces):
        c.sendall(piece)
        if i == 0:
            seen = harness.wait_until(lambda: [(x["state"], x.get("sni")) for x in connections(ap) if x["peer"] == me],
                                      3)
            check(seen == [("client_hello", None)], "/connections: the client waits in state client_hello",
                  repr(seen))
        time.sleep(0.1)  # the pace of a slow client, not a wait for sluice
    info("sent the %d-byte ClientHello in %d pieces over %.2f s" % (len(hello), len(pieces), time.monotonic() - t0))
    check(tls.finish(c) == a.der, "a ClientHello in %d pieces 100 ms apart reaches A" % len(pieces), "")
    check(tls.get(c) == "HTTP/1.0 200 ok", "and the session works", "")
    seen = [(x["state"], x.get("sni")) for x in connections(ap) if x["peer"] == me]
    check(seen == [("proxying", "a.example.com")], "/connections: proxying, sni a.example.com", repr(seen))
    c.close()
    wait_counters(ap, counts(sni_routed=1), "routed by name once, nothing refused")
    hu.stop_and_check(sl)


def two_records(hello, first):
    """The ClientHello's handshake message split into two TLS records, the first holding `first` bytes."""
    message = hello[5:]
    out = b""
    for part in (message[:first], message[first:]):
        out += hello[:3] + len(part).to_bytes(2, "big") + part
    return out


def case_client_hello_in_two_records():
    (_, b, _), servers = backends()
    sl, ap = start(servers)
    port = sl.port("tls_in")
    for first in (3, 60, 200):  # the split inside the handshake header, before the name, after it
        c = harness.connect(port, timeout=10)
        tls = MemoryTls("api.example.net")
        c.sendall(two_records(tls.hello, first))
        check(tls.finish(c) == b.der and tls.get(c) == "HTTP/1.0 200 ok",
              "a ClientHello in two records (%d bytes in the first) reaches B and the session works" % first, "")
        c.close()
    wait_counters(ap, counts(sni_routed=3), "routed by name 3 times, nothing refused")
    hu.stop_and_check(sl)


def case_stalled_client_hello_is_cut_at_timeout():
    _, servers = backends()
    sl, ap = start(servers, sni_timeout="1s")
    port = sl.port("tls_in")
    for what, payload, n in (("half a ClientHello", MemoryTls("a.example.com").hello[:60], 1),
                             ("nothing at all", b"", 2)):
        start_line = sl.line_count()
        t0 = time.monotonic()
        c = harness.connect(port, timeout=10)
        me = "127.0.0.1:%d" % c.getsockname()[1]
        if payload:
            c.sendall(payload)
        data, how = harness.recv_until_closed(c, 10)
        waited = time.monotonic() - t0
        info("%s: closed (%s) after %.3f s" % (what, how, waited))
        check(data == b"" and how == "eof" and 0.9 <= waited <= 4.0,
              "%s: closed at sni_timeout 1s (between 0.9 s and 4 s)" % what, "%r %s %.3f s" % (data, how, waited))
        logged(sl, start_line,
               "tcp tls_in: closing downstream %s: no complete ClientHello within sni_timeout 1s" % me)
        wait_counters(ap, counts(sni_timeouts=n), "%d ClientHello timeouts" % n)
    hu.stop_and_check(sl)


if __name__ == "__main__":
    for tool in ("openssl",):
        if not shutil.which(tool):
            print("skip   %s is not installed" % tool, flush=True)
            print("0 passed, 0 failed, 1 skipped", flush=True)
            sys.exit(harness.SKIP_EXIT)
    harness.run_cases([case_routes_by_server_name, case_garbage_is_closed_while_others_are_served,
                       case_slow_client_hello_within_timeout, case_client_hello_in_two_records,
                       case_stalled_client_hello_is_cut_at_timeout])

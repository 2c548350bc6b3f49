#!/usr/bin/env python3
"""TLS at both ends, checked with real clients and servers on loopback and a PKI made with the
openssl CLI (tls_pki.py): HTTPS through an http listener (keep-alive, what the upstream and
the access log are told), certificate selection by SNI (exact, wildcard, default, refused with
require_sni) and by what the client supports (RSA or ECDSA), ALPN, sessions resumed on another
worker, client certificates (required, optional, a spoofed identity header stripped), TLS to
upstreams (verified against a CA, refused with the reason in the log and the access log when
it does not verify, a client certificate for upstreams that ask for one), health checks over
TLS, and TLS termination on a tcp listener."""

import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
from http_backend import HttpBackend, pattern_sha256  # noqa: E402
import http_util as hu  # noqa: E402
import tls_pki  # noqa: E402

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
SECURED_RE = re.compile(r"\[(w\d+)\] http (\S+): 127\.0\.0\.1:(\d+): (TLSv[\d.]+) (\S+) sni '([^']*)' "
                        r"alpn '([^']*)'( resumed)?$")


# --------------------------------------------------------------------------
# helpers


def tmp_dir():
    d = tempfile.mkdtemp(prefix="sluice-tls-")
    harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def server_tls(*certs, **kw):
    t = {"certificates": [{"certificate_chain": c.chain, "private_key": c.key} for c in certs]}
    t.update(kw)
    return t


def routes(cluster="app"):
    return [{"match": {"prefix": "/"}, "cluster": cluster}]


def client_context(cafile=None, cert=None, alpn=None, verify=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(cafile or tls_pki.default().ca_file)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert.chain, cert.key)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


class TlsClient:
    """One TLS connection with Python's ssl; HTTP/1.1 requests over it (keep-alive)."""

    def __init__(self, port, server_hostname="localhost", ctx=None, session=None, timeout=5.0):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.local_port = raw.getsockname()[1]
        ctx = ctx or client_context()
        self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname, session=session)
        self.reader = hu.SockReader(self.sock)

    def request(self, method, target, headers=None, body=None, host="localhost"):
        if isinstance(headers, dict):
            headers = list(headers.items())
        self.sock.sendall(hu.build_request(method, target, headers=headers, body=body, host=host))
        return hu.read_response(self.reader, method)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def s_client(port, args, stdin=b"", timeout=10):
    """openssl s_client against 127.0.0.1:port; returns (returncode, stdout+stderr text)."""
    p = subprocess.run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port] + list(args), input=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                       preexec_fn=harness.die_with_parent)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def subject_cn(text):
    """The CN of the peer certificate s_client printed (its `subject=` line)."""
    m = re.search(r"^subject=.*CN\s*=\s*([^,\n]+)", text, re.M)
    return m.group(1).strip() if m else None


def secured_lines(sl, start=0):
    out = []
    for line in sl.find_lines(SECURED_RE, start):
        m = SECURED_RE.search(line)
        out.append({"worker": m.group(1), "listener": m.group(2), "port": int(m.group(3)),
                    "version": m.group(4), "cipher": m.group(5), "sni": m.group(6), "alpn": m.group(7),
                    "resumed": m.group(8) is not None})
    return out


def secured_for(sl, port, timeout=5):
    """The handshake line of the client connection from local port `port`."""
    got = []
    harness.wait_until(lambda: got.extend(e for e in secured_lines(sl) if e["port"] == port) or got, timeout)
    return got[0] if got else None


def start(listeners, clusters, workers=2, admin=False):
    return hu.start_sluice(listeners, clusters, workers=workers)


def access_lines(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except OSError:
        return []


class OpensslServer:
    """`openssl s_server -WWW` serving files from a directory on 127.0.0.1:<free port>."""

    def __init__(self, cert, root, extra=()):
        self.proc = None
        for _ in range(5):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
            s.close()
            args = [OPENSSL, "s_server", "-WWW", "-accept", "127.0.0.1:%d" % self.port, "-cert", cert.cert,
                    "-cert_chain", cert.chain, "-key", cert.key, "-naccept", "100000"] + list(extra)
            self.proc = subprocess.Popen(args, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, preexec_fn=harness.die_with_parent)
            harness.register_cleanup(self.stop)
            if harness.wait_until(lambda: self.proc.poll() is not None or
                                  self.port in harness.listening_ports(), 10) and self.proc.poll() is None:
                self.address = "127.0.0.1:%d" % self.port
                return
            self.stop()
        raise RuntimeError("openssl s_server did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


# --------------------------------------------------------------------------
# cases


def case_https_keepalive():
    """Two requests on one HTTPS connection; the upstream hears https and the access log
    records the handshake."""
    srv = tls_pki.leaf(["localhost"], ["127.0.0.1"])
    b = HttpBackend("b")
    log = os.path.join(tmp_dir(), "access.log")
    sl = start([hu.simple_listener(routes(), tls=server_tls(srv, alpn=["http/1.1"]),
                                   access_log={"path": log})], [hu.cluster("app", [b])])
    port = sl.port("web")
    c = TlsClient(port, ctx=client_context(alpn=["h2", "http/1.1"]))
    r1 = c.request("GET", "/one", headers={"X-Forwarded-Client-Cert": "Hash=forged"})
    r2 = c.request("GET", "/two")
    # large bodies both ways on the same connection, through TLS records
    big = c.request("GET", "/bytes/3000000")
    check(big.status == 200 and len(big.body) == 3000000 and
          hashlib.sha256(big.body).hexdigest() == pattern_sha256(3000000),
          "a 3 MB response arrives whole and intact over TLS", big.describe(100))
    up = c.request("POST", "/sink", body=bytes(range(256)) * 8000)
    check(up.status == 200 and up.json()["body_len"] == 2048000 and
          up.json()["body_sha256"] == hashlib.sha256(bytes(range(256)) * 8000).hexdigest(),
          "a 2 MB upload arrives whole and intact", up.describe(200))
    check(r1.status == 200 and r2.status == 200, "two requests on one TLS connection: 200, 200",
          r1.describe() + r2.describe())
    check(c.sock.version() == "TLSv1.3" and c.sock.selected_alpn_protocol() == "http/1.1",
          "TLSv1.3 with ALPN http/1.1 (the client offered h2 first; the listener speaks http/1.1)",
          "%s %s" % (c.sock.version(), c.sock.selected_alpn_protocol()))
    check(b.stats()["connections"] == 1 or b.stats()["requests"] == 2, "the backend served both", repr(b.stats()))
    e1 = r1.json()
    hdrs = {k.lower(): v for k, v in e1["headers"]}
    check(hdrs.get("x-forwarded-proto") == "https", "the upstream hears X-Forwarded-Proto: https",
          repr(e1["headers"]))
    check("x-forwarded-client-cert" not in hdrs, "a client's own x-forwarded-client-cert is not forwarded",
          repr(e1["headers"]))
    c.close()
    h = secured_for(sl, c.local_port)
    check(h is not None and h["sni"] == "localhost" and h["alpn"] == "http/1.1" and not h["resumed"],
          "sluice logged the handshake: sni localhost, alpn http/1.1, not resumed", repr(h))
    harness.wait_until(lambda: len(access_lines(log)) >= 4, 5)
    lines = access_lines(log)
    check(len(lines) == 4, "four access log lines", repr(lines))
    t = lines[0].get("tls", {})
    check(t.get("version") == "TLSv1.3" and t.get("sni") == "localhost" and t.get("alpn") == "http/1.1" and
          t.get("resumed") is False and t.get("early_data") is False and t.get("cipher") == "TLS_AES_128_GCM_SHA256"
          and "client" not in t,
          "the access log's tls: TLSv1.3, TLS_AES_128_GCM_SHA256, sni localhost, alpn http/1.1, not resumed",
          json.dumps(lines[0]))
    d = lines[0]["timings_us"]["downstream_tls"]
    check(d > 0 and lines[0]["timings_us"]["upstream_tls"] == 0,
          "downstream_tls %d us > 0; upstream_tls 0 (a cleartext upstream)" % d, json.dumps(lines[0]))
    hu.stop_and_check(sl)


def case_sni_selection():
    """Exact name, then wildcard, then the default; require_sni refuses the rest."""
    default = tls_pki.leaf(["default.example.test"], [])
    exact = tls_pki.leaf(["api.example.test"], [])
    wild = tls_pki.wildcard("example.test")
    b = HttpBackend("b")
    sl = start([hu.simple_listener(routes(), tls=server_tls(default, exact, wild)),
                hu.simple_listener(routes(), name="strict", tls=server_tls(exact, wild, require_sni=True))],
               [hu.cluster("app", [b])], workers=1)
    ca = tls_pki.default().ca_file
    cases = [("web", "api.example.test", "api.example.test"), ("web", "API.Example.Test", "api.example.test"),
             ("web", "www.example.test", "*.example.test"), ("web", "other.test", "default.example.test"),
             ("web", None, "default.example.test"), ("web", "a.b.example.test", "default.example.test"),
             ("strict", "api.example.test", "api.example.test"), ("strict", "x.example.test", "*.example.test")]
    for listener, name, want in cases:
        args = ["-CAfile", ca] + (["-servername", name] if name else ["-noservername"])
        rc, out = s_client(sl.port(listener), args)
        check(subject_cn(out) == want, "%s, SNI %s: certificate %s" % (listener, name, want),
              "got %s\n%s" % (subject_cn(out), out[-1500:]))
    for name in ("other.test", None):
        args = ["-CAfile", ca] + (["-servername", name] if name else ["-noservername"])
        rc, out = s_client(sl.port("strict"), args)
        check(rc != 0 and "unrecognized name" in out and subject_cn(out) is None,
              "require_sni, SNI %s: the handshake is refused with unrecognized_name" % name, out[-1500:])
    hu.stop_and_check(sl)


def case_rsa_and_ecdsa():
    """An RSA and an ECDSA certificate for the same names: each client gets one it supports."""
    ec = tls_pki.leaf(["dual.example.test"], [], key="ecdsa")
    rsa = tls_pki.leaf(["dual.example.test"], [], key="rsa")
    b = HttpBackend("b")
    sl = start([hu.simple_listener(routes(), tls=server_tls(rsa, ec))], [hu.cluster("app", [b])], workers=1)
    ca = tls_pki.default().ca_file
    for sigalgs, want in (("ecdsa_secp256r1_sha256", "id-ecPublicKey"), ("rsa_pss_rsae_sha256", "rsaEncryption"),
                          ("RSA+SHA256", "rsaEncryption")):
        extra = ["-tls1_2"] if sigalgs == "RSA+SHA256" else []
        rc, out = s_client(sl.port("web"), ["-CAfile", ca, "-servername", "dual.example.test", "-sigalgs", sigalgs,
                                            "-showcerts"] + extra)
        key = re.search(r"^Server public key is (\d+) bit", out, re.M)
        kind = "id-ecPublicKey" if key and key.group(1) == "256" else "rsaEncryption" if key else None
        check(rc == 0 and kind == want, "a client signing with %s only gets the %s certificate" % (sigalgs, want),
              out[-1500:])
    hu.stop_and_check(sl)


def case_resumption_across_workers():
    """A session made on one worker resumes on the other (the ticket keys are shared), with
    and without early data enabled."""
    for early in (False, True):
        resumption_across_workers(early)


def resumption_across_workers(early):
    info("early_data enabled: %s" % early)
    srv = tls_pki.leaf(["localhost"], ["127.0.0.1"])
    b = HttpBackend("b")
    tls = server_tls(srv, early_data={"enabled": True}) if early else server_tls(srv)
    sl = start([hu.simple_listener(routes(), tls=tls)], [hu.cluster("app", [b])], workers=2)
    port = sl.port("web")
    ctx = client_context()  # a session resumes only from the context that made it
    first = TlsClient(port, ctx=ctx)
    r = first.request("GET", "/first")
    session = first.sock.session
    first.close()
    check(r.status == 200 and session is not None, "a first, full handshake", r.describe())
    h0 = secured_for(sl, first.local_port)
    check(h0 is not None and not h0["resumed"], "the first handshake was full (%s)" % (h0 or {}).get("worker"),
          repr(h0))
    seen = {}
    for i in range(40):  # the kernel spreads new connections over the workers' sockets
        c = TlsClient(port, ctx=ctx, session=session)
        r = c.request("GET", "/again/%d" % i)
        reused = c.sock.session_reused
        c.close()
        h = secured_for(sl, c.local_port)
        check(r.status == 200 and reused and h is not None and h["resumed"],
              "connection %d resumed the session (on %s)" % (i, (h or {}).get("worker")), repr(h))
        seen[h["worker"]] = seen.get(h["worker"], 0) + 1
        if len(seen) == 2:
            break
    check(len(seen) == 2, "resumed on both workers: %r (made on %s)" % (seen, h0["worker"]), repr(seen))
    hu.stop_and_check(sl)


class Relay:
    """A TCP relay to `port` that records what the first client sent before the server's
    first answer (its ClientHello, and any early data with it)."""

    def __init__(self, port):
        self.target = port
        self.first_flight = b""
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(4)
        self.port = self.lsock.getsockname()[1]
        harness.register_cleanup(self.lsock.close)
        import threading
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import select
        try:
            c, _ = self.lsock.accept()
        except OSError:
            return
        u = socket.create_connection(("127.0.0.1", self.target))
        answered = False
        socks = [c, u]
        while socks:
            r, _, _ = select.select(socks, [], [], 5)
            if not r:
                break
            for s in r:
                data = s.recv(65536)
                other = u if s is c else c
                if not data:
                    socks = []
                    break
                if s is c and not answered:
                    self.first_flight += data
                if s is u:
                    answered = True
                other.sendall(data)
        c.close()
        u.close()


def early_session(port, path):
    """A session ticket from a full handshake, written to `path` (s_client -sess_out)."""
    p = subprocess.Popen([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "localhost",
                          "-CAfile", tls_pki.default().ca_file, "-sess_out", path], stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=harness.die_with_parent)
    # TLS 1.3 tickets come after the handshake: keep the connection until s_client has one
    harness.wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0, 5)
    p.stdin.close()
    p.wait(5)


def case_early_data():
    """0-RTT: a GET in early data is forwarded at once with Early-Data: 1; a POST waits for
    the handshake (or gets 425 with reject_unsafe); an upstream's 425 is retried after the
    handshake without Early-Data; a replayed ClientHello's early data is not acted on."""
    srv = tls_pki.leaf(["localhost"], ["127.0.0.1"])
    b = HttpBackend("b")
    sl = start([hu.simple_listener(routes(), tls=server_tls(srv, early_data={"enabled": True})),
                hu.simple_listener(routes(), name="strict",
                                   tls=server_tls(srv, early_data={"enabled": True, "reject_unsafe": True}))],
               [hu.cluster("app", [b])], workers=1)
    d = tmp_dir()
    port = sl.port("web")
    ca = tls_pki.default().ca_file

    def early(listener_port, request, sess):
        req = os.path.join(d, "req")
        with open(req, "wb") as f:
            f.write(request)
        return s_client(listener_port, ["-servername", "localhost", "-CAfile", ca, "-sess_in", sess,
                                        "-early_data", req, "-ign_eof"], timeout=10)

    def seen(path):
        return [r for r in b.records if r["target"] == path]

    sess = os.path.join(d, "sess.pem")
    early_session(port, sess)
    rc, out = early(port, b"GET /early/get HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", sess)
    got = seen("/early/get")
    check("Early data was accepted" in out and "HTTP/1.1 200" in out, "a GET in early data is accepted and answered",
          out[-800:])
    check(len(got) == 1 and [v for k, v in got[0]["headers"] if k.lower() == "early-data"] == ["1"] and
          [v for k, v in got[0]["headers"] if k.lower() == "x-forwarded-proto"] == ["https"],
          "the upstream got it once, with Early-Data: 1 and X-Forwarded-Proto: https", repr(got))

    rc, out = early(port, b"POST /early/post HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n"
                          b"Connection: close\r\n\r\nhi", sess)
    got = seen("/early/post")
    check("Early data was accepted" in out and "HTTP/1.1 200" in out and len(got) == 1 and
          not [v for k, v in got[0]["headers"] if k.lower() == "early-data"],
          "a POST in early data waits for the handshake, then goes without Early-Data", repr(got) + out[-500:])

    strict_sess = os.path.join(d, "strict.pem")
    early_session(sl.port("strict"), strict_sess)
    rc, out = early(sl.port("strict"), b"POST /early/strict HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n"
                                       b"Connection: close\r\n\r\nhi", strict_sess)
    check("HTTP/1.1 425 Too Early" in out and not seen("/early/strict"),
          "reject_unsafe: a POST in early data is answered 425 and not forwarded", out[-800:])

    rc, out = early(port, b"GET /early/status/425 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", sess)
    got = seen("/early/status/425")
    marks = [[v for k, v in r["headers"] if k.lower() == "early-data"] for r in got]
    check(len(got) == 2 and marks == [["1"], []] and "HTTP/1.1 425" in out,
          "an upstream's 425 to early data: sent again after the handshake without Early-Data (then passed on)",
          repr(marks) + out[-500:])

    # A replay: the same first flight (ClientHello with its early data) on a new connection.
    relay = Relay(port)
    rc, out = early(relay.port, b"GET /early/replayed HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                    sess)
    relay.thread.join(5)
    check("Early data was accepted" in out and len(seen("/early/replayed")) == 1 and len(relay.first_flight) > 0,
          "the original connection's early GET was served once (%d bytes of first flight recorded)" %
          len(relay.first_flight), out[-500:])
    r = socket.create_connection(("127.0.0.1", port), timeout=5)
    r.sendall(relay.first_flight)
    r.settimeout(3)
    try:
        while r.recv(65536):
            pass
    except OSError:
        pass
    r.close()
    check(len(seen("/early/replayed")) == 1, "the replayed first flight did not reach the upstream again",
          repr(seen("/early/replayed")))
    hu.stop_and_check(sl)


def case_client_certificates():
    """verify required and optional; the identity goes upstream as x-forwarded-client-cert."""
    srv = tls_pki.leaf(["localhost"], ["127.0.0.1"])
    cli = tls_pki.client(uri="spiffe://sluice.test/ns/prod/sa/web", cn="web client")
    b = HttpBackend("b")
    ca = tls_pki.default().ca_file
    log = os.path.join(tmp_dir(), "access.log")
    sl = start([hu.simple_listener(routes(), name="required",
                                   tls=server_tls(srv, client_ca=ca, verify="required"), access_log={"path": log}),
                hu.simple_listener(routes(), name="optional", tls=server_tls(srv, client_ca=ca, verify="optional"))],
               [hu.cluster("app", [b])], workers=1)
    fingerprint = subprocess.run([OPENSSL, "x509", "-in", cli.cert, "-noout", "-fingerprint", "-sha256"],
                                 capture_output=True, text=True).stdout.split("=", 1)[1].strip()
    fingerprint = fingerprint.replace(":", "").lower()
    # RFC 2253: the subject's attributes from the last to the first.
    subject = subprocess.run([OPENSSL, "x509", "-in", cli.cert, "-noout", "-subject", "-nameopt", "RFC2253"],
                             capture_output=True, text=True).stdout.strip().split("=", 1)[1]
    for listener in ("required", "optional"):
        c = TlsClient(sl.port(listener), ctx=client_context(cert=cli))
        r = c.request("GET", "/who", headers={"X-Forwarded-Client-Cert": "Hash=00;Subject=\"CN=admin\""})
        c.close()
        hdrs = [v for k, v in r.json()["headers"] if k.lower() == "x-forwarded-client-cert"] if r.status == 200 else []
        want = 'Hash=%s;Subject="%s";URI=spiffe://sluice.test/ns/prod/sa/web' % (fingerprint, subject)
        check(r.status == 200 and hdrs == [want],
              "%s, with a client certificate: the upstream gets exactly one x-forwarded-client-cert, sluice's" %
              listener, "want %r\ngot %r" % (want, hdrs))
    # without a certificate
    c = TlsClient(sl.port("optional"))
    r = c.request("GET", "/anon", headers={"X-Forwarded-Client-Cert": "Hash=00;Subject=\"CN=admin\""})
    c.close()
    hdrs = [v for k, v in r.json()["headers"] if k.lower() == "x-forwarded-client-cert"]
    check(r.status == 200 and hdrs == [], "optional, no certificate: served, and the spoofed header is stripped",
          repr(hdrs))
    refused = None
    try:
        c = TlsClient(sl.port("required"))
        r = c.request("GET", "/anon")
        refused = "got %d" % r.status
    except (ssl.SSLError, OSError, hu.PeerClosed) as e:
        refused = "refused: %s" % e
    check(refused.startswith("refused"), "required, no certificate: the connection is refused (%s)" % refused, "")
    harness.wait_until(lambda: access_lines(log), 5)
    t = access_lines(log)[0].get("tls", {})
    check(t.get("client") == subject, "the access log names the client: %s" % subject, repr(t))
    hu.stop_and_check(sl)


def case_resumption_stays_within_its_listener():
    """Two listeners sharing ticket keys (a fleet's files): a session made on the one that asks
    for no client certificate does not resume on the one that requires it."""
    srv = tls_pki.leaf(["localhost"], ["127.0.0.1"])
    d = tmp_dir()
    key_file = os.path.join(d, "ticket.key")
    with open(key_file, "wb") as f:
        f.write(os.urandom(80))
    ca = tls_pki.default().ca_file
    b = HttpBackend("b")
    sl = start([hu.simple_listener(routes(), name="public", tls=server_tls(srv, ticket_key_files=[key_file])),
                hu.simple_listener(routes(), name="mtls", tls=server_tls(srv, ticket_key_files=[key_file],
                                                                      client_ca=ca, verify="required"))],
               [hu.cluster("app", [b])], workers=1)
    ctx = client_context()
    c = TlsClient(sl.port("public"), ctx=ctx)
    r = c.request("GET", "/public")
    session = c.sock.session
    c.close()
    check(r.status == 200, "a session from the public listener", r.describe())
    again = TlsClient(sl.port("public"), ctx=ctx, session=session)
    r = again.request("GET", "/public/again")
    reused = again.sock.session_reused
    again.close()
    check(r.status == 200 and reused, "it resumes on the public listener", r.describe())
    outcome = None
    try:
        m = TlsClient(sl.port("mtls"), ctx=ctx, session=session)
        r = m.request("GET", "/mtls")
        outcome = "status %d, resumed %s" % (r.status, m.sock.session_reused)
    except (ssl.SSLError, OSError, hu.PeerClosed) as e:
        outcome = "refused (%s)" % type(e).__name__
    check(outcome.startswith("refused") and not [x for x in b.records if x["target"] == "/mtls"],
          "on the listener that requires a certificate it does not resume: %s" % outcome, "")
    hu.stop_and_check(sl)


def case_upstream_tls():
    """TLS to upstreams: verified against the configured CA; refused (502, with the reason)
    without it or for the wrong name; a client certificate when the upstream asks for one."""
    up = tls_pki.leaf(["upstream.example.test"], ["127.0.0.1"])
    root = tmp_dir()
    with open(os.path.join(root, "hello.txt"), "w") as f:
        f.write("hello over tls\n")
    plain = OpensslServer(up, root)
    ca = tls_pki.default().ca_file
    cli = tls_pki.client(cn="sluice upstream client")
    mtls = OpensslServer(up, root, extra=["-Verify", "2", "-CAfile", ca, "-verify_return_error"])
    log = os.path.join(tmp_dir(), "access.log")
    clusters = [
        hu.cluster("by_ip", [plain], tls={"ca": ca}),
        hu.cluster("by_name", [plain], tls={"ca": ca, "sni": "upstream.example.test"}),
        hu.cluster("system_store", [plain], tls={}),
        hu.cluster("wrong_name", [plain], tls={"ca": ca, "sni": "other.example.test"}),
        hu.cluster("unverified", [plain], tls={"verify": False}),
        hu.cluster("mtls", [mtls], tls={"ca": ca, "certificate_chain": cli.chain, "private_key": cli.key}),
        hu.cluster("mtls_no_cert", [mtls], tls={"ca": ca}),
    ]
    vh = [{"match": {"prefix": "/%s/" % c["name"]}, "cluster": c["name"], "prefix_rewrite": "/"} for c in clusters]
    sl = start([hu.simple_listener(vh, access_log={"path": log})], clusters, workers=1)
    port = sl.port("web")
    for name, ok in (("by_ip", True), ("by_name", True), ("unverified", True), ("mtls", True),
                     ("system_store", False), ("wrong_name", False), ("mtls_no_cert", False)):
        r = hu.request_once(port, "GET", "/%s/hello.txt" % name)
        if ok:
            check(r.status == 200 and r.body == b"hello over tls\n", "cluster %s: 200 with the file" % name,
                  r.describe() + "\n" + hu.log_tail(sl, 15))
        else:
            check(r.status == 502 and b"127.0.0.1" not in r.body, "cluster %s: 502, and the body names no address" %
                  name, r.describe())
    harness.wait_until(lambda: len(access_lines(log)) >= 7, 5)
    by_target = {e["target"]: e for e in access_lines(log)}
    want = {
        "system_store": "upstream TLS error: certificate verify failed: unable to get local issuer certificate",
        "wrong_name": "upstream TLS error: certificate verify failed: hostname mismatch",
    }
    for name, text in want.items():
        e = by_target.get("/%s/hello.txt" % name, {})
        # a connect failure is retried once by default (on the one endpoint there is)
        check(e.get("flags") == ["upstream_connect_failure", "retried"] and e.get("detail", "").startswith(text),
              "cluster %s: flags [upstream_connect_failure, retried], detail '%s ...'" % (name, text), json.dumps(e))
    e = by_target.get("/mtls_no_cert/hello.txt", {})
    # TLS 1.3: the client's handshake is over before the server judges its (missing) certificate,
    # so the refusal arrives as an alert where the response should be.
    check(e.get("detail", "") == "upstream %s reset: TLS: tlsv13 alert certificate required" % mtls.address,
          "mtls_no_cert: the detail names the upstream's alert", json.dumps(e))
    e = by_target.get("/by_ip/hello.txt", {})
    # s_server answers HTTP/1.0 and closes: each request is a new connection, which resumes
    pool_re = re.compile(r"pool %s: connection \d+ secured: TLSv1.3 \S+( resumed)?$" % re.escape(plain.address))
    before = len(sl.find_lines(pool_re))
    r = hu.request_once(port, "GET", "/by_ip/hello.txt")
    line = sl.wait_log(pool_re, 5, start=0) and harness.wait_until(lambda: len(sl.find_lines(pool_re)) > before, 5)
    last = sl.find_lines(pool_re)[-1] if sl.find_lines(pool_re) else ""
    check(r.status == 200 and line and last.endswith(" resumed"),
          "a new connection to the same endpoint resumes its TLS session", last)
    t = e.get("timings_us", {})
    check(t.get("upstream_tls", -1) >= 0 and t["upstream_connect"] + t["upstream_tls"] <= t["request_sent"],
          "by_ip: the waterfall has the upstream handshake, after the connect and before the request",
          json.dumps(e))
    hu.stop_and_check(sl)


def case_health_checks_over_tls():
    """A TLS cluster's health checks speak TLS: a TCP check passes only when the handshake
    (and verification) does."""
    up = tls_pki.leaf(["upstream.example.test"], ["127.0.0.1"])
    root = tmp_dir()
    good = OpensslServer(up, root)
    ca = tls_pki.default().ca_file
    hc = {"type": "tcp", "interval": "200ms", "timeout": "1s", "healthy_threshold": 1, "unhealthy_threshold": 1}
    clusters = [hu.cluster("trusted", [good], tls={"ca": ca}, health_check=hc),
                hu.cluster("untrusted", [good], tls={}, health_check=hc)]
    sl = start([hu.simple_listener(routes("trusted"))], clusters, workers=1)
    line = sl.wait_log(re.compile(r"cluster untrusted: endpoint \S+ .*(unhealthy|failed)"), 5)
    check(line is not None and "certificate verify failed" in line,
          "the untrusted cluster's check fails on verification", hu.log_tail(sl, 20))
    r = hu.request_once(sl.port("web"), "GET", "/")
    check(r.status == 200, "the trusted cluster serves (its checks pass over TLS)", r.describe())
    hu.stop_and_check(sl)


def case_tcp_listener():
    """TLS terminated on a tcp listener, bytes relayed to a cleartext HTTP backend."""
    srv = tls_pki.leaf(["localhost"], ["127.0.0.1"])
    b = HttpBackend("b")
    sl = start([{"name": "tls_in", "address": "127.0.0.1:0", "protocol": "tcp", "cluster": "app",
                 "tls": server_tls(srv)}], [hu.cluster("app", [b])], workers=1)
    c = TlsClient(sl.port("tls_in"))
    r1 = c.request("GET", "/a")
    r2 = c.request("POST", "/b", body=b"x" * 60000)
    check(r1.status == 200 and r2.status == 200 and len(r2.json()["body"]) == 60000,
          "two requests through the TLS tcp listener, a 60 kB body echoed whole", r2.describe())
    c.close()
    hu.stop_and_check(sl)


def kernel_has_ktls():
    try:
        with open("/proc/sys/net/ipv4/tcp_available_ulp") as f:
            if "tls" in f.read().split():
                return True
    except OSError:
        pass
    release = os.uname().release
    return any(os.path.exists("/lib/modules/%s/kernel/net/tls/tls%s" % (release, ext))
               for ext in (".ko", ".ko.xz", ".ko.zst", ".ko.gz"))


def case_ktls_fallback():
    """ktls: true on a kernel without kTLS: said once at startup, and TLS works in user space."""
    if kernel_has_ktls():
        raise harness.Skip("this kernel offers kTLS: the fallback cannot be seen here")
    srv = tls_pki.leaf(["localhost"], ["127.0.0.1"])
    b = HttpBackend("b")
    sl = start([hu.simple_listener(routes(), tls=server_tls(srv, ktls=True)),
                hu.simple_listener(routes(), name="second", tls=server_tls(srv, ktls=True))],
               [hu.cluster("app", [b])], workers=2)
    want = ("tls: ktls is set, but this kernel offers no kTLS (no `tls` module): records are encrypted "
            "in user space")
    lines = [l for l in sl.find_lines("kTLS") if l.endswith(want)]
    check(len(lines) == 1, "one line at startup says kTLS is not available", "\n".join(sl.find_lines("ktls")))
    c = TlsClient(sl.port("web"))
    r = c.request("GET", "/k")
    c.close()
    check(r.status == 200, "TLS is served in user space", r.describe())
    hu.stop_and_check(sl)


def case_connections_view():
    """/connections shows what an open connection's TLS handshake settled, and its worker."""
    srv = tls_pki.leaf(["localhost"], ["127.0.0.1"])
    b = HttpBackend("b")
    cfg = {"workers": 1, "log_level": "debug", "drain_timeout": "5s", "admin": {"address": "127.0.0.1:0"},
           "listeners": [hu.simple_listener(routes(), tls=server_tls(srv))], "clusters": [hu.cluster("app", [b])]}
    sl = harness.Sluice(harness.to_yaml(hu._quote(cfg)) + "\n")
    line = sl.wait_log(re.compile(r"admin listening on 127\.0\.0\.1:(\d+)"), 5)
    check(line is not None, "the admin endpoint listens", hu.log_tail(sl, 10))
    admin = int(line.rsplit(":", 1)[1])
    c = TlsClient(sl.port("web"))
    r = c.request("GET", "/open")
    view = json.loads(hu.request_once(admin, "GET", "/connections?listener=web", host="admin").body)
    mine = [e for e in view if e.get("peer", "").endswith(":%d" % c.local_port)]
    c.close()
    check(r.status == 200 and len(mine) == 1 and mine[0]["worker"] == 0 and
          mine[0].get("tls") == {"version": "TLSv1.3", "cipher": "TLS_AES_128_GCM_SHA256", "resumed": False} and
          mine[0].get("sni") == "localhost",
          "/connections: worker 0, sni localhost, tls {TLSv1.3, TLS_AES_128_GCM_SHA256, not resumed}",
          json.dumps(view))
    hu.stop_and_check(sl)


def tls_stat():
    """The kernel's TLS counters (/proc/net/tls_stat), or {} without the module."""
    out = {}
    try:
        with open("/proc/net/tls_stat") as f:
            for line in f:
                k, v = line.split()
                out[k] = int(v)
    except OSError:
        pass
    return out


def case_ktls_offload():
    """ktls: true where the kernel offers kTLS: the record layer goes to the kernel (its
    counters of TLS sockets grow) and the traffic is served as before."""
    if not kernel_has_ktls():
        raise harness.Skip("this kernel has no kTLS (no `tls` module): only the fallback is tested here")
    srv = tls_pki.leaf(["localhost"], ["127.0.0.1"])
    b = HttpBackend("b")
    sl = start([hu.simple_listener(routes(), tls=server_tls(srv, ktls=True))], [hu.cluster("app", [b])], workers=1)
    before = tls_stat()
    c = TlsClient(sl.port("web"))
    r = c.request("GET", "/k")
    c.close()
    after = tls_stat()
    grew = after.get("TlsTxSw", 0) + after.get("TlsTxDevice", 0) > before.get("TlsTxSw", 0) + before.get(
        "TlsTxDevice", 0)
    check(r.status == 200 and not sl.find_lines("offers no kTLS") and grew,
          "served, with the kernel's TLS transmit counters grown", "%r -> %r" % (before, after))
    hu.stop_and_check(sl)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_https_keepalive, case_sni_selection, case_rsa_and_ecdsa, case_resumption_across_workers,
                       case_early_data, case_client_certificates, case_resumption_stays_within_its_listener, case_upstream_tls, case_health_checks_over_tls, case_tcp_listener,
                       case_ktls_fallback, case_ktls_offload, case_connections_view])

#!/usr/bin/env python3
"""`sluice probe https://...`: the tls phase, the certificate chain, verification, OCSP,
session resumption across -n runs, --sni, --cacert, --insecure and the TLS exit statuses.

The peers are real: `openssl s_server -www` with a test PKI made here with the openssl CLI
(a root CA, an intermediate, leaf certificates, OCSP responses from `openssl ocsp`), plus
plain TCP servers for the handshake failures. Re-runs itself inside a new network namespace
(`unshare -n`) so every port is its own.
"""

import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (HoldServer, Skip, TcpServer, check, die_with_parent, register_cleanup,  # noqa: E402
                     run_cases, run_sluice_cmd, sh, wait_until)

PHASES = ["dns", "connect", "tls", "request_sent", "first_byte", "body"]
ROOT_CN = "sluice probe test root"
INTER_CN = "sluice probe test intermediate"
UNABLE_LOCAL_ISSUER = "certificate verify failed: unable to get local issuer certificate"


# --------------------------------------------------------------------------
# a small PKI with the openssl CLI


class Pki:
    """root -> intermediate -> leaves; files in a temporary directory removed at exit."""

    def __init__(self):
        if not shutil.which("openssl"):
            raise Skip("the openssl command is not installed")
        self.dir = tempfile.mkdtemp(prefix="sluice-probe-tls-")
        # Shared by every case: removed when the script exits, not after a case.
        atexit.register(shutil.rmtree, self.dir, ignore_errors=True)
        self.root, self.root_key = self._ca("root", ROOT_CN, None)
        self.inter, self.inter_key = self._ca("inter", INTER_CN, "root")
        self.serial = 0x1000
        # Both CAs, for a server that sends its leaf without the intermediate.
        self.bundle = self.path("bundle.pem")
        with open(self.bundle, "w") as out:
            for f in (self.root, self.inter):
                with open(f) as cert:
                    out.write(cert.read())

    def path(self, name):
        return os.path.join(self.dir, name)

    def _key(self, name):
        sh(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
            self.path(name + ".key")])
        return self.path(name + ".key")

    def _ext(self, name, lines):
        with open(self.path(name + ".ext"), "w") as f:
            f.write("\n".join(lines) + "\n")
        return self.path(name + ".ext")

    def _ca(self, name, cn, issuer):
        key = self._key(name)
        ext = self._ext(name, ["basicConstraints = critical, CA:TRUE", "keyUsage = critical, keyCertSign, cRLSign",
                               "subjectKeyIdentifier = hash"])
        if issuer is None:
            sh(["openssl", "req", "-x509", "-new", "-key", key, "-subj", "/CN=" + cn, "-days", "30", "-out",
                self.path(name + ".pem"), "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        else:
            self._sign(name, cn, key, ext, 0x10)
        return self.path(name + ".pem"), key

    def _sign(self, name, cn, key, ext, serial, issuer="root"):
        sh(["openssl", "req", "-new", "-key", key, "-subj", "/CN=" + cn, "-out", self.path(name + ".csr")])
        sh(["openssl", "x509", "-req", "-in", self.path(name + ".csr"), "-CA", self.path(issuer + ".pem"),
            "-CAkey", self.path(issuer + ".key"), "-set_serial", str(serial), "-days", "20",
            "-extfile", ext, "-out", self.path(name + ".pem")])

    def leaf(self, name, cn, dns=(), ips=()):
        """A server certificate issued by the intermediate; returns (cert, key, serial)."""
        self.serial += 1
        key = self._key(name)
        san = ["DNS:" + d for d in dns] + ["IP:" + i for i in ips]
        lines = ["basicConstraints = CA:FALSE", "keyUsage = critical, digitalSignature",
                 "extendedKeyUsage = serverAuth"]
        if san:
            lines.append("subjectAltName = " + ", ".join(san))
        self._sign(name, cn, key, self._ext(name, lines), self.serial, issuer="inter")
        return self.path(name + ".pem"), key, self.serial

    def not_after(self, cert):
        """notAfter as the probe prints it: 2027-01-02T03:04:05Z."""
        out = sh(["openssl", "x509", "-in", cert, "-noout", "-enddate", "-dateopt", "iso_8601"]).stdout.strip()
        # "notAfter=2027-01-02 03:04:05Z"
        return out.split("=", 1)[1].replace(" ", "T")

    def ocsp_response(self, name, cert, serial, revoked=False):
        """A DER OCSP response for `cert` signed by the intermediate (its issuer)."""
        index = self.path(name + ".index")
        expiry = time.strftime("%y%m%d%H%M%SZ", time.gmtime(time.time() + 20 * 86400))
        revoked_at = time.strftime("%y%m%d%H%M%SZ", time.gmtime(time.time() - 3600))
        with open(index, "w") as f:
            f.write("%s\t%s\t%s\t%X\tunknown\t/CN=%s\n" % ("R" if revoked else "V", expiry,
                                                         revoked_at if revoked else "", serial, name))
        req = self.path(name + ".req.der")
        sh(["openssl", "ocsp", "-issuer", self.inter, "-cert", cert, "-no_nonce", "-reqout", req])
        resp = self.path(name + ".resp.der")
        sh(["openssl", "ocsp", "-index", index, "-rsigner", self.inter, "-rkey", self.inter_key, "-CA", self.inter,
            "-reqin", req, "-respout", resp, "-ndays", "1"])
        return resp


PKI = {}


def pki():
    if "pki" not in PKI:
        p = Pki()
        p.localhost = p.leaf("localhost", "localhost", dns=["localhost"], ips=["127.0.0.1"])
        p.other = p.leaf("other", "other.test", dns=["other.test"])
        PKI["pki"] = p
    return PKI["pki"]


class SServer:
    """`openssl s_server -www` on 127.0.0.1:<ephemeral>, serving connections one at a time."""

    def __init__(self, cert, key, chain=None, extra=()):
        cmd = ["openssl", "s_server", "-www", "-accept", "127.0.0.1:0", "-cert", cert, "-key", key]
        if chain:
            cmd += ["-cert_chain", chain]
        cmd += list(extra)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, preexec_fn=die_with_parent)
        register_cleanup(self.stop)
        self.lines = []
        self.port = None
        threading.Thread(target=self._drain, daemon=True).start()
        wait_until(lambda: self.port or self.proc.poll() is not None, 10)
        if not self.port:
            raise RuntimeError("openssl s_server did not start: %s" % "".join(self.lines))

    def _drain(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            m = re.match(r"^ACCEPT 127\.0\.0\.1:(\d+)$", line.strip())
            if m:
                self.port = int(m.group(1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def default_server(extra=()):
    p = pki()
    cert, key, _ = p.localhost
    return SServer(cert, key, chain=p.inter, extra=["-alpn", "http/1.1"] + list(extra))


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


def localhost_url(port, path="/"):
    return ["https://localhost:%d%s" % (port, path), "--resolve", "localhost:%d:127.0.0.1" % port]


# --------------------------------------------------------------------------
# success


def test_verified_handshake():
    p_ = pki()
    with default_server() as s:
        args = localhost_url(s.port, "/index") + ["--cacert", p_.root]
        p = probe(args)
        check(p.returncode == 0 and p.stderr == "", "exit 0, nothing on stderr", describe(p))
        check(waterfall_phases(p.stdout) == PHASES + ["total"],
              "the waterfall: dns, connect, tls, request_sent, first_byte, body, total", p.stdout)
        check(re.search(r"^tls        TLSv1\.3  TLS_\w+  alpn http/1\.1  new session  \(\d+\.\d{3} ms\)$",
                        p.stdout, re.M), "the tls line: version, cipher, ALPN, a new session", p.stdout)
        check(re.search(r"^           sni localhost  certificate checked against localhost$", p.stdout, re.M),
              "SNI and the name checked", p.stdout)
        check(re.search(r"^verify     ok$", p.stdout, re.M), "verify ok", p.stdout)
        check(re.search(r"^ocsp       none \(no response stapled\)$", p.stdout, re.M), "ocsp none", p.stdout)
        check(re.search(r"^cert 0     CN=localhost\n           issuer CN=%s  not after %s\n"
                        r"           dns localhost  ip 127\.0\.0\.1\n"
                        r"cert 1     CN=%s\n           issuer CN=%s  not after %s\n"
                        % (INTER_CN, re.escape(p_.not_after(p_.localhost[0])), INTER_CN, ROOT_CN,
                           re.escape(p_.not_after(p_.inter))), p.stdout, re.M),
              "the chain the server sent, leaf first", p.stdout)
        check(re.search(r"^HTTP/1\.0 200 ok$", p.stdout, re.M), "the response from s_server", p.stdout)

        p, d = probe_json(args)
        t = d["tls"]
        check(p.returncode == 0 and d["status"] == 200 and d["exit_status"] == 0, "--json: exit 0, status 200",
              describe(p))
        check(t["version"] == "TLSv1.3" and re.match(r"TLS_\w+$", t["cipher"]) and t["alpn"] == "http/1.1"
              and t["resumed"] is False and t["sni"] == "localhost" and t["checked_name"] == "localhost",
              "--json: version, cipher, alpn, resumed, sni", t)
        check(t["verify"] == {"ok": True, "result": "ok", "enforced": True}, "--json: verify ok", t["verify"])
        check(t["ocsp"]["status"] == "none", "--json: ocsp none", t["ocsp"])
        check(t["certificates"] == [
            {"subject": "CN=localhost", "issuer": "CN=" + INTER_CN, "dns": ["localhost"], "ip": ["127.0.0.1"],
             "not_after": p_.not_after(p_.localhost[0])},
            {"subject": "CN=" + INTER_CN, "issuer": "CN=" + ROOT_CN, "dns": [], "ip": [],
             "not_after": p_.not_after(p_.inter)}], "--json: the chain", t["certificates"])
        phases = [d["dns"]["us"], d["connect"]["us"], t["us"], d["request_sent_us"], d["first_byte_us"],
                  d["body_us"]]
        check(all(isinstance(v, int) and v >= 0 for v in phases) and t["us"] > 0
              and sum(phases) <= d["total_us"] <= sum(phases) + 50,
              "--json: tls.us between connect and request_sent; the phases add up to the total",
              "phases %s total %s" % (phases, d["total_us"]))


def test_ip_host():
    p_ = pki()
    with default_server() as s:
        p, d = probe_json(["https://127.0.0.1:%d/" % s.port, "--cacert", p_.root])
        t = d["tls"]
        check(p.returncode == 0 and t["sni"] is None and t["checked_name"] == "127.0.0.1"
              and t["verify"]["ok"] is True, "an IP host: no SNI, checked against the IP SANs", describe(p))


def test_resumption():
    p_ = pki()
    with default_server() as s:
        p, d = probe_json(localhost_url(s.port) + ["--cacert", p_.root, "-n", "3"])
        check(p.returncode == 0, "exit 0", describe(p))
        check([r["tls"]["resumed"] for r in d["runs"]] == [False, True, True],
              "-n 3: the first run makes a session, the next two resume it", [r["tls"] for r in d["runs"]])
        check(all(r["tls"]["verify"]["ok"] is True and r["status"] == 200 for r in d["runs"]),
              "every run verified and got 200", d["runs"])
        s_ = d["summary"]
        check(s_["tls_handshakes"] == 3 and s_["tls_resumed"] == 2 and "tls_us" in s_["phases"],
              "the summary counts resumed handshakes and has tls percentiles", s_)
        second = d["runs"][1]["tls"]
        check(second["certificates"] == d["runs"][0]["tls"]["certificates"] and second["ocsp"]["status"] == "none",
              "a resumed run shows the session's chain; no OCSP staple comes with a resumed handshake", second)
        p = probe(localhost_url(s.port) + ["--cacert", p_.root, "-n", "3"])
        check(re.search(r"^tls\s+\d+\.\d{3}\s+\d+\.\d{3}\s+\d+\.\d{3}\s+\d+\.\d{3}\s+\d+\.\d{3}$", p.stdout, re.M)
              and re.search(r"^tls        2 of 3 handshakes resumed a session ", p.stdout, re.M),
              "the text summary: a tls row and the resumed count", p.stdout)


def test_sni_selection():
    p_ = pki()
    cert, key, _ = p_.localhost
    ocert, okey, _ = p_.other
    # s_server sends the second certificate alone: the client needs the intermediate too.
    with SServer(cert, key, chain=p_.inter, extra=["-servername", "other.test", "-cert2", ocert, "-key2", okey]) as s:
        p, d = probe_json(["https://127.0.0.1:%d/" % s.port, "--cacert", p_.bundle, "--sni", "other.test"])
        t = d["tls"]
        check(p.returncode == 0 and t["sni"] == "other.test" and t["checked_name"] == "other.test"
              and t["certificates"][0]["subject"] == "CN=other.test" and t["verify"]["ok"] is True,
              "--sni other.test: the server picks that certificate and it is checked against the name", describe(p))
        p, d = probe_json(localhost_url(s.port) + ["--cacert", p_.root])
        check(p.returncode == 0 and d["tls"]["certificates"][0]["subject"] == "CN=localhost",
              "SNI localhost (the URL's host): the default certificate", describe(p))
        p, d = probe_json(localhost_url(s.port) + ["--cacert", p_.root, "--sni", "nomatch.test"])
        check_failure(p, 11, "certificate verify failed: hostname mismatch", "--sni naming no certificate")
        check(d["tls"]["certificates"][0]["subject"] == "CN=localhost" and d["tls"]["verify"]["ok"] is False,
              "the mismatched certificate is still shown", d["tls"])


# --------------------------------------------------------------------------
# verification failures and --insecure


def test_unknown_ca():
    p_ = pki()
    with default_server() as s:
        p = probe(localhost_url(s.port))
        check_failure(p, 11, UNABLE_LOCAL_ISSUER, "no --cacert: the test CA is not in the system's store")
        check(re.search(r"^verify     %s$" % UNABLE_LOCAL_ISSUER, p.stdout, re.M)
              and re.search(r"^cert 0     CN=localhost$", p.stdout, re.M)
              and re.search(r"^error      %s \(tls_verify\)$" % UNABLE_LOCAL_ISSUER, p.stdout, re.M),
              "the report shows the chain, why it failed and the failure kind", p.stdout)
        check(waterfall_phases(p.stdout) == ["dns", "connect", "tls", "total"],
              "the waterfall stops at tls (no request is sent)", p.stdout)
        p, d = probe_json(localhost_url(s.port))
        check(d["error"] == {"kind": "tls_verify", "message": UNABLE_LOCAL_ISSUER} and d["exit_status"] == 11
              and d["status"] is None and d["request_sent_us"] is None
              and d["tls"]["verify"] == {"ok": False, "result": UNABLE_LOCAL_ISSUER, "enforced": True},
              "--json: error tls_verify, verify result, nothing after tls", d)

        p = probe(["https://wrong.test:%d/" % s.port, "--resolve", "wrong.test:%d:127.0.0.1" % s.port,
                   "--cacert", p_.root])
        check_failure(p, 11, "certificate verify failed: hostname mismatch", "a name the certificate does not have")

        other_ca = Pki()  # a CA that did not issue the server's certificate
        p = probe(localhost_url(s.port) + ["--cacert", other_ca.root])
        check_failure(p, 11, UNABLE_LOCAL_ISSUER, "--cacert with another CA")


def test_insecure():
    with default_server() as s:
        p = probe(localhost_url(s.port) + ["--insecure"])
        check(p.returncode == 0 and p.stderr == "", "--insecure: exit 0", describe(p))
        check(re.search(r"^verify     skipped \(--insecure\); it would have failed: %s$" % UNABLE_LOCAL_ISSUER,
                        p.stdout, re.M), "--insecure: says what verification would have said", p.stdout)
        check(re.search(r"^HTTP/1\.0 200 ok$", p.stdout, re.M) and re.search(r"^cert 1     CN=%s$" % INTER_CN,
                                                                               p.stdout, re.M),
              "--insecure: the response and the chain", p.stdout)
        p, d = probe_json(localhost_url(s.port) + ["--insecure"])
        check(d["tls"]["verify"] == {"ok": False, "result": UNABLE_LOCAL_ISSUER, "enforced": False}
              and d["status"] == 200 and "error" not in d, "--insecure --json: verify not enforced", d["tls"])
        p, d = probe_json(localhost_url(s.port) + ["--insecure", "--cacert", pki().root])
        check(d["tls"]["verify"] == {"ok": True, "result": "ok", "enforced": False},
              "--insecure with the right CA: it would have passed", d["tls"])


# --------------------------------------------------------------------------
# OCSP stapling


def test_ocsp():
    p_ = pki()
    cert, key, serial = p_.localhost
    good = p_.ocsp_response("localhost", cert, serial)
    with default_server(extra=["-status_file", good]) as s:
        p, d = probe_json(localhost_url(s.port) + ["--cacert", p_.root])
        o = d["tls"]["ocsp"]
        check(p.returncode == 0 and o["status"] == "good" and o["signature_ok"] is True and o["detail"] is None
              and re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", o["next_update"] or ""),
              "a stapled good response", describe(p))
        p = probe(localhost_url(s.port) + ["--cacert", p_.root])
        check(re.search(r"^ocsp       good, signature ok, next update \S+Z$", p.stdout, re.M), "the ocsp line",
              p.stdout)
    revoked = p_.ocsp_response("localhost-revoked", cert, serial, revoked=True)
    with default_server(extra=["-status_file", revoked]) as s:
        p, d = probe_json(localhost_url(s.port) + ["--cacert", p_.root])
        o = d["tls"]["ocsp"]
        check(o["status"] == "revoked" and o["signature_ok"] is True
              and re.match(r"revoked at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", o["detail"] or ""),
              "a stapled revoked response", o)
    ocert, _, oserial = p_.other
    elsewhere = p_.ocsp_response("other.test", ocert, oserial)  # about another certificate
    with default_server(extra=["-status_file", elsewhere]) as s:
        p, d = probe_json(localhost_url(s.port) + ["--cacert", p_.root])
        o = d["tls"]["ocsp"]
        check(p.returncode == 0 and o["status"] == "invalid" and o["detail"] == "no status for the server's certificate",
              "a stapled response about another certificate is invalid", o)


# --------------------------------------------------------------------------
# handshake failures


class HttpOnlyServer(TcpServer):
    """Answers whatever arrives with a plain HTTP error, as a server without TLS would."""

    def handle(self, conn):
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def test_handshake_failures():
    with HttpOnlyServer() as h:
        p = probe(["https://127.0.0.1:%d/" % h.port])
        check_failure(p, 10, "TLS handshake failed: wrong version number", "a server that speaks plain HTTP")
        p, d = probe_json(["https://127.0.0.1:%d/" % h.port])
        check(d["error"]["kind"] == "tls_handshake" and d["tls"]["version"] is None
              and d["tls"]["verify"]["ok"] is None and isinstance(d["tls"]["us"], int),
              "--json: tls_handshake, the phase's time, nothing negotiated", d)
    with HoldServer() as h:
        p = probe(["https://127.0.0.1:%d/" % h.port, "--timeout", "300ms"])
        check_failure(p, 10, "TLS handshake: no progress within 300ms", "a server that never answers the hello")
        check(0.3 <= p.elapsed < 5, "gives up after about 300 ms (%.2f s)" % p.elapsed, describe(p))
        check(h.received > 0, "the ClientHello reached the server", h.received)


def test_usage():
    p_ = pki()
    cases = [
        (["http://127.0.0.1:1/", "--insecure"], "--cacert, --sni and --insecure apply to https:// URLs only"),
        (["https://127.0.0.1:1/", "--cacert", "/nonexistent/ca.pem"], None),
        (["https://127.0.0.1:1/", "--cacert", p_.localhost[0]], None),
        (["https://127.0.0.1:1/", "--sni", "10.0.0.1"], "--sni '10.0.0.1': expected a DNS name"),
    ]
    for args, line in cases:
        p = probe(args)
        what = "probe " + " ".join(args)
        if line:
            check_failure(p, 2, line, what)
        else:
            lines = p.stderr.splitlines()
            check(p.returncode == 2 and len(lines) == 1 and lines[0].startswith("sluice probe: --cacert: ")
                  and args[2] in lines[0], "%s: exit 2 naming the file" % what, describe(p))
    p = run_sluice_cmd(["probe", "--help"])
    check(p.returncode == 0 and "10 TLS handshake failed, 11 TLS certificate verification failed" in p.stdout,
          "--help documents the TLS exit statuses", p.stdout)


if __name__ == "__main__":
    harness.reexec_in_netns_or_skip()
    run_cases([test_verified_handshake, test_ip_host, test_resumption, test_sni_selection, test_unknown_ca,
               test_insecure, test_ocsp, test_handshake_failures, test_usage])

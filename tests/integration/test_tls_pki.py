#!/usr/bin/env python3
"""The test PKI (tls_pki.py) makes what it says: chains that `openssl verify` accepts, names
and purposes where they belong, expired certificates that fail, OCSP responses that `openssl
ocsp` verifies with the expected status and times, and files that a real TLS handshake
(`openssl s_server` / `s_client`, with a stapled response and a client certificate) accepts.
Needs only the openssl CLI; does not start sluice."""

import datetime
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
import tls_pki  # noqa: E402


def openssl(*args, stdin=None, timeout=20):
    r = subprocess.run(["openssl"] + list(args), input=stdin, capture_output=True, timeout=timeout)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def verify(cert, *extra, untrusted=True):
    pki = tls_pki.default()
    args = ["verify", "-CAfile", pki.ca_file] + (["-untrusted", pki.intermediate.cert] if untrusted else [])
    return openssl(*(args + list(extra) + [cert.cert]))


def verify_ok(cert, what, *extra):
    rc, out, err = verify(cert, *extra)
    check((rc, out, err) == (0, cert.cert + ": OK\n", ""), what, "rc=%d\n%s%s" % (rc, out, err))


def verify_fails(cert, what, subject, error_line, *extra, untrusted=True):
    rc, out, err = verify(cert, *extra, untrusted=untrusted)
    want = "%s\n%s\nerror %s: verification failed\n" % (subject, error_line, cert.cert)
    check((rc, out, err) == (2, "", want), what, "rc=%d\nstdout: %s\nstderr: %s" % (rc, out, err))


def pubkey_text(path, kind):
    args = ["x509", "-in", path, "-noout", "-pubkey"] if kind == "cert" else ["pkey", "-in", path, "-pubout"]
    return openssl(*args)[1]


def chain_subjects(path):
    with open(path) as f:
        pems = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", f.read(), re.S)
    return [openssl("x509", "-noout", "-subject", "-nameopt", "RFC2253", stdin=p.encode())[1].strip() for p in pems]


def case_leaves_and_chains():
    pki = tls_pki.default()
    for key, bits, curve in (("ecdsa", 256, "ASN1 OID: prime256v1\nNIST CURVE: P-256\n"), ("rsa", 2048, None)):
        leaf = tls_pki.leaf(["localhost", "api.sluice.test"], ["127.0.0.1", "::1"], key=key)
        verify_ok(leaf, "%s leaf: the chain verifies to the root (intermediate given as untrusted)" % key)
        verify_ok(leaf, "%s leaf: valid for localhost" % key, "-verify_hostname", "localhost")
        verify_ok(leaf, "%s leaf: valid for api.sluice.test" % key, "-verify_hostname", "api.sluice.test")
        verify_ok(leaf, "%s leaf: valid for 127.0.0.1" % key, "-verify_ip", "127.0.0.1")
        verify_ok(leaf, "%s leaf: valid for ::1" % key, "-verify_ip", "::1")
        verify_ok(leaf, "%s leaf: usable by a TLS server" % key, "-purpose", "sslserver")
        verify_fails(leaf, "%s leaf: not valid for another name" % key, "CN = localhost, O = sluice tests",
                     "error 62 at 0 depth lookup: hostname mismatch", "-verify_hostname", "other.sluice.test")
        verify_fails(leaf, "%s leaf: not valid for another address" % key, "CN = localhost, O = sluice tests",
                     "error 64 at 0 depth lookup: IP address mismatch", "-verify_ip", "127.0.0.2")
        verify_fails(leaf, "%s leaf: without the intermediate there is no path to the root" % key,
                     "CN = localhost, O = sluice tests",
                     "error 20 at 0 depth lookup: unable to get local issuer certificate", untrusted=False)
        check(chain_subjects(leaf.chain) == ["subject=O=sluice tests,CN=localhost",
                                             "subject=O=sluice tests,CN=sluice test intermediate CA"],
              "%s leaf: the chain file holds the leaf, then the intermediate, and not the root" % key,
              chain_subjects(leaf.chain))
        check(chain_subjects(leaf.combined) == chain_subjects(leaf.chain)
              and pubkey_text(leaf.combined, "key") == pubkey_text(leaf.cert, "cert"),
              "%s leaf: the combined file holds the chain and the key" % key)
        check(pubkey_text(leaf.key, "key") == pubkey_text(leaf.cert, "cert") != "",
              "%s leaf: the key file holds the certificate's private key" % key)
        rc, text, _ = openssl("pkey", "-in", leaf.key, "-noout", "-text_pub")
        m = re.search(r"Public-Key: \((\d+) bit\)", text)
        check(rc == 0 and m and int(m.group(1)) == bits and (curve is None or text.endswith(curve)),
              "%s leaf: a %d-bit %s key" % (key, bits, "P-256" if curve else "RSA"), text)
        check(oct(os.stat(leaf.key).st_mode & 0o777) == "0o600", "%s leaf: the key file is private (0600)" % key)
    rc, out, _ = openssl("x509", "-in", pki.intermediate.cert, "-noout", "-ext", "basicConstraints")
    check(out == "X509v3 Basic Constraints: critical\n    CA:TRUE, pathlen:0\n",
          "the intermediate is a CA that may sign only leaves", out)
    a = tls_pki.leaf(["localhost", "api.sluice.test"], ["127.0.0.1", "::1"])
    mtime = os.stat(a.cert).st_mtime_ns
    check(tls_pki.leaf(["localhost", "api.sluice.test"], ["127.0.0.1", "::1"]) is a
          and os.stat(a.cert).st_mtime_ns == mtime,
          "asking again for the same leaf returns the cached files, unchanged")
    b = tls_pki.leaf(["localhost"], ["127.0.0.1"])
    check(b.cert != a.cert and b.serial != a.serial, "another leaf gets its own files and serial",
          (a, b))


def case_wildcard():
    w = tls_pki.wildcard("example.test")
    for name in ("a.example.test", "www.example.test", "example.test"):
        verify_ok(w, "wildcard: valid for " + name, "-verify_hostname", name)
    verify_fails(w, "wildcard: covers one label only (a.b.example.test fails)", "CN = *.example.test, O = sluice tests",
                 "error 62 at 0 depth lookup: hostname mismatch", "-verify_hostname", "a.b.example.test")
    rc, out, _ = openssl("x509", "-in", w.cert, "-noout", "-ext", "subjectAltName")
    check(out == "X509v3 Subject Alternative Name: \n    DNS:*.example.test, DNS:example.test\n",
          "wildcard: exactly the two SANs", out)


def case_expired():
    e = tls_pki.expired()
    verify_fails(e, "expired leaf: verification fails with 'certificate has expired'", "CN = localhost, O = sluice tests",
                 "error 10 at 0 depth lookup: certificate has expired")
    rc, out, _ = openssl("x509", "-in", e.cert, "-noout", "-checkend", "0")
    check((rc, out) == (1, "Certificate will expire\n"), "expired leaf: notAfter is in the past", (rc, out))
    rc, out, _ = openssl("x509", "-in", e.cert, "-noout", "-startdate", "-enddate")
    dates = [datetime.datetime.strptime(line.split("=", 1)[1], "%b %d %H:%M:%S %Y GMT")
             for line in out.splitlines()]
    check(dates[1] - dates[0] == datetime.timedelta(days=29), "expired leaf: valid from 30 days ago until yesterday", out)
    verify_ok(e, "expired leaf: valid at a time inside its validity", "-attime",
              str(int((dates[0] - datetime.datetime(1970, 1, 1)).total_seconds()) + 3600))


def case_client_certificate():
    c = tls_pki.client(uri="spiffe://sluice.test/ns/bench/sa/client", cn="bench client")
    verify_ok(c, "client certificate: verifies for a TLS client", "-purpose", "sslclient")
    verify_fails(c, "client certificate: not usable by a TLS server", "CN = bench client, O = sluice tests",
                 "error 26 at 0 depth lookup: unsuitable certificate purpose", "-purpose", "sslserver")
    rc, out, _ = openssl("x509", "-in", c.cert, "-noout", "-ext", "subjectAltName,extendedKeyUsage")
    check(out == ("X509v3 Extended Key Usage: \n    TLS Web Client Authentication\n"
                  "X509v3 Subject Alternative Name: \n    URI:spiffe://sluice.test/ns/bench/sa/client\n"),
          "client certificate: clientAuth only, the URI as its one SAN", out)


def ocsp_check(cert, resp):
    pki = tls_pki.default()
    return openssl("ocsp", "-no_nonce", "-respin", resp, "-CAfile", pki.ca_file, "-issuer",
                   pki.intermediate.cert, "-cert", cert.cert)


def ocsp_time(s):
    return datetime.datetime.strptime(s, "%b %d %H:%M:%S %Y GMT")


def case_ocsp_responses():
    leaf = tls_pki.leaf()
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)

    rc, out, err = ocsp_check(leaf, tls_pki.ocsp_response(leaf))
    m = re.fullmatch(leaf.cert + r": good\n\tThis Update: (.*)\n\tNext Update: (.*)\n", out)
    check(rc == 0 and err == "Response verify OK\n" and m is not None,
          "good: the signature verifies and the status is good", out + err)
    this, nxt = ocsp_time(m.group(1)), ocsp_time(m.group(2))
    check(abs((this - now).total_seconds()) < 120 and nxt - this == datetime.timedelta(days=7),
          "good: thisUpdate is now, nextUpdate a week later", out)

    rc, out, err = ocsp_check(leaf, tls_pki.ocsp_response(leaf, stale=True))
    m = re.fullmatch(leaf.cert + r": WARNING: Status times invalid\.\n[0-9A-F]+:error:1380007D:OCSP routines:"
                     r"OCSP_check_validity:status expired:[^\n]*\ngood\n\tThis Update: (.*)\n\tNext Update: (.*)\n",
                     out)
    check(rc == 0 and err == "Response verify OK\n" and m is not None,
          "stale: the signature still verifies, and openssl reports the status times invalid (expired)",
          out + err)
    this, nxt = ocsp_time(m.group(1)), ocsp_time(m.group(2))
    check(abs((nxt - (now - datetime.timedelta(days=1))).total_seconds()) < 120
          and nxt - this == datetime.timedelta(days=7),
          "stale: nextUpdate was a day ago, thisUpdate a week before it", out)

    rc, out, err = ocsp_check(leaf, tls_pki.ocsp_response(leaf, status="revoked"))
    m = re.fullmatch(leaf.cert + r": revoked\n\tThis Update: .*\n\tNext Update: .*\n"
                     r"\tReason: keyCompromise\n\tRevocation Time: (.*)\n", out)
    check(rc == 0 and err == "Response verify OK\n" and m is not None,
          "revoked: the status is revoked for keyCompromise", out + err)
    check(abs((ocsp_time(m.group(1)) - (now - datetime.timedelta(hours=1))).total_seconds()) < 120,
          "revoked: revoked an hour ago", out)

    rc, out, err = ocsp_check(leaf, tls_pki.ocsp_response(leaf, status="unknown"))
    check(rc == 0 and err == "Response verify OK\n"
          and re.fullmatch(leaf.cert + r": unknown\n\tThis Update: .*\n\tNext Update: .*\n", out),
          "unknown: the status is unknown", out + err)

    other = tls_pki.leaf(["other.sluice.test"], [])
    rc, out, err = ocsp_check(other, tls_pki.ocsp_response(leaf))
    check(rc == 1 and out == other.cert + ": ERROR: No Status found.\n",
          "a response about one leaf says nothing about another", out + err)
    check(tls_pki.ocsp_response(leaf) == tls_pki.ocsp_response(leaf),
          "the same response is made once per process")


def case_tls_handshake():
    """The files work in a real handshake: s_server with the ECDSA chain, a stapled response
    and required client certificates; s_client verifying the name against the root."""
    pki = tls_pki.default()
    for key in ("ecdsa", "rsa"):
        leaf = tls_pki.leaf(key=key)
        client = tls_pki.client()
        srv = subprocess.Popen(
            ["openssl", "s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-cert", leaf.cert,
             "-key", leaf.key, "-cert_chain", pki.intermediate.cert,
             "-status_file", tls_pki.ocsp_response(leaf), "-Verify", "2", "-CAfile", pki.ca_file,
             "-verify_return_error"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        harness.register_cleanup(srv.kill)
        try:
            port = None
            for _ in range(50):  # bounded: s_server prints a few lines before ACCEPT
                line = srv.stdout.readline()
                m = re.match(r"ACCEPT 127\.0\.0\.1:(\d+)$", line.strip())
                if m or not line:
                    port = m and int(m.group(1))
                    break
            check(port is not None, "%s: s_server listens" % key)
            rc, out, err = openssl("s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "localhost",
                                   "-verify_hostname", "localhost", "-CAfile", pki.ca_file,
                                   "-verify_return_error", "-status", "-cert", client.cert, "-key", client.key, "-cert_chain", pki.intermediate.cert,
                                   stdin=b"", timeout=20)
            check(rc == 0 and "\nVerify return code: 0 (ok)\n" in out,
                  "%s: s_client verifies the server's chain and name" % key, out + err)
            check("\n    OCSP Response Status: successful (0x0)\n" in out and "\n    Cert Status: good\n" in out,
                  "%s: the stapled response arrives and says good" % key, out)
            sig = "ECDSA" if key == "ecdsa" else "RSA-PSS"
            check(re.search(r"\nPeer signature type: %s\n" % sig, out) is not None,
                  "%s: the server signs with its %s key" % (key, sig), out)
            srv.stdin.close()
            rest = srv.stdout.read()
            check(srv.wait(timeout=10) == 0 and "\nverify return:1\ndepth=0 CN = sluice test client, O = sluice tests\n"
                  in "\n" + rest, "%s: s_server verified the client certificate" % key, rest)
        finally:
            srv.kill()
            srv.wait()
            harness.unregister_cleanup(srv.kill)


if __name__ == "__main__":
    if not shutil.which("openssl"):
        print("skip   the openssl CLI is not installed (scripts/bootstrap)", flush=True)
        sys.exit(harness.SKIP_EXIT)
    # run_cases insists on a binary in SLUICE_BIN; this script never starts sluice, so by hand
    # it runs without one.
    os.environ.setdefault("SLUICE_BIN", shutil.which("openssl"))
    harness.run_cases([case_leaves_and_chains, case_wildcard, case_expired, case_client_certificate,
                       case_ocsp_responses, case_tls_handshake])

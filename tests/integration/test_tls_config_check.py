#!/usr/bin/env python3
"""`sluice check` and `sluice run` on TLS settings whose files are wrong.

The certificates are made here with the openssl command line (a CA and leaves issued by
it). Each case checks the exact lines on stderr: certificate problems are errors placed at
the listener's or cluster's `tls` block (exit code 1, for `run` too, before anything
listens); a certificate about to expire is a warning (exit code 0).
"""

import datetime
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, run_cases, run_sluice_cmd

OPENSSL = "/usr/bin/openssl"
TMP = None  # set in main


def openssl(*args):
    p = subprocess.run([OPENSSL] + list(args), cwd=TMP, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s" % (" ".join(args), p.stdout))


def path(name):
    return os.path.join(TMP, name)


def make_pki():
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
            "-subj", "/CN=Check CA")
    for serial, (name, days) in enumerate((("good", "90"), ("soon", "3"), ("other", "90")), 1):
        openssl("req", "-new", *ec, "-keyout", name + ".key", "-out", name + ".csr",
                "-subj", "/CN=%s.example.com" % name)
        with open(path(name + ".ext"), "w") as f:
            f.write("subjectAltName = DNS:%s.example.com\n" % name)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-set_serial", str(serial), "-days", days,
                "-extfile", name + ".ext", "-out", name + ".pem")


def config(listener_tls, cluster_tls=None):
    """A TCP listener with `listener_tls` (a dict of path values) in front of one cluster."""
    lines = ["listeners:", "  - name: in", "    address: 127.0.0.1:0", "    protocol: tcp",
             "    cluster: backends", "    tls:", "      certificates:",
             "        - certificate_chain: %s" % listener_tls["chain"],
             "          private_key: %s" % listener_tls["key"]]
    if "client_ca" in listener_tls:
        lines += ["      client_ca: %s" % listener_tls["client_ca"], "      verify: required"]
    lines += ["clusters:", "  - name: backends", "    endpoints:",
              "      - address: 127.0.0.1:9"]
    if cluster_tls:
        lines += ["    tls:"] + ["      %s: %s" % kv for kv in cluster_tls]
    return "\n".join(lines) + "\n"


def run_on(name, text, cmd="check"):
    cfg = path(name + ".yaml")
    with open(cfg, "w") as f:
        f.write(text)
    p = run_sluice_cmd([cmd, "-c", cfg], timeout=20)
    return cfg, p


def expect(name, text, rc, lines, cmd="check"):
    """`sluice CMD` exits rc with exactly `lines` (FILE replaced by the config's path) on
    stderr, or, for run, among its stderr lines."""
    cfg, p = run_on(name, text, cmd)
    want = [l.replace("FILE", cfg) for l in lines]
    got = p.stderr.splitlines()
    check(p.returncode == rc, "%s exits %d" % (cmd, rc),
          "rc=%d\nstderr: %s" % (p.returncode, p.stderr))
    if cmd == "check":
        check(got == want, "stderr is exactly: %s" % " | ".join(lines), "stderr:\n%s" % p.stderr)
    else:
        check(all(w in got for w in want), "stderr has: %s" % " | ".join(lines),
              "stderr:\n%s" % p.stderr)
    if rc == 0 and cmd == "check":
        check(p.stdout.strip() == "%s: ok" % cfg, "prints '<FILE>: ok'", repr(p.stdout))


def test_good_certificates_load():
    expect("good", config({"chain": path("good.pem"), "key": path("good.key"),
                           "client_ca": path("ca.pem")},
                          [("ca", path("ca.pem")), ("sni", "good.example.com")]), 0, [])


def test_key_mismatch_is_an_error_at_the_tls_block():
    for cmd in ("check", "run"):
        expect("mismatch", config({"chain": path("good.pem"), "key": path("other.key")}), 1,
               ["FILE:7:7: listeners[0].tls: %s: the private key does not match the certificate "
                "in %s (CN=good.example.com)" % (path("other.key"), path("good.pem"))], cmd)


def test_missing_file_is_an_error():
    expect("missing", config({"chain": path("nothing.pem"), "key": path("good.key")}), 1,
           ["FILE:7:7: listeners[0].tls: %s: cannot read: No such file or directory"
            % path("nothing.pem")])


def test_expiring_certificate_is_a_warning():
    text = subprocess.run([OPENSSL, "x509", "-in", path("soon.pem"), "-noout", "-enddate"],
                          stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
    end = datetime.datetime.strptime(text.split("=", 1)[1], "%b %d %H:%M:%S %Y GMT")
    when = end.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    expect("soon", config({"chain": path("soon.pem"), "key": path("soon.key")}), 0,
           ["FILE:7:7: warning: listeners[0].tls: %s: the certificate (CN=soon.example.com) "
            "expires at %s, in less than 14 days" % (path("soon.pem"), when)])


def test_ca_files_must_hold_ca_certificates():
    expect("not_ca", config({"chain": path("good.pem"), "key": path("good.key"),
                             "client_ca": path("other.pem")},
                            [("ca", path("good.pem"))]), 1,
           ["FILE:10:18: listeners[0].tls.client_ca: %s: certificate 1 (CN=other.example.com) is "
            "not a CA certificate (no basicConstraints CA:TRUE)" % path("other.pem"),
            "FILE:17:11: clusters[0].tls.ca: %s: certificate 1 (CN=good.example.com) is not a "
            "CA certificate (no basicConstraints CA:TRUE)" % path("good.pem")])


def main():
    global TMP
    if not os.access(OPENSSL, os.X_OK):
        print("skip   %s is not installed" % OPENSSL)
        sys.exit(harness.SKIP_EXIT)
    TMP = tempfile.mkdtemp(prefix="sluice-tls-check-")
    try:
        make_pki()
        run_cases([test_good_certificates_load, test_key_mismatch_is_an_error_at_the_tls_block,
                   test_missing_file_is_an_error, test_expiring_certificate_is_a_warning,
                   test_ca_files_must_hold_ca_certificates])
    finally:
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()

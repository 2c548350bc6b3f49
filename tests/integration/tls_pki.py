#!/usr/bin/python3
"""A throwaway test PKI made with the openssl CLI, for the TLS tests and the TLS benchmark.

Standard library only; every key, certificate and OCSP response is made by `openssl` in one
directory (a temporary one removed at exit, unless a directory is given):

    root CA (ECDSA P-256)
      └─ intermediate CA (ECDSA P-256)
           ├─ server leaves: ECDSA P-256 or RSA 2048, DNS names and IP addresses as SANs,
           │  wildcards, expired ones (notAfter in the past)
           ├─ client certificates (mTLS): clientAuth, a URI SAN (SPIFFE-style) and a CN
           └─ OCSP responses for any leaf: good, revoked or unknown, fresh or stale

Everything is returned as file paths (a `Cert` holds the certificate, its key and its chain);
what was made once is returned again from the per-process cache, so a test asking twice for
`leaf()` pays once. ECDSA keys are used wherever the test does not ask for RSA: the usual set
(a dozen certificates and three OCSP responses) takes about a second, half of it the RSA key.

    import tls_pki
    srv = tls_pki.leaf(["localhost"], ["127.0.0.1"])          # ECDSA P-256
    rsa = tls_pki.leaf(["localhost"], ["127.0.0.1"], key="rsa")
    sluice_cfg = {"certificate_chain": srv.chain, "private_key": srv.key,
                  "ocsp_response": tls_pki.ocsp_response(srv)}
    trust = tls_pki.default().ca_file                          # the root, for clients
    stranger = tls_pki.Pki().leaf()                            # chains to another, unrelated root

OpenSSL 3.0's `openssl ocsp` only writes nextUpdate in the future (-ndays and -nmin refuse
zero and negative numbers), so a stale response is made by moving the times of a fresh one
back and signing its ResponseData again with the same key (`openssl dgst -sign`): what
`openssl ocsp -respin` then reports is a correctly signed response whose thisUpdate and
nextUpdate are both in the past.

Command line (the benchmark uses it): `tls_pki.py --dir DIR` makes the usual set in DIR and
prints the paths as one JSON object.
"""

import argparse
import atexit
import datetime
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import asdict, dataclass

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"

KEY_TYPES = ("ecdsa", "rsa")
OCSP_STATUSES = ("good", "revoked", "unknown")
CA_BACKDATE = datetime.timedelta(days=60)


class PkiError(Exception):
    """An openssl command failed; the message holds the command and its stderr."""


@dataclass(frozen=True)
class Cert:
    """One certificate and its key, as files."""

    name: str  # file stem in the PKI directory
    cert: str  # PEM certificate
    key: str  # PEM private key (unencrypted)
    chain: str  # PEM: this certificate, then the intermediates up to the root, without the root
    combined: str  # PEM: chain then key in one file (HAProxy's `crt`)
    serial: str  # upper-case hex, as in the CA's index
    key_type: str  # "ecdsa" (P-256) or "rsa" (2048)


def _run(args, stdin=None):
    r = subprocess.run([OPENSSL] + list(args), input=stdin, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise PkiError("openssl %s failed (%d): %s" % (" ".join(args), r.returncode,
                                                        r.stderr.decode(errors="replace").strip()))
    return r.stdout


def _asn1_time(t):
    """YYYYMMDDHHMMSSZ (GeneralizedTime, accepted by `openssl ca -startdate/-enddate`)."""
    return t.strftime("%Y%m%d%H%M%SZ")


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


# ------------------------------------------------------------------------------------------
# A minimal DER reader/writer: enough to move the times of an OCSP response and re-sign it.


def _der_read(buf, pos):
    """(tag, header_length, content_length) of the TLV at pos."""
    tag = buf[pos]
    n = buf[pos + 1]
    if n < 0x80:
        return tag, 2, n
    k = n & 0x7F
    return tag, 2 + k, int.from_bytes(buf[pos + 2:pos + 2 + k], "big")


def _der_children(buf):
    """The TLVs directly inside buf, as (tag, whole_tlv_bytes, content_bytes)."""
    out, pos = [], 0
    while pos < len(buf):
        tag, hl, cl = _der_read(buf, pos)
        out.append((tag, buf[pos:pos + hl + cl], buf[pos + hl:pos + hl + cl]))
        pos += hl + cl
    return out


def _der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _der_tlv(tag, content):
    return bytes([tag]) + _der_len(len(content)) + content


def _shift_generalized_times(tlv, delta):
    """tlv with every GeneralizedTime inside it (constructed types walked, strings left alone)
    moved by delta; lengths do not change (YYYYMMDDHHMMSSZ stays 15 bytes)."""
    tag, hl, cl = _der_read(tlv, 0)
    content = tlv[hl:hl + cl]
    if tag == 0x18:  # GeneralizedTime
        t = datetime.datetime.strptime(content.decode(), "%Y%m%d%H%M%SZ") + delta
        return tlv[:hl] + t.strftime("%Y%m%d%H%M%SZ").encode()
    if tag & 0x20:  # constructed: SEQUENCE, SET, [n] EXPLICIT
        return tlv[:hl] + b"".join(_shift_generalized_times(c, delta) for _, c, _ in _der_children(content))
    return tlv


# ------------------------------------------------------------------------------------------


class Pki:
    """A root CA, an intermediate CA and whatever leaves and OCSP responses are asked for, in
    one directory. Thread-safe; each distinct request is made once and then cached."""

    def __init__(self, directory=None):
        self._own_dir = directory is None
        self.dir = os.path.abspath(directory or tempfile.mkdtemp(prefix="sluice-pki-"))
        os.makedirs(self.dir, exist_ok=True)
        if self._own_dir:
            atexit.register(self.cleanup)  # a temporary directory goes with the process
        self._lock = threading.RLock()
        self._cache = {}
        self._names = set()
        self.root = self._make_root()
        self.intermediate = self._make_intermediate()
        # The trust anchor a client is given: the root alone.
        self.ca_file = self.root.cert

    def cleanup(self):
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    # --- keys and the two CAs ---------------------------------------------------------------

    def _new_key(self, name, key_type):
        if key_type not in KEY_TYPES:
            raise ValueError("key type %r: expected one of %s" % (key_type, ", ".join(KEY_TYPES)))
        path = self.path(name + ".key")
        if key_type == "ecdsa":
            _run(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path])
        else:
            _run(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path])
        os.chmod(path, 0o600)
        return path

    def _unique_name(self, stem):
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_") or "cert"
        name, i = stem, 1
        while name in self._names:
            i += 1
            name = "%s-%d" % (stem, i)
        self._names.add(name)
        return name

    def _ca_config(self, ca_name):
        d = self.path(ca_name + "-db")
        os.makedirs(os.path.join(d, "new"), exist_ok=True)
        open(os.path.join(d, "index.txt"), "w").close()  # a reused directory starts afresh
        with open(os.path.join(d, "serial"), "w") as f:
            # Distinct serial ranges per CA make a serial name one certificate in the whole PKI.
            f.write("1000\n" if ca_name == "root" else "2000\n")
        cnf = os.path.join(d, "ca.cnf")
        with open(cnf, "w") as f:
            f.write(f"""[ca]
default_ca = this
[this]
dir = {d}
database = $dir/index.txt
new_certs_dir = $dir/new
serial = $dir/serial
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
email_in_dn = no
[anything]
commonName = supplied
organizationName = optional
""")
        return cnf

    def _make_root(self):
        # Self-signed through `openssl ca -selfsign` so that the validity can start in the past:
        # the CAs are valid from 60 days ago, before any expired leaf, so that every leaf
        # verifies at a time inside its own validity (`openssl verify -attime`).
        name = self._unique_name("root")
        key = self._new_key(name, "ecdsa")
        self._root_cnf = self._ca_config("root")
        csr = self.path(name + ".csr")
        _run(["req", "-new", "-key", key, "-subj", "/O=sluice tests/CN=sluice test root CA", "-out", csr])
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                    "subjectKeyIdentifier=hash\n")
        cert = self.path(name + ".pem")
        now = _now()
        _run(["ca", "-batch", "-notext", "-config", self._root_cnf, "-selfsign", "-keyfile", key,
              "-in", csr, "-out", cert, "-extfile", ext,
              "-startdate", _asn1_time(now - CA_BACKDATE), "-enddate", _asn1_time(now + datetime.timedelta(days=3650))])
        os.unlink(csr)
        self._root_key, self._root_cert = key, cert
        return Cert(name, cert, key, cert, self._combine(name, [cert], key), self._serial_of(cert), "ecdsa")

    def _make_intermediate(self):
        name = self._unique_name("intermediate")
        key = self._new_key(name, "ecdsa")
        cert = self._sign(self._root_cnf, self._root_cert, self._root_key, name, key,
                          "/O=sluice tests/CN=sluice test intermediate CA",
                          ["basicConstraints=critical,CA:TRUE,pathlen:0",
                           "keyUsage=critical,keyCertSign,cRLSign",
                           "subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid:always"],
                          _now() - CA_BACKDATE, _now() + datetime.timedelta(days=1825))
        self._int_cnf = self._ca_config("intermediate")
        serial = self._serial_of(cert)
        return Cert(name, cert, key, cert, self._combine(name, [cert], key), serial, "ecdsa")

    def _sign(self, cnf, ca_cert, ca_key, name, key, subject, extensions, not_before=None, not_after=None):
        csr = self.path(name + ".csr")
        _run(["req", "-new", "-key", key, "-subj", subject, "-out", csr])
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write("\n".join(extensions) + "\n")
        cert = self.path(name + ".pem")
        args = ["ca", "-batch", "-notext", "-config", cnf, "-cert", ca_cert, "-keyfile", ca_key,
                "-in", csr, "-out", cert, "-extfile", ext]
        if not_before is None:
            # An hour back: peers whose clocks differ by a little still accept it at once.
            not_before = _now() - datetime.timedelta(hours=1)
            not_after = _now() + datetime.timedelta(days=825)
        _run(args + ["-startdate", _asn1_time(not_before), "-enddate", _asn1_time(not_after)])
        os.unlink(csr)
        return cert

    def _serial_of(self, cert):
        return _run(["x509", "-in", cert, "-noout", "-serial"]).decode().strip().split("=")[1].upper()

    def _combine(self, name, pems, key):
        out = self.path(name + ".combined.pem")
        with open(out, "wb") as f:
            for p in pems + [key]:
                with open(p, "rb") as src:
                    f.write(src.read())
        os.chmod(out, 0o600)
        return out

    def _issue(self, stem, subject, extensions, key_type, not_before=None, not_after=None):
        name = self._unique_name(stem)
        key = self._new_key(name, key_type)
        cert = self._sign(self._int_cnf, self.intermediate.cert, self.intermediate.key, name, key,
                          subject, extensions, not_before, not_after)
        chain = self.path(name + ".chain.pem")
        with open(chain, "wb") as f:
            for p in (cert, self.intermediate.cert):
                with open(p, "rb") as src:
                    f.write(src.read())
        return Cert(name, cert, key, chain, self._combine(name, [cert, self.intermediate.cert], key),
                    self._serial_of(cert), key_type)

    def _cached(self, key, make):
        with self._lock:
            if key not in self._cache:
                self._cache[key] = make()
            return self._cache[key]

    # --- what tests ask for -----------------------------------------------------------------

    def leaf(self, dns=("localhost",), ips=("127.0.0.1",), key="ecdsa", expired=False,
             ocsp_url="http://127.0.0.1:9/ocsp"):
        """A server certificate (serverAuth) for the DNS names and IP addresses given, issued by
        the intermediate. The CN is the first name. expired: valid from 30 days ago until
        yesterday. ocsp_url goes in the Authority Information Access (None: no AIA)."""
        dns, ips = tuple(dns), tuple(ips)
        if not dns and not ips:
            raise ValueError("a leaf needs at least one DNS name or IP address")

        def make():
            sans = ["DNS:" + d for d in dns] + ["IP:" + i for i in ips]
            ku = "digitalSignature,keyEncipherment" if key == "rsa" else "digitalSignature"
            ext = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical," + ku,
                   "extendedKeyUsage=serverAuth", "subjectKeyIdentifier=hash",
                   "authorityKeyIdentifier=keyid", "subjectAltName=" + ",".join(sans)]
            if ocsp_url:
                ext.append("authorityInfoAccess=OCSP;URI:" + ocsp_url)
            nb = na = None
            if expired:
                now = _now()
                nb, na = now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)
            stem = "leaf-%s-%s%s" % (key, (dns or ips)[0].replace("*", "star"), "-expired" if expired else "")
            return self._issue(stem, "/O=sluice tests/CN=" + (dns or ips)[0], ext, key, nb, na)

        return self._cached(("leaf", dns, ips, key, expired, ocsp_url), make)

    def wildcard(self, domain="example.test", key="ecdsa"):
        """A server certificate for *.domain (one label) and domain itself."""
        return self.leaf(("*." + domain, domain), (), key=key)

    def expired(self, dns=("localhost",), ips=("127.0.0.1",), key="ecdsa"):
        return self.leaf(dns, ips, key=key, expired=True)

    def client(self, uri="spiffe://sluice.test/client", cn="sluice test client", key="ecdsa"):
        """A client certificate (clientAuth) with a URI SAN, for mTLS."""

        def make():
            ext = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature",
                   "extendedKeyUsage=clientAuth", "subjectKeyIdentifier=hash",
                   "authorityKeyIdentifier=keyid", "subjectAltName=URI:" + uri]
            return self._issue("client-" + cn, "/O=sluice tests/CN=" + cn, ext, key)

        return self._cached(("client", uri, cn, key), make)

    def ocsp_response(self, cert, status="good", stale=False, days=7):
        """A DER OCSP response about cert, signed by its issuer (the intermediate), as a file.
        Fresh: thisUpdate now, nextUpdate in `days` days. stale: both moved back so that
        nextUpdate was a day ago. status "revoked" (keyCompromise, an hour ago) or "unknown"
        (the responder does not know the serial) make those answers whatever the leaf."""
        if status not in OCSP_STATUSES:
            raise ValueError("OCSP status %r: expected one of %s" % (status, ", ".join(OCSP_STATUSES)))

        def make():
            name = self._unique_name("%s.ocsp-%s%s" % (cert.name, status, "-stale" if stale else ""))
            index = self.path(name + ".index")
            with open(index, "w") as f:
                if status != "unknown":
                    f.write(self._index_line(cert, status))
            with open(index + ".attr", "w") as f:
                f.write("unique_subject = no\n")
            out = self.path(name + ".der")
            _run(["ocsp", "-no_nonce", "-index", index, "-CA", self.intermediate.cert,
                  "-rsigner", self.intermediate.cert, "-rkey", self.intermediate.key,
                  "-issuer", self.intermediate.cert, "-cert", cert.cert, "-ndays", str(days),
                  "-respout", out])
            if stale:
                self._age_response(out, self.intermediate.key, datetime.timedelta(days=days + 1))
            return out

        return self._cached(("ocsp", cert.cert, status, stale, days), make)

    def _index_line(self, cert, status):
        """The line of the intermediate's index for cert (made by `openssl ca`), with the
        status asked for."""
        with open(os.path.join(self.path("intermediate-db"), "index.txt")) as f:
            for line in f:
                fields = line.rstrip("\n").split("\t")
                if len(fields) == 6 and fields[3].upper() == cert.serial:
                    if status == "revoked":
                        when = (_now() - datetime.timedelta(hours=1)).strftime("%y%m%d%H%M%SZ")
                        fields[0], fields[2] = "R", when + ",keyCompromise"
                    return "\t".join(fields) + "\n"
        raise PkiError("serial %s is not in the intermediate's index" % cert.serial)

    def _age_response(self, path, signer_key, delta):
        """Moves every time inside the ResponseData of the DER OCSP response at path back by
        delta and signs it again with signer_key (the response's own algorithm: SHA-256)."""
        with open(path, "rb") as f:
            der = f.read()
        _, hl, _ = _der_read(der, 0)
        status, resp_bytes = [c for _, c, _ in _der_children(der[hl:])]
        _, rb_hl, _ = _der_read(resp_bytes, 0)
        (_, seq, seq_content), = _der_children(resp_bytes[rb_hl:])
        oid, octets = [c for _, c, _ in _der_children(seq_content)]
        _, oh, _ = _der_read(octets, 0)
        basic = octets[oh:]
        _, bh, _ = _der_read(basic, 0)
        parts = [c for _, c, _ in _der_children(basic[bh:])]
        tbs, alg, _sig = parts[0], parts[1], parts[2]
        new_tbs = _shift_generalized_times(tbs, -delta)
        signature = _run(["dgst", "-sha256", "-sign", signer_key], stdin=new_tbs)
        new_basic = _der_tlv(0x30, new_tbs + alg + _der_tlv(0x03, b"\x00" + signature) + b"".join(parts[3:]))
        new_rb = _der_tlv(0xA0, _der_tlv(0x30, oid + _der_tlv(0x04, new_basic)))
        with open(path, "wb") as f:
            f.write(_der_tlv(0x30, status + new_rb))


# ------------------------------------------------------------------------------------------
# The per-process PKI and functions on it.

_default = None
_default_lock = threading.Lock()


def default():
    """The process's PKI (made on first use in a temporary directory removed at exit)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Pki()
        return _default


def leaf(dns=("localhost",), ips=("127.0.0.1",), key="ecdsa", expired=False):
    return default().leaf(dns, ips, key=key, expired=expired)


def wildcard(domain="example.test", key="ecdsa"):
    return default().wildcard(domain, key=key)


def expired(dns=("localhost",), ips=("127.0.0.1",), key="ecdsa"):
    return default().expired(dns, ips, key=key)


def client(uri="spiffe://sluice.test/client", cn="sluice test client", key="ecdsa"):
    return default().client(uri, cn, key=key)


def ocsp_response(cert, status="good", stale=False):
    return default().ocsp_response(cert, status=status, stale=stale)


def make_set(pki):
    """The usual set, as {name: Cert or path}: what the command line prints."""
    good = pki.leaf()
    return {
        "root": pki.root,
        "intermediate": pki.intermediate,
        "ca_file": pki.ca_file,
        "leaf_ecdsa": good,
        "leaf_rsa": pki.leaf(key="rsa"),
        "wildcard": pki.wildcard(),
        "expired": pki.expired(),
        "client": pki.client(),
        "ocsp_good": pki.ocsp_response(good),
        "ocsp_stale": pki.ocsp_response(good, stale=True),
        "ocsp_revoked": pki.ocsp_response(good, status="revoked"),
    }


def main():
    ap = argparse.ArgumentParser(description="Make a test PKI with the openssl CLI and print its files as JSON.")
    ap.add_argument("--dir", required=True, help="directory to write into (created; reused files are overwritten)")
    args = ap.parse_args()
    made = make_set(Pki(args.dir))
    print(json.dumps({k: asdict(v) if isinstance(v, Cert) else v for k, v in made.items()}, indent=1))


if __name__ == "__main__":
    main()

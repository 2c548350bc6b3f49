"""Pieces shared by the HTTP integration tests (on top of harness.py).

Config builders for HTTP listeners, a raw HTTP/1.1 client that shows exactly what
sluice sent (status line, headers, framing, when the connection closed), curl and
nginx runners, and a VmRSS reader.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from http_backend import PeerClosed, SockReader, header_tokens, header_values, parse_head  # noqa: E402,F401

DEFAULT_BIN = "/work/main/build/release/sluice"


def use_default_bin():
    """Lets the scripts run by hand: SLUICE_BIN defaults to the release build."""
    if not os.environ.get("SLUICE_BIN"):
        os.environ["SLUICE_BIN"] = DEFAULT_BIN
    # the binary may be replaced by a rebuild at this moment: give it a few seconds to reappear
    harness.wait_until(lambda: os.access(os.environ["SLUICE_BIN"], os.X_OK), 20, 0.1)


# --------------------------------------------------------------------------
# configuration

_PLAIN = re.compile(r"[A-Za-z0-9_./:-]+")
_YAML_WORDS = {"yes", "no", "true", "false", "on", "off", "null", "y", "n", "~"}


class _Quoted(str):
    def __str__(self):
        return json.dumps(str.__str__(self))


def _quote(obj):
    if isinstance(obj, dict):
        return {k: _quote(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_quote(v) for v in obj]
    if isinstance(obj, str) and (not _PLAIN.fullmatch(obj) or obj.lower() in _YAML_WORDS):
        return _Quoted(obj)
    return obj


def cluster(name, endpoints, **kw):
    """A cluster dict; endpoints are "ip:port" strings, dicts or objects with .address."""
    eps = []
    for e in endpoints:
        if isinstance(e, dict):
            eps.append(e)
        elif isinstance(e, str):
            eps.append({"address": e})
        else:
            eps.append({"address": e.address})
    c = {"name": name, "connect_timeout": "1s"}
    c.update(kw)
    c["endpoints"] = eps
    return c


def vhost(name, domains, routes):
    return {"name": name, "domains": list(domains), "routes": routes}


def listener(name, vhosts, http=None, **kw):
    lst = {"name": name, "address": "127.0.0.1:0", "protocol": "http"}
    lst.update(kw)
    if http:
        lst["http"] = http
    lst["virtual_hosts"] = list(vhosts)
    return lst


def simple_listener(routes, http=None, name="web", **kw):
    """A listener with one virtual host for every domain."""
    return listener(name, [vhost("all", ["*"], routes)], http=http, **kw)


def config(listeners, clusters, workers=2, drain_timeout="5s", log_level="debug"):
    cfg = {"workers": workers, "log_level": log_level, "drain_timeout": drain_timeout,
           "listeners": listeners, "clusters": clusters}
    return harness.to_yaml(_quote(cfg)) + "\n"


def start_sluice(listeners, clusters, workers=2, drain_timeout="5s", **kw):
    text = config(listeners, clusters, workers=workers, drain_timeout=drain_timeout)
    deadline = time.monotonic() + 30
    while True:
        try:
            return harness.Sluice(text, **kw)
        except OSError as e:
            # the binary is being replaced by a rebuild (missing, not executable yet, or busy)
            if time.monotonic() > deadline:
                raise
            harness.info("cannot start %s (%s); waiting for it to be rebuilt" % (harness.sluice_bin(), e))
            harness.wait_until(lambda: os.access(harness.sluice_bin(), os.X_OK), 10, 0.2)
            time.sleep(0.5)  # let the linker finish writing before exec


# --------------------------------------------------------------------------
# a raw HTTP/1.1 client


class Response:
    def __init__(self):
        self.version = ""
        self.status = 0
        self.reason = ""
        self.headers = []
        self.body = b""
        self.raw_head = b""
        self.interim = []      # (status, headers) of 1xx responses before this one
        self.framing = ""      # "content-length", "chunked", "close", "none"
        self.trailers = []

    def header(self, name):
        v = header_values(self.headers, name)
        return v[0] if v else None

    def has(self, name):
        return bool(header_values(self.headers, name))

    def tokens(self, name):
        return header_tokens(self.headers, name)

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %s, %d body bytes, framing %s>" % (self.status, self.reason, len(self.body), self.framing)

    def describe(self, body_limit=300):
        b = self.body[:body_limit]
        return (self.raw_head.decode("latin-1") + repr(b) + ("..." if len(self.body) > body_limit else ""))


class Client:
    """One TCP connection to sluice; requests are written verbatim (or built), responses parsed strictly."""

    def __init__(self, port, timeout=10.0, host="127.0.0.1"):
        self.sock = harness.connect(port, host=host, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = SockReader(self.sock)
        self.timeout = timeout

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method, target, headers=None, body=None, version="1.1", host="test.local",
                timeout=None):
        self.send(build_request(method, target, headers, body, version, host))
        return self.read_response(method, timeout=timeout)

    def read_response(self, method="GET", timeout=None):
        self.reader.deadline = time.monotonic() + (timeout or self.timeout)
        try:
            return read_response(self.reader, method)
        finally:
            self.reader.deadline = None

    def wait_closed(self, timeout):
        """Waits for EOF/reset from sluice. Returns (how, extra bytes received, seconds)."""
        t0 = time.monotonic()
        extra = bytes(self.reader.buf)
        self.reader.buf.clear()
        data, how = harness.recv_until_closed(self.sock, timeout)
        return how, extra + data, time.monotonic() - t0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def build_request(method, target, headers=None, body=None, version="1.1", host="test.local"):
    lines = ["%s %s HTTP/%s" % (method, target, version)]
    hs = list(headers or [])
    if host is not None and not any(k.lower() == "host" for k, _ in hs):
        hs.insert(0, ("Host", host))
    if body is not None and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hs):
        hs.append(("Content-Length", str(len(body))))
    lines += ["%s: %s" % (k, v) for k, v in hs]
    out = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if body:
        out += body
    return out


def chunked(body, size=1000):
    out = b""
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def read_response(reader, method="GET"):
    """Reads one response (after any 1xx interim responses) with strict framing."""
    resp = Response()
    while True:
        head = reader.read_until(b"\r\n\r\n", 1 << 20)
        start, headers = parse_head(head)
        m = re.match(r"^(HTTP/\d\.\d) (\d{3}) ?(.*)$", start)
        if not m:
            raise ValueError("bad status line %r" % start)
        status = int(m.group(2))
        if 100 <= status < 200 and status != 101:
            resp.interim.append((status, headers))
            continue
        resp.version, resp.status, resp.reason = m.group(1), status, m.group(3)
        resp.headers, resp.raw_head = headers, head
        break
    te = header_tokens(resp.headers, "transfer-encoding")
    cl = header_values(resp.headers, "content-length")
    if method == "HEAD" or resp.status in (101, 204, 304):
        resp.framing = "none"
    elif te:
        resp.framing = "chunked"
        parts = []
        resp.trailers = _read_chunked(reader, parts)
        resp.body = b"".join(parts)
    elif cl:
        resp.framing = "content-length"
        resp.body = reader.read_exact(int(cl[0]))
    else:
        resp.framing = "close"
        resp.body = reader.read_to_eof()
    return resp


def _read_chunked(reader, parts):
    from http_backend import read_chunked
    return read_chunked(reader, parts.append)


def request_once(port, method, target, headers=None, body=None, version="1.1", host="test.local",
                 timeout=10.0):
    """One request on a fresh connection; returns the Response (the connection is then closed)."""
    c = Client(port, timeout=timeout)
    try:
        return c.request(method, target, headers, body, version, host)
    finally:
        c.close()


def raw_exchange(port, data, timeout=5.0):
    """Sends bytes, reads until sluice closes (or timeout). Returns (bytes, how)."""
    s = harness.connect(port, timeout=timeout)
    try:
        s.sendall(data)
        return harness.recv_until_closed(s, timeout)
    finally:
        s.close()


def parse_responses(data, methods=None):
    """Parses a byte string holding consecutive responses; returns the list (strict framing)."""
    r = SockReader.__new__(SockReader)
    r.sock = None
    r.buf = bytearray(data)
    r.deadline = None

    def fill(n=0):
        raise PeerClosed("end of data")
    r._fill = fill
    out = []
    i = 0
    while r.buf:
        out.append(read_response(r, (methods or [])[i] if methods and i < len(methods) else "GET"))
        i += 1
    return out


# --------------------------------------------------------------------------
# sluice's request log

REQ_LOG_RE = re.compile(r'http (\S+): (\S+) "(\S+) (\S+)" (\d+) flags=(\S*) in (\d+)us')


def request_log(sl, start=0):
    """Parsed per-request debug lines: dicts with listener, peer, method, target, status, flags."""
    out = []
    for line in sl.find_lines(REQ_LOG_RE, start):
        m = REQ_LOG_RE.search(line)
        out.append({"listener": m.group(1), "peer": m.group(2), "method": m.group(3),
                    "target": m.group(4), "status": int(m.group(5)), "flags": m.group(6),
                    "us": int(m.group(7)), "line": line})
    return out


def log_tail(sl, n=40):
    return "\n".join(sl.stderr_text().splitlines()[-n:])


def stop_and_check(sl):
    rc = sl.stop()
    harness.check_clean_exit(sl, rc)


# --------------------------------------------------------------------------
# curl


def curl(args, timeout=60):
    """Runs curl -sS ARGS; returns CompletedProcess (stdout bytes, stderr text)."""
    p = subprocess.run(["curl", "-sS"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, preexec_fn=harness.die_with_parent)
    p.stderr = p.stderr.decode("utf-8", "replace")
    return p


# --------------------------------------------------------------------------
# nginx


class Nginx:
    """nginx (master_process off, daemon off) serving `root` on 127.0.0.1:<free port>."""

    def __init__(self, root):
        self.tmpdir = tempfile.mkdtemp(prefix="sluice-nginx-")
        harness.register_cleanup(lambda: shutil.rmtree(self.tmpdir, ignore_errors=True))
        self.proc = None
        last_err = ""
        for _ in range(5):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
            s.close()
            conf = os.path.join(self.tmpdir, "nginx.conf")
            t = self.tmpdir
            with open(conf, "w") as f:
                f.write("""
master_process off;
daemon off;
worker_processes 1;
pid %(t)s/nginx.pid;
error_log %(t)s/error.log info;
events { worker_connections 256; }
http {
    access_log %(t)s/access.log;
    client_body_temp_path %(t)s/body;
    proxy_temp_path %(t)s/proxy;
    fastcgi_temp_path %(t)s/fastcgi;
    uwsgi_temp_path %(t)s/uwsgi;
    scgi_temp_path %(t)s/scgi;
    default_type application/octet-stream;
    keepalive_timeout 60s;
    server {
        listen 127.0.0.1:%(port)d;
        root %(root)s;
    }
}
""" % {"t": t, "port": self.port, "root": root})
            self.proc = subprocess.Popen(["nginx", "-p", t, "-c", conf], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         preexec_fn=harness.die_with_parent)
            harness.register_cleanup(self.stop)
            up = harness.wait_until(lambda: self.proc.poll() is not None or self.port in harness.listening_ports(),
                                    10)
            if self.proc.poll() is None and up:
                self.address = "127.0.0.1:%d" % self.port
                return
            self.stop()
            last_err = self.error_log()
        raise RuntimeError("nginx did not start: %s" % last_err)

    def error_log(self):
        try:
            with open(os.path.join(self.tmpdir, "error.log")) as f:
                return f.read()
        except OSError:
            return ""

    def access_log(self):
        try:
            with open(os.path.join(self.tmpdir, "access.log")) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# --------------------------------------------------------------------------
# misc


def vmrss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def env_number(name, default):
    v = os.environ.get(name)
    if not v:
        return default
    return type(default)(float(v)) if isinstance(default, int) else float(v)

#!/usr/bin/env python3
"""Request smuggling and malformed-request handling of the HTTP listener.

Starts the real sluice binary (SLUICE_BIN, default build/release/sluice) with one HTTP
listener in front of a raw-socket backend written here. The backend records the exact
bytes of every request it receives and answers each with a fixed 200. Every row of the
table below is sent on a fresh client connection; the test then checks the status sluice
answered (first status line), whether it closed the connection, and what reached the
backend: nothing, or exactly the expected clean requests (one request line, one Host,
never both Transfer-Encoding and Content-Length, the body as framed).

After each row a barrier request goes through sluice and the backend drains every socket,
so anything the row caused upstream has been recorded before the row is judged.

Standard library only. Prints one line per row and ends with "N passed, N failed";
exits 0 only when every row passed.
"""

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SLUICE_BIN = os.environ.get("SLUICE_BIN", "/work/main/build/release/sluice")
TOTAL_BUDGET = 55.0  # seconds for the whole script, checked as rows run
READ_TIMEOUT = 5.0  # per response

TCHAR = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
REQUEST_LINE = re.compile(rb"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP/1\.1$")
STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3})(?: [^\r\n]*)?$")

# --------------------------------------------------------------------------
# the backend


class BackendRequest:
    """One request as the backend read it off the wire."""

    def __init__(self, conn_id, raw, head_lines, body, complete, malformed=""):
        self.conn_id = conn_id
        self.raw = raw
        self.head_lines = head_lines
        self.body = body
        self.complete = complete
        self.malformed = malformed

    def header_values(self, name):
        out = []
        for line in self.head_lines[1:]:
            n, _, v = line.partition(b":")
            if n.lower() == name.lower():
                out.append(v.strip(b" \t"))
        return out

    def target(self):
        m = REQUEST_LINE.match(self.head_lines[0]) if self.head_lines else None
        return m.group(2).decode("latin-1") if m else None


def parse_one_request(buf):
    """Parses one request from the front of buf.

    Returns (request_fields, consumed) with consumed 0 when more bytes are needed;
    request_fields is (head_lines, body, malformed)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > 65536:
            return (buf.split(b"\r\n"), b"", "head without an end"), len(buf)
        return None, 0
    head = buf[:end]
    lines = head.split(b"\r\n")
    problems = []
    if re.search(rb"\r(?!\n)|(?<!\r)\n", head):
        problems.append("bare CR or LF in the head")
    te = []
    cl = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if name.lower() == b"transfer-encoding":
            te.append(value.strip(b" \t"))
        elif name.lower() == b"content-length":
            cl.append(value.strip(b" \t"))
    pos = end + 4
    if te:
        if te != [b"chunked"]:
            return (lines, b"", "Transfer-Encoding is not exactly 'chunked': %r" % te), len(buf)
        body = b""
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None, 0
            size_field = buf[pos:eol].split(b";", 1)[0]
            if not re.match(rb"^[0-9a-fA-F]{1,15}$", size_field):
                return (lines, body, "bad chunk size %r" % size_field), len(buf)
            size = int(size_field, 16)
            pos = eol + 2
            if size == 0:
                # trailers, then the final CRLF
                while True:
                    eol = buf.find(b"\r\n", pos)
                    if eol < 0:
                        return None, 0
                    line = buf[pos:eol]
                    pos = eol + 2
                    if not line:
                        return (lines, body, "; ".join(problems)), pos
            if len(buf) < pos + size + 2:
                return None, 0
            body += buf[pos:pos + size]
            if buf[pos + size:pos + size + 2] != b"\r\n":
                return (lines, body, "chunk data not followed by CRLF"), len(buf)
            pos += size + 2
    if cl:
        if len(cl) != 1 or not re.match(rb"^[0-9]+$", cl[0]):
            return (lines, b"", "bad Content-Length %r" % cl), len(buf)
        n = int(cl[0])
        if len(buf) < pos + n:
            return None, 0
        return (lines, buf[pos:pos + n], "; ".join(problems)), pos + n
    return (lines, b"", "; ".join(problems)), pos


class Backend:
    """A single-threaded select() loop: accepts, reads, records and answers requests."""

    RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.requests = []  # BackendRequest, in the order they completed
        self.partial = []  # (conn_id, bytes) left unfinished when a connection closed
        self.conns = {}  # socket -> [conn_id, buffer]
        self.next_id = 0
        self.barrier_requests = []  # list of threading.Event, served by the loop
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _close(self, s):
        conn_id, buf = self.conns.pop(s)
        if buf:
            with self.lock:
                self.partial.append((conn_id, bytes(buf)))
        try:
            s.close()
        except OSError:
            pass

    def _on_readable(self, s):
        if s is self.listener:
            while True:
                try:
                    c, _ = self.listener.accept()
                except (BlockingIOError, InterruptedError):
                    return
                c.setblocking(False)
                self.conns[c] = [self.next_id, bytearray()]
                self.next_id += 1
        try:
            data = s.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(s)
            return
        state = self.conns[s]
        state[1] += data
        while state[1]:
            fields, consumed = parse_one_request(bytes(state[1]))
            if not consumed:
                break
            raw = bytes(state[1][:consumed])
            del state[1][:consumed]
            lines, body, malformed = fields
            req = BackendRequest(state[0], raw, lines, body, True, malformed)
            with self.lock:
                self.requests.append(req)
            if malformed:
                self._close(s)
                return
            try:
                s.sendall(self.RESPONSE)
            except OSError:
                self._close(s)
                return

    def _drain_once(self):
        """Processes whatever is readable right now; returns True if something was."""
        socks = [self.listener] + list(self.conns)
        readable, _, _ = select.select(socks, [], [], 0)
        for s in readable:
            if s is self.listener or s in self.conns:
                self._on_readable(s)
        return bool(readable)

    def _loop(self):
        while not self.stopping:
            socks = [self.listener] + list(self.conns)
            readable, _, _ = select.select(socks, [], [], 0.02)
            for s in readable:
                if s is self.listener or s in self.conns:
                    self._on_readable(s)
            with self.lock:
                waiting = self.barrier_requests
                self.barrier_requests = []
            if waiting:
                while self._drain_once():
                    pass
                for ev in waiting:
                    ev.set()

    def barrier(self, timeout=5.0):
        """Returns once the loop has found every socket empty after this call."""
        ev = threading.Event()
        with self.lock:
            self.barrier_requests.append(ev)
        return ev.wait(timeout)

    def snapshot(self):
        with self.lock:
            return len(self.requests), len(self.partial)

    def since(self, mark):
        with self.lock:
            return list(self.requests[mark[0]:]), list(self.partial[mark[1]:])

    def stop(self):
        self.stopping = True
        self.thread.join(2)
        for s in list(self.conns):
            self._close(s)
        self.listener.close()


# --------------------------------------------------------------------------
# sluice

LISTENING_RE = re.compile(r"listener\s+(\S+)\s+listening on\s+\[?([0-9a-fA-F.:]+?)\]?:(\d+)(?:\s|$)")

CONFIG = """workers: 1
log_level: info
listeners:
  - name: web
    address: 127.0.0.1:0
    protocol: http
    http: {max_request_head: 8KiB, max_uri_length: 2KiB, header_read_timeout: 1s}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            cluster: b
clusters:
  - name: b
    endpoints:
      - address: 127.0.0.1:%d
"""


class Sluice:
    def __init__(self, backend_port):
        self.tmpdir = tempfile.mkdtemp(prefix="sluice-smuggling-")
        path = os.path.join(self.tmpdir, "sluice.yaml")
        with open(path, "w") as f:
            f.write(CONFIG % backend_port)
        self.lines = []
        self.cv = threading.Condition()
        self.port = None
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        self.proc = subprocess.Popen([SLUICE_BIN, "run", "-c", path], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cv:
                self.lines.append(line)
                m = LISTENING_RE.search(line)
                if m and m.group(1) == "web":
                    self.port = int(m.group(3))
                self.cv.notify_all()
        with self.cv:
            self.cv.notify_all()

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        with self.cv:
            while not any("sluice ready" in l for l in self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return False
                self.cv.wait(min(left, 0.1))
        return self.port is not None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.reader.join(2)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


# --------------------------------------------------------------------------
# the client side


def read_responses(sock, count, timeout):
    """Reads up to `count` responses. Returns (statuses, closed, leftover)."""
    sock.settimeout(0.05)
    deadline = time.monotonic() + timeout
    buf = b""
    statuses = []
    closed = False

    def parse():
        nonlocal buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = buf[:end].split(b"\r\n")
        m = STATUS_LINE.match(lines[0])
        if not m:
            return "bad"
        length = 0
        chunked = False
        for line in lines[1:]:
            n, _, v = line.partition(b":")
            if n.strip().lower() == b"content-length":
                length = int(v.strip())
            if n.strip().lower() == b"transfer-encoding" and b"chunked" in v.lower():
                chunked = True
        pos = end + 4
        if chunked:
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                size = int(buf[pos:eol].split(b";")[0], 16)
                pos = eol + 2
                if size == 0:
                    fin = buf.find(b"\r\n\r\n", pos - 2)
                    if fin < 0:
                        return None
                    pos = fin + 4
                    break
                if len(buf) < pos + size + 2:
                    return None
                pos += size + 2
        elif len(buf) < pos + length:
            return None
        else:
            pos += length
        status = int(m.group(1))
        buf = buf[pos:]
        return status

    while len(statuses) < count and time.monotonic() < deadline:
        r = parse()
        if r == "bad":
            statuses.append(("unparseable", buf[:80]))
            break
        if r is not None:
            statuses.append(r)
            continue
        if closed:
            break
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            data = b""
        if not data:
            closed = True
            continue
        buf += data
    return statuses, closed, buf


def wait_closed(sock, timeout):
    """True once the peer closed (EOF or reset); extra bytes are dropped."""
    sock.settimeout(0.05)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return True
        if not data:
            return True
    return False


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


# --------------------------------------------------------------------------
# the table

H = b"Host: h\r\n"


def req(method, target, headers=b"", body=b"", version=b"HTTP/1.1"):
    return method + b" " + target + b" " + version + b"\r\n" + headers + b"\r\n" + body


def te(coding):
    return b"Transfer-Encoding: " + coding + b"\r\n"


def cl(n):
    return b"Content-Length: " + n + b"\r\n"


CHUNKED_HELLO = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"

# Each row: name, bytes, expected.
#   status: the status sluice must answer (an int, or a tuple of acceptable ones)
#   statuses: instead of status, the exact statuses of several responses in a row
#   close: sluice must close the connection after that answer
#   upstream: list of (method, target, body) the backend must see, in order; [] = nothing
#   alt_forward: RFC 9112 also allows forwarding: then the backend must see exactly this
#                one clean request and the status is 200
#   partial_ok: an unfinished request (head sent, body aborted) may reach the backend
ROWS = [
    # valid requests: they must pass untouched in meaning
    dict(name="valid GET", data=req(b"GET", b"/v/get", H), status=200,
         upstream=[(b"GET", "/v/get", b"")]),
    dict(name="valid Content-Length body", data=req(b"POST", b"/v/cl", H + cl(b"5"), b"hello"),
         status=200, upstream=[(b"POST", "/v/cl", b"hello")]),
    dict(name="valid chunked body", data=req(b"POST", b"/v/chunked", H + te(b"chunked"), CHUNKED_HELLO),
         status=200, upstream=[(b"POST", "/v/chunked", b"hello world")]),
    dict(name="valid chunked with extension and trailer",
         data=req(b"POST", b"/v/ext", H + te(b"chunked"),
                  b"5;name=value\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"),
         status=200, upstream=[(b"POST", "/v/ext", b"hello")]),
    dict(name="valid pipelined pair",
         data=req(b"GET", b"/v/p1", H) + req(b"POST", b"/v/p2", H + cl(b"3"), b"abc"),
         statuses=[200, 200], upstream=[(b"GET", "/v/p1", b""), (b"POST", "/v/p2", b"abc")]),
    dict(name="valid TE with tab OWS", data=req(b"POST", b"/v/tab", H + b"Transfer-Encoding:\tchunked\r\n",
                                                CHUNKED_HELLO),
         status=200, upstream=[(b"POST", "/v/tab", b"hello world")]),
    dict(name="valid HTTP/1.0 without Host", data=req(b"GET", b"/v/10", b"", version=b"HTTP/1.0"),
         status=200, upstream=[(b"GET", "/v/10", b"")]),
    # CL.TE / TE.CL
    dict(name="CL.TE", data=req(b"POST", b"/", H + cl(b"6") + te(b"chunked"), b"0\r\n\r\nG"),
         status=400, close=True, upstream=[]),
    dict(name="TE.CL", data=req(b"POST", b"/", H + te(b"chunked") + cl(b"3"),
                                b"8\r\nSMUGGLED\r\n0\r\n\r\n"),
         status=400, close=True, upstream=[]),
    # TE.TE obfuscations (RFC 9112 §6.3: chunked not final in a request → 400)
    dict(name="TE: xchunked", data=req(b"POST", b"/", H + te(b"xchunked"), b"0\r\n\r\n"),
         status=400, close=True, upstream=[]),
    dict(name="TE: chunked, identity", data=req(b"POST", b"/", H + te(b"chunked, identity"),
                                                b"0\r\n\r\n"),
         status=400, close=True, upstream=[]),
    dict(name="TE: chunked + TE: x", data=req(b"POST", b"/", H + te(b"chunked") + te(b"x"),
                                               b"0\r\n\r\n"),
         status=400, close=True, upstream=[]),
    dict(name="TE space before colon", data=req(b"POST", b"/", H + b"Transfer-Encoding : chunked\r\n",
                                                b"0\r\n\r\n"),
         status=400, close=True, upstream=[]),
    dict(name="TE with vertical tab", data=req(b"POST", b"/", H + b"Transfer-Encoding:\x0bchunked\r\n",
                                               b"0\r\n\r\n"),
         status=400, close=True, upstream=[]),
    dict(name="TE in HTTP/1.0", data=req(b"POST", b"/", H + te(b"chunked"), b"0\r\n\r\n",
                                         version=b"HTTP/1.0"),
         status=400, close=True, upstream=[]),
    # Content-Length
    dict(name="duplicate CL, different", data=req(b"POST", b"/", H + cl(b"3") + cl(b"4"), b"abcd"),
         status=400, close=True, upstream=[]),
    dict(name="duplicate CL, same", data=req(b"POST", b"/d", H + cl(b"3") + cl(b"3"), b"abc"),
         status=400, close=True, upstream=[], alt_forward=(b"POST", "/d", b"abc")),
    dict(name="CL list 3, 3", data=req(b"POST", b"/d", H + cl(b"3, 3"), b"abc"),
         status=400, close=True, upstream=[], alt_forward=(b"POST", "/d", b"abc")),
    dict(name="CL with plus sign", data=req(b"POST", b"/", H + cl(b"+3"), b"abc"),
         status=400, close=True, upstream=[]),
    dict(name="CL negative", data=req(b"POST", b"/", H + cl(b"-3"), b"abc"),
         status=400, close=True, upstream=[]),
    dict(name="CL with inner space", data=req(b"POST", b"/", H + cl(b"1 2"), b"abc"),
         status=400, close=True, upstream=[]),
    dict(name="CL hex", data=req(b"POST", b"/", H + cl(b"0x3"), b"abc"),
         status=400, close=True, upstream=[]),
    dict(name="CL overflow", data=req(b"POST", b"/", H + cl(b"99999999999999999999999"), b"abc"),
         status=400, close=True, upstream=[]),
    # field syntax
    dict(name="obs-fold", data=req(b"GET", b"/", H + b"X-A: a\r\n folded\r\n"),
         status=400, close=True, upstream=[]),
    dict(name="obs-fold first line", data=req(b"GET", b"/", b" X-A: a\r\n" + H),
         status=400, close=True, upstream=[]),
    dict(name="space before colon", data=req(b"GET", b"/", H + b"X-A : a\r\n"),
         status=400, close=True, upstream=[]),
    dict(name="bare LF line endings", data=b"GET /lf HTTP/1.1\nHost: h\n\n",
         status=400, close=True, upstream=[], alt_forward=(b"GET", "/lf", b"")),
    dict(name="bare CR in request line", data=b"GET / HTTP/1.1\rHost: h\r\n\r\n",
         status=400, close=True, upstream=[]),
    dict(name="bare CR in a value", data=req(b"GET", b"/cr", H + b"X-A: a\rb\r\n"),
         status=400, close=True, upstream=[], alt_forward=(b"GET", "/cr", b"")),
    dict(name="NUL in a value", data=req(b"GET", b"/", H + b"X-A: a\x00b\r\n"),
         status=400, close=True, upstream=[]),
    dict(name="CTL 0x01 in a value", data=req(b"GET", b"/", H + b"X-A: a\x01b\r\n"),
         status=400, close=True, upstream=[]),
    dict(name="DEL in a value", data=req(b"GET", b"/", H + b"X-A: a\x7fb\r\n"),
         status=400, close=True, upstream=[]),
    dict(name="ESC in Host", data=req(b"GET", b"/", b"Host: h\x1b\r\n"),
         status=400, close=True, upstream=[]),
    dict(name="invalid header name", data=req(b"GET", b"/", H + b"X(A): a\r\n"),
         status=400, close=True, upstream=[]),
    # chunked framing
    dict(name="chunk size not hex", data=req(b"POST", b"/", H + te(b"chunked"), b"zz\r\nabc\r\n0\r\n\r\n"),
         status=400, close=True, upstream=[], partial_ok=True),
    dict(name="chunk size negative", data=req(b"POST", b"/", H + te(b"chunked"), b"-3\r\nabc\r\n0\r\n\r\n"),
         status=400, close=True, upstream=[], partial_ok=True),
    dict(name="chunk size overflow", data=req(b"POST", b"/", H + te(b"chunked"),
                                              b"10000000000000003\r\nabc\r\n0\r\n\r\n"),
         status=400, close=True, upstream=[], partial_ok=True),
    dict(name="chunk size with 0x", data=req(b"POST", b"/", H + te(b"chunked"), b"0x3\r\nabc\r\n0\r\n\r\n"),
         status=400, close=True, upstream=[], partial_ok=True),
    dict(name="chunk data longer than size", data=req(b"POST", b"/", H + te(b"chunked"),
                                                      b"3\r\nabcdef\r\n0\r\n\r\n"),
         status=400, close=True, upstream=[], partial_ok=True),
    dict(name="chunk extension with CTL", data=req(b"POST", b"/", H + te(b"chunked"),
                                                   b"3;a\x01b\r\nabc\r\n0\r\n\r\n"),
         status=400, close=True, upstream=[], partial_ok=True),
    dict(name="chunk extension unterminated quote", data=req(b"POST", b"/", H + te(b"chunked"),
                                                             b"3;a=\"x\r\nabc\r\n0\r\n\r\n"),
         status=400, close=True, upstream=[], partial_ok=True),
    dict(name="chunk extension without name", data=req(b"POST", b"/", H + te(b"chunked"),
                                                       b"3;=x\r\nabc\r\n0\r\n\r\n"),
         status=400, close=True, upstream=[], partial_ok=True),
    # RFC 9112 §7.1.1 chunk extensions: every form is accepted (and not forwarded: the body
    # is re-chunked); whitespace around ';' or '=' (BWS) is refused, as llhttp's strict mode does
    dict(name="chunk extension forms",
         data=req(b"POST", b"/v/ext-forms", H + te(b"chunked"),
                  b"5;flag\r\nhello\r\n1;a=tok;b\r\n \r\n5;q=\"two words; a=b\";c=d\r\nworld\r\n"
                  b"2;e=\"say \\\"hi\\\" \\\\\"\r\n!!\r\n0;last=1\r\n\r\n"),
         status=200, upstream=[(b"POST", "/v/ext-forms", b"hello world!!")]),
    dict(name="chunk extension BWS before ';'", data=req(b"POST", b"/", H + te(b"chunked"),
                                                         b"3 ;a=b\r\nabc\r\n0\r\n\r\n"),
         status=400, close=True, upstream=[], partial_ok=True),
    dict(name="chunk extension BWS after ';'", data=req(b"POST", b"/", H + te(b"chunked"),
                                                        b"3; a=b\r\nabc\r\n0\r\n\r\n"),
         status=400, close=True, upstream=[], partial_ok=True),
    dict(name="chunk extension BWS around '='", data=req(b"POST", b"/", H + te(b"chunked"),
                                                         b"3;a = b\r\nabc\r\n0\r\n\r\n"),
         status=400, close=True, upstream=[], partial_ok=True),
    dict(name="chunk size with bare LF", data=req(b"POST", b"/", H + te(b"chunked"),
                                                  b"3\nabc\r\n0\r\n\r\n"),
         status=400, close=True, upstream=[], partial_ok=True),
    # request line
    dict(name="invalid method", data=req(b"G@T", b"/", H), status=400, close=True, upstream=[]),
    dict(name="target not a path", data=req(b"GET", b"foo", H), status=400, close=True, upstream=[]),
    dict(name="target with fragment", data=req(b"GET", b"/a#b", H), status=400, close=True, upstream=[]),
    dict(name="target with CTL", data=req(b"GET", b"/a\x01b", H), status=400, close=True, upstream=[]),
    # RFC 9112 §3: a recipient MAY split the request line on whitespace runs.
    dict(name="two spaces in request line", data=b"GET  /sp HTTP/1.1\r\nHost: h\r\n\r\n",
         status=400, close=True, upstream=[], alt_forward=(b"GET", "/sp", b"")),
    dict(name="HTTP/0.9", data=b"GET /\r\n\r\n", status=(400, 505), close=True, upstream=[]),
    dict(name="HTTP/2.0", data=req(b"GET", b"/", H, version=b"HTTP/2.0"), status=505, close=True,
         upstream=[]),
    # RFC 9110 §2.5: a higher minor version SHOULD be processed as the highest one we
    # implement (forwarded as 1.1); refusing it takes 505, not 400 (it is well-formed).
    dict(name="HTTP/1.2", data=req(b"GET", b"/v12", H, version=b"HTTP/1.2"), status=505,
         close=True, upstream=[], alt_forward=(b"GET", "/v12", b"")),
    dict(name="lowercase version", data=req(b"GET", b"/", H, version=b"http/1.1"), status=400,
         close=True, upstream=[]),
    # Host
    dict(name="missing Host on 1.1", data=req(b"GET", b"/", b"Accept: */*\r\n"), status=400,
         close=True, upstream=[]),
    dict(name="two Hosts", data=req(b"GET", b"/", b"Host: a\r\nHost: b\r\n"), status=400, close=True,
         upstream=[]),
    # limits
    dict(name="oversized header section", data=req(b"GET", b"/", H + b"X-Big: " + b"b" * 9000 + b"\r\n"),
         status=431, close=True, upstream=[]),
    dict(name="oversized URI", data=req(b"GET", b"/" + b"u" * 3000, H), status=414, close=True,
         upstream=[]),
    dict(name="smuggled request after a valid one",
         data=req(b"GET", b"/v/first", H) + b"G@T / HTTP/1.1\r\nHost: h\r\n\r\n",
         statuses=[200, 400], close=True, upstream=[(b"GET", "/v/first", b"")]),
]


def check_clean(r):
    """Problems with one request as the backend received it ([] when clean)."""
    problems = []
    if r.malformed:
        problems.append("backend could not parse it: " + r.malformed)
    if not r.head_lines or not REQUEST_LINE.match(r.head_lines[0]):
        problems.append("bad request line %r" % (r.head_lines[0] if r.head_lines else b""))
    for line in r.head_lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not TCHAR.match(name):
            problems.append("bad header line %r" % line[:80])
        if any(c < 0x20 and c != 0x09 or c == 0x7F for c in value):
            problems.append("control character in %r" % line[:80])
    if len(r.header_values(b"host")) != 1:
        problems.append("%d Host fields" % len(r.header_values(b"host")))
    tes = r.header_values(b"transfer-encoding")
    cls = r.header_values(b"content-length")
    if tes and cls:
        problems.append("both Transfer-Encoding and Content-Length")
    if len(cls) > 1:
        problems.append("%d Content-Length fields" % len(cls))
    if tes and tes != [b"chunked"]:
        problems.append("Transfer-Encoding %r" % tes)
    return problems


def run_row(row, sluice_port, backend):
    """Returns (ok, details)."""
    mark = backend.snapshot()
    expected_status = row.get("status", row.get("statuses"))
    count = len(row["statuses"]) if "statuses" in row else 1
    s = connect(sluice_port)
    try:
        s.sendall(row["data"])
        statuses, closed, _ = read_responses(s, count, READ_TIMEOUT)
        if row.get("close") and not closed:
            closed = wait_closed(s, 3.0)
    finally:
        s.close()
    if not barrier(sluice_port, backend):
        return False, "barrier request did not complete"
    got, partial = backend.since(mark)
    got = [r for r in got if r.target() != "/__barrier"]
    details = []
    observed_status = statuses[0] if len(statuses) == 1 else tuple(statuses)
    forwarded = [(r.head_lines[0].split(b" ")[0], r.target(), r.body) for r in got]

    def status_ok(st):
        if "statuses" in row:
            return list(statuses) == list(st)
        if isinstance(st, tuple):
            return observed_status in st
        return observed_status == st

    alt = row.get("alt_forward")
    ok = True
    if status_ok(expected_status) and forwarded == [tuple(u) for u in row["upstream"]]:
        if row.get("close") and not closed:
            ok = False
            details.append("connection left open after %s" % (observed_status,))
    elif alt and observed_status == 200 and forwarded == [alt]:
        details.append("forwarded (allowed by RFC 9112)")
    else:
        ok = False
        details.append("expected status %s, upstream %s" % (expected_status, row["upstream"]))
        if alt:
            details.append("  or status 200 with upstream [%s]" % (alt,))
        details.append("observed status %s, upstream %s" % (observed_status, forwarded))
    for r in got:
        problems = check_clean(r)
        if problems:
            ok = False
            details.append("unclean upstream request %r: %s" % (r.raw[:200], "; ".join(problems)))
    if partial and not row.get("partial_ok"):
        ok = False
        details.append("unfinished upstream bytes: %r" % [p[1][:200] for p in partial])
    elif partial:
        details.append("an unfinished request reached the backend and was cut off")
    return ok, "; ".join(details)


def barrier(sluice_port, backend):
    """One request through sluice, then every backend socket drained."""
    s = connect(sluice_port)
    try:
        s.sendall(req(b"GET", b"/__barrier", H + b"Connection: close\r\n"))
        statuses, _, _ = read_responses(s, 1, READ_TIMEOUT)
    finally:
        s.close()
    return statuses == [200] and backend.barrier()


def slowloris(sluice_port, backend):
    """Head bytes dribbled slower than header_read_timeout (1s): 408, then close."""
    mark = backend.snapshot()
    s = connect(sluice_port)
    start = time.monotonic()
    statuses = []
    closed = False
    try:
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: h\r\n")
        for i in range(40):  # at most ~8 s
            readable, _, _ = select.select([s], [], [], 0.2)  # paces the dribble
            if readable:
                statuses, closed, _ = read_responses(s, 1, READ_TIMEOUT)
                break
            try:
                s.sendall(b"X-%d: v\r\n" % i)
            except OSError:
                break
        if statuses and not closed:
            closed = wait_closed(s, 3.0)
    finally:
        s.close()
    elapsed = time.monotonic() - start
    barrier_ok = barrier(sluice_port, backend)
    got, partial = backend.since(mark)
    got = [r for r in got if r.target() != "/__barrier"]
    ok = statuses == [408] and closed and not got and not partial and barrier_ok and 0.9 <= elapsed < 4
    return ok, "observed %s after %.2f s, closed=%s, upstream %d" % (statuses, elapsed, closed, len(got))


def main():
    if not os.access(SLUICE_BIN, os.X_OK):
        print("FAILED SLUICE_BIN=%s is not an executable file" % SLUICE_BIN, flush=True)
        return 2
    t0 = time.monotonic()
    backend = Backend()
    sluice = Sluice(backend.port)
    passed = failed = 0
    try:
        if not sluice.wait_ready(20):
            print("FAILED sluice did not start:", flush=True)
            for line in sluice.lines[-20:]:
                print("       | " + line, flush=True)
            return 1
        for row in ROWS:
            if time.monotonic() - t0 > TOTAL_BUDGET:
                print("FAILED out of time before row %r" % row["name"], flush=True)
                failed += 1
                break
            try:
                ok, detail = run_row(row, sluice.port, backend)
            except Exception as e:  # one broken row must not hide the others
                ok, detail = False, "exception: %r" % (e,)
            if ok:
                passed += 1
            else:
                failed += 1
            print("%-6s %-40s %s" % ("ok" if ok else "FAILED", row["name"], detail), flush=True)
            if not ok:
                print("       | sent %r" % row["data"][:300], flush=True)
        ok, detail = slowloris(sluice.port, backend)
        print("%-6s %-40s %s" % ("ok" if ok else "FAILED", "slowloris", detail), flush=True)
        passed += ok
        failed += not ok
        alive = sluice.proc.poll() is None
        print("%-6s %-40s %s" % ("ok" if alive else "FAILED", "sluice still running", ""), flush=True)
        passed += alive
        failed += not alive
    finally:
        sluice.stop()
        backend.stop()
    bad = [l for l in sluice.lines if "ERROR: AddressSanitizer" in l or "runtime error:" in l]
    if bad:
        failed += 1
        print("FAILED sanitizer report in sluice's stderr:", flush=True)
        for line in bad[:20]:
            print("       | " + line, flush=True)
    print("info   total %.1f s" % (time.monotonic() - t0), flush=True)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

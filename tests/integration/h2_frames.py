"""A small raw-frame HTTP/2 client for sluice's integration tests.

Built on hyperframe (frame parsing) and hpack (header compression), both from Debian's
python3-h2 (run the tests with /usr/bin/python3). Unlike a real HTTP/2 library it never
checks or fixes what the test sends: any frame, valid or not, goes out as written, and
header blocks may carry fields an HTTP/2 stack would refuse (uppercase names, hop-by-hop
fields, invalid HPACK indexes). Everything the server sends is recorded frame by frame, so
a test asserts the exact frame and error code sluice answered with.

    c = H2Client(port)                       # cleartext, prior knowledge
    c = H2Client(port, tls=True)             # TLS, ALPN h2 (c.alpn says what was chosen)
    c.handshake()                            # preface + SETTINGS, waits for the server's
    sid = c.request("GET", "/x")             # HEADERS (hpack), returns the stream id
    r = c.response(sid, timeout=5)           # :status, headers, body, trailers, reset code
    c.send(frame(DATA, 0, 0, b"x"))          # any frame, raw
    g = c.wait_goaway(5)                     # the GOAWAY frame or None

Reads are bounded by deadlines; nothing sleeps. The second half of the file holds the pieces
both HTTP/2 test scripts share: a config with an admin listener and an `http2` block, the
admin /metrics reader, and the access log reader.
"""

import json
import os
import re
import select
import socket
import ssl
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

try:
    import hpack
    from hpack.hpack import encode_integer
    from hyperframe.frame import Frame
except ImportError:  # reported by require_modules() in each script
    hpack = None
    Frame = None

# --------------------------------------------------------------------------
# RFC 9113 numbers

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)

# flags
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# error codes (RFC 9113 §7)
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
SETTINGS_TIMEOUT = 0x4
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
CONNECT_ERROR = 0xA
ENHANCE_YOUR_CALM = 0xB
INADEQUATE_SECURITY = 0xC
HTTP_1_1_REQUIRED = 0xD

ERROR_NAMES = {NO_ERROR: "NO_ERROR", PROTOCOL_ERROR: "PROTOCOL_ERROR", INTERNAL_ERROR: "INTERNAL_ERROR",
               FLOW_CONTROL_ERROR: "FLOW_CONTROL_ERROR", SETTINGS_TIMEOUT: "SETTINGS_TIMEOUT",
               STREAM_CLOSED: "STREAM_CLOSED", FRAME_SIZE_ERROR: "FRAME_SIZE_ERROR",
               REFUSED_STREAM: "REFUSED_STREAM", CANCEL: "CANCEL", COMPRESSION_ERROR: "COMPRESSION_ERROR",
               CONNECT_ERROR: "CONNECT_ERROR", ENHANCE_YOUR_CALM: "ENHANCE_YOUR_CALM",
               INADEQUATE_SECURITY: "INADEQUATE_SECURITY", HTTP_1_1_REQUIRED: "HTTP_1_1_REQUIRED"}

# settings identifiers (RFC 9113 §6.5.2)
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6
NO_RFC7540_PRIORITIES = 0x9

FRAME_NAMES = ["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING", "GOAWAY",
               "WINDOW_UPDATE", "CONTINUATION"]


def error_name(code):
    return ERROR_NAMES.get(code, "0x%x" % code) if code is not None else "none"


def require_modules():
    """Raises harness.Skip when hyperframe/hpack are missing (not /usr/bin/python3)."""
    if hpack is None or Frame is None:
        raise harness.Skip("hyperframe and hpack are not importable by %s (Debian python3-h2)" % sys.executable)


# --------------------------------------------------------------------------
# building frames: bytes exactly as given, valid or not


def frame(ftype, flags, stream_id, payload=b""):
    """One frame's bytes (RFC 9113 §4.1); the length is the payload's, the R bit is clear."""
    n = len(payload)
    return struct.pack(">BHBBI", (n >> 16) & 0xFF, n & 0xFFFF, ftype, flags, stream_id & 0x7FFFFFFF) + \
        bytes(payload)


def settings_frame(settings=(), ack=False):
    """SETTINGS with (identifier, value) pairs; values are sent as given (even invalid ones)."""
    return frame(SETTINGS, ACK if ack else 0, 0, b"".join(struct.pack(">HI", k, v & 0xFFFFFFFF)
                                                         for k, v in settings))


def ping_frame(payload=b"\0" * 8, ack=False):
    return frame(PING, ACK if ack else 0, 0, payload)


def window_update_frame(stream_id, increment):
    return frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment & 0xFFFFFFFF))


def rst_stream_frame(stream_id, code=CANCEL):
    return frame(RST_STREAM, 0, stream_id, struct.pack(">I", code))


def priority_frame(stream_id, depends_on=0, weight=16, exclusive=False):
    dep = (depends_on & 0x7FFFFFFF) | (0x80000000 if exclusive else 0)
    return frame(PRIORITY, 0, stream_id, struct.pack(">IB", dep, weight - 1))


def data_frame(stream_id, data=b"", end_stream=False):
    return frame(DATA, END_STREAM if end_stream else 0, stream_id, data)


def goaway_frame(last_stream_id=0, code=NO_ERROR, debug=b""):
    return frame(GOAWAY, 0, 0, struct.pack(">II", last_stream_id & 0x7FFFFFFF, code) + debug)


def headers_frames(stream_id, block, end_stream=True, max_frame=16384):
    """HEADERS (+ CONTINUATION when the block is larger than max_frame) carrying `block`."""
    first, rest = block[:max_frame], block[max_frame:]
    out = [frame(HEADERS, (END_STREAM if end_stream else 0) | (0 if rest else END_HEADERS), stream_id, first)]
    while rest:
        piece, rest = rest[:max_frame], rest[max_frame:]
        out.append(frame(CONTINUATION, 0 if rest else END_HEADERS, stream_id, piece))
    return b"".join(out)


# --------------------------------------------------------------------------
# HPACK pieces a real encoder would not produce


def hpack_int(value, prefix_bits, high_bits=0):
    b = encode_integer(value, prefix_bits)
    b[0] |= high_bits
    return bytes(b)


def hpack_literal(name, value, index=False):
    """A literal field with a literal name, no Huffman coding (RFC 7541 §6.2.1 / §6.2.2): the
    name goes out byte for byte (uppercase, spaces, anything). index=True adds it to the
    dynamic table."""
    name = name.encode("latin-1") if isinstance(name, str) else name
    value = value.encode("latin-1") if isinstance(value, str) else value
    return (b"\x40" if index else b"\x00") + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


def hpack_indexed(index):
    """An indexed field (RFC 7541 §6.1): 1..61 static, 62.. dynamic; 0 or past the tables is an
    HPACK decoding error."""
    return hpack_int(index, 7, 0x80)


def hpack_static_request(method="GET", path="/", authority="test.local", scheme="http"):
    """The pseudo-header fields of a request as literals without indexing (no dynamic table use)."""
    return (hpack_literal(":method", method) + hpack_literal(":scheme", scheme) +
            hpack_literal(":authority", authority) + hpack_literal(":path", path))


# --------------------------------------------------------------------------
# the client


class Response:
    """What came back on one stream."""

    def __init__(self, stream_id):
        self.stream_id = stream_id
        self.headers = []        # the final response's fields (including :status)
        self.interim = []        # 1xx header lists
        self.trailers = []
        self.body = bytearray()
        self.ended = False       # END_STREAM seen
        self.reset = None        # RST_STREAM error code from sluice
        self.data_frames = 0

    @property
    def status(self):
        for k, v in self.headers:
            if k == ":status":
                return int(v)
        return None

    def header(self, name):
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def json(self):
        return json.loads(bytes(self.body))

    def describe(self):
        return "stream %d: status %r, %d body bytes%s%s, headers %r" % (
            self.stream_id, self.status, len(self.body), ", ended" if self.ended else "",
            ", reset %s" % error_name(self.reset) if self.reset is not None else "", self.headers[:12])


def describe_frame(f):
    name = FRAME_NAMES[f.type] if f.type < len(FRAME_NAMES) else "type 0x%x" % f.type
    extra = ""
    if f.type == GOAWAY:
        extra = " last_stream %d %s %r" % (f.last_stream_id, error_name(f.error_code), f.additional_data[:80])
    elif f.type == RST_STREAM:
        extra = " %s" % error_name(f.error_code)
    elif f.type == SETTINGS:
        extra = " %r" % dict(f.settings)
    elif f.type == DATA:
        extra = " %d bytes" % len(f.data)
    elif f.type == WINDOW_UPDATE:
        extra = " +%d" % f.window_increment
    return "%s stream %d flags %s%s" % (name, f.stream_id, sorted(f.flags), extra)


class H2Client:
    """One HTTP/2 connection to sluice, frame by frame.

    auto_ack_settings: answer the server's SETTINGS with an ACK as they are read.
    auto_window: give back connection and stream window for every DATA frame read, so
    responses of any size flow. Both may be turned off by tests that misbehave on purpose."""

    def __init__(self, port, host="127.0.0.1", tls=False, ctx=None, server_hostname="localhost",
                 alpn=("h2",), timeout=10.0, auto_ack_settings=True, auto_window=True, auto_ack_ping=True):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        harness.register_cleanup(self.close)
        self.local_port = self.sock.getsockname()[1]
        self.alpn = None
        if tls:
            if ctx is None:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                ctx.set_alpn_protocols(list(alpn))
            self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
            self.alpn = self.sock.selected_alpn_protocol()
        self.timeout = timeout
        self.auto_ack_settings = auto_ack_settings
        self.auto_window = auto_window
        self.auto_ack_ping = auto_ack_ping
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder(max_header_list_size=16 << 20)
        self.buf = bytearray()
        self.frames = []          # every frame read, in order
        self.closed = None        # 'eof' or 'reset' once the server closed
        self.server_settings = {}
        self.settings_acks = 0    # ACKs of our SETTINGS
        self.streams = {}         # id -> Response
        self.next_id = 1
        self.bytes_sent = 0
        self.send_stalled = False  # a send could not complete within its deadline
        self._block = None        # (stream id, fragments) of a header block being read
        self.send_window = 65535  # the connection's send window (RFC 9113 §6.9.2)
        self.stream_windows = {}  # stream id -> its send window
        self.garbage = b""        # bytes that were not HTTP/2 (an HTTP/1.1 answer, say)

    # -- sending
    def send(self, data, timeout=None):
        """Sends bytes; returns False when the socket would not take them within the timeout
        (the server stopped reading) or the connection is gone."""
        if isinstance(data, Frame):
            data = data.serialize()
        self.sock.settimeout(timeout if timeout is not None else self.timeout)
        try:
            self.sock.sendall(data)
        except socket.timeout:
            self.send_stalled = True
            return False
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            if self.closed is None:
                self.closed = "reset"
            return False
        self.bytes_sent += len(data)
        return True

    def try_send(self, data):
        """Sends what the socket takes now without blocking; returns the bytes taken."""
        self.sock.setblocking(False)
        try:
            n = self.sock.send(data)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            n = 0
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            if self.closed is None:
                self.closed = "reset"
            n = 0
        finally:
            try:
                self.sock.setblocking(True)
            except OSError:
                pass
        self.bytes_sent += n
        return n

    def preface(self, settings=()):
        """The client connection preface: the magic and a SETTINGS frame (RFC 9113 §3.4)."""
        return self.send(PREFACE + settings_frame(settings))

    def handshake(self, settings=(), timeout=5.0):
        """Preface; then waits for the server's SETTINGS and its ACK of ours. Returns the
        server's settings (a dict), or raises CheckFailed with what arrived instead."""
        self.preface(settings)
        ok = self.wait(lambda f: False, timeout, until=lambda: self.server_settings_seen and self.settings_acks)
        if not ok:
            raise harness.CheckFailed_with("HTTP/2 handshake: server SETTINGS and the ACK of ours",
                                           self.transcript())
        return dict(self.server_settings)

    @property
    def server_settings_seen(self):
        return any(f.type == SETTINGS and "ACK" not in f.flags for f in self.frames)

    def new_stream_id(self):
        sid = self.next_id
        self.next_id += 2
        return sid

    def request_block(self, method="GET", path="/", authority="test.local", scheme="http", headers=()):
        hs = [(":method", method), (":scheme", scheme), (":authority", authority), (":path", path)]
        hs += list(headers)
        return self.encoder.encode(hs)

    def request(self, method="GET", path="/", authority="test.local", scheme="http", headers=(), body=None,
                end_stream=None, stream_id=None, block=None):
        """Sends a request's HEADERS (and DATA when body is given). `block` replaces the encoded
        header block. Returns the stream id."""
        sid = stream_id if stream_id is not None else self.new_stream_id()
        if stream_id is not None and stream_id >= self.next_id:
            self.next_id = stream_id + 2
        if block is None:
            block = self.request_block(method, path, authority, scheme, headers)
        if end_stream is None:
            end_stream = body is None
        self.streams.setdefault(sid, Response(sid))
        self.stream_windows[sid] = self.server_settings.get(INITIAL_WINDOW_SIZE, 65535)
        self.send(headers_frames(sid, block, end_stream=end_stream))
        if body is not None:
            self.send_body(sid, body)
        return sid

    def send_body(self, stream_id, data, end_stream=True, timeout=None):
        """DATA frames within the server's windows and frame size, reading WINDOW_UPDATEs as
        they come. Returns the bytes sent (less than len(data) when the windows stayed shut
        until the timeout, or the stream or connection ended)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        sent = 0
        view = memoryview(data)
        while True:
            r = self.streams.get(stream_id)
            if self.closed or (r is not None and r.reset is not None):
                return sent
            left = len(data) - sent
            avail = min(self.send_window, self.stream_windows.get(stream_id, 65535),
                        self.server_settings.get(MAX_FRAME_SIZE, 16384), left)
            if left == 0 or avail > 0:
                last = avail == left
                if not self.send(data_frame(stream_id, bytes(view[sent:sent + avail]), end_stream and last)):
                    return sent
                self.send_window -= avail
                self.stream_windows[stream_id] = self.stream_windows.get(stream_id, 65535) - avail
                sent += avail
                if last:
                    return sent
                continue
            if time.monotonic() >= deadline:
                return sent
            self.read_some(deadline)

    # -- reading
    def _parse(self):
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[0:3], "big")
            if len(self.buf) < 9 + length:
                return
            header = memoryview(bytes(self.buf[:9]))
            body = memoryview(bytes(self.buf[9:9 + length]))
            del self.buf[:9 + length]
            f, _ = Frame.parse_frame_header(header)
            f.parse_body(body)
            self.frames.append(f)
            self._on_frame(f)

    def _on_frame(self, f):
        if f.type == SETTINGS:
            if "ACK" in f.flags:
                self.settings_acks += 1
            else:
                if INITIAL_WINDOW_SIZE in f.settings:
                    delta = f.settings[INITIAL_WINDOW_SIZE] - self.server_settings.get(INITIAL_WINDOW_SIZE, 65535)
                    for sid in self.stream_windows:
                        self.stream_windows[sid] += delta
                self.server_settings.update(f.settings)
                if self.auto_ack_settings:
                    self.send(settings_frame(ack=True))
        elif f.type in (HEADERS, CONTINUATION):
            if f.type == HEADERS:
                self._block = (f.stream_id, [bytes(f.data)], "END_STREAM" in f.flags)
            elif self._block:
                self._block[1].append(bytes(f.data))
            if "END_HEADERS" in f.flags and self._block:
                sid, parts, end = self._block
                self._block = None
                fields = [(k.decode("latin-1") if isinstance(k, bytes) else k,
                           v.decode("latin-1") if isinstance(v, bytes) else v)
                          for k, v in self.decoder.decode(b"".join(parts), raw=True)]
                r = self.streams.setdefault(sid, Response(sid))
                status = next((int(v) for k, v in fields if k == ":status"), None)
                if status is not None and 100 <= status < 200:
                    r.interim.append(fields)
                elif not r.headers:
                    r.headers = fields
                else:
                    r.trailers = fields
                if end:
                    r.ended = True
        elif f.type == DATA:
            r = self.streams.setdefault(f.stream_id, Response(f.stream_id))
            r.body += f.data
            r.data_frames += 1
            if "END_STREAM" in f.flags:
                r.ended = True
            n = f.flow_controlled_length
            if self.auto_window and n:
                out = window_update_frame(0, n)
                if not r.ended:
                    out += window_update_frame(f.stream_id, n)
                self.send(out)
        elif f.type == WINDOW_UPDATE:
            if f.stream_id == 0:
                self.send_window += f.window_increment
            elif f.stream_id in self.stream_windows:
                self.stream_windows[f.stream_id] += f.window_increment
        elif f.type == PING:
            if "ACK" not in f.flags and self.auto_ack_ping:
                self.send(ping_frame(bytes(f.opaque_data), ack=True))
        elif f.type == RST_STREAM:
            self.streams.setdefault(f.stream_id, Response(f.stream_id)).reset = f.error_code

    def read_some(self, deadline):
        """Reads once (until the deadline); returns False on timeout or close."""
        if self.closed:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        # TLS may hold decrypted bytes that select() does not see
        if not (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
            r, _, _ = select.select([self.sock], [], [], remaining)
            if not r:
                return False
        self.sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            data = self.sock.recv(262144)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            self.closed = "reset"
            return False
        except ssl.SSLError:
            self.closed = "reset"
            return False
        if not data:
            self.closed = "eof"
            return False
        if not self.frames and not self.buf and not self.garbage and data[:5] == b"HTTP/":
            # not HTTP/2 at all: keep the text for the test to look at
            self.garbage += data
            return True
        if self.garbage:
            self.garbage += data
            return True
        self.buf += data
        self._parse()
        return True

    def wait(self, pred, timeout, until=None):
        """Reads until a newly read frame satisfies pred (returns it), until() holds (returns
        True), the server closes or the timeout passes (returns None)."""
        deadline = time.monotonic() + timeout
        seen = len(self.frames)
        while True:
            for f in self.frames[seen:]:
                if pred(f):
                    return f
            seen = len(self.frames)
            if until is not None and until():
                return True
            if self.closed or time.monotonic() >= deadline:
                return None
            self.read_some(deadline)

    def find(self, pred):
        """The first frame already read that satisfies pred, or None."""
        for f in self.frames:
            if pred(f):
                return f
        return None

    def wait_goaway(self, timeout):
        """The server's GOAWAY (already read or arriving within the timeout), or None."""
        g = self.find(lambda f: f.type == GOAWAY)
        return g or self.wait(lambda f: f.type == GOAWAY, timeout)

    def wait_rst(self, stream_id, timeout):
        """The RST_STREAM the server sent for stream_id, or None."""
        g = self.find(lambda f: f.type == RST_STREAM and f.stream_id == stream_id)
        return g or self.wait(lambda f: f.type == RST_STREAM and f.stream_id == stream_id, timeout)

    def wait_settings_ack(self, count, timeout):
        return self.wait(lambda f: False, timeout, until=lambda: self.settings_acks >= count) is True

    def wait_ping_ack(self, payload, timeout):
        pred = lambda f: f.type == PING and "ACK" in f.flags and bytes(f.opaque_data) == payload  # noqa: E731
        return self.find(pred) or self.wait(pred, timeout)

    def response(self, stream_id, timeout):
        """Waits until the stream ended, was reset, or the connection went away; returns its
        Response (check .ended / .reset / .status)."""
        r = self.streams.setdefault(stream_id, Response(stream_id))
        self.wait(lambda f: False, timeout, until=lambda: r.ended or r.reset is not None or self.goaway_code() is not None)
        return r

    def goaway_code(self):
        g = self.find(lambda f: f.type == GOAWAY)
        return g.error_code if g else None

    def drain(self):
        """Reads whatever is already waiting, without blocking."""
        while not self.closed and self.read_some(time.monotonic() + 0.001):
            pass

    def wait_closed(self, timeout):
        """Reads (recording frames) until the server closes; returns 'eof', 'reset' or None."""
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self.read_some(deadline)
        return self.closed

    def transcript(self, limit=40):
        lines = [describe_frame(f) for f in self.frames[-limit:]]
        if self.garbage:
            lines.append("non-HTTP/2 bytes: %r" % self.garbage[:300])
        lines.append("connection: %s" % (self.closed or "open"))
        return "\n".join(lines)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# sluice with an admin listener, its metrics and its access log

ADMIN_RE = re.compile(r"admin listening on 127\.0\.0\.1:(\d+)")
METRIC_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")
LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class SluiceH2:
    """A started sluice (harness.Sluice) with its admin port."""

    def __init__(self, listeners, clusters, workers=1, log_level="debug"):
        import http_util as hu
        cfg = {"workers": workers, "log_level": log_level, "drain_timeout": "5s",
               "admin": {"address": "127.0.0.1:0"}, "listeners": listeners, "clusters": clusters}
        self.sl = harness.Sluice(harness.to_yaml(hu._quote(cfg)) + "\n")
        line = self.sl.wait_log(ADMIN_RE, 5)
        if not line:
            raise harness.CheckFailed_with("no 'admin listening on 127.0.0.1:PORT' line", self.sl.stderr_text())
        self.admin_port = int(ADMIN_RE.search(line).group(1))

    def port(self, name="web"):
        return self.sl.port(name)

    def metrics(self):
        """{(name, frozenset(labels)): value} from GET /metrics."""
        import http_util as hu
        r = hu.request_once(self.admin_port, "GET", "/metrics", host="admin", timeout=5)
        out = {}
        for line in r.body.decode("utf-8", "replace").splitlines():
            if not line or line.startswith("#"):
                continue
            m = METRIC_RE.match(line)
            if not m:
                continue
            labels = frozenset(LABEL_RE.findall(m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
        return out

    def metric(self, name, **labels):
        """The value of one sample (0 when absent)."""
        return self.metrics().get((name, frozenset(labels.items())), 0.0)

    def wait_metric(self, name, pred, timeout=5.0, **labels):
        """Scrapes until pred(value) holds; returns the last value."""
        last = [0.0]

        def cond():
            last[0] = self.metric(name, **labels)
            return pred(last[0])
        harness.wait_until(cond, timeout, 0.02)
        return last[0]

    def metrics_excerpt(self, prefix="sluice_http2"):
        return "\n".join("%s %r %g" % (n, sorted(ls), v) for (n, ls), v in sorted(self.metrics().items(),
                                                                               key=lambda x: x[0][0])
                         if n.startswith(prefix))


def h2_listener(name="web", cluster="app", http2=None, access_log=None, route=None, **kw):
    """An http listener on 127.0.0.1:0 with one route to `cluster` (route: extra route keys)
    and an http2 block."""
    lst = {"name": name, "address": "127.0.0.1:0", "protocol": "http"}
    lst.update(kw)
    block = {"prior_knowledge": True}
    block.update(http2 or {})
    lst["http2"] = block
    if access_log:
        lst["access_log"] = {"path": access_log}
    r = {"match": {"prefix": "/"}, "cluster": cluster}
    r.update(route or {})
    lst["virtual_hosts"] = [{"name": "all", "domains": ["*"], "routes": [r]}]
    return lst


def access_lines(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []

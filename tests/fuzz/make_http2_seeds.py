#!/usr/bin/python3
"""Writes the seed corpus of the http2_server fuzz target (tests/fuzz/corpus/http2_server).

Each seed is what http2_server_fuzz.cc reads: a selector byte (bits 0-1: the codec's limits,
bits 2-4: how the bytes are cut into reads, bits 5-7: zero to leave out the client
connection preface), a salt byte (which owner behaviour each stream gets), then the client's
frames, after the preface the target puts in front. Frames are built with hyperframe and
header blocks with hpack (python3-hyperframe, python3-hpack).

  /usr/bin/python3 tests/fuzz/make_http2_seeds.py [corpus_dir]

Seeds whose name starts with "regress-" once made the target trap (fixed since); the ones
found by the fuzzer itself, not written here, are kept as they are.
"""

import os
import struct
import sys

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

# The codec's limits (selector bits 0-1), as options_for() in the fuzz target sets them.
SMALL, MEDIUM, ONE_STREAM, DEFAULTS = 0, 1, 2, 3
# How the bytes are cut into reads (selector bits 2-4), as pieces_for() does it.
WHOLE, SPLIT, FIXED, FRAME_HEADERS, FROM_INPUT, BYTE_BY_BYTE = 0, 2, 3, 4, 5, 7

CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def selector(limits, reads, preface=True):
    return bytes([(1 << 5 if preface else 0) | (reads << 2) | limits])


class Client:
    """Serialises frames, with one HPACK encoder for the whole connection."""

    def __init__(self):
        self.encoder = hpack.Encoder()
        self.out = b""

    def frame(self, f):
        self.out += f.serialize()
        return self

    def settings(self, **values):
        f = SettingsFrame(0)
        for k, v in values.items():
            f.settings[getattr(SettingsFrame, k.upper())] = v
        return self.frame(f)

    def block(self, fields):
        return self.encoder.encode(fields)

    def headers(self, stream, fields, end_stream=True, **kw):
        f = HeadersFrame(stream)
        f.data = self.block(fields)
        f.flags.add("END_HEADERS")
        if end_stream:
            f.flags.add("END_STREAM")
        for k, v in kw.items():
            setattr(f, k, v)
        if "pad_length" in kw:
            f.flags.add("PADDED")
        if "depends_on" in kw:
            f.flags.add("PRIORITY")
        return self.frame(f)

    def data(self, stream, payload, end_stream=False, pad_length=None):
        f = DataFrame(stream)
        f.data = payload
        if end_stream:
            f.flags.add("END_STREAM")
        if pad_length is not None:
            f.flags.add("PADDED")
            f.pad_length = pad_length
        return self.frame(f)


def get(path="/", authority="example.com", extra=()):
    return [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", authority),
        (":path", path),
    ] + list(extra)


def post(path, length):
    return [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "example.com"),
        (":path", path),
        ("content-type", "application/grpc"),
        ("content-length", str(length)),
        ("te", "trailers"),
    ]


def raw_frame(type_, flags, stream, payload):
    """A frame hyperframe would refuse to build (bad lengths, unknown types)."""
    return struct.pack(">I", len(payload))[1:] + bytes([type_, flags]) + struct.pack(
        ">I", stream
    ) + payload


def seeds():
    s = {}

    c = Client().settings()
    c.headers(1, get("/index.html", extra=[("user-agent", "seed"), ("accept", "*/*")]))
    s["get"] = selector(DEFAULTS, WHOLE) + b"\x00" + c.out

    c = Client().settings()
    c.headers(1, post("/svc/Method", 11), end_stream=False)
    c.data(1, b"hello").data(1, b" world")
    c.headers(1, [("x-checksum", "abc"), ("x-more", "1")])
    s["post_trailers"] = selector(MEDIUM, FROM_INPUT) + b"\x04" + c.out

    c = Client().settings()
    c.headers(1, post("/upload", 5), end_stream=False)
    c.data(1, b"12345", end_stream=True)
    s["post_answer_at_end"] = selector(DEFAULTS, SPLIT) + b"\x06" + c.out

    c = Client().settings()
    for i in range(12):
        c.headers(1 + 2 * i, get("/item/%d" % i, extra=[("x-n", str(i))]))
    s["many_streams"] = selector(SMALL, FRAME_HEADERS) + b"\x01" + c.out

    c = Client().settings()
    for i in range(6):
        c.headers(1 + 2 * i, post("/slow/%d" % i, 4), end_stream=False)
    for i in range(6):
        c.data(1 + 2 * i, b"abcd", end_stream=True)
    s["concurrent_bodies"] = selector(MEDIUM, FIXED) + b"\x05" + c.out

    c = Client().settings()
    block = c.block(get("/continued", extra=[("x-long", "v" * 60), ("x-other", "w" * 40)]))
    h = HeadersFrame(1, block[:10])
    h.flags.add("END_STREAM")
    c.frame(h)
    c.frame(ContinuationFrame(1, block[10:40]))
    last = ContinuationFrame(1, block[40:])
    last.flags.add("END_HEADERS")
    c.frame(last)
    s["continuation"] = selector(DEFAULTS, FRAME_HEADERS) + b"\x00" + c.out

    # A dynamic table size update (RFC 7541 §6.3) to zero, then back to the 4096 allowed.
    c = Client().settings()
    c.encoder.header_table_size = 0
    c.headers(1, get("/t0"))
    c.encoder.header_table_size = 4096
    c.headers(3, get("/t1", extra=[("x-indexed", "yes")]))
    c.headers(5, get("/t1", extra=[("x-indexed", "yes")]))
    s["hpack_table_update"] = selector(DEFAULTS, WHOLE) + b"\x00" + c.out

    # One larger than SETTINGS_HEADER_TABLE_SIZE (4096): a COMPRESSION_ERROR.
    c = Client().settings()
    c.encoder.header_table_size = 1 << 20
    c.headers(1, get("/big-table"))
    s["hpack_table_update_too_big"] = selector(DEFAULTS, WHOLE) + b"\x00" + c.out

    c = Client().settings()
    c.frame(PriorityFrame(3, depends_on=1, stream_weight=200))
    c.frame(PriorityFrame(5, depends_on=5, stream_weight=16))
    c.headers(1, get("/p"), depends_on=0, stream_weight=255, exclusive=True)
    s["priority"] = selector(DEFAULTS, WHOLE) + b"\x00" + c.out

    c = Client().settings()
    c.frame(PingFrame(0, b"12345678"))
    ack = PingFrame(0, b"87654321")
    ack.flags.add("ACK")
    c.frame(ack)
    c.headers(1, get("/after-ping"))
    s["ping"] = selector(DEFAULTS, WHOLE) + b"\x00" + c.out

    c = Client().settings(
        header_table_size=256,
        enable_push=0,
        max_concurrent_streams=10,
        initial_window_size=100,
        max_frame_size=20000,
        max_header_list_size=4096,
    )
    ack = SettingsFrame(0)
    ack.flags.add("ACK")
    c.frame(ack)
    c.out += raw_frame(0x4, 0, 0, struct.pack(">HI", 0x99, 7))  # an unknown setting
    c.headers(1, get("/settings"))
    s["settings"] = selector(DEFAULTS, WHOLE) + b"\x04" + c.out

    # Small client windows hold back the owner's large response until WINDOW_UPDATE.
    c = Client().settings(initial_window_size=16)
    c.headers(1, post("/w", 2), end_stream=False)
    c.data(1, b"ok", end_stream=True)
    c.frame(WindowUpdateFrame(0, 1000))
    c.frame(WindowUpdateFrame(1, 5000))
    c.frame(WindowUpdateFrame(1, 30000))
    s["window_update"] = selector(DEFAULTS, FROM_INPUT) + b"\x04" + c.out

    c = Client().settings()
    c.frame(WindowUpdateFrame(0, 0x7FFFFFFF))  # past 2^31-1: FLOW_CONTROL_ERROR
    s["window_update_overflow"] = selector(DEFAULTS, WHOLE) + b"\x00" + c.out

    c = Client().settings()
    c.headers(1, get("/r"), end_stream=False)
    c.frame(RstStreamFrame(1, 8))
    c.headers(3, post("/r2", 10), end_stream=False)
    c.data(3, b"abc")
    c.frame(RstStreamFrame(3, 0))
    s["rst_stream"] = selector(SMALL, SPLIT) + b"\x0b" + c.out

    c = Client().settings()
    c.headers(1, get("/g"), end_stream=False)
    c.frame(GoAwayFrame(0, last_stream_id=0, error_code=0, additional_data=b"bye"))
    c.headers(3, get("/after-goaway"))
    s["goaway"] = selector(DEFAULTS, WHOLE) + b"\x05" + c.out

    c = Client().settings()
    c.headers(1, post("/pad", 6), end_stream=False, pad_length=20)
    c.data(1, b"abc", pad_length=7)
    c.data(1, b"def", end_stream=True, pad_length=0)
    s["padded"] = selector(MEDIUM, WHOLE) + b"\x00" + c.out

    # A padding length longer than the frame: PROTOCOL_ERROR.
    c = Client().settings()
    c.out += raw_frame(0x1, 0x4 | 0x8, 1, b"\xff" + c.block(get("/")))
    s["padded_too_long"] = selector(DEFAULTS, WHOLE) + b"\x00" + c.out

    # An HTTP/1.1 request where the preface should be.
    s["bad_preface"] = (
        selector(DEFAULTS, WHOLE, preface=False)
        + b"\x00"
        + b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
    )
    # The preface, then no SETTINGS.
    c = Client()
    c.headers(1, get("/"))
    s["no_settings"] = selector(DEFAULTS, BYTE_BY_BYTE, preface=False) + b"\x00" + (
        CLIENT_PREFACE + c.out
    )

    c = Client().settings()
    c.headers(
        1,
        [(":method", "CONNECT"), (":authority", "upstream.example:443")],
        end_stream=False,
    )
    c.data(1, b"\x16\x03\x01tunnel bytes")
    s["connect"] = selector(DEFAULTS, WHOLE) + b"\x00" + c.out

    c = Client().settings()
    c.headers(
        1,
        [(":method", "OPTIONS"), (":scheme", "https"), (":authority", "a"), (":path", "*")],
    )
    s["options_star"] = selector(DEFAULTS, WHOLE) + b"\x01" + c.out

    # A scheme other than http(s), whose :path need not be origin-form.
    c = Client().settings()
    c.headers(
        1,
        [(":method", "GET"), (":scheme", "foo"), (":authority", "a"), (":path", "relative")],
    )
    s["regress-other-scheme-path-not-origin-form"] = selector(DEFAULTS, WHOLE) + b"\x00" + c.out

    c = Client().settings()
    c.headers(1, get("/h", extra=[("host", "example.com")]))
    c.headers(3, get("/h", extra=[("host", "other.example")]))
    c.headers(5, [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("host", "h")])
    s["host_and_authority"] = selector(DEFAULTS, WHOLE) + b"\x00" + c.out

    c = Client().settings()
    c.headers(1, get("/c", extra=[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")]))
    s["cookies"] = selector(DEFAULTS, WHOLE) + b"\x00" + c.out

    # Over max_header_list_size (1024 with SMALL): a 431; then trailers over it: a reset.
    c = Client().settings()
    c.headers(1, get("/big", extra=[("x-big", "b" * 1100)]))
    c.headers(3, post("/t", 1), end_stream=False)
    c.data(3, b"x")
    c.headers(3, [("x-trailer", "t" * 1100)])
    s["regress-trailers-too-large-owner-not-told"] = selector(SMALL, WHOLE) + b"\x04" + c.out

    c = Client().settings()
    c.headers(1, post("/cl", 3), end_stream=False)
    c.data(1, b"toolong", end_stream=True)
    c.headers(3, post("/cl2", 10), end_stream=False)
    c.data(3, b"short", end_stream=True)
    s["content_length_mismatch"] = selector(DEFAULTS, WHOLE) + b"\x00" + c.out

    # More than the stream window (1024 with SMALL) before any WINDOW_UPDATE.
    c = Client().settings()
    ack = SettingsFrame(0)
    ack.flags.add("ACK")
    c.frame(ack)
    c.headers(1, post("/flood", 1200), end_stream=False)
    c.data(1, b"z" * 600).data(1, b"z" * 600, end_stream=True)
    s["window_exceeded"] = selector(SMALL, WHOLE) + b"\x00" + c.out

    # Bad frames: DATA on stream 0, an even stream, a short PING, an unknown type.
    c = Client().settings()
    c.out += raw_frame(0xFA, 0, 0, b"ext")
    c.out += raw_frame(0x6, 0, 0, b"short")
    s["bad_frames"] = selector(DEFAULTS, WHOLE) + b"\x00" + c.out
    c = Client().settings()
    c.headers(2, get("/even"))
    s["even_stream"] = selector(DEFAULTS, WHOLE) + b"\x00" + c.out
    c = Client().settings()
    c.out += raw_frame(0x0, 0x1, 0, b"data on zero")
    s["data_stream_zero"] = selector(DEFAULTS, WHOLE) + b"\x00" + c.out

    # Uppercase and connection-specific fields, a pseudo-header after a regular one.
    c = Client().settings()
    c.headers(1, get("/u", extra=[("X-Upper", "1")]))
    c.headers(3, get("/te", extra=[("transfer-encoding", "chunked")]))
    c.headers(5, [(":method", "GET"), ("x-a", "1"), (":path", "/"), (":scheme", "https")])
    s["bad_fields"] = selector(DEFAULTS, WHOLE) + b"\x00" + c.out

    return s


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    corpus = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "http2_server")
    os.makedirs(corpus, exist_ok=True)
    made = seeds()
    for name in os.listdir(corpus):
        if not name.startswith("regress-") and name not in made:
            os.remove(os.path.join(corpus, name))
    for name, data in sorted(made.items()):
        assert len(data) <= 4096, name
        with open(os.path.join(corpus, name), "wb") as f:
            f.write(data)
    print("%d seeds in %s" % (len(made), corpus))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""HTTP/2 abuse and flood reproductions against the real binary (h2_frames.py, raw frames):
Rapid Reset (CVE-2023-44487), MadeYouReset (server resets provoked by the client), a
CONTINUATION flood (CVE-2024-27316 style), an HPACK bomb, SETTINGS / PING / PRIORITY /
empty-DATA floods with and without reading, a client whose window never opens; each must end
in GOAWAY ENHANCE_YOUR_CALM (or a close) after a bounded amount of work, move
sluice_http2_abuse_closed_total and log the abuse score, with sluice's memory bounded. And
the other side: h2load with 400 streams in flight, and a client that cancels some of its
streams, are never taken for abuse."""

import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info, soft_check  # noqa: E402
from http_backend import BackendProcess, HttpBackend  # noqa: E402
import http_util as hu  # noqa: E402
import h2_frames as h2  # noqa: E402
from h2_frames import H2Client, error_name  # noqa: E402

T = 5.0
FLOOD_SECONDS = 20.0   # no flood loop runs longer
ABUSE_LOG_RE = re.compile(r"abuse score")


# --------------------------------------------------------------------------
# helpers


def start(http2=None, backend=None, workers=1, log_level="debug", route=None):
    h2.require_modules()
    b = backend or HttpBackend("b")
    s = h2.SluiceH2([h2.h2_listener(http2=http2, route=route)], [hu.cluster("app", [b])], workers=workers,
                    log_level=log_level)
    return s, b


def client(s, **kw):
    c = H2Client(s.port(), timeout=T, **kw)
    c.handshake()
    return c


def flood(c, make, max_count, batch=50, read=True, seconds=FLOOD_SECONDS, settle=None):
    """Sends make(i) for i = 0.. in batches until sluice sends GOAWAY or closes, max_count
    items went out, or `seconds` passed. read: drain what sluice sent between batches (a
    client that reads), else never read. settle(first, n): a condition to wait for (up to T)
    after each batch, e.g. the batch's streams all answered. Returns the items sent."""
    deadline = time.monotonic() + seconds
    i = 0
    while i < max_count and time.monotonic() < deadline:
        n = min(batch, max_count - i)
        data = b"".join(make(i + k) for k in range(n))
        if not c.send(data, timeout=max(0.1, min(2.0, deadline - time.monotonic()))):
            break
        first, i = i, i + n
        if settle is not None:
            c.wait(lambda f: False, T, until=lambda: settle(first, n) or c.goaway_code() is not None)
        elif read:
            c.drain()
        if c.closed or c.goaway_code() is not None:
            break
    return i


def abuse_line(s, start):
    """The 'abuse score' info line logged since line `start`, parsed: (line, level, counts)."""
    line = s.sl.wait_log(ABUSE_LOG_RE, T, start=start)
    m = harness.LOG_RE.match(line or "")
    counts = {}
    if line:
        for k, v in [("score", r"abuse score (\d+)"), ("caused", r"(\d+) caused"), ("received", r"resets (\d+) received"),
                     ("invalid", r"(\d+) invalid frames"), ("ping", r"(\d+) PING"), ("settings", r"(\d+) SETTINGS"),
                     ("priority", r"(\d+) PRIORITY"), ("empty_data", r"(\d+) empty DATA"),
                     ("streams", r"(\d+) streams"), ("responses", r"(\d+) responses")]:
            mm = re.search(v, line)
            counts[k] = int(mm.group(1)) if mm else None
    return line, (m.group(2) if m else None), counts


def expect_calm(s, c, what, sent, bound, abuse_before=0.0, log_start=0, streams=False):
    """GOAWAY ENHANCE_YOUR_CALM, the connection closes, fewer than `bound` items were taken
    (streams: counted by the GOAWAY's last stream id, i.e. what sluice processed; else what
    the client got out), sluice_http2_abuse_closed_total moved by one and an info line says
    "abuse score" with the counts. Returns the parsed counts."""
    g = c.wait_goaway(T)
    how = c.wait_closed(T)
    info("%s: %d sent, then %s; connection %s" % (what, sent, h2.describe_frame(g) if g else "no GOAWAY", how))
    soft_check(g is not None and g.error_code == h2.ENHANCE_YOUR_CALM and how in ("eof", "reset"),
               "%s: GOAWAY ENHANCE_YOUR_CALM and the connection closes" % what, c.transcript(12))
    taken = (g.last_stream_id + 1) // 2 if (streams and g is not None) else sent
    soft_check(taken < bound, "%s: cut off after %d %s (< %d)" % (what, taken, "streams" if streams else "frames",
                                                                   bound), "")
    n = s.wait_metric("sluice_http2_abuse_closed_total", lambda v: v >= abuse_before + 1, T, listener="web")
    soft_check(n == abuse_before + 1, "%s: sluice_http2_abuse_closed_total %g → %g" % (what, abuse_before, n),
               s.metrics_excerpt())
    line, level, counts = abuse_line(s, log_start)
    soft_check(level == "info", "%s: an info line says 'abuse score' with the counts" % what,
               hu.log_tail(s.sl, 20))
    info("log: %s" % line)
    return counts


def rss_mib(s):
    return hu.vmrss_kib(s.sl.pid) / 1024.0


def served(s, what):
    c = client(s)
    sid = c.request("GET", "/alive")
    r = c.response(sid, T)
    c.close()
    check(r.status == 200, "%s: a new connection is served (GET → 200)" % what, r.describe())


# --------------------------------------------------------------------------
# cases


def case_rapid_reset():
    """HEADERS then RST_STREAM at once, thousands of times (Rapid Reset): GOAWAY
    ENHANCE_YOUR_CALM once 200 streams (twice max_concurrent_streams) were opened and at least
    half of them reset by the client (or the abuse score passed max_abuse_score, 200), long before nghttp2's own reset
    limit (1000 resets, then GOAWAY INTERNAL_ERROR)."""
    s, b = start()
    c = client(s)
    block = c.request_block("GET", "/delay/2000")  # indexed after the first: a few bytes each

    def pair(i):
        sid = 1 + 2 * i
        return h2.headers_frames(sid, block) + h2.rst_stream_frame(sid, h2.CANCEL)
    log_start = s.sl.line_count()
    sent = flood(c, pair, 5000, batch=20)
    counts = expect_calm(s, c, "Rapid Reset", sent, 1000, log_start=log_start, streams=True)
    # The score passes 200 after the read that carried the 201st reset: that read's other
    # frames are counted too, and all of it happens before nghttp2's own limit (1000).
    check(counts.get("received") is not None and 200 <= counts["received"] < 1000,
          "Rapid Reset: closed after 200 to 999 resets (%r)" % counts.get("received"), "")
    info("the upstream received %d requests" % b.stats()["requests"])
    served(s, "after Rapid Reset")
    hu.stop_and_check(s.sl)


def case_abuse_score_arithmetic():
    """The score exactly: max_abuse_score 50; each round is 10 streams opened and reset at once
    (+10) and one GET waited for (-1 once answered). After round k the score peaks at
    9(k-1) + 10 before the GET completes: 46 after round 5 (kept), 55 in round 6 (closed).
    So exactly five GETs are answered, then GOAWAY ENHANCE_YOUR_CALM."""
    s, b = start(http2={"max_abuse_score": 50})
    c = client(s)
    answered = 0
    for k in range(1, 11):
        # one write per round: sluice reads and scores it at once
        data = b""
        for j in range(10):
            sid = c.new_stream_id()
            data += (h2.headers_frames(sid, h2.hpack_static_request(path="/delay/1000/r%d" % k)) +
                     h2.rst_stream_frame(sid, h2.CANCEL))
        sid = c.new_stream_id()
        data += h2.headers_frames(sid, h2.hpack_static_request(path="/round/%d" % k))
        c.send(data)
        r = c.response(sid, T)
        if r.status != 200:
            break
        answered += 1
    g = c.wait_goaway(T)
    info("answered %d rounds; %s" % (answered, h2.describe_frame(g) if g else "no GOAWAY"))
    check(answered == 5 and g is not None and g.error_code == h2.ENHANCE_YOUR_CALM,
          "max_abuse_score 50: five rounds answered (score 46), GOAWAY ENHANCE_YOUR_CALM in the sixth (55)",
          c.transcript(6) + "\n" + "\n".join(s.sl.find_lines(ABUSE_LOG_RE)))
    line, level, counts = abuse_line(s, 0)
    # (were the sixth round split between two reads, the score would be checked at 51..55)
    check(counts.get("score") == 55 and counts.get("received") == 60 and counts.get("responses") == 5,
          "the log line says score 55 over 50, 60 resets received, 5 responses", line or "no line")
    hu.stop_and_check(s.sl)


def case_made_you_reset():
    """MadeYouReset: requests that sluice itself must reset because of the client's error, the
    client waiting for each batch's RST_STREAMs (so it never has more than 20 streams open):
    malformed requests, a WINDOW_UPDATE overflowing the window of a stream already sent
    upstream, a body shorter than its content-length. Each reset costs one point: GOAWAY
    ENHANCE_YOUR_CALM after more than max_abuse_score (200) of them, or, for streams whose
    request was taken, once half of at least 200 streams ended so."""
    s, b = start()
    vectors = [
        ("MadeYouReset by malformed requests (RST_STREAM PROTOCOL_ERROR)",
         lambda sid: h2.headers_frames(sid, h2.hpack_static_request(path="/m") + h2.hpack_literal("X-Bad", "1"))),
        ("MadeYouReset by stream WINDOW_UPDATE overflow (RST_STREAM FLOW_CONTROL_ERROR)",
         lambda sid: h2.headers_frames(sid, h2.hpack_static_request(path="/delay/2000")) +
         h2.window_update_frame(sid, 0x7FFFFFFF)),
        ("MadeYouReset by a body shorter than its content-length (RST_STREAM PROTOCOL_ERROR)",
         lambda sid: h2.headers_frames(sid, h2.hpack_static_request("POST", "/delay/2000") +
                                       h2.hpack_literal("content-length", "10"), end_stream=False) +
         h2.data_frame(sid, b"12345", end_stream=True)),
    ]
    for k, (what, make) in enumerate(vectors):
        before = b.stats()["requests"]
        c = client(s)
        log_start = s.sl.line_count()

        def settle(first, n, c=c):
            return all(c.streams.get(1 + 2 * j) is not None and c.streams[1 + 2 * j].reset is not None
                       for j in range(first, first + n))
        sent = flood(c, lambda i: make(1 + 2 * i), 3000, batch=20, settle=settle)
        counts = expect_calm(s, c, what, sent, 1000, abuse_before=float(k), log_start=log_start, streams=True)
        resets = sum(1 for f in c.frames if f.type == h2.RST_STREAM)
        info("%s: %d RST_STREAM from sluice, %d requests reached the upstream" %
             (what, resets, b.stats()["requests"] - before))
        # malformed requests never become streams: only the score (200) ends those
        low = 200 if k == 0 else 100
        soft_check(low <= resets <= 420, "%s: %d to 420 resets before the close (%d; the log counts %r caused "
                   "and %r invalid frames)" % (what, low, resets, counts.get("caused"), counts.get("invalid")), "")
        c.close()
    served(s, "after MadeYouReset")
    hu.stop_and_check(s.sl)


def case_continuation_flood():
    """HEADERS without END_HEADERS followed by endless CONTINUATION frames (full ones carrying
    fields, then empty ones): the connection ends with GOAWAY ENHANCE_YOUR_CALM after a bounded
    number of bytes, and sluice's memory stays bounded."""
    s, b = start()
    rss0 = rss_mib(s)
    for what, payload in [("full CONTINUATION frames", b"".join(h2.hpack_literal("x-c%d" % i, "v" * 200)
                                                                for i in range(75))),
                          ("empty CONTINUATION frames", b"")]:
        c = client(s)
        c.send(h2.frame(h2.HEADERS, h2.END_STREAM, 1, h2.hpack_static_request(path="/cont")))
        one = h2.frame(h2.CONTINUATION, 0, 1, payload)
        per_batch = max(1, 65536 // len(one))
        t0 = time.monotonic()
        sent = flood(c, lambda i: one, 2000000, batch=per_batch, read=True)
        sent_bytes = sent * len(one)
        how = c.wait_closed(T)
        g = c.goaway_code()
        info("%s: %d frames (%d bytes) sent in %.1f s, then GOAWAY %s, connection %s" %
             (what, sent, sent_bytes, time.monotonic() - t0, error_name(g), how))
        soft_check(how in ("eof", "reset"), "%s: sluice ends the connection" % what, c.transcript(8))
        soft_check(sent_bytes < 32 << 20, "%s: ended after %d bytes (< 32 MiB, kernel buffers included)" %
                   (what, sent_bytes), "")
        # RFC 9113 §10.5: a flood is the client's doing; INTERNAL_ERROR would say sluice failed
        soft_check(g == h2.ENHANCE_YOUR_CALM, "%s: GOAWAY ENHANCE_YOUR_CALM (got %s)" % (what, error_name(g)),
                   c.transcript(8))
        c.close()
    grew = rss_mib(s) - rss0
    check(grew < 64, "sluice's RSS grew by %.1f MiB (< 64)" % grew, "")
    check(not b.requests_for(lambda x: x["target"] == "/cont"), "nothing reached the upstream", "")
    served(s, "after the CONTINUATION floods")
    hu.stop_and_check(s.sl)


def case_hpack_bomb():
    """One 4000-byte field put in the dynamic table, then referenced 60,000 times (one byte
    each, 240 MB decoded) in one header block: 431 or RST_STREAM, memory bounded, and the
    connection (its HPACK state intact) serves the next request."""
    s, b = start()
    c = client(s)
    rss0 = rss_mib(s)
    block = (h2.hpack_static_request(path="/bomb") + h2.hpack_literal("x-bomb", "B" * 4000, index=True) +
             h2.hpack_indexed(62) * 60000)
    sid = c.request(block=block)
    r = c.response(sid, 20)
    info("HPACK bomb: %s" % r.describe())
    check((r.status == 431 and r.ended) or (r.reset is not None and c.goaway_code() is None) or
          c.goaway_code() == h2.ENHANCE_YOUR_CALM,
          "HPACK bomb (240 MB decoded): 431, RST_STREAM or GOAWAY ENHANCE_YOUR_CALM", c.transcript(8))
    grew = rss_mib(s) - rss0
    check(grew < 64, "sluice's RSS grew by %.1f MiB (< 64) for 240 MB of decoded fields" % grew, "")
    check(not b.requests_for(lambda x: x["target"] == "/bomb"), "the bomb did not reach the upstream", "")
    if c.goaway_code() is None and not c.closed:
        sid = c.request("GET", "/after-bomb")
        r2 = c.response(sid, T)
        check(r2.status == 200, "the same connection serves the next request (HPACK state kept)", r2.describe())
    c.close()

    # the same within max_header_list_size (16 references: 64 KiB + overhead is over; 10 is under)
    c = client(s)
    block = (h2.hpack_static_request(path="/ten") + h2.hpack_literal("x-ten", "T" * 4000, index=True) +
             h2.hpack_indexed(62) * 10)
    sid = c.request(block=block)
    r = c.response(sid, T)
    check(r.status == 200, "11 copies of a 4000-byte field (45 KiB, under 64 KiB): 200", r.describe())
    hu.stop_and_check(s.sl)


def case_control_frame_floods_reading():
    """A client that reads: PING, SETTINGS and PRIORITY floods and empty DATA frames each add to
    the abuse score: GOAWAY ENHANCE_YOUR_CALM after about max_abuse_score (200) of them."""
    s, b = start()
    rows = [
        ("PING flood", lambda c: (lambda i: h2.ping_frame(i.to_bytes(8, "big")))),
        ("SETTINGS flood", lambda c: (lambda i: h2.settings_frame())),
        ("empty DATA flood", lambda c: (c.request("POST", "/empty-data", end_stream=False),
                                        lambda i: h2.data_frame(1, b""))[1]),
        ("PRIORITY flood", lambda c: (lambda i: h2.priority_frame(1 + 2 * (i % 1000), 0, 16))),
    ]
    for k, (what, mk) in enumerate(rows):
        c = client(s)
        log_start = s.sl.line_count()
        sent = flood(c, mk(c), 5000, batch=20, read=True)
        expect_calm(s, c, what, sent, 1000, abuse_before=float(k), log_start=log_start)
        c.close()
    served(s, "after the floods")
    hu.stop_and_check(s.sl)


def case_floods_without_reading():
    """A client that never reads its ACKs: SETTINGS and PING floods end in GOAWAY
    ENHANCE_YOUR_CALM or a close (sluice's score, or nghttp2's limit of 1000 queued ACKs
    with a high max_abuse_score), with sluice's memory bounded."""
    for score in (200, 100000):
        s, b = start(http2={"max_abuse_score": score})
        rss0 = rss_mib(s)
        for what, make in [("SETTINGS flood, not reading", lambda i: h2.settings_frame()),
                           ("PING flood, not reading", lambda i: h2.ping_frame(i.to_bytes(8, "big")))]:
            what = "%s (max_abuse_score %d)" % (what, score)
            c = client(s)
            log_start = s.sl.line_count()
            sent = flood(c, make, 400000, batch=500, read=False)
            stalled = c.send_stalled
            g = c.wait_goaway(10)
            how = c.wait_closed(T)
            why = s.sl.wait_log(re.compile(r"abuse score|HTTP/2 connection error"), 1, start=log_start)
            info("%s: %d frames sent%s; then %s, connection %s; sluice: %s" %
                 (what, sent, " (sluice stopped reading)" if stalled else "",
                  h2.describe_frame(g) if g else "no GOAWAY", how, why))
            check(g is not None and g.error_code == h2.ENHANCE_YOUR_CALM and how in ("eof", "reset"),
                  "%s: GOAWAY ENHANCE_YOUR_CALM and the connection closes" % what, c.transcript(6))
            c.close()
        grew = rss_mib(s) - rss0
        check(grew < 64, "max_abuse_score %d: sluice's RSS grew by %.1f MiB (< 64)" % (score, grew), "")
        served(s, "after the floods (max_abuse_score %d)" % score)
        hu.stop_and_check(s.sl)


def case_zero_window_client():
    """A client that announces SETTINGS_INITIAL_WINDOW_SIZE 0 and never opens its window: the
    response head goes out (HEADERS are not flow controlled), its body cannot; once
    http2.send_stall_timeout (2 s here) passes without progress, sluice resets the stream
    instead of holding it (and its upstream) for ever; the connection serves on."""
    s, b = start(http2={"send_stall_timeout": "2s"})
    c = H2Client(s.port(), timeout=T, auto_window=False)
    c.handshake(settings=[(h2.INITIAL_WINDOW_SIZE, 0)])
    sid = c.request("GET", "/bytes/100000")
    t0 = time.monotonic()
    r = c.streams[sid]
    c.wait(lambda f: False, T, until=lambda: r.status is not None or r.reset is not None)
    check(r.status == 200 and len(r.body) == 0,
          "the response head arrives, no DATA (the stream window is 0)", r.describe())
    c.wait(lambda f: False, 30, until=lambda: r.reset is not None or c.goaway_code() is not None)
    took = time.monotonic() - t0
    info("zero window: %s after %.1f s" % (error_name(r.reset) if r.reset is not None else "no reset", took))
    check(r.reset is not None and c.goaway_code() is None and 1.5 <= took <= 15,
          "the stalled stream is reset about send_stall_timeout (2 s) later, not the connection",
          "%.1f s\n%s" % (took, c.transcript(6)))
    c.send(h2.settings_frame([(h2.INITIAL_WINDOW_SIZE, 65535)]))
    sid = c.request("GET", "/after-stall")
    r2 = c.response(sid, T)
    check(r2.status == 200 and r2.ended, "the connection serves the next request", r2.describe())
    hu.stop_and_check(s.sl)


def case_h2load_is_not_abuse():
    """h2load -n 2000 -c 4 -m 100 against a prior-knowledge listener: 2000 2xx, no abuse close."""
    if not shutil.which("h2load"):
        raise harness.Skip("h2load is not installed (nghttp2-client)")
    b = BackendProcess("b")
    s, _ = start(backend=b, workers=2, log_level="info")
    p = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "100", "-t", "1",
                        "http://127.0.0.1:%d/load" % s.port()],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                       preexec_fn=harness.die_with_parent)
    out = p.stdout.decode("utf-8", "replace")
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    info("h2load: %s | %s" % (req.group(0) if req else "?", codes.group(0) if codes else "?"))
    check(p.returncode == 0 and req and req.group(4) == "2000" and codes and codes.group(1) == "2000",
          "h2load -n 2000 -c 4 -m 100: 2000 succeeded, 2000 2xx", out[-3000:])
    check(s.metric("sluice_http2_abuse_closed_total", listener="web") == 0 and not s.sl.find_lines(ABUSE_LOG_RE),
          "no connection closed for abuse, no 'abuse score' line", s.metrics_excerpt())
    n = s.wait_metric("sluice_http2_streams_total", lambda v: v >= 2000, T, listener="web")
    check(n == 2000 and s.metric("sluice_http2_connections_total", listener="web") == 4,
          "sluice_http2_streams_total 2000 and sluice_http2_connections_total 4", s.metrics_excerpt())
    hu.stop_and_check(s.sl)


def case_priority_paid_for_by_streams():
    """PRIORITY frames a browser sends (a tree before its first request, streams moved as a page
    lays out) are free up to 16 plus 4 per stream the client opened; past that each scores 1.
    max_abuse_score 50: 16 before any request, 10 answered GETs, 40 more, then a GET still
    answered (its stream earns 4 more); 55 more in one write, 4 free and 51 scored: GOAWAY
    ENHANCE_YOUR_CALM, and the log line counts 111 PRIORITY of which 60 were paid for."""
    s, b = start(http2={"max_abuse_score": 50})
    c = client(s)
    c.send(b"".join(h2.priority_frame(3 + 2 * i, 0, 16) for i in range(16)))
    for i in range(10):
        sid = c.request("GET", "/p/%d" % i)
        r = c.response(sid, T)
        check(r.status == 200, "GET /p/%d after 16 PRIORITY frames: 200" % i, r.describe() + "\n" + c.transcript(6))
    c.send(b"".join(h2.priority_frame(1 + 2 * (i % 10), 0, 8 + i % 8) for i in range(40)))
    sid = c.request("GET", "/after-priority")
    r = c.response(sid, T)
    check(r.status == 200 and c.goaway_code() is None,
          "40 PRIORITY frames more (4 for each of the 10 streams), then a GET: 200, no GOAWAY",
          r.describe() + "\n" + c.transcript(6))
    log_start = s.sl.line_count()
    c.send(b"".join(h2.priority_frame(1, 0, 16) for _ in range(55)))
    counts = expect_calm(s, c, "55 PRIORITY frames, 51 past the allowance", 55, 56, log_start=log_start)
    line, _, _ = abuse_line(s, log_start)
    m = re.search(r"(\d+) PRIORITY \((\d+) paid for by streams\)", line or "")
    check(counts.get("score") == 51 and m is not None and (int(m.group(1)), int(m.group(2))) == (111, 60),
          "the log line says score 51, 111 PRIORITY of which 60 paid for (16 + 4 x 11 streams)", line or "no line")
    c.close()
    served(s, "after the PRIORITY frames")
    hu.stop_and_check(s.sl)


def case_cancelling_client_is_not_abuse():
    """A client that cancels one stream in five (a browser leaving a page) across 1000 requests:
    each completed response lowers the score, so it is never closed."""
    s, b = start()
    c = client(s)
    completed = cancelled = 0
    for i in range(1000):
        sid = c.request("GET", "/c/%d" % i)
        if i % 5 == 4:
            c.send(h2.rst_stream_frame(sid, h2.CANCEL))
            cancelled += 1
            continue
        r = c.response(sid, T)
        if r.status != 200:
            break
        completed += 1
    check(completed == 800 and c.goaway_code() is None and not c.closed,
          "1000 requests with 200 cancelled: 800 answered, no GOAWAY", "%d completed\n%s" %
          (completed, c.transcript(6)))
    check(s.metric("sluice_http2_abuse_closed_total", listener="web") == 0, "no abuse close counted",
          s.metrics_excerpt())
    c.close()
    hu.stop_and_check(s.sl)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_rapid_reset, case_abuse_score_arithmetic, case_made_you_reset, case_continuation_flood, case_hpack_bomb,
                       case_control_frame_floods_reading, case_floods_without_reading, case_zero_window_client,
                       case_h2load_is_not_abuse, case_cancelling_client_is_not_abuse,
                       case_priority_paid_for_by_streams])

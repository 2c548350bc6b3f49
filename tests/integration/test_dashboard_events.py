#!/usr/bin/env python3
"""The dashboard's Server-Sent Events stream (GET /dashboard/events).

- In headless Chromium (cdp.py) the page takes its updates from the stream: it says so
  (window.sluiceDashboard.transport and the header's badge are exactly "events") and draws;
  /metrics counts one subscriber. With two more streams open over raw sockets, each build of
  the data is sent to all three: frames sent grow by exactly three per build, nothing is
  dropped; a frame is the JSON of /dashboard/data (the same keys); a reload keeps the streams
  and their next frames carry the new configuration generation (a changed admin.events
  interval is kept as it was, with a warning).
- admin.events.max_subscribers: 2: the third stream is refused with 503 and its exact
  reason, counted; the page then polls (transport "polling") and still draws; once a slot
  is free it returns to the stream on its own.
- A client that never reads (a small receive buffer): its frames are dropped, then it is
  closed (counted: frames dropped, ends reason not_reading), and sluice keeps serving.
- SIGTERM: an open stream gets `event: end` with reason "draining" and then the end of the
  connection; while the drain waits for a slow request a new stream is refused with 503.
- POST /upgrade: the old process ends its stream with `event: end`, reason "upgrade"; the
  new process serves streams on the same admin port.

Skipped where Chromium is not installed (the cases without a browser still run).
"""

import json
import os
import re
import signal
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
import http_util as hu  # noqa: E402
from http_backend import HttpBackend  # noqa: E402
import cdp  # noqa: E402

ADMIN_RE = re.compile(r"admin listening on 127\.0\.0\.1:(\d+)")
T = 30.0
FULL = (b"too many event streams open (2, admin.events.max_subscribers); poll GET /dashboard/data "
        b"instead\n")
DRAINING = b"sluice is draining: no new event streams; GET /dashboard/data still answers\n"


def config(backend, events, drain_timeout="5s"):
    return {"workers": 2, "log_level": "info", "drain_timeout": drain_timeout,
            "admin": {"address": "127.0.0.1:0", "events": events},
            "listeners": [hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])],
            "clusters": [hu.cluster("app", [backend])]}


def start(cfg):
    sl = harness.Sluice(harness.to_yaml(hu._quote(cfg)) + "\n")
    return sl, int(ADMIN_RE.search(sl.wait_log(ADMIN_RE, 10)).group(1))


def scrape(port):
    """The dashboard event samples of /metrics: {"name{labels}": value}."""
    r = hu.request_once(port, "GET", "/metrics", host="admin", timeout=10)
    out = {}
    for line in r.body.decode().splitlines():
        if line.startswith("sluice_dashboard_event_"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


SUBSCRIBERS = "sluice_dashboard_event_subscribers"
ACCEPTED = 'sluice_dashboard_event_subscriptions_total{result="accepted"}'
REFUSED_FULL = 'sluice_dashboard_event_subscriptions_total{result="refused_full"}'
REFUSED_DRAINING = 'sluice_dashboard_event_subscriptions_total{result="refused_draining"}'
BUILDS = "sluice_dashboard_event_builds_total"
SENT = 'sluice_dashboard_event_frames_total{result="sent"}'
DROPPED = 'sluice_dashboard_event_frames_total{result="dropped"}'
ENDED_SLOW = 'sluice_dashboard_event_ends_total{reason="not_reading"}'
ENDED_DRAINING = 'sluice_dashboard_event_ends_total{reason="draining"}'


class Stream:
    """One GET /dashboard/events over a raw socket."""

    def __init__(self, port, rcvbuf=None, requests=1):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        # Several requests: pipelined, in one write.
        self.sock.sendall(requests * b"GET /dashboard/events HTTP/1.1\r\nHost: admin\r\nAccept: text/event-stream\r\n\r\n")
        self.buf = b""
        self.seen = b""  # every event's bytes so far

    def head(self):
        """(status, headers dict, body so far) of the answer; a refusal's whole body."""
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                break
            self.buf += data
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = dict((k.lower(), v.strip()) for k, v in (x.split(":", 1) for x in lines[1:]))
        self.buf = rest
        if "content-length" in headers:
            while len(self.buf) < int(headers["content-length"]):
                data = self.sock.recv(65536)
                if not data:
                    break
                self.buf += data
        return status, headers, self.buf

    def event(self):
        """The next event: {"event": name or "message", "data": text, "retry": ...}; None at the end."""
        while b"\n\n" not in self.buf:
            data = self.sock.recv(1 << 20)
            if not data:
                return None
            self.buf += data
        raw, _, self.buf = self.buf.partition(b"\n\n")
        self.seen += raw + b"\n\n"
        ev = {"event": "message"}
        for line in raw.decode().split("\n"):
            k, _, v = line.partition(": ")
            ev[k] = v
        return ev

    def last_event(self):
        """The last event before the connection ends (None: none)."""
        last = None
        while True:
            ev = self.event()
            if ev is None:
                return last
            last = ev

    def frame(self):
        """The next data frame, parsed."""
        while True:
            ev = self.event()
            if ev is None:
                raise harness.CheckFailed_with("the stream ended while a frame was awaited", "")
            if "data" in ev and ev["event"] == "message":
                return json.loads(ev["data"])

    def close(self):
        self.sock.close()


def open_stream(port):
    s = Stream(port)
    status, headers, _ = s.head()
    check((status, headers.get("content-type")) == (200, "text/event-stream; charset=utf-8"),
          "GET /dashboard/events: 200 text/event-stream", "%d %r" % (status, headers))
    first = s.event()
    check(first == {"event": "message", "retry": "2000"}, "the stream starts with retry: 2000", repr(first))
    return s


def in_flight(port):
    r = hu.request_once(port, "GET", "/metrics", host="admin", timeout=10)
    return sum(float(line.rsplit(" ", 1)[1]) for line in r.body.decode().splitlines()
               if line.startswith("sluice_endpoint_active_requests{"))


def wait_metrics(port, cond, what, timeout=T):
    last = [None]

    def ok():
        last[0] = scrape(port)
        return cond(last[0])

    if not harness.wait_until(ok, timeout, 0.1):
        raise harness.CheckFailed_with(what, repr(last[0]))
    return last[0]


TRANSPORT = "[window.sluiceDashboard && window.sluiceDashboard.transport, " \
            "document.getElementById('transport').textContent]"


def case_page_follows_the_stream():
    if not cdp.CHROMIUM:
        raise harness.Skip("chromium is not installed")
    good = HttpBackend("good")
    sl, admin = start(config(good, {"interval": "300ms"}))
    browser = cdp.Browser()
    browser.navigate("http://127.0.0.1:%d/" % admin)
    cdp.wait_page(browser, "window.sluiceDashboard && window.sluiceDashboard.updates >= 3", "the page draws three updates")
    got = browser.evaluate(TRANSPORT)
    check(got == ["events", "events"], "the page takes its updates from the event stream (transport: events)",
          repr(got))
    m = scrape(admin)
    check((m[SUBSCRIBERS], m[ACCEPTED]) == (1, 1), "/metrics: 1 subscriber, 1 accepted", repr(m))
    state = browser.evaluate("document.getElementById('state').textContent")
    check(state == "ready", "the page shows the state the stream sent: ready", repr(state))

    # Two more streams: each build goes to all three.
    a, b = open_stream(admin), open_stream(admin)
    fa, fb = a.frame(), b.frame()
    data = json.loads(hu.request_once(admin, "GET", "/dashboard/data", host="admin", timeout=10).body)
    check(sorted(fa) == sorted(data) and sorted(fb) == sorted(data),
          "a frame is the JSON of /dashboard/data (keys %s)" % ",".join(sorted(data)), repr(sorted(fa)))
    wait_metrics(admin, lambda m: m[SUBSCRIBERS] == 3, "/metrics: 3 subscribers")
    stop = threading.Event()

    def reader(s):
        try:
            while not stop.is_set() and s.event() is not None:
                pass
        except OSError:
            pass

    threads = [threading.Thread(target=reader, args=(s,), daemon=True) for s in (a, b)]
    for t in threads:
        t.start()
    before = scrape(admin)
    after = wait_metrics(admin, lambda m: m[BUILDS] >= before[BUILDS] + 5, "five more builds")
    builds, sent = after[BUILDS] - before[BUILDS], after[SENT] - before[SENT]
    check(sent == 3 * builds and after[DROPPED] == 0 and after[SUBSCRIBERS] == 3,
          "the data is built once per interval for the three streams: %d builds, %d frames sent, none dropped"
          % (builds, sent), repr((before, after)))
    stop.set()
    a.close()
    b.close()
    for t in threads:
        t.join(10)
    wait_metrics(admin, lambda m: m[SUBSCRIBERS] == 1, "/metrics: back to 1 subscriber once the two closed")

    # A reload keeps the stream; its next frames carry the new generation.
    c = open_stream(admin)
    with open(sl.config_path) as f:
        text = f.read()
    with open(sl.config_path, "w") as f:
        f.write(text.replace("drain_timeout: 5s", "drain_timeout: 6s").replace("interval: 300ms", "interval: 2s"))
    r = hu.request_once(admin, "POST", "/reload", host="admin", timeout=30)
    reload = json.loads(r.body) if r.status == 200 else {}
    check(reload.get("generation") == 1 and
          reload.get("warnings") == ["warning: admin: admin.events changes only with a restart; it stays as it is"],
          "POST /reload applies generation 1 and warns that admin.events stays as it is", r.body[:800])
    gen = None
    for _ in range(20):
        gen = c.frame()["generation"]
        if gen == 1:
            break
    check(gen == 1, "the open stream goes on through the reload; its frames say generation 1", repr(gen))
    cdp.wait_page(browser, "document.getElementById('generation').textContent === 'config generation 1'",
              "the page shows generation 1")
    got = browser.evaluate(TRANSPORT)
    check(got == ["events", "events"], "the page still follows the stream after the reload", repr(got))
    c.close()
    check(browser.console_errors == [], "no console error or uncaught exception", "\n".join(browser.console_errors))
    browser.close()
    hu.stop_and_check(sl)


def case_limit_and_fallback_to_polling():
    good = HttpBackend("good")
    sl, admin = start(config(good, {"interval": "300ms", "max_subscribers": 2}))
    a, b = open_stream(admin), open_stream(admin)
    third = Stream(admin)
    status, headers, body = third.head()
    check((status, headers.get("content-type"), body) == (503, "text/plain; charset=utf-8", FULL),
          "the third stream: 503 with its reason", "%d %r %r" % (status, headers, body))
    third.close()
    m = scrape(admin)
    check((m[SUBSCRIBERS], m[ACCEPTED], m[REFUSED_FULL]) == (2, 2, 1),
          "/metrics: 2 subscribers, 2 accepted, 1 refused (full)", repr(m))
    if not cdp.CHROMIUM:
        info("chromium is not installed: the page's fallback is not checked")
    else:
        browser = cdp.Browser()
        browser.navigate("http://127.0.0.1:%d/" % admin)
        cdp.wait_page(browser, "window.sluiceDashboard && window.sluiceDashboard.updates >= 2",
                  "the page draws while the stream is refused")
        got = browser.evaluate(TRANSPORT)
        check(got == ["polling", "polling"], "the stream refused (503): the page polls (transport: polling)",
              repr(got))
        a.close()
        cdp.wait_page(browser, "window.sluiceDashboard.transport === 'events'",
                  "once a stream closed, the page follows the stream again")
        check(browser.evaluate(TRANSPORT) == ["events", "events"], "transport: events again")
        # The page's EventSource reports the 503 as an error of its own; nothing else may appear.
        errors = [e for e in browser.console_errors if "/dashboard/events" not in e or "503" not in e]
        check(errors == [], "no console error but the refused stream's 503", "\n".join(browser.console_errors))
        browser.close()
    b.close()
    hu.stop_and_check(sl)


def case_pipelined_requests_behind_a_stream():
    good = HttpBackend("good")
    sl, admin = start(config(good, {"interval": "100ms", "max_subscribers": 2}))
    s = Stream(admin, requests=3)
    status, headers, _ = s.head()
    check((status, headers.get("content-type")) == (200, "text/event-stream; charset=utf-8"),
          "three pipelined GET /dashboard/events: the first is a stream", "%d %r" % (status, headers))
    check(s.event() == {"event": "message", "retry": "2000"}, "the stream starts with retry: 2000")
    # Several frames, and never a second head within the stream.
    for _ in range(3):
        frame = s.frame()
        check(frame["state"] == "ready", "a frame of the stream", repr(frame))
    check(b"HTTP/1.1" not in s.seen + s.buf, "no second response head in the stream", repr(s.seen[:300]))
    m = scrape(admin)
    check((m[SUBSCRIBERS], m[ACCEPTED], m[REFUSED_FULL]) == (1, 1, 0),
          "/metrics: 1 subscriber, 1 accepted, none refused: the requests behind it were dropped", repr(m))
    s.close()
    wait_metrics(admin, lambda m: m[SUBSCRIBERS] == 0, "the stream's subscriber goes with its client")
    # Its slot is free: the bound of two still holds two.
    a, b = open_stream(admin), open_stream(admin)
    m = scrape(admin)
    check((m[SUBSCRIBERS], m[ACCEPTED], m[REFUSED_FULL]) == (2, 3, 0),
          "/metrics: 2 subscribers, 3 accepted, none refused", repr(m))
    a.close()
    b.close()
    hu.stop_and_check(sl)


def case_a_client_that_does_not_read():
    good = HttpBackend("good")
    sl, admin = start(config(good, {"interval": "100ms"}))
    # Traffic, so that frames carry recent requests and are of some size.
    for i in range(20):
        hu.request_once(sl.port("web"), "GET", "/fill/%d" % i)
    s = Stream(admin, rcvbuf=4096)
    m = wait_metrics(admin, lambda m: m[ENDED_SLOW] == 1, "the client that does not read is closed", timeout=60)
    check(m[DROPPED] >= 10 and m[SUBSCRIBERS] == 0,
          "its frames were dropped (%d) and then it was closed: 0 subscribers" % m[DROPPED], repr(m))
    # What the kernel held for it is still there, then the end of the connection.
    s.sock.settimeout(10)
    total = 0
    try:
        while True:
            data = s.sock.recv(1 << 20)
            if not data:
                break
            total += len(data)
    except ConnectionResetError:
        pass
    check(total > 0, "sluice closed the connection (%d bytes were in flight)" % total)
    s.close()
    c = open_stream(admin)
    check(c.frame()["state"] == "ready", "a new stream is served afterwards")
    c.close()
    hu.stop_and_check(sl)


def case_drain_ends_the_streams():
    good = HttpBackend("good")
    sl, admin = start(config(good, {"interval": "300ms"}, drain_timeout="20s"))
    s = open_stream(admin)
    s.frame()
    slow = threading.Thread(target=lambda: hu.request_once(sl.port("web"), "GET", "/delay/4000", timeout=30),
                            daemon=True)
    slow.start()
    check(harness.wait_until(lambda: in_flight(admin) == 1, 10), "the slow request is in flight")
    sl.signal(signal.SIGTERM)
    last = s.last_event()
    check(last == {"event": "end", "data": '{"reason":"draining"}'},
          "SIGTERM: the stream ends with event: end, reason draining, then the connection closes", repr(last))
    s.close()
    refused = Stream(admin)
    status, headers, body = refused.head()
    check((status, body) == (503, DRAINING), "while draining a new stream is refused: 503 with its reason",
          "%d %r" % (status, body))
    refused.close()
    m = scrape(admin)
    check((m[ENDED_DRAINING], m[REFUSED_DRAINING], m[SUBSCRIBERS]) == (1, 1, 0),
          "/metrics: 1 ended (draining), 1 refused (draining), 0 subscribers", repr(m))
    slow.join(30)
    harness.check_clean_exit(sl, sl.wait_exit(30))


def case_upgrade_ends_the_streams():
    good = HttpBackend("good")
    sl, admin = start(config(good, {"interval": "300ms"}))
    s = open_stream(admin)
    s.frame()
    r = hu.request_once(admin, "POST", "/upgrade", body=b"", host="admin", timeout=60)
    body = json.loads(r.body) if r.status == 200 else {}
    check(r.status == 200 and body.get("result") == "upgraded", "POST /upgrade: upgraded", r.body[:500])
    new_pid = body["pid"]

    def kill_new():
        try:
            os.kill(new_pid, signal.SIGKILL)
        except OSError:
            pass

    harness.register_cleanup(kill_new)
    last = s.last_event()
    check(last == {"event": "end", "data": '{"reason":"upgrade"}'},
          "the old process ends its stream with event: end, reason upgrade, then the connection closes", repr(last))
    s.close()
    harness.check_clean_exit(sl, sl.wait_exit(30), "the old process exits 0")
    # The new process, on the same admin socket, serves streams (its own counters).
    c = open_stream(admin)
    check(c.frame()["state"] == "ready", "the new process serves a stream on the same admin port")
    m = scrape(admin)
    check((m[ACCEPTED], m[ENDED_DRAINING]) == (1, 0), "its /metrics: 1 accepted, none ended (a fresh process)",
          repr(m))
    c.close()
    os.kill(new_pid, signal.SIGTERM)
    gone = harness.wait_until(lambda: not os.path.exists("/proc/%d" % new_pid) or
                              open("/proc/%d/stat" % new_pid).read().split(") ")[1].startswith("Z"), 30, 0.05)
    check(gone, "the new process exits on SIGTERM")
    harness.unregister_cleanup(kill_new)


if __name__ == "__main__":
    harness.run_cases([case_page_follows_the_stream, case_limit_and_fallback_to_polling,
                       case_pipelined_requests_behind_a_stream, case_a_client_that_does_not_read, case_drain_ends_the_streams,
                       case_upgrade_ends_the_streams])

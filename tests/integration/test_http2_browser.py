#!/usr/bin/env python3
"""Legitimate HTTP/2 clients never trip sluice's HTTP/2 protections.

A page of 50 resources (20 images, 15 scripts, 15 stylesheets) is served by an HTTP/1.1
backend behind a sluice TLS listener with `http2: {}` (ALPN h2) and loaded by real clients:

- headless Chromium (Debian's `chromium`, installed by scripts/bootstrap): the page itself
  counts what loaded and over which protocol (Resource Timing's nextHopProtocol) and writes
  the result into the DOM that `--dump-dom` prints;
- `nghttp -ans` (nghttp2-client), which fetches the page's assets on parallel streams.

For each: the access log has 51 lines with "protocol":"HTTP/2" and status 200, all from one
downstream connection; the HTTP/2 counters show no abuse close, no GOAWAY, no reset either
way and no protocol error, and as many HTTP/2 connections as the client opened (nghttp: 1;
Chromium: 1 or 2, read from its own net log, see case_headless_chromium); and /connections,
read while the last resource is held back by the backend (so the connection is still open
mid-page), shows the abuse score below max_abuse_score.

No favicon request: the page declares its icon as a `data:` URL (`<link rel="icon"
href="data:,">`), so a browser asks sluice for exactly the page and its 50 resources.
Chromium is started with flags that keep it on loopback (no background networking, every
host name but 127.0.0.1 unresolvable) and that a container needs (--no-sandbox as root,
--disable-dev-shm-usage where /dev/shm is small, --disable-gpu).

Where Chromium is not installed (scripts/bootstrap did not run), its case is skipped.

A third case has Chromium stop a page of 99 slow images: 99 streams reset at once by a
browser are not Rapid Reset.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
import http_util as hu  # noqa: E402
import h2_frames as h2  # noqa: E402
import test_metrics as tm  # noqa: E402
import tls_pki  # noqa: E402

CHROMIUM = shutil.which("chromium")
NGHTTP = shutil.which("nghttp")

IMAGES, SCRIPTS, STYLESHEETS = 20, 15, 15
RESOURCES = IMAGES + SCRIPTS + STYLESHEETS  # 50
# The resource the backend holds back until the test has read /connections mid-page.
HELD = "/img/%d.gif" % (IMAGES - 1)
MAX_ABUSE_SCORE = 200  # http2.max_abuse_score's default (docs/http2.md)
CLIENT_TIMEOUT = 30.0  # seconds a client may take for the whole page
T = 10.0

# The smallest GIF: 1x1, one transparent pixel.
GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
       b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


def resource_paths():
    return (["/css/%d.css" % i for i in range(STYLESHEETS)] + ["/js/%d.js" % i for i in range(SCRIPTS)] +
            ["/img/%d.gif" % i for i in range(IMAGES)])


def index_html():
    """The page: every resource as a plain tag whose onload/onerror is counted; at the load
    event (which waits for all of them) the page writes what it saw into #result."""
    head = [
        "<!doctype html>",
        "<html><head><meta charset=\"utf-8\"><title>sluice HTTP/2 page</title>",
        "<link rel=\"icon\" href=\"data:,\">",
        "<script>",
        "var seen = {}, loaded = 0, failed = 0; window.ran = [];",
        "function done(what, ok) { if (seen[what]) return; seen[what] = 1; if (ok) loaded++; else failed++; }",
        "window.addEventListener('load', function () {",
        "  var res = performance.getEntriesByType('resource');",
        "  var h2 = res.filter(function (e) { return e.nextHopProtocol === 'h2'; }).length;",
        "  var nav = performance.getEntriesByType('navigation')[0].nextHopProtocol;",
        "  document.getElementById('result').textContent = 'loaded ' + loaded + ' of %d, failed ' + failed +" % RESOURCES,
        "    ', scripts run ' + window.ran.length + ', resources over h2 ' + h2 + ' of ' + res.length +",
        "    ', page over ' + nav;",
        "});",
        "</script>",
    ]
    for i in range(STYLESHEETS):
        head.append("<link rel=\"stylesheet\" href=\"/css/%d.css\" onload=\"done('css%d', true)\" "
                    "onerror=\"done('css%d', false)\">" % (i, i, i))
    body = ["</head><body>", "<div id=\"result\">not loaded</div>"]
    for i in range(IMAGES):
        # an image counts as loaded only when it decoded to the 1x1 GIF
        body.append("<img src=\"/img/%d.gif\" onload=\"done('img%d', this.naturalWidth === 1)\" "
                    "onerror=\"done('img%d', false)\">" % (i, i, i))
    for i in range(SCRIPTS):
        body.append("<script src=\"/js/%d.js\" onload=\"done('js%d', window.ran.indexOf(%d) >= 0)\" "
                    "onerror=\"done('js%d', false)\"></script>" % (i, i, i, i))
    body.append("</body></html>")
    return ("\n".join(head + body) + "\n").encode()


EXPECTED_RESULT = ("loaded %d of %d, failed 0, scripts run %d, resources over h2 %d of %d, page over h2" %
                   (RESOURCES, RESOURCES, SCRIPTS, RESOURCES, RESOURCES))


class SiteBackend:
    """An HTTP/1.1 (keep-alive) backend on 127.0.0.1:<ephemeral> serving the page and its
    resources; HELD is answered only once release() is called. Every request is recorded."""

    def __init__(self):
        self.page = index_html()
        self.requests = []  # (path, backend connection's peer port)
        self.release_event = threading.Event()
        self._lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                with site._lock:
                    site.requests.append((path, self.client_address[1]))
                site.hold(path)
                status, ctype, body = site.answer(path)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Cache-Control", "no-store")
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    # sluice gave up on this request (its client went away); nothing to answer
                    self.close_connection = True

        class Server(ThreadingHTTPServer):
            # sluice opens one upstream connection per concurrent request: with the default
            # backlog of 5, SYNs beyond it wait a second for their retransmission
            request_queue_size = 256
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.address = "127.0.0.1:%d" % self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        harness.register_cleanup(self.stop)

    def hold(self, path):
        """Blocks the answer to `path` while it is held back."""
        if path == HELD:
            self.release_event.wait(CLIENT_TIMEOUT)

    def answer(self, path):
        if path in ("/", "/index.html"):
            return 200, "text/html; charset=utf-8", self.page
        m = re.fullmatch(r"/(img|js|css)/(\d+)\.(gif|js|css)", path)
        if m:
            kind, n = m.group(1), int(m.group(2))
            if kind == "img" and n < IMAGES and m.group(3) == "gif":
                return 200, "image/gif", GIF
            if kind == "js" and n < SCRIPTS and m.group(3) == "js":
                return 200, "text/javascript", b"window.ran.push(%d);\n" % n
            if kind == "css" and n < STYLESHEETS and m.group(3) == "css":
                return 200, "text/css", b".c%d { margin-left: %dpx; }\n" % (n, n)
        return 404, "text/plain", b"not found\n"

    def paths(self):
        with self._lock:
            return [p for p, _ in self.requests]

    def release(self):
        self.release_event.set()

    def stop(self):
        self.release_event.set()
        self.server.shutdown()
        self.server.server_close()


def tmp_dir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def start_site(site=None):
    """The backend and sluice: a TLS listener with `http2: {}` and an access log, and an admin listener."""
    site = site or SiteBackend()
    srv = tls_pki.leaf(["localhost"], ["127.0.0.1"])
    tls = {"certificates": [{"certificate_chain": srv.chain, "private_key": srv.key}]}
    log = os.path.join(tmp_dir("sluice-h2-browser-"), "access.log")
    lst = hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}], http2={}, tls=tls,
                             access_log={"path": log})
    s = h2.SluiceH2([lst], [hu.cluster("app", [site.address])], workers=2, log_level="info")
    return site, s, log


def start_client(argv):
    """Starts a client in its own process group (Chromium forks helpers), killed at cleanup."""
    def preexec():
        os.setsid()
        harness.die_with_parent()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=preexec)

    def kill():
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        p.wait()
    harness.register_cleanup(kill)
    return p


def web_connections(s):
    return [c for c in tm.admin_json(s.admin_port, "/connections?listener=web", quiet=True)
            if c.get("listener", "web") == "web"]


def load_page(s, site, log, argv, who):
    """Runs the client on the page; while HELD is held back, reads /connections (the
    connection is open mid-page). Returns (client's stdout, stderr, the /connections rows)."""
    all_paths = ["/"] + resource_paths()
    t0 = time.monotonic()
    p = start_client(argv)
    try:
        arrived = harness.wait_until(lambda: len(site.paths()) >= len(all_paths) or p.poll() is not None,
                                     CLIENT_TIMEOUT)
        paths = site.paths()
        check(arrived and sorted(paths) == sorted(all_paths),
              "%s: the backend gets the page and its 50 resources, each once (no favicon.ico)" % who,
              "%d requests: %r\nclient exit %r" % (len(paths), paths, p.poll()))
        # every resource but HELD answered (the access log has their lines) and their streams
        # closed: the connection is still open with HELD's stream alone
        harness.wait_until(lambda: len(h2.access_lines(log)) >= len(all_paths) - 1, T, 0.02)
        last = [[]]

        def one_stream_left():
            last[0] = web_connections(s)
            return sum(c.get("http2", {}).get("streams", 0) for c in last[0]) == 1
        harness.wait_until(one_stream_left, T, 0.02)
        mid = last[0]
    finally:
        site.release()
    try:
        out, err = p.communicate(timeout=max(1.0, CLIENT_TIMEOUT - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        check(False, "%s finishes the page within %.0f s" % (who, CLIENT_TIMEOUT),
              err.decode("utf-8", "replace")[-3000:])
    info("%s: page loaded in %.1f s (exit %d)" % (who, time.monotonic() - t0, p.returncode))
    check(p.returncode == 0, "%s exits 0" % who, err.decode("utf-8", "replace")[-3000:])
    return out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), mid


def check_mid_page(who, mid):
    """/connections while HELD is held back: one HTTP/2 connection with a stream open (HELD's),
    no GOAWAY on any, every abuse score below the threshold."""
    h2rows = [c for c in mid if c.get("http2") is not None]
    info("%s: /connections mid-page: %s" % (who, json.dumps([c["http2"] for c in h2rows])))
    busy = [c for c in h2rows if c["http2"]["streams"] > 0]
    check(len(h2rows) == len(mid) and len(busy) == 1 and busy[0]["http2"]["streams"] == 1 and
          all(c["http2"]["goaway"] == "" for c in h2rows),
          "%s: /connections mid-page: one HTTP/2 connection with 1 stream open (the held image), no GOAWAY" % who,
          json.dumps(mid))
    scores = [c["http2"]["abuse_score"] for c in h2rows]
    check(all(0 <= x < MAX_ABUSE_SCORE for x in scores),
          "%s: abuse_score %s, below max_abuse_score %d" % (who, scores, MAX_ABUSE_SCORE), json.dumps(mid))


def check_after(s, log, who, connections=1):
    """The access log and counters once the client has gone; `connections`: how many TLS
    connections the client opened (all requests must be on one of them)."""
    all_paths = ["/"] + resource_paths()
    n = len(all_paths)
    gone = harness.wait_until(lambda: not web_connections(s), T, 0.02)
    check(gone, "%s: its connection is closed once it has the page" % who)
    streams = s.wait_metric("sluice_http2_streams_total", lambda v: v >= n, T, listener="web")
    harness.wait_until(lambda: len(h2.access_lines(log)) >= n, T, 0.02)
    lines = h2.access_lines(log)
    targets = sorted(line.get("target") for line in lines)
    check(len(lines) == n and targets == sorted(all_paths),
          "%s: %d access-log lines, one per path" % (who, n), "\n".join(json.dumps(x) for x in lines))
    check(all(line.get("protocol") == "HTTP/2" and line.get("status") == 200 for line in lines),
          "%s: every line says \"protocol\":\"HTTP/2\" and status 200" % who,
          "\n".join(json.dumps(x) for x in lines if x.get("protocol") != "HTTP/2" or x.get("status") != 200))
    downstreams = sorted({line.get("downstream") for line in lines})
    stream_ids = sorted(line.get("stream") for line in lines)
    info("%s: streams %s" % (who, stream_ids))
    check(len(downstreams) == 1 and len(set(stream_ids)) == n,
          "%s: all %d requests on one connection (%s), each on its own stream" % (who, n, downstreams), "")
    m = s.metrics()

    def v(name, **labels):
        return m.get((name, frozenset(dict(labels, listener="web").items())), 0.0)
    got = {
        "sluice_http2_connections_total": v("sluice_http2_connections_total"),
        "sluice_http2_streams_total": streams,
        "sluice_http2_abuse_closed_total": v("sluice_http2_abuse_closed_total"),
        "sluice_http2_goaways_sent_total": v("sluice_http2_goaways_sent_total"),
        "sluice_http2_resets_total{by=sluice}": v("sluice_http2_resets_total", by="sluice"),
        "sluice_http2_resets_total{by=client}": v("sluice_http2_resets_total", by="client"),
        "sluice_http2_protocol_errors_total": v("sluice_http2_protocol_errors_total"),
    }
    want = {"sluice_http2_connections_total": connections, "sluice_http2_streams_total": n,
            "sluice_http2_abuse_closed_total": 0, "sluice_http2_goaways_sent_total": 0,
            "sluice_http2_resets_total{by=sluice}": 0, "sluice_http2_resets_total{by=client}": 0,
            "sluice_http2_protocol_errors_total": 0}
    check(got == want, "%s: %d HTTP/2 connection(s), %d streams; no abuse close, no GOAWAY sent, no reset either "
          "way, no protocol error" % (who, connections, n), "%r\n%s" % (got, s.metrics_excerpt()))
    check(not s.sl.find_lines(re.compile(r"abuse score")), "%s: no 'abuse score' line in sluice's log" % who,
          hu.log_tail(s.sl, 20))
    return downstreams[0] if downstreams else None


# --------------------------------------------------------------------------
# cases


def chromium_argv(port, profile, netlog=None):
    """headless Chromium printing the DOM of https://127.0.0.1:PORT/ once the page has loaded."""
    argv = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--user-data-dir=" + os.path.join(profile, "profile"), "--ignore-certificate-errors",
            # nothing but the test's own traffic, all of it on loopback: Chromium still asks for
            # update and account hosts, which then fail to resolve
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
    if netlog:
        argv += ["--log-net-log=" + netlog, "--net-log-capture-mode=Default"]
    return argv + ["--dump-dom", "https://127.0.0.1:%d/" % port]


def chromium_connections(netlog_path):
    """From Chromium's own net log: the TCP connections it made, as {local address: remote address}."""
    try:
        with open(netlog_path) as f:
            netlog = json.load(f)
    except (OSError, ValueError) as e:
        raise harness.CheckFailed_with("Chromium wrote a readable net log", "%s: %r" % (netlog_path, e))
    tcp_connect = netlog["constants"]["logEventTypes"]["TCP_CONNECT"]
    out = {}
    for ev in netlog["events"]:
        params = ev.get("params") or {}
        if ev.get("type") == tcp_connect and "local_address" in params:
            out[params["local_address"]] = params.get("remote_address")
    return out


def case_headless_chromium():
    """Headless Chromium loads the page over TLS + HTTP/2: the DOM reports 50 of 50 loaded,
    all over h2; sluice saw 51 HTTP/2 requests on one connection and counts no abuse.

    On navigation Chromium preconnects to the page's origin, and a moment later asks for two
    preconnected sockets: when the first TLS handshake has not finished by then (a busy
    machine, a sanitizer build), it opens a second connection and closes it unused as soon
    as the first one is an HTTP/2 session ("Switching to HTTP2 session" in its net log). So
    Chromium opens one or two connections; the exact number is read from its own net log
    and sluice's counters must match it, with every request on one connection."""
    if not CHROMIUM:
        raise harness.Skip("chromium is not installed (scripts/bootstrap installs it)")
    site, s, log = start_site()
    port = s.port("web")
    profile = tmp_dir("sluice-chromium-")
    netlog = os.path.join(profile, "netlog.json")
    argv = chromium_argv(port, profile, netlog)
    out, err, mid = load_page(s, site, log, argv, "chromium")
    m = re.search(r'<div id="result">([^<]*)</div>', out)
    result = m.group(1) if m else None
    info("chromium: the page says: %s" % result)
    check(result == EXPECTED_RESULT, "chromium: the DOM says '%s'" % EXPECTED_RESULT,
          "got %r\n--- stdout\n%s\n--- stderr\n%s" % (result, out[-2000:], err[-2000:]))
    check_mid_page("chromium", mid)
    conns = chromium_connections(netlog)
    info("chromium: its net log shows TCP connections %s" % json.dumps(conns))
    ours = sorted(local for local, remote in conns.items() if remote == "127.0.0.1:%d" % port)
    check(len(ours) in (1, 2) and len(ours) == len(conns),
          "chromium: its net log shows %d connection(s), all to sluice, none elsewhere" % len(ours), json.dumps(conns))
    carrier = check_after(s, log, "chromium", connections=len(ours))
    check(carrier in ours, "chromium: the connection that carried the page is one its net log shows (%s)" % carrier,
          json.dumps(ours))
    hu.stop_and_check(s.sl)


def case_nghttp_assets():
    """nghttp -ans fetches the page and its 50 assets on parallel streams: 51 responses 200 on
    one connection, no abuse, no GOAWAY, no reset."""
    if not NGHTTP:
        raise harness.Skip("nghttp is not installed (nghttp2-client)")
    site, s, log = start_site()
    port = s.port("web")
    out, err, mid = load_page(s, site, log, [NGHTTP, "-ans", "https://127.0.0.1:%d/" % port], "nghttp")
    # -s prints one row per stream: "ID +RESPONSE_END +REQUEST_START PROCESS CODE SIZE PATH"
    rows = re.findall(r"^\s*\d+\s+\+\S+\s+\+\S+\s+\S+\s+(\d{3})\s+\S+\s+(\S+)\s*$", out, re.M)
    check(sorted(rows) == sorted(("200", p) for p in ["/"] + resource_paths()),
          "nghttp: 51 streams, each path once, all 200", out[-4000:] + err[-2000:])
    check_mid_page("nghttp", mid)
    check_after(s, log, "nghttp")
    hu.stop_and_check(s.sl)


STOP_IMAGES = 99  # with the gate script, 100 streams at once: max_concurrent_streams' default


class StopSite(SiteBackend):
    """A page of STOP_IMAGES images the backend never answers (until the test ends) and an
    async script, /stop.js, held until the test has seen every image requested; the script
    calls window.stop(), as a user pressing Esc or the stop button on a slow page."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()
        imgs = "\n".join("<img src=\"/slow/%d.gif\">" % i for i in range(STOP_IMAGES))
        self.page = ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\">"
                     "</head><body>\n<div id=\"result\">loading</div>\n%s\n"
                     "<script async src=\"/stop.js\"></script>\n</body></html>\n" % imgs).encode()

    def hold(self, path):
        if path.startswith("/slow/"):
            self.release_event.wait(CLIENT_TIMEOUT)
        elif path == "/stop.js":
            self.gate.wait(CLIENT_TIMEOUT)

    def answer(self, path):
        if re.fullmatch(r"/slow/\d+\.gif", path):
            return 200, "image/gif", GIF
        if path == "/stop.js":
            # then a request of its own, which tells the test that the page went on after the stop
            return 200, "text/javascript", b"window.stop(); fetch('/after-stop');\n"
        if path == "/after-stop":
            return 200, "text/plain", b"ok\n"
        return super().answer(path)


def case_chromium_stopped_mid_load():
    """A user stops a slow page: Chromium resets its 99 image streams in flight at once (RST_STREAM
    CANCEL). That is a browser doing what browsers do, not Rapid Reset: the connection must not
    be closed for abuse (the Rapid Reset ratio is judged only after twice max_concurrent_streams
    streams, more than one window of cancels)."""
    if not CHROMIUM:
        raise harness.Skip("chromium is not installed (scripts/bootstrap installs it)")
    site, s, log = start_site(StopSite())
    port = s.port("web")
    p = start_client(chromium_argv(port, tmp_dir("sluice-chromium-")))
    try:
        ok = harness.wait_until(lambda: (sum(1 for x in site.paths() if x.startswith("/slow/")) == STOP_IMAGES and
                                         "/stop.js" in site.paths()) or p.poll() is not None, CLIENT_TIMEOUT)
        check(ok and p.poll() is None, "chromium asks for the %d images and the gate script" % STOP_IMAGES,
              repr(site.paths()))
    finally:
        site.gate.set()
    # the stop resets every image stream; a connection closed for abuse ends the count early
    harness.wait_until(lambda: s.metric("sluice_http2_resets_total", listener="web", by="client") >= STOP_IMAGES or
                       s.metric("sluice_http2_abuse_closed_total", listener="web") > 0, CLIENT_TIMEOUT, 0.05)
    for line in s.sl.find_lines(re.compile(r"abuse score")):
        info("sluice: %s" % line)
    check(s.metric("sluice_http2_abuse_closed_total", listener="web") == 0 and
          s.metric("sluice_http2_goaways_sent_total", listener="web") == 0,
          "no connection closed for abuse, no GOAWAY: stopping a page is not an attack", s.metrics_excerpt())
    resets = s.wait_metric("sluice_http2_resets_total", lambda v: v >= STOP_IMAGES, T, listener="web", by="client")
    check(resets == STOP_IMAGES, "sluice counts %d streams reset by the client" % STOP_IMAGES, s.metrics_excerpt())
    after = harness.wait_until(lambda: "/after-stop" in site.paths(), T)
    check(after, "the page goes on after the stop: its next request (/after-stop) reaches the backend",
          repr(site.paths()[-5:]))
    hu.stop_and_check(s.sl)


DEFAULT_CASES = [case_headless_chromium, case_nghttp_assets, case_chromium_stopped_mid_load]


if __name__ == "__main__":
    hu.use_default_bin()
    if len(sys.argv) > 1:
        by_name = {c.__name__: c for c in DEFAULT_CASES}
        unknown = [a for a in sys.argv[1:] if a not in by_name]
        if unknown:
            print("FAILED unknown case(s) %s; cases: %s" % (" ".join(unknown), " ".join(sorted(by_name))), flush=True)
            sys.exit(2)
        harness.run_cases([by_name[a] for a in sys.argv[1:]])
    harness.run_cases(DEFAULT_CASES)

"""HTTP/2 to upstreams over TLS, with real peers: nghttpd (h2 by ALPN only) and a Python TLS
HTTP/1.1 server (ALPN http/1.1 only) behind sluice. `protocol: http2` speaks h2 after ALPN
agreed on it and refuses an endpoint that did not (a 502 naming what ALPN chose, the connect
counted as failed); `protocol: auto` speaks HTTP/2 to the endpoint whose ALPN chose h2 (streams
counted per endpoint, one connection for several requests) and HTTP/1.1 to the one that chose
http/1.1 (no stream counted)."""

import http.server
import json
import os
import shutil
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
import http_util as hu  # noqa: E402
import test_metrics as tm  # noqa: E402
import tls_pki  # noqa: E402

NGHTTPD = shutil.which("nghttpd") or "/usr/bin/nghttpd"
BODY = b"hello over h2 and TLS\n"


def tmp_dir():
    d = tempfile.mkdtemp(prefix="sluice-h2up-tls-")
    harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def start_nghttpd(pki, docroot):
    """nghttpd on TLS: it offers h2 only, so a client that cannot agree on h2 gets no ALPN.
    nghttpd takes a port number, not 0: a free port is chosen, and chosen again should another
    process take it first (nghttpd then exits)."""
    leaf = pki.leaf()
    for attempt in range(5):
        holder, port = harness.free_port_holder()
        holder.close()
        proc = subprocess.Popen([NGHTTPD, "-d", docroot, "--address=127.0.0.1", str(port), leaf.key, leaf.chain],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=harness.die_with_parent)
        harness.register_cleanup(lambda p=proc: (p.kill(), p.wait()))
        harness.wait_until(lambda: proc.poll() is not None or not harness.is_refused(port), 10, 0.02)
        if proc.poll() is None and not harness.is_refused(port):
            return port
        harness.info("nghttpd could not listen on %d (attempt %d)" % (port, attempt + 1))
    raise harness.CheckFailed_with("nghttpd listens on a TLS port", "five attempts failed")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        body = b"h1 over TLS\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _TlsServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def start_h1_tls(pki):
    """A TLS HTTP/1.1 server whose ALPN says http/1.1 only."""
    leaf = pki.leaf()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(leaf.chain, leaf.key)
    ctx.set_alpn_protocols(["http/1.1"])
    srv = _TlsServer(("127.0.0.1", 0), _Handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    harness.register_cleanup(srv.shutdown)
    return srv.server_address[1]


def access_lines(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except OSError:
        return []


def case_http2_and_auto_over_tls():
    pki = tls_pki.Pki()
    d = tmp_dir()
    with open(os.path.join(d, "index.html"), "wb") as f:
        f.write(BODY)
    h2_port = start_nghttpd(pki, d)
    h1_port = start_h1_tls(pki)
    log_path = os.path.join(d, "access.log")
    tls = {"ca": pki.ca_file}
    clusters = [
        hu.cluster("h2", ["127.0.0.1:%d" % h2_port], protocol="http2", tls=tls),
        hu.cluster("auto_h2", ["127.0.0.1:%d" % h2_port], protocol="auto", tls=tls),
        hu.cluster("auto_h1", ["127.0.0.1:%d" % h1_port], protocol="auto", tls=tls),
        hu.cluster("h2_to_h1", ["127.0.0.1:%d" % h1_port], protocol="http2", tls=tls),
    ]
    routes = [{"match": {"prefix": "/%s/" % c["name"]}, "cluster": c["name"],
               "prefix_rewrite": "/"} for c in clusters]
    listener = hu.simple_listener(routes, access_log={"path": log_path})
    sl, ap = tm.start([listener], clusters, workers=1)
    port = sl.port("web")
    results = {}
    for name, n in (("h2", 2), ("auto_h2", 3), ("auto_h1", 2), ("h2_to_h1", 1)):
        for i in range(n):
            r = hu.request_once(port, "GET", "/%s/index.html" % name, timeout=10)
            results.setdefault(name, []).append((r.status, r.body))
    check(results["h2"] == [(200, BODY)] * 2, "protocol: http2 over TLS: nghttpd's file, twice", repr(results["h2"]))
    check(results["auto_h2"] == [(200, BODY)] * 3, "protocol: auto, ALPN chose h2: nghttpd's file, three times",
          repr(results["auto_h2"]))
    check(results["auto_h1"] == [(200, b"h1 over TLS\n")] * 2,
          "protocol: auto, ALPN chose http/1.1: the HTTP/1.1 server answers, twice", repr(results["auto_h1"]))
    check([s for s, _ in results["h2_to_h1"]] == [502],
          "protocol: http2 towards an endpoint whose ALPN did not choose h2: 502", repr(results["h2_to_h1"]))
    harness.wait_until(lambda: len(access_lines(log_path)) >= 8, 5)
    lines = access_lines(log_path)
    failed = [x for x in lines if x["cluster"] == "h2_to_h1"]
    want = {"flags": ["upstream_connect_failure", "retried"], "attempts": 2,
            "detail": "upstream 127.0.0.1:%d did not open an HTTP/2 connection: ALPN chose none, not h2" % h1_port}
    got = [{k: x.get(k) for k in want} for x in failed]
    check(got == [want], "the refused endpoint's request is a connect failure, retried once (the default "
          "retry_on: connect-failure), and the log says what ALPN chose", json.dumps(failed))
    why = sl.find_lines(lambda l: "ALPN chose none, not h2" in l)
    check(len(why) >= 1, "sluice's log names what ALPN chose (none: the server only speaks http/1.1)",
          sl.stderr_text()[-3000:])
    m = tm.scrape(ap)
    ep = {c["name"]: c["endpoints"][0]["address"] for c in clusters}
    streams = {n: m.get("sluice_endpoint_http2_streams_total", cluster=n, endpoint=ep[n]) for n in ep}
    check(streams == {"h2": 2, "auto_h2": 3, "auto_h1": 0, "h2_to_h1": 0},
          "HTTP/2 streams per endpoint: 2 (http2), 3 (auto, h2), 0 (auto, http/1.1), 0 (refused)", repr(streams))
    connects = {n: m.get("sluice_endpoint_connects_total", cluster=n, endpoint=ep[n]) for n in ep}
    check(connects["h2"] == 1 and connects["auto_h2"] == 1,
          "one TLS connection carries all of an HTTP/2 endpoint's requests (http2 and auto)", repr(connects))
    clusters_json = tm.admin_json(ap, "/clusters")
    items = clusters_json["clusters"] if isinstance(clusters_json, dict) else clusters_json
    protocols = {c["name"]: c.get("protocol") for c in items}
    check(protocols == {"h2": "http2", "auto_h2": "auto", "auto_h1": "auto", "h2_to_h1": "http2"},
          "/clusters names each cluster's protocol", repr(protocols))
    config_json = tm.admin_json(ap, "/config")
    protocols = {c["name"]: c.get("protocol") for c in config_json["clusters"]}
    check(protocols == {"h2": "http2", "auto_h2": "auto", "auto_h1": "auto", "h2_to_h1": "http2"},
          "/config names each cluster's protocol", repr(protocols))
    hu.stop_and_check(sl)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_http2_and_auto_over_tls])

#!/usr/bin/env python3
"""Regressions for bugs found in review (each case failed on the old behaviour):

- `sluice probe` with a name whose label is 64 bytes long (or empty) and a DNS server on a
  closed port: exits at once with a distinct status and a one-line reason; no crash, no
  sanitizer report (c-ares answered such a name inside ares_query and the lookup was freed
  while it was still being sent; a release build does not crash on that, so on a build
  without ASan the 64-byte case is also run under valgrind when it is installed);
- a static cluster with 4097 endpoints is a located config error (`at most 4096
  endpoints`); 4096 are accepted;
- an upgrade request (GET, `Connection: Upgrade`, `Upgrade: websocket`) to a cluster with no
  healthy endpoint (panic_threshold 0) is answered at once with 503 `no healthy endpoint in
  cluster app`, not with a 504 after the 15 s route timeout;
- a request cut short by the client while the backend is still working (a GET, then an RST;
  a POST whose body stops, then a FIN) is still written to the access log, with flag
  `incomplete`, and counted in the request duration histogram of /metrics (a plain FIN
  after a complete request is a half-close that sluice still answers, so it is not used);
- an idle admin connection (which is now closed after 60 s) stays open for the first
  seconds, while the admin endpoint keeps answering other clients.
"""

import json
import mmap
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
from http_backend import HttpBackend  # noqa: E402
import http_util as hu  # noqa: E402

ADMIN_RE = re.compile(r"admin listening on 127\.0\.0\.1:(\d+)")
SANITIZER_RE = re.compile(r"(ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: \w+Sanitizer)")


# --------------------------------------------------------------------------
# helpers


def tmp_dir():
    d = tempfile.mkdtemp(prefix="sluice-rr-")
    harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def make_config(listeners, clusters, workers=2, admin=False):
    cfg = {"workers": workers, "log_level": "debug", "drain_timeout": "5s"}
    if admin:
        cfg["admin"] = {"address": "127.0.0.1:0"}
    cfg["listeners"] = listeners
    cfg["clusters"] = clusters
    return harness.to_yaml(hu._quote(cfg)) + "\n"


def start(listeners, clusters, workers=2, admin=False):
    """Starts sluice; returns (Sluice, admin port or None)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            sl = harness.Sluice(make_config(listeners, clusters, workers, admin))
            break
        except OSError as e:
            # the binary is being replaced by a rebuild
            if time.monotonic() > deadline:
                raise
            info("cannot start %s (%s); waiting for it" % (harness.sluice_bin(), e))
            harness.wait_until(lambda: os.access(harness.sluice_bin(), os.X_OK), 10, 0.2)
    if not admin:
        return sl, None
    line = sl.wait_log(ADMIN_RE, 5)
    if not line:
        raise harness.CheckFailed_with("no 'admin listening on 127.0.0.1:PORT' line", sl.stderr_text())
    return sl, int(ADMIN_RE.search(line).group(1))


def closed_udp_port():
    """A UDP port on 127.0.0.1 nobody listens on (queries to it get ICMP port unreachable)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def describe(p, elapsed):
    return "exit %s after %.2f s\nstdout:\n%s\nstderr:\n%s" % (p.returncode, elapsed, p.stdout, p.stderr)


def read_log(path):
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"_bad": line})
    return out


def histogram_count(ap, listener):
    """sluice_http_request_duration_seconds_count{listener=...} from /metrics (None if absent)."""
    r = hu.request_once(ap, "GET", "/metrics", host="admin", timeout=5)
    if r.status != 200:
        return None
    pat = re.compile(r'^sluice_http_request_duration_seconds_count\{([^}]*)\}\s+(\S+)\s*$')
    for line in r.body.decode("utf-8", "replace").splitlines():
        m = pat.match(line)
        if m and 'listener="%s"' % listener in m.group(1):
            return float(m.group(2))
    return None


# --------------------------------------------------------------------------
# cases


def case_probe_invalid_dns_names():
    port = closed_udp_port()
    server = "127.0.0.1:%d" % port
    long_name = "a" * 64 + ".example"
    for name in (long_name, "a..example"):
        short = name if len(name) < 20 else "'a'*64 + '.example'"
        for args in (["--dns", name], ["http://%s/" % name]):
            form = "--dns NAME" if args[0] == "--dns" else "URL"
            env = dict(os.environ)
            env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
            t0 = time.monotonic()
            p = subprocess.run([harness.sluice_bin(), "probe"] + args + ["--dns-server", server],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=30, preexec_fn=harness.die_with_parent, env=env)
            elapsed = time.monotonic() - t0
            what = "probe %s %s (DNS server on closed port %d)" % (form, short, port)
            check(p.returncode >= 0, "%s: not killed by a signal (rc %d)" % (what, p.returncode),
                  describe(p, elapsed))
            check(not SANITIZER_RE.search(p.stderr), "%s: no sanitizer report" % what, describe(p, elapsed))
            check(p.returncode in (2, 3, 4), "%s: exit status 2, 3 or 4 (%d)" % (what, p.returncode),
                  describe(p, elapsed))
            lines = p.stderr.strip().splitlines()
            check(len(lines) == 1 and lines[0].startswith("sluice probe: "),
                  "%s: one stderr line 'sluice probe: <reason>': %r" % (what, lines[0] if lines else ""),
                  describe(p, elapsed))
            check(elapsed < 3.0, "%s: quick (%.2f s)" % (what, elapsed), describe(p, elapsed))
            if name == long_name:
                check(p.returncode == 4, "%s: exit 4 (DNS failure)" % what, describe(p, elapsed))
                memcheck(args + ["--dns-server", server], what)


def asan_binary():
    """Whether the binary carries AddressSanitizer (linked statically or not)."""
    with open(harness.sluice_bin(), "rb") as f:
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return m.find(b"__asan_init") != -1


def memcheck(args, what):
    """The same probe under valgrind (for a build without ASan): the old code read a lookup
    that c-ares had already answered and freed inside ares_query; a release build does not
    crash on that, so only a memory checker sees it."""
    if asan_binary():
        info("%s: ASan build: its own checks cover memory errors (no valgrind)" % what)
        return
    if not shutil.which("valgrind"):
        info("%s: valgrind not installed: no memory check on a build without ASan" % what)
        return
    t0 = time.monotonic()
    p = subprocess.run(["valgrind", "-q", "--error-exitcode=99", harness.sluice_bin(), "probe"] + args,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=60, preexec_fn=harness.die_with_parent)
    elapsed = time.monotonic() - t0
    errs = [l for l in p.stderr.splitlines() if l.startswith("==")]
    check(p.returncode != 99 and not errs, "%s: under valgrind, no memory error (exit %d)" % (what, p.returncode),
          "\n".join(errs[:40]) or describe(p, elapsed))


def endpoints_yaml(n):
    head = ("listeners:\n"
            "  - name: tcp_in\n"
            "    address: 127.0.0.1:0\n"
            "    protocol: tcp\n"
            "    cluster: big\n"
            "clusters:\n"
            "  - name: big\n"
            "    connect_timeout: 1s\n"
            "    endpoints:\n")
    eps = "".join("      - address: 127.0.0.1:%d\n" % (10000 + i) for i in range(n))
    return head + eps, head.count("\n") + 1, len("      ") + 1


def case_endpoint_count_limit():
    d = tmp_dir()
    for n in (4097, 4096):
        text, line, col = endpoints_yaml(n)
        path = os.path.join(d, "eps%d.yaml" % n)
        with open(path, "w") as f:
            f.write(text)
        t0 = time.monotonic()
        p = harness.run_sluice_cmd(["check", "-c", path], timeout=60)
        elapsed = time.monotonic() - t0
        if n == 4097:
            want = "%s:%d:%d: clusters[0].endpoints: at most 4096 endpoints" % (path, line, col)
            check(p.returncode == 1, "sluice check, a cluster with 4097 endpoints: exit 1 (%d)" % p.returncode,
                  describe(p, elapsed))
            check(want in p.stderr.splitlines(),
                  "stderr: 'FILE:%d:%d: clusters[0].endpoints: at most 4096 endpoints'" % (line, col),
                  describe(p, elapsed))
        else:
            check(p.returncode == 0, "sluice check, a cluster with 4096 endpoints: exit 0 (%d, %.2f s)" %
                  (p.returncode, elapsed), describe(p, elapsed))
        check(not SANITIZER_RE.search(p.stderr), "%d endpoints: no sanitizer report" % n, p.stderr[-4000:])


def case_upgrade_with_no_healthy_endpoint():
    b = HttpBackend("a")
    hc = {"type": "http", "interval": "1s", "jitter": "0ms", "timeout": "1s", "healthy_threshold": 1,
          "unhealthy_threshold": 1, "http": {"path": "/status/503"}}
    sl, _ = start([hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])],
                  [hu.cluster("app", [b], health_check=hc, panic_threshold=0)])
    port = sl.port("web")
    check(sl.wait_log("cluster app: endpoint %s is unhealthy" % b.address, 5),
          "the only endpoint fails its health check (503): unhealthy", hu.log_tail(sl, 20))
    want_body = b"no healthy endpoint in cluster app\n"

    # a plain request first: the local 503 as usual
    t0 = time.monotonic()
    r = hu.request_once(port, "GET", "/plain", timeout=5)
    took = time.monotonic() - t0
    check(r.status == 503 and r.body == want_body and took < 1.0,
          "a plain GET: 503 'no healthy endpoint in cluster app' (%.3f s)" % took, r.describe())

    # the upgrade: the route timeout is left at its default (15 s); the answer must not wait for it
    c = hu.Client(port, timeout=5)
    headers = [("Connection", "Upgrade"), ("Upgrade", "websocket"),
               ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]
    t0 = time.monotonic()
    try:
        r = c.request("GET", "/ws/upgrade", headers)
    except Exception as e:
        took = time.monotonic() - t0
        c.close()
        check(False, "GET /ws/upgrade with Upgrade: websocket answered (%r after %.2f s)" % (e, took),
              hu.log_tail(sl, 20))
    took = time.monotonic() - t0
    check(r.status == 503 and r.body == want_body,
          "GET with Connection: Upgrade, Upgrade: websocket: 503 'no healthy endpoint in cluster app' (%d)" %
          r.status, r.describe())
    check(took < 1.0, "answered promptly (%.3f s < 1 s), not after the route timeout" % took, r.describe())
    how, extra, waited = c.wait_closed(3)
    info("after the 503 the client connection: %s after %.3f s (%d more bytes)" % (how, waited, len(extra)))
    c.close()
    check(not b.requests_for(lambda x: "/ws/" in x["target"]), "nothing reached the backend",
          repr(b.stats()))
    hu.stop_and_check(sl)


def cut_short(sl, b, path, port, ap, label, target, request, rst, count_before):
    """Sends `request`, waits until the backend has it, closes (with an RST when rst) about
    100 ms later; checks the access log line (flag incomplete) and the histogram count."""
    c = hu.Client(port, timeout=5)
    me = "127.0.0.1:%d" % c.sock.getsockname()[1]
    c.send(request)
    reached = harness.wait_until(lambda: b.requests_for(lambda x: x["target"] == target), 3)
    check(reached, "%s: the request reached the backend" % label, repr(b.stats()))
    # the request stays in flight a moment (not synchronisation: the backend already has it)
    time.sleep(0.1)
    if rst:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()
    closed_at = time.monotonic()

    def entries():
        return [e for e in read_log(path) if e.get("target") == target]
    got = harness.wait_until(entries, 3, 0.01)
    waited = time.monotonic() - closed_at
    check(got and len(got) == 1, "%s: one access log line for it (%.3f s after the close)" % (label, waited),
          "\n".join(json.dumps(e) for e in read_log(path)) + "\n" + hu.log_tail(sl, 15))
    e = got[0]
    info("%s: line: %s" % (label, json.dumps(e)))
    check("incomplete" in e.get("flags", []), "%s: its flags include 'incomplete' (%r)" % (label, e.get("flags")),
          json.dumps(e, indent=1))
    check(e.get("downstream") == me, "%s: it is this client's request (downstream %s)" % (label, me),
          json.dumps(e, indent=1))
    check(waited < 1.5, "%s: logged when the client went away, not after the backend's 2 s (%.3f s)" %
          (label, waited), "")
    ok = harness.wait_until(lambda: histogram_count(ap, "web") == count_before + 1, 3, 0.02)
    check(ok, "%s: /metrics request duration histogram count includes it (%r, was %d)" %
          (label, histogram_count(ap, "web"), count_before), "")


def case_cut_short_request_logged_and_counted():
    b = HttpBackend("a")
    d = tmp_dir()
    path = os.path.join(d, "access.log")
    lst = hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}], access_log={"path": path})
    sl, ap = start([lst], [hu.cluster("app", [b])], admin=True)
    port = sl.port("web")

    # one complete request first, so the histogram count is known to move
    r = hu.request_once(port, "GET", "/ok/first")
    check(r.status == 200, "GET /ok/first: 200", r.describe())
    base = harness.wait_until(lambda: histogram_count(ap, "web") == 1, 3, 0.02)
    check(base, "/metrics: request duration histogram count for listener web is 1",
          "count %r" % histogram_count(ap, "web"))

    # a complete GET, then the client resets its connection while the backend works on it
    # (a plain FIN after a complete request is a half-close: sluice still answers it)
    cut_short(sl, b, path, port, ap, "GET /delay/2000/cut, client RST", "/delay/2000/cut",
              hu.build_request("GET", "/delay/2000/cut"), True, 1)
    # a POST whose body never finishes, then the client closes (FIN)
    req = hu.build_request("POST", "/delay/2000/partial", [("Content-Length", "1000")]) + b"x" * 100
    cut_short(sl, b, path, port, ap, "POST /delay/2000/partial, 100 of 1000 body bytes, client FIN",
              "/delay/2000/partial", req, False, 2)
    r = hu.request_once(port, "GET", "/ok/after")
    check(r.status == 200, "sluice still serves: GET /ok/after 200", r.describe())
    hu.stop_and_check(sl)


def case_admin_idle_connection_not_closed_early():
    b = HttpBackend("a")
    sl, ap = start([hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])],
                   [hu.cluster("app", [b])], admin=True)
    idle = [harness.connect(ap, timeout=5) for _ in range(3)]
    t0 = time.monotonic()
    # meanwhile other clients are answered: fresh connections and one keep-alive connection
    fresh = [hu.request_once(ap, "GET", "/live", host="admin", timeout=5) for _ in range(5)]
    check(all(r.status == 200 and r.body == b"live\n" for r in fresh),
          "with 3 idle admin connections open, 5 GET /live on new connections: 200 live",
          repr([r.describe() for r in fresh]))
    ka = hu.Client(ap, timeout=5)
    rs = [ka.request("GET", "/live", host="admin") for _ in range(5)]
    check(all(r.status == 200 and r.body == b"live\n" for r in rs),
          "5 GET /live on one keep-alive connection: 200 live", repr(rs))
    ka.close()
    results = {}

    def watch(i, s):
        left = max(0.0, 2.0 - (time.monotonic() - t0))
        results[i] = harness.recv_until_closed(s, left)

    ths = [threading.Thread(target=watch, args=(i, s), daemon=True) for i, s in enumerate(idle)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(10)
    hows = [results.get(i, (b"", "?"))[1] for i in range(len(idle))]
    check(hows == ["timeout"] * len(idle),
          "none of the idle admin connections was closed within 2 s (%r)" % hows, hu.log_tail(sl, 15))
    # and each one still works
    for i, s in enumerate(idle):
        s.settimeout(5)
        s.sendall(hu.build_request("GET", "/live", host="admin"))
        r = hu.read_response(hu.SockReader(s))
        check(r.status == 200 and r.body == b"live\n",
              "idle admin connection %d, used after %.1f s: GET /live 200 live" % (i, time.monotonic() - t0),
              r.describe())
        s.close()
    hu.stop_and_check(sl)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_probe_invalid_dns_names, case_endpoint_count_limit,
                       case_upgrade_with_no_healthy_endpoint, case_cut_short_request_logged_and_counted,
                       case_admin_idle_connection_not_closed_early])

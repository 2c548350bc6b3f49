#!/usr/bin/env python3
"""gRPC health checks (`health_check: {type: grpc}`) against real gRPC servers (grpcio).

The gRPC server (grpc_health_server.py, a process of its own) implements
grpc.health.v1.Health/Check with raw bytes (Debian has no grpc_health module): it decodes
HealthCheckRequest{service} by hand and answers HealthCheckResponse{status} for the services
it knows, NOT_FOUND for the others; the test flips a service's status between SERVING and
NOT_SERVING by rewriting the server's status file.

- serving endpoints are healthy ("SERVING"); one flipped to NOT_SERVING is logged unhealthy
  with "NOT_SERVING", /clusters on the admin API says health_check_failed and last_check
  "NOT_SERVING", and requests routed to the cluster stop reaching it; back to SERVING, it is
  healthy and gets traffic again (each endpoint is a mux: HTTP/2 connections go to its gRPC
  server, HTTP/1.1 requests are answered by the endpoint itself, so traffic and checks reach
  the same address);
- `service:` is sent in the request; an unknown service is NOT_FOUND (grpc-status 5) and the
  endpoint unhealthy; a gRPC server without the Health service: grpc-status 12
  (UNIMPLEMENTED); a plain HTTP/1.1 backend: "no HTTP/2: ...";
- over TLS: ALPN h2 is offered and the check passes against a TLS gRPC server; a TLS server
  that does not choose h2 fails with "no HTTP/2: ...";
- an endpoint that accepts and never answers: "timed out after 300ms";
- the request as an h2-library server sees it (every field; :authority by default the
  endpoint's address, or the cluster's name for a DNS cluster, or as configured; the body), a trailers-only UNAVAILABLE and an HTTP 503 answer;
- `sluice check` on the new keys: `FILE:LINE:COL: key.path: message`.
"""

import importlib.util
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
from http_backend import HttpBackend, PeerClosed, SockReader, parse_head  # noqa: E402
import http_util as hu  # noqa: E402

HAVE_GRPC = importlib.util.find_spec("grpc") is not None  # Debian's python3-grpcio
SERVER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grpc_health_server.py")
UNKNOWN, SERVING, NOT_SERVING = 0, 1, 2
ADMIN_RE = re.compile(r"admin listening on 127\.0\.0\.1:(\d+)")


# --------------------------------------------------------------------------
# the gRPC health server


class GrpcHealthServer:
    """grpc_health_server.py in a process of its own, on 127.0.0.1:<ephemeral>. `statuses`
    maps a service name to the serving status it reports (set_status flips one); an unknown
    service gets NOT_FOUND. With health=False the server has no Health service at all
    (UNIMPLEMENTED). `checks` lists (service, user-agent) per Check call."""

    def __init__(self, statuses=None, health=True, cert=None):
        self._lock = threading.Lock()
        self.statuses = dict(statuses if statuses is not None else {"": SERVING})
        self.checks = []
        self.dir = tempfile.mkdtemp(prefix="sluice-grpc-")
        self.status_file = os.path.join(self.dir, "statuses.json")
        self._write()
        args = ["/usr/bin/python3", SERVER_SCRIPT, "--status-file", self.status_file]
        if cert:
            args += ["--cert", cert.chain, "--key", cert.key]
        if not health:
            args.append("--no-health")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     preexec_fn=harness.die_with_parent)
        harness.register_cleanup(self.stop)
        ready = threading.Event()
        self.port = None

        def read():
            for line in self.proc.stdout:
                if line.startswith("listening "):
                    self.port = int(line.split()[1])
                    ready.set()
                elif line.startswith("{"):
                    c = json.loads(line)
                    with self._lock:
                        self.checks.append((c["service"], c["user_agent"]))
            ready.set()
        threading.Thread(target=read, daemon=True).start()
        ready.wait(20)
        if self.port is None:
            raise harness.CheckFailed_with("the gRPC server did not start", "")
        self.address = "127.0.0.1:%d" % self.port

    def _write(self):
        tmp = self.status_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.statuses, f)
        os.replace(tmp, self.status_file)  # the server never reads half a file

    def set_status(self, service, status):
        """Returns the number of checks answered so far (taken before the change)."""
        with self._lock:
            n = len(self.checks)
            self.statuses[service] = status
            self._write()
            return n

    def answered(self):
        with self._lock:
            return len(self.checks)

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _relay(src, dst):
    harness.copy_until_eof(src, dst)
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class MuxBackend(harness.TcpServer):
    """One address for traffic and checks: a connection that opens with the HTTP/2 preface is
    relayed to the gRPC server; HTTP/1.1 requests get 200 with X-Backend: name and are
    counted."""

    def __init__(self, name, grpc_server):
        self.name = name
        self.grpc = grpc_server
        self.traffic = 0
        super().__init__()

    def handle(self, conn):
        deadline = time.monotonic() + 5
        first = b""
        while len(first) < 4 and time.monotonic() < deadline:
            first = conn.recv(4, socket.MSG_PEEK)
            if not first:
                return
        if first.startswith(b"PRI "):
            up = socket.create_connection(("127.0.0.1", self.grpc.port), timeout=5)
            up.settimeout(None)
            t = threading.Thread(target=_relay, args=(up, conn), daemon=True)
            t.start()
            _relay(conn, up)
            t.join(5)
            up.close()
            return
        reader = SockReader(conn)
        while not self._stop.is_set():
            try:
                head = reader.read_until(b"\r\n\r\n", 1 << 16)
            except (PeerClosed, OSError):
                return
            parse_head(head)
            with self._lock:
                self.traffic += 1
            body = self.name.encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Backend: %s\r\nContent-Length: %d\r\n\r\n%s" %
                         (body, len(body), body))


class H2HealthServer(harness.TcpServer):
    """A gRPC health endpoint written with the h2 library, to see the request as it was on the
    wire (every field, the body) and to answer in shapes grpcio does not make: `answer` is
    "serving" (head, message, trailers), "trailers_only" (a head with grpc-status 14 that ends
    the stream) or "503"."""

    def __init__(self, answer="serving"):
        self.answer = answer
        self.requests = []  # (fields as a list of (name, value), body)
        super().__init__()

    def handle(self, conn):
        import h2.config
        import h2.connection
        import h2.events
        c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False,
                                                                         header_encoding="utf-8"))
        c.initiate_connection()
        conn.sendall(c.data_to_send())
        fields, bodies = {}, {}
        while not self._stop.is_set():
            data = conn.recv(65536)
            if not data:
                return
            for ev in c.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    fields[ev.stream_id] = list(ev.headers)
                    bodies[ev.stream_id] = b""
                elif isinstance(ev, h2.events.DataReceived):
                    bodies[ev.stream_id] += ev.data
                    c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    sid = ev.stream_id
                    with self._lock:
                        self.requests.append((fields[sid], bodies[sid]))
                    grpc_type = ("content-type", "application/grpc")
                    if self.answer == "503":
                        c.send_headers(sid, [(":status", "503"), grpc_type], end_stream=True)
                    elif self.answer == "trailers_only":
                        c.send_headers(sid, [(":status", "200"), grpc_type, ("grpc-status", "14"),
                                             ("grpc-message", "draining%21")], end_stream=True)
                    else:
                        c.send_headers(sid, [(":status", "200"), grpc_type])
                        c.send_data(sid, b"\x00\x00\x00\x00\x02\x08\x01")
                        c.send_headers(sid, [("grpc-status", "0")], end_stream=True)
            conn.sendall(c.data_to_send())


class NoH2TlsServer(harness.TcpServer):
    """A TLS server whose ALPN chooses http/1.1 (or nothing when the client offers only h2)."""

    def __init__(self, cert):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert.chain, cert.key)
        self.ctx.set_alpn_protocols(["http/1.1"])
        self.handshakes = 0
        super().__init__()

    def handle(self, conn):
        conn.settimeout(5)
        with self.ctx.wrap_socket(conn, server_side=True) as s:
            with self._lock:
                self.handshakes += 1
            try:
                s.recv(1024)
            except (OSError, ssl.SSLError):
                pass


# --------------------------------------------------------------------------
# helpers


def route(cluster="app"):
    return {"match": {"prefix": "/"}, "cluster": cluster}


def grpc_check(**kw):
    hc = {"type": "grpc", "interval": "100ms", "jitter": "0ms", "timeout": "2s", "healthy_threshold": 1,
          "unhealthy_threshold": 1}
    hc.update(kw)
    return hc


def start(clusters, routes=None):
    cfg = {"workers": 2, "log_level": "debug", "drain_timeout": "5s", "admin": {"address": "127.0.0.1:0"},
           "listeners": [hu.simple_listener(routes or [route()])], "clusters": clusters}
    sl = harness.Sluice(harness.to_yaml(hu._quote(cfg)) + "\n", ready_timeout=20)
    line = sl.wait_log(ADMIN_RE, 10)
    check(line is not None, "the admin API listens", hu.log_tail(sl))
    return sl, int(ADMIN_RE.search(line).group(1))


def endpoint_states(admin, cluster="app"):
    """{address: (health_check_failed, last_check)} from GET /clusters."""
    r = hu.request_once(admin, "GET", "/clusters", host="admin", timeout=5)
    for c in json.loads(r.body):
        if c["name"] == cluster:
            return {e["address"]: (e["health_check_failed"], e["last_check"]) for e in c["endpoints"]}
    return {}


def unhealthy_line(addr, detail, cluster="app"):
    return "cluster %s: endpoint %s is unhealthy: %s (health check)" % (cluster, addr, detail)


def healthy_line(addr, detail="SERVING", cluster="app"):
    return "cluster %s: endpoint %s is healthy: %s (health check)" % (cluster, addr, detail)


def count_backends(port, n):
    c = hu.Client(port, timeout=10)
    counts, bad = {}, []
    try:
        for i in range(n):
            r = c.request("GET", "/t/%d" % i)
            if r.status != 200:
                bad.append(r.status)
            else:
                counts[r.header("x-backend")] = counts.get(r.header("x-backend"), 0) + 1
    finally:
        c.close()
    return counts, bad


def wait_counts(port, want, timeout=5):
    """Polls until fresh requests are spread as `want` (the main thread logs a change before
    the workers have the new snapshot); returns the last counts."""
    last = [None]

    def ok():
        last[0] = count_backends(port, sum(want.values()))
        return last[0] == (want, [])
    harness.wait_until(ok, timeout, 0.02)
    return last[0]


def wait_state(admin, want, timeout=5):
    last = [None]

    def ok():
        last[0] = endpoint_states(admin)
        return last[0] == want
    harness.wait_until(ok, timeout, 0.02)
    return last[0]


# --------------------------------------------------------------------------
# cases


def case_serving_not_serving_and_back():
    ga, gb = GrpcHealthServer(), GrpcHealthServer()
    a, b = MuxBackend("a", ga), MuxBackend("b", gb)
    sl, admin = start([hu.cluster("app", [a, b], health_check=grpc_check(), panic_threshold=0)])
    port = sl.port("web")
    for x in (a, b):
        check(sl.find_lines(healthy_line(x.address)), "endpoint %s logged healthy: SERVING" % x.name,
              hu.log_tail(sl))
    check(endpoint_states(admin) == {a.address: (False, "SERVING"), b.address: (False, "SERVING")},
          "/clusters: neither endpoint has health_check_failed, last_check SERVING", repr(endpoint_states(admin)))
    # The server reports each call on its stdout, read by a thread here: wait for it.
    harness.wait_until(lambda: ga.answered() >= 1, 5)
    with ga._lock:
        first = list(ga.checks)
    check(first and first[0] == ("", "sluice-health"),
          "the check asked for the whole server (service \"\"), user-agent sluice-health", repr(first[:3]))
    counts = wait_counts(port, {"a": 5, "b": 5})
    check(counts == ({"a": 5, "b": 5}, []), "10 requests: 5 to each endpoint", repr(counts))

    start_line = sl.line_count()
    ga.set_status("", NOT_SERVING)
    line = sl.wait_log(unhealthy_line(a.address, "NOT_SERVING"), 5, start_line)
    check(line is not None, "NOT_SERVING: logged '%s'" % unhealthy_line(a.address, "NOT_SERVING"),
          sl.stderr_text(start_line))
    want = {a.address: (True, "NOT_SERVING"), b.address: (False, "SERVING")}
    state = wait_state(admin, want)
    check(state == want, "/clusters: a has health_check_failed (last_check NOT_SERVING), b not", repr(state))
    wait_counts(port, {"b": 4})
    t0 = a.traffic
    counts = count_backends(port, 10)
    check(counts == ({"b": 10}, []) and a.traffic == t0,
          "10 requests: all to b, none reached a", repr((counts, a.traffic - t0)))

    start_line = sl.line_count()
    ga.set_status("", SERVING)
    check(sl.wait_log(healthy_line(a.address), 5, start_line) is not None,
          "SERVING again: logged '%s'" % healthy_line(a.address), sl.stderr_text(start_line))
    want = {a.address: (False, "SERVING"), b.address: (False, "SERVING")}
    state = wait_state(admin, want)
    check(state == want, "/clusters: no endpoint has health_check_failed", repr(state))
    counts = wait_counts(port, {"a": 5, "b": 5})
    check(counts == ({"a": 5, "b": 5}, []), "10 requests: 5 to each endpoint again", repr(counts))
    hu.stop_and_check(sl)


def case_service_name_and_unknown_service():
    g = GrpcHealthServer({"app.Api": SERVING, "": NOT_SERVING})
    known, unknown = MuxBackend("known", g), MuxBackend("unknown", g)
    sl, admin = start([hu.cluster("app", [known], health_check=grpc_check(service="app.Api", interval="10s")),
                       hu.cluster("other", [unknown], health_check=grpc_check(service="no.Such", interval="10s"))],
                      routes=[route()])
    check(sl.find_lines(healthy_line(known.address)), "service app.Api SERVING: healthy", hu.log_tail(sl))
    line = unhealthy_line(unknown.address, "grpc-status 5 (NOT_FOUND): unknown service", "other")
    check(sl.find_lines(line), "unknown service: logged '%s'" % line, hu.log_tail(sl))
    def services():
        with g._lock:
            return sorted(set(s for s, _ in g.checks))
    harness.wait_until(lambda: services() == ["app.Api", "no.Such"], 5)
    check(services() == ["app.Api", "no.Such"], "the requests named the configured services", repr(services()))
    r = hu.request_once(admin, "GET", "/config", host="admin", timeout=5)
    hcs = {c["name"]: c.get("health_check", {}) for c in json.loads(r.body)["clusters"]}
    got = {n: (h.get("type"), h.get("service")) for n, h in hcs.items()}
    check(got == {"app": ("grpc", "app.Api"), "other": ("grpc", "no.Such")},
          "/config shows type grpc and the service of each cluster's check", repr(hcs))
    want = {unknown.address: (True, "grpc-status 5 (NOT_FOUND): unknown service")}
    check(endpoint_states(admin, "other") == want, "/clusters: other's endpoint failed its check, with the reason",
          repr(endpoint_states(admin, "other")))
    hu.stop_and_check(sl)


def case_not_grpc_endpoints():
    plain = HttpBackend("plain")
    no_health = GrpcHealthServer(health=False)
    hold = harness.HoldServer()
    good = GrpcHealthServer()
    sl, admin = start([hu.cluster("app", [plain, no_health, hold.address, good],
                                  health_check=grpc_check(interval="10s", timeout="300ms"))])
    lines = [unhealthy_line(plain.address, "no HTTP/2: the upstream answered in HTTP/1, not HTTP/2"),
             unhealthy_line(no_health.address, "grpc-status 12 (UNIMPLEMENTED): Method not found!"),
             unhealthy_line(hold.address, "timed out after 300ms"),
             healthy_line(good.address)]
    for want in lines:
        check(sl.find_lines(want), "logged '%s'" % want, hu.log_tail(sl))
    want = {plain.address: (True, "no HTTP/2: the upstream answered in HTTP/1, not HTTP/2"),
            no_health.address: (True, "grpc-status 12 (UNIMPLEMENTED): Method not found!"),
            hold.address: (True, "timed out after 300ms"), good.address: (False, "SERVING")}
    check(endpoint_states(admin) == want, "/clusters: only the gRPC server with Health passes; last_check says why",
          repr(endpoint_states(admin)))
    hu.stop_and_check(sl)


def case_request_on_the_wire():
    plain, named, by_name = H2HealthServer(), H2HealthServer(), H2HealthServer()
    only, down = H2HealthServer("trailers_only"), H2HealthServer("503")
    sl, admin = start([hu.cluster("app", [plain, only, down], health_check=grpc_check(interval="10s")),
                       hu.cluster("named", [named], health_check=grpc_check(
                           interval="10s", service="app.Api", authority="api.example:50051")),
                       hu.cluster("dns", ["localhost:%d" % by_name.port], type="logical_dns",
                                  health_check=grpc_check(interval="10s"))])
    want = sorted([(":method", "POST"), (":scheme", "http"), (":authority", plain.address),
                   (":path", "/grpc.health.v1.Health/Check"), ("content-type", "application/grpc"),
                   ("te", "trailers"), ("user-agent", "sluice-health")])
    with plain._lock:
        got = list(plain.requests)
    check(len(got) == 1 and sorted(got[0][0]) == want,
          "the request's fields: POST, :authority the endpoint's address, content-type "
          "application/grpc, te trailers, user-agent sluice-health (and nothing else)", repr(got))
    check(got[0][1] == b"\x00\x00\x00\x00\x00", "the body: an empty HealthCheckRequest behind the 5-byte prefix",
          repr(got[0][1]))
    with named._lock:
        got = list(named.requests)
    fields = dict(got[0][0]) if got else {}
    check(fields.get(":authority") == "api.example:50051", "authority: sets :authority", repr(got))
    check(got[0][1] == b"\x00\x00\x00\x00\x09\x0a\x07app.Api",
          "the body carries service app.Api (tag 0x0a, length 7)", repr(got[0][1]))
    with by_name._lock:
        got = list(by_name.requests)
    fields = dict(got[0][0]) if got else {}
    check(fields.get(":authority") == "localhost:%d" % by_name.port,
          "a logical_dns cluster: :authority is its name and port (localhost:%d)" % by_name.port, repr(got))
    for want_line in [healthy_line(plain.address), healthy_line(named.address, cluster="named"),
                      unhealthy_line(only.address, "grpc-status 14 (UNAVAILABLE): draining!"),
                      unhealthy_line(down.address, "HTTP status 503")]:
        check(sl.find_lines(want_line), "logged '%s'" % want_line, hu.log_tail(sl))
    want = {plain.address: (False, "SERVING"), only.address: (True, "grpc-status 14 (UNAVAILABLE): draining!"),
            down.address: (True, "HTTP status 503")}
    check(endpoint_states(admin) == want, "/clusters: the trailers-only and 503 endpoints failed their check",
          repr(endpoint_states(admin)))
    hu.stop_and_check(sl)


def case_tls():
    import tls_pki
    cert = tls_pki.leaf(["localhost"], ["127.0.0.1"])
    g = GrpcHealthServer(cert=cert)
    plain_tls = NoH2TlsServer(cert)
    tls = {"ca": tls_pki.default().ca_file}
    sl, admin = start([hu.cluster("app", [g, plain_tls.address], tls=tls,
                                  health_check=grpc_check(interval="10s"))])
    check(sl.find_lines(healthy_line(g.address)), "TLS gRPC server (ALPN h2): healthy", hu.log_tail(sl))
    line = unhealthy_line(plain_tls.address, "no HTTP/2: the endpoint chose no protocol by ALPN (h2 offered)")
    check(sl.find_lines(line), "TLS server without h2: logged '%s'" % line, hu.log_tail(sl))
    # The server's side of the handshake may end a moment after sluice's did.
    harness.wait_until(lambda: plain_tls.handshakes >= 1, 5)
    check(plain_tls.handshakes >= 1, "the handshake with it completed", repr(plain_tls.handshakes))
    want = {g.address: (False, "SERVING"),
            plain_tls.address: (True, "no HTTP/2: the endpoint chose no protocol by ALPN (h2 offered)")}
    check(endpoint_states(admin) == want, "/clusters: the gRPC server passes, the other fails",
          repr(endpoint_states(admin)))
    hu.stop_and_check(sl)


# --------------------------------------------------------------------------
# config errors

BASE = """\
listeners:
  - name: web
    address: 127.0.0.1:0
    protocol: http
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            cluster: app
clusters:
  - name: app
    connect_timeout: 1s
    health_check:
#EXTRA
    endpoints:
      - address: 127.0.0.1:8081
"""


def config_error_cases():
    """(name, health_check lines, needle, key path, exact message)"""
    return [
        ("service_with_http", "      type: http\n      service: app.Api\n", "app.Api",
         "clusters[0].health_check.service", "only for type: grpc"),
        ("authority_with_tcp", "      type: tcp\n      authority: api.example\n", "api.example",
         "clusters[0].health_check.authority", "only for type: grpc"),
        ("unknown_type", "      type: grpc2\n", "grpc2", "clusters[0].health_check.type",
         "expected one of: tcp, http, grpc, got 'grpc2'"),
        ("authority_with_path", "      type: grpc\n      authority: api.example/x\n", "api.example/x",
         "clusters[0].health_check.authority",
         "expected host or host:port without spaces, '/', '@' or control characters"),
        ("http_block_with_grpc", "      type: grpc\n      http: {path: /hc}\n", "{path",
         "clusters[0].health_check.http", "only for type: http"),
    ]


def config_error_case_fns():
    cases = []
    for name, extra, needle, key_path, message in config_error_cases():
        def case(name=name, extra=extra, needle=needle, key_path=key_path, message=message):
            text = BASE.replace("#EXTRA\n", extra)
            d = tempfile.mkdtemp(prefix="sluice-grpc-hc-")
            harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
            path = os.path.join(d, name + ".yaml")
            with open(path, "w") as f:
                f.write(text)
            p = harness.run_sluice_cmd(["check", "-c", path], timeout=10)
            check(p.returncode == 1, "sluice check exits 1", "rc=%d\nstderr: %s" % (p.returncode, p.stderr))
            i = text.index(needle)
            line = text.count("\n", 0, i) + 1
            col = i - text.rindex("\n", 0, i)
            want = "%s:%d:%d: %s: %s" % (path, line, col, key_path, message)
            check(want in p.stderr.splitlines(), "reports 'FILE:%d:%d: %s: %s'" % (line, col, key_path, message),
                  "stderr:\n%s" % p.stderr)
        case.__name__ = "case_config_" + name
        cases.append(case)
    return cases


def case_config_valid_grpc_check():
    text = BASE.replace("#EXTRA\n", "      type: grpc\n      service: app.Api\n      authority: api.example:8443\n")
    d = tempfile.mkdtemp(prefix="sluice-grpc-hc-")
    harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    path = os.path.join(d, "ok.yaml")
    with open(path, "w") as f:
        f.write(text)
    p = harness.run_sluice_cmd(["check", "-c", path], timeout=10)
    check(p.returncode == 0, "sluice check accepts type grpc with service and authority",
          "rc=%d\nstdout: %s\nstderr: %s" % (p.returncode, p.stdout, p.stderr))


if __name__ == "__main__":
    hu.use_default_bin()
    if not HAVE_GRPC:
        print("skipped: python3-grpcio is not installed")
        sys.exit(harness.SKIP_EXIT)
    harness.run_cases([case_serving_not_serving_and_back, case_service_name_and_unknown_service,
                       case_not_grpc_endpoints, case_request_on_the_wire, case_tls, case_config_valid_grpc_check] + config_error_case_fns())

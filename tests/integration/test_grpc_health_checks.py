#!/usr/bin/env python3
"""gRPC health checks (`health_check: {type: grpc}`) against real gRPC servers (grpcio).

The gRPC server implements grpc.health.v1.Health/Check with raw bytes (Debian has no
grpc_health module): it decodes HealthCheckRequest{service} by hand and answers
HealthCheckResponse{status} for the services it knows, NOT_FOUND for the others; the test
flips a service's status between SERVING and NOT_SERVING.

- serving endpoints are healthy ("SERVING"); one flipped to NOT_SERVING is logged unhealthy
  with "NOT_SERVING", /clusters on the admin API says health_check_failed, and requests
  routed to the cluster stop reaching it; back to SERVING, it is healthy and gets traffic
  again (each endpoint is a mux: HTTP/2 connections go to its gRPC server, HTTP/1.1 requests
  are answered by the endpoint itself, so traffic and checks reach the same address);
- `service:` is sent in the request; an unknown service is NOT_FOUND (grpc-status 5) and the
  endpoint unhealthy; a gRPC server without the Health service: grpc-status 12
  (UNIMPLEMENTED); a plain HTTP/1.1 backend: "no HTTP/2: ...";
- over TLS: ALPN h2 is offered and the check passes against a TLS gRPC server; a TLS server
  that does not choose h2 fails with "no HTTP/2: ...";
- an endpoint that accepts and never answers: "timed out after 300ms";
- `sluice check` on the new keys: `FILE:LINE:COL: key.path: message`.
"""

import json
import os
import re
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info  # noqa: E402
from http_backend import HttpBackend, PeerClosed, SockReader, parse_head  # noqa: E402
import http_util as hu  # noqa: E402

try:
    import grpc  # Debian's python3-grpcio
except ImportError:  # pragma: no cover - reported as a skip
    grpc = None

UNKNOWN, SERVING, NOT_SERVING = 0, 1, 2
ADMIN_RE = re.compile(r"admin listening on 127\.0\.0\.1:(\d+)")


# --------------------------------------------------------------------------
# the gRPC health server


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def decode_check_request(data):
    """The service of a HealthCheckRequest (field 1, string); None when malformed."""
    pos, service = 0, ""
    while pos < len(data):
        key = data[pos]
        pos += 1
        if key != 0x0A:
            return None
        n, shift = 0, 0
        while True:
            if pos >= len(data):
                return None
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        service = data[pos:pos + n].decode()
        pos += n
    return service


class GrpcHealthServer:
    """grpcio server on 127.0.0.1:<ephemeral>. `statuses` maps a service name to the serving
    status it reports (set_status flips one); an unknown service gets NOT_FOUND. With
    health=False the server has no Health service at all (UNIMPLEMENTED)."""

    def __init__(self, statuses=None, health=True, cert=None):
        self._lock = threading.Lock()
        self.statuses = dict(statuses if statuses is not None else {"": SERVING})
        self.checks = []  # (service, user-agent) per Check call
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                                  options=[("grpc.so_reuseport", 0)])
        if health:
            handler = grpc.method_handlers_generic_handler(
                "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(self._check)})
            self.server.add_generic_rpc_handlers((handler,))
        if cert:
            with open(cert.key, "rb") as k, open(cert.chain, "rb") as c:
                creds = grpc.ssl_server_credentials([(k.read(), c.read())])
            self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        else:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = "127.0.0.1:%d" % self.port
        self.server.start()
        harness.register_cleanup(self.stop)

    def _check(self, request, context):
        service = decode_check_request(request)
        agent = dict(context.invocation_metadata()).get("user-agent", "")
        with self._lock:
            self.checks.append((service, agent))
            status = self.statuses.get(service)
        if service is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed request")
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return b"\x08" + varint(status) if status else b""

    def set_status(self, service, status):
        """Returns the number of checks answered so far (taken with the change)."""
        with self._lock:
            self.statuses[service] = status
            return len(self.checks)

    def answered(self):
        with self._lock:
            return len(self.checks)

    def stop(self):
        self.server.stop(0)


def _relay(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
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
    """{address: health_check_failed} from GET /clusters."""
    r = hu.request_once(admin, "GET", "/clusters", host="admin", timeout=5)
    for c in json.loads(r.body):
        if c["name"] == cluster:
            return {e["address"]: e["health_check_failed"] for e in c["endpoints"]}
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
    check(endpoint_states(admin) == {a.address: False, b.address: False},
          "/clusters: neither endpoint has health_check_failed", repr(endpoint_states(admin)))
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
    state = wait_state(admin, {a.address: True, b.address: False})
    check(state == {a.address: True, b.address: False}, "/clusters: a has health_check_failed, b not",
          repr(state))
    wait_counts(port, {"b": 4})
    t0 = a.traffic
    counts = count_backends(port, 10)
    check(counts == ({"b": 10}, []) and a.traffic == t0,
          "10 requests: all to b, none reached a", repr((counts, a.traffic - t0)))

    start_line = sl.line_count()
    ga.set_status("", SERVING)
    check(sl.wait_log(healthy_line(a.address), 5, start_line) is not None,
          "SERVING again: logged '%s'" % healthy_line(a.address), sl.stderr_text(start_line))
    state = wait_state(admin, {a.address: False, b.address: False})
    check(state == {a.address: False, b.address: False}, "/clusters: no endpoint has health_check_failed",
          repr(state))
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
    with g._lock:
        services = sorted(set(s for s, _ in g.checks))
    check(services == ["app.Api", "no.Such"], "the requests named the configured services", repr(services))
    check(endpoint_states(admin, "other") == {unknown.address: True}, "/clusters: other's endpoint failed its check",
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
    want = {plain.address: True, no_health.address: True, hold.address: True, good.address: False}
    check(endpoint_states(admin) == want, "/clusters: only the gRPC server with Health passes",
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
    check(plain_tls.handshakes >= 1, "the handshake with it completed", repr(plain_tls.handshakes))
    check(endpoint_states(admin) == {g.address: False, plain_tls.address: True},
          "/clusters: the gRPC server passes, the other fails", repr(endpoint_states(admin)))
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
    if grpc is None:
        print("skipped: python3-grpcio is not installed")
        sys.exit(harness.SKIP_EXIT)
    harness.run_cases([case_serving_not_serving_and_back, case_service_name_and_unknown_service,
                       case_not_grpc_endpoints, case_tls, case_config_valid_grpc_check] + config_error_case_fns())

#!/usr/bin/env python3
"""Happy Eyeballs (RFC 8305) for logical_dns clusters, and on_address_change: close.

A logical_dns cluster resolving with `family: both` has one endpoint, the first address of
the answer in RFC 8305 order (IPv6 first), and every new upstream connection races the
answer's addresses: the next one starts when the previous has not connected within
connection_attempt_delay (default 250ms), or at once when it fails; the first to connect
wins and the others are closed. Checked against a real nsd (dns_server.py) with backends
on [::1]:P and 127.0.0.1:P:

- both families up: every request is answered by the IPv6 backend;
- IPv6 refused: every request reaches the IPv4 backend with no wait for the delay
  (access log upstream_connect well under it);
- IPv6 black-holed (nftables drops TCP to [::1]:P): requests reach the IPv4 backend after
  the delay (default 250ms, and 100ms), and no SYN-SENT socket to [::1]:P outlives the race;
- both families black-holed: the race ends at connect_timeout and leaves no socket behind;
- every address refused: 502 and a log line naming each address with its reason;
- 3 AAAA and 6 A records: tried IPv6 first with the families taking turns, at most 8;
- a TCP listener on the same kind of cluster (IPv6 refused, IPv6 black-holed);
- an active tcp health check races too: with IPv6 black-holed the endpoint is healthy;
- `sluice check`: connection_attempt_delay only on logical_dns and within 10ms..2s;
  on_address_change lists drain, keep, close;
- strict_dns with on_address_change: close: a TCP session to an address that left the
  answer is closed by sluice; with the default (drain) it lives on; an HTTP GET in flight
  to it is cut at once (502 saying why), or re-sent to the new address when retry_on allows;
- logical_dns: the endpoint (the name) stays while its addresses change: a keep-alive
  client moves to the new address when the old one leaves; with close, sessions to an
  address still in the answer live on.

Re-runs itself in a new network namespace (`unshare -n`) so that the nftables rules touch
nothing outside; skips where that, nftables or IPv6 loopback is not available.
"""

import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Skip, check, info, sh  # noqa: E402
import http_util as hu  # noqa: E402
import dns_server as ds  # noqa: E402

Z = "test.sluice"
NAME = "api." + Z
TABLE = "sluice_he_test"
NFT = {"ok": None, "why": ""}


# --------------------------------------------------------------------------
# environment


def need_ipv6():
    if not ds.ipv6_loopback_works():
        raise Skip("IPv6 loopback (::1) does not work here")


def nft_ready():
    """The table and its input chain, once per run; raises Skip when nftables is not usable."""
    if NFT["ok"] is None:
        try:
            sh(["nft", "add", "table", "inet", TABLE])
            sh(["nft", "add chain inet %s input { type filter hook input priority 0; policy accept; }" % TABLE])
            NFT["ok"] = True
        except Exception as e:
            NFT["ok"] = False
            NFT["why"] = str(e)
    if not NFT["ok"]:
        raise Skip("nftables not usable: %s" % NFT["why"])
    if not shutil.which("ss"):
        raise Skip("ss is not installed")


def blackhole(port, family="ip6", daddr="::1"):
    """Drops every TCP packet to daddr:port (inside this namespace). Returns a function giving
    how many packets the rule has dropped so far."""
    nft_ready()
    sh(["nft", "add rule inet %s input %s daddr %s tcp dport %d counter drop" % (TABLE, family, daddr, port)])
    harness.register_cleanup(lambda: sh(["nft", "flush", "chain", "inet", TABLE, "input"], check_rc=False))

    def dropped():
        out = sh(["nft", "list", "chain", "inet", TABLE, "input"]).stdout
        for line in out.splitlines():
            if "%s daddr %s " % (family, daddr) in line and "dport %d " % port in line and "packets" in line:
                return int(line.split("packets", 1)[1].split()[0])
        return -1
    return dropped


def syn_sent(dst):
    """Sockets in SYN-SENT towards dst ("[::1]:P" or "127.0.0.1:P"), as ss prints them."""
    out = sh(["ss", "-Htn", "state", "syn-sent", "dst", dst]).stdout
    return [l for l in out.splitlines() if l.strip()]


def hold_port(host, port):
    """A socket bound to host:port that does not listen: connects there are refused and
    nothing else can take the port while it lives."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.bind((host, port))
    harness.register_cleanup(s.close)
    return s


def with_refused(make, refused_hosts):
    """make(port=0) -> a server; then refused_hosts are held (not listening) on its port.
    Retries with another port when one of them is taken. Returns the server."""
    for _ in range(20):
        srv = make()
        try:
            for h in refused_hosts:
                hold_port(h, srv.port)
            return srv
        except OSError:
            srv.stop()
    raise RuntimeError("no port free on all of %r" % list(refused_hosts))


def refused_port(hosts):
    """A port on which every host of `hosts` refuses connections (held, not listening)."""
    for _ in range(20):
        first = hold_port(hosts[0], 0)
        port = first.getsockname()[1]
        try:
            for h in hosts[1:]:
                hold_port(h, port)
            return port
        except OSError:
            first.close()
    raise RuntimeError("no port free on all of %r" % list(hosts))


# --------------------------------------------------------------------------
# backends and clients


class NamedEcho(harness.EchoServer):
    """Says its name ("NAME\\n") on accept, then echoes every byte; counts closed connections."""

    def __init__(self, name, *a, **kw):
        self.name = name
        self.closed = 0
        super().__init__(*a, **kw)

    def handle(self, conn):
        try:
            conn.sendall(self.name.encode() + b"\n")
            super().handle(conn)
        finally:
            with self._lock:
                self.closed += 1


def read_line(sock, timeout=5.0):
    """Bytes up to and including the first newline (or what came before EOF / timeout)."""
    sock.settimeout(timeout)
    buf = b""
    try:
        while not buf.endswith(b"\n"):
            chunk = sock.recv(1)
            if not chunk:
                break
            buf += chunk
    except OSError:
        pass
    return buf


def tcp_session(port, timeout=5.0):
    """Connects through sluice and reads the backend's name. Returns (sock, name, seconds to the name)."""
    t0 = time.monotonic()
    s = harness.connect(port, timeout=timeout)
    name = read_line(s, timeout).decode("latin-1").strip()
    return s, name, time.monotonic() - t0


def watching(fn, watch, timeout=10.0):
    """Runs fn() in a thread while polling watch() until it holds or fn is done.
    Returns (fn's result, whether watch() held at some point)."""
    box = {}

    def run():
        try:
            box["result"] = fn()
        except Exception as e:  # re-raised below
            box["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    seen = [False]

    def poll():
        if watch():
            seen[0] = True
            return True
        return not t.is_alive()
    harness.wait_until(poll, timeout, 0.002)
    t.join(timeout)
    if "error" in box:
        raise box["error"]
    return box.get("result"), seen[0]


# --------------------------------------------------------------------------
# sluice


def tmp_log():
    d = tempfile.mkdtemp(prefix="sluice-he-")
    harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    return os.path.join(d, "access.log")


def read_log(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []


def log_entries(path, pred, n, timeout=5.0):
    """Waits until n access-log entries satisfy pred; returns them (maybe fewer on timeout)."""
    got = harness.wait_until(lambda: (lambda m: m if len(m) >= n else None)([e for e in read_log(path) if pred(e)]),
                             timeout, 0.01)
    return got or [e for e in read_log(path) if pred(e)]


def web_listener(alog, route_extra=None):
    route = {"match": {"prefix": "/"}, "cluster": "app"}
    route.update(route_extra or {})
    return hu.simple_listener([route], access_log={"path": alog})


def tcp_listener(alog):
    return {"name": "tcp_in", "address": "127.0.0.1:0", "protocol": "tcp", "cluster": "app",
            "access_log": {"path": alog}}


def he_cluster(port, **kw):
    """The logical_dns cluster under test; every HTTP request gets a new upstream connection
    (so every request races)."""
    c = ds.dns_cluster("app", [NAME], port, type="logical_dns", pool={"max_requests_per_connection": 1})
    c.update(kw)
    return c


def start(listeners, clusters, ns, family="both", workers=2):
    cfg = {"workers": workers, "log_level": "debug", "drain_timeout": "5s",
           "dns": ds.dns_block(ns.address, family=family), "listeners": listeners, "clusters": clusters}
    return harness.Sluice(harness.to_yaml(hu._quote(cfg)) + "\n")


def dual_stack_nsd():
    ns = ds.NsdServer(["api IN A 127.0.0.1", "api IN AAAA ::1"], ttl=30, minimum=30)
    a, aaaa = ns.query(NAME, "A"), ns.query(NAME, "AAAA")
    check(a and aaaa and [x[3] for x in a[1]] == ["127.0.0.1"] and [x[3] for x in aaaa[1]] == ["::1"],
          "nsd answers %s with A 127.0.0.1 and AAAA ::1" % NAME, repr((a, aaaa)))
    return ns


def check_one_endpoint(sl, port):
    v6, v4 = "[::1]:%d" % port, "127.0.0.1:%d" % port
    check(sl.find_lines("cluster app: endpoint %s added" % v6) and not sl.find_lines("endpoint %s added" % v4),
          "one endpoint, the IPv6 address: 'cluster app: endpoint %s added'" % v6, hu.log_tail(sl))


def http_requests(port, n, prefix):
    """n GETs, each on a new client connection: [(target, status, X-Backend, seconds)]."""
    out = []
    for i in range(n):
        target = "%s/%d" % (prefix, i)
        t0 = time.monotonic()
        r = hu.request_once(port, "GET", target)
        out.append((target, r.status, r.header("x-backend"), time.monotonic() - t0))
    return out


def check_http_answers(out, backend, what):
    bad = [(t, s, b) for t, s, b, _ in out if s != 200 or b != backend]
    check(not bad, "%d requests on new connections (%s): all 200 from %s" % (len(out), what, backend),
          repr(bad[:10]))


def connect_times(alog, prefix, n, endpoint):
    """The access-log upstream_connect (us) of the n requests under prefix; checks endpoint,
    attempts 1 and no flags."""
    es = log_entries(alog, lambda e: e.get("target", "").startswith(prefix + "/"), n)
    check(len(es) == n, "%d access-log lines for %s/*" % (n, prefix), json.dumps(read_log(alog)[-5:]))
    odd = [e for e in es if e["endpoint"] != endpoint or e["attempts"] != 1 or e["flags"] != []]
    check(not odd, "each line: endpoint %s, attempts 1, flags []" % endpoint, json.dumps(odd[:3]))
    return [e["timings_us"]["upstream_connect"] for e in es]


def ms(us_list):
    return ", ".join("%.1f" % (u / 1000.0) for u in us_list)


# --------------------------------------------------------------------------
# HTTP


def case_both_families_v6_wins():
    need_ipv6()
    port, (b6, b4) = ds.backends_on_one_port([("v6", "::1"), ("v4", "127.0.0.1")])
    ns = dual_stack_nsd()
    alog = tmp_log()
    sl = start([web_listener(alog)], [he_cluster(port)], ns)
    res = sl.find_lines("cluster app: %s resolved to " % NAME)
    info("log: %s" % (res[0] if res else "(no 'resolved to' line)"))
    check_one_endpoint(sl, port)
    out = http_requests(sl.port("web"), 20, "/both")
    check_http_answers(out, "v6", "IPv6 and IPv4 backends up")
    check(len(b4.requests_for(lambda r: r["target"].startswith("/both/"))) == 0,
          "the IPv4 backend got none of them", "")
    times = connect_times(alog, "/both", 20, "[::1]:%d" % port)
    info("upstream_connect (ms): %s" % ms(times))
    check(all(0 < t < 200000 for t in times), "upstream_connect of each is short (max %.1f ms)" % (max(times) / 1000.0),
          ms(times))
    hu.stop_and_check(sl)


def case_v6_refused_v4_at_once():
    need_ipv6()
    b4 = with_refused(lambda: ds.host_backend("v4", "127.0.0.1"), ["::1"])
    port = b4.port
    ns = dual_stack_nsd()
    alog = tmp_log()
    sl = start([web_listener(alog)], [he_cluster(port, connection_attempt_delay="1s")], ns)
    check_one_endpoint(sl, port)
    out = http_requests(sl.port("web"), 10, "/refused")
    check_http_answers(out, "v4", "nothing listens on [::1]:%d" % port)
    info("client-side request times (ms): %s" % ", ".join("%.1f" % (x[3] * 1000) for x in out))
    times = connect_times(alog, "/refused", 10, "[::1]:%d" % port)
    info("upstream_connect (ms): %s" % ms(times))
    check(all(0 < t < 500000 for t in times),
          "upstream_connect < 500 ms with connection_attempt_delay 1s: a refused attempt starts the next at once "
          "(max %.1f ms)" % (max(times) / 1000.0), ms(times))
    check(not sl.find_lines("not done within"), "no attempt waited for the delay",
          "\n".join(sl.find_lines("not done within")))
    hu.stop_and_check(sl)


def v6_blackholed(delay, lo, hi, n=5):
    need_ipv6()
    port, (b6, b4) = ds.backends_on_one_port([("v6", "::1"), ("v4", "127.0.0.1")])
    dropped = blackhole(port)
    v6 = "[::1]:%d" % port
    ns = dual_stack_nsd()
    alog = tmp_log()
    extra = {"connection_attempt_delay": delay} if delay else {}
    sl = start([web_listener(alog)], [he_cluster(port, **extra)], ns)
    check_one_endpoint(sl, port)
    hp = sl.port("web")
    # the first request: its IPv6 attempt is seen in SYN-SENT while the race runs
    first, seen = watching(lambda: http_requests(hp, 1, "/holed/first"), lambda: syn_sent(v6))
    check(seen, "while the first request waits, a socket is in SYN-SENT to %s (ss)" % v6, "")
    out = first + http_requests(hp, n - 1, "/holed/rest")
    check_http_answers(out, "v4", "TCP to %s dropped" % v6)
    info("client-side request times (ms): %s" % ", ".join("%.1f" % (x[3] * 1000) for x in out))
    gone = harness.wait_until(lambda: not syn_sent(v6), 0.5, 0.01)
    check(gone, "after the responses no socket is in SYN-SENT to %s (the losing attempts were closed)" % v6,
          "\n".join(syn_sent(v6)))
    check(b6.stats()["accepted"] == 0, "the IPv6 backend accepted nothing", repr(b6.stats()))
    times = connect_times(alog, "/holed", n, v6)
    info("upstream_connect (ms): %s; nftables dropped %d packets to %s" % (ms(times), dropped(), v6))
    check(all(lo <= t < hi for t in times),
          "upstream_connect within [%d, %d) ms for connection_attempt_delay %s" %
          (lo // 1000, hi // 1000, delay or "250ms (default)"), ms(times))
    check(dropped() >= n, "the nftables rule dropped the SYNs to %s (%d packets)" % (v6, dropped()), "")
    lines = sl.find_lines("not done within")
    info("log: %s" % (lines[0] if lines else "(no line about the attempt delay)"))
    hu.stop_and_check(sl)


def case_v6_blackholed_default_delay():
    v6_blackholed(None, 240000, 1500000)


def case_v6_blackholed_100ms():
    v6_blackholed("100ms", 90000, 1000000)


def case_both_blackholed_connect_timeout():
    need_ipv6()
    port, (b6, b4) = ds.backends_on_one_port([("v6", "::1"), ("v4", "127.0.0.1")])
    blackhole(port)
    blackhole(port, "ip", "127.0.0.1")
    v6, v4 = "[::1]:%d" % port, "127.0.0.1:%d" % port
    ns = dual_stack_nsd()
    alog = tmp_log()
    sl = start([web_listener(alog, {"retries": {"num_retries": 0}})],
               [he_cluster(port, connect_timeout="600ms")], ns)
    hp = sl.port("web")
    mark = sl.line_count()
    def timed_request():
        t0 = time.monotonic()
        r = hu.request_once(hp, "GET", "/timeout/0")
        return r, time.monotonic() - t0
    (r, took), seen = watching(timed_request, lambda: syn_sent(v6) and syn_sent(v4))
    check(seen, "during the race both attempts are in SYN-SENT (%s and %s)" % (v6, v4), "")
    check(r.status == 502, "both families black-holed: 502 (got %d)" % r.status, r.describe())
    check(0.55 <= took < 1.5, "the request failed after about connect_timeout 600ms (%.2f s)" % took, "")
    line = sl.wait_log("GET /timeout/0: upstream connect error: timed out after 600ms", 2, mark)
    check(line, "log names the connect timeout: 'upstream connect error: timed out after 600ms'", hu.log_tail(sl))
    info("log: %s" % line)
    check(harness.wait_until(lambda: not syn_sent(v6) and not syn_sent(v4), 0.5, 0.01),
          "after the timeout no socket is in SYN-SENT to either address", "\n".join(syn_sent(v6) + syn_sent(v4)))
    es = log_entries(alog, lambda e: e.get("target") == "/timeout/0", 1)
    check(es and es[0]["flags"] == ["upstream_connect_failure"], "access log: flags exactly [upstream_connect_failure]",
          json.dumps(es))
    hu.stop_and_check(sl)


def case_every_address_refused():
    need_ipv6()
    port = refused_port(["::1", "127.0.0.1"])
    v6, v4 = "[::1]:%d" % port, "127.0.0.1:%d" % port
    ns = dual_stack_nsd()
    alog = tmp_log()
    sl = start([web_listener(alog)], [he_cluster(port, connection_attempt_delay="1s")], ns)
    mark = sl.line_count()
    t0 = time.monotonic()
    r = hu.request_once(sl.port("web"), "GET", "/dead/0")
    took = time.monotonic() - t0
    check(r.status == 502, "nothing listens on either address: 502 (got %d)" % r.status, r.describe())
    check(took < 0.9, "answered in %.2f s: refused attempts do not wait for connection_attempt_delay 1s" % took, "")
    want = "%s: connection refused; %s: connection refused" % (v6, v4)
    line = sl.wait_log("GET /dead/0: upstream connect error: " + want, 2, mark)
    check(line, "sluice's log names both addresses: 'upstream connect error: %s'" % want, hu.log_tail(sl))
    info("log: %s" % line)
    es = log_entries(alog, lambda e: e.get("target") == "/dead/0", 1)
    # the default retry policy tried once more (connect failure) before giving up
    check(es and es[0]["flags"] == ["upstream_connect_failure", "retried"] and es[0]["endpoint"] == v6,
          "access log: flags exactly [upstream_connect_failure, retried], endpoint %s" % v6, json.dumps(es))
    hu.stop_and_check(sl)


def case_order_and_at_most_8_addresses():
    """3 AAAA and 6 A: tried as ::1, .11, fd00::2, .12, fd00::3, .13, .14, .15 (IPv6 first, the
    families taking turns, at most 8); the 9th, 127.0.0.16, is never tried although it listens."""
    need_ipv6()
    v4s = ["127.0.0.%d" % i for i in range(11, 17)]
    ninth = with_refused(lambda: ds.host_backend("ninth", v4s[-1]), ["::1"] + v4s[:-1])
    port = ninth.port
    ns = ds.NsdServer(["api IN A %s" % a for a in v4s] + ["api IN AAAA ::1", "api IN AAAA fd00::2",
                                                          "api IN AAAA fd00::3"], ttl=30, minimum=30)
    alog = tmp_log()
    sl = start([web_listener(alog, {"retries": {"num_retries": 0}})], [he_cluster(port)], ns)
    res = sl.find_lines("cluster app: %s resolved to " % NAME)
    info("log: %s" % (res[0] if res else "(no 'resolved to' line)"))
    check_one_endpoint(sl, port)
    mark = sl.line_count()
    t0 = time.monotonic()
    r = hu.request_once(sl.port("web"), "GET", "/order/0")
    took = time.monotonic() - t0
    check(r.status == 502, "the 8 addresses tried all fail: 502 (got %d, %.2f s)" % (r.status, took), r.describe())
    order = ["[::1]", "127.0.0.11", "[fd00::2]", "127.0.0.12", "[fd00::3]", "127.0.0.13", "127.0.0.14", "127.0.0.15"]
    want = "; ".join(r"%s:%d: [^;]+" % (re.escape(a), port) for a in order) + "$"
    line = sl.wait_log(re.compile(r"GET /order/0: upstream connect error: " + want), 2, mark)
    check(line, "the log names the 8 addresses in RFC 8305 order: %s" % ", ".join(order), hu.log_tail(sl))
    info("log: %s" % line)
    check(ninth.stats()["accepted"] == 0 and "127.0.0.16" not in line,
          "the 9th address (127.0.0.16, listening) was never tried", repr(ninth.stats()))
    hu.stop_and_check(sl)


# --------------------------------------------------------------------------
# TCP listener


def case_tcp_listener_v6_refused():
    need_ipv6()
    e4 = with_refused(lambda: ds.host_tcp_server(NamedEcho, "127.0.0.1", name="v4"), ["::1"])
    port = e4.port
    ns = dual_stack_nsd()
    alog = tmp_log()
    sl = start([tcp_listener(alog)], [he_cluster(port, connection_attempt_delay="1s")], ns)
    tp = sl.port("tcp_in")
    names, waits, echoed = [], [], []
    for i in range(5):
        s, name, took = tcp_session(tp)
        names.append(name)
        waits.append(took)
        echoed.append(harness.echo_roundtrip(s, b"hello %d" % i))
        s.close()
    check(names == ["v4"] * 5 and all(echoed), "5 TCP sessions: the IPv4 backend answered and echoed each",
          repr((names, echoed)))
    check(max(waits) < 0.5, "each session reached the backend in < 500 ms with connection_attempt_delay 1s "
          "(max %.1f ms)" % (max(waits) * 1000), repr(waits))
    es = log_entries(alog, lambda e: e.get("listener") == "tcp_in", 5)
    times = [e["timings_us"]["upstream_connect"] for e in es]
    info("upstream_connect (ms): %s" % ms(times))
    check(len(es) == 5 and all(e["endpoint"] == "[::1]:%d" % port for e in es) and all(t < 500000 for t in times),
          "access log: 5 lines, endpoint [::1]:%d, upstream_connect < 500 ms" % port, json.dumps(es[:2]))
    hu.stop_and_check(sl)


def case_tcp_listener_v6_blackholed():
    need_ipv6()
    port, (e6, e4) = ds.tcp_servers_on_one_port(NamedEcho, ["::1", "127.0.0.1"], [{"name": "v6"}, {"name": "v4"}])
    blackhole(port)
    v6 = "[::1]:%d" % port
    ns = dual_stack_nsd()
    alog = tmp_log()
    sl = start([tcp_listener(alog)], [he_cluster(port, connection_attempt_delay="300ms")], ns)
    tp = sl.port("tcp_in")
    (s, name, took), seen = watching(lambda: tcp_session(tp), lambda: syn_sent(v6))
    check(seen, "while the session waits, a socket is in SYN-SENT to %s" % v6, "")
    check(name == "v4", "the session reached the IPv4 backend (it said %r)" % name, hu.log_tail(sl))
    check(0.29 <= took < 1.5, "after connection_attempt_delay 300ms (%.0f ms)" % (took * 1000), "")
    check(harness.echo_roundtrip(s, b"x" * 10000), "10000 bytes echo through it", "")
    check(harness.wait_until(lambda: not syn_sent(v6), 0.5, 0.01),
          "no socket left in SYN-SENT to %s" % v6, "\n".join(syn_sent(v6)))
    s.close()
    es = log_entries(alog, lambda e: e.get("listener") == "tcp_in", 1)
    t = es[0]["timings_us"]["upstream_connect"] if es else -1
    check(es and 290000 <= t < 1500000 and es[0]["endpoint"] == v6,
          "access log: endpoint %s, upstream_connect %.1f ms (>= the delay)" % (v6, t / 1000.0), json.dumps(es))
    check(e6.accepted == 0, "the IPv6 backend accepted nothing", "")
    hu.stop_and_check(sl)


# --------------------------------------------------------------------------
# active health check


def case_tcp_health_check_races():
    need_ipv6()
    port, (b6, b4) = ds.backends_on_one_port([("v6", "::1"), ("v4", "127.0.0.1")])
    blackhole(port)
    v6 = "[::1]:%d" % port
    ns = dual_stack_nsd()
    alog = tmp_log()
    hc = {"type": "tcp", "interval": "200ms", "jitter": "0ms", "timeout": "1s", "healthy_threshold": 1,
          "unhealthy_threshold": 1}
    t0 = time.monotonic()
    sl = start([web_listener(alog)], [he_cluster(port, health_check=hc, panic_threshold=0)], ns)
    info("sluice ready after %.2f s" % (time.monotonic() - t0))
    healthy = "cluster app: endpoint %s is healthy: " % v6
    lines = sl.stderr_text().splitlines()
    i_h = next((i for i, l in enumerate(lines) if healthy in l), None)
    i_r = next((i for i, l in enumerate(lines) if "sluice ready" in l), None)
    check(i_h is not None and i_r is not None and i_h < i_r, "logged before 'sluice ready': '%s...'" % healthy,
          hu.log_tail(sl))
    info("log: %s" % lines[i_h])
    checks0 = b4.stats()["accepted"]
    out = http_requests(sl.port("web"), 5, "/hc")
    check_http_answers(out, "v4", "endpoint checked by tcp health check, IPv6 black-holed")
    # over several more check intervals: every check must pass

    def more():  # connections to the IPv4 backend that were not requests
        return b4.stats()["accepted"] - checks0 - 5
    check(harness.wait_until(lambda: more() >= 5, 3, 0.02),
          "the checks keep connecting to the IPv4 backend (%d more connections)" % more(), "")
    bad = sl.find_lines("endpoint %s is unhealthy" % v6)
    check(not bad, "the endpoint never became unhealthy", "\n".join(bad))
    out = http_requests(sl.port("web"), 5, "/hc-after")
    check_http_answers(out, "v4", "after the checks")
    check(b6.stats()["accepted"] == 0, "the IPv6 backend accepted nothing", "")
    hu.stop_and_check(sl)


# --------------------------------------------------------------------------
# sluice check

CHECK_BASE = """\
workers: 1
dns:
  servers: [127.0.0.1:5353]
  family: both
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
"""


def sluice_check(name, text):
    d = tempfile.mkdtemp(prefix="sluice-he-check-")
    harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    path = os.path.join(d, name + ".yaml")
    with open(path, "w") as f:
        f.write(text)
    return path, harness.run_sluice_cmd(["check", "-c", path], timeout=10)


def locate(text, needle):
    i = text.index(needle)
    line = text.count("\n", 0, i) + 1
    col = i - (text.rindex("\n", 0, i) + 1 if "\n" in text[:i] else 0) + 1
    return line, col


def case_config_check():
    good = [
        ("logical_10ms", "    type: logical_dns\n    connection_attempt_delay: 10ms\n"
                         "    endpoints: [{address: \"api.test.sluice:80\"}]\n"),
        ("logical_2s", "    type: logical_dns\n    connection_attempt_delay: 2s\n"
                       "    endpoints: [{address: \"api.test.sluice:80\"}]\n"),
        ("strict_close", "    type: strict_dns\n    on_address_change: close\n"
                         "    endpoints: [{address: \"api.test.sluice:80\"}]\n"),
    ]
    for name, body in good:
        text = CHECK_BASE + body
        path, p = sluice_check(name, text)
        check(p.returncode == 0, "%s: sluice check passes" % name,
              "rc=%d\nstderr: %s\n%s" % (p.returncode, p.stderr, text))
    bad = [
        ("delay_on_static", "    type: static\n    connection_attempt_delay: 100ms\n"
                            "    endpoints: [{address: 127.0.0.1:80}]\n",
         "100ms", "clusters[0].connection_attempt_delay", "only for type: logical_dns"),
        ("delay_on_default_type", "    connection_attempt_delay: 100ms\n"
                                  "    endpoints: [{address: 127.0.0.1:80}]\n",
         "100ms", "clusters[0].connection_attempt_delay", "only for type: logical_dns"),
        ("delay_on_strict_dns", "    type: strict_dns\n    connection_attempt_delay: 100ms\n"
                                "    endpoints: [{address: \"api.test.sluice:80\"}]\n",
         "100ms", "clusters[0].connection_attempt_delay", "only for type: logical_dns"),
        ("delay_5ms", "    type: logical_dns\n    connection_attempt_delay: 5ms\n"
                      "    endpoints: [{address: \"api.test.sluice:80\"}]\n",
         "5ms", "clusters[0].connection_attempt_delay", "expected a duration from 10ms to 2s, got 5ms"),
        ("delay_3s", "    type: logical_dns\n    connection_attempt_delay: 3s\n"
                     "    endpoints: [{address: \"api.test.sluice:80\"}]\n",
         "3s", "clusters[0].connection_attempt_delay", "expected a duration from 10ms to 2s, got 3s"),
        ("on_address_change_bogus", "    type: strict_dns\n    on_address_change: bogus\n"
                                    "    endpoints: [{address: \"api.test.sluice:80\"}]\n",
         "bogus", "clusters[0].on_address_change", "expected one of: drain, keep, close, got 'bogus'"),
    ]
    for name, body, needle, key, message in bad:
        text = CHECK_BASE + body
        path, p = sluice_check(name, text)
        line, col = locate(text, needle)
        prefix = "%s:%d:%d: %s: " % (path, line, col, key)
        hits = [l for l in p.stderr.splitlines() if l.startswith(prefix) and message in l]
        check(p.returncode == 1 and hits, "%s: exit 1 and 'FILE:%d:%d: %s: ...%s...'" % (name, line, col, key, message),
              "rc=%d\nstderr:\n%s\nconfig:\n%s" % (p.returncode, p.stderr, text))


# --------------------------------------------------------------------------
# on_address_change


def address_change_session(mode):
    """strict_dns 127.0.0.2 -> 127.0.0.3 under an open TCP session; mode "close" or None (drain)."""
    port, (old, new) = ds.tcp_servers_on_one_port(NamedEcho, ["127.0.0.2", "127.0.0.3"],
                                                  [{"name": "old"}, {"name": "new"}])
    ttl = 1
    ns = ds.NsdServer(["api IN A 127.0.0.2"], ttl=ttl, minimum=ttl)
    extra = {"on_address_change": mode} if mode else {}
    cl = ds.dns_cluster("app", [NAME], port, **extra)
    sl = start([tcp_listener(tmp_log())], [cl], ns, family="v4")
    tp = sl.port("tcp_in")
    s, name, _ = tcp_session(tp)
    check(name == "old" and harness.echo_roundtrip(s, b"before"), "a TCP session to 127.0.0.2 echoes", name)
    mark = sl.line_count()
    ns.set_zone(["api IN A 127.0.0.3"])
    t0 = time.monotonic()
    return port, old, new, ns, sl, tp, s, mark, t0, ttl


def new_session_name(tp):
    s, name, _ = tcp_session(tp)
    s.close()
    return name


def case_on_address_change_close():
    port, old, new, ns, sl, tp, s, mark, t0, ttl = address_change_session("close")
    how, waited = harness.wait_closed(s, ttl + 4)
    took = time.monotonic() - t0
    check(how in ("eof", "reset"), "the session to the departed address is closed by sluice (%s, %.2f s after the "
          "zone changed)" % (how, took), hu.log_tail(sl))
    check(took <= ttl + 3, "within TTL %d s + 3 s" % ttl, "")
    left = "cluster app: endpoint 127.0.0.2:%d left the answer: closing its connections (on_address_change: close)" \
        % port
    check(sl.wait_log(left, 2, mark), "log: '%s'" % left, hu.log_tail(sl))
    closing = sl.find_lines("on_address_change: close", mark)
    for l in closing:
        info("log: %s" % l)
    check(harness.wait_until(lambda: old.closed >= 1, 2), "sluice closed its side to the old backend too", "")
    names = [new_session_name(tp) for _ in range(5)]
    check(names == ["new"] * 5, "5 new sessions: all reach 127.0.0.3", repr(names))
    hu.stop_and_check(sl)


def case_on_address_change_drain_keeps_session():
    port, old, new, ns, sl, tp, s, mark, t0, ttl = address_change_session(None)
    n = harness.wait_until(lambda: new_session_name(tp) == "new", ttl + 3, 0.05)
    check(n, "a new session reaches 127.0.0.3 (%.2f s after the zone changed)" % (time.monotonic() - t0),
          hu.log_tail(sl))
    left = "cluster app: endpoint 127.0.0.2:%d left the answer: draining" % port
    check(sl.wait_log(left, 2, mark), "log: '%s...'" % left, hu.log_tail(sl))
    check(harness.echo_roundtrip(s, b"after the change"), "the old session still echoes (on_address_change: drain)",
          hu.log_tail(sl))
    # and a little later still
    deadline = time.monotonic() + 1.0
    harness.wait_until(lambda: time.monotonic() >= deadline, 1.5, 0.05)
    check(harness.echo_roundtrip(s, b"still"), "and 1 s later too", hu.log_tail(sl))
    # the sessions that probed for the change before it was applied reached the old backend
    # and were closed by the client; the first one is still open
    check(harness.wait_until(lambda: old.accepted - old.closed == 1, 2),
          "the old backend still holds that one connection open (%d accepted, %d closed)" %
          (old.accepted, old.closed), "")
    s.close()
    hu.stop_and_check(sl)


def case_logical_address_leaves_keepalive_moves():
    """logical_dns, IPv6 refused: A 127.0.0.1 -> 127.0.0.2 while a keep-alive client keeps
    asking. The endpoint (the name) stays; its pooled connection to 127.0.0.1 drains, so the
    same client connection is answered by 127.0.0.2 within the TTL + slack."""
    need_ipv6()
    port, (a, b) = ds.backends_on_one_port([("a", "127.0.0.1"), ("b", "127.0.0.2")])
    hold_port("::1", port)
    ttl = 1
    ns = ds.NsdServer(["api IN A 127.0.0.1", "api IN AAAA ::1"], ttl=ttl, minimum=ttl)
    cl = ds.dns_cluster("app", [NAME], port, type="logical_dns")
    sl = start([hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])], [cl], ns)
    c = hu.Client(sl.port("web"))
    r = c.request("GET", "/before")
    check(r.status == 200 and r.header("x-backend") == "a", "before: 200 from a (127.0.0.1, IPv6 refused)",
          r.describe())
    mark = sl.line_count()
    ns.set_zone(["api IN A 127.0.0.2", "api IN AAAA ::1"])
    t0 = time.monotonic()
    seen = []

    def moved():
        r = c.request("GET", "/during/%d" % len(seen))
        seen.append((r.status, r.header("x-backend")))
        return r.status != 200 or r.header("x-backend") == "b"
    check(harness.wait_until(moved, ttl + 2, 0.05) and seen[-1] == (200, "b"),
          "the keep-alive client is answered by b %.2f s after the zone changed" % (time.monotonic() - t0),
          repr(seen[-5:]))
    check(all(st == 200 for st, _ in seen), "every answer meanwhile was 200 (%d requests)" % len(seen), repr(seen))
    line = ("cluster app: addresses now [::1]:%d, 127.0.0.2:%d (were [::1]:%d, 127.0.0.1:%d); connections to "
            "127.0.0.1:%d drain" % ((port,) * 5))
    check(sl.find_lines(line, mark), "log: '%s'" % line, hu.log_tail(sl))
    check(not sl.find_lines(re.compile(r"cluster app: endpoint \S+ left the answer"), mark),
          "the endpoint itself did not leave", hu.log_tail(sl))
    check(harness.wait_until(lambda: a.stats()["active"] == 0, 2),
          "sluice's connections to a are closed (%d open)" % a.stats()["active"], "")
    names = [hu.request_once(sl.port("web"), "GET", "/new/%d" % i).header("x-backend") for i in range(4)]
    check(names == ["b"] * 4, "new client connections: all b", repr(names))
    c.close()
    hu.stop_and_check(sl)


def case_logical_close_keeps_sessions_to_remaining_addresses():
    """logical_dns with on_address_change: close, IPv6 black-holed so sessions run over IPv4:
    the AAAA record leaving the answer closes nothing that goes to 127.0.0.1, still in it."""
    need_ipv6()
    nft_ready()
    port, (e6, e4) = ds.tcp_servers_on_one_port(NamedEcho, ["::1", "127.0.0.1"], [{"name": "v6"}, {"name": "v4"}])
    ttl = 1
    ns = ds.NsdServer(["api IN A 127.0.0.1", "api IN AAAA ::1"], ttl=ttl, minimum=ttl)
    blackhole(port)
    sl = start([tcp_listener(tmp_log())], [he_cluster(port, on_address_change="close")], ns)
    added = "cluster app: endpoint [::1]:%d added" % port
    check(sl.wait_log(added, 3), "log: '%s'" % added, hu.log_tail(sl))
    s, name, took = tcp_session(sl.port("tcp_in"))
    check(name == "v4", "the session went to 127.0.0.1 after %.3f s (IPv6 black-holed)" % took,
          "got %r\n%s" % (name, hu.log_tail(sl)))
    mark = sl.line_count()
    ns.set_zone(["api IN A 127.0.0.1"])
    line = "cluster app: addresses now 127.0.0.1:%d (were [::1]:%d, 127.0.0.1:%d); connections to [::1]:%d close" \
        % ((port,) * 4)
    check(sl.wait_log(line, ttl + 2, mark), "log: '%s'" % line, hu.log_tail(sl))
    check(harness.echo_roundtrip(s, b"still here"), "the session to 127.0.0.1 still echoes", hu.log_tail(sl))
    check(not sl.find_lines("address left the DNS answer", mark), "no connection was closed", hu.log_tail(sl))
    s.close()
    hu.stop_and_check(sl)


def http_close_inflight(retry):
    """strict_dns with on_address_change: close: a GET in flight on a connection to 127.0.0.2
    when it leaves the answer is cut by sluice; returns (response, seconds, log mark, sluice, port, backend a)."""
    port, (a, b) = ds.backends_on_one_port([("a", "127.0.0.2"), ("b", "127.0.0.3")])
    ttl = 1
    ns = ds.NsdServer(["api IN A 127.0.0.2"], ttl=ttl, minimum=ttl)
    cl = ds.dns_cluster("app", [NAME], port, on_address_change="close")
    route = {"match": {"prefix": "/"}, "cluster": "app"}
    if retry:
        route["retries"] = {"retry_on": ["reset-before-response"], "num_retries": 1}
    sl = start([hu.simple_listener([route])], [cl], ns, family="v4", workers=1)
    hp = sl.port("web")
    # a first request leaves a pooled connection to a: the slow one below reuses it (a reused
    # connection that fails before answering is otherwise re-sent once, to the same endpoint)
    r = hu.request_once(hp, "GET", "/first")
    check(r.status == 200 and r.header("x-backend") == "a", "a first request through a (127.0.0.2)", r.describe())
    box = {}

    def slow():
        box["r"] = hu.request_once(hp, "GET", "/delay/5000")
    th = threading.Thread(target=slow, daemon=True)
    th.start()
    check(harness.wait_until(lambda: len(a.requests_for(lambda r: r["target"] == "/delay/5000")) == 1, 3),
          "the slow request reached a (127.0.0.2)", "")
    mark = sl.line_count()
    t0 = time.monotonic()
    ns.set_zone(["api IN A 127.0.0.3"])
    th.join(10)
    return box.get("r"), time.monotonic() - t0, mark, sl, port, a


def case_http_close_inflight_fails_502():
    r, took, mark, sl, port, a = http_close_inflight(retry=False)
    why = "upstream connection to 127.0.0.2:%d closed: its address left the DNS answer (on_address_change: close)" \
        % port
    # the client learns the kind of failure; the address and the reason go to the log
    check(r is not None and r.status == 502 and r.body == b"upstream reset before the response\n",
          "the in-flight GET is answered 502 'upstream reset before the response' %.2f s after the zone changed "
          "(not after 5 s)" % took, r.describe() if r else "no response")
    check(took < 4, "well before the backend would have answered", "")
    check(len(a.requests_for(lambda q: q["target"] == "/delay/5000")) == 1,
          "it was not re-sent to the departed address", "")
    check(sl.find_lines(why, mark), "log: '...%s'" % why, hu.log_tail(sl))
    hu.stop_and_check(sl)


def case_http_close_inflight_retried():
    r, took, mark, sl, port, a = http_close_inflight(retry=True)
    check(r is not None and r.status == 200 and r.header("x-backend") == "b",
          "with retry_on: [reset-before-response] it is re-sent to b: 200 %.2f s after the zone changed" % took,
          r.describe() if r else "no response")
    hu.stop_and_check(sl)

# --------------------------------------------------------------------------


if __name__ == "__main__":
    hu.use_default_bin()
    harness.reexec_in_netns_or_skip()
    harness.run_cases([case_both_families_v6_wins, case_v6_refused_v4_at_once, case_v6_blackholed_default_delay,
                       case_v6_blackholed_100ms, case_both_blackholed_connect_timeout, case_every_address_refused,
                       case_order_and_at_most_8_addresses,
                       case_tcp_listener_v6_refused, case_tcp_listener_v6_blackholed, case_tcp_health_check_races,
                       case_config_check, case_on_address_change_close, case_on_address_change_drain_keeps_session,
                       case_logical_address_leaves_keepalive_moves,
                       case_logical_close_keeps_sessions_to_remaining_addresses, case_http_close_inflight_fails_502,
                       case_http_close_inflight_retried])

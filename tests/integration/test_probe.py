#!/usr/bin/env python3
"""`sluice probe URL` and `sluice probe --dns NAME`: phases, output forms, exit statuses.

Runs the real binary against real peers on loopback: http_backend.py (echo, delays,
invalid responses, resets), servers that hold or close connections, an nftables rule that
drops SYNs to one port (connect timeout), and nsd (dns_server.py) for NXDOMAIN, CNAME
chains, the resolver's cache and a stopped server (DNS timeout). Re-runs itself inside a
new network namespace (`unshare -n`) so the nftables rule touches nothing outside.
"""

import json
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HoldServer, Skip, TcpServer, check, info, run_cases, run_sluice_cmd, sh  # noqa: E402
from http_backend import HttpBackend  # noqa: E402

try:
    import dns_server
except ImportError:  # written by another change; the DNS cases skip without it
    dns_server = None

PHASES = ["dns", "connect", "request_sent", "first_byte", "body"]
BLACKHOLE = {}


def probe(args, timeout=30):
    t0 = time.monotonic()
    p = run_sluice_cmd(["probe"] + args, timeout=timeout)
    p.elapsed = time.monotonic() - t0
    return p


def describe(p):
    return "exit %s after %.2f s\nstdout:\n%s\nstderr:\n%s" % (p.returncode, p.elapsed, p.stdout, p.stderr)


def check_failure(p, status, message_re, what):
    """The exit status, and exactly one stderr line `sluice probe: <reason>` matching message_re."""
    lines = p.stderr.strip().splitlines()
    check(p.returncode == status, "%s: exit status %d" % (what, status), describe(p))
    check(len(lines) == 1 and lines[0].startswith("sluice probe: ") and re.search(message_re, lines[0]),
          "%s: one stderr line matching %r" % (what, message_re), describe(p))


def waterfall_rows(stdout):
    """{phase: (start_ms, duration_ms, bar)} from the default output."""
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r"^(dns|connect|request_sent|first_byte|body|total)\s+(\d+\.\d{3})\s+(\d+\.\d{3})(?:  (.*))?$",
                     line)
        if m:
            rows[m.group(1)] = (float(m.group(2)), float(m.group(3)), m.group(4) or "")
    return rows


def setup_blackhole():
    """Drops every TCP packet to one loopback port (only inside our namespace)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    sh(["nft", "add", "table", "inet", "sluice_probe_test"])
    sh(["nft", "add chain inet sluice_probe_test input { type filter hook input priority 0; policy accept; }"])
    sh(["nft", "add", "rule", "inet", "sluice_probe_test", "input", "tcp", "dport", str(port), "drop"])
    BLACKHOLE["port"] = port


class GarbageServer(TcpServer):
    """Reads the request head, answers with bytes that are not HTTP, closes."""

    def handle(self, conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\nnot http at all\r\n\r\n")


class CloseServer(TcpServer):
    """Closes every connection as soon as it is accepted."""

    def handle(self, conn):
        conn.close()


# --------------------------------------------------------------------------
# success


def test_success_waterfall():
    with HttpBackend(name="b1") as b:
        url = "http://127.0.0.1:%d/hello?x=1" % b.port
        p = probe([url])
        check(p.returncode == 0 and p.stderr == "", "exit 0, nothing on stderr", describe(p))
        first = p.stdout.splitlines()[0]
        check(first == "GET %s -> 127.0.0.1:%d" % (url, b.port), "header line names the URL and the address",
              first)
        check("dns        skipped (IP literal)" in p.stdout, "DNS is skipped for an IP literal", p.stdout)
        check(re.search(r"connect\s+127\.0\.0\.1:%d  connected  \d+\.\d{3} ms  local 127\.0\.0\.1:\d+" % b.port,
                        p.stdout), "the connect attempt and the local address are shown", p.stdout)
        rows = waterfall_rows(p.stdout)
        check(list(rows) == PHASES + ["total"], "one waterfall line per phase, then total", p.stdout)
        check(rows["dns"][1] == 0.0, "dns is 0 ms for a literal", p.stdout)
        offset = 0.0
        ok = True
        for name in PHASES:
            ok = ok and abs(rows[name][0] - offset) < 0.0015
            offset += rows[name][1]
        check(ok, "each phase starts where the previous ended", p.stdout)
        check(abs(offset - rows["total"][1]) < 0.01, "the phases add up to the total", p.stdout)
        check(all(len(r[2].strip()) >= 1 and set(r[2].strip()) == {"#"} for n, r in rows.items() if r[1] > 0),
              "every phase with a duration has a bar of '#'", p.stdout)
        check(rows["total"][2] == "#" * 50, "the total bar spans 50 columns", p.stdout)
        check(re.search(r"^tcp_info   rtt \d+\.\d{3} ms  rttvar \d+\.\d{3} ms  retransmits \d+  total retransmits "
                        r"\d+  cwnd \d+  ssthresh \S+.*  delivery rate .+  congestion \w+", p.stdout, re.M),
              "a TCP_INFO line", p.stdout)
        m = re.search(r"^HTTP/1\.1 200 OK$", p.stdout, re.M)
        check(m, "the status line", p.stdout)
        cl = re.search(r"^  Content-Length: (\d+)$", p.stdout, re.M)
        body = re.search(r"^body\s+(\d+) bytes$", p.stdout, re.M)
        check(cl and body and cl.group(1) == body.group(1), "Content-Length and the body size agree", p.stdout)
        check("  Content-Type: application/json" in p.stdout and "  Server: http_backend" in p.stdout,
              "key response headers are shown", p.stdout)
        check("X-Backend" not in p.stdout, "other headers are left to --json", p.stdout)
        rec = b.requests_for(lambda r: r["target"] == "/hello?x=1")
        check(len(rec) == 1, "the backend got GET /hello?x=1", b.records)
        hdrs = {k.lower(): v for k, v in rec[0]["headers"]}
        check(hdrs.get("host") == "127.0.0.1:%d" % b.port and hdrs.get("accept") == "*/*"
              and hdrs.get("connection") == "close" and re.match(r"sluice-probe/\d+\.\d+\.\d+$", hdrs.get("user-agent", "")),
              "Host, Accept, Connection: close and User-Agent: sluice-probe/<version> are sent", hdrs)


def test_json():
    with HttpBackend(name="jb") as b:
        p = probe(["http://127.0.0.1:%d/json" % b.port, "--json"])
        check(p.returncode == 0, "exit 0", describe(p))
        try:
            d = json.loads(p.stdout)
        except ValueError as e:
            check(False, "the output is one JSON object", "%s\n%s" % (e, p.stdout))
        check(d["url"] == "http://127.0.0.1:%d/json" % b.port and d["status"] == 200, "url and status", d)
        phases = [d["dns"]["us"], d["connect"]["us"], d["request_sent_us"], d["first_byte_us"], d["body_us"]]
        check(all(isinstance(v, int) and v >= 0 for v in phases + [d["total_us"]]), "every phase is >= 0 us", d)
        check(sum(phases) <= d["total_us"] <= sum(phases) + 50, "the phases sum to the total (within 50 us)",
              "phases %s total %s" % (phases, d["total_us"]))
        check(d["dns"]["skipped"] == "literal" and d["dns"]["us"] == 0, "dns skipped (0, literal)", d["dns"])
        att = d["connect"]["attempts"]
        check(len(att) == 1 and att[0]["result"] == "connected" and att[0]["address"] == "127.0.0.1:%d" % b.port,
              "one connect attempt", att)
        check(re.match(r"127\.0\.0\.1:\d+$", d["connect"]["local"] or ""), "the local address", d["connect"])
        ti = d["tcp_info"]
        check(ti and ti["rtt_us"] > 0 and ti["cwnd"] > 0 and ti["congestion"], "tcp_info is filled", ti)
        check(d["headers"].get("x-backend") == "jb" and int(d["headers"]["content-length"]) == d["body_bytes"],
              "every response header, lower-case, and body_bytes", d["headers"])
        check("error" not in d and d["exit_status"] == 0, "no error on success", d)

        p = probe(["http://127.0.0.1:%d/" % b.port, "--json", "-n", "3"])
        check(p.returncode == 0, "-n 3 --json: exit 0", describe(p))
        d = json.loads(p.stdout)
        check(len(d["runs"]) == 3 and all(r["status"] == 200 for r in d["runs"]), "-n 3 --json: three runs", d)
        s = d["summary"]
        check(s["runs"] == 3 and s["ok"] == 3 and s["statuses"] == {"200": 3}, "-n 3 --json: the summary counts", s)
        t = s["phases"]["total_us"]
        check(0 < t["min"] <= t["p50"] <= t["p90"] <= t["p99"] <= t["max"], "-n 3 --json: ordered percentiles", t)
        ports = {r["connect"]["local"] for r in d["runs"]}
        check(len(ports) == 3, "-n: a new connection for every run", ports)


def test_repeat_summary():
    with HttpBackend(name="nb") as b:
        p = probe(["http://127.0.0.1:%d/" % b.port, "-n", "20"])
        check(p.returncode == 0, "exit 0", describe(p))
        rows = {}
        for line in p.stdout.splitlines():
            m = re.match(r"^(\w+)\s+(\d+\.\d{3})\s+(\d+\.\d{3})\s+(\d+\.\d{3})\s+(\d+\.\d{3})\s+(\d+\.\d{3})$", line)
            if m:
                rows[m.group(1)] = [float(x) for x in m.groups()[1:]]
        check(list(rows) == PHASES + ["total"], "one min/p50/p90/p99/max line per phase and total", p.stdout)
        check(all(v == sorted(v) for v in rows.values()), "min <= p50 <= p90 <= p99 <= max", rows)
        check(re.search(r"^phase\s+min ms\s+p50 ms\s+p90 ms\s+p99 ms\s+max ms$", p.stdout, re.M), "a column header",
              p.stdout)
        check(re.search(r"^status\s+200 x20$", p.stdout, re.M), "status counts: 200 x20", p.stdout)
        check(b.stats()["connections"] == 20, "the backend saw 20 connections", b.stats())


def test_method_and_headers():
    with HttpBackend(name="mh") as b:
        p = probe(["http://127.0.0.1:%d/echo" % b.port, "-X", "DELETE", "-H", "X-Probe: yes please",
                   "-H", "User-Agent: custom/1", "-H", "Accept:"])
        check(p.returncode == 0, "exit 0", describe(p))
        check(p.stdout.startswith("DELETE http://"), "the method is on the header line", p.stdout)
        rec = b.requests_for(lambda r: r["target"] == "/echo")
        check(len(rec) == 1 and rec[0]["method"] == "DELETE", "-X reaches the backend", b.records)
        hdrs = [(k.lower(), v) for k, v in rec[0]["headers"]]
        check(("x-probe", "yes please") in hdrs, "-H reaches the backend", hdrs)
        check([v for k, v in hdrs if k == "user-agent"] == ["custom/1"], "-H replaces a default field", hdrs)
        check(not [v for k, v in hdrs if k == "accept"], "-H 'Name:' removes a default field", hdrs)

        p = probe(["http://127.0.0.1:%d/head" % b.port, "-X", "HEAD", "--json"])
        d = json.loads(p.stdout)
        check(p.returncode == 0 and d["status"] == 200 and d["body_bytes"] == 0,
              "HEAD: no body expected despite Content-Length", describe(p))


def test_slow_backend():
    with HttpBackend(name="slow") as b:
        p = probe(["http://127.0.0.1:%d/delay/300" % b.port])
        check(p.returncode == 0, "exit 0", describe(p))
        rows = waterfall_rows(p.stdout)
        check(rows["first_byte"][1] >= 300.0, "first_byte >= 300 ms", p.stdout)
        bars = {name: rows[name][2].count("#") for name in PHASES}
        check(bars["first_byte"] >= 45 and all(bars[n] <= 2 for n in PHASES if n != "first_byte"),
              "the bar is nearly all first_byte", bars)
        info("first_byte %.3f ms, bars %s" % (rows["first_byte"][1], bars))


# --------------------------------------------------------------------------
# failures


def test_refused():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = probe(["http://127.0.0.1:%d/" % port])
    check_failure(p, 5, r"127\.0\.0\.1:%d: connection refused$" % port, "refused port")
    check("connection refused" in p.stdout, "the attempt is in the output", p.stdout)
    p = probe(["http://127.0.0.1:%d/" % port, "--json"])
    d = json.loads(p.stdout)
    check(d["error"]["kind"] == "connect_refused" and d["exit_status"] == 5 and d["status"] is None
          and d["first_byte_us"] is None, "--json: error{kind,message}, unreached phases are null", d)


def test_fallback_to_next_address():
    with HttpBackend(name="fb") as b:
        # the backend listens on 127.0.0.1 only: 127.0.0.2 refuses, the next address connects
        p = probe(["http://api.example:%d/" % b.port, "--resolve", "api.example:%d:127.0.0.2,127.0.0.1" % b.port,
                   "--json"])
        d = json.loads(p.stdout)
        att = d["connect"]["attempts"]
        check(p.returncode == 0 and [a["result"] for a in att] == ["connection refused", "connected"]
              and att[0]["address"] == "127.0.0.2:%d" % b.port and att[1]["address"] == "127.0.0.1:%d" % b.port,
              "addresses are tried in order; the first success wins", describe(p))
        check(d["connect"]["us"] >= att[0]["us"] + att[1]["us"], "connect covers every attempt", d["connect"])


def test_response_timeout():
    with HoldServer() as h:
        p = probe(["http://127.0.0.1:%d/" % h.port, "--timeout", "500ms"])
        check_failure(p, 9, r"no response within 500ms after the request was sent", "a server that never answers")
        check(0.5 <= p.elapsed < 3, "it gives up after about 500 ms (%.2f s)" % p.elapsed, describe(p))
        rows = waterfall_rows(p.stdout)
        check(rows.get("first_byte", (0, 0))[1] >= 500, "the waterfall shows first_byte waiting >= 500 ms", p.stdout)
        check(h.received > 0, "the request reached the server", h.received)


def test_body_stall():
    class Stall(TcpServer):
        def handle(self, conn):
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            self._stop.wait(10)

    with Stall() as s:
        p = probe(["http://127.0.0.1:%d/" % s.port, "--timeout", "400ms"])
        check_failure(p, 9, r"the response body stalled: nothing for 400ms after 10 bytes", "a body that stalls")


def test_malformed():
    with GarbageServer() as g:
        p = probe(["http://127.0.0.1:%d/" % g.port])
        check_failure(p, 8, r"malformed response: HPE_\w+: .+", "a server that sends garbage")
    with HttpBackend(name="inv") as b:
        p = probe(["http://127.0.0.1:%d/invalid/bad-chunk" % b.port])
        check_failure(p, 8, r"malformed response: .*chunk", "a bad chunk size")


def test_closed_or_reset():
    with CloseServer() as c:
        p = probe(["http://127.0.0.1:%d/" % c.port])
        check_failure(p, 7, r"(closed|reset).* before a complete response", "a server that closes at once")
    with HttpBackend(name="rs") as b:
        p = probe(["http://127.0.0.1:%d/reset" % b.port])
        check_failure(p, 7, r"reset by peer before a complete response", "a reset after the request")
        p = probe(["http://127.0.0.1:%d/reset-mid-body" % b.port])
        check_failure(p, 7, r"before a complete response", "a reset in the middle of the body")


def test_connect_timeout():
    if "port" not in BLACKHOLE:
        raise Skip("no nftables blackhole (not in a network namespace)")
    port = BLACKHOLE["port"]
    p = probe(["http://127.0.0.1:%d/" % port, "--timeout", "300ms"])
    check_failure(p, 6, r"127\.0\.0\.1:%d: timed out after 300ms$" % port, "SYNs dropped")
    check(0.3 <= p.elapsed < 3, "gives up after about 300 ms (%.2f s)" % p.elapsed, describe(p))
    # two addresses, both dropped: each gets its own timeout
    p = probe(["http://h.example:%d/" % port, "--resolve", "h.example:%d:127.0.0.1,127.0.0.1" % port,
               "--timeout", "200ms", "--json"])
    d = json.loads(p.stdout)
    check(p.returncode == 6 and [a["result"] for a in d["connect"]["attempts"]] == ["timed out after 200ms"] * 2,
          "the timeout applies per address", describe(p))
    check(p.elapsed >= 0.4, "two timeouts take >= 400 ms (%.2f s)" % p.elapsed)


# --------------------------------------------------------------------------
# routing overrides


def test_resolve_and_connect_to():
    with HttpBackend(name="ov") as b:
        p = probe(["http://api.example:%d/r" % b.port, "--resolve", "api.example:%d:127.0.0.1" % b.port])
        check(p.returncode == 0 and "dns        skipped (--resolve 127.0.0.1)" in p.stdout,
              "--resolve: DNS skipped, the given address used", describe(p))
        rec = b.requests_for(lambda r: r["target"] == "/r")
        check(rec and dict((k.lower(), v) for k, v in rec[0]["headers"])["host"] == "api.example:%d" % b.port,
              "--resolve: Host names the URL's host", rec)

        p = probe(["http://api.example/c", "--connect-to", "api.example:80:127.0.0.1:%d" % b.port, "--json"])
        d = json.loads(p.stdout) if p.stdout.startswith("{") else {}
        check(p.returncode == 0 and d.get("connect", {}).get("remote") == "127.0.0.1:%d" % b.port,
              "--connect-to: connects to the given address and port", describe(p))
        rec = b.requests_for(lambda r: r["target"] == "/c")
        check(rec and dict((k.lower(), v) for k, v in rec[0]["headers"])["host"] == "api.example",
              "--connect-to: Host stays the URL's host", rec)

        # a --connect-to that does not match leaves the URL alone (here: nothing listens on 1)
        p = probe(["http://127.0.0.1:%d/" % b.port, "--connect-to", "other.example:80:127.0.0.1:1"])
        check(p.returncode == 0, "--connect-to for another host is ignored", describe(p))


# --------------------------------------------------------------------------
# DNS through nsd


def nsd(records, **kw):
    if dns_server is None:
        raise Skip("tests/integration/dns_server.py is not there")
    return dns_server.NsdServer(records, **kw)


def test_dns_nxdomain_and_nodata():
    ns = nsd(["api IN A 127.0.0.1"], ttl=300, minimum=30)
    p = probe(["http://nope.test.sluice/", "--dns-server", ns.address])
    check_failure(p, 3, r"^sluice probe: nope\.test\.sluice: no such name \(NXDOMAIN\)$", "NXDOMAIN")
    p = probe(["--dns", "nope.test.sluice", "--dns-server", ns.address])
    check_failure(p, 3, r"nope\.test\.sluice: no such name \(NXDOMAIN\)$", "--dns NXDOMAIN")
    check(re.search(r"^negative\s+no such name \(NXDOMAIN\)$", p.stdout, re.M)
          and re.search(r"^ttl\s+30 s as sent \(negative TTL\), cached for 30s$", p.stdout, re.M),
          "--dns shows the negative answer and its negative TTL as sent and cached", p.stdout)
    p = probe(["--dns", "test.sluice", "--dns-server", ns.address])
    check_failure(p, 3, r"test\.sluice: no \w+ record \(NODATA\)", "NODATA (the apex has no A record)")


def test_dns_cname_chain():
    ns = nsd(["api IN A 127.0.0.1", "api IN A 127.0.0.2", "web IN CNAME api", "www IN CNAME web"], ttl=120)
    p = probe(["--dns", "www.test.sluice", "--dns-server", ns.address])
    check(p.returncode == 0, "exit 0", describe(p))
    check(re.search(r"^resolver\s+%s$" % re.escape(ns.address), p.stdout, re.M), "the resolver used", p.stdout)
    check(re.search(r"^cname\s+www\.test\.sluice -> web\.test\.sluice -> api\.test\.sluice$", p.stdout, re.M),
          "the CNAME chain", p.stdout)
    check(re.findall(r"^answer\s+(\S+)$", p.stdout, re.M) == ["127.0.0.1", "127.0.0.2"], "each answer", p.stdout)
    check(re.search(r"^ttl\s+120 s as sent, cached for 120s$", p.stdout, re.M), "the TTL as sent and cached",
          p.stdout)
    check(re.search(r"^time\s+\d+\.\d{3} ms$", p.stdout, re.M), "the time", p.stdout)
    p = probe(["--dns", "www.test.sluice", "--dns-server", ns.address, "--json"])
    d = json.loads(p.stdout)
    check(d["cname_chain"] == ["web.test.sluice", "api.test.sluice"]
          and [a["address"] for a in d["answers"]] == ["127.0.0.1", "127.0.0.2"]
          and all(a["ttl"] == 120 for a in d["answers"]), "--dns --json", d)


def test_dns_then_http():
    with HttpBackend(name="dn") as b:
        ns = nsd(["api IN A 127.0.0.1", "www IN CNAME api"], ttl=300)
        url = "http://www.test.sluice:%d/" % b.port
        p = probe([url, "--dns-server", ns.address, "--json"])
        check(p.returncode == 0, "exit 0", describe(p))
        d = json.loads(p.stdout)
        check(d["dns"]["server"] == ns.address and d["dns"]["cname_chain"] == ["api.test.sluice"]
              and d["dns"]["answers"] == [{"address": "127.0.0.1", "ttl": 300}] and not d["dns"]["from_cache"]
              and not d["dns"]["from_hosts_file"] and d["dns"]["us"] > 0, "dns: server, chain, answers, ttl", d["dns"])
        p = probe([url, "--dns-server", ns.address])
        check(re.search(r"^dns\s+www\.test\.sluice via %s \(\d+\.\d{3} ms\)$" % re.escape(ns.address), p.stdout, re.M)
              and "cname www.test.sluice -> api.test.sluice" in p.stdout
              and re.search(r"127\.0\.0\.1  ttl 300 s as sent", p.stdout), "dns lines in the text output", p.stdout)
        p = probe([url, "--dns-server", ns.address, "-n", "5"])
        check(p.returncode == 0 and "1 lookup(s) asked the servers, 4 answered from the resolver's cache" in p.stdout,
              "-n: later runs are answered from the resolver's cache, and it says so", describe(p))


def test_dns_server_stopped():
    ns = nsd(["api IN A 127.0.0.1"])
    ns.pause()
    try:
        p = probe(["http://api.test.sluice/", "--dns-server", ns.address, "--timeout", "500ms"])
        check_failure(p, 4, r"api\.test\.sluice: no answer from %s within 500ms" % re.escape(ns.address),
                      "nsd stopped (SIGSTOP)")
        check(0.4 <= p.elapsed < 3, "bounded by --timeout (%.2f s)" % p.elapsed, describe(p))
        p = probe(["--dns", "api.test.sluice", "--dns-server", ns.address, "--timeout", "500ms"])
        check_failure(p, 4, r"no answer from", "--dns with nsd stopped")
    finally:
        ns.resume()


# --------------------------------------------------------------------------
# usage


def test_usage_errors():
    cases = [
        (["ftp://example.com/"], r"scheme 'ftp' is not supported"),
        (["example.com"], r"must start with http:// or https://$"),
        (["http:///path"], r"no host"),
        (["http://exa mple.com/"], r"space"),
        (["http://example.com:0/"], r"port '0'"),
        (["http://example.com:70000/"], r"port '70000'"),
        (["http://user:pw@example.com/"], r"credentials"),
        (["http://[::1/"], r"closing"),
        (["http://bad_host!/"], r"not a valid host"),
        ([], r"missing URL"),
        (["http://a/", "http://b/"], r"one URL only"),
        (["http://a/", "-n", "0"], r"-n '0'"),
        (["http://a/", "-n", "10001"], r"-n '10001'"),
        (["http://a/", "--timeout", "soon"], r"--timeout 'soon'"),
        (["http://a/", "-H", "no colon"], r"expected 'Name: value'"),
        (["http://a/", "-H", "Bad Name: x"], r"not a valid field name"),
        (["http://a/", "-X", "GET /"], r"not a valid method"),
        (["http://a/", "--resolve", "a:80"], r"--resolve"),
        (["http://a/", "--connect-to", "a:80:b"], r"--connect-to"),
        (["http://a/", "--dns-server", "nonsense"], r"--dns-server"),
        (["http://a/", "--bogus"], r"unknown option '--bogus'"),
        (["http://a/", "-n"], r"-n needs a value"),
    ]
    for args, pattern in cases:
        p = probe(args, timeout=10)
        check_failure(p, 2, pattern, "probe %s" % " ".join(args) if args else "probe (no arguments)")
    p = run_sluice_cmd(["help"])
    check(p.returncode == 0 and "sluice probe URL" in p.stdout and "3 NXDOMAIN/NODATA" in p.stdout
          and "9 response timeout" in p.stdout, "`sluice help` documents probe and its exit statuses", p.stdout)


if __name__ == "__main__":
    harness.reexec_in_netns_or_skip()
    try:
        setup_blackhole()
    except Exception as e:  # nft missing: only the connect-timeout case skips
        print("info   no nftables blackhole: %s" % e, flush=True)
    run_cases([test_success_waterfall, test_json, test_repeat_summary, test_method_and_headers, test_slow_backend,
               test_refused, test_fallback_to_next_address, test_response_timeout, test_body_stall, test_malformed,
               test_closed_or_reset, test_connect_timeout, test_resolve_and_connect_to,
               test_dns_nxdomain_and_nodata, test_dns_cname_chain, test_dns_then_http, test_dns_server_stopped,
               test_usage_errors])

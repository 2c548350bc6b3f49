#!/usr/bin/env python3
"""The UDP proxy (`protocol: udp`) against real peers on loopback: a UDP echo backend whose
answers come back to each of many concurrent client sockets unchanged and counted exactly;
DNS through sluice to nsd with max_responses 1 ending each session on its answer; an idle
session closed after idle_timeout and logged with its counts; max_sessions,
max_sessions_per_source and max_datagram_size dropping datagrams and counting them;
round_robin spreading sessions over two endpoints; an endpoint with nothing listening
(ICMP port unreachable) ending its session as upstream_error."""

import json
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
import dns_server  # noqa: E402
import http_util as hu  # noqa: E402
import udp_util as uu  # noqa: E402


def udp_listener(name="udp_in", cluster="backends", **udp):
    lst = {"name": name, "address": "127.0.0.1:0", "protocol": "udp", "cluster": cluster}
    if udp:
        lst["udp"] = udp
    return lst


def cluster(endpoints, name="backends", **kw):
    c = {"name": name, "endpoints": [{"address": e} for e in endpoints]}
    c.update(kw)
    return c


def case_echo_many_sessions():
    echo = uu.UdpEcho(prefix=b"echo:")
    sl, ap = uu.start([udp_listener()], [cluster([echo.address])], workers=2)
    port = sl.port("udp_in")
    clients = [uu.client() for _ in range(20)]
    bad = []
    sent_bytes = 0
    for round_ in range(5):
        for i, c in enumerate(clients):
            payload = ("client %d datagram %d " % (i, round_)).encode() + bytes([i]) * (i * 10)
            sent_bytes += len(payload)
            got = uu.exchange(c, port, payload)
            if got != b"echo:" + payload:
                bad.append((i, round_, got))
    check(not bad, "100 datagrams from 20 client sockets each came back as the backend echoed them",
          repr(bad[:3]))
    check(len(echo.peers) == 20, "the backend saw 20 distinct upstream sockets, one per session (%d)" %
          len(echo.peers))
    m = uu.metrics(ap, "sluice_udp")
    lbl = frozenset({("listener", "udp_in")})
    get = lambda name, **kw: m.get((name, lbl | frozenset(kw.items())))  # noqa: E731
    check(get("sluice_udp_sessions_total") == 20, "sluice_udp_sessions_total == 20 (%r)" %
          get("sluice_udp_sessions_total"))
    check(get("sluice_udp_datagrams_total", direction="upstream") == 100 and
          get("sluice_udp_datagrams_total", direction="downstream") == 100,
          "sluice_udp_datagrams_total: 100 each way")
    check(get("sluice_udp_bytes_total", direction="upstream") == sent_bytes and
          get("sluice_udp_bytes_total", direction="downstream") == sent_bytes + 5 * 100,
          "sluice_udp_bytes_total: %d up, %d down (the 5-byte prefix on each answer)" %
          (sent_bytes, sent_bytes + 500))
    active = uu.sample(ap, "sluice_listener_connections_active", listener="udp_in")
    check(active == 20, "sluice_listener_connections_active counts the 20 open sessions (%r)" % active)
    check(get("sluice_udp_batches_total", call="recvmmsg") >= 1, "the listener socket is read with recvmmsg")
    cfg = json.loads(hu.request_once(ap, "GET", "/config", host="admin", timeout=5).body)
    l0 = cfg["listeners"][0]
    check(l0["protocol"] == "udp" and l0["cluster"] == "backends" and
          l0["udp"] == {"session_key": "source_ip_port", "idle_timeout": "60s", "max_responses": 0,
                        "max_sessions": 10000, "max_sessions_per_source": 256, "max_datagram_size": 4096,
                        "proxy_protocol": False, "gro": True, "gso": True},
          "GET /config shows the udp listener and its settings", json.dumps(l0))
    lj = json.loads(hu.request_once(ap, "GET", "/listeners", host="admin", timeout=5).body)[0]
    check(lj["protocol"] == "udp" and lj["sessions"] == 20 and lj["active_connections"] == 20,
          "GET /listeners shows the udp listener's counters", json.dumps(lj))
    # The 20 sessions are still open: the drain closes them at its deadline.
    harness.check_clean_exit(sl, sl.stop(), "sluice exits 0 on SIGTERM with 20 sessions open")


def case_dns_through_sluice_max_responses():
    if not dns_server.nsd_available():
        raise harness.Skip("nsd is not installed")
    ns = dns_server.NsdServer(["api IN A 192.0.2.7", "www IN A 192.0.2.8"])
    harness.register_cleanup(ns.stop)
    sl, ap = uu.start([udp_listener(max_responses=1, idle_timeout="60s")], [cluster([ns.address])])
    server = "127.0.0.1:%d" % sl.port("udp_in")
    a = dns_server.query(server, "api.test.sluice", "A", timeout=5)
    check(a is not None and a[0] == "NOERROR" and [r[3] for r in a[1]] == ["192.0.2.7"],
          "an A query through sluice gets nsd's answer 192.0.2.7", repr(a))
    closed = uu.wait_sample(ap, "sluice_udp_sessions_closed_total", 1, listener="udp_in",
                            reason="max_responses")
    check(closed == 1, "the session ended on its first answer (max_responses: 1), not on its idle "
          "timeout (%r)" % closed)
    b = dns_server.query(server, "www.test.sluice", "A", timeout=5)
    check(b is not None and [r[3] for r in b[1]] == ["192.0.2.8"], "a second query gets 192.0.2.8",
          repr(b))
    closed = uu.wait_sample(ap, "sluice_udp_sessions_closed_total", 2, listener="udp_in",
                            reason="max_responses")
    check(closed == 2 and uu.sample(ap, "sluice_udp_sessions_total", listener="udp_in") == 2,
          "two queries, two sessions, both ended by max_responses")
    check(uu.sample(ap, "sluice_listener_connections_active", listener="udp_in") == 0,
          "no session stays open")
    sl.stop()


def case_sessions_reuse_upstream_sockets():
    # An endpoint that answers every request twice: with max_responses 1 the second answer
    # is the one a socket handed to the next session must never deliver.
    echo = uu.UdpEcho(prefix=b"first:", again=b"second:")
    sl, ap = uu.start([udp_listener(max_responses=1, idle_timeout="60s")], [cluster([echo.address])])
    port = sl.port("udp_in")
    c = uu.client()
    got = []
    for i in range(30):
        payload = b"request %d" % i
        got.append(uu.exchange(c, port, payload))
        # A client asking every 20 ms: each socket is back in the pool for longer than its
        # 5 ms quarantine when the next request comes.
        time.sleep(0.02)
    check(got == [b"first:request %d" % i for i in range(30)],
          "30 requests, each answered with its own first answer", repr(got[:4]))
    c.settimeout(0.3)
    try:
        extra = c.recvfrom(70000)[0]
    except socket.timeout:
        extra = None
    check(extra is None, "no second answer ever reaches the client (%r)" % extra)
    sessions = uu.sample(ap, "sluice_udp_sessions_total", listener="udp_in")
    closed = uu.wait_sample(ap, "sluice_udp_sessions_closed_total", 30, listener="udp_in",
                            reason="max_responses")
    reused = uu.sample(ap, "sluice_udp_upstream_sockets_reused_total", listener="udp_in")
    check(sessions == 30 and closed == 30, "30 sessions, each ended by its first answer (%r, %r)" %
          (sessions, closed))
    check(reused == 29, "every session after the first got the socket of the one before (%r)" %
          reused)
    check(len(echo.ports) == 30 and len(set(echo.ports)) >= 28,
          "the endpoint saw the requests from new source ports (%d distinct of %d)" %
          (len(set(echo.ports)), len(echo.ports)))
    sl.stop()


def case_idle_timeout_and_access_log():
    echo = uu.UdpEcho()
    d = harness.tempfile.mkdtemp(prefix="sluice-udp-")
    harness.register_cleanup(lambda: harness.shutil.rmtree(d, ignore_errors=True))
    log_path = os.path.join(d, "access.log")
    lst = udp_listener(idle_timeout="300ms")
    lst["access_log"] = {"path": log_path}
    sl, ap = uu.start([lst], [cluster([echo.address])])
    port = sl.port("udp_in")
    c = uu.client()
    check(uu.exchange(c, port, b"hello") == b"hello", "the first datagram is echoed")
    check(uu.exchange(c, port, b"again!") == b"again!", "the second datagram too")
    closed = uu.wait_sample(ap, "sluice_udp_sessions_closed_total", 1, listener="udp_in",
                            reason="idle_timeout")
    check(closed == 1, "the quiet session is closed by its 300 ms idle timeout (%r)" % closed)
    lines = harness.wait_until(lambda: open(log_path).read().splitlines() if os.path.exists(log_path) else [], 5)
    check(len(lines) == 1, "one access-log line for the session", repr(lines))
    rec = json.loads(lines[0])
    want = {"listener": "udp_in", "protocol": "udp", "cluster": "backends", "endpoint": echo.address,
            "close_reason": "idle_timeout", "datagrams_to_upstream": 2, "datagrams_to_downstream": 2,
            "bytes_to_upstream": 11, "bytes_to_downstream": 11,
            "downstream": "127.0.0.1:%d" % c.getsockname()[1]}
    got = {k: rec.get(k) for k in want}
    check(got == want, "the line names the session's addresses, counts and close reason", repr(rec))
    check(rec["timings_us"]["duration"] >= 300000, "its duration covers the idle timeout (%d us)" %
          rec["timings_us"]["duration"])
    check(uu.exchange(c, port, b"back") == b"back", "the same client socket later opens a new session")
    check(uu.sample(ap, "sluice_udp_sessions_total", listener="udp_in") == 2, "sluice_udp_sessions_total == 2")
    sl.stop()


def case_limits_drop_and_count():
    echo = uu.UdpEcho()
    lst = udp_listener(max_sessions=3, max_sessions_per_source=2, max_datagram_size=100)
    sl, ap = uu.start([lst], [cluster([echo.address])])
    port = sl.port("udp_in")
    a, b, c = uu.client(), uu.client(), uu.client()
    check(uu.exchange(a, port, b"a") == b"a" and uu.exchange(b, port, b"b") == b"b",
          "two sessions from 127.0.0.1 are served")
    c.sendto(b"c", ("127.0.0.1", port))
    got = uu.wait_sample(ap, "sluice_udp_datagrams_dropped_total", 1, listener="udp_in",
                         reason="max_sessions_per_source")
    check(got == 1, "a third from the same address is dropped: max_sessions_per_source (%r)" % got)
    check(uu.exchange(a, port, b"x" * 100) == b"x" * 100, "a 100-byte datagram (max_datagram_size) passes")
    a.sendto(b"y" * 101, ("127.0.0.1", port))
    got = uu.wait_sample(ap, "sluice_udp_datagrams_dropped_total", 1, listener="udp_in", reason="too_large")
    check(got == 1, "a 101-byte datagram is dropped and counted as too_large (%r)" % got)
    # max_sessions 3: a third source address (127.0.0.2) gets one, a fourth (127.0.0.3) not.
    d = uu.client("127.0.0.2")
    check(uu.exchange(d, port, b"d") == b"d", "a session from 127.0.0.2 is the third of max_sessions 3")
    e = uu.client("127.0.0.3")
    e.sendto(b"e", ("127.0.0.1", port))
    got = uu.wait_sample(ap, "sluice_udp_datagrams_dropped_total", 1, listener="udp_in", reason="max_sessions")
    check(got == 1, "a fourth session is dropped and counted: max_sessions (%r)" % got)
    check(echo.received == 4, "the backend received exactly the 4 datagrams that passed (%d)" % echo.received)
    sl.stop()


def case_flood_of_sources_costs_a_bounded_table():
    echo = uu.UdpEcho()
    lst = udp_listener(max_sessions=40, idle_timeout="60s")
    sl, ap = uu.start([lst], [cluster([echo.address])])
    port = sl.port("udp_in")
    fds_before = sl.open_fds()
    # 200 sources (127.0.1.1 .. 127.0.1.200 on the loopback /8), one datagram each.
    socks = [uu.client("127.0.1.%d" % i) for i in range(1, 201)]
    for s_ in socks:
        s_.sendto(b"flood", ("127.0.0.1", port))
    dropped = uu.wait_sample(ap, "sluice_udp_datagrams_dropped_total", 160, listener="udp_in",
                             reason="max_sessions")
    check(dropped == 160, "160 of 200 sources dropped and counted: max_sessions (%r)" % dropped)
    check(uu.sample(ap, "sluice_udp_sessions_total", listener="udp_in") == 40 and
          uu.sample(ap, "sluice_listener_connections_active", listener="udp_in") == 40,
          "exactly 40 sessions exist")
    # The admin connections of the scrapes above close on their own time: wait for them.
    fds = harness.wait_until(lambda: sl.open_fds() if sl.open_fds() - fds_before == 40 else 0, 5) or sl.open_fds()
    check(fds - fds_before == 40, "one upstream socket per session, nothing for the dropped "
          "sources (%d descriptors more)" % (fds - fds_before))
    harness.wait_until(lambda: echo.received >= 40, 5)
    check(echo.received == 40, "the backend saw 40 datagrams (%d)" % echo.received)
    sl.stop()


def case_ipv6_clients():
    if not dns_server.ipv6_loopback_works():
        raise harness.Skip("no IPv6 loopback")
    backend = uu.UdpEcho(prefix=b"v4:")
    sl, ap = uu.start([udp_listener(), dict(udp_listener(name="udp6"), address="[::1]:0")],
                      [cluster([backend.address])])
    c = uu.client("::1")
    c.sendto(b"over v6", ("::1", sl.port("udp6")))
    data, peer = c.recvfrom(2048)
    check(data == b"v4:over v6" and peer[0] == "::1" and peer[1] == sl.port("udp6"),
          "an IPv6 client's datagram reaches an IPv4 endpoint and the answer comes from [::1]:%d" %
          sl.port("udp6"), repr((data, peer)))
    sl.stop()


def case_wildcard_listener_answers_from_the_address_sent_to():
    backend = uu.UdpEcho(prefix=b"echo:")
    sl, ap = uu.start([dict(udp_listener(), address="0.0.0.0:0")], [cluster([backend.address])])
    port = sl.port("udp_in")
    c = uu.client()
    for dst in ("127.0.0.2", "127.0.0.3"):
        c.sendto(b"to " + dst.encode(), (dst, port))
        data, peer = c.recvfrom(2048)
        check(data == b"echo:to " + dst.encode() and peer == (dst, port),
              "a client that sent to %s:%d gets the answer from there, not from the routing "
              "table's source (IP_PKTINFO)" % (dst, port), repr((data, peer)))
    sl.stop()


def case_round_robin_over_endpoints():
    one, two = uu.UdpEcho(prefix=b"one:"), uu.UdpEcho(prefix=b"two:")
    sl, ap = uu.start([udp_listener()], [cluster([one.address, two.address], lb_policy="round_robin")])
    port = sl.port("udp_in")
    seen = []
    for i in range(6):
        c = uu.client()
        for k in range(3):  # a session stays on its endpoint
            seen.append((i, uu.exchange(c, port, b"%d" % k)[:4]))
    by_client = {}
    for i, who in seen:
        by_client.setdefault(i, set()).add(who)
    check(all(len(v) == 1 for v in by_client.values()), "each session's datagrams all go to one endpoint",
          repr(by_client))
    firsts = [next(iter(v)) for _, v in sorted(by_client.items())]
    check(firsts.count(b"one:") == 3 and firsts.count(b"two:") == 3,
          "round_robin gives 3 of 6 sessions to each endpoint", repr(firsts))
    sl.stop()


def case_drained_endpoint_is_not_picked():
    one, two = uu.UdpEcho(prefix=b"one:"), uu.UdpEcho(prefix=b"two:")
    sl, ap = uu.start([udp_listener()], [cluster([one.address, two.address], lb_policy="round_robin",
                                                 panic_threshold=0)])
    port = sl.port("udp_in")
    r = hu.request_once(ap, "POST", "/clusters/backends/endpoints/%s/drain" % one.address, body=b"",
                        host="admin", timeout=10)
    check(r.status == 200, "the admin API drains endpoint one", r.describe())
    check(sl.wait_log("cluster backends: endpoint %s draining: no new requests" % one.address, 5),
          "the worker has the snapshot with endpoint one draining")
    got = [uu.exchange(uu.client(), port, b"x") for _ in range(4)]
    check(got == [b"two:x"] * 4, "4 new sessions all go to the usable endpoint two", repr(got))
    sl.stop()


def case_proxy_protocol_v2_header():
    echo = uu.UdpEcho()  # echoes the header back, so the client can read what the endpoint got
    sl, ap = uu.start([udp_listener(proxy_protocol=True)], [cluster([echo.address])])
    port = sl.port("udp_in")
    c = uu.client()
    got = uu.exchange(c, port, b"payload")
    want = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x12, 0, 12]) +
            socket.inet_aton("127.0.0.1") + socket.inet_aton("127.0.0.1") +
            struct.pack("!HH", c.getsockname()[1], port) + b"payload")
    check(got == want, "the endpoint gets a PROXY v2 header (UDP over IPv4, client %s, listener port %d) "
          "before each datagram" % (c.getsockname(), port), repr(got))
    check(uu.exchange(c, port, b"2nd") == want[:28] + b"2nd", "and before the next one too")
    check(uu.sample(ap, "sluice_udp_bytes_total", listener="udp_in", direction="upstream") == 10,
          "the header is not counted as payload bytes")
    sl.stop()


def case_upstream_gone():
    holder = uu.UdpEcho()
    address = holder.address
    holder.stop()  # nothing listens there now: the kernel answers ICMP port unreachable
    sl, ap = uu.start([udp_listener()], [cluster([address])])
    port = sl.port("udp_in")
    c = uu.client()
    c.sendto(b"anyone?", ("127.0.0.1", port))
    got = uu.wait_sample(ap, "sluice_udp_sessions_closed_total", 1, listener="udp_in",
                         reason="upstream_error")
    check(got == 1, "the session to an endpoint with nothing listening ends as upstream_error (%r)" % got)
    check(uu.sample(ap, "sluice_listener_connections_active", listener="udp_in") == 0, "and is gone")
    sl.stop()


def case_reload_changes_settings_in_place():
    echo = uu.UdpEcho()
    clusters = [cluster([echo.address])]
    sl, ap = uu.start([udp_listener(idle_timeout="60s")], clusters)
    port = sl.port("udp_in")
    old = uu.client()
    check(uu.exchange(old, port, b"before") == b"before", "a session opened before the reload")
    with open(sl.config_path + ".tmp", "w") as f:
        f.write(uu.config([udp_listener(idle_timeout="60s", max_responses=1)], clusters))
    os.replace(sl.config_path + ".tmp", sl.config_path)
    r = hu.request_once(ap, "POST", "/reload", body=b"", host="admin", timeout=20)
    reply = json.loads(r.body)
    check(r.status == 200 and reply.get("result") == "applied", "the reload is applied", r.body.decode())
    new = uu.client()
    check(uu.exchange(new, port, b"after") == b"after", "a session opened after it is served on the same socket")
    closed = uu.wait_sample(ap, "sluice_udp_sessions_closed_total", 1, listener="udp_in", reason="max_responses")
    check(closed == 1, "the new session follows the new max_responses: 1 (%r)" % closed)
    check(uu.exchange(old, port, b"still") == b"still" and
          uu.sample(ap, "sluice_udp_sessions_total", listener="udp_in") == 2,
          "the session from before keeps its settings and its upstream socket")
    sl.stop()


BAD_CONFIG = """\
listeners:
  - name: u
    address: 127.0.0.1:0
    protocol: udp
    cluster: backends
    splice: false
    udp: {max_datagram_size: 70000, session_key: port}
clusters:
  - name: backends
    endpoints: [{address: 127.0.0.1:9}]
"""


def case_config_errors_are_located():
    path, r = uu.check_config_file(BAD_CONFIG, "sluice-udp-")
    check(r.returncode == 1, "sluice check refuses the file (exit %d)" % r.returncode)
    want = [
        path + ":6:13: listeners[0].splice: not for protocol: udp (session settings go in the udp block)",
        path + ":7:30: listeners[0].udp.max_datagram_size: expected a size from 1 to 65507 bytes, got 70000",
        path + ":7:50: listeners[0].udp.session_key: expected one of: source_ip_port, source_ip, got 'port'",
    ]
    got = (r.stdout + r.stderr).splitlines()
    check(got == want, "each error is located at its key", "\n".join(got))


if __name__ == "__main__":
    harness.run_cases([case_echo_many_sessions, case_dns_through_sluice_max_responses,
                       case_sessions_reuse_upstream_sockets,
                       case_idle_timeout_and_access_log, case_limits_drop_and_count,
                       case_round_robin_over_endpoints, case_upstream_gone,
                       case_reload_changes_settings_in_place, case_drained_endpoint_is_not_picked,
                       case_flood_of_sources_costs_a_bounded_table, case_ipv6_clients,
                       case_proxy_protocol_v2_header,
                       case_wildcard_listener_answers_from_the_address_sent_to,
                       case_config_errors_are_located])

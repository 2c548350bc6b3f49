#!/usr/bin/env python3
"""Socket options as seen from outside with ss(8) and the kernel's TCP counters.

Runs in its own network namespace (re-executes itself under `unshare -n`) so that
net.ipv4.tcp_fastopen can be set and the TcpExt counters count only our traffic.

- with the namespace's default set to reno: listener congestion: bbr -> the
  accepted connection uses bbr; cluster congestion: cubic -> the upstream
  connection uses cubic;
- listener / cluster keepalive -> keepalive timers on both connections;
- backlog -> the listening sockets' queue length;
- send_buffer / receive_buffer -> skmem tb / rb (the kernel doubles the value);
- listener fastopen: data in the client's SYN is accepted (TCPFastOpenPassive);
- cluster fastopen: true -> sluice's upstream connect carries data in its SYN,
  and a backend that speaks first still reaches the client.
"""

import os
import re
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import (BannerServer, EchoServer, Skip, Sluice, check, check_clean_exit, connect, echo_roundtrip, info,
                     netstat_counter, recv_exact, register_cleanup, run_cases, sh, tcp_config, wait_until)


def ss_lines(filter_expr, opts="-tinmo"):
    p = sh(["ss", "-H", opts, "state", "established", filter_expr])
    # ss prints each socket on one line followed by an indented detail line
    text = p.stdout
    entries = []
    for line in text.splitlines():
        if line[:1].isspace() and entries:
            entries[-1] += " " + line.strip()
        else:
            entries.append(line.strip())
    return entries


def ss_lines_with_keepalive(filter_expr, timeout=10):
    """ss's entries for filter_expr, once there is one and it shows its keepalive timer (or
    what ss shows when the deadline passes). Right after traffic ss shows another timer
    instead (retransmit, until the peer's ACK arrives): the keepalive timer is armed already
    but shows only once that one is done."""
    last = [[]]

    def ready():
        last[0] = ss_lines(filter_expr)
        return len(last[0]) == 1 and "timer:(keepalive," in last[0][0]

    wait_until(ready, timeout, interval=0.05)
    return last[0]


def keepalive_left(ss_line):
    """Seconds left on the keepalive timer ss shows (None without one). ss writes the time as
    minutes, seconds and milliseconds, leaving out the parts that are zero: "1min" (exactly
    60 s left), "59sec", "59.920sec", "1min10sec", "800ms"."""
    m = re.search(r"timer:\(keepalive,([^,)]*)", ss_line)
    if not m:
        return None
    parts = re.fullmatch(r"(?:(\d+)min)?(?:(\d+(?:\.\d+)?)sec)?(?:(\d+)ms)?", m.group(1))
    if not parts or not any(parts.groups()):
        return None
    minutes, secs, ms = parts.groups()
    return int(minutes or 0) * 60 + float(secs or 0) + int(ms or 0) / 1000.0


def available_congestion():
    with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as f:
        return f.read().split()


def test_congestion_keepalive_buffers():
    missing = [a for a in ("bbr", "cubic") if a not in available_congestion()]
    if missing:
        raise Skip("%s not available (%s)" % (" ".join(missing), " ".join(available_congestion())))
    with EchoServer() as echo:
        cfg = tcp_config([echo.address],
                         listener={"socket_options": {"congestion": "bbr",
                                                      "keepalive": {"idle": "60s", "interval": "10s", "count": 5},
                                                      "send_buffer": "256KiB", "receive_buffer": "256KiB"}},
                         cluster={"socket_options": {"congestion": "cubic",
                                                     "keepalive": {"idle": "30s", "interval": "5s", "count": 3}}})
        with Sluice(cfg) as sl:
            port = sl.port()
            s = connect(port)
            check(echo_roundtrip(s, b"cc"), "connection proxied")
            client_port = s.getsockname()[1]
            accepted = ss_lines_with_keepalive("( sport = :%d and dport = :%d )" % (port, client_port))
            check(len(accepted) == 1, "ss shows sluice's accepted connection", "\n".join(accepted))
            info("accepted: %s" % accepted[0])
            check(re.search(r"\bbbr\b", accepted[0]) is not None, "accepted connection uses bbr", accepted[0])
            remaining = keepalive_left(accepted[0])
            check(remaining is not None and 40 <= remaining <= 60,
                  "accepted connection has a keepalive timer from idle: 60s (%s s left)" % remaining, accepted[0])
            m = re.search(r"skmem:\(([^)]*)\)", accepted[0])
            mem = dict(re.findall(r"([a-z]+)(\d+)", m.group(1))) if m else {}
            # the kernel doubles SO_RCVBUF/SO_SNDBUF; without the FORCE variants it caps at rmem_max/wmem_max
            want_rb = 2 * min(262144, int(open("/proc/sys/net/core/rmem_max").read()))
            want_tb = 2 * min(262144, int(open("/proc/sys/net/core/wmem_max").read()))
            check(mem.get("rb") == str(want_rb) and mem.get("tb") == str(want_tb),
                  "receive/send buffers are 256KiB (skmem rb/tb %s/%s, want %d/%d)" %
                  (mem.get("rb"), mem.get("tb"), want_rb, want_tb), accepted[0])
            upstream = ss_lines_with_keepalive("( dport = :%d )" % echo.port)
            check(len(upstream) == 1, "ss shows sluice's upstream connection", "\n".join(upstream))
            info("upstream: %s" % upstream[0])
            check(re.search(r"\bcubic\b", upstream[0]) is not None, "upstream connection uses cubic", upstream[0])
            remaining = keepalive_left(upstream[0])
            check(remaining is not None and 20 <= remaining <= 30,
                  "upstream connection has a keepalive timer from idle: 30s (%s s left)" % remaining,
                  upstream[0])
            s.close()
            check_clean_exit(sl, sl.stop())


def test_backlog():
    with EchoServer() as echo:
        with Sluice(tcp_config([echo.address], listener={"backlog": 77}, workers=2)) as sl:
            port = sl.port()
            p = sh(["ss", "-H", "-ltn", "sport = :%d" % port])
            rows = [l.split() for l in p.stdout.splitlines() if l.strip()]
            info("listening sockets: %s" % "; ".join(" ".join(r) for r in rows))
            check(rows, "ss shows sluice's listening socket(s)")
            # for a listening socket ss shows the backlog as Send-Q (third column: State Recv-Q Send-Q ...)
            check(all(r[2] == "77" for r in rows), "listen backlog is 77", p.stdout)
            check_clean_exit(sl, sl.stop())


def tfo_connect(port, payload):
    """Connects with TCP Fast Open (data in the SYN when a cookie is cached) and reads the echo."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    register_cleanup(s.close)
    s.settimeout(None)  # blocking: without a cookie yet, sendto waits for the handshake
    s.sendto(payload, socket.MSG_FASTOPEN, ("127.0.0.1", port))
    s.settimeout(5)
    got = recv_exact(s, len(payload))
    s.close()
    return got == payload


def test_listener_fastopen():
    with EchoServer() as echo:
        cfg = tcp_config([echo.address], listener={"socket_options": {"fastopen": 256}})
        with Sluice(cfg) as sl:
            port = sl.port()
            before = netstat_counter("TCPFastOpenPassive")
            results = [tfo_connect(port, b"tfo %d" % i) for i in range(3)]
            check(all(results), "3 TFO client connections proxied", repr(results))
            delta = netstat_counter("TCPFastOpenPassive") - before
            info("TCPFastOpenPassive +%d" % delta)
            check(delta >= 1, "sluice's listener accepted data in the SYN (TCPFastOpenPassive +%d)" % delta)
            check_clean_exit(sl, sl.stop())


def test_listener_without_fastopen():
    with EchoServer() as echo:
        cfg = tcp_config([echo.address], listener={"socket_options": {"fastopen": 0}})
        with Sluice(cfg) as sl:
            port = sl.port()
            before = netstat_counter("TCPFastOpenPassive")
            results = [tfo_connect(port, b"plain %d" % i) for i in range(3)]
            check(all(results), "TFO clients are still served (data sent after the handshake)", repr(results))
            check(netstat_counter("TCPFastOpenPassive") == before, "fastopen: 0 accepts no data in the SYN")
            check_clean_exit(sl, sl.stop())


def test_cluster_fastopen():
    with EchoServer(fastopen=64) as echo:
        cfg = tcp_config([echo.address], cluster={"socket_options": {"fastopen": True}})
        with Sluice(cfg) as sl:
            port = sl.port()
            before_p = netstat_counter("TCPFastOpenPassive")
            before_a = netstat_counter("TCPFastOpenActive")
            ok = 0
            for i in range(3):
                s = connect(port)  # plain client: any TFO in this namespace is sluice's upstream
                if echo_roundtrip(s, b"up %d" % i):
                    ok += 1
                s.close()
            check(ok == 3, "3 connections proxied with fastopen towards the backend")
            dp = netstat_counter("TCPFastOpenPassive") - before_p
            da = netstat_counter("TCPFastOpenActive") - before_a
            info("TCPFastOpenActive +%d, TCPFastOpenPassive +%d" % (da, dp))
            check(dp >= 1, "the backend received data in sluice's SYN (TCPFastOpenPassive +%d)" % dp)
            check_clean_exit(sl, sl.stop())


def test_cluster_fastopen_server_speaks_first():
    with BannerServer(fastopen=64) as backend:
        cfg = tcp_config([backend.address], cluster={"socket_options": {"fastopen": True}})
        with Sluice(cfg) as sl:
            port = sl.port()
            for i in range(2):
                s = connect(port)
                s.settimeout(3)
                try:
                    got = recv_exact(s, len(BannerServer.banner))
                except OSError as e:
                    got = repr(e).encode()
                check(got == BannerServer.banner,
                      "connection %d: a backend that speaks first reaches a silent client" % (i + 1),
                      "client got %r; the backend had accepted %d connection(s)\n%s"
                      % (got, backend.accepted, sl.stderr_text()[-2000:]))
                check(echo_roundtrip(s, b"then echo"), "connection %d: then data flows both ways" % (i + 1))
                s.close()
            check_clean_exit(sl, sl.stop())


if __name__ == "__main__":
    harness.reexec_in_netns_or_skip()
    sh(["sysctl", "-q", "-w", "net.ipv4.tcp_fastopen=3"])
    # a known default, so that bbr and reno below can only come from sluice's settings
    sh(["sysctl", "-q", "-w", "net.ipv4.tcp_congestion_control=reno"])
    run_cases([test_congestion_keepalive_buffers, test_backlog, test_listener_fastopen, test_listener_without_fastopen,
               test_cluster_fastopen, test_cluster_fastopen_server_speaks_first])

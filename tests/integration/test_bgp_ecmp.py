#!/usr/bin/env python3
"""Two sluice instances announce the same anycast prefix to one BIRD 2 (in a network namespace
of its own, one TCP-MD5 session per instance, from 192.0.2.1 and 192.0.2.3):
- BIRD holds both paths, one per instance, each with its instance's next hop, and installs
  them as one multipath kernel route (`merge paths`) with both next hops;
- SIGTERM to one instance: its path gets GRACEFUL_SHUTDOWN, BIRD's filter drops its
  preference and BIRD's best path (and the kernel route's only next hop) moves to the other
  instance while the stopping one still
  accepts and proxies (it has not begun draining); then its path is withdrawn, leaving the
  other's alone, and only then does it stop accepting and exit 0.
"""
import json
import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (EchoServer, Sluice, check, check_clean_exit, connect, echo_roundtrip,  # noqa: E402
                     reexec_in_netns_or_skip, run_cases, sh, wait_until)
from test_bgp import BIRD_IP, PASSWORD, PREFIX, SLUICE_IP, Bird, sluice_config  # noqa: E402

SECOND_IP = "192.0.2.3"

SECOND_PROTOCOL = """
protocol bgp sluice2 {{
  local {bird_ip} as 65000;
  neighbor {second_ip} as 65001;
  passive on;
  password "{password}";
  hold time 9;
  error wait time 1, 2;
  ipv4 {{ import filter gshut; export none; }};
}}
# Equally good BGP paths go to the kernel as one multipath route.
protocol kernel {{
  ipv4 {{ export all; }};
  merge paths on;
}}
""".format(bird_ip=BIRD_IP, second_ip=SECOND_IP, password=PASSWORD)

ROUTE_RE = re.compile(r"unicast \[(\w+) [^\]]*\]( \*)? \((\d+)\)")


def paths(bird, prefix=PREFIX):
    """{protocol: (best, next hop)} of the prefix in BIRD's table."""
    out = bird.cli("show route all " + prefix).stdout
    found, current = {}, None
    for line in out.splitlines():
        m = ROUTE_RE.search(line)
        if m:
            current = m.group(1)
            found[current] = [m.group(2) is not None, None]
            continue
        m = re.match(r"^\s+BGP\.next_hop: (\S+)", line)
        if m and current:
            found[current][1] = m.group(1)
    return {k: tuple(v) for k, v in found.items()}


def fib(bird, prefix=PREFIX):
    """The next hops of the prefix in the kernel table of BIRD's namespace, sorted."""
    r = subprocess.run(bird.nsenter(["ip", "-j", "route", "show", prefix]), stdout=subprocess.PIPE, text=True,
                       timeout=10)
    try:
        routes = json.loads(r.stdout or "[]")
    except ValueError:
        return None
    hops = []
    for route in routes:
        if "nexthops" in route:
            hops += [h.get("gateway") for h in route["nexthops"]]
        elif "gateway" in route:
            hops.append(route["gateway"])
    return sorted(hops)


def second_config(endpoints):
    return (sluice_config(endpoints, shutdown_delay="8s")
            .replace("router_id: %s" % SLUICE_IP, "router_id: %s" % SECOND_IP)
            .replace("local_address: %s" % SLUICE_IP, "local_address: %s" % SECOND_IP))


def case_the_peer_moves_to_the_other_instance_before_the_stop():
    bird = Bird(extra_conf=SECOND_PROTOCOL)
    sh(["ip", "addr", "add", SECOND_IP + "/24", "dev", "bgp0"])
    b = EchoServer()
    first = Sluice(sluice_config(["127.0.0.1:%d" % b.port], shutdown_delay="8s"), log_level="info")
    second = Sluice(second_config(["127.0.0.1:%d" % b.port]), log_level="info")
    both = wait_until(lambda: (lambda p: p if len(p) == 2 else None)(paths(bird)), 30)
    check(both is not None and {k: v[1] for k, v in both.items()} == {"sluice": SLUICE_IP, "sluice2": SECOND_IP},
          "BIRD holds both paths, each with its instance's next hop", repr(paths(bird)) + "\n" + bird.protocol())

    ecmp = wait_until(lambda: fib(bird) == [SLUICE_IP, SECOND_IP], 20)
    check(ecmp, "BIRD installs both paths: one kernel route with next hops %s and %s" % (SLUICE_IP, SECOND_IP),
          repr(fib(bird)))

    # Whichever BIRD prefers now, stop that one: the move is then visible.
    best = [k for k, v in paths(bird).items() if v[0]]
    check(len(best) == 1, "BIRD has one best path", repr(paths(bird)))
    stopping, staying = (first, second) if best == ["sluice"] else (second, first)
    other = "sluice2" if best == ["sluice"] else "sluice"
    stopping.signal(signal.SIGTERM)
    moved = wait_until(lambda: (lambda p: p if p.get(other, (False,))[0] and len(p) == 2 else None)(paths(bird)), 10)
    check(moved is not None, "BIRD's best path moves to the other instance (%s) while both paths are there" % other,
          repr(paths(bird)))
    other_ip = SECOND_IP if other == "sluice2" else SLUICE_IP
    check(wait_until(lambda: fib(bird) == [other_ip], 10), "the kernel route keeps only the other instance's next hop",
          repr(fib(bird)))
    # The stopping instance still serves: it has not begun draining.
    draining = stopping.find_lines("sluice draining: stopped accepting")
    check(draining == [], "the stopping instance has not stopped accepting when the peer moved",
          stopping.stderr_text()[-2000:])
    s = connect(stopping.port())
    check(echo_roundtrip(s, b"still-here"), "the stopping instance still proxies after the move")
    s.close()
    alone = wait_until(lambda: (lambda p: p if list(p) == [other] else None)(paths(bird)), 20)
    check(alone is not None and alone[other][0], "then the stopping instance's path is withdrawn; the other's is best",
          repr(paths(bird)))
    check(stopping.wait_log("sluice draining: stopped accepting", 20), "and only then does it drain",
          stopping.stderr_text()[-2000:])
    check_clean_exit(stopping, stopping.wait_exit(30))
    s = connect(staying.port())
    check(echo_roundtrip(s, b"other"), "the other instance serves on")
    s.close()
    check_clean_exit(staying, staying.stop(30))
    b.stop()


if __name__ == "__main__":
    reexec_in_netns_or_skip()
    run_cases([case_the_peer_moves_to_the_other_instance_before_the_stop])

#!/usr/bin/env python3
"""Endpoint failover.

- First endpoint refuses (nothing listens on its port), second serves: every
  client connection is served.
- Every endpoint down: the client connection is closed promptly and a warn line
  with "no endpoint reachable" and the reason ("connection refused") is logged.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (EchoServer, Sluice, check, check_clean_exit, connect, echo_roundtrip, free_port_holder,
                     info, run_cases, tcp_config, wait_closed)


def test_refused_endpoint_fails_over():
    _, dead_port = free_port_holder()
    with EchoServer() as echo:
        cfg = tcp_config(["127.0.0.1:%d" % dead_port, echo.address], cluster={"max_connect_attempts": 3})
        with Sluice(cfg) as sl:
            port = sl.port()
            n = 12
            ok = 0
            for i in range(n):
                s = connect(port)
                if echo_roundtrip(s, b"request %d" % i, timeout=5):
                    ok += 1
                s.close()
            check(ok == n, "all %d client connections served although the first endpoint refuses" % n,
                  "%d of %d served\n%s" % (ok, n, sl.stderr_text()[-3000:]))
            check(echo.accepted == n, "the serving endpoint got each connection once",
                  "accepted %d" % echo.accepted)
            check_clean_exit(sl, sl.stop())


def test_weighted_endpoints_refused_first_then_serving():
    """Weights do not change the outcome: a weight-3 dead endpoint is skipped too."""
    _, dead_port = free_port_holder()
    with EchoServer() as echo:
        cfg = tcp_config([{"address": "127.0.0.1:%d" % dead_port, "weight": 3}, echo.address],
                         cluster={"max_connect_attempts": 4})
        with Sluice(cfg) as sl:
            port = sl.port()
            ok = 0
            for i in range(8):
                s = connect(port)
                ok += echo_roundtrip(s, b"w%d" % i)
                s.close()
            check(ok == 8, "8 of 8 connections served with a weight-3 dead endpoint first",
                  "%d served\n%s" % (ok, sl.stderr_text()[-3000:]))
            check_clean_exit(sl, sl.stop())


def test_all_endpoints_down():
    _, dead1 = free_port_holder()
    _, dead2 = free_port_holder()
    cfg = tcp_config(["127.0.0.1:%d" % dead1, "127.0.0.1:%d" % dead2], cluster={"max_connect_attempts": 3})
    with Sluice(cfg) as sl:
        port = sl.port()
        start_line = sl.line_count()
        s = connect(port)
        t0 = time.monotonic()
        try:
            s.sendall(b"anyone there?")
        except OSError:
            pass
        how, waited = wait_closed(s, 5)
        info("client connection closed (%s) after %.3f s" % (how, time.monotonic() - t0))
        check(how in ("eof", "reset"), "client connection is closed when no endpoint is reachable",
              "client saw %s after %.2f s" % (how, waited))
        check(waited < 2.0, "closed promptly (within 2 s)", "took %.2f s" % waited)
        line = sl.wait_log("no endpoint reachable", 5, start_line)
        check(line is not None, "'no endpoint reachable' is logged", sl.stderr_text(start_line))
        info("logged: %s" % line)
        check(line.split()[1].lower().startswith("warn"), "logged at warn level", line)
        check("refused" in line.lower(), "the line names the reason (connection refused)", line)
        # the proxy keeps serving: another connection gets the same treatment, no crash
        s2 = connect(port)
        how2, waited2 = wait_closed(s2, 5)
        check(how2 in ("eof", "reset") and sl.alive(), "a second connection is closed too and sluice keeps running",
              "%s after %.2f s, alive=%s" % (how2, waited2, sl.alive()))
        check_clean_exit(sl, sl.stop())


if __name__ == "__main__":
    run_cases([test_refused_endpoint_fails_over, test_weighted_endpoints_refused_first_then_serving,
               test_all_endpoints_down])

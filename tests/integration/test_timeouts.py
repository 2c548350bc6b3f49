#!/usr/bin/env python3
"""Connect timeout, idle timeout and max_duration.

Runs in its own network namespace (re-executes itself under `unshare -n`) so that
an nftables rule can silently drop SYNs to one loopback port: an endpoint that
never answers.
"""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import (EchoServer, Sluice, check, check_clean_exit, connect, echo_roundtrip, info, run_cases, sh,
                     tcp_config, wait_closed)

BLACKHOLE = {}


def setup_blackhole():
    """Drops every TCP packet to one loopback port (only inside our namespace)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    sh(["nft", "add", "table", "inet", "sluice_test"])
    sh(["nft", "add chain inet sluice_test input { type filter hook input priority 0; policy accept; }"])
    sh(["nft", "add", "rule", "inet", "sluice_test", "input", "tcp", "dport", str(port), "drop"])
    BLACKHOLE["port"] = port
    return port


def test_blackhole_works():
    port = BLACKHOLE["port"]
    s = socket.socket()
    s.settimeout(0.3)
    try:
        s.connect(("127.0.0.1", port))
        outcome = "connected"
    except socket.timeout:
        outcome = "timeout"
    except OSError as e:
        outcome = repr(e)
    finally:
        s.close()
    check(outcome == "timeout", "connects to 127.0.0.1:%d hang (SYNs dropped by nft)" % port, outcome)


def test_connect_timeout():
    port = BLACKHOLE["port"]
    cfg = tcp_config(["127.0.0.1:%d" % port], cluster={"connect_timeout": "300ms", "max_connect_attempts": 1})
    with Sluice(cfg) as sl:
        start = sl.line_count()
        s = connect(sl.port())
        t0 = time.monotonic()
        how, _ = wait_closed(s, 5)
        elapsed = time.monotonic() - t0
        info("client connection closed (%s) after %.3f s" % (how, elapsed))
        check(how in ("eof", "reset"), "client connection closed when the only endpoint never answers",
              "client saw %s" % how)
        check(0.25 <= elapsed <= 2.0, "closed after about connect_timeout (0.25 s <= %.3f s <= 2 s)" % elapsed)
        line = sl.wait_log(lambda l: "no endpoint reachable" in l.lower() and "timed out" in l.lower(), 5, start)
        check(line is not None, "'no endpoint reachable' with the reason 'timed out' is logged",
              sl.stderr_text(start))
        info("logged: %s" % line)
        check(line.split()[1].lower().startswith("warn"), "logged at warn level", line)
        check_clean_exit(sl, sl.stop())


def test_connect_timeout_then_next_endpoint():
    port = BLACKHOLE["port"]
    with EchoServer() as echo:
        cfg = tcp_config(["127.0.0.1:%d" % port, echo.address],
                         cluster={"connect_timeout": "300ms", "max_connect_attempts": 2})
        with Sluice(cfg) as sl:
            n = 4
            ok = 0
            slow = 0
            for i in range(n):
                s = connect(sl.port())
                t0 = time.monotonic()
                if echo_roundtrip(s, b"hi %d" % i, timeout=5):
                    ok += 1
                if time.monotonic() - t0 >= 0.25:
                    slow += 1
                s.close()
            check(ok == n, "all %d connections served by the second endpoint after a timed-out attempt" % n,
                  "%d served\n%s" % (ok, sl.stderr_text()[-3000:]))
            info("%d of %d connections waited for the connect timeout first" % (slow, n))
            check(slow >= 1, "at least one connection tried the silent endpoint first (waited >= 0.25 s)")
            check_clean_exit(sl, sl.stop())


def test_idle_timeout():
    with EchoServer() as echo:
        cfg = tcp_config([echo.address], listener={"idle_timeout": "500ms"})
        with Sluice(cfg) as sl:
            start = sl.line_count()
            idle = connect(sl.port())
            busy = connect(sl.port())
            check(echo_roundtrip(idle, b"a") and echo_roundtrip(busy, b"b"), "both connections proxied")
            t_idle = time.monotonic()
            result = {}

            def keep_busy():
                ok = True
                t0 = time.monotonic()
                i = 0
                # one byte every 100 ms for 1.5 s (three idle timeouts long)
                while time.monotonic() - t0 < 1.5:
                    next_at = t0 + i * 0.1
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)  # pacing the traffic, not synchronisation
                    if not echo_roundtrip(busy, b"k", timeout=2):
                        ok = False
                        break
                    i += 1
                result["busy_ok"] = ok
                result["busy_rounds"] = i

            t = threading.Thread(target=keep_busy, daemon=True)
            t.start()
            how, _ = wait_closed(idle, 5)
            idle_after = time.monotonic() - t_idle
            t.join(10)
            info("idle connection closed (%s) after %.3f s" % (how, idle_after))
            check(how in ("eof", "reset"), "idle connection is closed by sluice", "client saw %s" % how)
            check(0.4 <= idle_after <= 3.0, "closed after about idle_timeout (0.4 s <= %.3f s <= 3 s)" % idle_after)
            check(result.get("busy_ok") is True,
                  "connection sending every 100 ms for 1.5 s stays open and proxied",
                  "%r\n%s" % (result, sl.stderr_text(start)))
            check(echo_roundtrip(busy, b"still here"), "busy connection still works afterwards")
            line = sl.wait_log("idle timeout", 5, start)
            check(line is not None, "'idle timeout' is logged (debug)", sl.stderr_text(start))
            busy.close()
            check_clean_exit(sl, sl.stop())


def test_idle_timeout_zero_disables():
    with EchoServer() as echo:
        cfg = tcp_config([echo.address], listener={"idle_timeout": "0s"})
        with Sluice(cfg) as sl:
            s = connect(sl.port())
            check(echo_roundtrip(s, b"x"), "connection proxied")
            how, _ = wait_closed(s, 1.5)
            check(how == "timeout", "with idle_timeout: 0s an idle connection stays open for 1.5 s",
                  "client saw %s" % how)
            check(echo_roundtrip(s, b"y"), "and still works")
            s.close()
            check_clean_exit(sl, sl.stop())


def test_max_duration():
    with EchoServer() as echo:
        cfg = tcp_config([echo.address], listener={"idle_timeout": "300s", "max_duration": "1s"})
        with Sluice(cfg) as sl:
            start = sl.line_count()
            s = connect(sl.port())
            t0 = time.monotonic()
            check(echo_roundtrip(s, b"go"), "connection proxied")
            closed_at = None
            # keep the connection busy; it must be closed anyway at max_duration
            while time.monotonic() - t0 < 5:
                if not echo_roundtrip(s, b"m", timeout=2):
                    closed_at = time.monotonic() - t0
                    break
                time.sleep(0.05)  # pacing the traffic, not synchronisation
            info("busy connection closed after %s s" %
                 ("%.3f" % closed_at if closed_at is not None else "never (5 s)"))
            check(closed_at is not None, "busy connection is closed at max_duration",
                  sl.stderr_text(start))
            check(0.9 <= closed_at <= 3.0, "closed after about max_duration (0.9 s <= %.3f s <= 3 s)" % closed_at)
            lines = sl.find_lines("max_duration", start) or sl.find_lines("duration", start)
            info("log line about it: %s" % (lines[0] if lines else "(none containing 'duration')"))
            s2 = connect(sl.port())
            check(echo_roundtrip(s2, b"new"), "a new connection is proxied afterwards")
            s2.close()
            s.close()
            check_clean_exit(sl, sl.stop())


if __name__ == "__main__":
    harness.reexec_in_netns_or_skip()
    setup_blackhole()
    run_cases([test_blackhole_works, test_connect_timeout, test_connect_timeout_then_next_endpoint,
               test_idle_timeout, test_idle_timeout_zero_disables, test_max_duration])

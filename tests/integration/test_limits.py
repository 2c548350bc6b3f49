#!/usr/bin/env python3
"""Connection limits and file-descriptor exhaustion.

- max_connections: 5 -> a 6th connection is accepted then closed at once while the
  first five keep working; the refusal is logged with the limit; after closing
  some, new connections succeed again.
- EMFILE: sluice started with RLIMIT_NOFILE 64 and one worker; open connections
  until it cannot take more; it logs EMFILE once, does not spin on the listener,
  and after the connections close it accepts again (logged) and proxies correctly.
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (EchoServer, Sluice, check, check_clean_exit, connect, echo_roundtrip, info, run_cases, soft_check,
                     tcp_config, wait_closed, wait_until)


def test_max_connections():
    with EchoServer() as echo:
        cfg = tcp_config([echo.address], listener={"max_connections": 5}, workers=2)
        with Sluice(cfg) as sl:
            port = sl.port()
            start = sl.line_count()
            held = []
            for i in range(5):
                s = connect(port)
                held.append(s)
                check(echo_roundtrip(s, b"conn %d" % i), "connection %d of 5 proxied" % (i + 1))
            sixth = connect(port)
            try:
                sixth.sendall(b"over the limit")
            except OSError:
                pass
            how, waited = wait_closed(sixth, 5)
            info("6th connection: %s after %.3f s" % (how, waited))
            check(how in ("eof", "reset"), "6th connection is closed", "client saw %s" % how)
            check(waited < 1.0, "closed at once (%.3f s < 1 s)" % waited)
            check(echo.accepted == 5, "the backend never saw the 6th connection", "accepted %d" % echo.accepted)
            for i, s in enumerate(held):
                check(echo_roundtrip(s, b"still %d" % i), "connection %d still works" % (i + 1))
            line = sl.wait_log("max_connections", 5, start)
            check(line is not None, "refusal logged with 'max_connections'", sl.stderr_text(start))
            info("logged: %s" % line)
            check(line.split()[1].lower().startswith("warn"), "logged at warn level", line)
            check(re.search(r"\b5\b", line) is not None, "the line gives the limit (5)", line)

            # close two: new connections are served again (the count goes down asynchronously)
            for s in held[:2]:
                s.close()
            held = held[2:]

            def new_conn_works():
                s = connect(port)
                if echo_roundtrip(s, b"again", timeout=2):
                    return s
                s.close()
                return None

            s = wait_until(new_conn_works, 5, interval=0.05)
            check(s is not None, "after closing two, a new connection is proxied", sl.stderr_text(start)[-3000:])
            held.append(s)
            # The second slot frees when its session ends, which may be a moment after the first.
            s = wait_until(new_conn_works, 5, interval=0.05)
            check(s is not None, "and a second new one (5 open again)")
            held.append(s)
            extra = connect(port)
            how, waited = wait_closed(extra, 5)
            check(how in ("eof", "reset") and waited < 1.0, "one more beyond 5 is closed at once again",
                  "%s after %.2f s" % (how, waited))
            for s in held:
                check(echo_roundtrip(s, b"final"), "held connection works at the end")
            check_clean_exit(sl, sl.stop())


def exhaust(sl, port):
    """Opens connections one at a time until one is not served.

    Returns (served, stuck, stuck_how): stuck_how is 'timeout' when the last
    connection just waits (sluice cannot accept it), 'eof'/'reset' when sluice
    accepted it and closed it again."""
    served, stuck = [], []
    for i in range(200):
        s = connect(port)
        if echo_roundtrip(s, b"n%d" % i, timeout=1.5):
            served.append(s)
            continue
        stuck.append(s)
        break
    how = "none"
    if stuck:
        how, _ = wait_closed(stuck[0], 0.5)
    return served, stuck, how


def test_emfile_recovery():
    # Each proxied connection costs sluice a fixed number of fds; depending on how
    # many are left, the last connection either finds accept() failing (EMFILE) or
    # accept() taking the last fd. Shift the limit by one until accept() fails.
    for nofile in range(64, 72):
        with EchoServer() as echo:
            cfg = tcp_config([echo.address], listener={"backlog": 128}, workers=1)
            with Sluice(cfg, nofile=nofile) as sl:
                port = sl.port()
                start = sl.line_count()
                info("RLIMIT_NOFILE %d: sluice has %d fds open at start" % (nofile, sl.open_fds()))
                served, stuck, how = exhaust(sl, port)
                info("%d connections served before sluice ran out of fds (%d fds open); the next one: %s"
                     % (len(served), sl.open_fds(), how))
                check(stuck, "sluice runs out of file descriptors at some point", "served %d" % len(served))
                # a few more attempts queue up behind the exhausted listener
                for i in range(3):
                    stuck.append(connect(port))
                line = sl.wait_log("EMFILE", 3, start)
                if line is None and how in ("eof", "reset") and nofile < 71:
                    info("no EMFILE from accept: the last accept got the last fd and sluice closed the connection; "
                         "retrying with one more fd")
                    nep = sl.find_lines("no endpoint reachable", start)
                    info("logged: %s" % (nep[0] if nep else "(no 'no endpoint reachable' line)"))
                    # the connection that could not get an upstream socket is closed, sluice stays healthy
                    soft_check(sl.alive(), "sluice keeps running after failing to create an upstream socket")
                    for s in served + stuck:
                        s.close()
                    rc = sl.stop()
                    soft_check(rc == 0, "sluice exits 0 on SIGTERM (after upstream socket() failed with EMFILE)",
                               "exit code %r" % rc)
                    rep = sl.sanitizer_report()
                    soft_check(not rep, "no sanitizer report after upstream socket() failed with EMFILE",
                               "\n".join(rep + ["--- last log lines:"] + sl.stderr_text(start).splitlines()[-8:]))
                    continue
                check(line is not None, "EMFILE is logged", sl.stderr_text(start)[-4000:])
                info("logged: %s" % line)
                check(sl.alive(), "sluice keeps running")
                # no busy loop on the listener while exhausted
                cpu0 = sl.cpu_seconds()
                t0 = time.monotonic()
                wait_until(lambda: time.monotonic() - t0 >= 1.0, 2)
                cpu = sl.cpu_seconds() - cpu0
                info("CPU time used over 1 s while exhausted: %.3f s" % cpu)
                check(cpu < 0.3, "does not spin while exhausted (CPU %.3f s < 0.3 s over 1 s)" % cpu)
                emfile_lines = sl.find_lines("EMFILE", start)
                check(len(emfile_lines) == 1, "EMFILE logged once for the episode (%d lines)" % len(emfile_lines),
                      "\n".join(emfile_lines[:20]))
                check(all(echo_roundtrip(s, b"alive") for s in served), "connections already proxied still work")
                # release everything
                for s in served + stuck:
                    s.close()
                check(wait_until(lambda: sl.open_fds() < nofile - 10, 10),
                      "sluice releases the fds of the closed connections", "%d fds open" % sl.open_fds())
                s = connect(port)
                check(echo_roundtrip(s, b"after the storm", timeout=10), "a new connection is proxied correctly",
                      sl.stderr_text(start)[-4000:])
                line = sl.wait_log("accepting again", 5, start)
                check(line is not None, "'accepting again' is logged", sl.stderr_text(start)[-4000:])
                info("logged: %s" % line)
                s.close()
                check_clean_exit(sl, sl.stop())
                return


if __name__ == "__main__":
    run_cases([test_max_connections, test_emfile_recovery])

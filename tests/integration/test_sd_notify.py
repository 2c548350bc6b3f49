#!/usr/bin/env python3
"""systemd's readiness protocol (sd_notify), as a service manager would see it.

The test plays the service manager: it binds an AF_UNIX datagram socket, starts the real
sluice with NOTIFY_SOCKET naming it, and reads the messages in order.

- a filesystem path: "STATUS=starting: ...", then "READY=1\\nSTATUS=ready: ..." only once the
  listener proxies (an echo through sluice right after READY arrives); SIGTERM with two open
  connections gives "STOPPING=1\\nSTATUS=draining: ..." while sluice still runs, then
  "STATUS=draining: 1 connections left" after one closes; exit 0.
- SIGHUP (the unit's ExecReload) reloads: "RELOADING=1\\nMONOTONIC_USEC=<now>\\nSTATUS=reloading:
  reading FILE", then "READY=1\\nSTATUS=ready: configuration generation 0" (the file did not
  change); sluice keeps proxying on the connection it had.
- an abstract name ('@...'): the same READY and STOPPING.
- a drain cut short: "STATUS=draining: drain timeout after 1s: closing 1 open connections" at
  drain_timeout, "STATUS=draining: closing every connection now (Terminated again)" at a
  second SIGTERM.
- WATCHDOG_USEC: WATCHDOG=1 keeps coming at half the interval.
- no NOTIFY_SOCKET: the socket receives nothing from start to exit.
- a bogus NOTIFY_SOCKET (relative, a missing directory): sluice starts, proxies and stops
  cleanly, and says once in its log why nothing was sent.
- packaging/systemd/sluice.service passes `systemd-analyze verify` (skipped without the tool).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (EchoServer, HoldServer, Skip, Sluice, check, check_clean_exit, connect, echo_roundtrip, info,
                     register_cleanup, run_cases, tcp_config, wait_until)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(REPO, "packaging", "systemd", "sluice.service")

STARTING = "STATUS=starting: waiting for the first DNS answers and health checks"
READY = "READY=1\nSTATUS=ready: 2 workers, 1 listeners"


def stopping(open_connections, drain_timeout="5s"):
    return ("STOPPING=1\nSTATUS=draining: stopped accepting, waiting up to %s for %d open connections "
            "(Terminated)" % (drain_timeout, open_connections))


class NotifySocket:
    """The service manager's end: a bound AF_UNIX datagram socket."""

    _count = 0

    def __init__(self, abstract=False):
        NotifySocket._count += 1
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        register_cleanup(self.sock.close)
        if abstract:
            name = "sluice-it-notify-%d-%d" % (os.getpid(), NotifySocket._count)
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            d = tempfile.mkdtemp(prefix="sluice-notify-")
            register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
            self.env = os.path.join(d, "notify")
            self.sock.bind(self.env)

    def recv(self, timeout):
        """The next message, or None when none comes within timeout seconds."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536).decode()
        except socket.timeout:
            return None

    def pending(self):
        """Every message already queued, without waiting."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(65536).decode())
        except BlockingIOError:
            pass
        return out


class NotifiedSluice(Sluice):
    """sluice started with `env` added to its environment, without waiting for 'sluice ready'."""

    def __init__(self, config_text, env):
        self._starting = True
        saved = {k: os.environ.get(k) for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        for k in saved:
            os.environ.pop(k, None)
        os.environ.update(env)
        try:
            super().__init__(config_text)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self._starting = False

    def wait_ready(self, timeout):
        if not self._starting:
            super().wait_ready(timeout)


def ready_then_proxies(sl, ns):
    """Reads STATUS=starting and READY=1; right after READY, an echo goes through sluice.
    Returns that connection, still open (so the drain's count of open connections is exact)."""
    first = ns.recv(20)
    check(first == STARTING, "first message: %r" % STARTING, "got %r\n%s" % (first, sl.stderr_text()))
    ready = ns.recv(20)
    check(ready == READY, "then %r" % READY, "got %r\n%s" % (ready, sl.stderr_text()))
    # The listening line was logged before READY was sent; the reader thread may lag behind.
    check(wait_until(lambda: "tcp_in" in sl.ports, 5), "the listener's port is in the log")
    s = connect(sl.port())
    check(echo_roundtrip(s, b"after READY=1"), "a connection right after READY=1 is proxied (echo)")
    check(sl.wait_log("sluice ready", 5) is not None, "'sluice ready' is logged")
    return s


def notify_cycle(abstract, sighup=False):
    ns = NotifySocket(abstract=abstract)
    info("NOTIFY_SOCKET=%s" % ns.env)
    with EchoServer() as backend:
        with NotifiedSluice(tcp_config([backend.address]), {"NOTIFY_SOCKET": ns.env}) as sl:
            a = ready_then_proxies(sl, ns)
            if sighup:
                start = sl.line_count()
                sl.signal(signal.SIGHUP)
                line = sl.wait_log("has no changes", 5, start)
                check(line is not None and line.endswith(
                    "reload: %s has no changes; generation 0 stays" % sl.config_path),
                    "SIGHUP (ExecReload) reads the file again: no changes", sl.stderr_text(start))
                msg = ns.recv(5)
                lines = (msg or "").split("\n")
                check(len(lines) == 3 and lines[0] == "RELOADING=1" and
                      re.fullmatch(r"MONOTONIC_USEC=[1-9][0-9]*", lines[1]) is not None and
                      lines[2] == "STATUS=reloading: reading " + sl.config_path,
                      "SIGHUP: RELOADING=1, MONOTONIC_USEC, STATUS=reloading: reading FILE", "got %r" % msg)
                msg = ns.recv(5)
                check(msg == "READY=1\nSTATUS=ready: configuration generation 0",
                      "then READY=1 with the generation in force", "got %r" % msg)
                check(sl.alive() and echo_roundtrip(a), "after SIGHUP sluice still runs and proxies")
                check(ns.pending() == [], "nothing more after the reload")
            b = connect(sl.port())
            check(echo_roundtrip(a) and echo_roundtrip(b), "two connections open through sluice")
            sl.signal(signal.SIGTERM)
            msg = ns.recv(10)
            check(msg == stopping(2), "SIGTERM: %r" % stopping(2), "got %r" % msg)
            check(sl.alive(), "sluice still runs (draining) when STOPPING=1 arrives")
            a.close()
            msg = ns.recv(10)
            check(msg == "STATUS=draining: 1 connections left", "one closed: 'STATUS=draining: 1 connections left'",
                  "got %r\n%s" % (msg, sl.stderr_text()))
            b.close()
            rc = sl.wait_exit(10)
            check_clean_exit(sl, rc, "sluice exits 0 once the last connection closed")
            rest = ns.pending()
            # The drain may end before or after the next once-a-second report.
            check(rest in ([], ["STATUS=draining: 0 connections left"]),
                  "nothing else, or only 'STATUS=draining: 0 connections left'", repr(rest))


def test_path_socket():
    notify_cycle(abstract=False, sighup=True)


def test_abstract_socket():
    notify_cycle(abstract=True)


def drain_ends_early(how):
    """A connection a backend never closes: the drain ends at drain_timeout, or at a second SIGTERM."""
    ns = NotifySocket()
    with HoldServer() as hold:
        timeout = "1s" if how == "timeout" else "30s"
        with NotifiedSluice(tcp_config([hold.address], drain_timeout=timeout), {"NOTIFY_SOCKET": ns.env}) as sl:
            ready_then_proxies_to_hold(sl, ns, hold)
            sl.signal(signal.SIGTERM)
            msg = ns.recv(10)
            check(msg == stopping(1, timeout), "SIGTERM: %r" % stopping(1, timeout), "got %r" % msg)
            if how == "timeout":
                expected = "STATUS=draining: drain timeout after 1s: closing 1 open connections"
            else:
                sl.signal(signal.SIGTERM)
                expected = "STATUS=draining: closing every connection now (Terminated again)"
            msg = ns.recv(10)
            check(msg == expected, "then %r" % expected, "got %r" % msg)
            rc = sl.wait_exit(10)
            check_clean_exit(sl, rc, "sluice exits 0")
            rest = ns.pending()
            check(rest in ([], ["STATUS=draining: 0 connections left"]),
                  "nothing else, or only 'STATUS=draining: 0 connections left'", repr(rest))


def ready_then_proxies_to_hold(sl, ns, hold):
    for expected in (STARTING, READY):
        msg = ns.recv(20)
        check(msg == expected, "message %r" % expected, "got %r\n%s" % (msg, sl.stderr_text()))
    check(wait_until(lambda: "tcp_in" in sl.ports, 5), "the listener's port is in the log")
    s = connect(sl.port())
    s.sendall(b"hello")
    check(wait_until(lambda: hold.received == 5, 5), "a connection is proxied to a backend that never closes")
    return s


def test_drain_timeout_status():
    drain_ends_early("timeout")


def test_second_signal_status():
    drain_ends_early("second signal")


def test_watchdog():
    ns = NotifySocket()
    with EchoServer() as backend:
        env = {"NOTIFY_SOCKET": ns.env, "WATCHDOG_USEC": "400000"}
        with NotifiedSluice(tcp_config([backend.address]), env) as sl:
            others = []
            while READY not in others:
                msg = ns.recv(20)
                check(msg is not None, "messages until READY=1", "so far %r" % others)
                if msg != "WATCHDOG=1":
                    others.append(msg)
            check(others == [STARTING, READY], "besides WATCHDOG=1: starting, then ready", repr(others))
            line = sl.wait_log("systemd: watchdog", 5)
            check(line is not None and line.endswith("systemd: watchdog every 200ms (WatchdogSec 400ms)"),
                  "'systemd: watchdog every 200ms (WatchdogSec 400ms)' is logged", sl.stderr_text())
            pings = 0
            for _ in range(3):
                msg = ns.recv(5)
                check(msg == "WATCHDOG=1", "after READY=1: WATCHDOG=1 again (within 5 s)", "got %r" % msg)
                pings += 1
            info("%d WATCHDOG=1 after READY=1" % pings)
            check_clean_exit(sl, sl.stop())


def test_no_notify_socket():
    ns = NotifySocket()
    with EchoServer() as backend:
        with NotifiedSluice(tcp_config([backend.address]), {}) as sl:
            Sluice.wait_ready(sl, 20)
            s = connect(sl.port())
            check(echo_roundtrip(s), "sluice proxies")
            s.close()
            check_clean_exit(sl, sl.stop())
    check(ns.pending() == [], "without NOTIFY_SOCKET, no message from start to exit")
    check(sl.find_lines("systemd:") == [], "and no 'systemd:' log line")


def bogus(value, expected_log):
    with EchoServer() as backend:
        with NotifiedSluice(tcp_config([backend.address]), {"NOTIFY_SOCKET": value}) as sl:
            Sluice.wait_ready(sl, 20)
            s = connect(sl.port())
            check(echo_roundtrip(s), "NOTIFY_SOCKET=%s: sluice starts and proxies" % value)
            s.close()
            check_clean_exit(sl, sl.stop(), "and exits 0 on SIGTERM")
            lines = [l for l in sl.find_lines("systemd:") if " warn " in l]
            check(len(lines) == 1 and lines[0].endswith(expected_log), "logged once: %r" % expected_log,
                  "\n".join(lines))


def test_bogus_relative():
    bogus("relative/notify",
          "systemd: NOTIFY_SOCKET=relative/notify: not an absolute path or an abstract name starting "
          "with '@'; no notifications are sent")


def test_bogus_missing_directory():
    path = "/nonexistent-sluice-dir/notify"
    bogus(path, "systemd: a notification to NOTIFY_SOCKET=%s was not sent (No such file or directory); "
                "further failures are not logged" % path)


def test_unit_file_verifies():
    tool = shutil.which("systemd-analyze")
    if not tool:
        raise Skip("systemd-analyze is not installed")
    check(os.path.isfile(UNIT), "packaging/systemd/sluice.service exists")
    # verify also checks that each command exists: /usr/bin/sluice becomes the binary under test,
    # the rest of the unit stays as it is.
    with open(UNIT) as f:
        text = f.read()
    lines = text.splitlines()
    execs = [l for l in lines if l.startswith(("ExecStart=", "ExecStartPre="))]
    check(execs == ["ExecStartPre=/usr/bin/sluice check -c /etc/sluice/sluice.yaml",
                    "ExecStart=/usr/bin/sluice run -c /etc/sluice/sluice.yaml"],
          "the unit checks, then runs /usr/bin/sluice with /etc/sluice/sluice.yaml", "\n".join(execs))
    settings = dict(l.split("=", 1) for l in lines if "=" in l and not l.startswith("#"))
    expected = {"Type": "notify", "NotifyAccess": "all", "ExecReload": "/bin/kill -HUP $MAINPID",
                "KillSignal": "SIGTERM", "Restart": "on-failure", "LimitNOFILE": "1048576",
                "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                "PrivateTmp": "yes", "DynamicUser": "yes", "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
                "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE", "TimeoutStopSec": "45s",
                "WatchdogSec": "30s"}
    got = {k: settings.get(k) for k in expected}
    check(got == expected, "the unit's service settings", "got %r" % got)
    # The stop timeout must outlast the default drain_timeout (30s), or systemd kills the drain.
    check(int(settings["TimeoutStopSec"].rstrip("s")) > 30, "TimeoutStopSec is longer than drain_timeout's 30s")
    d = tempfile.mkdtemp(prefix="sluice-unit-")
    register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    installed = os.path.join(d, "sluice.service")
    with open(installed, "w") as f:
        f.write(text.replace("/usr/bin/sluice", os.path.abspath(os.environ["SLUICE_BIN"])))
    r = subprocess.run([tool, "verify", installed], capture_output=True, text=True, timeout=60)
    out = (r.stdout + r.stderr).strip()
    info("systemd-analyze verify: exit %d%s" % (r.returncode, (": " + out) if out else ""))
    check(r.returncode == 0, "systemd-analyze verify accepts the unit", out)
    check(out == "", "with nothing to say", out)


if __name__ == "__main__":
    run_cases([test_path_socket, test_abstract_socket, test_drain_timeout_status, test_second_signal_status,
               test_watchdog, test_no_notify_socket,
               test_bogus_relative, test_bogus_missing_directory, test_unit_file_verifies])

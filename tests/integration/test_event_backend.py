#!/usr/bin/env python3
"""The event backend: `event: {backend: epoll | io_uring | auto}`.

- auto with an io_uring probe that fails (SLUICE_IO_URING_PROBE=fail) logs the exact
  fallback line, serves on epoll, and says so in /config and /metrics.
- io_uring asked for while unavailable stops startup with the reason.
- auto where io_uring works runs on it and serves TCP through it.
- a value that is not a backend is a located configuration error.
- a reload that changes the backend keeps the running one and says so.
- `event: {receive: completion | readiness}` (SLUICE_EVENT_RECEIVE overrides it): logged on
  io_uring, and connections (the admin API's here) are served either way; a value that is
  not one is a located error.
"""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (EchoServer, Skip, Sluice, check, connect, echo_roundtrip, run_cases,  # noqa: E402
                     to_yaml)
import http_util as hu  # noqa: E402

ADMIN_RE = re.compile(r"admin listening on 127\.0\.0\.1:(\d+)")
BACKEND_RE = re.compile(r'^sluice_event_backend\{backend="(\w+)"\} (\d+)$', re.M)
FORCED = "the probe was told to fail (SLUICE_IO_URING_PROBE=fail)"
# These cases choose the backend themselves.
NO_OVERRIDE = {"SLUICE_EVENT_BACKEND": ""}


def config(backend=None, admin=True, receive=None):
    cfg = {"workers": 2, "log_level": "debug"}
    if admin:
        cfg["admin"] = {"address": "127.0.0.1:0"}
    cfg["listeners"] = [{"name": "tcp_in", "address": "127.0.0.1:0", "protocol": "tcp", "cluster": "echo"}]
    cfg["clusters"] = [{"name": "echo", "endpoints": [{"address": "127.0.0.1:1"}]}]
    if backend:
        cfg["event"] = {"backend": backend}
    if receive:
        cfg.setdefault("event", {})["receive"] = receive
    return cfg


def config_text(cfg, echo_address):
    cfg["clusters"][0]["endpoints"][0]["address"] = echo_address
    return to_yaml(cfg) + "\n"


def admin_port(sl):
    line = sl.wait_log(ADMIN_RE, 10)
    if not line:
        raise harness.CheckFailed_with("no 'admin listening' line", sl.stderr_text())
    return int(ADMIN_RE.search(line).group(1))


RING_DEFAULT = "cooperative task work"
RING_SINGLE = "single issuer, cooperative task work"
RING_SINGLE_REFUSED = "cooperative task work (SINGLE_ISSUER refused: EINVAL, needs Linux 6.0)"


def ring_lines(sl):
    return [l.split("] ", 1)[1] for l in sl.find_lines(lambda l: "] io_uring ring: " in l)]


def case_single_issuer_rings_serve():
    """Rings bound to their loop's thread (opt-in): said once, and sluice serves on them."""
    with EchoServer() as echo:
        env = {"SLUICE_EVENT_BACKEND": "io_uring", "SLUICE_IO_URING_SETUP": "single_issuer"}
        try:
            sl = Sluice(config_text(config(), echo.address), env=env)
        except harness.CheckFailed as e:
            if "io_uring is not available" in str(e):
                raise Skip("io_uring unavailable here")
            raise
        with sl:
            check(ring_lines(sl) in (["io_uring ring: " + RING_SINGLE],
                                     ["io_uring ring: " + RING_SINGLE_REFUSED]),
                  "the setup (and why not, on kernels before 6.0)", repr(ring_lines(sl)))
            for i in range(20):
                if not serves(sl):
                    break
            check(serves(sl), "sluice serves TCP on single-issuer rings (21 connections)")


def backend_lines(sl):
    return [l.split("] ", 1)[1] for l in sl.find_lines(lambda l: "] event backend: " in l)]


def serves(sl):
    with connect(sl.port()) as s:
        return echo_roundtrip(s, b"through the loop")


def event_view(port):
    r = hu.request_once(port, "GET", "/config", host="admin", timeout=5)
    return json.loads(r.body.decode())["event"]


def metric(port):
    r = hu.request_once(port, "GET", "/metrics", host="admin", timeout=5)
    return {b: int(v) for b, v in BACKEND_RE.findall(r.body.decode())}


def case_failed_probe_falls_back_to_epoll():
    with EchoServer() as echo:
        env = dict(NO_OVERRIDE, SLUICE_IO_URING_PROBE="fail")
        with Sluice(config_text(config(), echo.address), env=env) as sl:
            check(backend_lines(sl) == ["event backend: epoll (io_uring unavailable: %s)" % FORCED],
                  "the fallback is logged once, with the reason", repr(backend_lines(sl)))
            check(serves(sl), "sluice serves TCP on epoll")
            port = admin_port(sl)
            check(event_view(port) == {"backend": "auto", "in_use": "epoll"},
                  "/config shows auto, in use: epoll", repr(event_view(port)))
            check(metric(port) == {"epoll": 1, "io_uring": 0}, "sluice_event_backend says epoll",
                  repr(metric(port)))


def case_explicit_io_uring_unavailable_is_an_error():
    with EchoServer() as echo:
        tmp = harness.tempfile.mkdtemp(prefix="sluice-it-")
        harness.register_cleanup(lambda: harness.shutil.rmtree(tmp, ignore_errors=True))
        path = os.path.join(tmp, "sluice.yaml")
        with open(path, "w") as f:
            f.write(config_text(config("io_uring"), echo.address))
        env = dict(os.environ, **NO_OVERRIDE, SLUICE_IO_URING_PROBE="fail")
        p = harness.subprocess.run([harness.sluice_bin(), "run", "-c", path], env=env,
                                   stdin=harness.subprocess.DEVNULL, stdout=harness.subprocess.PIPE,
                                   stderr=harness.subprocess.PIPE, text=True, timeout=30,
                                   preexec_fn=harness.die_with_parent)
        check(p.returncode == 1, "startup fails (exit 1)", "exit %s\n%s" % (p.returncode, p.stderr))
        want = "event.backend: io_uring is not available: " + FORCED
        check(p.stderr.splitlines()[-1:] == [want], "the reason is the last line of stderr", p.stderr)
        check("sluice ready" not in p.stderr, "sluice never says ready", p.stderr)


def case_auto_runs_on_io_uring_where_it_works():
    with EchoServer() as echo:
        with Sluice(config_text(config(), echo.address), env=NO_OVERRIDE) as sl:
            lines = backend_lines(sl)
            if lines and lines[0].startswith("event backend: epoll (io_uring unavailable: "):
                raise Skip(lines[0])
            check(lines == ["event backend: io_uring"], "auto picks io_uring", repr(lines))
            check(ring_lines(sl) == ["io_uring ring: " + RING_DEFAULT],
                  "one line says how the rings are set up", repr(ring_lines(sl)))
            for i in range(20):
                if not serves(sl):
                    break
            check(serves(sl), "sluice serves TCP on io_uring (21 connections)")
            port = admin_port(sl)
            check(event_view(port) == {"backend": "auto", "in_use": "io_uring"},
                  "/config shows auto, in use: io_uring", repr(event_view(port)))
            check(metric(port) == {"epoll": 0, "io_uring": 1}, "sluice_event_backend says io_uring",
                  repr(metric(port)))


def check_located_error(first_lines, want_after_path):
    """`sluice check` on a file starting with `first_lines`: exit 1, and exactly this error."""
    tmp = harness.tempfile.mkdtemp(prefix="sluice-it-")
    harness.register_cleanup(lambda: harness.shutil.rmtree(tmp, ignore_errors=True))
    path = os.path.join(tmp, "bad.yaml")
    with open(path, "w") as f:
        f.write(first_lines + to_yaml(config(admin=False)) + "\n")
    p = harness.run_sluice_cmd(["check", "-c", path])
    want = "%s:%s" % (path, want_after_path)
    check(p.returncode == 1 and p.stderr.strip() == want, "sluice check names the line and the choices",
          "exit %s\n%s" % (p.returncode, p.stderr))


def case_unknown_backend_is_a_located_error():
    check_located_error("event:\n  backend: kqueue\n",
                        "2:12: event.backend: expected one of: epoll, io_uring, auto, got 'kqueue'")


def receive_lines(sl):
    return [l.split("] ", 1)[1] for l in sl.find_lines(lambda l: "] io_uring receive: " in l)]


def case_receive_by_completion_or_readiness():
    """Each way of receiving on io_uring is logged once and serves HTTP (the admin API)."""
    with EchoServer() as echo:
        for receive, env_receive, want in ((None, "", "completion"), ("readiness", "", "readiness"),
                                           ("readiness", "completion", "completion"),
                                           (None, "readiness", "readiness")):
            env = {"SLUICE_EVENT_BACKEND": "io_uring", "SLUICE_EVENT_RECEIVE": env_receive}
            try:
                sl = Sluice(config_text(config(receive=receive), echo.address), env=env)
            except harness.CheckFailed as e:
                if "io_uring is not available" in str(e):
                    raise Skip("io_uring unavailable here")
                raise
            with sl:
                what = "receive: %s, SLUICE_EVENT_RECEIVE=%r" % (receive, env_receive)
                check(receive_lines(sl) == ["io_uring receive: " + want], what + ": logged once",
                      repr(receive_lines(sl)))
                port = admin_port(sl)
                views = [event_view(port) for _ in range(5)]
                check(views == [{"backend": "auto", "in_use": "io_uring"}] * 5,
                      what + ": the admin API answers each of 5 more connections", repr(views))


def case_unknown_receive_is_a_located_error():
    check_located_error("event:\n  receive: poll\n",
                        "2:12: event.receive: expected one of: completion, readiness, got 'poll'")


def case_reload_keeps_the_running_backend():
    with EchoServer() as echo:
        env = dict(NO_OVERRIDE, SLUICE_IO_URING_PROBE="fail")
        with Sluice(config_text(config("epoll"), echo.address), env=env) as sl:
            check(backend_lines(sl) == ["event backend: epoll"], "epoll as configured", repr(backend_lines(sl)))
            port = admin_port(sl)
            with open(sl.config_path, "w") as f:
                f.write(config_text(config("io_uring"), echo.address))
            r = hu.request_once(port, "POST", "/reload", host="admin", timeout=30)
            body = json.loads(r.body.decode())
            want = ("warning: event: the event backend changes only with a restart or a binary "
                    "upgrade; it stays epoll")
            check(body["warnings"] == [want] and body["result"] == "unchanged",
                  "the reload warns and changes nothing", r.body.decode())
            check(event_view(port) == {"backend": "epoll", "in_use": "epoll"}, "still epoll",
                  repr(event_view(port)))
            check(serves(sl), "sluice still serves")


def case_reload_keeps_the_running_receive():
    with EchoServer() as echo:
        with Sluice(config_text(config(), echo.address), env={"SLUICE_EVENT_RECEIVE": ""}) as sl:
            port = admin_port(sl)
            with open(sl.config_path, "w") as f:
                f.write(config_text(config(receive="readiness"), echo.address))
            r = hu.request_once(port, "POST", "/reload", host="admin", timeout=30)
            body = json.loads(r.body.decode())
            want = ("warning: event: event.receive changes only with a restart or a binary "
                    "upgrade; it stays completion")
            check(body["warnings"] == [want] and body["result"] == "unchanged",
                  "the reload warns and changes nothing", r.body.decode())
            check(serves(sl), "sluice still serves")


if __name__ == "__main__":
    run_cases([case_failed_probe_falls_back_to_epoll, case_explicit_io_uring_unavailable_is_an_error,
               case_auto_runs_on_io_uring_where_it_works, case_single_issuer_rings_serve,
               case_unknown_backend_is_a_located_error,
               case_reload_keeps_the_running_backend, case_receive_by_completion_or_readiness,
               case_unknown_receive_is_a_located_error, case_reload_keeps_the_running_receive])

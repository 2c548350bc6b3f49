#!/usr/bin/env python3
"""Binary upgrade: `POST /upgrade`, SIGUSR2 or `sluice upgrade -c FILE` start the binary again,
hand it every listening socket and the admin socket, and the old process drains once the new
one is ready.

- under load (keep-alive and new-connection clients against an HTTP listener with a real
  backend): no request fails, no connection is reset; the reply names the new pid, a child of
  the old one running the same executable; an idle keep-alive connection stays on the old
  process and its next response carries Connection: close; the old process exits 0 well within
  drain_timeout; the very same listening sockets (inodes), on the same ports, and the admin
  socket now belong to the new pid, which answers /ready and /metrics.
- a first health round that takes a while in the new process: no request fails meanwhile,
  /metrics shows sluice_lifecycle_state upgrading, and /ready answers 200 throughout.
- a DNS cluster whose server answers the new process late: no request fails meanwhile.
- SIGTERM while the new process starts: POST /upgrade answers 500 "sluice began draining", the
  new process is gone, the old one exits 0.
- a TCP session open across the upgrade stays on the old process and keeps echoing until the
  client closes it; then the old process exits 0.
- GET /upgrade is 405. An invalid configuration file: 500 with the located error `sluice
  check` prints, the log line, the old process serves on alone (the failed one is gone); the
  same with 100 listeners; a new listener on a taken port: 500 with the bind error, the old
  process serves on its sockets; the file fixed, the next upgrade works.
- a second upgrade while the first generation drains is refused with the reason (POST and
  SIGUSR2); SIGUSR2 to the draining first generation leaves its session open; once it has
  exited, the next upgrade works.
- SIGUSR2 with NOTIFY_SOCKET: the new process sends STATUS=starting, MAINPID=<its pid> and
  READY=1 (sender pids from SCM_CREDENTIALS), the old one STATUS=upgrading and a draining status
  without STOPPING=1.
- workers 2 -> 3 -> 1 in the file: every handed-over socket (and the one added) is served: 20
  connections held open at once all get answers.
- `sluice upgrade -c FILE` (fixed admin and listener ports) with the executable replaced on
  disk: the new process runs the new file; a file without an admin address is an error; a
  removed executable makes the upgrade fail with the reason and the old process serves on.
- the file moved to another admin port and another listener port, a listener added and one
  removed: each is served where the new file says.
- a reload that bound a listener at a new port and then failed: nothing listens on that port,
  and a later upgrade hands over the sockets of the configuration in force.

Every sluice process a case starts (the harness tracks only the first; this script is a child
subreaper, so later generations come back to it when their parent exits) is killed at the end
of the case, even when it fails.
"""

import ctypes
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info, soft_check, wait_until  # noqa: E402
from http_backend import BackendProcess  # noqa: E402
import http_util as hu  # noqa: E402

ADMIN_RE = re.compile(r"admin listening on 127\.0\.0\.1:(\d+)")
LIFECYCLE_RE = re.compile(r'^sluice_lifecycle_state\{state="(\w+)"\} (\d+)$', re.M)

# --------------------------------------------------------------------------
# every sluice process this script started, whichever generation

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper():
    """Orphaned descendants (a new generation whose parent, the old one, exited) are re-parented
    to this process, so that they can be found, waited for and killed."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def proc_stat(pid):
    """(state, ppid) of a process, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def alive(pid):
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def exe_of(pid):
    try:
        return os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return None


def cmdline_of(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return [a.decode() for a in f.read().split(b"\0")[:-1]]
    except OSError:
        return None


def descendants():
    """Pids of every live process below this one."""
    parent = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st and st[0] not in ("Z", "X"):
                parent[int(name)] = st[1]
    found, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier and p not in found}
        found |= frontier
    return found


def sluice_processes():
    """Live descendants running `sluice run` (any generation)."""
    out = []
    for pid in sorted(descendants()):
        cmd = cmdline_of(pid)
        if cmd and len(cmd) >= 2 and os.path.basename(cmd[0]).startswith("sluice") and cmd[1] == "run":
            out.append(pid)
    return out


def only_sluice(expected, what, settle=2.0):
    """Checks that the live `sluice run` processes are exactly `expected`, allowing up to `settle`
    seconds for one that is exiting (a sanitizer's tracer task outlives its process briefly)."""
    seen = []

    def exact():
        procs = sluice_processes()
        if procs != expected:
            seen.append(["%d (ppid %s, %s): %s" % (p, (proc_stat(p) or ("?", "?"))[1],
                                                   (proc_stat(p) or ("gone",))[0], " ".join(cmdline_of(p) or []))
                         for p in procs])
        return procs == expected

    ok = wait_until(exact, settle)
    if ok and seen:
        info("%s: settled after a process exiting was seen: %r" % (what, seen[0]))
    check(ok, what, repr(seen[-1] if seen else sluice_processes()))


_seen = set()  # sluice pids found (not the harness's Popen children), to reap


def kill_all_sluice():
    """SIGKILLs every sluice process below this one and reaps those re-parented here."""
    for _ in range(3):
        pids = sluice_processes()
        _seen.update(pids)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if not pids:
            break
        wait_until(lambda: not any(alive(p) for p in pids), 5)
    reap_seen()


def reap_seen():
    for pid in list(_seen):
        try:
            r, _ = os.waitpid(pid, os.WNOHANG)
            if r == pid:
                _seen.discard(pid)
        except ChildProcessError:
            if proc_stat(pid) is None:
                _seen.discard(pid)


def wait_pid_exit(pid, timeout):
    """Waits for a later-generation process (a child of this one by now) to exit; returns its
    exit code, or None on timeout."""
    _seen.add(pid)
    deadline = time.monotonic() + timeout
    while True:
        try:
            r, status = os.waitpid(pid, os.WNOHANG)
            if r == pid:
                _seen.discard(pid)
                return os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            # Not (yet) this process's child: its parent, the previous generation, still runs.
            if proc_stat(pid) is None:
                _seen.discard(pid)
                return "gone"
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


def track_case():
    harness.register_cleanup(kill_all_sluice)


# --------------------------------------------------------------------------
# sockets as /proc shows them


def listen_inodes(port):
    """Inodes of the TCP sockets listening on `port` (any address)."""
    out = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        out.add(int(parts[9]))
        except OSError:
            pass
    return out


def connection_inode(local_port, remote_port):
    """Inode of the established socket with this local and remote port (sluice's side)."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if (int(parts[1].rsplit(":", 1)[1], 16) == local_port and
                    int(parts[2].rsplit(":", 1)[1], 16) == remote_port and parts[3] == "01"):
                return int(parts[9])
    return None


def socket_inodes(pid):
    out = set()
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return out
    for n in names:
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, n))
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out


# --------------------------------------------------------------------------
# configuration and the admin endpoint


def config(listeners, clusters, workers=2, drain_timeout="5s", admin="127.0.0.1:0", extra=None):
    cfg = {"workers": workers, "log_level": "debug", "drain_timeout": drain_timeout}
    if admin:
        cfg["admin"] = {"address": admin}
    cfg["listeners"] = listeners
    cfg["clusters"] = clusters
    cfg.update(extra or {})
    return harness.to_yaml(hu._quote(cfg)) + "\n"


def http_setup(backend, workers=2, drain_timeout="5s", health_check=None, admin="127.0.0.1:0", **lkw):
    kw = {"health_check": health_check} if health_check else {}
    return config([hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}], **lkw)],
                  [hu.cluster("app", [backend.address], **kw)], workers=workers, drain_timeout=drain_timeout,
                  admin=admin)


def tcp_setup(backend, workers=2, drain_timeout="30s", admin="127.0.0.1:0"):
    return config([{"name": "tcp_in", "address": "127.0.0.1:0", "protocol": "tcp", "cluster": "echo"}],
                  [{"name": "echo", "connect_timeout": "1s", "endpoints": [{"address": backend.address}]}],
                  workers=workers, drain_timeout=drain_timeout, admin=admin)


def start_sluice(text, **kw):
    track_case()
    sl = harness.Sluice(text, **kw)
    track_case()
    return sl


def admin_port(sl, timeout=10):
    line = sl.wait_log(ADMIN_RE, timeout)
    if not line:
        raise harness.CheckFailed_with("no 'admin listening on 127.0.0.1:PORT' line", sl.stderr_text())
    return int(ADMIN_RE.search(line).group(1))


def admin_get(ap, target, timeout=10):
    return hu.request_once(ap, "GET", target, host="admin", timeout=timeout)


def post_upgrade(ap, timeout=60):
    """POST /upgrade; returns (status, parsed JSON or the raw body)."""
    r = hu.request_once(ap, "POST", "/upgrade", body=b"", host="admin", timeout=timeout)
    try:
        return r.status, json.loads(r.body)
    except ValueError:
        return r.status, r.body


def lifecycle(ap):
    r = admin_get(ap, "/metrics")
    return {k: int(v) for k, v in LIFECYCLE_RE.findall(r.body.decode())}


def only(state):
    return {s: int(s == state) for s in ("starting", "ready", "reloading", "upgrading", "draining", "stopped")}


def rewrite(sl, text):
    """Replaces the -c file atomically (as a deployment would)."""
    tmp = sl.config_path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, sl.config_path)


def echo_target(r, target):
    try:
        return r.status == 200 and json.loads(r.body)["target"] == target
    except (ValueError, KeyError):
        return False


def wait_old_exit(sl, timeout):
    """Waits for the harness's process (the first generation) to exit. Not Sluice.wait_exit: the
    later generations hold its stderr open, and that waits for the end of the output too."""
    try:
        sl.returncode = sl.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None
    return sl.returncode


def check_upgraded(status, body, old_pid, what="POST /upgrade"):
    """The reply of a successful upgrade; returns the new pid."""
    ok = (status == 200 and isinstance(body, dict) and sorted(body) == ["error", "pid", "result"] and
          body["result"] == "upgraded" and body["error"] == "" and isinstance(body["pid"], int) and
          body["pid"] not in (0, old_pid))
    check(ok, '%s: 200 {"result": "upgraded", "pid": <new pid>, "error": ""}' % what,
          "%d %r" % (status, body))
    return body["pid"]


def check_new_process(pid, old_pid, sl):
    """The new process is the same executable run again as `run -c FILE --upgrade-fd N`."""
    cmd = cmdline_of(pid)
    check(cmd is not None and cmd[:4] == [os.path.realpath(harness.sluice_bin()), "run", "-c", sl.config_path]
          and len(cmd) == 6 and cmd[4] == "--upgrade-fd" and cmd[5].isdigit(),
          "pid %d runs `%s run -c FILE --upgrade-fd N`" % (pid, os.path.basename(harness.sluice_bin())), repr(cmd))
    st = proc_stat(pid)
    check(st is not None and st[1] in (old_pid, os.getpid()),
          "pid %d was started by the old process %d" % (pid, old_pid), repr(st))


def stop_pid(pid, sl, timeout=15):
    """SIGTERM to a later generation; checks it exits 0 and that nothing sanitizer-ish was logged."""
    os.kill(pid, signal.SIGTERM)
    rc = wait_pid_exit(pid, timeout)
    check(rc == 0, "pid %d exits 0 on SIGTERM" % pid, "exit %r\n%s" % (rc, hu.log_tail(sl, 30)))
    rep = sl.sanitizer_report()
    check(not rep, "no sanitizer report in the stderr of any generation", "\n".join(rep[:40]))


# --------------------------------------------------------------------------
# load: keep-alive clients and clients opening a connection per request


class Load:
    def __init__(self, port, keepalive=3, fresh=3):
        self.port = port
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.ok = [0] * (keepalive + fresh)
        self.closes = [0] * keepalive   # Connection: close received on a keep-alive client
        self.failures = []
        self.resets = 0
        self.threads = []
        for i in range(keepalive):
            self.threads.append(threading.Thread(target=self._keepalive, args=(i,), daemon=True))
        for i in range(fresh):
            self.threads.append(threading.Thread(target=self._fresh, args=(keepalive + i,), daemon=True))

    def start(self):
        for t in self.threads:
            t.start()

    def _fail(self, i, n, e):
        with self.lock:
            if isinstance(e, ConnectionResetError):
                self.resets += 1
            self.failures.append("thread %d request %d: %r" % (i, n, e))

    def _keepalive(self, i):
        c, n = None, 0
        while not self.stop_ev.is_set():
            n += 1
            target = "/ka/%d/%d" % (i, n)
            try:
                if c is None:
                    c = hu.Client(self.port, timeout=10)
                r = c.request("GET", target)
                if not echo_target(r, target):
                    raise AssertionError("unexpected answer %d %r" % (r.status, r.body[:80]))
                self.ok[i] += 1
                if "close" in r.tokens("connection"):
                    self.closes[i] += 1
                    c.close()
                    c = None
            except Exception as e:  # every failure is recorded and counted
                self._fail(i, n, e)
                if c:
                    c.close()
                c = None
        if c:
            c.close()

    def _fresh(self, i):
        n = 0
        while not self.stop_ev.is_set():
            n += 1
            target = "/new/%d/%d" % (i, n)
            try:
                r = hu.request_once(self.port, "GET", target, timeout=10)
                if not echo_target(r, target):
                    raise AssertionError("unexpected answer %d %r" % (r.status, r.body[:80]))
                self.ok[i] += 1
            except Exception as e:
                self._fail(i, n, e)

    def each_at_least(self, base, n):
        return all(ok >= b + n for ok, b in zip(self.ok, base))

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(15)


# --------------------------------------------------------------------------
# cases


def test_upgrade_under_load():
    backend = BackendProcess("b1")
    sl = start_sluice(http_setup(backend, drain_timeout="5s"))
    gen1 = sl.pid
    port, ap = sl.port("web"), admin_port(sl)
    before, admin_before = listen_inodes(port), listen_inodes(ap)
    check(len(before) == 2 and before <= socket_inodes(gen1),
          "before: pid %d holds the 2 listening sockets of port %d (one per worker)" % (gen1, port), repr(before))
    check(len(admin_before) == 1 and admin_before <= socket_inodes(gen1),
          "before: pid %d holds the admin socket" % gen1, repr(admin_before))
    idle = hu.Client(port, timeout=10)
    r = idle.request("GET", "/idle/1")
    check(echo_target(r, "/idle/1") and not r.tokens("connection"), "an idle keep-alive connection, opened before",
          r.describe())

    load = Load(port)
    load.start()
    check(wait_until(lambda: load.each_at_least([0] * 6, 20), 30),
          "load: each of 3 keep-alive and 3 new-connection clients has 20 answers", repr(load.ok))
    mark = sl.line_count()
    t0 = time.monotonic()
    status, body = post_upgrade(ap)
    gen2 = check_upgraded(status, body, gen1)
    info("upgrade answered after %.2f s: pid %d serves" % (time.monotonic() - t0, gen2))
    check_new_process(gen2, gen1, sl)
    check(sl.find_lines("upgrade: took over 1 listeners (2 sockets) and the admin socket from pid %d" % gen1, mark),
          "the new process logs 'upgrade: took over 1 listeners (2 sockets) and the admin socket from pid %d'"
          % gen1, hu.log_tail(sl, 40))
    check(sl.find_lines("listener web listening on 127.0.0.1:%d (http, 1 virtual hosts)" % port, mark),
          "the new process listens on the same port %d" % port, hu.log_tail(sl, 40))
    check(sl.wait_log("upgrade: pid %d serves now; this process drains" % gen2, 5, mark),
          "the old process logs 'upgrade: pid %d serves now; this process drains'" % gen2, hu.log_tail(sl, 40))

    # The idle connection stayed on the old process: its next response closes it.
    check(sl.alive(), "the old process still runs: the idle keep-alive connection is open on it")
    r = idle.request("GET", "/idle/2")
    check(echo_target(r, "/idle/2") and r.tokens("connection") == ["close"],
          "the idle connection's next request is answered, with Connection: close", r.describe())
    how, extra, _ = idle.wait_closed(5)
    check(how == "eof" and extra == b"", "then the old process closes it (FIN, nothing more)", "%s %r" % (how, extra))

    rc = wait_old_exit(sl, 7)
    took = time.monotonic() - t0
    check(rc == 0, "the old process exits 0", "rc %r\n%s" % (rc, hu.log_tail(sl, 40)))
    check(took < 5.0, "the old process is gone %.2f s after the upgrade was asked, within drain_timeout 5s" % took,
          "\n".join(sl.find_lines(re.compile(r"drain|sluice (draining|stopped)"), mark)))
    at_exit = list(load.ok)
    check(wait_until(lambda: load.each_at_least(at_exit, 20), 30),
          "load goes on: each client has 20 more answers after the old process exited", repr(load.ok))
    load.stop()
    total = sum(load.ok)
    info("%d requests answered; keep-alive clients told to close: %r" % (total, load.closes))
    check(load.failures == [], "no request failed during the upgrade (%d answered)" % total,
          "\n".join(load.failures[:20]))
    check(load.resets == 0, "no connection was reset")
    check(all(c >= 1 for c in load.closes),
          "every keep-alive client was moved by a Connection: close from the old process", repr(load.closes))

    after = listen_inodes(port)
    check(after == before, "the same listening sockets (inodes) serve port %d: handed over, not bound again" % port,
          "%r vs %r" % (after, before))
    check(after <= socket_inodes(gen2), "the new pid %d holds them" % gen2, repr(socket_inodes(gen2)))
    check(listen_inodes(ap) == admin_before and admin_before <= socket_inodes(gen2),
          "the admin socket on port %d is the same one, held by pid %d" % (ap, gen2), repr(listen_inodes(ap)))
    only_sluice([gen2], "only pid %d runs now" % gen2)
    r = admin_get(ap, "/ready")
    check(r.status == 200 and r.body == b"ready\n", "GET /ready on the same admin port: 200 ready", r.describe())
    g = lifecycle(ap)
    check(g == only("ready"), "the new process's /metrics: sluice_lifecycle_state ready 1", repr(g))
    stop_pid(gen2, sl)


def test_slow_first_health_round():
    # The new process's first health check takes 800 ms; the old one serves meanwhile.
    backend = BackendProcess("b1")
    hc = {"type": "http", "interval": "60s", "timeout": "5s", "healthy_threshold": 1, "unhealthy_threshold": 1,
          "http": {"path": "/delay/800/health"}}
    sl = start_sluice(http_setup(backend, health_check=hc))
    gen1 = sl.pid
    port, ap = sl.port("web"), admin_port(sl)
    load = Load(port, keepalive=2, fresh=3)
    load.start()
    check(wait_until(lambda: load.each_at_least([0] * 5, 10), 30), "load under way", repr(load.ok))
    probes = {"ready": [], "other": [], "gauges": []}
    upgrading = threading.Event()

    def probe():
        while upgrading.is_set():
            try:
                r = admin_get(ap, "/ready", timeout=5)
                (probes["ready"] if (r.status, r.body) == (200, b"ready\n") else probes["other"]).append(
                    "%d %r" % (r.status, r.body))
                probes["gauges"].append(lifecycle(ap))
            except Exception as e:
                probes["other"].append(repr(e))

    upgrading.set()
    t = threading.Thread(target=probe, daemon=True)
    t.start()
    status, body = post_upgrade(ap)
    upgrading.clear()
    t.join(10)
    gen2 = check_upgraded(status, body, gen1)
    base = list(load.ok)
    check(wait_until(lambda: load.each_at_least(base, 10), 30), "load goes on after the upgrade", repr(load.ok))
    load.stop()
    info("%d requests; %d /ready probes during the upgrade" % (sum(load.ok), len(probes["ready"]) +
                                                              len(probes["other"])))
    soft_check(load.failures == [],
               "no request fails while the new process waits for its first health answers",
               "\n".join(load.failures[:10]))
    soft_check(only("upgrading") in probes["gauges"],
               "/metrics during the upgrade: sluice_lifecycle_state upgrading 1 (and no other state)",
               "\n".join(sorted(set(repr(g) for g in probes["gauges"]))))
    soft_check(probes["other"] == [] and probes["ready"],
               "GET /ready answered 200 ready throughout the upgrade (%d probes)" % len(probes["ready"]),
               "\n".join(probes["other"][:5]))
    rc = wait_old_exit(sl, 7)
    check(rc == 0, "the old process exits 0", hu.log_tail(sl, 30))
    stop_pid(gen2, sl)


def test_sigterm_while_the_new_process_starts():
    backend = BackendProcess("b1")
    hc = {"type": "http", "interval": "60s", "timeout": "5s", "healthy_threshold": 1, "unhealthy_threshold": 1,
          "http": {"path": "/delay/1500/health"}}
    sl = start_sluice(http_setup(backend, health_check=hc))
    gen1 = sl.pid
    port, ap = sl.port("web"), admin_port(sl)
    mark = sl.line_count()
    reply = {}

    def ask():
        try:
            reply["r"] = post_upgrade(ap)
        except Exception as e:
            reply["e"] = e

    t = threading.Thread(target=ask, daemon=True)
    t.start()
    check(sl.wait_log("upgrade: took over", 20, mark), "the new process has taken the sockets over",
          hu.log_tail(sl, 20))
    starting = [p for p in sluice_processes() if p != gen1]
    check(len(starting) == 1, "a new process is starting", repr(sluice_processes()))
    sl.signal(signal.SIGTERM)
    t.join(20)
    status, body = reply.get("r", (0, reply))
    check(status == 500 and body == {"result": "failed", "pid": starting[0], "error": "sluice began draining"},
          'SIGTERM meanwhile: POST /upgrade answers 500 {"result": "failed", "pid": %d, '
          '"error": "sluice began draining"}' % starting[0], "%d %r" % (status, body))
    rc = wait_old_exit(sl, 10)
    check(rc == 0, "the old process exits 0", hu.log_tail(sl, 20))
    check(not alive(starting[0]) and sluice_processes() == [], "the new process is gone too",
          repr(sluice_processes()))
    check(harness.is_refused(port), "port %d is closed" % port)


def test_upgrade_after_a_failed_reload():
    # A reload that binds one listener at a new port, then fails on another, keeps the running
    # configuration: nothing may listen on the new port, and a later upgrade hands over the
    # sockets of the configuration in force.
    with harness.EchoServer() as echo:
        cl = [{"name": "echo", "connect_timeout": "1s", "endpoints": [{"address": echo.address}]}]

        def lst(name, address="127.0.0.1:0"):
            return {"name": name, "address": address, "protocol": "tcp", "cluster": "echo"}

        good = config([lst("a")], cl, drain_timeout="5s")
        sl = start_sluice(good)
        gen1 = sl.pid
        port, ap = sl.port("a"), admin_port(sl)
        sockets = listen_inodes(port)
        holder, moved = harness.free_port_holder()
        holder.close()
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        harness.register_cleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        taken_port = taken.getsockname()[1]
        rewrite(sl, config([lst("a", "127.0.0.1:%d" % moved), lst("b", "127.0.0.1:%d" % taken_port)], cl,
                           drain_timeout="5s"))
        r = hu.request_once(ap, "POST", "/reload", body=b"", host="admin", timeout=30)
        body = json.loads(r.body) if r.body.startswith(b"{") else {}
        check(r.status == 400 and body.get("result") == "failed",
              "a reload moving listener a to port %d and adding b on a taken port fails" % moved, r.describe())
        info("reload errors: %r" % body.get("errors"))
        soft_check(harness.is_refused(moved), "nothing listens on port %d after the failed reload" % moved,
                   "listening sockets: %r" % listen_inodes(moved))
        c = harness.connect(port)
        check(harness.echo_roundtrip(c, b"a"), "listener a still serves on port %d" % port)
        c.close()
        rewrite(sl, good)
        status, body = post_upgrade(ap)
        gen2 = check_upgraded(status, body, gen1)
        rc = wait_old_exit(sl, 7)
        check(rc == 0, "the old process exits 0", hu.log_tail(sl, 20))
        ok = False
        try:
            c = harness.connect(port, timeout=3)
            ok = harness.echo_roundtrip(c, b"after", timeout=3)
            c.close()
        except OSError as e:
            info("port %d: %r" % (port, e))
        soft_check(ok and listen_inodes(port) == sockets,
                   "after the upgrade listener a serves on its port %d, on the sockets handed over" % port,
                   "listening on %d: %r (before %r); on %d: %r" % (port, listen_inodes(port), sockets, moved,
                                                                   listen_inodes(moved)))
        soft_check(harness.is_refused(moved), "and nothing listens on port %d" % moved)
        stop_pid(gen2, sl)


def test_dns_cluster_while_the_dns_server_is_slow():
    # The old process hands its cached DNS answers over: with the name server stopped, the new
    # process still has the cluster's endpoints at once (no query sent, a cache hit), says
    # ready, and no request fails.
    import dns_server
    ns = dns_server.NsdServer(["api IN A 127.0.0.1"], ttl=30, minimum=30)
    backend = BackendProcess("b1")
    text = dns_server.make_config([dns_server.dns_cluster("app", ["api.test.sluice"], backend.port)],
                                  dns_server.dns_block(ns.address, timeout="3s", attempts=2))
    text = text.replace("drain_timeout: 5s\n", "drain_timeout: 5s\nadmin:\n  address: 127.0.0.1:0\n", 1)
    sl = start_sluice(text)
    gen1 = sl.pid
    port, ap = sl.port("web"), admin_port(sl)
    load = Load(port, keepalive=2, fresh=3)
    load.start()
    check(wait_until(lambda: load.each_at_least([0] * 5, 10), 30), "load under way", repr(load.ok))
    mark = sl.line_count()
    ns.pause()
    try:
        status, body = post_upgrade(ap)
        gen2 = check_upgraded(status, body, gen1)
        check(sl.wait_log("upgrade: 1 cached DNS answers carried over", 5, mark) is not None,
              "log: upgrade: 1 cached DNS answers carried over", hu.log_tail(sl, 20))
        metrics = admin_get(ap, "/metrics").body.decode()

        def value(name):
            m = re.search(r"^%s (\d+)" % re.escape(name), metrics, re.M)
            return int(m.group(1)) if m else None
        check(value("sluice_dns_queries_total") == 0 and value("sluice_dns_cache_hits_total") == 1,
              "the new process sent no DNS query: its first answer came from the handed-over cache",
              "queries %r, cache hits %r" % (value("sluice_dns_queries_total"),
                                             value("sluice_dns_cache_hits_total")))
        base = list(load.ok)
        check(wait_until(lambda: load.each_at_least(base, 10), 30), "load goes on after the upgrade",
              repr(load.ok))
    finally:
        ns.resume()
    load.stop()
    info("%d requests" % sum(load.ok))
    soft_check(load.failures == [], "no request failed across the upgrade", "\n".join(load.failures[:10]))
    rc = wait_old_exit(sl, 7)
    check(rc == 0, "the old process exits 0", hu.log_tail(sl, 20))
    stop_pid(gen2, sl)


def test_tcp_session_stays_on_the_old_process():
    with harness.EchoServer() as echo:
        sl = start_sluice(tcp_setup(echo, drain_timeout="30s"))
        gen1 = sl.pid
        port, ap = sl.port("tcp_in"), admin_port(sl)
        s = harness.connect(port)
        check(harness.echo_roundtrip(s, b"before"), "a TCP session echoes before the upgrade")
        inode = connection_inode(port, s.getsockname()[1])
        check(inode is not None and inode in socket_inodes(gen1), "the session is on pid %d" % gen1, repr(inode))
        status, body = post_upgrade(ap)
        gen2 = check_upgraded(status, body, gen1)
        for i in range(5):
            payload = b"across the upgrade %d" % i
            if not harness.echo_roundtrip(s, payload):
                check(False, "the session keeps echoing after the upgrade (round %d)" % i)
        check(True, "the session keeps echoing after the upgrade (5 rounds)")
        check(inode in socket_inodes(gen1) and inode not in socket_inodes(gen2),
              "it is still served by the old pid %d" % gen1)
        fresh = harness.connect(port)
        check(harness.echo_roundtrip(fresh, b"new"), "a new connection echoes")
        fi = connection_inode(port, fresh.getsockname()[1])
        check(fi in socket_inodes(gen2), "the new connection is served by the new pid %d" % gen2, repr(fi))
        fresh.close()
        check(sl.alive(), "the old process still runs while the session is open")
        t0 = time.monotonic()
        s.close()
        rc = wait_old_exit(sl, 10)
        check(rc == 0, "the client closes the session: the old process exits 0 (%.2f s later)"
              % (time.monotonic() - t0), "rc %r\n%s" % (rc, hu.log_tail(sl, 30)))
        check(time.monotonic() - t0 < 5, "well before drain_timeout 30s")
        again = harness.connect(port)
        check(harness.echo_roundtrip(again, b"after"), "the new process echoes after the old one exited")
        again.close()
        stop_pid(gen2, sl)


def test_invalid_file_keeps_the_old_process():
    backend = BackendProcess("b1")
    good = http_setup(backend)
    sl = start_sluice(good)
    gen1 = sl.pid
    port, ap = sl.port("web"), admin_port(sl)
    check(good.startswith("workers: 2\n"), "(the file starts with 'workers: 2')")
    r = admin_get(ap, "/upgrade")
    check(r.status == 405 and r.body == b"POST /upgrade starts a new binary\n",
          "GET /upgrade: 405 'POST /upgrade starts a new binary'", r.describe())
    only_sluice([gen1], "and nothing was started")
    rewrite(sl, good.replace("workers: 2\n", "workers: 0\n", 1))
    p = harness.run_sluice_cmd(["check", "-c", sl.config_path])
    located = p.stderr.strip()
    expected = "%s:1:10: workers: expected an integer from 1 to 256, got 0" % sl.config_path
    check(p.returncode == 1 and located == expected, "sluice check on the file: %r" % expected,
          "%d %r %r" % (p.returncode, p.stdout, p.stderr))
    mark = sl.line_count()
    status, body = post_upgrade(ap)
    ok = (status == 500 and isinstance(body, dict) and sorted(body) == ["error", "pid", "result"] and
          body["result"] == "failed" and body["error"] == located)
    check(ok, 'POST /upgrade: 500 {"result": "failed", "error": <the located error>}', "%d %r" % (status, body))
    failed_pid = body["pid"]
    check(failed_pid not in (0, gen1) and not alive(failed_pid),
          "the reply names the new process (pid %d), which is gone" % failed_pid)
    line = sl.wait_log("upgrade failed, this process keeps serving", 5, mark)
    check(line is not None and line.endswith("upgrade failed, this process keeps serving: " + located),
          "the old process logs 'upgrade failed, this process keeps serving: <error>'", hu.log_tail(sl, 20))
    only_sluice([gen1], "only the old process runs")
    r = hu.request_once(port, "GET", "/after-failed")
    check(echo_target(r, "/after-failed"), "the old process serves", r.describe())
    check(listen_inodes(port) <= socket_inodes(gen1), "and still holds its listening sockets")
    g = lifecycle(ap)
    check(g == only("ready"), "/metrics: back to ready", repr(g))

    # Valid, but a new listener's port is taken: the new process fails after adopting the
    # handed-over sockets; closing its copies must not disturb the old process.
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    harness.register_cleanup(taken.close)
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    taken_port = taken.getsockname()[1]
    extra = {"name": "taken", "address": "127.0.0.1:%d" % taken_port, "protocol": "tcp", "cluster": "app"}
    rewrite(sl, config([hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}]), extra],
                       [hu.cluster("app", [backend.address])]))
    status, body = post_upgrade(ap)
    why = "listener taken: bind 127.0.0.1:%d: Address already in use" % taken_port
    check(status == 500 and isinstance(body, dict) and body.get("result") == "failed" and body.get("error") == why,
          'a listener on a taken port: 500 {"result": "failed", "error": "%s"}' % why, "%d %r" % (status, body))
    only_sluice([gen1], "only the old process runs")
    r = hu.request_once(port, "GET", "/after-bind-failure")
    check(echo_target(r, "/after-bind-failure"), "the old process serves on its sockets", r.describe())
    r = admin_get(ap, "/ready")
    check(r.status == 200 and r.body == b"ready\n", "and on its admin socket", r.describe())
    taken.close()

    rewrite(sl, good)
    status, body = post_upgrade(ap)
    gen2 = check_upgraded(status, body, gen1, "the file fixed, POST /upgrade")
    rc = wait_old_exit(sl, 7)
    check(rc == 0, "the old process exits 0", hu.log_tail(sl, 20))
    r = hu.request_once(port, "GET", "/after-fixed")
    check(echo_target(r, "/after-fixed"), "the new process serves", r.describe())
    stop_pid(gen2, sl)


LISTENERS = 100


def test_invalid_file_with_many_listeners():
    # More listeners than the hand-over's packets a Unix socket queues before the new process
    # reads: the old process blocks in the hand-over while the new one reads its file.
    backend = BackendProcess("b1")
    route = [{"match": {"prefix": "/"}, "cluster": "app"}]
    listeners = [hu.simple_listener(route, name="web%d" % i) for i in range(LISTENERS)]
    good = config(listeners, [hu.cluster("app", [backend.address])], workers=1)
    sl = start_sluice(good)
    gen1, ap = sl.pid, admin_port(sl)
    rewrite(sl, good.replace("workers: 1\n", "workers: 0\n", 1))
    located = "%s:1:10: workers: expected an integer from 1 to 256, got 0" % sl.config_path
    status, body = post_upgrade(ap)
    soft_check(status == 500 and isinstance(body, dict) and body.get("error") == located,
               "%d listeners, an invalid file: POST /upgrade: 500 with the located error" % LISTENERS,
               "%d %r" % (status, body))
    only_sluice([gen1], "only the old process runs")
    r = hu.request_once(sl.port("web%d" % (LISTENERS - 1)), "GET", "/x")
    check(echo_target(r, "/x"), "the old process serves", r.describe())


def test_second_upgrade_while_draining():
    with harness.EchoServer() as echo:
        sl = start_sluice(tcp_setup(echo, drain_timeout="30s"))
        gen1 = sl.pid
        port, ap = sl.port("tcp_in"), admin_port(sl)
        s = harness.connect(port)
        check(harness.echo_roundtrip(s, b"hold"), "a TCP session holds the first generation")
        status, body = post_upgrade(ap)
        gen2 = check_upgraded(status, body, gen1)
        mark = sl.line_count()
        status, body = post_upgrade(ap)
        why = "the previous generation (pid %d) is still draining; at most two run at once" % gen1
        check(status == 500 and body == {"result": "failed", "pid": 0, "error": why},
              'a second POST /upgrade: 500 {"result": "failed", "pid": 0, "error": "%s"}' % why,
              "%d %r" % (status, body))
        # The line is written before the answer, but read from the pipe by another thread.
        check(sl.wait_log("upgrade refused: " + why, 5, mark), "logged 'upgrade refused: %s'" % why,
              hu.log_tail(sl, 20))
        mark = sl.line_count()
        os.kill(gen2, signal.SIGUSR2)
        check(sl.wait_log("upgrade refused: " + why, 5, mark), "SIGUSR2 to pid %d: refused the same way" % gen2,
              hu.log_tail(sl, 20))
        check(sorted(sluice_processes()) == sorted([gen1, gen2]), "two processes run, no third",
              repr(sluice_processes()))
        check(harness.echo_roundtrip(s, b"still"), "the first generation still serves its session")
        # SIGUSR2 to the draining first generation (a pid file not yet updated): an upgrade
        # request, not a stop; its session goes on.
        mark = sl.line_count()
        sl.signal(signal.SIGUSR2)
        # Whatever the old process says about it (at most 5 s), the session must still echo.
        said = sl.wait_log(re.compile(r"User defined signal 2|SIGUSR2|upgrade"), 5, mark)
        info("logged: %r" % said)
        soft_check(harness.echo_roundtrip(s, b"after SIGUSR2"),
                   "SIGUSR2 to the draining first generation leaves its session open (echo)",
                   hu.log_tail(sl, 10))
        s.close()
        rc = wait_old_exit(sl, 10)
        check(rc == 0, "the session closed, the first generation exits 0", hu.log_tail(sl, 20))
        status, body = post_upgrade(ap)
        gen3 = check_upgraded(status, body, gen2, "after it exited, POST /upgrade")
        check(gen3 != gen1, "a third pid")
        rc = wait_pid_exit(gen2, 10)
        check(rc == 0, "the second generation (no connections) exits 0", "rc %r\n%s" % (rc, hu.log_tail(sl, 20)))
        c = harness.connect(port)
        check(harness.echo_roundtrip(c, b"third"), "the third generation serves on port %d" % port)
        c.close()
        only_sluice([gen3], "only pid %d runs" % gen3)
        stop_pid(gen3, sl)


def test_drained_and_ejected_endpoints_stay_so():
    """An endpoint drained through the admin API and one ejected by outlier detection stay so
    on the new process: /clusters there says draining, and ejected with its ejection count."""
    a, b = BackendProcess("a"), BackendProcess("b")
    _, dead_port = harness.free_port_holder()
    dead_addr = "127.0.0.1:%d" % dead_port
    cluster = hu.cluster("app", [a.address, b.address, dead_addr], lb_policy="round_robin",
                         outlier_detection={"consecutive_gateway_failure": 1, "base_ejection_time": "60s"})
    text = config([hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])], [cluster])
    sl = start_sluice(text)
    ap = admin_port(sl)
    r = hu.request_once(ap, "POST", "/clusters/app/endpoints/%s/drain" % a.address, body=b"", host="admin")
    check(r.status == 200, "endpoint a drained through the admin API", r.describe())

    def ejected():
        for _ in range(3):
            hu.request_once(sl.port("web"), "GET", "/x")
        eps = {e["address"]: e for e in json.loads(admin_get(ap, "/clusters").body)[0]["endpoints"]}
        return eps if eps[dead_addr]["ejected"] else None
    eps = harness.wait_until(ejected, 10)
    check(eps is not None, "the refusing endpoint is ejected", hu.log_tail(sl, 20))
    old_pid = sl.proc.pid
    status, body = post_upgrade(ap)
    new_pid = check_upgraded(status, body, old_pid)
    eps = {e["address"]: e for e in json.loads(admin_get(ap, "/clusters").body)[0]["endpoints"]}
    check(eps[a.address]["draining"] is True and eps[b.address]["draining"] is False,
          "on the new process: a still draining, b not", json.dumps(eps))
    check(eps[dead_addr]["ejected"] is True and eps[dead_addr]["ejections"] == 1,
          "on the new process: the refusing endpoint still ejected (ejection 1)", json.dumps(eps))
    check(wait_old_exit(sl, 10) == 0, "the old process exits 0")
    stop_pid(new_pid, sl)


class NotifySocket:
    """The service manager's end of NOTIFY_SOCKET, reading each sender's pid (SO_PASSCRED)."""

    def __init__(self):
        d = tempfile.mkdtemp(prefix="sluice-upgrade-notify-")
        harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
        self.path = os.path.join(d, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        harness.register_cleanup(self.sock.close)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.messages = []  # (pid, text)

    def read_until(self, pred, timeout):
        """Reads messages until pred(messages) holds or timeout; returns whether it held."""
        deadline = time.monotonic() + timeout
        while not pred(self.messages):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                data, anc, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(12))
            except socket.timeout:
                return False
            pid = -1
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", payload[:12])[0]
            self.messages.append((pid, data.decode()))
        return True

    def of(self, pid):
        return [m for p, m in self.messages if p == pid]


class NotifiedSluice(harness.Sluice):
    def __init__(self, text, notify_path):
        saved = {k: os.environ.pop(k, None) for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        os.environ["NOTIFY_SOCKET"] = notify_path
        try:
            super().__init__(text)
        finally:
            os.environ.pop("NOTIFY_SOCKET", None)
            for k, v in saved.items():
                if v is not None:
                    os.environ[k] = v


def test_sigusr2_with_notify_socket():
    ns = NotifySocket()
    with harness.EchoServer() as echo:
        track_case()
        sl = NotifiedSluice(tcp_setup(echo, drain_timeout="5s"), ns.path)
        track_case()
        gen1 = sl.pid
        port = sl.port("tcp_in")
        starting = "STATUS=starting: waiting for the first DNS answers and health checks"
        ready = "READY=1\nSTATUS=ready: 2 workers, 1 listeners"
        check(ns.read_until(lambda m: len(m) >= 2, 10) and ns.of(gen1) == [starting, ready],
              "the first process: STATUS=starting, READY=1", repr(ns.messages))
        mark = sl.line_count()
        sl.signal(signal.SIGUSR2)
        line = sl.wait_log(re.compile(r"upgrade: pid \d+ serves now; this process drains"), 30, mark)
        check(line is not None, "SIGUSR2: the old process logs 'upgrade: pid N serves now; this process drains'",
              hu.log_tail(sl, 30))
        gen2 = int(re.search(r"upgrade: pid (\d+) serves", line).group(1))
        check(gen2 != gen1, "a new pid %d" % gen2)
        rc = wait_old_exit(sl, 7)
        check(rc == 0, "the old process exits 0 (no connection to drain)", hu.log_tail(sl, 30))
        drained = ("STATUS=draining: stopped accepting, waiting up to 5s for 0 open connections "
                   "(upgraded: pid %d serves now)" % gen2)
        want_old = [starting, ready, "STATUS=upgrading: started pid %d" % gen2, drained]
        want_new = [starting, "MAINPID=%d" % gen2, "READY=1\nSTATUS=ready: 2 workers, 1 listeners"]
        ns.read_until(lambda m: len(m) >= len(want_old) + len(want_new), 3)
        soft_check(ns.of(gen2) == want_new, "the new process sends %r" % want_new, repr(ns.messages))
        soft_check(ns.of(gen1) == want_old,
                   "the old process sends STATUS=upgrading, then %r (no STOPPING=1)" % drained, repr(ns.messages))
        soft_check(len(ns.messages) == len(want_old) + len(want_new), "nothing else", repr(ns.messages))
        c = harness.connect(port)
        check(harness.echo_roundtrip(c, b"after SIGUSR2"), "the new process serves port %d" % port)
        check(listen_inodes(port) <= socket_inodes(gen2), "and holds its listening sockets")
        c.close()
        os.kill(gen2, signal.SIGTERM)
        # (the connection just closed may or may not be counted yet: the close races the signal)
        stopping = re.compile(r"STOPPING=1\nSTATUS=draining: stopped accepting, waiting up to 5s for [01] "
                              r"open connections \(Terminated\)")
        soft_check(ns.read_until(lambda m: any(stopping.fullmatch(x) for p, x in m if p == gen2), 5),
                   "SIGTERM to the new process: it sends STOPPING=1", repr(ns.messages))
        rc = wait_pid_exit(gen2, 10)
        check(rc == 0, "the new process exits 0", hu.log_tail(sl, 20))


def test_workers_change():
    backend = BackendProcess("b1")
    text = http_setup(backend, workers=2)
    sl = start_sluice(text)
    gen = sl.pid
    port, ap = sl.port("web"), admin_port(sl)
    sockets = listen_inodes(port)
    check(len(sockets) == 2, "workers 2: 2 listening sockets on port %d" % port, repr(sockets))

    def all_answered(label):
        clients = [hu.Client(port, timeout=5) for _ in range(20)]
        good = 0
        for i, c in enumerate(clients):
            try:
                r = c.request("GET", "/%s/%d" % (label, i))
                good += echo_target(r, "/%s/%d" % (label, i))
            except Exception as e:
                info("connection %d: %r" % (i, e))
        for c in clients:
            c.close()
        return good

    for workers, label in ((3, "three"), (1, "one")):
        rewrite(sl, text.replace("workers: 2\n", "workers: %d\n" % workers, 1))
        mark = sl.line_count()
        status, body = post_upgrade(ap)
        new = check_upgraded(status, body, gen, "workers %d in the file, POST /upgrade" % workers)
        handed = len(sockets)
        check(sl.find_lines("upgrade: took over 1 listeners (%d sockets) and the admin socket from pid %d"
                            % (handed, gen), mark),
              "the new process took over the %d sockets" % handed, hu.log_tail(sl, 30))
        rc = wait_old_exit(sl, 7) if gen == sl.pid else wait_pid_exit(gen, 7)
        check(rc == 0, "the old process exits 0", hu.log_tail(sl, 30))
        now = listen_inodes(port)
        expect = max(workers, handed)
        check(sockets <= now and len(now) == expect and now <= socket_inodes(new),
              "workers %d: the %d handed-over sockets%s, all held by pid %d"
              % (workers, handed, " and 1 more bound" if workers > handed else "", new),
              "%r -> %r" % (sockets, now))
        good = all_answered(label)
        check(good == 20, "workers %d: 20 connections open at once, all 20 answered" % workers,
              "%d answered" % good)
        sockets, gen = now, new
    stop_pid(gen, sl)


def test_cli_and_replaced_executable():
    # Fixed ports (the CLI reads the admin address from the file).
    holders = [harness.free_port_holder() for _ in range(2)]
    web_port, admin = holders[0][1], holders[1][1]
    for s, _ in holders:
        s.close()
    d = tempfile.mkdtemp(prefix="sluice-upgrade-bin-")
    harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    exe = os.path.join(d, "sluice")
    shutil.copy2(harness.sluice_bin(), exe)
    saved = os.environ["SLUICE_BIN"]
    os.environ["SLUICE_BIN"] = exe
    try:
        with harness.EchoServer() as echo:
            text = config([{"name": "tcp_in", "address": "127.0.0.1:%d" % web_port, "protocol": "tcp",
                            "cluster": "echo"}],
                          [{"name": "echo", "connect_timeout": "1s", "endpoints": [{"address": echo.address}]}],
                          drain_timeout="5s", admin="127.0.0.1:%d" % admin)
            sl = start_sluice(text)
            gen1 = sl.pid
            first = os.stat(exe)
            # A new build replaces the file: a new inode at the same path.
            shutil.copy2(saved, exe + ".new")
            os.replace(exe + ".new", exe)
            second = os.stat(exe)
            check(first.st_ino != second.st_ino, "(the executable was replaced on disk)")
            p = harness.run_sluice_cmd(["upgrade", "-c", sl.config_path], timeout=60)
            m = re.fullmatch(r"Upgraded: pid (\d+) serves now; the previous process drains\n", p.stdout)
            check(p.returncode == 0 and m is not None and p.stderr == "",
                  "sluice upgrade -c FILE: exit 0, 'Upgraded: pid N serves now; the previous process drains'",
                  "%d %r %r" % (p.returncode, p.stdout, p.stderr))
            gen2 = int(m.group(1))
            rc = wait_old_exit(sl, 7)
            check(rc == 0, "the old process exits 0", hu.log_tail(sl, 20))
            st = os.stat("/proc/%d/exe" % gen2)
            check((st.st_dev, st.st_ino) == (second.st_dev, second.st_ino),
                  "the new process runs the replaced executable (the file now at the path)")
            c = harness.connect(web_port)
            check(harness.echo_roundtrip(c, b"cli"), "port %d is served by the new process" % web_port)
            c.close()
            check(listen_inodes(web_port) <= socket_inodes(gen2), "which holds its listening sockets")

            # A file without an admin address: nothing to ask.
            no_admin = os.path.join(d, "no-admin.yaml")
            with open(no_admin, "w") as f:
                f.write(text.replace("admin:\n  address: 127.0.0.1:%d\n" % admin, ""))
            p = harness.run_sluice_cmd(["upgrade", "-c", no_admin])
            want = ("sluice: %s has no admin address to ask; send the running sluice SIGUSR2 instead\n"
                    % no_admin)
            check(p.returncode == 1 and p.stderr == want and p.stdout == "",
                  "sluice upgrade -c FILE without an admin address: exit 1, %r" % want.strip(),
                  "%d %r %r" % (p.returncode, p.stdout, p.stderr))
            only_sluice([gen2], "and nothing changed")

            # The executable removed: the new process cannot start; the running one serves on.
            os.unlink(exe)
            os.environ["SLUICE_BIN"] = saved  # the CLI itself runs from the build
            p = harness.run_sluice_cmd(["upgrade", "-c", sl.config_path], timeout=60)
            m = re.fullmatch(r"upgrade failed, the running sluice keeps serving: pid (\d+) exited before it was "
                             r"ready\n", p.stderr)
            check(p.returncode == 1 and m is not None and p.stdout == "",
                  "executable removed: sluice upgrade exits 1, 'upgrade failed, the running sluice keeps serving: "
                  "pid N exited before it was ready'", "%d %r %r" % (p.returncode, p.stdout, p.stderr))
            only_sluice([gen2], "only pid %d runs" % gen2)
            c = harness.connect(web_port)
            check(harness.echo_roundtrip(c, b"still"), "and it serves")
            c.close()
            stop_pid(gen2, sl)
    finally:
        os.environ["SLUICE_BIN"] = saved


def test_file_changes_across_the_upgrade():
    with harness.EchoServer() as echo:
        cl = [{"name": "echo", "connect_timeout": "1s", "endpoints": [{"address": echo.address}]}]

        def lst(name, address="127.0.0.1:0"):
            return {"name": name, "address": address, "protocol": "tcp", "cluster": "echo"}

        sl = start_sluice(config([lst("kept"), lst("removed"), lst("moved")], cl, drain_timeout="5s"))
        gen1 = sl.pid
        ap = admin_port(sl)
        kept, removed, moved = sl.port("kept"), sl.port("removed"), sl.port("moved")
        holders = [harness.free_port_holder() for _ in range(3)]
        new_admin, new_moved, added = [p for _, p in holders]
        for s, _ in holders:
            s.close()
        rewrite(sl, config([lst("kept"), lst("moved", "127.0.0.1:%d" % new_moved),
                            lst("added", "127.0.0.1:%d" % added)], cl, drain_timeout="5s",
                           admin="127.0.0.1:%d" % new_admin))
        kept_sockets = listen_inodes(kept)
        status, body = post_upgrade(ap)
        gen2 = check_upgraded(status, body, gen1)
        rc = wait_old_exit(sl, 7)
        check(rc == 0, "the old process exits 0", hu.log_tail(sl, 20))
        for name, port in (("kept", kept), ("moved", new_moved), ("added", added)):
            c = harness.connect(port)
            soft_check(harness.echo_roundtrip(c, name.encode()), "listener %s served on port %d" % (name, port))
            c.close()
        soft_check(listen_inodes(kept) == kept_sockets, "the kept listener's sockets were handed over")
        soft_check(harness.is_refused(removed), "the removed listener's port %d is closed" % removed)
        soft_check(harness.is_refused(moved), "the moved listener's old port %d is closed" % moved)
        r = None
        try:
            r = admin_get(new_admin, "/ready", timeout=5)
        except OSError as e:
            info("admin on %d: %r" % (new_admin, e))
        soft_check(r is not None and r.status == 200, "the admin endpoint answers on the new address port %d"
                   % new_admin, r.describe() if r else "")
        soft_check(harness.is_refused(ap), "the old admin port %d is closed" % ap)
        stop_pid(gen2, sl)


if __name__ == "__main__":
    hu.use_default_bin()
    become_subreaper()
    import atexit
    atexit.register(kill_all_sluice)
    harness.run_cases([
        test_upgrade_under_load,
        test_slow_first_health_round,
        test_sigterm_while_the_new_process_starts,
        test_dns_cluster_while_the_dns_server_is_slow,
        test_tcp_session_stays_on_the_old_process,
        test_invalid_file_keeps_the_old_process,
        test_invalid_file_with_many_listeners,
        test_second_upgrade_while_draining,
        test_sigusr2_with_notify_socket,
        test_workers_change,
        test_drained_and_ejected_endpoints_stay_so,
        test_cli_and_replaced_executable,
        test_file_changes_across_the_upgrade,
        test_upgrade_after_a_failed_reload,
    ])

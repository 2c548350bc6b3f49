#!/usr/bin/env python3
"""Anycast announcements against a real BGP daemon (BIRD 2).

The script runs in a network namespace of its own (sluice's side, 192.0.2.1) and starts
BIRD in a second one (192.0.2.2), joined by a veth pair; the session is TCP-MD5 signed.
BIRD's import filter lowers the preference of routes carrying GRACEFUL_SHUTDOWN (65535:0)
to 0, as RFC 8326 asks of a receiver. Everything BIRD sees is read through birdc.
- announced once sluice is ready, with the exact path, next hop, MED and communities;
  withdrawn (with the logged reason) when the cluster's endpoints fail; back after the
  hold-down once they return; GET /bgp and the metrics say the same;
- SIGTERM: GRACEFUL_SHUTDOWN first while sluice still accepts, the withdrawal no earlier
  than shutdown_delay later, then the drain and a Cease NOTIFICATION;
- BIRD killed and started again: the session comes back and the prefix with it;
- BIRD stopped (SIGSTOP): sluice's hold timer expires with its NOTIFICATION; back after SIGCONT;
- a peer of the wrong AS: sluice's NOTIFICATION (bad peer AS), logged, seen by BIRD;
- a binary upgrade (SIGUSR2) while BIRD holds the route: the session's state and since-time in
  BIRD never change (no new OPEN, no NOTIFICATION), the route never leaves BIRD's table while
  the upgrade runs nor for more than a hold time after it (the new process keeps the
  keepalives going), and a SIGTERM to the new process still announces GRACEFUL_SHUTDOWN, then
  withdraws, then sends its Cease; an upgrade to a file without a bgp: block ends the session
  with a Cease (peer de-configured);
- a reload that removes the listener a prefix follows withdraws the prefix at once, with the
  reason, while the other prefix stays;
- an IPv6 prefix over the IPv4 session (MP_REACH_NLRI / MP_UNREACH_NLRI, its own next hop), a
  prefix that follows a listener, and a reload that changes bgp: (warned, kept).
"""
import ctypes
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (EchoServer, Skip, Sluice, check, check_clean_exit, connect, echo_roundtrip, info,
                     register_cleanup, reexec_in_netns_or_skip, run_cases, sh, wait_until)

SLUICE_IP = "192.0.2.1"
BIRD_IP = "192.0.2.2"
PREFIX = "198.51.100.1/32"
SLUICE_IP6 = "2001:db8:ff::1"
BIRD_IP6 = "2001:db8:ff::2"
PREFIX6 = "2001:db8:1::/48"
PASSWORD = "an-md5-key"

BIRD_CONF = """
router id 192.0.2.2;
log stderr all;
timeformat protocol iso long ms;
protocol device {{}}
filter gshut {{
  if (65535, 0) ~ bgp_community then bgp_local_pref = 0;
  accept;
}}
protocol bgp sluice {{
  local {bird_ip} as {bird_as};
  neighbor {sluice_ip} as 65001;
  passive on;
  password "{password}";
  hold time 9;
  error wait time 1, 2;
  ipv4 {{ import filter gshut; export none; }};
  ipv6 {{ import filter gshut; export none; }};
}}
"""


class PeerNamespace:
    """A network namespace of its own for a BGP daemon (BIRD_IP), reached over a veth pair from
    sluice's (SLUICE_IP)."""

    def make_namespace(self):
        # The namespace lives as long as this process does.
        self.holder = subprocess.Popen(["unshare", "-n", "--", "sleep", "600"], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        register_cleanup(self._stop_holder)
        ns = "/proc/%d/ns/net" % self.holder.pid
        ok = wait_until(lambda: os.readlink(ns) != os.readlink("/proc/self/ns/net"), 10)
        check(ok, "the peer's network namespace is up")
        sh(["ip", "link", "add", "bgp0", "type", "veth", "peer", "name", "bgp1", "netns",
            str(self.holder.pid)])
        sh(["ip", "addr", "add", SLUICE_IP + "/24", "dev", "bgp0"])
        sh(["ip", "link", "set", "bgp0", "up"])
        sh(["ip", "-6", "addr", "add", SLUICE_IP6 + "/64", "dev", "bgp0", "nodad"])
        for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", BIRD_IP + "/24", "dev", "bgp1"],
                    ["ip", "-6", "addr", "add", BIRD_IP6 + "/64", "dev", "bgp1", "nodad"],
                    ["ip", "link", "set", "bgp1", "up"]):
            sh(self.nsenter(cmd))

    def nsenter(self, cmd):
        return ["nsenter", "-t", str(self.holder.pid), "-n", "--"] + cmd

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def _stop_holder(self):
        self.kill()
        # Deleting one end deletes both now (the namespace's own cleanup is asynchronous).
        sh(["ip", "link", "del", "bgp0"], check_rc=False)
        if self.holder.poll() is None:
            self.holder.kill()
            self.holder.wait(10)


class Bird(PeerNamespace):
    """BIRD in a network namespace of its own, reached over a veth pair."""

    def __init__(self, bird_as=65000, extra_conf=""):
        if not shutil.which("bird") or not shutil.which("birdc"):
            raise Skip("bird2 is not installed (scripts/bootstrap installs it)")
        self.dir = tempfile.mkdtemp(prefix="sluice-bird-")
        register_cleanup(lambda: shutil.rmtree(self.dir, ignore_errors=True))
        self.sock = os.path.join(self.dir, "bird.ctl")
        self.conf = os.path.join(self.dir, "bird.conf")
        with open(self.conf, "w") as f:
            f.write(BIRD_CONF.format(bird_ip=BIRD_IP, sluice_ip=SLUICE_IP, bird_as=bird_as,
                                     password=PASSWORD) + extra_conf)
        self.make_namespace()
        self.proc = None
        self.start()

    def start(self):
        self.log = open(os.path.join(self.dir, "bird.log"), "a")
        self.proc = subprocess.Popen(self.nsenter(["bird", "-f", "-c", self.conf, "-s", self.sock]),
                                     stdout=self.log, stderr=self.log)
        register_cleanup(self.kill)
        ok = wait_until(lambda: self.cli("show status").returncode == 0, 15)
        check(ok, "BIRD answers on its control socket")

    def cli(self, command):
        return subprocess.run(["birdc", "-s", self.sock] + command.split(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=20)

    def route(self, prefix=PREFIX):
        """The BGP attributes of the prefix in BIRD's table ({} when absent)."""
        out = self.cli("show route all " + prefix).stdout
        if prefix not in out:
            return {}
        attrs = {"origin_line": next(l for l in out.splitlines() if l.startswith(prefix))}
        for line in out.splitlines():
            m = re.match(r"^\s+BGP\.(\w+): (.*)$", line)
            if m:
                attrs[m.group(1)] = m.group(2).strip()
        return attrs

    def protocol(self):
        return self.cli("show protocols all sluice").stdout

    def established(self):
        return "Established" in self.protocol()


def sluice_config(endpoints, remote_as=65000, connect_retry="200ms", shutdown_delay="2s", announce="",
                  listeners=""):
    eps = "\n".join("      - address: %s" % e for e in endpoints)
    return """workers: 1
admin:
  address: 127.0.0.1:0
listeners:
  - name: tcp_in
    address: 127.0.0.1:0
    protocol: tcp
    cluster: api
%s
clusters:
  - name: api
    connect_timeout: 1s
    health_check:
      type: tcp
      interval: 100ms
      jitter: 10ms
      timeout: 500ms
      unhealthy_threshold: 1
      healthy_threshold: 1
    endpoints:
%s
bgp:
  local_as: 65001
  router_id: 192.0.2.1
  hold_down: 2s
  shutdown_delay: %s
  peers:
    - address: %s
      local_address: %s
      remote_as: %d
      hold_time: 9s
      password: %s
      connect_retry: %s
  announce:
    - prefix: %s
      when: {cluster: api, min_healthy: 50%%}
      communities: ["65001:100"]
      med: 10
%s""" % (listeners, eps, shutdown_delay, BIRD_IP, SLUICE_IP, remote_as, PASSWORD, connect_retry, PREFIX, announce)


ADMIN_RE = re.compile(r"admin listening on 127\.0\.0\.1:(\d+)")


def admin_get(sl, path):
    port = int(ADMIN_RE.search(sl.wait_log(ADMIN_RE, 10)).group(1))
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        return r.read().decode()


def metric(sl, name):
    for line in admin_get(sl, "/metrics").splitlines():
        if line.startswith(name + " "):
            return line.split(" ", 1)[1]
    return None


EXPECTED = {"as_path": "65001", "next_hop": SLUICE_IP, "med": "10", "community": "(65001,100)",
            "local_pref": "100", "origin": "IGP"}


def announced_attrs(r):
    return {k: r.get(k) for k in EXPECTED}


def announced_setup():
    """BIRD, one endpoint and sluice, once BIRD has the prefix."""
    bird = Bird()
    b = EchoServer()
    sl = Sluice(sluice_config(["127.0.0.1:%d" % b.port]), log_level="info")
    check(announced_attrs(wait_until(bird.route, 30)) == EXPECTED, "announced with the exact attributes")
    return bird, b, sl


def case_follows_the_cluster():
    bird = Bird()
    b1, b2 = EchoServer(), EchoServer()
    p1, p2 = b1.port, b2.port
    sl = Sluice(sluice_config(["127.0.0.1:%d" % p1, "127.0.0.1:%d" % p2]), log_level="info")
    r = wait_until(bird.route, 30)
    check(announced_attrs(r) == EXPECTED, "BIRD has %s from sluice with the exact attributes" % PREFIX,
          repr(r) + "\n" + bird.protocol())
    check(sl.find_lines("bgp: announcing %s: cluster api has 2 of 2 endpoints usable (min 50%%)" % PREFIX),
          "the announcement is logged with its reason", sl.stderr_text()[-3000:])
    view = json.loads(admin_get(sl, "/bgp"))
    pfx = view["prefixes"][0]
    check((pfx["prefix"], pfx["announced"], pfx["usable"], pfx["total"], pfx["transitions"]) ==
          (PREFIX, True, 2, 2, 1), "GET /bgp shows the prefix announced, 2 of 2 usable", repr(pfx))
    peer = view["peers"][0]
    check((peer["address"], peer["state"], peer["md5"], peer["hold_time_seconds"]) ==
          (BIRD_IP + ":179", "established", True, 9), "GET /bgp shows the MD5-signed session established",
          repr(peer))
    check(metric(sl, 'sluice_bgp_prefix_announced{prefix="%s"}' % PREFIX) == "1", "metric: announced 1")
    check(metric(sl, 'sluice_bgp_peer_state{peer="%s:179"}' % BIRD_IP) == "6", "metric: peer state 6 (established)")

    # One endpoint down: 1 of 2 is still 50%, the prefix stays.
    b1.stop()
    ok = sl.wait_log("cluster api: endpoint 127.0.0.1:%d is unhealthy" % p1, 15)
    check(ok, "the first endpoint is seen down", sl.stderr_text()[-3000:])
    check(bird.route() != {}, "with 1 of 2 endpoints usable (50%) the prefix stays announced")
    # Both down: withdrawn, with the reason.
    b2.stop()
    gone = wait_until(lambda: bird.route() == {}, 20)
    check(gone, "BIRD no longer has the prefix once no endpoint is usable", repr(bird.route()))
    line = "bgp: withdrawing %s: cluster api has 0 of 2 endpoints usable (min 50%%)" % PREFIX
    check(sl.find_lines(line), "the withdrawal is logged with its reason: " + line, sl.stderr_text()[-3000:])
    check(metric(sl, 'sluice_bgp_prefix_announced{prefix="%s"}' % PREFIX) == "0", "metric: announced 0")

    # Back: announced again only after the hold-down.
    t_back = time.monotonic()
    b1 = EchoServer(port=p1)
    b2 = EchoServer(port=p2)
    back = wait_until(bird.route, 30)
    waited = time.monotonic() - t_back
    check(announced_attrs(back) == EXPECTED, "the prefix is back once the endpoints return", repr(back))
    check(waited >= 2.0, "not before the hold-down of 2s (%.1fs)" % waited)
    check(sl.find_lines(re.compile(r"bgp: %s is back: cluster api has [12] of 2 endpoints usable \(min 50%%\); "
                                   r"announcing after the hold-down of 2s" % re.escape(PREFIX))),
          "the hold-down is logged", sl.stderr_text()[-3000:])
    check(metric(sl, 'sluice_bgp_prefix_transitions_total{prefix="%s"}' % PREFIX) == "3",
          "metric: 3 transitions (announced, withdrawn, announced)")
    check_clean_exit(sl, sl.stop(30))
    b1.stop()
    b2.stop()


def case_sigterm_graceful_shutdown_then_withdraw():
    bird = Bird()
    b = EchoServer()
    # A delay long enough that the checks made during it cannot be late on a loaded machine.
    sl = Sluice(sluice_config(["127.0.0.1:%d" % b.port], shutdown_delay="5s"), log_level="info")
    check(announced_attrs(wait_until(bird.route, 30)) == EXPECTED, "announced before the stop")
    t0 = time.monotonic()
    sl.signal(signal.SIGTERM)
    graceful = wait_until(lambda: (lambda r: r if r.get("community") == "(65001,100) (65535,0)" else None)(bird.route()),
                          10)
    check(graceful and graceful.get("local_pref") == "0",
          "BIRD first sees GRACEFUL_SHUTDOWN (65535,0) and its filter drops the preference to 0", repr(graceful))
    # Still accepting while peers move away.
    s = connect(sl.port())
    check(echo_roundtrip(s, b"still-here"), "sluice still proxies during shutdown_delay")
    s.close()
    gone = wait_until(lambda: bird.route() == {}, 20)
    elapsed = time.monotonic() - t0
    check(gone, "then the prefix is withdrawn")
    check(elapsed >= 5.0, "no earlier than shutdown_delay (5s) after SIGTERM (%.1fs)" % elapsed)
    rc = sl.wait_exit(30)
    check_clean_exit(sl, rc)
    lines = sl.lines
    def index(pred):
        for i, l in enumerate(lines):
            if pred in l:
                return i
        return -1
    i_gs = index("bgp: announcing %s with GRACEFUL_SHUTDOWN: sluice is stopping (Terminated); "
                 "withdrawing in 5s" % PREFIX)
    i_wd = index("bgp: withdrawing %s: sluice is stopping" % PREFIX)
    i_dr = index("sluice draining: stopped accepting")
    check(0 <= i_gs < i_wd < i_dr, "logged in order: GRACEFUL_SHUTDOWN, withdrawal, drain",
          "%d %d %d\n%s" % (i_gs, i_wd, i_dr, sl.stderr_text()[-3000:]))
    if i_gs >= 0 and i_wd >= 0:
        stamp = lambda l: datetime.datetime.strptime(l.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
        gap = (stamp(lines[i_wd]) - stamp(lines[i_gs])).total_seconds()
        check(gap >= 5.0, "the withdrawal is logged shutdown_delay after GRACEFUL_SHUTDOWN (%.3fs)" % gap)
    ok = wait_until(lambda: "Administrative shutdown" in bird.protocol(), 10)
    check(ok, "BIRD received sluice's Cease (administrative shutdown)", bird.protocol())
    b.stop()


def case_daemon_restart():
    bird, b, sl = announced_setup()
    mark = len(sl.lines)
    bird.kill()
    down = sl.wait_log(re.compile(r"bgp peer %s:179: session down: .*; reconnecting in" % re.escape(BIRD_IP)), 20,
                       mark)
    check(down, "sluice logs the session going down with its reason", sl.stderr_text(mark)[-2000:])
    bird.start()
    back = wait_until(bird.route, 40)
    check(announced_attrs(back) == EXPECTED, "after BIRD restarts the session and the prefix come back", repr(back))
    view = json.loads(admin_get(sl, "/bgp"))
    check(view["peers"][0]["state"] == "established", "GET /bgp: established again")
    check(metric(sl, 'sluice_bgp_peer_established_total{peer="%s:179"}' % BIRD_IP) == "2",
          "metric: established twice")
    check_clean_exit(sl, sl.stop(30))
    b.stop()


def case_hold_timer_expiry():
    bird, b, sl = announced_setup()
    mark = len(sl.lines)
    # A peer that stops answering (but whose kernel keeps the connection open).
    bird.proc.send_signal(signal.SIGSTOP)
    try:
        line = sl.wait_log("bgp peer %s:179: session down: hold timer expired: nothing from the peer for 9s "
                           "(NOTIFICATION sent: hold timer expired); reconnecting in" % BIRD_IP, 30, mark)
        check(line, "sluice's hold timer expires after 9s of silence, with its NOTIFICATION, logged",
              sl.stderr_text(mark)[-2000:])
    finally:
        bird.proc.send_signal(signal.SIGCONT)
    back = wait_until(bird.route, 40)
    check(announced_attrs(back) == EXPECTED, "once the peer answers again the session and the prefix come back",
          repr(back) + "\n" + bird.protocol())
    check(metric(sl, 'sluice_bgp_peer_notifications_sent_total{peer="%s:179"}' % BIRD_IP) == "1",
          "metric: one NOTIFICATION sent")
    check_clean_exit(sl, sl.stop(30))
    b.stop()


def case_wrong_peer_as():
    bird = Bird(bird_as=65000)
    b = EchoServer()
    sl = Sluice(sluice_config(["127.0.0.1:%d" % b.port], remote_as=65099), log_level="info")
    line = ("bgp peer %s:179: OPEN from AS 65000, expected AS 65099 (NOTIFICATION sent: OPEN message error / "
            "bad peer AS)" % BIRD_IP)
    check(sl.wait_log(line, 20), "sluice refuses the peer's AS with its NOTIFICATION: " + line,
          sl.stderr_text()[-2000:])
    ok = wait_until(lambda: "Received: Bad peer AS" in bird.protocol(), 10)
    check(ok, "BIRD received the NOTIFICATION (bad peer AS)", bird.protocol())
    check(bird.route() == {}, "nothing is announced")
    view = json.loads(admin_get(sl, "/bgp"))
    check(view["peers"][0]["state"] != "established", "GET /bgp: not established")
    check_clean_exit(sl, sl.stop(30))
    b.stop()


def bird_session(bird):
    """(state, since) of the session in `birdc show protocols`: 'up', '2026-...'."""
    for line in bird.cli("show protocols sluice").stdout.splitlines():
        words = line.split()
        if words and words[0] == "sluice":
            # sluice BGP --- up 2026-12-04 13:41:00.123 Established
            return words[3], " ".join(words[4:6]), " ".join(words[6:])
    return None


def same_session(a, b):
    """Whether two bird_session() lines show one session: the same state and info, and since-
    times within 500 ms. BIRD keeps the since-time on its monotonic clock and shows it in real
    time converted with the time its loop last read, so one instant prints a few milliseconds
    apart from one poll to the next on a busy machine (8 ms seen). A session made again also
    withdraws the route with the old one, which RouteWatch sees on its own."""
    if a is None or b is None or a[0] != b[0] or a[2] != b[2]:
        return False
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    t = [datetime.datetime.strptime(x[1], fmt) for x in (a, b)]
    return abs((t[0] - t[1]).total_seconds()) <= 0.5


class RouteWatch:
    """Polls BIRD while something happens: every absence of the prefix and every change of the
    session's line is recorded."""

    def __init__(self, bird):
        self.bird = bird
        self.samples = 0
        self.missing = []
        self.sessions = set()
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_flag.is_set():
            r = self.bird.route()
            if announced_attrs(r) != EXPECTED:
                self.missing.append((time.monotonic(), r))
            self.sessions.add(bird_session(self.bird))
            self.samples += 1

    def stop(self):
        self.stop_flag.set()
        self.thread.join(30)


def wait_pid_exit(pid, timeout):
    """Exit code of a later generation (a child of this script once its parent exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r, status = os.waitpid(pid, os.WNOHANG)
            if r == pid:
                return os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            pass
        time.sleep(0.01)
    return None


def upgrade(sl):
    """SIGUSR2, then the new process's pid once the old one says it serves."""
    # The new process outlives its parent: it comes back to this script, to be waited for.
    libc = ctypes.CDLL(None, use_errno=True)
    check(libc.prctl(36, 1, 0, 0, 0) == 0, "this script is a child subreaper (PR_SET_CHILD_SUBREAPER)")
    mark = len(sl.lines)
    sl.signal(signal.SIGUSR2)
    served = sl.wait_log(re.compile(r"upgrade: pid (\d+) serves now; this process drains"), 60, mark)
    check(served, "the upgrade completes", sl.stderr_text(mark)[-3000:])
    new_pid = int(re.search(r"pid (\d+) serves", served).group(1))
    register_cleanup(lambda: os.kill(new_pid, signal.SIGKILL) if os.path.exists("/proc/%d" % new_pid) else None)
    return new_pid


def check_no_sanitizer_report(sl):
    rep = sl.sanitizer_report()
    check(not rep, "no sanitizer report from either process", "\n".join(rep[:40]))


def case_binary_upgrade_keeps_the_session():
    bird, b, sl = announced_setup()
    # BIRD moves the since-time as each channel of the session comes up (within milliseconds of
    # the OPEN exchange): the line to keep is the one that has stopped moving.
    seen = {"line": None, "at": 0.0}

    def settled():
        line = bird_session(bird)
        if not same_session(line, seen["line"]):
            seen.update(line=line, at=time.monotonic())
        return line if time.monotonic() - seen["at"] >= 1.0 else None
    before = wait_until(settled, 20, interval=0.05)
    check(before is not None and before[0] == "up" and before[2] == "Established",
          "BIRD's session is up and established before the upgrade", repr(before))
    watch = RouteWatch(bird)
    wait_until(lambda: watch.samples >= 3, 10)
    mark = len(sl.lines)
    new_pid = upgrade(sl)
    line = "bgp peer %s:179: after the upgrade: 1 routes kept as they were, 0 announced, 0 withdrawn" % BIRD_IP
    check(sl.wait_log(line, 20, mark), "the new process took the session over and sent nothing: " + line,
          sl.stderr_text(mark)[-3000:])
    check(sl.find_lines("bgp peer %s:179: handed over to the new process (established)" % BIRD_IP, mark),
          "the old process logs that it let go", sl.stderr_text(mark)[-3000:])
    check(wait_until(lambda: sl.proc.poll() is not None, 30), "the old process exits after its drain")
    check(sl.proc.returncode == 0, "the old process exits 0", repr(sl.proc.returncode))
    # More than a hold time (9s) with the new process alone: its keepalives keep the session.
    t_old_gone = time.monotonic()
    wait_until(lambda: time.monotonic() - t_old_gone > 12, 20, interval=0.2)
    watch.stop()
    check(watch.samples > 20, "BIRD was polled throughout (%d samples)" % watch.samples)
    check(watch.missing == [], "the route never left BIRD's table nor changed during and after the upgrade",
          repr(watch.missing[:3]))
    check(all(same_session(x, before) for x in watch.sessions),
          "BIRD's session line never changed: %r" % (before,), repr(watch.sessions))
    check(same_session(bird_session(bird), before),
          "BIRD's session since-time is still the one from before the upgrade")
    view = json.loads(admin_get(sl, "/bgp"))
    peer = view["peers"][0]
    check((peer["state"], peer["notifications_sent"], peer["notifications_received"]) == ("established", 0, 0),
          "GET /bgp (the new process): established, no NOTIFICATION either way", repr(peer))
    check(metric(sl, 'sluice_bgp_peer_established_total{peer="%s:179"}' % BIRD_IP) == "1",
          "metric (the new process): established once, carried over")

    # The new process stops as the old one would have: GRACEFUL_SHUTDOWN, withdrawal, Cease.
    mark = len(sl.lines)
    os.kill(new_pid, signal.SIGTERM)
    graceful = wait_until(lambda: (lambda r: r if r.get("community") == "(65001,100) (65535,0)" else None)(bird.route()),
                          10)
    check(graceful and graceful.get("local_pref") == "0",
          "after SIGTERM BIRD sees GRACEFUL_SHUTDOWN from the new process", repr(graceful))
    check(wait_until(lambda: bird.route() == {}, 20), "then the prefix is withdrawn")
    rc = wait_pid_exit(new_pid, 30)
    check(rc == 0, "the new process exits 0", repr(rc))
    i_gs = sl.find_lines("bgp: announcing %s with GRACEFUL_SHUTDOWN: sluice is stopping (Terminated); "
                         "withdrawing in 2s" % PREFIX, mark)
    i_wd = sl.find_lines("bgp: withdrawing %s: sluice is stopping" % PREFIX, mark)
    check(i_gs and i_wd, "the new process logs GRACEFUL_SHUTDOWN and the withdrawal", sl.stderr_text(mark)[-3000:])
    ok = wait_until(lambda: "Administrative shutdown" in bird.protocol(), 10)
    check(ok, "BIRD received the new process's Cease (administrative shutdown)", bird.protocol())
    check_no_sanitizer_report(sl)
    b.stop()


def case_reload_removes_a_listener():
    bird = Bird()
    b = EchoServer()
    extra = """  - name: tcp_b
    address: 127.0.0.1:0
    protocol: tcp
    cluster: api"""
    announce = """    - prefix: 198.51.100.3/32
      when: {listener: tcp_b}
"""
    sl = Sluice(sluice_config(["127.0.0.1:%d" % b.port], announce=announce, listeners=extra), log_level="info")
    check(wait_until(lambda: bird.route("198.51.100.3/32"), 30).get("as_path") == "65001",
          "BIRD has the prefix that follows listener tcp_b")
    check(announced_attrs(wait_until(bird.route, 10)) == EXPECTED, "and the cluster's prefix")
    with open(sl.config_path) as f:
        text = f.read()
    with open(sl.config_path, "w") as f:
        # (the file's bgp: block drops the prefix too, as `sluice check` asks; the running
        # speaker keeps its prefixes until a restart or an upgrade)
        f.write(text.replace(extra + "\n", "").replace(announce, ""))
    mark = len(sl.lines)
    req = urllib.request.Request("http://127.0.0.1:%d/reload" % int(ADMIN_RE.search(sl.wait_log(ADMIN_RE, 10)).group(1)),
                                 method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        reply = json.loads(r.read().decode())
    check((reply.get("result"), reply.get("warnings")) ==
          ("applied", ["warning: bgp: the BGP speaker's settings change only with a restart or a binary "
                        "upgrade; they stay as they are"]),
          "the reload without tcp_b applies (the running speaker stays)", repr(reply))
    # Health does not change here: nothing but the reload itself can withdraw the prefix.
    gone = wait_until(lambda: bird.route("198.51.100.3/32") == {}, 10)
    check(gone, "BIRD loses the prefix of the removed listener right after the reload")
    line = "bgp: withdrawing 198.51.100.3/32: listener tcp_b is not accepting (not in the configuration)"
    check(sl.find_lines(line, mark), "logged with the reason: " + line, sl.stderr_text(mark)[-3000:])
    check(announced_attrs(bird.route()) == EXPECTED, "the cluster's prefix stays")
    check_clean_exit(sl, sl.stop(30))
    b.stop()


def case_upgrade_to_a_file_without_bgp():
    bird, b, sl = announced_setup()
    with open(sl.config_path) as f:
        text = f.read()
    with open(sl.config_path, "w") as f:
        f.write(text[:text.index("bgp:")])
    mark = len(sl.lines)
    new_pid = upgrade(sl)
    line = ("bgp peer %s:179: no longer configured: session closed (NOTIFICATION sent: cease / peer "
            "de-configured)" % BIRD_IP)
    check(sl.wait_log(line, 20, mark), "the new process, without a bgp: block, ends the session: " + line,
          sl.stderr_text(mark)[-3000:])
    ok = wait_until(lambda: "Received: Peer de-configured" in bird.protocol(), 10)
    check(ok, "BIRD received the Cease (peer de-configured)", bird.protocol())
    check(wait_until(lambda: bird.route() == {}, 10), "and dropped the route with the session")
    check(wait_until(lambda: sl.proc.poll() is not None, 30) and sl.proc.returncode == 0, "the old process exits 0")
    os.kill(new_pid, signal.SIGTERM)
    rc = wait_pid_exit(new_pid, 30)
    check(rc == 0, "the new process exits 0", repr(rc))
    check_no_sanitizer_report(sl)
    b.stop()


def case_ipv6_listener_and_reload():
    bird = Bird()
    b = EchoServer()
    announce = """    - prefix: %s
      when: {cluster: api}
      next_hop: %s
      communities: [no_export]
    - prefix: 198.51.100.2/32
      when: {listener: tcp_in}
""" % (PREFIX6, SLUICE_IP6)
    sl = Sluice(sluice_config(["127.0.0.1:%d" % b.port], announce=announce), log_level="info")
    r6 = wait_until(lambda: bird.route(PREFIX6), 30)
    check({k: r6.get(k) for k in ("as_path", "next_hop", "community", "origin")} ==
          {"as_path": "65001", "next_hop": SLUICE_IP6, "community": "(65535,65281)", "origin": "IGP"},
          "BIRD has %s over the IPv4 session (MP_REACH_NLRI) with its IPv6 next hop" % PREFIX6,
          repr(r6) + "\n" + bird.protocol())
    check(announced_attrs(wait_until(bird.route, 10)) == EXPECTED, "and the IPv4 prefix beside it")
    check(wait_until(lambda: bird.route("198.51.100.2/32"), 10).get("as_path") == "65001",
          "and the prefix that follows the listener")
    check(sl.find_lines("bgp: announcing 198.51.100.2/32: listener tcp_in is accepting"),
          "logged with its reason", sl.stderr_text()[-3000:])

    # The bgp: block is read at startup: a reload keeps the running speaker and says so.
    with open(sl.config_path) as f:
        text = f.read()
    with open(sl.config_path, "w") as f:
        f.write(text.replace("shutdown_delay: 2s", "shutdown_delay: 3s"))
    req = urllib.request.Request("http://127.0.0.1:%d/reload" % int(ADMIN_RE.search(sl.wait_log(ADMIN_RE, 10)).group(1)),
                                 method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        reply = json.loads(r.read().decode())
    check(reply.get("warnings") == ["warning: bgp: the BGP speaker's settings change only with a restart or a binary "
                                    "upgrade; they stay as they are"],
          "a reload that changes bgp: warns and keeps the running speaker", repr(reply))

    b.stop()
    gone = wait_until(lambda: bird.route(PREFIX6) == {} and bird.route() == {}, 20)
    check(gone, "both cluster prefixes are withdrawn (MP_UNREACH_NLRI for the IPv6 one) when the cluster fails")
    check(bird.route("198.51.100.2/32") != {}, "the listener's prefix stays: sluice still accepts on tcp_in")
    check(sl.find_lines("bgp: withdrawing %s: cluster api has 0 of 1 endpoints usable (min 1)" % PREFIX6),
          "the IPv6 withdrawal is logged with its reason", sl.stderr_text()[-3000:])
    check_clean_exit(sl, sl.stop(30))


if __name__ == "__main__":
    reexec_in_netns_or_skip()
    run_cases([case_follows_the_cluster, case_sigterm_graceful_shutdown_then_withdraw, case_daemon_restart,
               case_hold_timer_expiry, case_wrong_peer_as, case_ipv6_listener_and_reload,
               case_reload_removes_a_listener, case_binary_upgrade_keeps_the_session,
               case_upgrade_to_a_file_without_bgp])

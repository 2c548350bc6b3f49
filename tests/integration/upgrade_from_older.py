#!/usr/bin/env python3
"""A binary upgrade from an older sluice to this one (scripts/upgrade-from-previous builds the
older one and runs this; not part of the CTest suite, which has one binary).

SLUICE_OLD_BIN: the older binary, started first; SLUICE_BIN: the binary under test, put at the
same path before the upgrade (as a package update does). An HTTP listener under keep-alive and
new-connection load, a UDP listener and a STUN listener with an alternate address and STUN
over TCP:

- POST /upgrade answers 200 with the new pid, which runs the file now at the path;
- no request fails, nothing is reset; the old process exits 0;
- the HTTP listening sockets and the UDP sockets of udp_in and stun_in are the same (inodes),
  held by the new pid; the UDP listener and all four STUN addresses answer, and so does STUN
  over TCP (an older sender may not hand over the alternate-address and TCP sockets: the new
  process then binds its own beside them, which is why the alternate port is a fixed one).
"""

import os
import shutil
import socket
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info, wait_until  # noqa: E402
from http_backend import BackendProcess  # noqa: E402
import http_util as hu  # noqa: E402
import test_upgrade as tu  # noqa: E402
import test_upgrade_udp as tuu  # noqa: E402
import udp_util as uu  # noqa: E402


def free_alternate_port():
    """A UDP port free on 127.0.0.1 and 127.0.0.2 (a fixed alternate port: a version-1 sender
    does not say which port it was given for `:0`, so the new process would pick another)."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
            a.bind(("127.0.0.2", 0))
            port = a.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                    b.bind(("127.0.0.1", port))
                    return port
            except OSError:
                continue
    raise harness.CheckFailed_with("no UDP port free on both 127.0.0.1 and 127.0.0.2", "")


def test_upgrade_from_the_older_binary():
    old_bin = os.environ.get("SLUICE_OLD_BIN", "")
    if not os.access(old_bin, os.X_OK):
        raise harness.Skip("SLUICE_OLD_BIN is not an executable file: %r" % old_bin)
    new_bin = harness.sluice_bin()
    d = tempfile.mkdtemp(prefix="sluice-upgrade-older-")
    harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    exe = os.path.join(d, "sluice")
    shutil.copy2(old_bin, exe)
    os.environ["SLUICE_BIN"] = exe
    try:
        backend = BackendProcess("b1")
        echo = uu.UdpEcho(prefix=b"echo:")
        listeners = [hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}]),
                     {"name": "udp_in", "address": "127.0.0.1:0", "protocol": "udp", "cluster": "echo",
                      "udp": {"idle_timeout": "1s"}},
                     {"name": "stun_in", "address": "127.0.0.1:0", "protocol": "stun",
                      "stun": {"alternate_address": "127.0.0.2:%d" % free_alternate_port(), "tcp": True, "rate_limit": 10000,
                               "rate_burst": 10000}}]
        clusters = [hu.cluster("app", [backend.address]), {"name": "echo", "endpoints": [{"address": echo.address}]}]
        sl = tu.start_sluice(tu.config(listeners, clusters, workers=2, drain_timeout="5s"))
        gen1 = sl.pid
        ap = tu.admin_port(sl)
        web, udp_port = sl.port("web"), sl.port("udp_in")
        m = tuu.STUN_ALT_RE.search(sl.wait_log(tuu.STUN_ALT_RE, 5) or "")
        check(m is not None, "the stun listener logs its address and alternate address", hu.log_tail(sl, 20))
        stun_port, alt_port = int(m.group(1)), int(m.group(2))
        web_before = tu.listen_inodes(web)
        udp_before = tuu.udp_inodes("127.0.0.1", udp_port)
        stun_before = tuu.udp_inodes("127.0.0.1", stun_port)

        load = tu.Load(web)
        load.start()
        stun_targets = [("127.0.0.1", stun_port), ("127.0.0.1", alt_port), ("127.0.0.2", stun_port),
                        ("127.0.0.2", alt_port)]
        askers = [tuu.Asker("udp", [("127.0.0.1", udp_port)], tuu.echo_request,
                            lambda data, p: data == b"echo:" + p),
                  tuu.Asker("stun", stun_targets, tuu.stun_request, tuu.is_binding_success)]
        check(wait_until(lambda: load.each_at_least([0] * 6, 20) and all(a.ok >= 20 for a in askers), 30),
              "load on the older binary: every HTTP, UDP and STUN client has 20 answers")

        # A package update: a new file at the same path.
        shutil.copy2(new_bin, exe + ".new")
        os.replace(exe + ".new", exe)
        replaced = os.stat(exe)
        status, body = tu.post_upgrade(ap)
        gen2 = tu.check_upgraded(status, body, gen1)
        st = os.stat("/proc/%d/exe" % gen2)
        check((st.st_dev, st.st_ino) == (replaced.st_dev, replaced.st_ino),
              "pid %d runs the binary under test (the file now at the path)" % gen2)
        rc = tu.wait_old_exit(sl, 10)
        check(rc == 0, "the older process exits 0", "rc %r\n%s" % (rc, hu.log_tail(sl, 40)))
        at_exit = list(load.ok)
        asked = [a.ok for a in askers]
        check(wait_until(lambda: load.each_at_least(at_exit, 20) and
                         all(a.ok >= n + 20 for a, n in zip(askers, asked)), 30),
              "every client has 20 more answers from the new process")
        load.stop()
        for a in askers:
            a.stop()
        check(load.failures == [] and load.resets == 0, "no HTTP request failed, nothing was reset (%d answered)"
              % sum(load.ok), "\n".join(load.failures[:20]))
        check(all(not a.unanswered for a in askers), "every UDP and STUN request was answered",
              repr([a.unanswered[:3] for a in askers]))
        info("UDP and STUN tries without an answer: %r" % [a.retries for a in askers])
        check(tuu.stun_over_tcp(stun_port), "STUN over TCP answers")
        mine = tu.socket_inodes(gen2)
        check(tu.listen_inodes(web) == web_before and web_before <= mine,
              "the HTTP listening sockets are the same, held by pid %d" % gen2)
        check(tuu.udp_inodes("127.0.0.1", udp_port) == udp_before and udp_before <= mine,
              "the UDP sockets of udp_in are the same, held by pid %d" % gen2)
        check(tuu.udp_inodes("127.0.0.1", stun_port) == stun_before and stun_before <= mine,
              "the UDP sockets of stun_in's address are the same, held by pid %d" % gen2)
        tu.stop_pid(gen2, sl)
    finally:
        os.environ["SLUICE_BIN"] = new_bin


if __name__ == "__main__":
    hu.use_default_bin()
    tu.become_subreaper()
    import atexit
    atexit.register(tu.kill_all_sluice)
    harness.run_cases([test_upgrade_from_the_older_binary])

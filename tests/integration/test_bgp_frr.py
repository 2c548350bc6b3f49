#!/usr/bin/env python3
"""Anycast announcements against a second BGP daemon: FRR's bgpd (with zebra), started directly
with a configuration file in a temporary directory, in a network namespace of its own
(192.0.2.2) joined to sluice's (192.0.2.1) by a veth pair; the session is TCP-MD5 signed.
Everything bgpd sees is read back as JSON through vtysh:
- `show bgp ipv4 unicast json`: the prefix once sluice is ready, valid and best, from sluice's
  AS, with its next hop, MED and origin; `show bgp ipv4 unicast PREFIX json`: the exact
  AS path, MED, origin, next hop and communities (one regular, one well-known);
- the cluster's endpoints fail: the prefix leaves bgpd's table;
- SIGTERM: bgpd sees the GRACEFUL_SHUTDOWN community first, then the withdrawal, then
  sluice's Cease (administrative shutdown).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (EchoServer, Skip, Sluice, check, check_clean_exit, register_cleanup,  # noqa: E402
                     reexec_in_netns_or_skip, run_cases, wait_until)
from test_bgp import BIRD_IP, PASSWORD, PREFIX, SLUICE_IP, PeerNamespace, sluice_config  # noqa: E402

FRR_DIR = "/usr/lib/frr"
PEER_IP = BIRD_IP

BGPD_CONF = """frr defaults traditional
hostname sluice-test-frr
log file {dir}/bgpd.log informational
!
router bgp 65000
 bgp router-id {peer_ip}
 no bgp ebgp-requires-policy
 neighbor {sluice_ip} remote-as 65001
 neighbor {sluice_ip} password {password}
 neighbor {sluice_ip} passive
 neighbor {sluice_ip} timers 3 9
 address-family ipv4 unicast
  neighbor {sluice_ip} activate
 exit-address-family
!
"""


class Frr(PeerNamespace):
    """zebra and bgpd in a network namespace of its own, as root, their sockets in a temp dir."""

    def __init__(self):
        for daemon in ("zebra", "bgpd"):
            if not os.access(os.path.join(FRR_DIR, daemon), os.X_OK):
                raise Skip("frr is not installed (scripts/bootstrap installs it)")
        if not shutil.which("vtysh"):
            raise Skip("frr's vtysh is not installed (scripts/bootstrap installs it)")
        self.dir = tempfile.mkdtemp(prefix="sluice-frr-")
        register_cleanup(lambda: shutil.rmtree(self.dir, ignore_errors=True))
        with open(os.path.join(self.dir, "bgpd.conf"), "w") as f:
            f.write(BGPD_CONF.format(dir=self.dir, peer_ip=PEER_IP, sluice_ip=SLUICE_IP, password=PASSWORD))
        with open(os.path.join(self.dir, "zebra.conf"), "w") as f:
            f.write("hostname sluice-test-frr\nlog file %s/zebra.log informational\n" % self.dir)
        self.make_namespace()
        self.procs = []
        self.proc = None
        zserv = os.path.join(self.dir, "zserv.api")
        # As root (in the package's vty group, which the daemons insist on), no TCP vty (-P 0),
        # the sockets and pid files in the dir.
        common = ["-u", "root", "-g", "frrvty", "-P", "0", "--vty_socket", self.dir, "-z", zserv]
        self.log = open(os.path.join(self.dir, "daemons.log"), "a")
        for daemon, extra in (("zebra", []), ("bgpd", ["-l", PEER_IP])):
            args = [os.path.join(FRR_DIR, daemon), "-f", os.path.join(self.dir, daemon + ".conf"),
                    "-i", os.path.join(self.dir, daemon + ".pid")] + common + extra
            p = subprocess.Popen(self.nsenter(args), stdout=self.log, stderr=self.log)
            self.procs.append(p)
            register_cleanup(lambda p=p: self._kill(p))
            ok = wait_until(lambda d=daemon: self.vtysh(d, "show version").returncode == 0, 20)
            check(ok, "FRR's %s answers on its vty socket" % daemon, self.logs())

    @staticmethod
    def _kill(p):
        if p.poll() is None:
            p.kill()
            p.wait(10)

    def kill(self):
        for p in getattr(self, "procs", []):
            self._kill(p)

    def logs(self):
        out = ""
        for name in ("daemons.log", "bgpd.log", "zebra.log"):
            path = os.path.join(self.dir, name)
            if os.path.exists(path):
                with open(path) as f:
                    out += f.read()[-1500:]
        return out

    def vtysh(self, daemon, command):
        return subprocess.run(["vtysh", "--vty_socket", self.dir, "-d", daemon, "-c", command],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=20)

    def json(self, command):
        r = self.vtysh("bgpd", command)
        try:
            return json.loads(r.stdout)
        except ValueError:
            return {"unparsed": r.stdout}

    def table(self):
        """The prefixes of bgpd's IPv4 unicast table, each with its paths."""
        return self.json("show bgp ipv4 unicast json").get("routes", {})

    def path(self):
        """The one path bgpd has for PREFIX ({} when none)."""
        paths = self.json("show bgp ipv4 unicast %s json" % PREFIX).get("paths", [])
        return paths[0] if len(paths) == 1 else {}

    def neighbor(self):
        return self.json("show bgp neighbors %s json" % SLUICE_IP).get(SLUICE_IP, {})


def summary(p):
    """What a path of `show bgp ipv4 unicast PREFIX json` says of sluice's announcement."""
    return {
        "aspath": p.get("aspath", {}).get("string"),
        "origin": p.get("origin"),
        "med": p.get("metric"),
        "community": p.get("community", {}).get("string"),
        "communities": sorted(p.get("community", {}).get("list", [])),
        "nexthop": [n.get("ip") for n in p.get("nexthops", [])],
        "valid": p.get("valid"),
        "best": p.get("bestpath", {}).get("overall"),
        "peer": p.get("peer", {}).get("peerId"),
    }


EXPECTED = {"aspath": "65001", "origin": "IGP", "med": 10, "community": "65001:100 no-export",
            "communities": ["65001:100", "noExport"],
            "nexthop": [SLUICE_IP], "valid": True, "best": True, "peer": SLUICE_IP}


def config(endpoints):
    text = sluice_config(endpoints, shutdown_delay="3s")
    return text.replace('communities: ["65001:100"]', 'communities: ["65001:100", no_export]')


def case_announce_withdraw_and_stop():
    frr = Frr()
    b = EchoServer()
    sl = Sluice(config(["127.0.0.1:%d" % b.port]), log_level="info")
    # (valid once zebra has resolved the next hop over the connected network, then best)
    routes = wait_until(lambda: (lambda r: r if r and r[0].get("valid") and r[0].get("bestpath") else None)(frr.table().get(PREFIX)), 30)
    check(routes is not None and len(routes) == 1, "bgpd's table has %s, one valid and best path" % PREFIX,
          repr(frr.table()) + "\n" + frr.logs())
    if routes:
        r = routes[0]
        got = {k: r.get(k) for k in ("valid", "bestpath", "pathFrom", "path", "origin", "metric")}
        got["nexthops"] = [n.get("ip") for n in r.get("nexthops", [])]
        check(got == {"valid": True, "bestpath": True, "pathFrom": "external", "path": "65001", "origin": "IGP",
                      "metric": 10, "nexthops": [SLUICE_IP]},
              "show bgp ipv4 unicast json: valid, best, external, AS path 65001, IGP, MED 10, next hop %s" % SLUICE_IP,
              json.dumps(r))
    p = summary(frr.path())
    check(p == EXPECTED, "show bgp ipv4 unicast %s json: the exact attributes and communities" % PREFIX, repr(p))
    n = frr.neighbor()
    check((n.get("bgpState"), n.get("remoteAs"), n.get("bgpTimerHoldTimeMsecs")) == ("Established", 65001, 9000),
          "bgpd's neighbor: established with AS 65001, hold time 9s",
          repr({k: n.get(k) for k in ("bgpState", "remoteAs", "bgpTimerHoldTimeMsecs")}))

    # The cluster's only endpoint fails: the prefix leaves bgpd's table.
    b.stop()
    check(wait_until(lambda: PREFIX not in frr.table(), 20), "bgpd no longer has the prefix once the cluster fails")
    b = EchoServer(port=b.port)
    check(wait_until(lambda: summary(frr.path()) == EXPECTED, 30), "back after the hold-down, the same attributes")

    # SIGTERM: GRACEFUL_SHUTDOWN first, then the withdrawal, then the Cease.
    sl.signal(signal.SIGTERM)
    graceful = wait_until(lambda: (lambda p: p if p.get("communities") == ["65001:100", "gracefulShutdown", "noExport"]
                                   else None)(summary(frr.path())), 10)
    check(graceful is not None, "bgpd first sees the GRACEFUL_SHUTDOWN community", repr(summary(frr.path())))
    check(wait_until(lambda: PREFIX not in frr.table(), 20), "then the prefix is withdrawn")
    check_clean_exit(sl, sl.wait_exit(30))
    n = wait_until(lambda: (lambda n: n if n.get("lastNotificationReason") else None)(frr.neighbor()), 10)
    check(n is not None and n.get("lastNotificationReason") == "Cease/Administrative Shutdown",
          "bgpd received sluice's Cease (administrative shutdown)", repr(n and n.get("lastNotificationReason")))
    b.stop()


if __name__ == "__main__":
    reexec_in_netns_or_skip()
    run_cases([case_announce_withdraw_and_stop])

#!/usr/bin/env python3
"""RFC 5780 NAT behaviour discovery through real NATs: `sluice probe stun://` in a client
network namespace behind a NAT namespace (nftables rules), against sluice's STUN listener
with an alternate address on the "public" side (192.0.2.10 and 192.0.2.11). The probe must
report exactly what each NAT does:

  masquerade               endpoint-independent mapping, address-and-port-dependent filtering
  masquerade fully-random  address-and-port-dependent mapping (a new port per destination)
  masquerade + dnat        endpoint-independent mapping and filtering (a full-cone NAT)
  masquerade + dnat from the IPs the client sent to (a dynamic set)
                           endpoint-independent mapping, address-dependent filtering

    public ns (this script)        nat ns                        client ns
    pub0 192.0.2.10, .11  ---  wan0 192.0.2.1 | lan0 10.0.1.1  ---  cl0 10.0.1.2
    sluice                                                          sluice probe

The public side has no route to 10.0.1.0/24: nothing reaches the client but through the NAT.
Needs root (network namespaces, veth, nftables); skipped, saying why, where namespaces cannot
be made."""

import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import http_util as hu  # noqa: E402
from harness import check  # noqa: E402

LISTEN_RE = re.compile(r"listener stun_in listening on 192\.0\.2\.10:(\d+) "
                       r"\(stun, alternate address 192\.0\.2\.11:(\d+)\)")
TIMEOUT = "4s"  # what a filtering test waits for an answer that a filtering NAT never lets in


class Namespace:
    """A network namespace held by a sleeping process (no name in /run/netns)."""

    def __init__(self):
        mine = os.readlink("/proc/self/ns/net")
        self.proc = subprocess.Popen(["unshare", "-n", "--", "sleep", "600"],
                                     preexec_fn=harness.die_with_parent)
        harness.register_cleanup(self.close)
        path = "/proc/%d/ns/net" % self.proc.pid

        def entered():
            try:
                return os.readlink(path) != mine
            except OSError:
                return False

        if not harness.wait_until(entered, 10):
            raise RuntimeError("unshare -n did not make a namespace")
        self.pid = self.proc.pid
        self.run(["ip", "link", "set", "lo", "up"])

    def cmd(self, argv):
        return ["nsenter", "-t", str(self.pid), "-n", "--"] + argv

    def run(self, argv):
        return harness.sh(self.cmd(argv))

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def build_nat(ruleset):
    """The three namespaces and the NAT's nftables `ruleset`; returns the client's."""
    nat, client = Namespace(), Namespace()
    harness.sh(["ip", "link", "add", "pub0", "type", "veth", "peer", "name", "wan0", "netns",
                str(nat.pid)])
    harness.register_cleanup(lambda: harness.sh(["ip", "link", "del", "pub0"], check_rc=False))
    for ip in ("192.0.2.10/24", "192.0.2.11/24"):
        harness.sh(["ip", "addr", "add", ip, "dev", "pub0"])
    harness.sh(["ip", "link", "set", "pub0", "up"])
    nat.run(["ip", "addr", "add", "192.0.2.1/24", "dev", "wan0"])
    nat.run(["ip", "link", "set", "wan0", "up"])
    nat.run(["ip", "link", "add", "lan0", "type", "veth", "peer", "name", "cl0", "netns",
             str(client.pid)])
    nat.run(["ip", "addr", "add", "10.0.1.1/24", "dev", "lan0"])
    nat.run(["ip", "link", "set", "lan0", "up"])
    nat.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    client.run(["ip", "addr", "add", "10.0.1.2/24", "dev", "cl0"])
    client.run(["ip", "link", "set", "cl0", "up"])
    client.run(["ip", "route", "add", "default", "via", "10.0.1.1"])
    p = subprocess.run(nat.cmd(["nft", "-f", "-"]), input=ruleset, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    if p.returncode != 0:
        raise RuntimeError("nft -f failed: %s" % p.stderr)
    # Every end of both links up (a veth's carrier follows its peer's) before sluice is asked.
    ends = [(harness.sh, "pub0"), (nat.run, "wan0"), (nat.run, "lan0"), (client.run, "cl0")]

    def up():
        return all(" state UP " in run(["ip", "-o", "link", "show", "dev", dev]).stdout
                   for run, dev in ends)

    if not harness.wait_until(up, 15, interval=0.05):
        raise RuntimeError("the veth links did not come up")
    return client


MASQUERADE = """
table ip nat {
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan0" masquerade%s
  }%s
}
"""
FULL_CONE_DNAT = """
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "wan0" udp dport 1024-65535 dnat to 10.0.1.2
  }"""


# Address-dependent filtering: what the client sent to, by destination IP and client port, is
# remembered before the NAT rewrites the port (forward runs before postrouting), and an
# inbound datagram from a remembered IP to that port (masquerade keeps ports here) is let in.
ADDRESS_DEPENDENT = """
table ip nat {
  set contacted {
    type ipv4_addr . inet_service
    flags dynamic, timeout
    timeout 60s
  }
  chain remember {
    type filter hook forward priority filter; policy accept;
    oifname "wan0" meta l4proto udp update @contacted { ip daddr . udp sport }
  }
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "wan0" meta l4proto udp ip saddr . udp dport @contacted dnat to 10.0.1.2
  }
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan0" masquerade
  }
}
"""


def start_stun():
    cfg = harness.to_yaml(hu._quote({
        "workers": 2, "log_level": "debug", "drain_timeout": "2s",
        "listeners": [{"name": "stun_in", "address": "192.0.2.10:0", "protocol": "stun",
                       "stun": {"alternate_address": "192.0.2.11:0", "rate_limit": 0}}]})) + "\n"
    sl = harness.Sluice(cfg)
    line = sl.wait_log(LISTEN_RE, 10)
    if not line:
        raise harness.CheckFailed_with("no 'listening on ... alternate address' line", sl.stderr_text())
    m = LISTEN_RE.search(line)
    return sl, int(m.group(1)), int(m.group(2))


def probe(client, port, json_out=True):
    argv = [harness.sluice_bin(), "probe", "stun://192.0.2.10:%d" % port, "--timeout", TIMEOUT]
    if json_out:
        argv.append("--json")
    return subprocess.run(client.cmd(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=60, preexec_fn=harness.die_with_parent)


def run_probe(client, port):
    r = probe(client, port)
    check(r.returncode == 0, "the probe exits 0 (%d)" % r.returncode, r.stdout + r.stderr)
    return json.loads(r.stdout)


def tests_by_name(nat):
    return {t["test"]: t for t in nat["tests"]}


def mapped_ip(t):
    return t["mapped"].rsplit(":", 1)[0] if t["mapped"] else None


def check_common(nat, p1, p2):
    """What every NAT here shares: OTHER-ADDRESS, the NAT's public IP as the mapped one, and
    each answer from the address its test asked for."""
    t = tests_by_name(nat)
    check(nat["other_address"] == "192.0.2.11:%d" % p2 and nat["behind_nat"] is True,
          "the server's OTHER-ADDRESS is its second IP and port; the client is behind a NAT",
          json.dumps(nat))
    check(all(mapped_ip(x) == "192.0.2.1" for x in t.values() if x["mapped"]),
          "every mapped address is the NAT's public IP", json.dumps(nat))
    check(t["mapping I"]["answer_from"] == "192.0.2.10:%d" % p1 and
          t["filtering I"]["answer_from"] == "192.0.2.10:%d" % p1,
          "test I answered from the listener's address", json.dumps(nat))


def case_masquerade():
    client = build_nat(MASQUERADE % ("", ""))
    sl, p1, p2 = start_stun()
    nat = run_probe(client, p1)["nat"]
    t = tests_by_name(nat)
    check(nat["mapping"] == "endpoint-independent",
          "masquerade keeps one mapping for every destination", json.dumps(nat))
    check(nat["filtering"] == "address-and-port-dependent",
          "masquerade lets in only answers from where the client sent", json.dumps(nat))
    check_common(nat, p1, p2)
    check(t["mapping I"]["mapped"] == t["mapping II"]["mapped"] == t["mapping III"]["mapped"],
          "the same mapped address towards all three server addresses", json.dumps(nat))
    check(t["mapping II"]["answer_from"] == "192.0.2.11:%d" % p1 and
          t["mapping III"]["answer_from"] == "192.0.2.11:%d" % p2,
          "tests II and III answered by the other IP, then the other IP and port", json.dumps(nat))
    check(t["filtering II"]["answer_from"] is None and
          t["filtering II"]["result"].startswith("no answer from 192.0.2.10:%d within 4000 ms" % p1) and
          t["filtering III"]["answer_from"] is None,
          "no answer from another IP nor from another port came through", json.dumps(nat))
    # The text form says the same in words.
    r = probe(client, p1, json_out=False)
    lines = r.stdout.splitlines()
    m = re.search(r"^  test mapping I: to 192\.0\.2\.10:%d: answer from 192\.0\.2\.10:%d, "
                  r"mapped (192\.0\.2\.1:\d+)$" % (p1, p1), r.stdout, re.M)
    mapped = m.group(1) if m else "?"
    want = "  nat mapping: endpoint-independent (the same mapped address %s towards the server " \
           "and towards its other IP)" % mapped
    check(r.returncode == 0 and want in lines, "the text names the mapping behaviour", r.stdout)
    want = "  nat filtering: address-and-port-dependent (no answer from the server's other IP " \
           "and port 192.0.2.11:%d nor from its other port 192.0.2.10:%d)" % (p2, p2)
    check(want in lines, "the text names the filtering behaviour", r.stdout)
    sl.stop()


def case_masquerade_fully_random():
    client = build_nat(MASQUERADE % (" fully-random", ""))
    sl, p1, p2 = start_stun()
    nat = run_probe(client, p1)["nat"]
    t = tests_by_name(nat)
    ports = [t[n]["mapped"] for n in ("mapping I", "mapping II", "mapping III")]
    check(nat["mapping"] == "address-and-port-dependent" and len(set(ports)) == 3,
          "fully-random: a new mapped port for each destination", json.dumps(nat))
    check(nat["filtering"] == "address-and-port-dependent", "and filtering by address and port",
          json.dumps(nat))
    check_common(nat, p1, p2)
    sl.stop()


def case_full_cone():
    client = build_nat(MASQUERADE % ("", FULL_CONE_DNAT))
    sl, p1, p2 = start_stun()
    nat = run_probe(client, p1)["nat"]
    t = tests_by_name(nat)
    check(nat["mapping"] == "endpoint-independent", "masquerade keeps one mapping",
          json.dumps(nat))
    check(nat["filtering"] == "endpoint-independent" and
          t["filtering II"]["answer_from"] == "192.0.2.11:%d" % p2 and
          t["filtering III"]["answer_from"] == "192.0.2.10:%d" % p2,
          "the dnat rule lets answers from any address in", json.dumps(nat))
    check_common(nat, p1, p2)
    sl.stop()


def case_address_dependent_filtering():
    client = build_nat(ADDRESS_DEPENDENT)
    sl, p1, p2 = start_stun()
    nat = run_probe(client, p1)["nat"]
    t = tests_by_name(nat)
    check(nat["mapping"] == "endpoint-independent", "masquerade keeps one mapping", json.dumps(nat))
    check(nat["filtering"] == "address-dependent" and t["filtering II"]["answer_from"] is None and
          t["filtering III"]["answer_from"] == "192.0.2.10:%d" % p2,
          "only answers from an IP the client sent to come in: from the other port, not the other "
          "IP", json.dumps(nat))
    check_common(nat, p1, p2)
    sl.stop()


if __name__ == "__main__":
    harness.reexec_in_netns_or_skip()
    harness.run_cases([case_masquerade, case_masquerade_fully_random, case_full_cone,
                       case_address_dependent_filtering])

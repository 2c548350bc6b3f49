#!/usr/bin/env python3
"""TCP_INFO as sluice reports it, on a lossy path: retransmissions made by sluice's own
sockets show up in /connections (total_retransmits) and in the access log
(upstream_tcp.retransmits).

Runs in its own network namespace (re-executes itself under `unshare -n`; skipped when
that is not permitted) so that an nftables rule can drop 10% of the packets sent to one
loopback port: `... tcp dport PORT numgen random mod 10 == 0 drop` in an input chain.

TCP_INFO counts the retransmissions of the socket's *own* data, so the loss is put where
sluice sends the bulk of the bytes:
  - upstream: a 20 MB upload (POST /sink) with the drops on packets to the backend;
    the pooled upstream connection then shows total_retransmits > 0 and the request's
    access log line upstream_tcp.retransmits > 0;
  - downstream: a 20 MB download (GET /bytes/20000000) with the drops on packets to the
    client; the client's connection (kept alive) shows total_retransmits > 0.
A download with the drops on packets to the backend (only sluice's ACKs are lost, the
backend retransmits) is run too, to report what the upstream connection shows then."""

import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Skip, check, info, sh  # noqa: E402
from http_backend import BackendProcess, pattern_sha256  # noqa: E402
import http_util as hu  # noqa: E402

ADMIN_RE = re.compile(r"admin listening on 127\.0\.0\.1:(\d+)")
SIZE = 20000000
TABLE = "sluice_tcpinfo_test"
NFT = {"ok": None, "why": ""}


# --------------------------------------------------------------------------
# the lossy path


def nft_setup():
    """The table and input chain, once per run; records whether nftables works here."""
    if NFT["ok"] is not None:
        return NFT["ok"]
    try:
        sh(["nft", "add", "table", "inet", TABLE])
        sh(["nft", "add chain inet %s input { type filter hook input priority 0; policy accept; }" % TABLE])
        NFT["ok"] = True
    except Exception as e:
        NFT["ok"] = False
        NFT["why"] = str(e)
    return NFT["ok"]


def drop_10_percent_to(port):
    """Drops a random 10% of the TCP packets to 127.0.0.1:port; returns a function giving the count dropped."""
    if not nft_setup():
        raise Skip("nftables not usable: %s" % NFT["why"])
    sh(["nft", "flush", "chain", "inet", TABLE, "input"])
    sh(["nft", "add rule inet %s input ip daddr 127.0.0.1 tcp dport %d numgen random mod 10 == 0 counter drop" %
        (TABLE, port)])
    harness.register_cleanup(lambda: sh(["nft", "flush", "chain", "inet", TABLE, "input"], check_rc=False))

    def dropped():
        out = sh(["nft", "list", "chain", "inet", TABLE, "input"]).stdout
        m = re.search(r"dport %d .*counter packets (\d+)" % port, out)
        return int(m.group(1)) if m else -1
    return dropped


# --------------------------------------------------------------------------
# sluice


def start(backend, alog):
    lst = hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}], access_log={"path": alog})
    cfg = {"workers": 1, "log_level": "debug", "drain_timeout": "5s", "admin": {"address": "127.0.0.1:0"},
           "listeners": [lst],
           # The drop rule may take a SYN too: its retransmission comes after 1 s, so the
           # connect must be allowed longer than that.
           "clusters": [hu.cluster("app", [backend], connect_timeout="5s")]}
    sl = harness.Sluice(harness.to_yaml(hu._quote(cfg)) + "\n")
    line = sl.wait_log(ADMIN_RE, 5)
    if not line:
        raise harness.CheckFailed_with("no 'admin listening on' line", sl.stderr_text())
    return sl, int(ADMIN_RE.search(line).group(1))


def admin_json(ap, target):
    r = hu.request_once(ap, "GET", target, host="admin", timeout=5)
    if r.status != 200:
        check(False, "GET %s: 200" % target, r.describe())
    return json.loads(r.body)


def tmp_log():
    d = tempfile.mkdtemp(prefix="sluice-tcpinfo-")
    harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    return os.path.join(d, "access.log")


def log_entry(path, target, timeout=5):
    def find():
        try:
            with open(path) as f:
                es = [json.loads(l) for l in f if l.strip()]
        except FileNotFoundError:
            return None
        m = [e for e in es if e.get("target") == target]
        return m[0] if m else None
    e = harness.wait_until(find, timeout, 0.01)
    if not e:
        raise harness.CheckFailed_with("an access log line for %s" % target, "")
    return e


# --------------------------------------------------------------------------
# cases


def case_upload_retransmits_upstream():
    be = BackendProcess("sink")
    alog = tmp_log()
    sl, ap = start(be, alog)
    dropped = drop_10_percent_to(be.port)
    body = os.urandom(SIZE)
    want_sha = hashlib.sha256(body).hexdigest()
    c = hu.Client(sl.port("web"), timeout=25)
    t0 = time.monotonic()
    r = c.request("POST", "/sink", body=body, timeout=25)
    took = time.monotonic() - t0
    check(r.status == 200, "POST /sink with %d bytes through sluice: 200 (%.2f s)" % (SIZE, took), r.describe())
    got = r.json()
    check(got.get("body_len") == SIZE and got.get("body_sha256") == want_sha,
          "the backend received the %d bytes intact" % SIZE, repr(got))
    n_dropped = dropped()
    info("nftables dropped %d packets to the backend" % n_dropped)
    check(n_dropped > 0, "the rule dropped packets on the way to the backend (%d)" % n_dropped, "")

    e = log_entry(alog, "/sink")
    ut = e.get("upstream_tcp", {})
    info("access log: upstream_tcp %r, timings %r" % (ut, e.get("timings_us")))
    check(e.get("status") == 200 and e.get("request_body_bytes") == SIZE,
          "access log line: status 200, request_body_bytes %d" % SIZE, json.dumps(e))
    check(ut.get("retransmits", 0) > 0 and ut.get("rtt_us", 0) > 0,
          "access log upstream_tcp.retransmits %r > 0 (rtt_us %r)" % (ut.get("retransmits"), ut.get("rtt_us")),
          json.dumps(e))

    cs = admin_json(ap, "/connections?cluster=app")
    check(len(cs) == 1 and cs[0].get("peer") == be.address and cs[0].get("state") == "idle",
          "the upstream connection is pooled (idle) and listed by /connections?cluster=app", json.dumps(cs, indent=1))
    ti = cs[0]["tcp_info"]
    info("upstream tcp_info: %s" % json.dumps(ti))
    check(ti["total_retransmits"] > 0, "its tcp_info.total_retransmits %d > 0" % ti["total_retransmits"],
          json.dumps(ti))
    check(ti["total_retransmits"] >= ut["retransmits"],
          "and it is at least what the access log reported (%d >= %d)" % (ti["total_retransmits"], ut["retransmits"]),
          "")
    check(ti["bytes_acked"] >= SIZE, "tcp_info.bytes_acked %d >= the %d bytes sent" % (ti["bytes_acked"], SIZE), "")
    # the client side saw no loss: sluice's downstream connection did not retransmit
    ds = admin_json(ap, "/connections?listener=web")
    check(len(ds) == 1 and ds[0]["tcp_info"]["total_retransmits"] == 0,
          "the client's connection (no loss on its path) has total_retransmits 0", json.dumps(ds, indent=1))
    c.close()
    hu.stop_and_check(sl)


def case_download_retransmits_downstream():
    be = BackendProcess("bytes")
    alog = tmp_log()
    sl, ap = start(be, alog)
    # the client's port is known before it connects, so the rule can target it
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    harness.register_cleanup(s.close)
    s.bind(("127.0.0.1", 0))
    cport = s.getsockname()[1]
    dropped = drop_10_percent_to(cport)
    s.settimeout(25)
    s.connect(("127.0.0.1", sl.port("web")))
    c = hu.Client.__new__(hu.Client)
    c.sock, c.reader, c.timeout = s, hu.SockReader(s), 25
    t0 = time.monotonic()
    r = c.request("GET", "/bytes/%d" % SIZE, timeout=25)
    took = time.monotonic() - t0
    check(r.status == 200 and len(r.body) == SIZE and hashlib.sha256(r.body).hexdigest() == pattern_sha256(SIZE),
          "GET /bytes/%d through sluice: 200, body intact (%.2f s)" % (SIZE, took), repr(r))
    n_dropped = dropped()
    info("nftables dropped %d packets to the client" % n_dropped)
    check(n_dropped > 0, "the rule dropped packets on the way to the client (%d)" % n_dropped, "")
    me = "127.0.0.1:%d" % cport
    ds = [x for x in admin_json(ap, "/connections?listener=web") if x.get("peer") == me]
    check(len(ds) == 1, "the kept-alive client connection is listed by /connections?listener=web", "")
    ti = ds[0]["tcp_info"]
    info("downstream tcp_info: %s" % json.dumps(ti))
    check(ti["total_retransmits"] > 0, "its tcp_info.total_retransmits %d > 0" % ti["total_retransmits"],
          json.dumps(ti))
    check(ti["bytes_acked"] >= SIZE, "tcp_info.bytes_acked %d >= the body sent" % ti["bytes_acked"], "")
    e = log_entry(alog, "/bytes/%d" % SIZE)
    check(e.get("response_body_bytes") == SIZE and e.get("upstream_tcp", {}).get("retransmits") == 0,
          "access log: response_body_bytes %d; upstream_tcp.retransmits 0 (no loss upstream)" % SIZE,
          json.dumps(e))
    c.close()
    hu.stop_and_check(sl)


def case_download_with_loss_towards_backend():
    """Informational: on a download, packets to the backend are sluice's ACKs; losing them makes the
    backend retransmit, which sluice's socket does not count."""
    be = BackendProcess("bytes")
    alog = tmp_log()
    sl, ap = start(be, alog)
    dropped = drop_10_percent_to(be.port)
    c = hu.Client(sl.port("web"), timeout=25)
    r = c.request("GET", "/bytes/%d" % SIZE, timeout=25)
    check(r.status == 200 and len(r.body) == SIZE, "GET /bytes/%d with loss towards the backend: 200" % SIZE,
          repr(r))
    e = log_entry(alog, "/bytes/%d" % SIZE)
    cs = admin_json(ap, "/connections?cluster=app")
    info("dropped %d packets (sluice's request and ACKs); access log upstream_tcp %r; upstream tcp_info "
         "total_retransmits %r, lost %r" % (dropped(), e.get("upstream_tcp"),
                                            cs[0]["tcp_info"]["total_retransmits"] if cs else None,
                                            cs[0]["tcp_info"]["lost"] if cs else None))
    c.close()
    hu.stop_and_check(sl)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.reexec_in_netns_or_skip()
    harness.run_cases([case_upload_retransmits_upstream, case_download_retransmits_downstream,
                       case_download_with_loss_towards_backend])

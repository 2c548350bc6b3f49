#!/usr/bin/env python3
"""TCP_NOTSENT_LOWAT (socket_options.notsent_lowat) on a slow link: a small HTTP/2 response
does not wait behind megabytes of a download parked in the kernel.

Runs in its own network namespace (re-executes itself under `unshare -n`), where sluice
and the backend live; the client lives in a second namespace (`ip netns add`) behind a veth
pair whose sluice side is shaped to 8 Mbit/s (tc tbf). On one HTTP/2 connection the client
starts a 64 MiB download with wide-open flow-control windows, and once about a megabyte
has arrived asks for a small response on a second stream. Measured both ways in one run:

- notsent_lowat 16KiB: the downstream connection's unsent bytes in the kernel stay near
  16 KiB (GET /connections, kernel_queue.unsent_bytes) and the small response arrives
  within a fraction of a second;
- notsent_lowat 0 (the kernel's default): hundreds of KiB to megabytes wait unsent, and the
  small response waits behind them, several times longer.
"""

import ctypes
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info, sh  # noqa: E402
import h2_frames as h2  # noqa: E402
import http_util as hu  # noqa: E402
import test_metrics as tm  # noqa: E402
from http_backend import HttpBackend  # noqa: E402

CLONE_NEWNET = 0x40000000
NS = "sluice-lowat-%d" % os.getpid()
VETH_SLUICE = "slw%da" % (os.getpid() % 100000)
VETH_CLIENT = "slw%db" % (os.getpid() % 100000)
SLUICE_IP = "10.213.7.1"
CLIENT_IP = "10.213.7.2"
LOWAT = 16 * 1024
DOWNLOAD = 64 << 20
FILLED = 1 << 20  # bytes of the download the client reads before the small request
_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: %s" % os.strerror(e))


def in_client_netns(fn):
    """Runs fn on this thread inside the client namespace: a socket it makes stays there."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open("/run/netns/" + NS, os.O_RDONLY)
    try:
        setns(target)
        try:
            return fn()
        finally:
            setns(own)
    finally:
        os.close(own)
        os.close(target)


def make_link():
    sh(["ip", "netns", "add", NS])
    harness.register_cleanup(lambda: sh(["ip", "netns", "del", NS], check_rc=False))
    sh(["ip", "link", "add", VETH_SLUICE, "type", "veth", "peer", "name", VETH_CLIENT])
    harness.register_cleanup(lambda: sh(["ip", "link", "del", VETH_SLUICE], check_rc=False))
    sh(["ip", "link", "set", VETH_CLIENT, "netns", NS])
    sh(["ip", "addr", "add", SLUICE_IP + "/24", "dev", VETH_SLUICE])
    sh(["ip", "link", "set", VETH_SLUICE, "up"])
    ns = ["ip", "netns", "exec", NS]
    sh(ns + ["ip", "addr", "add", CLIENT_IP + "/24", "dev", VETH_CLIENT])
    sh(ns + ["ip", "link", "set", VETH_CLIENT, "up"])
    sh(ns + ["ip", "link", "set", "lo", "up"])
    # sluice -> client at 8 Mbit/s (1 MB/s): a slow client link.
    sh(["tc", "qdisc", "add", "dev", VETH_SLUICE, "root", "tbf", "rate", "8mbit", "burst", "16kb",
        "latency", "50ms"])


def downstream_queue(ap):
    cs = tm.admin_json(ap, "/connections?listener=web", quiet=True)
    return cs[0].get("kernel_queue", {}) if len(cs) == 1 else {}


def small_behind_download(backend, lowat):
    """One run: (seconds until the small response ended, the downstream kernel queue seen
    just before it was asked for)."""
    lst = h2.h2_listener(address=SLUICE_IP + ":0", socket_options={"notsent_lowat": lowat})
    sl, ap = tm.start([lst], [hu.cluster("app", [backend])], workers=1)
    port = sl.port("web")
    c = in_client_netns(lambda: h2.H2Client(port, host=SLUICE_IP, timeout=30))
    # Windows as wide as a browser's: flow control does not bound what sluice may send.
    c.handshake(settings=[(h2.INITIAL_WINDOW_SIZE, (1 << 31) - 1)])
    c.send(h2.window_update_frame(0, (1 << 31) - 1 - 65535))
    big = c.request("GET", "/bytes/%d" % DOWNLOAD)
    got = c.wait(lambda f: False, 20, until=lambda: big in c.streams and len(c.streams[big].body) >= FILLED)
    check(got is True, "lowat %d: the download flows (%d bytes)" % (
        lowat, len(c.streams[big].body) if big in c.streams else 0), c.transcript()[-2000:])
    queue = downstream_queue(ap)
    t0 = time.monotonic()
    small = c.request("GET", "/status/200")
    done = c.wait(lambda f: False, 30, until=lambda: small in c.streams and c.streams[small].ended)
    elapsed = time.monotonic() - t0
    check(done is True and c.streams[small].status == 200,
          "lowat %d: the small response arrives (200) during the download" % lowat, c.transcript()[-2000:])
    check(not c.streams[big].ended, "lowat %d: ... while the download is still going" % lowat)
    c.close()
    hu.stop_and_check(sl)
    return elapsed, queue


def case_small_response_overtakes_parked_download():
    backend = HttpBackend("a")
    results = {}
    for lowat in (LOWAT, 0):
        results[lowat] = small_behind_download(backend, lowat)
    (t_on, q_on), (t_off, q_off) = results[LOWAT], results[0]
    info("small response behind the download: notsent_lowat 16KiB %.3f s (unsent %s), off %.3f s (unsent %s)"
         % (t_on, q_on.get("unsent_bytes"), t_off, q_off.get("unsent_bytes")))
    # The kernel may take one more buffer (up to 64 KiB, GSO) past the mark before it
    # checks it.
    check(0 < q_on.get("unsent_bytes", -1) <= LOWAT + 80 * 1024,
          "notsent_lowat 16KiB: kernel_queue.unsent_bytes of the downstream connection stays near it "
          "(%r <= %d)" % (q_on.get("unsent_bytes"), LOWAT + 80 * 1024), repr(q_on))
    check(q_off.get("unsent_bytes", 0) >= 256 * 1024,
          "off: the kernel holds far more unsent (%r >= 256 KiB)" % q_off.get("unsent_bytes"), repr(q_off))
    # At 1 MB/s, with the setting about 150 KB queue ahead of it in sluice, the kernel and
    # the shaper; without, a megabyte or more.
    check(t_on < 1.0, "notsent_lowat 16KiB: the small response within a second (%.3f s)" % t_on)
    check(t_off >= 3 * t_on,
          "off: the small response waits at least 3x longer behind the parked bytes (%.3f s against %.3f s)"
          % (t_off, t_on))


def main():
    hu.use_default_bin()
    h2.require_modules()
    for tool in ("ip", "tc"):
        if not any(os.access(os.path.join(d, tool), os.X_OK) for d in os.environ.get("PATH", "").split(":")):
            print("skip   %s not installed" % tool, flush=True)
            print("0 passed, 0 failed, 1 skipped", flush=True)
            sys.exit(harness.SKIP_EXIT)
    harness.reexec_in_netns_or_skip()
    make_link()
    harness.run_cases([case_small_response_overtakes_parked_download])


if __name__ == "__main__":
    main()

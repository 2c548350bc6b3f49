#!/usr/bin/env python3
"""Data integrity through the L4 proxy.

- 200 MB of random bytes each way at the same time (client->backend and
  backend->client), sha256 equal at both ends; with splice: true and splice: false.
- 100 concurrent connections, each moving data both ways at once, all intact.
- backpressure: a client that does not read stalls the backend instead of
  growing sluice's memory; afterwards every byte arrives.
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (DataClient, DataServer, Sluice, Stream, check, check_clean_exit, connect, info, make_header,
                     recv_all, run_cases, tcp_config, verify_exchange, wait_until)

BIG = 200 * 1024 * 1024


def big_transfer(splice):
    with DataServer() as backend:
        with Sluice(tcp_config([backend.address], listener={"splice": splice}), log_level="info") as sl:
            port = sl.port()
            t0 = time.monotonic()
            client = DataClient(port, 1, BIG, BIG, timeout=60)
            finished = client.wait(90)
            elapsed = time.monotonic() - t0
            check(finished, "200 MB each way completes within 90 s (splice: %s)" % str(splice).lower(),
                  "sent %d, received %d\n%s" % (client.sent.nbytes, client.recv.nbytes, sl.stderr_text()[-4000:]))
            info("2 x 200 MB in %.1f s (%.0f MB/s per direction)" % (elapsed, 200 / elapsed))
            problem = verify_exchange(backend, client, BIG, BIG)
            check(problem is None, "sha256 and length equal at both ends, both directions", problem)
            client.close()
            rc = sl.stop()
            check_clean_exit(sl, rc)


def test_200mb_each_way_splice():
    big_transfer(True)


def test_200mb_each_way_buffered():
    big_transfer(False)


def test_100_concurrent_connections():
    n = 100
    with DataServer() as backend:
        with Sluice(tcp_config([backend.address]), log_level="info") as sl:
            port = sl.port()
            clients = []
            sizes = {}
            for i in range(n):
                # different sizes both ways, some smaller and some larger than socket buffers
                up = 1000 + (i * 7919) % (1536 * 1024)
                down = 1000 + (i * 104729) % (1536 * 1024)
                sizes[i] = (up, down)
                clients.append(DataClient(port, i, up, down, timeout=60))
            deadline = time.monotonic() + 90
            unfinished = [c.conn_id for c in clients if not c.wait(max(0, deadline - time.monotonic()))]
            check(not unfinished, "all %d concurrent connections complete" % n,
                  "unfinished: %s\n%s" % (unfinished, sl.stderr_text()[-4000:]))
            problems = []
            for c in clients:
                p = verify_exchange(backend, c, *sizes[c.conn_id])
                if p:
                    problems.append("connection %d: %s" % (c.conn_id, p))
                c.close()
            check(not problems, "every connection's bytes intact both ways (sha256 and length)",
                  "\n".join(problems[:20]))
            check(backend.accepted == n, "backend accepted exactly %d connections" % n,
                  "accepted %d" % backend.accepted)
            rc = sl.stop()
            check_clean_exit(sl, rc)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def backpressure(splice):
    """A client that does not read: sluice stops reading from the backend instead of buffering."""
    size = 200 * 1024 * 1024
    with DataServer() as backend:
        with Sluice(tcp_config([backend.address], listener={"splice": splice}), log_level="info") as sl:
            rss0 = rss_kib(sl.pid)
            s = connect(sl.port(), timeout=60)
            s.sendall(make_header(9, size))
            s.shutdown(socket.SHUT_WR)
            check(wait_until(lambda: backend.results.get(9) is not None, 10), "backend starts sending")
            sent = backend.results[9]["sent"]
            # wait until the backend is blocked: no progress for 300 ms
            last = [-1, time.monotonic()]

            def stalled():
                n = sent.nbytes
                if n != last[0]:
                    last[0], last[1] = n, time.monotonic()
                    return False
                return time.monotonic() - last[1] >= 0.3

            check(wait_until(stalled, 30, interval=0.02), "the backend's writes stall while the client does not read")
            rss1 = rss_kib(sl.pid)
            info("backend blocked after %.1f MB; sluice RSS %d -> %d KiB" % (sent.nbytes / 1e6, rss0, rss1))
            check(sent.nbytes < 64 * 1024 * 1024, "at most socket buffers' worth is in flight (%.1f MB < 64 MB)"
                  % (sent.nbytes / 1e6))
            check(rss1 - rss0 < 32 * 1024, "sluice's memory stays bounded (RSS +%d KiB < 32 MiB)" % (rss1 - rss0))
            recv = Stream()
            recv_all(s, recv)
            check(recv.error is None and recv.nbytes == size and sent.done.wait(10) and
                  recv.digest() == sent.digest(), "then the client reads all 200 MB intact",
                  "got %d of %d, error %r" % (recv.nbytes, size, recv.error))
            s.close()
            check_clean_exit(sl, sl.stop())


def test_backpressure_splice():
    backpressure(True)


def test_backpressure_buffered():
    backpressure(False)


if __name__ == "__main__":
    run_cases([test_200mb_each_way_splice, test_200mb_each_way_buffered, test_100_concurrent_connections,
               test_backpressure_splice, test_backpressure_buffered])

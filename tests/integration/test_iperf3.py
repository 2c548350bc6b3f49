#!/usr/bin/env python3
"""A real peer: iperf3 through sluice (client -> sluice -> iperf3 -s), both directions, 1 and 4 streams."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Skip, Sluice, check, check_clean_exit, die_with_parent, info, listening_ports,
                     register_cleanup, run_cases, tcp_config, wait_until)


def start_iperf3_server():
    # pick a free port, then let iperf3 take it; the one-off server (-1) exits after one test
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.Popen(["iperf3", "-s", "-p", str(port), "-1", "-B", "127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            preexec_fn=die_with_parent)

    def kill():
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    register_cleanup(kill)
    wait_until(lambda: port in listening_ports() or proc.poll() is not None, 10)
    check(proc.poll() is None and port in listening_ports(), "iperf3 server listening on 127.0.0.1:%d" % port,
          proc.stdout.read().decode() if proc.poll() is not None else "not listening after 10 s")
    return proc, port


def iperf3_through_sluice(splice, reverse, streams=1):
    if not shutil.which("iperf3"):
        raise Skip("iperf3 not installed")
    server, sport = start_iperf3_server()
    label = "splice: %s, %s, %d stream(s)" % (str(splice).lower(),
                                              "backend->client (-R)" if reverse else "client->backend", streams)
    with Sluice(tcp_config(["127.0.0.1:%d" % sport], listener={"splice": splice}), log_level="info") as sl:
        args = ["iperf3", "-c", "127.0.0.1", "-p", str(sl.port()), "-t", "2", "--json"]
        if reverse:
            args.append("-R")
        if streams > 1:
            args += ["-P", str(streams)]
        t0 = time.monotonic()
        try:
            p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30,
                               preexec_fn=die_with_parent)
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = None, e.stdout or "", e.stderr or ""
        check(rc == 0, "iperf3 client completes through sluice (%s)" % label,
              "rc=%r after %.1f s\n%s\n%s\n%s" % (rc, time.monotonic() - t0, out[-3000:], err[-2000:],
                                                 sl.stderr_text()[-3000:]))
        try:
            result = json.loads(out)
        except ValueError:
            result = None
        check(result is not None and "error" not in result, "iperf3 reports a result without error",
              out[-3000:])
        end = result["end"]
        recv_bps = end["sum_received"]["bits_per_second"]
        sent_bps = end["sum_sent"]["bits_per_second"]
        recv_bytes = end["sum_received"]["bytes"]
        info("%s: received %.2f Gbit/s (sent %.2f Gbit/s, %d MB)" %
             (label, recv_bps / 1e9, sent_bps / 1e9, recv_bytes // 1000000))
        check(recv_bps > 0, "received bits_per_second > 0")
        wait_until(lambda: server.poll() is not None, 10)
        check(server.poll() == 0, "the one-off iperf3 server finished cleanly",
              "iperf3 -s rc=%r" % server.poll())
        check_clean_exit(sl, sl.stop())


def test_iperf3_splice():
    iperf3_through_sluice(True, False)


def test_iperf3_splice_reverse():
    iperf3_through_sluice(True, True)


def test_iperf3_buffered():
    iperf3_through_sluice(False, False)


def test_iperf3_parallel_streams():
    iperf3_through_sluice(True, False, streams=4)


if __name__ == "__main__":
    run_cases([test_iperf3_splice, test_iperf3_splice_reverse, test_iperf3_buffered, test_iperf3_parallel_streams])

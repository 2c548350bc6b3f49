#!/usr/bin/env python3
"""What one dashboard poll costs sluice, against one /metrics scrape: the process's CPU time
(user + system, from /proc) over N polls of GET /dashboard/data, then N scrapes of
GET /metrics, on one keep-alive connection. Before that, 200 requests fill the recent-request
rings (their endpoint refuses connections: each one fails, and is kept with its record).

    bench/lib/dashboard_poll_cost.py [SLUICE_BIN] [N]

Compare the CPU of one poll a second with the proxy's CPU per second at a given request rate
(bench/run l7_dashboard gives CPU per request): 0.6 ms a poll against 10,000 req/s at 17 µs is
0.35 %. The figures of a machine busy with other work are only indicative.
"""

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build/release/sluice")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))  # bound, not listening: connects are refused
    # The l7_dashboard scenario's page-closed configuration, its backend refusing connections.
    with open(os.path.join(ROOT, "bench/conf/l7_dashboard/sluice.yaml")) as t:
        cfg = t.read().replace("@LISTEN@", "0").replace("@BACKEND@", str(refused.getsockname()[1]))
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(cfg)
    p = subprocess.Popen([binary, "run", "-c", f.name, "--log-level", "info"], stderr=subprocess.PIPE,
                         text=True)
    try:
        admin = None
        deadline = time.monotonic() + 20
        for line in p.stderr:
            m = re.search(r"admin listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                admin = int(m.group(1))
            if "sluice ready" in line or time.monotonic() > deadline:
                break
        threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
        if admin is None:
            sys.exit("no admin port in sluice's log")
        c = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)

        def get(path):
            c.request("GET", path)
            r = c.getresponse()
            return r.read()

        web = int(json.loads(get("/listeners"))[0]["address"].rsplit(":", 1)[1])
        w = http.client.HTTPConnection("127.0.0.1", web, timeout=10)
        for i in range(200):
            w.request("GET", "/r/%d" % i)
            w.getresponse().read()
        results = {}
        for path in ("/dashboard/data", "/metrics"):
            size = len(get(path))
            t0 = cpu_seconds(p.pid)
            for _ in range(n):
                get(path)
            results[path] = (size, (cpu_seconds(p.pid) - t0) * 1000 / n)
        for path, (size, ms) in results.items():
            print("%-16s %6d bytes  %.3f ms CPU each (%d requests)" % (path, size, ms, n))
    finally:
        p.terminate()
        p.wait(timeout=10)
        os.unlink(f.name)


if __name__ == "__main__":
    main()

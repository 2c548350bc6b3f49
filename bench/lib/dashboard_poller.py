#!/usr/bin/env python3
"""What an open dashboard asks of sluice: the page and its files once, then GET /dashboard/data
every INTERVAL seconds, as the page's script does. Exits when the admin endpoint has refused
connections three times in a row (its sluice stopped).

    dashboard_poller.py --port ADMIN_PORT [--interval 1]
"""

import argparse
import http.client
import sys
import time


def get(conn, path):
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        raise RuntimeError("GET %s: %d" % (path, r.status))
    return len(body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--interval", type=float, default=1.0)
    a = ap.parse_args()
    refused = 0
    first = True
    polls = 0
    while refused < 3:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
            if first:
                for path in ("/", "/dashboard/dashboard.js", "/dashboard/dashboard.css",
                             "/dashboard/uPlot.min.js", "/dashboard/uPlot.min.css"):
                    get(conn, path)
                first = False
            while True:
                size = get(conn, "/dashboard/data")
                polls += 1
                if polls % 30 == 1:
                    print("poll %d: %d bytes" % (polls, size), flush=True)
                refused = 0
                time.sleep(a.interval)  # the page's own pace, not a synchronisation
        except (ConnectionRefusedError, ConnectionResetError, http.client.HTTPException, OSError) as e:
            refused += 1
            print("admin endpoint: %s" % e, flush=True)
            time.sleep(a.interval)
    print("%d polls" % polls, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

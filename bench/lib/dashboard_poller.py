#!/usr/bin/env python3
"""What an open dashboard asks of sluice: the page and its files once, then its data as the
page's script gets it: GET /dashboard/data every INTERVAL seconds (--interval, the page
polling), or one GET /dashboard/events stream read as it comes (--events, the page following
the event stream).

Exits 0 once the admin endpoint has refused connections three times in a row, or sluice
ended the event stream (its sluice stopped). Any other answer than the one the page expects (a status other than 200, a stream
that is not text/event-stream or that sluice ends) is a failure: the page would be closed or
polling, so a benchmark going on would measure something else. It prints `dashboard client
FAILED: ...` on stderr and exits 2, and the benchmark (bench/targets.sh, target_*_check)
stops loudly.

    dashboard_poller.py --port ADMIN_PORT [--interval 1 | --events]
"""

import argparse
import http.client
import sys
import time

PAGE = ("/", "/dashboard/dashboard.js", "/dashboard/dashboard.css", "/dashboard/uPlot.min.js",
        "/dashboard/uPlot.min.css")


class Failed(Exception):
    pass


def get(conn, path):
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        raise Failed("GET %s: %d %s" % (path, r.status, body[:200].decode(errors="replace").strip()))
    return len(body)


def poll(conn, interval, count):
    while True:
        size = get(conn, "/dashboard/data")
        count[0] += 1
        if count[0] % 30 == 1:
            print("poll %d: %d bytes" % (count[0], size), flush=True)
        time.sleep(interval)  # the page's own pace, not a synchronisation


def follow(conn, count):
    conn.request("GET", "/dashboard/events", headers={"Accept": "text/event-stream"})
    r = conn.getresponse()
    ctype = r.getheader("Content-Type", "")
    if r.status != 200 or not ctype.startswith("text/event-stream"):
        raise Failed("GET /dashboard/events: %d %s %s" % (r.status, ctype, r.read(200).decode(errors="replace").strip()))
    event = "message"
    size = 0
    while True:
        line = r.fp.readline()
        if not line:
            raise ConnectionResetError("the event stream ended without an end event")
        line = line.rstrip(b"\n")
        if line.startswith(b"event: "):
            event = line[7:].decode()
        elif line.startswith(b"data: "):
            size += len(line) - 6
        elif not line:
            if event == "end":
                return  # sluice drains: it is stopping
            if size:
                count[0] += 1
                if count[0] % 30 == 1:
                    print("frame %d: %d bytes" % (count[0], size), flush=True)
            event, size = "message", 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--events", action="store_true", help="follow GET /dashboard/events instead of polling")
    a = ap.parse_args()
    refused = 0
    first = True
    count = [0]
    try:
        while refused < 3:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
                if first:
                    for path in PAGE:
                        get(conn, path)
                    first = False
                refused = 0
                if a.events:
                    follow(conn, count)
                    print("sluice ended the event stream (it drains)", flush=True)
                    break
                else:
                    poll(conn, a.interval, count)
            except (ConnectionRefusedError, ConnectionResetError, http.client.HTTPException, OSError) as e:
                refused += 1
                print("admin endpoint: %s" % e, flush=True)
                time.sleep(a.interval)
    except Failed as e:
        print("dashboard client FAILED: %s" % e, file=sys.stderr, flush=True)
        print("%d %s" % (count[0], "frames" if a.events else "polls"), flush=True)
        return 2
    print("%d %s" % (count[0], "frames" if a.events else "polls"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""SIGTERM on an HTTP listener: idle keep-alive connections are closed at once, a request
in flight completes and its response carries Connection: close, new connections are
refused, and sluice exits 0 once the busy connection is done."""

import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
from http_backend import HttpBackend  # noqa: E402
import http_util as hu  # noqa: E402


def case_drain_idle_and_busy():
    b = HttpBackend("a")
    sl = hu.start_sluice([hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}])],
                         [hu.cluster("app", [b])], drain_timeout="10s")
    port = sl.port("web")
    idle = hu.Client(port, timeout=5)
    r = idle.request("GET", "/idle")
    check(r.status == 200 and "close" not in r.tokens("connection"), "idle client: first request 200, kept open",
          r.describe())
    busy = hu.Client(port, timeout=10)
    r = busy.request("GET", "/warm")
    check(r.status == 200, "busy client: first request 200", r.describe())
    holder = {}

    def slow():
        try:
            holder["r"] = busy.request("GET", "/delay/1200/slow")
        except Exception as e:
            holder["e"] = e

    t = threading.Thread(target=slow, daemon=True)
    t.start()
    check(harness.wait_until(lambda: b.requests_for(lambda x: "/slow" in x["target"]), 5),
          "the slow request reached the backend", repr(b.stats()))
    t0 = time.monotonic()
    sl.signal(signal.SIGTERM)
    how, extra, took = idle.wait_closed(3)
    check(how == "eof" and not extra and took < 1.0,
          "SIGTERM: the idle keep-alive connection is closed at once (%s after %.2f s)" % (how, took), repr(extra))
    check(harness.wait_until(lambda: harness.is_refused(port), 3), "new connections are refused while draining", "")
    t.join(10)
    r = holder.get("r")
    check(r is not None and r.status == 200 and r.json()["target"] == "/delay/1200/slow",
          "the in-flight request completes with 200", repr(holder))
    check("close" in r.tokens("connection"), "its response carries Connection: close", r.describe())
    how, extra, _ = busy.wait_closed(3)
    check(how == "eof" and not extra, "then sluice closes that connection", "%s %r" % (how, extra))
    busy.close()
    rc = sl.wait_exit(10)
    took = time.monotonic() - t0
    harness.check_clean_exit(sl, rc)
    check(took < 5.0, "sluice exited %.2f s after SIGTERM, well before drain_timeout 10s" % took,
          hu.log_tail(sl, 10))


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_drain_idle_and_busy])

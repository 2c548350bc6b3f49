#!/usr/bin/env python3
"""Retries and upstream failures: a refusing endpoint is retried on the other; a 503 with
retriable-status-codes and a 500 with 5xx are retried on the other endpoint; reset before the
response retries GET but never POST (unless allow_non_idempotent); a reset after response
bytes is not retried; route timeout and per_try_timeout give 504 in bounded time; invalid
upstream responses give 502; all endpoints down gives 502 after the retries."""

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
from http_backend import HttpBackend  # noqa: E402
import http_util as hu  # noqa: E402


def start(endpoints, route_extra=None, workers=1, cluster_extra=None):
    route = {"match": {"prefix": "/"}, "cluster": "app"}
    route.update(route_extra or {})
    return hu.start_sluice([hu.simple_listener([route])],
                           [hu.cluster("app", endpoints, **(cluster_extra or {}))], workers=workers)


def case_connect_failure_retried_on_other_endpoint():
    _, dead_port = harness.free_port_holder()
    good = HttpBackend("good")
    sl = start(["127.0.0.1:%d" % dead_port, good])  # default retry: connect-failure, 1 retry
    statuses = [hu.request_once(sl.port("web"), "GET", "/cf/%d" % i).status for i in range(8)]
    check(statuses == [200] * 8, "8 requests with one endpoint refusing: all 200", repr(statuses) + "\n" +
          hu.log_tail(sl))
    check(good.stats()["requests"] == 8, "the good endpoint served all 8", repr(good.stats()))
    harness.wait_until(lambda: len(hu.request_log(sl)) >= 8, 5)
    retried = [r for r in hu.request_log(sl) if r["flags"] == "retried"]
    check(len(retried) >= 1 and all(r["flags"] in ("retried", "-") for r in hu.request_log(sl)),
          "sluice logged retries (flags exactly retried) for the requests that first hit the refusing endpoint, "
          "no flag for the others", "\n".join(r["line"] for r in hu.request_log(sl)))
    # a POST after a connect failure is retried too (nothing was sent)
    r = hu.request_once(sl.port("web"), "POST", "/cf-post", body=b"abc")
    r2 = hu.request_once(sl.port("web"), "POST", "/cf-post2", body=b"abc")
    check(r.status == 200 and r2.status == 200, "POSTs are retried after a connect failure",
          r.describe() + "\n" + r2.describe())
    hu.stop_and_check(sl)


def case_all_endpoints_down_502():
    _, p1 = harness.free_port_holder()
    _, p2 = harness.free_port_holder()
    sl = start(["127.0.0.1:%d" % p1, "127.0.0.1:%d" % p2],
               {"retries": {"retry_on": ["connect-failure"], "num_retries": 2, "backoff": {"base": "10ms",
                                                                                          "max": "20ms"}}})
    t0 = time.monotonic()
    r = hu.request_once(sl.port("web"), "GET", "/down")
    took = time.monotonic() - t0
    check(r.status == 502 and took < 2.0, "all endpoints refusing: 502 after the retries (%.2f s)" % took,
          r.describe())
    retries = sl.find_lines("retry ")
    check(len(retries) == 2, "two retries logged (num_retries 2)", "\n".join(retries))
    hu.stop_and_check(sl)


def case_retriable_status_503():
    bad = HttpBackend("bad", status=503)
    good = HttpBackend("good")
    sl = start([bad, good], {"retries": {"retry_on": ["retriable-status-codes"], "retriable_status_codes": [503],
                                       "num_retries": 1}})
    out = [hu.request_once(sl.port("web"), "GET", "/r/%d" % i) for i in range(8)]
    check([r.status for r in out] == [200] * 8, "503 from one endpoint retried on the other: all 200",
          repr([r.status for r in out]))
    check(all(r.json()["backend"] == "good" for r in out), "all answers come from the good endpoint",
          repr([r.header("x-backend") for r in out]))
    check(bad.stats()["requests"] >= 1, "the 503 endpoint was tried (%d times)" % bad.stats()["requests"],
          repr(bad.stats()))
    # 500 is not in retriable_status_codes and not retried by this policy
    bad500 = HttpBackend("bad500", status=500)
    hu.stop_and_check(sl)
    sl = start([bad500, good], {"retries": {"retry_on": ["retriable-status-codes"], "retriable_status_codes": [503],
                                          "num_retries": 1}})
    statuses = sorted(hu.request_once(sl.port("web"), "GET", "/r500/%d" % i).status for i in range(4))
    check(statuses == [200, 200, 500, 500], "a 500 is not retried by retriable-status-codes [503]: passed through",
          repr(statuses))
    hu.stop_and_check(sl)


def case_5xx_and_gateway_error():
    bad = HttpBackend("bad500", status=500)
    good = HttpBackend("good")
    sl = start([bad, good], {"retries": {"retry_on": ["5xx"], "num_retries": 1}})
    statuses = [hu.request_once(sl.port("web"), "GET", "/x/%d" % i).status for i in range(6)]
    check(statuses == [200] * 6, "retry_on 5xx: a 500 is retried on the other endpoint", repr(statuses))
    hu.stop_and_check(sl)
    bad = HttpBackend("bad502", status=502)
    sl = start([bad, good], {"retries": {"retry_on": ["gateway-error"], "num_retries": 1}})
    statuses = [hu.request_once(sl.port("web"), "GET", "/y/%d" % i).status for i in range(6)]
    check(statuses == [200] * 6, "retry_on gateway-error: a 502 is retried on the other endpoint", repr(statuses))
    hu.stop_and_check(sl)


def case_reset_before_response():
    b = HttpBackend("resetter")
    sl = start([b], {"retries": {"retry_on": ["reset-before-response"], "num_retries": 2,
                               "backoff": {"base": "5ms", "max": "10ms"}}})
    r = hu.request_once(sl.port("web"), "GET", "/reset")
    gets = len(b.requests_for(lambda x: x["method"] == "GET"))
    check(r.status == 502 and gets == 3, "GET reset before the response: retried twice, then 502 (backend saw %d)" %
          gets, r.describe())
    r = hu.request_once(sl.port("web"), "POST", "/reset", body=b"not idempotent")
    posts = len(b.requests_for(lambda x: x["method"] == "POST"))
    check(r.status == 502 and posts == 1, "POST reset before the response: not retried, 502 (backend saw %d)" %
          posts, r.describe() + "\n" + hu.log_tail(sl, 6))
    r = hu.request_once(sl.port("web"), "PATCH", "/reset", body=b"not idempotent")
    patches = len(b.requests_for(lambda x: x["method"] == "PATCH"))
    check(r.status == 502 and patches == 1, "PATCH reset before the response: not retried (backend saw %d)" %
          patches, r.describe())
    hu.stop_and_check(sl)
    b2 = HttpBackend("resetter2")
    sl = start([b2], {"retries": {"retry_on": ["reset-before-response"], "num_retries": 1,
                                "allow_non_idempotent": True}})
    r = hu.request_once(sl.port("web"), "POST", "/reset", body=b"x")
    posts = len(b2.requests_for(lambda x: x["method"] == "POST"))
    check(r.status == 502 and posts == 2, "allow_non_idempotent: the POST is retried once (backend saw %d)" % posts,
          r.describe())
    hu.stop_and_check(sl)


def case_reset_mid_body_not_retried():
    b = HttpBackend("midbody")
    sl = start([b], {"retries": {"retry_on": ["reset-before-response", "5xx", "connect-failure"], "num_retries": 2}})
    c = hu.Client(sl.port("web"), timeout=5)
    c.send(hu.build_request("GET", "/reset-mid-body"))
    c.reader.deadline = time.monotonic() + 5
    head = c.reader.read_until(b"\r\n\r\n")
    c.reader.deadline = None
    check(b" 200 " in head.split(b"\r\n")[0], "the response head arrives (200)", head.decode("latin-1"))
    how, body, took = c.wait_closed(5)
    check(how in ("eof", "reset") and len(body) < 1048576,
          "the client connection is cut before the announced 1 MiB body is complete (%s after %d bytes)" %
          (how, len(body)), "how=%s len=%d" % (how, len(body)))
    check(len(b.requests_for(lambda x: True)) == 1, "the request was not retried after response bytes",
          repr(b.stats()))
    r = hu.request_once(sl.port("web"), "GET", "/after")
    check(r.status == 200, "sluice serves the next request", r.describe())
    hu.stop_and_check(sl)


def case_timeouts_504():
    b = HttpBackend("slow")
    sl = start([b], {"timeout": "500ms"})
    t0 = time.monotonic()
    r = hu.request_once(sl.port("web"), "GET", "/delay/3000")
    took = time.monotonic() - t0
    check(r.status == 504 and 0.4 <= took <= 1.5, "route timeout 500ms: 504 after %.2f s" % took, r.describe())
    t0 = time.monotonic()
    r = hu.request_once(sl.port("web"), "GET", "/delay/100")
    check(r.status == 200, "a request faster than the timeout: 200", r.describe())
    hu.stop_and_check(sl)
    b = HttpBackend("slow2")
    sl = start([b], {"timeout": "10s", "per_try_timeout": "300ms"})
    t0 = time.monotonic()
    r = hu.request_once(sl.port("web"), "GET", "/delay/3000")
    took = time.monotonic() - t0
    check(r.status == 504 and 0.2 <= took <= 1.5, "per_try_timeout 300ms without retries: 504 after %.2f s" % took,
          r.describe())
    hu.stop_and_check(sl)


def case_invalid_upstream_response_502():
    b = HttpBackend("liar")
    sl = start([b])
    for kind in ("garbage", "status", "dup-cl", "cl-te"):
        r = hu.request_once(sl.port("web"), "GET", "/invalid/%s" % kind)
        check(r.status == 502, "invalid upstream response (%s): 502" % kind, r.describe())
    # an invalid chunk size after a valid head: 502 if the head was held back, else the client
    # connection is cut before a complete body
    c = hu.Client(sl.port("web"), timeout=5)
    try:
        r = c.request("GET", "/invalid/bad-chunk")
        outcome = "status %d, body %r" % (r.status, r.body[:50])
        ok = r.status == 502
    except (hu.PeerClosed, ConnectionError) as e:
        outcome, ok = "connection cut: %r" % e, True
    check(ok, "invalid chunk size from upstream: 502 or a cut connection (%s)" % outcome, outcome)
    r = hu.request_once(sl.port("web"), "GET", "/fine")
    check(r.status == 200, "sluice keeps serving afterwards", r.describe())
    check(sl.alive(), "sluice is still running", hu.log_tail(sl))
    hu.stop_and_check(sl)


def case_invalid_response_retried_on_reset_policy():
    """An invalid response is a gateway failure: retry_on reset-before-response tries again, even
    though response bytes (the invalid ones) arrived; a body cut short after the head is flagged."""
    b = HttpBackend("liar2")
    sl = start([b], {"retries": {"retry_on": ["reset-before-response"], "num_retries": 2,
                               "backoff": {"base": "5ms", "max": "10ms"}}})
    r = hu.request_once(sl.port("web"), "GET", "/invalid/garbage")
    gets = len(b.requests_for(lambda x: x["method"] == "GET"))
    check(r.status == 502 and gets == 3,
          "an invalid response is retried twice, then 502 (backend saw %d)" % gets, r.describe())
    hu.stop_and_check(sl)
    # A bad chunk after the head: the client's connection is cut, and the access log says why.
    log_path = os.path.join(tempfile.mkdtemp(prefix="sluice-retries-"), "access.log")
    route = {"match": {"prefix": "/"}, "cluster": "app"}
    sl = hu.start_sluice([hu.simple_listener([route], access_log={"path": log_path})],
                         [hu.cluster("app", [b])], workers=1)
    c = hu.Client(sl.port("web"), timeout=5)
    try:
        c.request("GET", "/invalid/bad-chunk")
    except (hu.PeerClosed, ConnectionError):
        pass
    c.close()

    def logged():
        if not os.path.exists(log_path):
            return []
        with open(log_path) as f:
            return [json.loads(x) for x in f if x.strip()]
    harness.wait_until(lambda: logged(), 5)
    got = [x["flags"] for x in logged()]
    check(got == [["upstream_protocol_error", "incomplete"]] or
          got == [["incomplete", "upstream_protocol_error"]],
          "a bad chunk after the head: flags exactly upstream_protocol_error and incomplete",
          repr(got))
    hu.stop_and_check(sl)


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_connect_failure_retried_on_other_endpoint, case_invalid_response_retried_on_reset_policy, case_all_endpoints_down_502,
                       case_retriable_status_503, case_5xx_and_gateway_error, case_reset_before_response,
                       case_reset_mid_body_not_retried, case_timeouts_504, case_invalid_upstream_response_502])

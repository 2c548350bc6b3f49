#!/usr/bin/env python3
"""The per-listener access log (one JSON object per line), checked on real requests: a fast
200 has every field, a monotonic waterfall, the status, body sizes and endpoint, the
X-Request-Id and traceparent the backend actually received (a client's valid traceparent
keeps its trace id with a new parent id; otherwise a new trace); a slow backend shows as
the gap before upstream_first_byte; a saturated pool (max_connections 1) as pool_wait; a
connect failure as its flag with upstream_first_byte -1; mode errors_and_slow and
sample_percent 0 log only what they promise; a TCP listener's line carries the bytes each
way; path "-" writes to stdout; an unwritable path stops sluice with exit 1; a bad mode is
a located config error."""

import datetime
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, info, soft_check  # noqa: E402
from http_backend import HttpBackend  # noqa: E402
import http_util as hu  # noqa: E402

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HTTP_KEYS = {"time", "listener", "config_generation", "downstream", "method", "target", "host", "protocol", "cluster", "endpoint", "status",
             "request_body_bytes", "response_body_bytes", "attempts", "flags", "request_id", "traceparent",
             "timings_us"}
TIMING_KEYS = {"downstream_headers", "pool_wait", "upstream_connect", "request_sent", "upstream_first_byte",
               "response_done"}
# Only on TLS connections (-1 and 0 on cleartext ones).
TLS_TIMING_KEYS = {"downstream_tls", "upstream_tls"}
WATERFALL = ("downstream_headers", "request_sent", "upstream_first_byte", "response_done")
TCP_KEYS = {"time", "listener", "config_generation", "downstream", "cluster", "endpoint", "close_reason", "bytes_to_upstream",
            "bytes_to_downstream", "attempts", "timings_us", "upstream_tcp"}


# --------------------------------------------------------------------------
# helpers


def start(listeners, clusters, workers=2):
    return hu.start_sluice(listeners, clusters, workers=workers)


def tmp_dir():
    """A directory for logs and configs, removed at the end of the case."""
    d = tempfile.mkdtemp(prefix="sluice-alog-")
    harness.register_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def tmp_log():
    return os.path.join(tmp_dir(), "access.log")


def read_log(path):
    """Parsed lines of the access log (a line that is not JSON is kept as {'_bad': line})."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"_bad": line})
    return out


def wait_entries(path, pred, n=1, timeout=3.0):
    """Waits until at least n log entries satisfy pred; returns them (maybe fewer on timeout)."""
    got = harness.wait_until(lambda: (lambda m: m if len(m) >= n else None)(
        [e for e in read_log(path) if pred(e)]), timeout, 0.01)
    return got or [e for e in read_log(path) if pred(e)]


def by_target(target):
    return lambda e: e.get("target") == target


def entry_for(path, target, timeout=3.0):
    got = wait_entries(path, by_target(target), 1, timeout)
    if len(got) != 1:
        raise harness.CheckFailed_with("exactly one access log line for %s (%d)" % (target, len(got)),
                                       "\n".join(json.dumps(e) for e in read_log(path)[-20:]))
    return got[0]


def backend_header(rec, name):
    vs = [v for k, v in rec["headers"] if k.lower() == name.lower()]
    return vs


def web(path, routes=None, **alog):
    a = {"path": path}
    a.update(alog)
    return hu.simple_listener(routes or [{"match": {"prefix": "/"}, "cluster": "app"}], access_log=a)


def waterfall_problems(t):
    """Offsets must not decrease (among those that happened)."""
    seq = [(k, t[k]) for k in WATERFALL if t.get(k, -1) != -1]
    return [(a, b) for a, b in zip(seq, seq[1:]) if b[1] < a[1]]


def dump(e):
    return json.dumps(e, indent=1)


# --------------------------------------------------------------------------
# cases


def case_fast_200_fields_request_id_and_new_trace():
    b = HttpBackend("a")
    path = tmp_log()
    sl = start([web(path)], [hu.cluster("app", [b])])
    port = sl.port("web")
    c = hu.Client(port)
    me = "127.0.0.1:%d" % c.sock.getsockname()[1]
    t0 = time.time()
    m0 = time.monotonic()
    r = c.request("GET", "/fast?q=1", host="svc.example")
    took_us = (time.monotonic() - m0) * 1e6
    check(r.status == 200, "GET /fast: 200", r.describe())
    echo = r.json()
    e = entry_for(path, "/fast?q=1")
    info("line: %s" % json.dumps(e))
    check(HTTP_KEYS <= set(e), "every documented field is present", "missing %r\n%s" % (HTTP_KEYS - set(e), dump(e)))
    check(set(e["timings_us"]) == TIMING_KEYS | TLS_TIMING_KEYS, "timings_us has the eight phases", dump(e))
    check(e["timings_us"]["downstream_tls"] == -1 and e["timings_us"]["upstream_tls"] == 0 and "tls" not in e,
          "cleartext both ways: downstream_tls -1, upstream_tls 0, no tls object", dump(e))
    check("upstream_tcp" in e and set(e["upstream_tcp"]) == {"rtt_us", "retransmits"} and
          e["upstream_tcp"]["rtt_us"] > 0 and e["upstream_tcp"]["retransmits"] == 0,
          "upstream_tcp: rtt_us > 0, retransmits 0", dump(e))
    check(TIME_RE.match(e["time"] or ""), "time is ISO 8601 UTC with milliseconds (%s)" % e["time"], "")
    ts = datetime.datetime.strptime(e["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    check(abs(ts - t0) < 5, "time is now (%.3f s from the request)" % (ts - t0), "")
    check(e["listener"] == "web" and e["downstream"] == me and e["method"] == "GET" and
          e["host"] == "svc.example" and e["cluster"] == "app" and e["endpoint"] == b.address,
          "listener web, downstream %s (the client), method GET, host svc.example, cluster app, endpoint %s" %
          (me, b.address), dump(e))
    check(e["status"] == 200 and e["request_body_bytes"] == 0 and e["response_body_bytes"] == len(r.body) and
          e["attempts"] == 1 and e["flags"] == [],
          "status 200, request_body_bytes 0, response_body_bytes %d, attempts 1, flags []" % len(r.body), dump(e))
    t = e["timings_us"]
    check(all(isinstance(t[k], int) and t[k] >= 0 for k in TIMING_KEYS), "every phase happened (>= 0)", dump(t))
    check(not waterfall_problems(t), "waterfall downstream_headers <= request_sent <= upstream_first_byte <= "
          "response_done", repr(waterfall_problems(t)))
    check(t["pool_wait"] + t["upstream_connect"] <= t["request_sent"] + 1000,
          "pool_wait + upstream_connect (%d + %d us) fit before request_sent (%d us)" %
          (t["pool_wait"], t["upstream_connect"], t["request_sent"]), dump(t))
    check(t["upstream_connect"] > 0, "a new connection: upstream_connect %d us > 0" % t["upstream_connect"], dump(t))
    check(t["response_done"] <= took_us + 1000,
          "response_done (%d us) is within the client's round trip (%.0f us)" % (t["response_done"], took_us), "")
    # request id and trace as the backend saw them
    rec = b.requests_for(lambda x: x["target"] == "/fast?q=1")[0]
    rid = backend_header(rec, "x-request-id")
    tp = backend_header(rec, "traceparent")
    check(rid == [e["request_id"]] and UUID_RE.match(e["request_id"]),
          "request_id %s is the generated UUID the backend got as X-Request-Id" % e["request_id"], repr(rid))
    check(tp == [e["traceparent"]], "the backend got exactly the logged traceparent", "%r vs %r" %
          (tp, e["traceparent"]))
    m = TRACEPARENT_RE.match(e["traceparent"])
    check(m and m.group(1) != "0" * 32 and m.group(2) != "0" * 16,
          "a new valid traceparent was generated (%s)" % e["traceparent"], "")
    check([list(h) for h in echo["headers"]] == [list(h) for h in rec["headers"]],
          "(the echo shows the same headers)", "")

    # the second request on the same connection: reused, new ids, a request body
    body = b"z" * 1234
    r = c.request("POST", "/second", body=body)
    check(r.status == 200, "POST /second with 1234 body bytes: 200", r.describe())
    e2 = entry_for(path, "/second")
    check(e2["request_body_bytes"] == 1234 and e2["response_body_bytes"] == len(r.body) and e2["method"] == "POST",
          "request_body_bytes 1234, response_body_bytes %d" % len(r.body), dump(e2))
    check(e2["timings_us"]["upstream_connect"] == 0, "a reused pooled connection: upstream_connect 0", dump(e2))
    check(e2["request_id"] != e["request_id"] and TRACEPARENT_RE.match(e2["traceparent"]).group(1) != m.group(1),
          "a new request id and a new trace id for the next request", dump(e2))
    check(not waterfall_problems(e2["timings_us"]), "its waterfall is monotonic", dump(e2))
    c.close()
    hu.stop_and_check(sl)


def case_client_traceparent_and_request_id_kept():
    b = HttpBackend("a")
    path = tmp_log()
    sl = start([web(path)], [hu.cluster("app", [b])])
    port = sl.port("web")
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = "00f067aa0ba902b7"
    incoming = "00-%s-%s-01" % (trace, parent)
    r = hu.request_once(port, "GET", "/traced", headers=[("traceparent", incoming),
                                                           ("X-Request-Id", "client-id-42")])
    check(r.status == 200, "GET /traced with a valid traceparent and an X-Request-Id: 200", r.describe())
    e = entry_for(path, "/traced")
    rec = b.requests_for(lambda x: x["target"] == "/traced")[0]
    m = TRACEPARENT_RE.match(e["traceparent"] or "")
    check(m and m.group(1) == trace, "the logged traceparent keeps the client's trace id (%s)" % e["traceparent"],
          dump(e))
    check(m.group(2) != parent and m.group(2) != "0" * 16,
          "with a new parent id (%s, the client's was %s)" % (m.group(2), parent), "")
    check(m.group(3) == "01", "the sampled flag is kept (01)", e["traceparent"])
    check(backend_header(rec, "traceparent") == [e["traceparent"]],
          "the backend saw exactly the logged traceparent (one header)", repr(rec["headers"]))
    check(e["request_id"] == "client-id-42" and backend_header(rec, "x-request-id") == ["client-id-42"],
          "the client's X-Request-Id is kept, logged and forwarded", repr(rec["headers"]))
    # invalid traceparents: a new trace
    for i, bad in enumerate(("00-%s-%s" % (trace, parent), "00-%s-%s-01" % ("0" * 32, parent),
                             "00-%s-%s-01" % (trace, "0" * 16), "xx-%s-%s-01" % (trace, parent), "garbage")):
        tgt = "/badtrace/%d" % i
        r = hu.request_once(port, "GET", tgt, headers=[("traceparent", bad)])
        e = entry_for(path, tgt)
        rec = b.requests_for(lambda x, tgt=tgt: x["target"] == tgt)[0]
        m = TRACEPARENT_RE.match(e["traceparent"] or "")
        soft_check(r.status == 200 and m and m.group(1) != trace and m.group(1) != "0" * 32 and
                   backend_header(rec, "traceparent") == [e["traceparent"]],
                   "invalid traceparent %r: replaced by a new trace (%s), the only one forwarded" %
                   (bad, e["traceparent"]), repr(rec["headers"]))
    hu.stop_and_check(sl)


def case_slow_backend_shows_in_first_byte():
    b = HttpBackend("a")
    path = tmp_log()
    sl = start([web(path)], [hu.cluster("app", [b])])
    r = hu.request_once(sl.port("web"), "GET", "/delay/300/slow")
    check(r.status == 200, "GET /delay/300/slow: 200", r.describe())
    e = entry_for(path, "/delay/300/slow")
    t = e["timings_us"]
    info("timings: %r" % t)
    gap = t["upstream_first_byte"] - t["request_sent"]
    check(gap >= 300000, "upstream_first_byte - request_sent = %d us >= 300 ms" % gap, dump(t))
    check(gap < 1500000, "(and not absurdly more: %d us)" % gap, dump(t))
    check(0 <= t["pool_wait"] < 100000 and 0 <= t["request_sent"] < 100000,
          "pool_wait (%d us) and request_sent (%d us) stay small" % (t["pool_wait"], t["request_sent"]), dump(t))
    check(not waterfall_problems(t) and t["response_done"] >= 300000, "waterfall monotonic, done after 300 ms",
          dump(t))
    hu.stop_and_check(sl)


def case_saturated_pool_shows_in_pool_wait():
    b = HttpBackend("a")
    path = tmp_log()
    # one worker: the cluster's max_connections is shared among workers (rounded up)
    sl = start([web(path)], [hu.cluster("app", [b], pool={"max_connections": 1})], workers=1)
    port = sl.port("web")
    res = {}

    def req(name, target):
        try:
            res[name] = hu.request_once(port, "GET", target, timeout=10).status
        except Exception as ex:
            res[name] = repr(ex)

    t1 = threading.Thread(target=req, args=("first", "/delay/800/first"), daemon=True)
    t1.start()
    check(harness.wait_until(lambda: b.requests_for(lambda x: "/first" in x["target"]), 5),
          "the first slow request holds the only pooled connection", repr(b.stats()))
    t2 = threading.Thread(target=req, args=("second", "/delay/10/second"), daemon=True)
    sent2 = time.monotonic()
    t2.start()
    t1.join(10)
    t2.join(10)
    check(res == {"first": 200, "second": 200}, "both complete with 200", repr(res))
    first = entry_for(path, "/delay/800/first")
    second = entry_for(path, "/delay/10/second")
    info("first: %r" % first["timings_us"])
    info("second: %r" % second["timings_us"])
    f, s = first["timings_us"], second["timings_us"]
    check(f["pool_wait"] < 100000, "the first waited little for the pool (%d us)" % f["pool_wait"], dump(f))
    check(s["pool_wait"] >= 500000,
          "the second's pool_wait (%d us) >= 500 ms (the first's remaining ~800 ms)" % s["pool_wait"], dump(s))
    check(s["pool_wait"] <= f["response_done"] + 20000,
          "and no longer than the first's whole duration (%d us)" % f["response_done"], "")
    check(s["upstream_connect"] == 0, "the second reused the connection: upstream_connect 0", dump(s))
    check(s["request_sent"] >= s["pool_wait"] and not waterfall_problems(s),
          "its request_sent (%d us) comes after the wait; waterfall monotonic" % s["request_sent"], dump(s))
    recs = b.requests_for(lambda x: "/first" in x["target"] or "/second" in x["target"])
    check(len(recs) == 2 and recs[0]["conn"] == recs[1]["conn"] and b.stats()["connections"] == 1,
          "the backend saw both on one connection", repr(b.stats()))
    info("(client sent the second %.0f ms before it was answered)" % ((time.monotonic() - sent2) * 1000))
    hu.stop_and_check(sl)


def case_connect_failure():
    b = HttpBackend("a")
    hold, dead_port = harness.free_port_holder()
    dead = "127.0.0.1:%d" % dead_port
    path = tmp_log()
    routes = [{"match": {"prefix": "/dead/"}, "cluster": "dead", "retries": {"num_retries": 0}},
              {"match": {"prefix": "/"}, "cluster": "app"}]
    sl = start([web(path, routes)], [hu.cluster("app", [b]), hu.cluster("dead", [dead])])
    r = hu.request_once(sl.port("web"), "GET", "/dead/x")
    check(r.status in (502, 503), "GET /dead/x (refused endpoint, retries off): %d" % r.status, r.describe())
    e = entry_for(path, "/dead/x")
    info("line: %s" % json.dumps(e))
    check(e["status"] == r.status, "the logged status is the one the client got (%d)" % r.status, dump(e))
    check(e["flags"] == ["upstream_connect_failure"], "flags exactly [upstream_connect_failure] (%r)" % e["flags"],
          dump(e))
    check(e["attempts"] == 1, "one attempt, not retried", dump(e))
    check(r.body == b"upstream connect error: connection refused\n",
          "the client's body names the cause, not the address: %r" % r.body, r.describe())
    check(dead in e.get("detail", "") and "connection refused" in e.get("detail", ""),
          "the access log's detail names the endpoint and the reason (%r)" % e.get("detail"), dump(e))
    t = e["timings_us"]
    check(t["upstream_first_byte"] == -1, "upstream_first_byte -1", dump(t))
    check(t["response_done"] >= 0 and t["downstream_headers"] >= 0 and not waterfall_problems(t),
          "response_done happened (%d us); waterfall monotonic" % t["response_done"], dump(t))
    check(e["cluster"] == "dead" and e["endpoint"] == dead, "cluster dead, endpoint %s" % dead, dump(e))
    soft_check(e["response_body_bytes"] == len(r.body),
               "response_body_bytes is the size of the body the client got (%d)" % len(r.body), dump(e))
    check("upstream_tcp" not in e, "no upstream_tcp (no upstream response)", dump(e))
    hu.stop_and_check(sl)


def case_local_reply_detail_full():
    """http.local_reply_detail: full puts the endpoint and the exact reason in the client's body
    (internal deployments); the access log's detail is the same text."""
    hold, dead_port = harness.free_port_holder()
    dead = "127.0.0.1:%d" % dead_port
    path = tmp_log()
    listener = hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "dead", "retries": {"num_retries": 0}}],
                                  http={"local_reply_detail": "full"}, access_log={"path": path})
    sl = start([listener], [hu.cluster("dead", [dead])])
    r = hu.request_once(sl.port("web"), "GET", "/full")
    e = entry_for(path, "/full")
    want = "upstream connect error: connection refused (%s)" % dead
    check(r.status == 502 and r.body == (want + "\n").encode(),
          "the client's body names the endpoint and the reason: %r" % want, r.describe())
    check(e["detail"] == want and e["flags"] == ["upstream_connect_failure"],
          "the access log: the same detail, flags exactly [upstream_connect_failure]", dump(e))
    hu.stop_and_check(sl)


def case_local_replies():
    b = HttpBackend("a")
    path = tmp_log()
    routes = [{"match": {"path": "/direct"}, "direct_response": {"status": 200, "body": "hello direct\n"}},
              {"match": {"path": "/direct404"}, "direct_response": {"status": 404, "body": "not here\n"}},
              {"match": {"path": "/moved"}, "redirect": {"status": 302, "location": "http://example.com/"}},
              {"match": {"prefix": "/app/"}, "cluster": "app"}]
    sl = start([web(path, routes)], [hu.cluster("app", [b])])
    port = sl.port("web")
    for target, status, flag in (("/noroute", 404, "no_route"), ("/direct", 200, "direct_response"),
                                 ("/direct404", 404, "direct_response"), ("/moved", 302, "redirect")):
        r = hu.request_once(port, "GET", target)
        check(r.status == status, "GET %s: %d" % (target, status), r.describe())
        e = entry_for(path, target)
        t = e["timings_us"]
        check(e["status"] == status and e["flags"] == [flag] and e["endpoint"] == "" and e["attempts"] == 0,
              "logged: status %d, flags exactly [%s], endpoint \"\", attempts 0" % (status, flag), dump(e))
        check(all(t[k] == -1 for k in ("pool_wait", "upstream_connect", "request_sent", "upstream_first_byte"))
              and t["response_done"] >= 0 and "upstream_tcp" not in e,
              "no upstream phase (-1), response_done %d us, no upstream_tcp" % t["response_done"], dump(e))
        soft_check(e["response_body_bytes"] == len(r.body),
                   "response_body_bytes == the %d body bytes the client got (got %r)" %
                   (len(r.body), e["response_body_bytes"]), dump(e))
    check(b.stats()["requests"] == 0, "nothing reached the backend", repr(b.stats()))
    hu.stop_and_check(sl)


def case_mode_errors_and_slow():
    b = HttpBackend("a")
    path = tmp_log()
    sl = start([web(path, mode="errors_and_slow", slow_threshold="250ms")], [hu.cluster("app", [b])], workers=1)
    port = sl.port("web")
    plan = [("/ok/1", 200), ("/ok/2", 200), ("/status/404", 404), ("/status/503", 503), ("/ok/3", 200),
            ("/delay/400/slow", 200), ("/delay/50/fastish", 200), ("/status/201", 201), ("/status/500/last", 500)]
    got = [hu.request_once(port, "GET", t).status for t, _ in plan]
    check(got == [s for _, s in plan], "sent %d requests: %r" % (len(plan), got), "")
    wait_entries(path, by_target("/status/500/last"))
    logged = [e.get("target") for e in read_log(path)]
    check(logged == ["/status/503", "/delay/400/slow", "/status/500/last"],
          "only the 503, the slow request (400 ms > 250 ms) and the 500 are logged", repr(logged))
    hu.stop_and_check(sl)


def case_sample_zero_logs_only_errors():
    b = HttpBackend("a")
    hold, dead_port = harness.free_port_holder()
    path = tmp_log()
    routes = [{"match": {"prefix": "/dead/"}, "cluster": "dead", "retries": {"num_retries": 0}},
              {"match": {"prefix": "/"}, "cluster": "app"}]
    sl = start([web(path, routes, mode="sample", sample_percent=0)],
               [hu.cluster("app", [b]), hu.cluster("dead", ["127.0.0.1:%d" % dead_port])], workers=1)
    port = sl.port("web")
    statuses = [hu.request_once(port, "GET", "/ok/%d" % i).status for i in range(20)]
    statuses.append(hu.request_once(port, "GET", "/delay/300/slow").status)
    statuses.append(hu.request_once(port, "GET", "/status/502").status)
    statuses.append(hu.request_once(port, "GET", "/dead/x").status)
    statuses += [hu.request_once(port, "GET", "/ok/after/%d" % i).status for i in range(5)]
    statuses.append(hu.request_once(port, "GET", "/status/500/last").status)
    check(statuses[:21] == [200] * 21 and statuses[21] == 502 and statuses[22] in (502, 503) and
          statuses[23:28] == [200] * 5 and statuses[28] == 500, "sent 26 x 200, 502, a connect failure, 500",
          repr(statuses))
    wait_entries(path, by_target("/status/500/last"))
    logged = [e.get("target") for e in read_log(path)]
    check(logged == ["/status/502", "/dead/x", "/status/500/last"],
          "sample_percent 0: only the errors are logged", repr(logged))
    hu.stop_and_check(sl)


def case_tcp_listener_line():
    srv = harness.DataServer()
    path = tmp_log()
    lst = {"name": "tcp_in", "address": "127.0.0.1:0", "protocol": "tcp", "cluster": "data",
           "access_log": {"path": path}}
    sl = start([lst], [hu.cluster("data", [srv])])
    up, down = 54321, 123456
    c = harness.DataClient(sl.port("tcp_in"), 1, up, down, flags=harness.FLAG_ANSWER_AFTER_EOF, timeout=10)
    me = "127.0.0.1:%d" % c.sock.getsockname()[1]
    t0 = time.monotonic()
    check(c.wait(15), "the connection finished", "")
    took_us = (time.monotonic() - t0) * 1e6
    check(harness.verify_exchange(srv, c, up, down) is None, "%d bytes up, %d down, intact" % (up, down), "")
    c.close()
    got = wait_entries(path, lambda e: e.get("downstream") == me)
    check(len(got) == 1, "one access log line for the connection", "\n".join(json.dumps(e) for e in read_log(path)))
    e = got[0]
    info("line: %s" % json.dumps(e))
    check(set(e) == TCP_KEYS, "exactly the documented TCP fields", "got %r" % sorted(e))
    check(TIME_RE.match(e["time"]) and e["listener"] == "tcp_in" and e["cluster"] == "data" and
          e["endpoint"] == srv.address and e["attempts"] == 1,
          "time, listener tcp_in, cluster data, endpoint %s, attempts 1" % srv.address, dump(e))
    check(e["bytes_to_upstream"] == harness.HEADER_LEN + up and e["bytes_to_downstream"] == down,
          "bytes_to_upstream %d (what the client sent), bytes_to_downstream %d (what the backend sent)" %
          (harness.HEADER_LEN + up, down), dump(e))
    check(isinstance(e["close_reason"], str) and e["close_reason"], "close_reason %r" % e["close_reason"], "")
    t = e["timings_us"]
    check(set(t) == {"upstream_connect", "duration"} and 0 <= t["upstream_connect"] <= t["duration"] and
          t["duration"] <= took_us + 200000,
          "timings: upstream_connect %r <= duration %r us" % (t.get("upstream_connect"), t.get("duration")), dump(t))
    check(e["upstream_tcp"]["rtt_us"] > 0 and e["upstream_tcp"]["retransmits"] == 0,
          "upstream_tcp: rtt_us > 0, no retransmits", dump(e))
    hu.stop_and_check(sl)


def case_path_dash_is_stdout():
    b = HttpBackend("a")
    sl = start([web(hu._Quoted("-"))], [hu.cluster("app", [b])])
    r = hu.request_once(sl.port("web"), "GET", "/to-stdout")
    check(r.status == 200, "GET /to-stdout: 200", r.describe())

    def line():
        with sl._cv:
            out = list(sl.stdout_lines)
        for l in out:
            try:
                e = json.loads(l)
            except ValueError:
                continue
            if e.get("target") == "/to-stdout":
                return e
        return None
    e = harness.wait_until(line, 3)
    check(e and e["status"] == 200 and e["endpoint"] == b.address,
          "its JSON line appears on sluice's standard output", "stdout:\n%s" % "\n".join(sl.stdout_lines[-10:]))
    check(not sl.find_lines('"target":"/to-stdout"'), "and not on standard error", "")
    hu.stop_and_check(sl)


def write_config(d, name, listeners, clusters):
    p = os.path.join(d, name)
    with open(p, "w") as f:
        f.write(hu.config(listeners, clusters))
    return p


def case_unwritable_path_exits_1():
    d = tmp_dir()
    b = HttpBackend("a")
    bad = "/nonexistent/dir/x.log"
    cfg = write_config(d, "bad.yaml", [web(bad)], [hu.cluster("app", [b])])
    p = harness.run_sluice_cmd(["run", "-c", cfg], timeout=15)
    check(p.returncode == 1, "sluice run with access_log.path %s exits 1 (rc %r)" % (bad, p.returncode), p.stderr)
    want = "listener web: access log %s: No such file or directory" % bad
    check(want in p.stderr, "stderr says '%s'" % want, p.stderr)
    check("sluice ready" not in p.stderr, "it never reported ready", p.stderr)
    # a directory is not a writable file either
    cfg = write_config(d, "dir.yaml", [web(d)], [hu.cluster("app", [b])])
    p = harness.run_sluice_cmd(["run", "-c", cfg], timeout=15)
    check(p.returncode == 1 and "listener web: access log %s:" % d in p.stderr,
          "access_log.path a directory: exit 1, 'listener web: access log DIR: ...'", p.stderr)
    info("message: %s" % [l for l in p.stderr.splitlines() if "access log" in l][:1])


def locate(text, needle):
    i = text.index(needle)
    return text.count("\n", 0, i) + 1, i - (text.rindex("\n", 0, i) + 1) + 1


def case_config_errors():
    d = tmp_dir()
    good = hu.config([web(os.path.join(d, "a.log"), mode="errors_and_slow")],
                     [hu.cluster("app", ["127.0.0.1:9"])])
    p_good = os.path.join(d, "good.yaml")
    with open(p_good, "w") as f:
        f.write(good)
    p = harness.run_sluice_cmd(["check", "-c", p_good])
    check(p.returncode == 0, "sluice check on a config with an access_log exits 0", p.stdout + p.stderr)
    cases = [
        ("bad_mode", "mode: errors_and_slow", "mode: loud", "loud",
         "listeners[0].access_log.mode: expected one of: all, errors_and_slow, sample, got 'loud'"),
        ("unknown_key", "mode: errors_and_slow", "mode: errors_and_slow\n      colour: blue", "colour",
         "listeners[0].access_log.colour: unknown"),
    ]
    for name, old, new, needle, want in cases:
        assert good.count(old) == 1, old
        text = good.replace(old, new)
        path = os.path.join(d, name + ".yaml")
        with open(path, "w") as f:
            f.write(text)
        line, col = locate(text, needle)
        for cmd in ("check", "run"):
            p = harness.run_sluice_cmd([cmd, "-c", path], timeout=10)
            prefix = "%s:%d:%d: " % (path, line, col)
            lines = [l for l in p.stderr.splitlines() if l.startswith(prefix)]
            soft_check(p.returncode == 1 and lines and lines[0][len(prefix):].startswith(want),
                       "%s, sluice %s: exit 1, 'FILE:%d:%d: %s'" % (name, cmd, line, col, want),
                       "rc=%r\n%s" % (p.returncode, p.stderr))
    for val in ("101", "-1"):
        text = good.replace("mode: errors_and_slow", "mode: sample\n      sample_percent: %s" % val)
        path = os.path.join(d, "pct%s.yaml" % val)
        with open(path, "w") as f:
            f.write(text)
        p = harness.run_sluice_cmd(["check", "-c", path])
        soft_check(p.returncode == 1 and "listeners[0].access_log.sample_percent" in p.stderr,
                   "sample_percent %s: exit 1 naming listeners[0].access_log.sample_percent" % val,
                   "rc=%r\n%s" % (p.returncode, p.stderr))


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_fast_200_fields_request_id_and_new_trace, case_client_traceparent_and_request_id_kept,
                       case_slow_backend_shows_in_first_byte, case_saturated_pool_shows_in_pool_wait,
                       case_connect_failure, case_local_reply_detail_full, case_local_replies, case_mode_errors_and_slow,
                       case_sample_zero_logs_only_errors, case_tcp_listener_line, case_path_dash_is_stdout, case_unwritable_path_exits_1,
                       case_config_errors])

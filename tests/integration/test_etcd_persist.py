#!/usr/bin/env python3
"""The last good set of an etcd cluster persisted to a file (`etcd.persist`), against a real
etcd (Debian's etcd-server) started by the test on loopback ports:

- with etcd up, each applied set is written to the file (the file source's format with the
  cluster, the revision and when it was written); sluice stopped, etcd stopped, sluice started
  again: it serves the persisted endpoints (the backend's answers name them), /clusters says
  stale, and the log says where the set came from and its age; etcd started again with a
  changed set: sluice follows it and persists the new set;
- with initial_fetch_timeout, the persisted set is served once that has passed;
- a corrupt persist file, or one of another cluster, is logged with its location and ignored:
  sluice starts without the endpoints (503) and follows etcd once it answers; a persist file
  that cannot be written is logged, and the cluster keeps following etcd;
- `sluice check`: a relative path, a directory's path, or two clusters persisting to one file
  are located errors; so are a batch_window past 10 s and a registration password without a
  username.
"""

import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
import http_util as hu  # noqa: E402
from test_endpoint_drain import start  # noqa: E402
from test_etcd_discovery import Etcd, PREFIX, etcd_cluster, source  # noqa: E402
from test_file_discovery import AnyLoopback, spread, wait_listed, listed  # noqa: E402


def persisted(path):
    """The persisted document, or None while there is none (or a half-written one)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def wait_persisted(path, want, timeout=10):
    """Waits until the file lists exactly `want` ({address: weight}); returns the document."""
    got = [None]

    def ok():
        got[0] = persisted(path)
        return got[0] is not None and {e["address"]: e["weight"] for e in got[0]["endpoints"]} == want
    check(harness.wait_until(ok, timeout, 0.05), "%s lists %r" % (path, want), repr(got[0]))
    return got[0]


def tmpdir():
    return tempfile.mkdtemp(prefix="sluice-persist-")


def case_cold_start_serves_the_persisted_set():
    be = AnyLoopback()
    etcd = Etcd()
    path = os.path.join(tmpdir(), "app.json")
    a, b, c = ("127.0.41.%d:%d" % (i, be.port) for i in (1, 2, 3))
    etcd.put(PREFIX + "a", {"address": a})
    rev = etcd.put(PREFIX + "b", {"address": b, "weight": 3})
    cluster = etcd_cluster(etcd, persist=path)
    sl, ap = start([cluster], workers=2)
    check(wait_listed(ap, {a: 1, b: 3}) == {a: 1, b: 3}, "etcd up: a and b (weight 3) listed", "")
    doc = wait_persisted(path, {a: 1, b: 3})
    check(doc["cluster"] == "app" and doc["revision"] == rev and isinstance(doc["written_unix"], int) and
          doc["endpoints"] == [{"address": a, "weight": 1}, {"address": b, "weight": 3}],
          "the file: cluster app, revision %d, written_unix, the two endpoints" % rev, repr(doc))
    check(not [n for n in os.listdir(os.path.dirname(path)) if n != "app.json"],
          "no temporary file is left beside it", repr(os.listdir(os.path.dirname(path))))
    hu.stop_and_check(sl)

    # A cold start while etcd is down: the persisted set serves, stale.
    etcd.kill()
    sl, ap = start([cluster], workers=2)
    port = sl.port("web")
    line = re.compile(r"cluster app: etcd not reached; serving the 2 endpoints persisted in %s (\d+)s ago "
                      r"\(revision %d\), stale until etcd answers$" % (re.escape(path), rev))
    found = sl.wait_log(lambda l: line.search(l) is not None, 10)
    check(found is not None and int(line.search(found).group(1)) < 120,
          "log: 'etcd not reached; serving the 2 endpoints persisted in %s Ns ago (revision %d), stale until "
          "etcd answers'" % (path, rev), hu.log_tail(sl))
    check(listed(ap)[0] == {a: 1, b: 3}, "/clusters lists the persisted a and b (weight 3)", repr(listed(ap)))
    src = source(ap)
    check(src["state"] == "stale" and src["endpoints"] == 2 and src["updates"] == 1,
          "/clusters: the source is stale with 2 endpoints (1 update: the persisted set)", repr(src))
    s = spread(port, 40)
    check(s == {"127.0.41.1": 10, "127.0.41.2": 30}, "etcd down at start: 40 requests split 10:30 over the "
          "persisted endpoints", repr(dict(s)))

    # etcd back with a changed set: followed, and persisted in turn.
    etcd.start()
    etcd.delete(PREFIX + "a")
    rev = etcd.put(PREFIX + "c", {"address": c})
    got = wait_listed(ap, {b: 3, c: 1}, 20)
    check(got == {b: 3, c: 1}, "etcd back: the changed set (b, c) is followed", repr(got))
    check(harness.wait_until(lambda: source(ap)["state"] == "synced", 10), "the source is synced",
          repr(source(ap)))
    s = spread(port, 40)
    check(s == {"127.0.41.2": 30, "127.0.41.3": 10}, "40 requests split 30:10 over b and c", repr(dict(s)))
    doc = wait_persisted(path, {b: 3, c: 1})
    check(doc["revision"] == rev, "the new set is persisted at revision %d" % rev, repr(doc))
    hu.stop_and_check(sl)


def case_after_initial_fetch_timeout():
    be = AnyLoopback()
    etcd = Etcd(start=False)
    d = tmpdir()
    path = os.path.join(d, "app.json")
    a = "127.0.42.1:%d" % be.port
    with open(path, "w") as f:
        json.dump({"cluster": "app", "written_unix": 1, "revision": 9, "endpoints": [{"address": a}]}, f)
    sl, ap = start([etcd_cluster(etcd, persist=path, initial_fetch_timeout="1s")], workers=2)
    gave_up = ("cluster app: no endpoints from etcd within initial_fetch_timeout 1s; serving the 1 endpoints "
               "persisted in %s " % path)
    lines = list(sl.lines)
    at = [i for i, l in enumerate(lines) if gave_up in l and l.endswith("(revision 9), stale until etcd answers")]
    ready = [i for i, l in enumerate(lines) if "sluice ready" in l]
    check(at and ready and at[0] < ready[0], "log: '%s...' before 'sluice ready'" % gave_up, hu.log_tail(sl))
    check(spread(sl.port("web"), 10) == {"127.0.42.1": 10}, "past initial_fetch_timeout: 10 requests to the "
          "persisted endpoint", "")
    check(source(ap)["state"] == "stale", "source stale", repr(source(ap)))
    hu.stop_and_check(sl)


def case_bad_persist_files_are_ignored():
    be = AnyLoopback()
    etcd = Etcd(start=False)
    d = tmpdir()
    a = "127.0.43.1:%d" % be.port
    corrupt, other = os.path.join(d, "corrupt.json"), os.path.join(d, "other.json")
    with open(corrupt, "w") as f:
        f.write('{"cluster": "app", "endpoints": [{"address": ')
    with open(other, "w") as f:
        json.dump({"cluster": "web", "endpoints": [{"address": a}]}, f)
    for path, why in ((corrupt, "parse error at line 1, column 46: syntax error while parsing value - "
                       "unexpected end of input; expected '[', '{', or a literal"),
                      (other, "written for cluster 'web'")):
        sl, ap = start([etcd_cluster(etcd, persist=path)], workers=2)
        line = "cluster app: persisted set %s: %s; ignored" % (path, why)
        check(sl.wait_log(line, 10), "log: '%s'" % line, hu.log_tail(sl))
        r = hu.request_once(sl.port("web"), "GET", "/x")
        check(r.status == 503, "nothing usable persisted, etcd down: 503", r.describe())
        check(source(ap)["state"] == "stale" and source(ap)["endpoints"] == 0, "source stale, no endpoints",
              repr(source(ap)))
        hu.stop_and_check(sl)

    # A file that cannot be written (its directory is missing): logged; etcd is followed.
    etcd.start()
    etcd.put(PREFIX + "a", {"address": a})
    missing = os.path.join(d, "no-such-dir", "app.json")
    sl, ap = start([etcd_cluster(etcd, persist=missing)], workers=2)
    check(wait_listed(ap, {a: 1}) == {a: 1}, "etcd up: a listed", "")
    line = ("cluster app: cannot persist the endpoint set to %s: %s.%d.tmp: No such file or directory; trying "
            "again with the next set" % (missing, missing, sl.pid))
    check(sl.wait_log(line, 10), "log: '%s'" % line, hu.log_tail(sl))
    check(spread(sl.port("web"), 4) == {"127.0.43.1": 4}, "4 requests go to a", "")
    hu.stop_and_check(sl)


def case_check_errors():
    d = tmpdir()
    cfg = os.path.join(d, "c.yaml")
    head = ("listeners:\n  - name: web\n    address: 127.0.0.1:0\n    protocol: http\n"
            "    virtual_hosts:\n      - name: all\n        domains: ['*']\n"
            "        routes:\n          - match: {prefix: /}\n            cluster: app\n"
            "clusters:\n")

    def cluster(name, persist):
        return ("  - name: %s\n    type: etcd\n    etcd:\n      endpoints: [127.0.0.1:2379]\n"
                "      prefix: /services/%s/\n      persist: %s\n" % (name, name, persist))
    for body, want in (
            (cluster("app", "app.json"),
             "%s:17:16: clusters[0].etcd.persist: 'app.json': expected an absolute path such as "
             "/var/lib/sluice/app.json" % cfg),
            (cluster("app", "/var/lib/sluice/"),
             "%s:17:16: clusters[0].etcd.persist: '/var/lib/sluice/': expected a file's path, not a directory's"
             % cfg),
            (cluster("app", "/var/lib/sluice/x.json") + cluster("other", "/var/lib/sluice/x.json"),
             "%s:23:16: clusters[1].etcd.persist: '/var/lib/sluice/x.json' is the persist file of another "
             "cluster already (first defined at line 17)" % cfg),
            (cluster("app", "/var/lib/sluice/x.json") + "      batch_window: 11s\n",
             "%s:18:21: clusters[0].etcd.batch_window: expected a duration from 0s to 10s, got 11s" % cfg),
            (cluster("app", "/var/lib/sluice/x.json") + "registration:\n  endpoints: [127.0.0.1:2379]\n"
             "  key: /services/web/a\n  address: 127.0.0.1:80\n  password: pw\n",
             "%s:22:13: registration.password: username and password go together" % cfg)):
        with open(cfg, "w") as f:
            f.write(head + body)
        r = harness.run_sluice_cmd(["check", "-c", cfg])
        check(r.returncode != 0 and want in r.stderr.splitlines(), "check: '%s'" % want, r.stderr)


if __name__ == "__main__":
    harness.run_cases([case_cold_start_serves_the_persisted_set, case_after_initial_fetch_timeout,
                       case_bad_persist_files_are_ignored, case_check_errors])

#!/usr/bin/env python3
"""etcd auth tokens that expire: a real etcd (Debian's etcd-server) with auth on and simple
tokens living 2 s of disuse (`--auth-token-ttl 2`). etcd checks a token when a watch is made,
and on grant, put and revoke, but not while a watch runs nor on lease keepalives: so a quiet
sluice holds an expired token most of the time.

- the source (a user that may read the prefix, through a TCP relay the test can cut) and the
  registration (a user that may write its key) keep working past several TTLs: the watch
  follows a change made after the token expired, the keepalives go on;
- the relay cut: the watch is made again with the expired token, etcd refuses it, sluice
  authenticates again (logged, sluice_discovery_auth_renewals_total 1) and follows a change
  made meanwhile;
- the lease revoked behind sluice's back after the token expired: the grant is refused,
  sluice authenticates again (logged, auth_renewals 1 in /registration and the metric), and
  the key is put again; SIGTERM after another TTL: the revoke authenticates again first and
  the key is gone.
"""

import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
import http_util as hu  # noqa: E402
from test_endpoint_drain import start  # noqa: E402
from test_etcd_discovery import Etcd, PREFIX, b64, enable_auth, etcd_cluster  # noqa: E402
from test_etcd_registration import KEY, registered, view  # noqa: E402
from test_file_discovery import AnyLoopback, spread, wait_listed  # noqa: E402
from test_metrics import scrape  # noqa: E402
import urllib.error  # noqa: E402


class Relay:
    """A TCP relay on 127.0.0.1 to `target` (host, port); cut() closes every connection
    through it, as a network blip or a restarted load balancer would."""

    def __init__(self, target):
        self.target = target
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = []
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()
        harness.register_cleanup(self.close)

    def _accept(self):
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(self.target, timeout=5)
            up.settimeout(None)
            with self.lock:
                self.conns += [down, up]
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        harness.copy_until_eof(src, dst)
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass
        return len(conns)

    def close(self):
        self.listener.close()
        self.cut()


def token_of(etcd, name, password):
    return etcd._call("/v3/auth/authenticate", {"name": name, "password": password})["token"]


def token_expired(etcd, token):
    """Whether etcd refuses `token` now (a read of a key the user may read)."""
    saved, etcd.token = etcd.token, token
    try:
        etcd._call("/v3/kv/range", {"key": b64(PREFIX + "a")})
        return False
    except urllib.error.HTTPError as e:
        return e.code == 401
    finally:
        etcd.token = saved


def case_tokens_expire_and_are_renewed():
    be = AnyLoopback()
    etcd = Etcd(extra_args=["--auth-token-ttl", "2"])
    a, b, c = ("127.0.44.%d:%d" % (i, be.port) for i in (1, 2, 3))
    enable_auth(etcd, {"reader": ("readerpw", [("read", PREFIX, True)]),
                       "edge": ("edgepw", [("readwrite", KEY, False)])})
    etcd.put(PREFIX + "a", {"address": a})
    relay = Relay(("127.0.0.1", etcd.client_port))
    cluster = etcd_cluster(etcd, username="reader", password="readerpw")
    cluster["etcd"]["endpoints"] = [relay.address]
    reg = {"endpoints": [etcd.address], "key": KEY, "address": "127.0.40.1:8080", "ttl": "3s",
           "username": "edge", "password": "edgepw"}
    sl, ap = start([cluster], workers=2, extra={"registration": reg})
    port = sl.port("web")
    check(wait_listed(ap, {a: 1}) == {a: 1}, "with auth: a listed", "")
    check(harness.wait_until(lambda: registered(etcd) is not None and view(ap).get("state") == "registered", 10),
          "registered in etcd", repr(view(ap)))
    lease = registered(etcd)[1]
    # A token taken now, unused: etcd's TTL at work, seen from the test's side.
    probe = token_of(etcd, "reader", "readerpw")

    # Several TTLs of quiet: a keepalive every second, the watch open, no token used.
    first = view(ap)["keepalives"]
    check(harness.wait_until(lambda: view(ap)["keepalives"] >= first + 7, 20),
          "the registration's keepalives go on past several token TTLs (%d)" % (first + 7), repr(view(ap)))
    check(token_expired(etcd, probe), "a token unused for as long has expired (etcd answers 401)", "")
    etcd.put(PREFIX + "b", {"address": b})
    got = wait_listed(ap, {a: 1, b: 1})
    check(got == {a: 1, b: 1}, "a change made after the token expired is followed by the open watch", repr(got))
    check(spread(port, 10) == {"127.0.44.1": 5, "127.0.44.2": 5}, "10 requests split 5:5 over a and b", "")
    renewals = scrape(ap).get("sluice_discovery_auth_renewals_total", cluster="app", source="etcd")
    check(renewals == 0, "no token renewed yet (the watch never needed it)", repr(renewals))

    # The watch cut: made again with the expired token, refused, authenticated again.
    mark = sl.line_count()
    check(relay.cut() >= 2, "the relay cut sluice's watch connection", "")
    etcd.put(PREFIX + "c", {"address": c})
    got = wait_listed(ap, {a: 1, b: 1, c: 1}, 15)
    check(got == {a: 1, b: 1, c: 1}, "after the cut, a change made meanwhile is followed", repr(got))
    line = "cluster app: etcd %s refused the auth token; authenticating again" % relay.address
    check(sl.find_lines(line, mark), "log: '%s'" % line, hu.log_tail(sl))
    renewals = scrape(ap).get("sluice_discovery_auth_renewals_total", cluster="app", source="etcd")
    check(renewals == 1, "sluice_discovery_auth_renewals_total{cluster=app,source=etcd} 1", repr(renewals))

    # The lease revoked behind sluice's back once its token has expired: the grant is refused
    # first, then made with a new token.
    mark = sl.line_count()
    etcd.call("/v3/lease/revoke", {"ID": str(lease)})
    got = [None]

    def again():
        got[0] = registered(etcd)
        return got[0] is not None and got[0][1] not in (0, lease) and view(ap)["state"] == "registered"
    check(harness.wait_until(again, 15), "the key is put again under a new lease", repr(got[0]))
    line = "registration: etcd %s refused the auth token; authenticating again" % etcd.address
    check(sl.find_lines(line, mark), "log: '%s'" % line, hu.log_tail(sl))
    v = view(ap)
    check(v["auth_renewals"] == 1 and v["grants"] == 2 and v["puts"] == 2 and v["leases_lost"] == 1,
          "/registration: 1 token renewed, 2 grants, 2 puts, 1 lease lost", repr(v))
    check(scrape(ap).get("sluice_registration_auth_renewals_total") == 1, "sluice_registration_auth_renewals_total 1",
          "")

    # Quiet again past the TTL, then SIGTERM: the revoke needs a new token too.
    first = view(ap)["keepalives"]
    check(harness.wait_until(lambda: view(ap)["keepalives"] >= first + 5, 15), "keepalives past another TTL",
          repr(view(ap)))
    mark = sl.line_count()
    hu.stop_and_check(sl)
    check(registered(etcd) is None, "SIGTERM: the key is gone", repr(registered(etcd)))
    check(sl.find_lines(line, mark), "log: the revoke authenticated again first", hu.log_tail(sl))
    check(not sl.find_lines("it expires by its TTL", mark), "the revoke was answered", hu.log_tail(sl))


if __name__ == "__main__":
    harness.run_cases([case_tokens_expire_and_are_renewed])

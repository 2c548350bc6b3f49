#!/usr/bin/env python3
"""sluice's own key in etcd (`registration:`) against a real etcd (Debian's etcd-server) started
by the test on loopback ports:

- the key is put once sluice is ready (logged after "sluice ready"), under a lease sluice keeps
  alive; GET /registration and the metrics show it; on SIGTERM the lease is revoked first: while
  etcd does not answer yet the listener still serves, and the key is gone before sluice drains;
- the lease revoked behind sluice's back (as `etcdctl lease revoke` does): the next keepalive
  hears it is gone, sluice grants a new lease and puts the key again;
- etcd stopped for longer than the TTL and started again: the key is back, sluice registered;
- sluice cut off (stopped) while etcd runs, past the TTL: the lease expires and the key goes;
  once sluice runs again it hears the lease is gone, grants a new one and puts the key again;
- over TLS with a client certificate (etcd requiring one): put, kept alive, revoked;
- with etcd's auth on and a user whose role may write the registration key only: sluice
  authenticates, puts, keeps alive and revokes; a wrong password is logged and retried;
- a binary upgrade (POST /upgrade): the new process keeps the same lease alive (the old one does
  not revoke it), past several TTLs; SIGTERM to the new one removes the key.
"""

import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
import http_util as hu  # noqa: E402
from http_backend import HttpBackend  # noqa: E402
from test_etcd_discovery import Etcd, Pki, b64, enable_auth  # noqa: E402
from test_endpoint_drain import admin_config, ADMIN_RE  # noqa: E402
from test_metrics import scrape  # noqa: E402
import test_upgrade as up  # noqa: E402

KEY = "/services/web/sluice-1"
VALUE = '{"address":"127.0.40.1:8080"}'


def registered(etcd, key=KEY):
    """(value, lease id) of the key in etcd, or None when it is not there."""
    kvs = etcd.call("/v3/kv/range", {"key": b64(key)}).get("kvs", [])
    if not kvs:
        return None
    import base64
    return base64.b64decode(kvs[0].get("value", "")).decode(), int(kvs[0].get("lease", "0"))


def config(etcd, backend, ttl="3s", tls=None, **kw):
    reg = {"endpoints": [etcd.address], "key": KEY, "address": "127.0.40.1:8080", "ttl": ttl}
    if tls:
        reg["tls"] = tls
    reg.update(kw)
    return admin_config([hu.cluster("app", [backend])], extra={"registration": reg})


def start(etcd, backend, ttl="3s", tls=None, **kw):
    sl = up.start_sluice(config(etcd, backend, ttl, tls, **kw))
    line = sl.wait_log(ADMIN_RE, 5)
    if not line:
        raise harness.CheckFailed_with("no 'admin listening on' line", sl.stderr_text())
    return sl, int(ADMIN_RE.search(line).group(1))


def view(ap):
    r = hu.request_once(ap, "GET", "/registration", host="admin", timeout=5)
    return json.loads(r.body) if r.status == 200 else {"status": r.status}


def line_index(sl, text):
    for i, line in enumerate(list(sl.lines)):
        if text in line:
            return i
    return None


def wait_registered(etcd, ap, lease_not=None, timeout=15):
    """Waits until the key holds VALUE under a lease (other than lease_not) and sluice says
    registered under that same lease; returns the lease."""
    got = [None, None]

    def ok():
        got[0], got[1] = registered(etcd), view(ap)
        return (got[0] is not None and got[0][0] == VALUE and got[0][1] not in (0, lease_not) and
                got[1].get("state") == "registered" and got[1].get("lease") == str(got[0][1]))
    check(harness.wait_until(ok, timeout, 0.05), "etcd holds %s = %s under sluice's lease" % (KEY, VALUE),
          repr(got))
    return got[0][1]


def case_put_once_ready_and_revoked_before_draining():
    be = HttpBackend("a")
    etcd = Etcd()
    sl, ap = start(etcd, be)
    lease = wait_registered(etcd, ap)
    ready_at, put_at = line_index(sl, "sluice ready"), line_index(sl, "registration: %s put in etcd" % KEY)
    check(ready_at is not None and put_at is not None and ready_at < put_at,
          "log: the key is put after 'sluice ready' (lines %r < %r)" % (ready_at, put_at), hu.log_tail(sl))
    v = view(ap)
    check(v["key"] == KEY and v["value"] == VALUE and v["ttl_seconds"] == 3 and v["lease_hex"] == "%x" % lease
          and v["etcd"] == etcd.address and v["grants"] == 1 and v["puts"] == 1 and v["leases_lost"] == 0,
          "GET /registration: key, value, ttl 3, lease %x, 1 grant, 1 put" % lease, repr(v))
    # Two keepalives at a third of the TTL: the lease lives past its TTL.
    check(harness.wait_until(lambda: view(ap)["keepalives"] >= 4, 10), "keepalives renew the lease", repr(view(ap)))
    check(registered(etcd) == (VALUE, lease), "past the TTL: still the same key and lease", repr(registered(etcd)))
    m = scrape(ap)
    check(m.get("sluice_registration_state", state="registered") == 1 and
          m.get("sluice_registration_grants_total") == 1 and m.get("sluice_registration_puts_total") == 1 and
          m.get("sluice_registration_lease_ttl_seconds") == 3,
          "metrics: state registered, 1 grant, 1 put, lease TTL 3 s", "")

    # etcd paused: the revoke waits for it, and meanwhile sluice still accepts and serves.
    mark = sl.line_count()
    etcd.proc.send_signal(signal.SIGSTOP)
    try:
        sl.signal(signal.SIGTERM)
        check(sl.wait_log("registration: revoking lease %x (%s goes)" % (lease, KEY), 5, mark),
              "log: SIGTERM revokes the lease first", hu.log_tail(sl))
        r = hu.request_once(sl.port("web"), "GET", "/while-revoking", timeout=5)
        check(r.status == 200, "while the revoke waits for etcd the listener still serves: 200", r.describe())
        check(not sl.find_lines("stopped accepting", mark), "not draining yet", hu.log_tail(sl))
    finally:
        etcd.proc.send_signal(signal.SIGCONT)
    rc = sl.wait_exit(15)
    check(rc == 0, "sluice exits 0", repr(rc))
    check(registered(etcd) is None, "the key is gone from etcd", repr(registered(etcd)))
    revoked_at, drain_at = line_index(sl, "revoking lease"), line_index(sl, "stopped accepting")
    check(revoked_at is not None and drain_at is not None and revoked_at < drain_at,
          "log: revoked, then stopped accepting (lines %r < %r)" % (revoked_at, drain_at), hu.log_tail(sl))
    check(not sl.find_lines("it expires by its TTL", mark), "the revoke was answered", hu.log_tail(sl))


def case_revoked_lease_is_granted_again():
    be = HttpBackend("a")
    etcd = Etcd()
    sl, ap = start(etcd, be)
    lease = wait_registered(etcd, ap)
    mark = sl.line_count()
    etcd.call("/v3/lease/revoke", {"ID": str(lease)})
    check(registered(etcd) is None, "lease revoked behind sluice's back: the key is gone", "")
    second = wait_registered(etcd, ap, lease_not=lease)
    line = "registration: etcd no longer has lease %x; granting a new one and putting %s again" % (lease, KEY)
    check(sl.find_lines(line, mark), "log: '%s'" % line, hu.log_tail(sl))
    v = view(ap)
    check(v["grants"] == 2 and v["puts"] == 2 and v["leases_lost"] == 1,
          "2 grants, 2 puts, 1 lease lost (new lease %x)" % second, repr(v))
    hu.stop_and_check(sl)
    check(registered(etcd) is None, "SIGTERM: the key is gone", repr(registered(etcd)))


def case_etcd_down_past_the_ttl():
    be = HttpBackend("a")
    etcd = Etcd()
    sl, ap = start(etcd, be)
    wait_registered(etcd, ap)
    mark = sl.line_count()
    etcd.kill()
    check(harness.wait_until(lambda: view(ap)["failures"] >= 3, 15), "keepalives fail while etcd is down",
          repr(view(ap)))
    # Down for longer than the TTL (3 s): counted by failed keepalives, every 100 ms to 2 s apart.
    check(harness.wait_until(lambda: view(ap)["failures"] >= 6, 20), "etcd down past the TTL", repr(view(ap)))
    check(sl.find_lines("registration: etcd %s: " % etcd.address, mark), "log: the keepalive failed",
          hu.log_tail(sl))
    r = hu.request_once(sl.port("web"), "GET", "/etcd-down", timeout=5)
    check(r.status == 200, "etcd down: sluice serves", r.describe())
    etcd.start()
    check(sl.wait_log("registration: etcd %s answers again" % etcd.address, 20, mark), "log: etcd answers again",
          hu.log_tail(sl))
    # etcd renews every lease's TTL when it starts: the key is back under the same lease or,
    # had it expired, a new one.
    lease = wait_registered(etcd, ap, timeout=20)
    kept = view(ap)["keepalives"]
    check(harness.wait_until(lambda: view(ap)["keepalives"] >= kept + 2, 10), "keepalives answered again",
          repr(view(ap)))
    check(registered(etcd) == (VALUE, lease), "etcd back: the key is there under lease %x" % lease, "")
    hu.stop_and_check(sl)
    check(registered(etcd) is None, "SIGTERM: the key is gone", repr(registered(etcd)))


def case_lease_expired_while_cut_off():
    be = HttpBackend("a")
    etcd = Etcd()
    sl, ap = start(etcd, be)
    lease = wait_registered(etcd, ap)
    mark = sl.line_count()
    # sluice frozen for longer than the TTL while etcd runs: the lease expires, the key goes.
    sl.signal(signal.SIGSTOP)
    try:
        gone = harness.wait_until(lambda: registered(etcd) is None, 15, 0.1)
    finally:
        sl.signal(signal.SIGCONT)
    check(gone, "sluice cut off past the TTL: etcd expired the lease and the key", "")
    second = wait_registered(etcd, ap, lease_not=lease)
    line = "registration: etcd no longer has lease %x; granting a new one and putting %s again" % (lease, KEY)
    check(sl.find_lines(line, mark), "log: '%s'" % line, hu.log_tail(sl))
    check(view(ap)["leases_lost"] == 1, "1 lease lost; the key is back under lease %x" % second, repr(view(ap)))
    hu.stop_and_check(sl)


def case_over_tls_with_a_client_certificate():
    be = HttpBackend("a")
    pki = Pki()
    etcd = Etcd(pki=pki)
    sl, ap = start(etcd, be, tls={"ca": pki.ca, "certificate_chain": pki.client_cert,
                                  "private_key": pki.client_key})
    lease = wait_registered(etcd, ap)
    check(harness.wait_until(lambda: view(ap)["keepalives"] >= 2, 10), "keepalives over TLS", repr(view(ap)))
    hu.stop_and_check(sl)
    check(registered(etcd) is None, "SIGTERM: lease %x revoked over TLS, the key is gone" % lease,
          repr(registered(etcd)))


def case_with_auth():
    be = HttpBackend("a")
    etcd = Etcd()
    # The registering user may write its own key and nothing else.
    enable_auth(etcd, {"edge": ("edgepw", [("readwrite", KEY, False)])})
    sl, ap = start(etcd, be, username="edge", password="wrong")
    line = ("registration: etcd %s: authenticate: status 400: {\"error\":\"etcdserver: authentication failed, "
            "invalid user ID or password\",\"message\":\"etcdserver: authentication failed, invalid user ID or "
            "password\",\"code\":3} while granting; trying again" % etcd.address)
    check(sl.wait_log(line, 10), "a wrong password: log: '%s'" % line, hu.log_tail(sl))
    check(view(ap)["state"] == "granting" and registered(etcd) is None, "a wrong password: nothing registered",
          repr(view(ap)))
    hu.stop_and_check(sl)

    sl, ap = start(etcd, be, username="edge", password="edgepw")
    lease = wait_registered(etcd, ap)
    check(harness.wait_until(lambda: view(ap)["keepalives"] >= 3, 10), "with auth: keepalives renew the lease",
          repr(view(ap)))
    v = view(ap)
    check(v["grants"] == 1 and v["puts"] == 1 and v["failures"] == 0 and v["auth_renewals"] == 0,
          "with auth: 1 grant, 1 put, no failure, no token renewed", repr(v))
    hu.stop_and_check(sl)
    check(registered(etcd) is None, "SIGTERM: lease %x revoked with auth, the key is gone" % lease,
          repr(registered(etcd)))
    check(not sl.find_lines("it expires by its TTL"), "the revoke was answered", hu.log_tail(sl))


def case_upgrade_keeps_the_lease():
    be = HttpBackend("a")
    etcd = Etcd()
    sl, ap = start(etcd, be)
    lease = wait_registered(etcd, ap)
    old_pid = sl.pid
    status, body = up.post_upgrade(ap)
    new_pid = up.check_upgraded(status, body, old_pid)
    check(up.wait_old_exit(sl, 20) == 0, "the old process drains and exits 0", hu.log_tail(sl))
    check(sl.find_lines("registration: lease %x left to the new process" % lease),
          "log: the old process leaves the lease to the new one", hu.log_tail(sl))
    check(not sl.find_lines("revoking lease"), "the old process did not revoke", hu.log_tail(sl))
    v = view(ap)
    check(v.get("state") == "registered" and v.get("lease") == str(lease),
          "the new process (pid %d) is registered under the same lease %x" % (new_pid, lease), repr(v))
    # Several TTLs later the key still lives: the new process renews that lease.
    first = v["keepalives"]
    check(harness.wait_until(lambda: view(ap)["keepalives"] >= first + 7, 15),
          "the new process keeps the lease alive past two TTLs", repr(view(ap)))
    check(registered(etcd) == (VALUE, lease), "etcd: the same key under the same lease %x" % lease,
          repr(registered(etcd)))
    os.kill(new_pid, signal.SIGTERM)
    check(up.wait_pid_exit(new_pid, 20) is not None, "the new process exits on SIGTERM", "")
    check(registered(etcd) is None, "SIGTERM to the new process: the key is gone", repr(registered(etcd)))


if __name__ == "__main__":
    hu.use_default_bin()
    up.become_subreaper()
    import atexit
    atexit.register(up.kill_all_sluice)
    harness.run_cases([case_put_once_ready_and_revoked_before_draining, case_revoked_lease_is_granted_again,
                       case_etcd_down_past_the_ttl, case_lease_expired_while_cut_off,
                       case_over_tls_with_a_client_certificate, case_with_auth,
                       case_upgrade_keeps_the_lease])

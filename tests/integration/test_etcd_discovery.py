#!/usr/bin/env python3
"""Endpoints from etcd v3 (cluster type: etcd) against a real etcd (Debian's etcd-server)
started by the test on loopback ports with a data dir of its own.

- keys put, changed and deleted under the prefix: the cluster follows (a weight change moves
  the split); values that are not endpoints (invalid JSON, a bad address, an enormous value)
  are logged with their key and skipped, the rest applies; the revision gauge is etcd's;
- etcd killed: sluice keeps serving the last set (state stale, reconnects counted); etcd
  restarted and a key put before sluice reconnects: the watch resumes from the last revision
  and the update is not lost;
- etcd paused (SIGSTOP) longer than watch_timeout: the silent watch is taken as dead
  (logged), the last set still serves; resumed, a change made then is followed;
- a member that accepts but never answers is left after one call bound (5 s), not after the
  watch's 60 s: connecting and the watch's first answer have their own short bound;
- TLS: etcd with a certificate of a CA the test makes (openssl) and client certificates
  required: sluice reads and watches with its client certificate; a cluster told to trust
  another CA refuses the member and lists nothing;
- max_staleness: etcd down for longer than it makes /ready 503 with the reason while the last
  set still serves; the staleness gauge grows; etcd back, /ready 200 and the gauge 0;
- initial_fetch_timeout: startup waits for a first good read, retrying; past it, sluice goes on
  without the cluster's endpoints (logged, 503);
- etcd unreachable at start: sluice becomes ready without the cluster's endpoints (503) and
  lists them once etcd answers;
- compaction while sluice is cut off (sluice stopped with SIGSTOP while etcd restarts and
  compacts): the resumed watch hears it was compacted, sluice reads the prefix again and ends
  with the right set;
- auth: with a user and password (a role that may only read the prefix) sluice
  authenticates, follows, and after etcd restarts and compacts reads the prefix again.
"""

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
import http_util as hu  # noqa: E402
from test_metrics import scrape  # noqa: E402
from test_endpoint_drain import start  # noqa: E402
from test_file_discovery import AnyLoopback, spread, wait_listed, listed, admin_json  # noqa: E402

PREFIX = "/services/app/"


def free_port():
    s, port = harness.free_port_holder()
    s.close()
    return port


class Etcd:
    """One etcd member on 127.0.0.1 (client and peer ports chosen once, kept across restarts)."""

    def __init__(self, client_port=None, start=True, pki=None, side_door=False, extra_args=()):
        if not shutil.which("etcd"):
            raise harness.Skip("etcd is not installed (scripts/bootstrap installs etcd-server)")
        self.dir = tempfile.mkdtemp(prefix="sluice-etcd-")
        self.client_port, self.peer_port = client_port or free_port(), free_port()
        self.address = "127.0.0.1:%d" % self.client_port
        self.proc = None
        self.token = None
        self.login_as = None  # (name, password) the test's own calls authenticate with
        self.extra_args = list(extra_args)
        # side_door: a second client URL on 127.0.0.2 that the test's own calls use, so that
        # a partition of the first (sluice's) leaves the test able to write.
        self.side = "127.0.0.2:%d" % free_port() if side_door else None
        # With a Pki: HTTPS on the client port, and clients must show a certificate of its CA.
        self.pki = pki
        self.ssl = None
        if pki:
            import ssl
            self.ssl = ssl.create_default_context(cafile=pki.ca)
            self.ssl.load_cert_chain(pki.client_cert, pki.client_key)
        # Cleanups run last first: etcd is stopped, then its data (a 64 MB write-ahead log) goes.
        harness.register_cleanup(lambda: shutil.rmtree(self.dir, ignore_errors=True))
        harness.register_cleanup(self.kill)
        if start:
            self.start()

    def start(self):
        url = "%s://127.0.0.1:%d" % ("https" if self.pki else "http", self.client_port)
        peer = "http://127.0.0.1:%d" % self.peer_port
        self.log = open(os.path.join(self.dir, "etcd.log"), "ab")
        tls = []
        if self.pki:
            tls = ["--cert-file", self.pki.server_cert, "--key-file", self.pki.server_key,
                   "--trusted-ca-file", self.pki.ca, "--client-cert-auth"]
        self.proc = subprocess.Popen(
            ["etcd", "--name", "t", "--data-dir", os.path.join(self.dir, "data"),
             "--listen-client-urls", url + (",http://" + self.side if self.side else ""),
             "--advertise-client-urls", url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", "t=" + peer, "--experimental-watch-progress-notify-interval", "1s"] + tls +
            self.extra_args,
            stdout=self.log, stderr=self.log, preexec_fn=harness.die_with_parent)
        self.token = None
        ok = harness.wait_until(lambda: self._healthy(), 20, 0.05)
        if not ok:
            raise harness.CheckFailed_with("etcd starts", open(os.path.join(self.dir, "etcd.log")).read()[-3000:])

    def _healthy(self):
        try:
            self.call("/v3/kv/range", {"key": b64("health")})
            return True
        except urllib.error.HTTPError as e:
            if e.code == 503:
                return False  # up, not serving yet
            return True  # it answers (with auth on, a request without a token is refused)
        except Exception:
            return False

    def login(self, name, password):
        """The test's own calls carry a token of this user from now on (renewed when refused)."""
        self.login_as = (name, password)
        self.token = None
        self.token = self.call("/v3/auth/authenticate", {"name": name, "password": password})["token"]

    def call(self, path, body):
        if self.login_as and not self.token and path != "/v3/auth/authenticate":
            self.login(*self.login_as)  # etcd restarted: a call without a token is refused
        try:
            return self._call(path, body)
        except urllib.error.HTTPError as e:
            if e.code != 401 or not self.login_as or path == "/v3/auth/authenticate":
                raise
            self.login(*self.login_as)  # the token expired (--auth-token-ttl) or etcd restarted
            return self._call(path, body)

    def _call(self, path, body):
        scheme = "https" if self.pki else "http"
        req = urllib.request.Request("%s://%s%s" % (scheme, self.side or self.address, path), data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        if self.token:
            req.add_header("Authorization", self.token)
        with urllib.request.urlopen(req, timeout=5, context=self.ssl) as r:
            return json.loads(r.read())

    def put(self, key, value):
        """Returns the revision of the put."""
        v = value if isinstance(value, str) else json.dumps(value)
        return int(self.call("/v3/kv/put", {"key": b64(key), "value": b64(v)})["header"]["revision"])

    def delete(self, key):
        return int(self.call("/v3/kv/deleterange", {"key": b64(key)})["header"]["revision"])

    def compact(self, revision):
        self.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Pki:
    """A CA, a server certificate for 127.0.0.1 (an IP SAN) and a client certificate, made with
    the openssl CLI in a directory of their own."""

    def __init__(self):
        if not shutil.which("openssl"):
            raise harness.Skip("the openssl command is not installed")
        self.dir = tempfile.mkdtemp(prefix="sluice-etcd-pki-")
        harness.register_cleanup(lambda: shutil.rmtree(self.dir, ignore_errors=True))
        self.ca, self.ca_key = self._path("ca.pem"), self._path("ca.key")
        self._run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                   "-keyout", self.ca_key, "-out", self.ca, "-days", "2", "-subj", "/CN=sluice test etcd CA",
                   "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"])
        # clientAuth too: etcd's gateway calls its own gRPC server with this certificate.
        self.server_cert, self.server_key = self._leaf("server", "subjectAltName=IP:127.0.0.1\n"
                                                       "extendedKeyUsage=serverAuth,clientAuth")
        self.client_cert, self.client_key = self._leaf("client", "extendedKeyUsage=clientAuth")
        # A certificate of another CA: etcd refuses it.
        self.other_ca = self._path("other.pem")
        self._run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                   "-keyout", self._path("other.key"), "-out", self.other_ca, "-days", "2", "-subj", "/CN=other"])

    def _path(self, name):
        return os.path.join(self.dir, name)

    def _run(self, args):
        r = subprocess.run(["openssl"] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=30)
        if r.returncode != 0:
            raise harness.CheckFailed_with("openssl %s" % args[0], r.stdout)

    def _leaf(self, name, ext):
        cert, key, csr = self._path(name + ".pem"), self._path(name + ".key"), self._path(name + ".csr")
        with open(self._path(name + ".ext"), "w") as f:
            f.write(ext + "\n")
        self._run(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                   "-keyout", key, "-out", csr, "-subj", "/CN=" + name])
        self._run(["x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key, "-CAcreateserial",
                   "-out", cert, "-days", "2", "-extfile", self._path(name + ".ext")])
        return cert, key


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def enable_auth(etcd, users):
    """Users and their roles, then auth on; the test's own calls go on as root.
    users: {name: (password, [(permission, key, prefix), ...])}."""
    env = dict(os.environ, ETCDCTL_API="3")
    ctl = ["etcdctl", "--endpoints", etcd.address]
    steps = [["user", "add", "root:rootpw"]]
    for name, (password, grants) in users.items():
        steps += [["user", "add", "%s:%s" % (name, password)], ["role", "add", name + "-role"]]
        for perm, key, prefix in grants:
            steps.append(["role", "grant-permission", name + "-role", "--prefix=%s" % str(prefix).lower(),
                          perm, key])
        steps.append(["user", "grant-role", name, name + "-role"])
    steps.append(["auth", "enable"])
    for args in steps:
        extra = ["--user", "root:rootpw"] if args[0] == "auth" else []
        r = subprocess.run(ctl + extra + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=20)
        check(r.returncode == 0, "etcdctl %s" % " ".join(args), r.stdout)
    etcd.login("root", "rootpw")


def etcd_cluster(etcd, **kw):
    c = {"name": "app", "type": "etcd", "connect_timeout": "1s",
         "etcd": {"endpoints": [etcd.address], "prefix": PREFIX, "watch_timeout": "5s"}}
    c["etcd"].update(kw)
    return c


def source(ap):
    return listed(ap)[1]


def case_keys_followed():
    be = AnyLoopback()
    etcd = Etcd()
    a, b, c = ("127.0.30.%d:%d" % (i, be.port) for i in (1, 2, 3))
    etcd.put(PREFIX + "a", {"address": a, "weight": 1, "zone": "x"})
    etcd.put("/services/other/z", {"address": c})  # outside the prefix: not ours
    sl, ap = start([etcd_cluster(etcd)], workers=2)
    port = sl.port("web")
    got = wait_listed(ap, {a: 1})
    check(got == {a: 1}, "the one key under the prefix is listed", repr(got))
    check(spread(port, 10) == {"127.0.30.1": 10}, "10 requests go to 127.0.30.1", "")

    mark = sl.line_count()
    etcd.put(PREFIX + "b", {"address": b, "weight": 3})
    got = wait_listed(ap, {a: 1, b: 3})
    check(got == {a: 1, b: 3}, "a key put: both listed, weights 1 and 3", repr(got))
    s = spread(port, 400)
    check(s["127.0.30.1"] == 100 and s["127.0.30.2"] == 300, "the split follows 1:3 (%r)" % dict(s), "")
    etcd.put(PREFIX + "b", {"address": b, "weight": 1})
    got = wait_listed(ap, {a: 1, b: 1})
    check(got == {a: 1, b: 1}, "a weight changed: 1 and 1", repr(got))
    s = spread(port, 400)
    check(s["127.0.30.1"] == 200 and s["127.0.30.2"] == 200, "the split follows 1:1 (%r)" % dict(s), "")

    # Bad values: logged with their key and skipped; the rest applies.
    etcd.put(PREFIX + "bad-json", "{not json")
    etcd.put(PREFIX + "bad-address", {"address": "somewhere:80"})
    huge = json.dumps({"address": c, "pad": "x" * 10000})
    etcd.put(PREFIX + "huge", huge)
    rev = etcd.delete(PREFIX + "a")
    got = wait_listed(ap, {b: 1})
    check(got == {b: 1}, "a key deleted: only 127.0.30.2 listed", repr(got))
    for line in ["cluster app: etcd key %sbad-json: not JSON; skipped" % PREFIX,
                 "cluster app: etcd key %sbad-address: \"address\" 'somewhere:80' is not IP:PORT or [IPv6]:PORT "
                 "with a port from 1 to 65535; skipped" % PREFIX,
                 "cluster app: etcd key %shuge: %d bytes, more than 4096; skipped" % (PREFIX, len(huge))]:
        check(sl.wait_log(line, 5, mark), "log: '%s'" % line, hu.log_tail(sl))
    check(spread(port, 10) == {"127.0.30.2": 10}, "10 requests go to 127.0.30.2", "")
    ok = harness.wait_until(lambda: scrape(ap).get("sluice_discovery_revision", cluster="app", source="etcd") == rev,
                            5, 0.05)
    src = source(ap)
    check(ok and src["state"] == "synced" and src["type"] == "etcd" and src["endpoints"] == 1,
          "the source is synced at etcd's revision %d with 1 endpoint" % rev, repr(src))
    hu.stop_and_check(sl)


def case_restart_resumes_without_losing_an_update():
    be = AnyLoopback()
    etcd = Etcd()
    a, b = ("127.0.31.%d:%d" % (i, be.port) for i in (1, 2))
    etcd.put(PREFIX + "a", {"address": a})
    sl, ap = start([etcd_cluster(etcd)], workers=2)
    port = sl.port("web")
    check(wait_listed(ap, {a: 1}) == {a: 1}, "listed: 127.0.31.1", "")
    mark = sl.line_count()
    etcd.kill()
    line = "cluster app: etcd %s: " % etcd.address
    check(sl.wait_log(lambda l: line in l and "keeping the last 1 endpoints, trying again" in l, 10, mark),
          "log: the watch broke, the last 1 endpoints kept", hu.log_tail(sl))
    check(harness.wait_until(lambda: source(ap)["state"] == "stale", 5), "source stale", repr(source(ap)))
    check(spread(port, 10) == {"127.0.31.1": 10}, "etcd down: 10 requests still go to 127.0.31.1", "")
    # Several failed attempts, so the backoff has grown past the restart and the put below.
    check(harness.wait_until(lambda: source(ap)["failures"] >= 5, 15), "5 attempts failed while etcd is down",
          repr(source(ap)))
    etcd.start()
    rev = etcd.put(PREFIX + "b", {"address": b})
    got = wait_listed(ap, {a: 1, b: 1}, 15)
    check(got == {a: 1, b: 1}, "the key put right after the restart is followed", repr(got))
    resumed = sl.wait_log("cluster app: etcd watch resumed from revision", 5, mark)
    # The put is the first write after the last one sluice saw: it resumes exactly there.
    check(resumed is not None and "resumed from revision %d on %s" % (rev, etcd.address) in resumed,
          "log: the watch resumed from the last revision seen + 1 (%d)" % rev, resumed or hu.log_tail(sl))
    check(source(ap)["state"] == "synced", "source synced again", repr(source(ap)))
    hu.stop_and_check(sl)


def case_paused_etcd_is_a_dead_watch():
    be = AnyLoopback()
    etcd = Etcd()
    a, b, c = ("127.0.35.%d:%d" % (i, be.port) for i in (1, 2, 3))
    etcd.put(PREFIX + "a", {"address": a})
    # etcd sends a progress notification every second: a live watch is never 3 s silent.
    sl, ap = start([etcd_cluster(etcd, watch_timeout="3s")], workers=2)
    port = sl.port("web")
    check(wait_listed(ap, {a: 1}) == {a: 1}, "listed: 127.0.35.1", "")
    # A change followed: the watch is made (the read before it is not enough).
    etcd.put(PREFIX + "c", {"address": c})
    check(wait_listed(ap, {a: 1, c: 1}) == {a: 1, c: 1}, "the watch follows: 127.0.35.1 and .3 listed", "")
    mark = sl.line_count()
    etcd.proc.send_signal(signal.SIGSTOP)
    try:
        line = "cluster app: etcd %s: no event or progress notification for 3s; keeping the last 2 endpoints, " \
               "trying again" % etcd.address
        check(sl.wait_log(line, 15, mark), "log: '%s'" % line, hu.log_tail(sl))
        check(source(ap)["state"] == "stale", "source stale", repr(source(ap)))
        check(spread(port, 10) == {"127.0.35.1": 5, "127.0.35.3": 5},
              "etcd paused: 10 requests still go to 127.0.35.1 and .3", "")
    finally:
        etcd.proc.send_signal(signal.SIGCONT)
    etcd.put(PREFIX + "b", {"address": b})
    got = wait_listed(ap, {a: 1, b: 1, c: 1}, 15)
    check(got == {a: 1, b: 1, c: 1}, "etcd resumed: a change made then is followed", repr(got))
    hu.stop_and_check(sl)


def case_silent_member_is_left_quickly():
    """A member that accepts connections but never answers (a host gone silent behind a live
    listen queue) costs the watch one call bound (5 s), not its whole watch_timeout (60 s)."""
    be = AnyLoopback()
    etcd = Etcd()
    silent, _ = harness.free_port_holder()
    silent.listen(16)  # connects complete in the kernel; nobody accepts or answers
    silent_address = "127.0.0.1:%d" % silent.getsockname()[1]
    a, b = ("127.0.36.%d:%d" % (i, be.port) for i in (1, 2))
    etcd.put(PREFIX + "a", {"address": a})
    c = etcd_cluster(etcd, watch_timeout="60s")
    c["etcd"]["endpoints"] = [etcd.address, silent_address]
    sl, ap = start([c], workers=2)
    check(wait_listed(ap, {a: 1}) == {a: 1}, "listed: 127.0.36.1", "")
    mark = sl.line_count()
    # etcd goes away: the next member in turn is the silent one.
    etcd.kill()
    line = "cluster app: etcd %s: no answer in 5s; keeping the last 1 endpoints, trying again" % silent_address
    found = sl.wait_log(line, 20, mark)
    check(found, "log: '%s'" % line, hu.log_tail(sl))
    etcd.start()
    etcd.put(PREFIX + "b", {"address": b})
    got = wait_listed(ap, {a: 1, b: 1}, 20)
    check(got == {a: 1, b: 1}, "back on the live member well within watch_timeout: the change is followed",
          repr(got))
    silent.close()
    hu.stop_and_check(sl)


def case_tls_with_client_certificates():
    be = AnyLoopback()
    pki = Pki()
    etcd = Etcd(pki=pki)
    a, b = ("127.0.37.%d:%d" % (i, be.port) for i in (1, 2))
    etcd.put(PREFIX + "a", {"address": a})
    tls = {"ca": pki.ca, "certificate_chain": pki.client_cert, "private_key": pki.client_key}
    good = etcd_cluster(etcd, tls=tls)
    # The same member, verified against another CA: refused, and said so.
    bad = etcd_cluster(etcd, tls=dict(tls, ca=pki.other_ca))
    bad["name"] = "other"
    sl, ap = start([good, bad], workers=2)
    check(wait_listed(ap, {a: 1}) == {a: 1}, "over TLS with a client certificate: listed 127.0.37.1", "")
    etcd.put(PREFIX + "b", {"address": b})
    got = wait_listed(ap, {a: 1, b: 1})
    check(got == {a: 1, b: 1}, "the watch over TLS follows a put", repr(got))
    check(spread(sl.port("web"), 10) == {"127.0.37.1": 5, "127.0.37.2": 5}, "10 requests split 5:5", "")
    other = [c for c in admin_json(ap, "/clusters", quiet=True) if c["name"] == "other"][0]
    check(other["source"]["state"] == "stale" and other["source"]["endpoints"] == 0 and not other["endpoints"],
          "a cluster that does not trust etcd's certificate lists nothing (stale)", repr(other))
    line = ("cluster other: etcd %s: TLS: certificate verify failed: unable to get local issuer certificate; "
            "no endpoints yet, trying again" % etcd.address)
    check(sl.find_lines(line), "log: '%s'" % line, hu.log_tail(sl))
    hu.stop_and_check(sl)


def case_max_staleness():
    be = AnyLoopback()
    etcd = Etcd()
    a = "127.0.39.1:%d" % be.port
    etcd.put(PREFIX + "a", {"address": a})
    sl, ap = start([etcd_cluster(etcd, max_staleness="2s")], workers=2)
    port = sl.port("web")
    check(wait_listed(ap, {a: 1}) == {a: 1}, "listed: 127.0.39.1", "")

    def ready():
        r = hu.request_once(ap, "GET", "/ready", host="admin", timeout=5)
        return r.status, r.body.decode()
    check(ready() == (200, "ready\n"), "synced: /ready 200", repr(ready()))
    check(scrape(ap).get("sluice_discovery_stale_seconds", cluster="app", source="etcd") == 0,
          "synced: sluice_discovery_stale_seconds 0", "")
    etcd.kill()
    check(harness.wait_until(lambda: source(ap)["state"] == "stale", 10), "etcd down: the source is stale", "")
    # Stale for less than 2 s: still ready; past it, 503 with the reason, and still serving.
    pattern = re.compile(r"^not ready: cluster app: etcd not reached for (\d+)s \(max_staleness 2s\)\n$")
    got = [None]

    def unready():
        got[0] = ready()
        m = pattern.match(got[0][1])
        return got[0][0] == 503 and m is not None and int(m.group(1)) >= 2
    check(harness.wait_until(unready, 15, 0.05),
          "stale past max_staleness: /ready 503 'not ready: cluster app: etcd not reached for Ns "
          "(max_staleness 2s)', N >= 2", repr(got[0]))
    stale = scrape(ap).get("sluice_discovery_stale_seconds", cluster="app", source="etcd")
    check(stale is not None and stale >= 2, "sluice_discovery_stale_seconds >= 2 (%r)" % stale, "")
    check(spread(port, 10) == {"127.0.39.1": 10}, "not ready, still serving: 10 requests to 127.0.39.1", "")
    etcd.start()
    check(harness.wait_until(lambda: ready() == (200, "ready\n"), 15), "etcd back: /ready 200 again",
          repr(ready()))
    check(scrape(ap).get("sluice_discovery_stale_seconds", cluster="app", source="etcd") == 0,
          "synced again: sluice_discovery_stale_seconds 0", "")
    hu.stop_and_check(sl)


def case_etcd_down_at_start():
    be = AnyLoopback()
    a = "127.0.34.1:%d" % be.port
    etcd = Etcd(start=False)
    sl, ap = start([etcd_cluster(etcd)], workers=2)
    port = sl.port("web")
    r = hu.request_once(port, "GET", "/x")
    check(r.status == 503, "etcd unreachable at start: sluice is up and answers 503", r.describe())
    check(sl.find_lines("cluster app: etcd %s: connection refused; no endpoints yet, trying again" % etcd.address),
          "log: connection refused, no endpoints yet", hu.log_tail(sl))
    check(source(ap)["state"] == "stale", "source stale", repr(source(ap)))
    etcd.start()
    etcd.put(PREFIX + "a", {"address": a})
    got = wait_listed(ap, {a: 1}, 15)
    check(got == {a: 1}, "once etcd is up, its key is listed", repr(got))
    check(spread(port, 10) == {"127.0.34.1": 10}, "10 requests go to 127.0.34.1", "")
    hu.stop_and_check(sl)


def case_initial_fetch_timeout():
    # etcd never answers: startup waits initial_fetch_timeout (retrying), then goes on without
    # the cluster's endpoints.
    etcd = Etcd(start=False)
    sl, ap = start([etcd_cluster(etcd, initial_fetch_timeout="2s")], workers=2)
    refused = line_index(sl, "cluster app: etcd %s: connection refused; no endpoints yet, trying again"
                         % etcd.address)
    line = ("cluster app: no endpoints from etcd within initial_fetch_timeout 2s; going on without them "
            "(still trying)")
    gave_up, ready = line_index(sl, line), line_index(sl, "sluice ready")
    check(refused is not None and gave_up is not None and ready is not None and refused < gave_up < ready,
          "log: refused, '%s', then ready (lines %r < %r < %r)" % (line, refused, gave_up, ready), hu.log_tail(sl))
    check(source(ap)["failures"] >= 3, "startup retried while it waited (%d failures)" % source(ap)["failures"],
          repr(source(ap)))
    r = hu.request_once(sl.port("web"), "GET", "/x")
    check(r.status == 503, "without the endpoints: 503", r.describe())
    hu.stop_and_check(sl)


def line_index(sl, text):
    for i, line in enumerate(list(sl.lines)):
        if text in line:
            return i
    return None


def case_compaction_rereads():
    be = AnyLoopback()
    etcd = Etcd()
    a, b, c = ("127.0.32.%d:%d" % (i, be.port) for i in (1, 2, 3))
    etcd.put(PREFIX + "a", {"address": a})
    etcd.put(PREFIX + "b", {"address": b})
    sl, ap = start([etcd_cluster(etcd)], workers=2)
    check(wait_listed(ap, {a: 1, b: 1}) == {a: 1, b: 1}, "listed: a and b", "")
    mark = sl.line_count()
    sl.signal(signal.SIGSTOP)
    try:
        etcd.kill()
        etcd.start()
        etcd.delete(PREFIX + "a")
        etcd.put(PREFIX + "c", {"address": c})
        rev = etcd.put(PREFIX + "c", {"address": c, "weight": 2})
        etcd.compact(rev)
    finally:
        sl.signal(signal.SIGCONT)
    got = wait_listed(ap, {b: 1, c: 2}, 15)
    check(got == {b: 1, c: 2}, "after the compaction: b, and c with weight 2", repr(got))
    check(sl.find_lines("etcd compacted past revision", mark), "log: compacted; reading the prefix again",
          hu.log_tail(sl))
    hu.stop_and_check(sl)


def case_auth():
    be = AnyLoopback()
    etcd = Etcd()
    a, b = ("127.0.33.%d:%d" % (i, be.port) for i in (1, 2))
    etcd.put(PREFIX + "a", {"address": a})
    enable_auth(etcd, {"sluice": ("pw", [("read", PREFIX, True)])})
    sl, ap = start([etcd_cluster(etcd, username="sluice", password="pw")], workers=2)
    check(wait_listed(ap, {a: 1}) == {a: 1}, "with auth: listed 127.0.33.1", repr(listed(ap)))
    # etcd restarts and compacts while sluice is stopped: with auth on, the resumed watch is
    # told to read everything again, and does.
    mark = sl.line_count()
    sl.signal(signal.SIGSTOP)
    try:
        etcd.kill()
        etcd.start()
        etcd.put(PREFIX + "b", {"address": b})
        # Compacted past the revision sluice resumes from (a write outside its prefix).
        etcd.compact(etcd.put("/services/other/x", "1"))
    finally:
        sl.signal(signal.SIGCONT)
    got = wait_listed(ap, {a: 1, b: 1}, 15)
    check(got == {a: 1, b: 1}, "with auth, after a restart and a compaction: a and b listed", repr(got))
    check(sl.find_lines("cluster app: etcd compacted past revision 2 (to 4); reading %s again" % PREFIX, mark),
          "log: compacted past revision 2 (to 4); reading the prefix again", hu.log_tail(sl))
    hu.stop_and_check(sl)


if __name__ == "__main__":
    harness.run_cases([case_keys_followed, case_restart_resumes_without_losing_an_update,
                       case_paused_etcd_is_a_dead_watch, case_silent_member_is_left_quickly,
                       case_tls_with_client_certificates, case_max_staleness,
                       case_etcd_down_at_start,
                       case_initial_fetch_timeout, case_compaction_rereads, case_auth])

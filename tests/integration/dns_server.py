"""A real authoritative DNS server (nsd) for sluice's DNS integration tests.

NsdServer runs `/usr/sbin/nsd -d` (foreground, its own process group) on 127.0.0.1:<free
port> (UDP and TCP) with one zone, by default `test.sluice.`, from a temporary directory:

    ns = NsdServer(["api IN A 127.0.0.11"], ttl=2, minimum=2)
    ns.address                              # "127.0.0.1:PORT", for dns.servers
    ns.set_zone(["api IN A 127.0.0.12"])    # new serial, SIGHUP; waits until nsd answers it
    ns.pause(); ns.resume()                 # SIGSTOP / SIGCONT to every nsd process
    ns.query("api.test.sluice", "A")        # (rcode, [(name, type, ttl, data)]) straight from nsd

set_zone writes the zone with the next SOA serial and sends SIGHUP; nsd re-reads changed
zone files on SIGHUP. The reload is verified by asking nsd for the SOA until the new serial
comes back; if it does not within a few seconds, nsd is restarted on the same port (and
`reloads_by_restart` counts that).

DnsRelay is a UDP relay in front of any server that records every query (time, name, type)
and the rcode of every answer, so a test can count what sluice actually asked.

Records are zone-file lines relative to the zone origin, e.g. "api IN A 127.0.0.11",
"_http._tcp IN SRV 10 1 8080 a", "www IN CNAME api". Standard library only.
"""

import collections
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import http_util as hu  # noqa: E402

NSD = os.environ.get("NSD_BIN", "/usr/sbin/nsd")

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "AAAA": 28, "SRV": 33}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
RCODES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}


def nsd_available():
    return os.access(NSD, os.X_OK)


# --------------------------------------------------------------------------
# a minimal DNS client (enough to verify what nsd serves)


def _encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode("ascii")
    return out + b"\0"


def _read_name(msg, off):
    """Returns (name, offset after the name in place), following compression pointers."""
    labels = []
    end = None
    for _ in range(128):
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if end is None:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            continue
        off += 1
        if n == 0:
            break
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n
    return ".".join(labels), (end if end is not None else off)


def build_query(name, qtype, qid=None):
    qid = random.randrange(65536) if qid is None else qid
    head = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    return head + _encode_name(name) + struct.pack("!HH", TYPES.get(qtype, qtype) if isinstance(qtype, str)
                                                   else qtype, 1)


def parse_question(msg):
    """(id, qname, qtype) of a DNS message, or None."""
    try:
        qid, _, qd = struct.unpack("!HHH", msg[:6])
        if qd < 1:
            return None
        name, off = _read_name(msg, 12)
        qtype = struct.unpack("!H", msg[off:off + 2])[0]
        return qid, name.lower(), TYPE_NAMES.get(qtype, str(qtype))
    except (IndexError, struct.error):
        return None


def parse_response(msg):
    """(rcode name, answers, authority) where each record is (name, type, ttl, data)."""
    _, flags, qd, an, ns, _ = struct.unpack("!HHHHHH", msg[:12])
    off = 12
    for _ in range(qd):
        _, off = _read_name(msg, off)
        off += 4
    sections = []
    for count in (an, ns):
        recs = []
        for _ in range(count):
            name, off = _read_name(msg, off)
            rtype, _, ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
            off += 10
            rd = msg[off:off + rdlen]
            tname = TYPE_NAMES.get(rtype, str(rtype))
            if tname == "A":
                data = socket.inet_ntop(socket.AF_INET, rd)
            elif tname == "AAAA":
                data = socket.inet_ntop(socket.AF_INET6, rd)
            elif tname in ("CNAME", "NS"):
                data = _read_name(msg, off)[0]
            elif tname == "SRV":
                pr, w, port = struct.unpack("!HHH", rd[:6])
                data = (pr, w, port, _read_name(msg, off + 6)[0])
            elif tname == "SOA":
                _, o = _read_name(msg, off)
                _, o = _read_name(msg, o)
                data = struct.unpack("!IIIII", msg[o:o + 20])  # serial refresh retry expire minimum
            else:
                data = rd
            recs.append((name.lower(), tname, ttl, data))
            off += rdlen
        sections.append(recs)
    return RCODES.get(flags & 0xF, str(flags & 0xF)), sections[0], sections[1]


def query(server, name, qtype, timeout=1.0):
    """One UDP query to server ("ip:port"); returns (rcode, answers, authority) or None on timeout."""
    host, port = server.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        q = build_query(name, qtype)
        s.sendto(q, (host, int(port)))
        while True:
            data, _ = s.recvfrom(65535)
            if data[:2] == q[:2]:
                return parse_response(data)
    except (socket.timeout, OSError):
        return None
    finally:
        s.close()


# --------------------------------------------------------------------------
# ports


def free_udp_tcp_port(host="127.0.0.1"):
    """A port free for both UDP and TCP on host (nothing holds it when this returns)."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((host, 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise RuntimeError("no port free for both UDP and TCP")


# --------------------------------------------------------------------------
# nsd


class NsdServer:
    def __init__(self, records=(), zone="test.sluice", ttl=2, minimum=2, soa_ttl=None, port=None):
        if not nsd_available():
            raise harness.Skip("nsd is not installed (%s); run scripts/bootstrap" % NSD)
        self.zone = zone.rstrip(".")
        self.tmpdir = tempfile.mkdtemp(prefix="sluice-nsd-")
        harness.register_cleanup(lambda: shutil.rmtree(self.tmpdir, ignore_errors=True))
        self.serial = 1
        self.ttl = ttl
        self.minimum = minimum
        self.soa_ttl = soa_ttl
        self.records = list(records)
        self.proc = None
        self.paused = False
        self.reloads_by_restart = 0
        self._write_zone()
        last = ""
        for _ in range(5):
            self.port = port or free_udp_tcp_port()
            self.address = "127.0.0.1:%d" % self.port
            self._write_conf()
            if self._start():
                harness.register_cleanup(self.stop)
                return
            last = self.log_text()
            self.stop()
            if port:
                break
        raise RuntimeError("nsd did not start:\n%s" % last)

    # -- files
    def _write_conf(self):
        d = self.tmpdir
        with open(os.path.join(d, "nsd.conf"), "w") as f:
            f.write("""server:
  ip-address: 127.0.0.1
  port: %(port)d
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "%(d)s"
  database: ""
  pidfile: "%(d)s/nsd.pid"
  xfrdfile: "%(d)s/xfrd.state"
  zonelistfile: "%(d)s/zone.list"
  logfile: "%(d)s/nsd.log"
  verbosity: 1
remote-control:
  control-enable: no
zone:
  name: "%(zone)s"
  zonefile: "%(zone)s.zone"
""" % {"port": self.port, "d": d, "zone": self.zone})

    def zone_text(self):
        soa_ttl = "" if self.soa_ttl is None else "%d " % self.soa_ttl
        lines = ["$ORIGIN %s." % self.zone, "$TTL %d" % self.ttl,
                 "@ %sIN SOA ns1 hostmaster %d 3600 600 86400 %d" % (soa_ttl, self.serial, self.minimum),
                 "@ IN NS ns1", "ns1 IN A 127.0.0.1"]
        return "\n".join(lines + list(self.records)) + "\n"

    def _write_zone(self):
        path = os.path.join(self.tmpdir, self.zone + ".zone")
        tmp = path + ".new"
        with open(tmp, "w") as f:
            f.write(self.zone_text())
        os.replace(tmp, path)

    def log_text(self):
        try:
            with open(os.path.join(self.tmpdir, "nsd.log")) as f:
                return f.read()
        except OSError:
            return ""

    # -- process
    def _start(self):
        def preexec():
            os.setsid()  # its own process group: pause/stop reach the serving children too
            harness.die_with_parent()
        self.proc = subprocess.Popen([NSD, "-d", "-c", os.path.join(self.tmpdir, "nsd.conf")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=preexec)
        self.paused = False
        ok = harness.wait_until(lambda: self.proc.poll() is not None or self.current_serial() == self.serial,
                                10, 0.02)
        return self.proc.poll() is None and ok

    def _signal_group(self, sig):
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal_group(signal.SIGCONT)
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(5)
        # children (server, xfrd) may outlive the parent for a moment
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.paused = False

    def restart(self):
        self.stop()
        self._write_conf()
        if not self._start():
            raise RuntimeError("nsd did not restart on port %d:\n%s" % (self.port, self.log_text()))

    def pause(self):
        """SIGSTOP to every nsd process: queries are received by the kernel, never answered."""
        self._signal_group(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self._signal_group(signal.SIGCONT)
        self.paused = False

    # -- zone
    def current_serial(self):
        r = query(self.address, self.zone, "SOA", timeout=0.3)
        if not r or r[0] != "NOERROR":
            return None
        for rec in r[1]:
            if rec[1] == "SOA":
                return rec[3][0]
        return None

    def set_zone(self, records, ttl=None, minimum=None, soa_ttl=None):
        """Replaces the records (and optionally $TTL / SOA MINIMUM / SOA TTL) and reloads."""
        self.records = list(records)
        if ttl is not None:
            self.ttl = ttl
        if minimum is not None:
            self.minimum = minimum
        if soa_ttl is not None:
            self.soa_ttl = soa_ttl
        self.serial += 1
        self._write_zone()
        self.reload()

    def reload(self, timeout=4.0):
        if self.paused:
            raise RuntimeError("reload while nsd is paused")
        self.proc.send_signal(signal.SIGHUP)  # the main nsd process re-reads changed zone files
        if harness.wait_until(lambda: self.current_serial() == self.serial, timeout, 0.02):
            return
        # SIGHUP did not bring the new serial: restart on the same port
        self.reloads_by_restart += 1
        self.restart()

    def query(self, name, qtype):
        r = query(self.address, name, qtype)
        return None if r is None else (r[0], r[1])


# --------------------------------------------------------------------------
# a counting relay


class DnsRelay:
    """UDP on 127.0.0.1:<free port>, forwarding each query to `upstream` ("ip:port") and each
    answer back. Records (time, qname, qtype) per query and (time, qname, qtype, rcode) per answer."""

    def __init__(self, upstream):
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self.queries = []
        self.answers = []
        self._up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._up.settimeout(0.05)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pending = {}  # qid -> client address
        self._t1 = threading.Thread(target=self._from_clients, daemon=True)
        self._t2 = threading.Thread(target=self._from_upstream, daemon=True)
        self._t1.start()
        self._t2.start()
        harness.register_cleanup(self.stop)

    def _from_clients(self):
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            q = parse_question(data)
            if q is None:
                continue
            with self._lock:
                self.queries.append((time.monotonic(), q[1], q[2]))
                self._pending[q[0]] = peer
            try:
                self._up.sendto(data, self.upstream)
            except OSError:
                pass

    def _from_upstream(self):
        while not self._stop.is_set():
            try:
                data, _ = self._up.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            q = parse_question(data)
            if q is None:
                continue
            with self._lock:
                peer = self._pending.pop(q[0], None)
                rcode = RCODES.get(data[3] & 0xF, str(data[3] & 0xF)) if len(data) > 3 else "?"
                self.answers.append((time.monotonic(), q[1], q[2], rcode))
            if peer:
                try:
                    self.sock.sendto(data, peer)
                except OSError:
                    pass

    def queries_for(self, name, qtype=None):
        name = name.lower().rstrip(".")
        with self._lock:
            return [t for (t, n, ty) in self.queries if n == name and (qtype is None or ty == qtype)]

    def answers_for(self, name, qtype=None):
        """(time, rcode) of each answer relayed back for `name`, oldest first."""
        name = name.lower().rstrip(".")
        with self._lock:
            return [(t, rc) for (t, n, ty, rc) in self.answers if n == name and (qtype is None or ty == qtype)]

    def stop(self):
        self._stop.set()
        for s in (self.sock, self._up):
            try:
                s.close()
            except OSError:
                pass


# --------------------------------------------------------------------------
# HTTP backends on other loopback addresses (127.0.0.X, ::1)


class _BindShim(harness.TcpServer):
    """Takes TcpServer's place in HostBackend's MRO so the socket binds the chosen address."""

    def __init__(self, host="127.0.0.1", port=0, backlog=512, fastopen=0):
        host = self._bind_host
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(backlog)
        self.sock.settimeout(0.02)
        self.port = self.sock.getsockname()[1]
        self.address = ("[%s]:%d" if fam == socket.AF_INET6 else "%s:%d") % (host, self.port)
        self.accepted = 0
        self.conns = []
        self.errors = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        harness.register_cleanup(self.stop)


def _host_backend_class():
    from http_backend import HttpBackend

    class HostBackend(HttpBackend, _BindShim):
        """http_backend.HttpBackend listening on `host` (any 127.0.0.X, or ::1)."""

        def __init__(self, name, host, port=0, **kw):
            self._bind_host = host
            HttpBackend.__init__(self, name=name, port=port, **kw)
            self.host = host

    return HostBackend


def host_backend(name, host, port=0, **kw):
    return _host_backend_class()(name, host, port=port, **kw)


def backends_on_one_port(names_hosts, **kw):
    """HTTP backends on several loopback addresses sharing one port: [(name, host)] -> (port, [backends])."""
    for _ in range(20):
        first = host_backend(names_hosts[0][0], names_hosts[0][1], **kw)
        out = [first]
        try:
            for name, host in names_hosts[1:]:
                out.append(host_backend(name, host, port=first.port, **kw))
            return first.port, out
        except OSError:
            for b in out:
                b.stop()
    raise RuntimeError("no port free on all of %r" % [h for _, h in names_hosts])


def ipv6_loopback_works():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.listen(1)
        c = socket.create_connection(("::1", s.getsockname()[1]), timeout=1)
        c.close()
        s.close()
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# sluice configurations and traffic checks shared by the DNS tests


def dns_block(server, **kw):
    d = {"servers": [server], "timeout": "500ms", "attempts": 2, "hosts_file": "", "family": "v4"}
    d.update(kw)
    return d


def make_config(clusters, dns, routes=None, workers=2):
    if routes is None:
        routes = [{"match": {"prefix": "/"}, "cluster": clusters[0]["name"]}]
    cfg = {"workers": workers, "log_level": "debug", "drain_timeout": "5s", "dns": dns,
           "listeners": [hu.simple_listener(routes)], "clusters": clusters}
    return harness.to_yaml(hu._quote(cfg)) + "\n"


def dns_cluster(name, hosts, port, type="strict_dns", **kw):
    eps = [{"address": "%s:%d" % (h, port)} for h in hosts]
    c = {"name": name, "type": type, "connect_timeout": "1s"}
    c.update(kw)
    if type != "dns_srv":
        c["endpoints"] = eps
    return c


def backends_seen(port, n, target="/t", client=None):
    """n requests on one keep-alive connection: (Counter of X-Backend, list of non-200 statuses)."""
    c = client or hu.Client(port, timeout=10)
    counts, bad = collections.Counter(), []
    try:
        for i in range(n):
            r = c.request("GET", "%s/%d" % (target, i))
            if r.status != 200:
                bad.append((r.status, r.body[:80]))
            else:
                counts[r.header("x-backend")] += 1
            if "close" in r.tokens("connection"):
                c.close()
                c = hu.Client(port, timeout=10)
    finally:
        c.close()
    return counts, bad


def until_from(port, name, timeout=2.0, target="/until"):
    """Requests (one connection) until one is answered by backend `name`: the workers apply a
    new endpoint set just after the main thread logs it. Returns (requests sent, non-200 answers)."""
    c = hu.Client(port, timeout=10)
    sent, bad = [0], []

    def one():
        r = c.request("GET", "%s/%d" % (target, sent[0]))
        sent[0] += 1
        if r.status != 200:
            bad.append((r.status, r.body[:80]))
        return r.header("x-backend") == name
    try:
        ok = harness.wait_until(one, timeout, 0.01)
    finally:
        c.close()
    return (sent[0] if ok else None), bad




# --------------------------------------------------------------------------
# TCP servers (harness.TcpServer subclasses) on other loopback addresses


def host_tcp_server(server_cls, host, port=0, **kw):
    """An instance of server_cls (a harness.TcpServer subclass such as harness.EchoServer)
    listening on `host` (any 127.0.0.X, or ::1) instead of 127.0.0.1; kw go to its __init__."""
    cls = type("Host" + server_cls.__name__, (server_cls, _BindShim), {"_bind_host": host})
    return cls(port=port, **kw)


def tcp_servers_on_one_port(server_cls, hosts, kws=None):
    """server_cls instances on several loopback addresses sharing one port -> (port, [servers]);
    kws[i] (optional) are the __init__ keywords of the i-th server."""
    kws = kws or [{} for _ in hosts]
    for _ in range(20):
        first = host_tcp_server(server_cls, hosts[0], **kws[0])
        out = [first]
        try:
            for host, kw in zip(hosts[1:], kws[1:]):
                out.append(host_tcp_server(server_cls, host, port=first.port, **kw))
            return first.port, out
        except OSError:
            for s in out:
                s.stop()
    raise RuntimeError("no port free on all of %r" % list(hosts))

"""Helpers for the UDP-side integration tests: a UDP echo backend, a sluice started with an
admin listener, and /metrics samples. Standard library only (plus harness)."""

import os
import re
import select
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import http_util as hu  # noqa: E402

ADMIN_RE = re.compile(r"admin listening on 127\.0\.0\.1:(\d+)")
SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class UdpEcho:
    """A UDP server on 127.0.0.1:<free port> answering each datagram with prefix + datagram
    (and, with `again`, a second answer again + datagram). `received` counts datagrams;
    `peers` holds the source addresses seen, `ports` their ports in order."""

    def __init__(self, prefix=b"", host="127.0.0.1", again=None):
        self.prefix = prefix
        self.again = again
        self.ports = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.address = "%s:%d" % (host, self.port)
        self.received = 0
        self.peers = set()
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        harness.register_cleanup(self.stop)

    def _run(self):
        while not self._stop:
            r, _, _ = select.select([self.sock], [], [], 0.05)
            if not r:
                continue
            try:
                data, peer = self.sock.recvfrom(70000)
            except OSError:
                continue
            self.received += 1
            self.peers.add(peer)
            self.ports.append(peer[1])
            try:
                self.sock.sendto(self.prefix + data, peer)
                if self.again is not None:
                    self.sock.sendto(self.again + data, peer)
            except OSError:
                pass

    def stop(self):
        if self._stop:
            return
        self._stop = True
        self._t.join(2)
        self.sock.close()


def config(listeners, clusters, workers=1):
    cfg = {"workers": workers, "log_level": "debug", "drain_timeout": "2s",
           "admin": {"address": "127.0.0.1:0"}, "listeners": listeners, "clusters": clusters}
    return harness.to_yaml(hu._quote(cfg)) + "\n"


def start(listeners, clusters, workers=1):
    """A running sluice and its admin port."""
    sl = harness.Sluice(config(listeners, clusters, workers))
    line = sl.wait_log(ADMIN_RE, 5)
    if not line:
        raise harness.CheckFailed_with("no 'admin listening on' line", sl.stderr_text())
    return sl, int(ADMIN_RE.search(line).group(1))


def metrics(admin_port, prefix="sluice_"):
    """{(name, frozenset(labels)): value} of the samples whose name starts with prefix."""
    r = hu.request_once(admin_port, "GET", "/metrics", host="admin", timeout=5)
    out = {}
    for line in r.body.decode("utf-8", "replace").splitlines():
        m = SAMPLE_RE.match(line)
        if m and m.group(1).startswith(prefix):
            out[(m.group(1), frozenset(LABEL_RE.findall(m.group(2) or "")))] = float(m.group(3))
    return out


def sample(admin_port, name, **labels):
    return metrics(admin_port, name).get((name, frozenset(labels.items())))


def wait_sample(admin_port, name, want, timeout=10, **labels):
    """Polls /metrics until the sample equals want; returns the last value seen."""
    last = [None]

    def ok():
        last[0] = sample(admin_port, name, **labels)
        return last[0] == want
    harness.wait_until(ok, timeout, 0.02)
    return last[0]


def client(host="127.0.0.1"):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.settimeout(5)
    harness.register_cleanup(s.close)
    return s


def exchange(sock, port, payload, host="127.0.0.1"):
    """Sends payload to sluice and returns the answer (None when none came within 5 s)."""
    sock.sendto(payload, (host, port))
    try:
        data, _ = sock.recvfrom(70000)
        return data
    except socket.timeout:
        return None


def check_config_file(text, prefix):
    """Writes `text` to a temporary file and runs `sluice check -c` on it: (path, result)."""
    d = harness.tempfile.mkdtemp(prefix=prefix)
    harness.register_cleanup(lambda: harness.shutil.rmtree(d, ignore_errors=True))
    path = os.path.join(d, "bad.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path, harness.run_sluice_cmd(["check", "-c", path])

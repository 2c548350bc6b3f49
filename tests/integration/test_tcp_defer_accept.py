#!/usr/bin/env python3
"""TCP_DEFER_ACCEPT on HTTP listeners (socket_options.defer_accept), seen from outside.

- defer_accept: 30s: a client that connects and sends nothing is not an accepted
  connection (sluice_listener_connections_accepted_total does not move, /connections does
  not list it) while a second client is served; once the first sends its request it is
  accepted and answered like any other;
- defer_accept: 0 (off): the same silent connection is accepted without a byte;
- the default of an HTTP listener (1s): a silent connection is accepted only after the
  kernel's first SYN-ACK retransmission (a second), then served when it speaks;
- a reload from 30s to 0 keeps the listening socket and applies the new value to it;
- a value that is not whole seconds, or defer_accept on a cluster, is a located error, as
  is a notsent_lowat below 4096 bytes.
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, run_sluice_cmd  # noqa: E402
import http_util as hu  # noqa: E402
import test_metrics as tm  # noqa: E402
from http_backend import HttpBackend  # noqa: E402

ACCEPTED = "sluice_listener_connections_accepted_total"


def start(backend, socket_options=None):
    kw = {"socket_options": socket_options} if socket_options is not None else {}
    listener = hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}], **kw)
    # One worker: every accept happens on it, in the order the kernel queued them.
    return tm.start([listener], [hu.cluster("app", [backend])], workers=1)


def accepted(ap):
    return tm.scrape(ap).get(ACCEPTED, listener="web")


def get_ok(sock_or_port, what):
    if isinstance(sock_or_port, int):
        r = hu.request_once(sock_or_port, "GET", "/status/200", timeout=10)
    else:
        sock_or_port.sendall(hu.build_request("GET", "/status/200", headers=[("Connection", "close")]))
        r = hu.read_response(hu.SockReader(sock_or_port))
    check(r.status == 200, what, r.describe())


def silent_connection(port):
    """A connection whose handshake completed on the client's side, with nothing sent."""
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def case_silent_connection_is_not_accepted():
    backend = HttpBackend("a")
    sl, ap = start(backend, {"defer_accept": "30s"})
    port = sl.port("web")
    silent = silent_connection(port)
    # Served while the silent one waits: the listener works, and after this answer the
    # worker has taken everything the kernel queued for it.
    get_ok(port, "a client that sends its request at once is served")
    check(accepted(ap) == 1, "%s is 1: the silent connection was not accepted" % ACCEPTED, repr(accepted(ap)))
    conns = tm.admin_json(ap, "/connections?listener=web")
    check(conns == [], "/connections lists no connection of the listener", repr(conns))
    # Speaking up: accepted at once and served.
    get_ok(silent, "the deferred connection is served once it sends its request")
    check(accepted(ap) == 2, "%s is 2 once it sent its request" % ACCEPTED, repr(accepted(ap)))
    silent.close()
    hu.stop_and_check(sl)


def case_off_accepts_silent_connection():
    backend = HttpBackend("a")
    sl, ap = start(backend, {"defer_accept": 0})
    port = sl.port("web")
    silent = silent_connection(port)
    s = tm.wait_scrape(ap, lambda m: m.get(ACCEPTED, listener="web") == 1, timeout=5)
    check(s.get(ACCEPTED, listener="web") == 1,
          "defer_accept: 0: the silent connection is accepted without a byte (%s 1)" % ACCEPTED,
          repr(s.get(ACCEPTED, listener="web")))
    get_ok(port, "another client is served")
    check(accepted(ap) == 2, "%s is 2" % ACCEPTED, repr(accepted(ap)))
    get_ok(silent, "the silent connection is served when it speaks")
    check(accepted(ap) == 2, "%s stays 2: it was counted once" % ACCEPTED, repr(accepted(ap)))
    silent.close()
    hu.stop_and_check(sl)


def case_default_defers_about_a_second():
    backend = HttpBackend("a")
    sl, ap = start(backend)  # an HTTP listener's default: defer_accept 1s
    port = sl.port("web")
    t0 = time.monotonic()
    silent = silent_connection(port)
    s = tm.wait_scrape(ap, lambda m: m.get(ACCEPTED, listener="web") == 1, timeout=15)
    waited = time.monotonic() - t0
    check(s.get(ACCEPTED, listener="web") == 1, "the default: a silent connection is accepted in the end",
          repr(s.get(ACCEPTED, listener="web")))
    # The kernel hands it over after its first SYN-ACK retransmission, one second in.
    check(waited >= 0.9, "... not before about a second (%.2f s)" % waited)
    get_ok(silent, "and served when it speaks")
    silent.close()
    hu.stop_and_check(sl)


def case_reload_applies_to_the_kept_socket():
    """defer_accept 30s -> 0 by a reload: the listening socket stays (same port) and a
    connection that connects silently afterwards is accepted without a byte."""
    import test_reload as trl
    backend = HttpBackend("a")

    def conf(defer):
        listener = hu.simple_listener([{"match": {"prefix": "/"}, "cluster": "app"}],
                                      socket_options={"defer_accept": defer})
        return tm.make_config([listener], [hu.cluster("app", [backend])], workers=1)
    rl = trl.Reloadable(conf("30s"))
    sl, ap = rl.sl, rl.admin
    port = sl.port("web")
    first = silent_connection(port)
    get_ok(port, "defer_accept 30s: a client that speaks is served")
    check(accepted(ap) == 1, "defer_accept 30s: the silent connection is not accepted", repr(accepted(ap)))
    rl.apply(conf(0), "defer_accept 30s -> 0")
    check(sl.port("web") == port, "the listener keeps its socket (port %d)" % port, repr(sl.port("web")))
    second = silent_connection(port)
    s = tm.wait_scrape(ap, lambda m: m.get(ACCEPTED, listener="web") == 2, timeout=5)
    check(s.get(ACCEPTED, listener="web") == 2,
          "defer_accept 0 after the reload: a new silent connection is accepted without a byte",
          repr(s.get(ACCEPTED, listener="web")))
    get_ok(first, "the connection deferred before the reload is served when it speaks")
    for c in (first, second):
        c.close()
    hu.stop_and_check(sl)


BAD_BASE = """\
listeners:
  - name: web
    address: 127.0.0.1:0
    protocol: http
    socket_options:
      defer_accept: %s
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            cluster: app
clusters:
  - name: app
    socket_options: {%s}
    endpoints:
      - address: 127.0.0.1:8081
"""


def check_config(name, text, want):
    path = os.path.join(harness_tmp(), name + ".yaml")
    with open(path, "w") as f:
        f.write(text)
    p = run_sluice_cmd(["check", "-c", path], timeout=10)
    got = p.stderr.splitlines()
    want = [w % path for w in want]
    check(p.returncode == (1 if want else 0) and got == want,
          "sluice check %s: %s" % (name, " | ".join(w.replace(path, "FILE") for w in want) or "ok"),
          "rc=%d\n%s" % (p.returncode, p.stderr))


_TMP = []


def harness_tmp():
    if not _TMP:
        import tempfile
        d = tempfile.mkdtemp(prefix="sluice-defer-")
        harness.register_cleanup(lambda: __import__("shutil").rmtree(d, ignore_errors=True))
        _TMP.append(d)
    return _TMP[0]


def case_config_errors():
    check_config("whole_seconds", BAD_BASE % ("1500ms", ""),
                 ["%s:6:21: listeners[0].socket_options.defer_accept: the kernel counts whole seconds: "
                  "write 1s, 2s... (or 0 for off)"])
    check_config("too_long", BAD_BASE % ("11m", ""),
                 ["%s:6:21: listeners[0].socket_options.defer_accept: expected a duration from 0s to 600s, "
                  "got 11m"])
    check_config("on_cluster", BAD_BASE % ("5s", "defer_accept: 1s"),
                 ["%s:15:36: clusters[0].socket_options.defer_accept: only for listeners"])
    check_config("lowat_too_small", BAD_BASE % ("5s", "notsent_lowat: 100"),
                 ["%s:15:37: clusters[0].socket_options.notsent_lowat: expected a size from 4096 to "
                  "268435456 bytes, got 100"])
    check_config("good", BAD_BASE % ("5s", "notsent_lowat: 16KiB"), [])


if __name__ == "__main__":
    hu.use_default_bin()
    harness.run_cases([case_silent_connection_is_not_accepted, case_off_accepts_silent_connection,
                       case_default_defers_about_a_second, case_reload_applies_to_the_kept_socket,
                       case_config_errors])

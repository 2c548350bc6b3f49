#!/usr/bin/env python3
"""The STUN listener (`protocol: stun`) answering real clients on loopback: a hand-written
client's Binding request over IPv4 and IPv6 gets XOR-MAPPED-ADDRESS with its own address,
its transaction id and a correct FINGERPRINT, in the minimal 40 / 52 bytes even with
SOFTWARE configured, and SOFTWARE once PADDING asks for it; an unknown comprehension-
required attribute gets 420 listing it; a bad attribute value 400; non-STUN bytes, a bad
FINGERPRINT, indications and responses get nothing and are counted; a source over its rate
limit is dropped and counted; coturn's turnutils_stunclient reads its mapped address."""

import hashlib
import hmac
import json
import os
import re
import socket
import struct
import subprocess
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
import dns_server  # noqa: E402
import http_util as hu  # noqa: E402
import udp_util as uu  # noqa: E402

COOKIE = 0x2112A442
XOR_MAPPED_ADDRESS, ERROR_CODE, UNKNOWN_ATTRIBUTES = 0x0020, 0x0009, 0x000A
SOFTWARE, FINGERPRINT, PADDING, PRIORITY = 0x8022, 0x8028, 0x0026, 0x0024
CHANGE_REQUEST, RESPONSE_PORT, RESPONSE_ORIGIN, OTHER_ADDRESS = 0x0003, 0x0027, 0x802B, 0x802C
ALT_RE = re.compile(r"listener stun_in listening on 127\.0\.0\.1:(\d+) "
                    r"\(stun, alternate address 127\.0\.0\.2:(\d+)\)")


def message(msg_type, tid, attrs=(), fingerprint=True):
    body = b"".join(struct.pack("!HH", t, len(v)) + v + b"\0" * (-len(v) % 4) for t, v in attrs)
    head = struct.pack("!HHI", msg_type, len(body) + (8 if fingerprint else 0), COOKIE) + tid
    m = head + body
    if fingerprint:
        m += struct.pack("!HHI", FINGERPRINT, 4, (zlib.crc32(m) ^ 0x5354554E) & 0xFFFFFFFF)
    return m


def parse(data):
    """(type, tid, [(attr type, value)]) of a STUN message; checks length and FINGERPRINT."""
    msg_type, length, cookie = struct.unpack("!HHI", data[:8])
    assert cookie == COOKIE and length + 20 == len(data), "header"
    attrs, off = [], 20
    while off < len(data):
        t, n = struct.unpack("!HH", data[off:off + 4])
        v = data[off + 4:off + 4 + n]
        if t == FINGERPRINT:
            assert struct.unpack("!I", v)[0] == (zlib.crc32(data[:off]) ^ 0x5354554E) & 0xFFFFFFFF, "fingerprint"
        attrs.append((t, v))
        off += 4 + n + (-n % 4)
    return msg_type, data[8:20], attrs


def xor_address(value, tid):
    family, port = value[1], struct.unpack("!H", value[2:4])[0] ^ (COOKIE >> 16)
    if family == 1:
        ip = struct.unpack("!I", value[4:8])[0] ^ COOKIE
        return socket.inet_ntop(socket.AF_INET, struct.pack("!I", ip)), port
    mask = struct.pack("!I", COOKIE) + tid
    return socket.inet_ntop(socket.AF_INET6, bytes(a ^ b for a, b in zip(value[4:20], mask))), port


def ask(sock, port, data, host="127.0.0.1"):
    sock.sendto(data, (host, port))
    try:
        return sock.recvfrom(2048)[0]
    except socket.timeout:
        return None


def stun_listener(address="127.0.0.1:0", **stun):
    lst = {"name": "stun_in", "address": address, "protocol": "stun"}
    if stun:
        lst["stun"] = stun
    return lst


def case_binding_ipv4_minimal_and_padded():
    sl, ap = uu.start([stun_listener(software="sluice-test")], [])
    port = sl.port("stun_in")
    c = uu.client()
    tid = os.urandom(12)
    answer = ask(c, port, message(0x0001, tid, fingerprint=False))
    check(answer is not None and len(answer) == 40,
          "a 20-byte Binding request gets the minimal 40-byte answer (%r)" % (answer and len(answer)))
    t, rtid, attrs = parse(answer)
    check(t == 0x0101 and rtid == tid, "a Binding success response with the request's transaction id")
    check([a for a, _ in attrs] == [XOR_MAPPED_ADDRESS, FINGERPRINT],
          "XOR-MAPPED-ADDRESS and FINGERPRINT only: no SOFTWARE for a request that small", repr(attrs))
    mapped = xor_address(attrs[0][1], tid)
    check(mapped == c.getsockname(), "XOR-MAPPED-ADDRESS is the client's own address %r (%r)" %
          (c.getsockname(), mapped))
    tid2 = os.urandom(12)
    answer = ask(c, port, message(0x0001, tid2, [(PADDING, b"\0" * 40)]))
    t, rtid, attrs = parse(answer)
    check([a for a, _ in attrs] == [XOR_MAPPED_ADDRESS, SOFTWARE, FINGERPRINT] and
          dict(attrs)[SOFTWARE] == b"sluice-test" and rtid == tid2,
          "a request with PADDING gets SOFTWARE too", repr(attrs))
    m = uu.metrics(ap, "sluice_stun")
    lbl = frozenset({("listener", "stun_in")})
    check(m.get(("sluice_stun_responses_total", lbl | {("status", "success")})) == 2,
          "sluice_stun_responses_total{status=success} == 2")
    want_sent = 40 + len(answer)
    check(m.get(("sluice_stun_bytes_total", lbl | {("direction", "sent")})) == want_sent and
          m.get(("sluice_stun_bytes_total", lbl | {("direction", "received")})) == 20 + 20 + 44 + 8,
          "sluice_stun_bytes_total counts requests (92) and answers (%d)" % want_sent)
    sl.stop()


def case_binding_ipv6():
    if not dns_server.ipv6_loopback_works():
        raise harness.Skip("no IPv6 loopback")
    sl, ap = uu.start([stun_listener("[::1]:0")], [])
    port = sl.port("stun_in")
    c = uu.client("::1")
    tid = os.urandom(12)
    answer = ask(c, port, message(0x0001, tid), host="::1")
    check(answer is not None and len(answer) == 52, "an IPv6 client's answer is 52 bytes")
    _, rtid, attrs = parse(answer)
    mapped = xor_address(dict(attrs)[XOR_MAPPED_ADDRESS], tid)
    check(mapped == c.getsockname()[:2] and rtid == tid,
          "XOR-MAPPED-ADDRESS is [::1]:%d, the client's own (%r)" % (c.getsockname()[1], mapped))
    sl.stop()


def case_errors_and_drops():
    sl, ap = uu.start([stun_listener()], [])
    port = sl.port("stun_in")
    c = uu.client()
    tid = os.urandom(12)
    answer = ask(c, port, message(0x0001, tid, [(0x0031, b"abcd"), (0x8031, b""), (0x0031, b"")]))
    t, rtid, attrs = parse(answer)
    a = dict(attrs)
    check(t == 0x0111 and rtid == tid, "an unknown comprehension-required attribute gets an error response")
    check(a[ERROR_CODE][2] * 100 + a[ERROR_CODE][3] == 420 and a[UNKNOWN_ATTRIBUTES] == b"\x00\x31",
          "420 with UNKNOWN-ATTRIBUTES listing 0x0031 once (0x8031 is optional)", repr(attrs))
    answer = ask(c, port, message(0x0001, tid, [(PRIORITY, b"\1\2")]))
    _, _, attrs = parse(answer)
    code = dict(attrs)[ERROR_CODE]
    check(code[2] * 100 + code[3] == 400, "a PRIORITY of 2 bytes gets 400")
    good = message(0x0001, tid)
    drops = {
        "not_stun": [b"hello", b"\x80" + good[1:], good[:4] + b"\0\0\0\0" + good[8:]],
        "malformed": [good + b"\0\0\0\0", good[:-4]],
        "bad_fingerprint": [good[:-1] + bytes([good[-1] ^ 1])],
        "not_request": [message(0x0011, tid), message(0x0101, tid)],
    }
    for payloads in drops.values():
        for p in payloads:
            c.sendto(p, ("127.0.0.1", port))
    # A last good request, answered after every dropped one was read: nothing came back for them.
    answer = ask(c, port, message(0x0001, os.urandom(12)))
    check(answer is not None and parse(answer)[0] == 0x0101, "a good request is still answered")
    c.setblocking(False)
    try:
        extra = c.recvfrom(2048)
    except BlockingIOError:
        extra = None
    check(extra is None, "nothing was sent back for the dropped datagrams", repr(extra))
    m = uu.metrics(ap, "sluice_stun")
    lbl = frozenset({("listener", "stun_in")})
    for reason, payloads in drops.items():
        got = m.get(("sluice_stun_dropped_total", lbl | {("reason", reason)}))
        check(got == len(payloads), "sluice_stun_dropped_total{reason=%s} == %d (%r)" % (reason, len(payloads), got))
    check(m.get(("sluice_stun_responses_total", lbl | {("status", "420")})) == 1 and
          m.get(("sluice_stun_responses_total", lbl | {("status", "400")})) == 1,
          "one 420 and one 400 counted")
    harness.check_clean_exit(sl, sl.stop())


def case_rate_limit_per_source():
    sl, ap = uu.start([stun_listener(rate_limit=1, rate_burst=3)], [])
    port = sl.port("stun_in")
    c = uu.client()
    for _ in range(8):
        c.sendto(message(0x0001, os.urandom(12)), ("127.0.0.1", port))
    got = uu.wait_sample(ap, "sluice_stun_dropped_total", 5, listener="stun_in", reason="rate_limited")
    answered = uu.sample(ap, "sluice_stun_responses_total", listener="stun_in", status="success")
    check(got == 5 and answered == 3,
          "8 requests at once against a burst of 3 (1/s): 3 answered, 5 dropped as rate_limited "
          "(%r, %r)" % (answered, got))
    other = uu.client("127.0.0.2")
    check(ask(other, port, message(0x0001, os.urandom(12))) is not None, "another source has its own budget")
    sl.stop()


def plain_address(value):
    return socket.inet_ntop(socket.AF_INET, value[4:8]), struct.unpack("!H", value[2:4])[0]


def case_nat_discovery_answers():
    sl, ap = uu.start([stun_listener(alternate_address="127.0.0.2:0")], [])
    line = sl.wait_log(ALT_RE, 5)
    check(line is not None, "the listener logs its two addresses", sl.stderr_text())
    p1, p2 = map(int, ALT_RE.search(line).groups())
    check(p1 != p2, "two ports (%d, %d)" % (p1, p2))
    c = uu.client()
    pad = (PADDING, b"\0" * 48)

    def ask_from(to, attrs):
        tid = os.urandom(12)
        c.sendto(message(0x0001, tid, attrs), to)
        try:
            data, peer = c.recvfrom(2048)
        except socket.timeout:
            return None, None, {}
        t, rtid, got = parse(data)
        return peer, len(data), dict(got) if rtid == tid and t == 0x0101 else {"bad": data}

    # (sent to, CHANGE-REQUEST flags) -> (answered from, OTHER-ADDRESS)
    table = [
        (("127.0.0.1", p1), 0, ("127.0.0.1", p1), ("127.0.0.2", p2)),
        (("127.0.0.1", p1), 6, ("127.0.0.2", p2), ("127.0.0.2", p2)),
        (("127.0.0.1", p1), 2, ("127.0.0.1", p2), ("127.0.0.2", p2)),
        (("127.0.0.1", p1), 4, ("127.0.0.2", p1), ("127.0.0.2", p2)),
        (("127.0.0.2", p1), 4, ("127.0.0.1", p1), ("127.0.0.1", p2)),
        (("127.0.0.2", p2), 2, ("127.0.0.2", p1), ("127.0.0.1", p1)),
        (("127.0.0.1", p2), 0, ("127.0.0.1", p2), ("127.0.0.2", p1)),
    ]
    for to, flags, want_from, want_other in table:
        peer, _, a = ask_from(to, [(CHANGE_REQUEST, struct.pack("!I", flags)), pad])
        check(peer == want_from and plain_address(a.get(RESPONSE_ORIGIN, b"\0" * 8)) == want_from and
              plain_address(a.get(OTHER_ADDRESS, b"\0" * 8)) == want_other and
              xor_address(a.get(XOR_MAPPED_ADDRESS, b"\0" * 8), b"") == c.getsockname(),
              "sent to %s:%d with CHANGE-REQUEST %d: answered from %s:%d, RESPONSE-ORIGIN the "
              "same, OTHER-ADDRESS %s:%d" % (to + (flags,) + want_from + want_other),
              "%r %r" % (peer, a))
    # A request too small to pay for them gets neither OTHER-ADDRESS nor RESPONSE-ORIGIN, but
    # its CHANGE-REQUEST is honoured.
    peer, size, a = ask_from(("127.0.0.1", p1), [(CHANGE_REQUEST, struct.pack("!I", 6))])
    check(peer == ("127.0.0.2", p2) and size == 40 and sorted(a) == [XOR_MAPPED_ADDRESS, FINGERPRINT],
          "a 36-byte request gets the minimal 40-byte answer, from the other IP and port",
          "%r %r %r" % (peer, size, a))
    # RESPONSE-PORT: the answer goes to another port of the same IP.
    other = uu.client()
    tid = os.urandom(12)
    c.sendto(message(0x0001, tid, [(RESPONSE_PORT, struct.pack("!HH", other.getsockname()[1], 0))]),
             ("127.0.0.1", p1))
    data, peer = other.recvfrom(2048)
    _, rtid, attrs = parse(data)
    check(rtid == tid and xor_address(dict(attrs)[XOR_MAPPED_ADDRESS], tid) == c.getsockname(),
          "RESPONSE-PORT sends the answer to that port; XOR-MAPPED-ADDRESS is still the sender's")
    peer, _, a = ask_from(("127.0.0.1", p1), [(CHANGE_REQUEST, b"\0\0")])
    check(ERROR_CODE not in a and "bad" in a and parse(a["bad"])[0] == 0x0111,
          "a CHANGE-REQUEST of 2 bytes gets an error response")
    check(uu.sample(ap, "sluice_stun_responses_total", listener="stun_in", status="success") == 9,
          "9 success responses counted")
    sl.stop()


def case_reload_moves_the_alternate_address():
    sl, ap = uu.start([stun_listener(alternate_address="127.0.0.2:0")], [])
    p1 = sl.port("stun_in")
    c = uu.client()
    pad = (PADDING, b"\0" * 48)

    def other_address():
        tid = os.urandom(12)
        data = ask(c, p1, message(0x0001, tid, [pad]))
        return plain_address(dict(parse(data)[2]).get(OTHER_ADDRESS, b"\0" * 8)) if data else None

    check(other_address()[0] == "127.0.0.2", "OTHER-ADDRESS on 127.0.0.2 before the reload")
    c.settimeout(1)  # a request that met an old socket on its way out is asked again
    with open(sl.config_path + ".tmp", "w") as f:
        f.write(uu.config([stun_listener("127.0.0.1:%d" % p1, alternate_address="127.0.0.3:0")], []))
    os.replace(sl.config_path + ".tmp", sl.config_path)
    r = hu.request_once(ap, "POST", "/reload", body=b"", host="admin", timeout=20)
    check(r.status == 200 and json.loads(r.body).get("result") == "applied", "the reload is applied",
          r.body.decode())
    # The old sockets stop reading at once; the new ones answer.
    got = []
    harness.wait_until(lambda: got.append(other_address()) or got[-1] and got[-1][0] == "127.0.0.3", 15,
                       interval=0.1)
    check(got and got[-1] and got[-1][0] == "127.0.0.3",
          "after the reload OTHER-ADDRESS is on 127.0.0.3 (%r)" % got[-1:])
    sl.stop()


BAD_ALTERNATES = """listeners:
  - name: same_ip
    address: 127.0.0.1:3478
    protocol: stun
    stun: {alternate_address: 127.0.0.1:3479}
  - name: same_port
    address: 127.0.0.1:3480
    protocol: stun
    stun: {alternate_address: 127.0.0.2:3480}
  - name: wildcard
    address: 0.0.0.0:3478
    protocol: stun
    stun: {alternate_address: 127.0.0.2:3479}
  - name: family
    address: 127.0.0.1:3482
    protocol: stun
    stun: {alternate_address: "[::1]:3479"}
  - name: taken
    address: 127.0.0.2:3484
    protocol: udp
    cluster: c
  - name: overlaps
    address: 127.0.0.1:3486
    protocol: stun
    stun: {alternate_address: 127.0.0.2:3484}
clusters:
  - name: c
    endpoints: [{address: 127.0.0.1:9}]
"""


def case_alternate_address_errors_are_located():
    path, r = uu.check_config_file(BAD_ALTERNATES, "sluice-stun-")
    check(r.returncode == 1, "sluice check refuses the file (exit %d)" % r.returncode)
    want = [
        path + ":5:31: listeners[0].stun.alternate_address: expected another IP than the listener's "
        "(127.0.0.1): an OTHER-ADDRESS on the same IP makes an address-dependent NAT look "
        "endpoint-independent",
        path + ":9:31: listeners[1].stun.alternate_address: expected another port than the listener's "
        "(3480): RFC 5780's tests change the port and the IP apart",
        path + ":13:31: listeners[2].stun.alternate_address: needs 'address' to be one IP, not the "
        "wildcard 0.0.0.0: OTHER-ADDRESS and RESPONSE-ORIGIN name the address that answered",
        path + ":17:31: listeners[3].stun.alternate_address: expected an address of the family of "
        "'address' (127.0.0.1:3482)",
        path + ":25:31: listeners[5].stun.alternate_address: 127.0.0.2:3484 is already used by "
        "listener 'taken'",
    ]
    got = (r.stdout + r.stderr).splitlines()
    check(got == want, "each error is located at stun.alternate_address", "\n".join(got))


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def closed_by_peer(sock, timeout=10):
    """True once the peer closed (recv returns b"" or a reset) within `timeout`."""
    sock.settimeout(timeout)
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def case_stun_over_tcp():
    sl, ap = uu.start([stun_listener(tcp=True, max_tcp_connections=2, tcp_idle_timeout="3s")], [])
    port = sl.port("stun_in")
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    harness.register_cleanup(c.close)
    t1, t2, t3 = os.urandom(12), os.urandom(12), os.urandom(12)
    r1, r2 = message(0x0001, t1, fingerprint=False), message(0x0001, t2)
    # Two requests back to back, the second cut in the middle of its header.
    c.sendall(r1 + r2[:7])
    first = recv_exactly(c, 40)
    c.sendall(r2[7:])
    second = recv_exactly(c, 40)
    for answer, tid, what in ((first, t1, "first"), (second, t2, "second")):
        t, rtid, attrs = parse(answer)
        check(t == 0x0101 and rtid == tid and
              xor_address(dict(attrs)[XOR_MAPPED_ADDRESS], tid) == c.getsockname(),
              "the %s request over TCP gets a 40-byte Binding success with the client's TCP "
              "address" % what, repr(attrs))
    c.sendall(message(0x0001, t3, [(CHANGE_REQUEST, b"\0\0\0\x06")]))
    head = recv_exactly(c, 20)
    t, length = struct.unpack("!HH", head[:4])
    _, rtid, attrs = parse(head + recv_exactly(c, length))
    code = dict(attrs).get(ERROR_CODE, b"\0\0\0\0")
    check(t == 0x0111 and rtid == t3 and code[2] * 100 + code[3] == 420 and
          dict(attrs).get(UNKNOWN_ATTRIBUTES) == b"\x00\x03",
          "CHANGE-REQUEST over TCP gets 420 (RFC 5780 runs over UDP)", repr(attrs))
    t0 = harness.time.monotonic()
    check(closed_by_peer(c, 20), "an idle connection is closed (tcp_idle_timeout 3s)")
    idle = harness.time.monotonic() - t0
    check(2.0 <= idle <= 15, "after about 3 s of silence (%.2f s)" % idle)

    bad = socket.create_connection(("127.0.0.1", port), timeout=5)
    harness.register_cleanup(bad.close)
    bad.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    check(closed_by_peer(bad), "a stream that is not STUN is closed")
    odd = socket.create_connection(("127.0.0.1", port), timeout=5)
    harness.register_cleanup(odd.close)
    odd.sendall(struct.pack("!HHI", 0x0001, 6, COOKIE) + os.urandom(12) + b"\0" * 6)
    check(closed_by_peer(odd), "a length that is not a multiple of 4 closes the connection")

    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    for h in held:
        harness.register_cleanup(h.close)
        h.sendall(message(0x0001, os.urandom(12)))
        check(len(recv_exactly(h, 40)) == 40, "a held connection is answered")
    extra = socket.create_connection(("127.0.0.1", port), timeout=5)
    harness.register_cleanup(extra.close)
    check(closed_by_peer(extra), "a third connection over max_tcp_connections 2 is closed at once")
    lbl = frozenset({("listener", "stun_in")})
    m = uu.metrics(ap, "sluice_stun")
    got = {k: m.get(("sluice_stun_" + k[0], lbl | {k[1]})) for k in [
        ("tcp_connections_total", ("result", "accepted")), ("tcp_connections_total", ("result", "refused")),
        ("dropped_total", ("reason", "not_stun")), ("dropped_total", ("reason", "malformed")),
        ("responses_total", ("status", "success")), ("responses_total", ("status", "420"))]}
    check(list(got.values()) == [5, 1, 1, 1, 4, 1],
          "counted: 5 connections accepted, 1 refused, 1 not STUN, 1 malformed, 4 answers, one 420",
          repr(got))
    sl.stop()


USERNAME, MESSAGE_INTEGRITY, MESSAGE_INTEGRITY_SHA256 = 0x0006, 0x0008, 0x001C


def signed(tid, user, password, sha256=False, size=32):
    """A Binding request with USERNAME, MESSAGE-INTEGRITY(-SHA256) under `password`, FINGERPRINT."""
    body = struct.pack("!HH", USERNAME, len(user)) + user + b"\0" * (-len(user) % 4)
    mi_type, mi_len = (MESSAGE_INTEGRITY_SHA256, size) if sha256 else (MESSAGE_INTEGRITY, 20)
    head = struct.pack("!HHI", 0x0001, len(body) + 4 + mi_len, COOKIE) + tid
    mac = hmac.new(password, head + body, hashlib.sha256 if sha256 else hashlib.sha1).digest()[:mi_len]
    body += struct.pack("!HH", mi_type, mi_len) + mac
    m = struct.pack("!HHI", 0x0001, len(body) + 8, COOKIE) + tid + body
    return m + struct.pack("!HHI", FINGERPRINT, 4, (zlib.crc32(m) ^ 0x5354554E) & 0xFFFFFFFF)


def integrity_ok(data, password):
    """Whether the answer's MESSAGE-INTEGRITY(-SHA256) is the HMAC of what precedes it."""
    off = 20
    while off < len(data):
        t, n = struct.unpack("!HH", data[off:off + 4])
        if t in (MESSAGE_INTEGRITY, MESSAGE_INTEGRITY_SHA256):
            head = data[:2] + struct.pack("!H", off - 20 + 4 + n) + data[4:off]
            algo = hashlib.sha256 if t == MESSAGE_INTEGRITY_SHA256 else hashlib.sha1
            return hmac.new(password, head, algo).digest()[:n] == data[off + 4:off + 4 + n]
        off += 4 + n + (-n % 4)
    return False


def case_short_term_credentials():
    sl, ap = uu.start([stun_listener(credentials=[{"username": "alice", "password": "wonderland"},
                                                  {"username": "bob", "password": "builder"}])], [])
    port = sl.port("stun_in")
    c = uu.client()
    for sha256, size in ((False, 20), (True, 32), (True, 16)):
        tid = os.urandom(12)
        answer = ask(c, port, signed(tid, b"bob", b"builder", sha256, size))
        t, rtid, attrs = parse(answer)
        want = MESSAGE_INTEGRITY_SHA256 if sha256 else MESSAGE_INTEGRITY
        check(t == 0x0101 and rtid == tid and [a for a, _ in attrs] == [XOR_MAPPED_ADDRESS, want, FINGERPRINT] and
              len(dict(attrs)[want]) == size and integrity_ok(answer, b"builder"),
              "a request signed with %s (%d bytes) is answered, signed the same way" %
              ("MESSAGE-INTEGRITY-SHA256" if sha256 else "MESSAGE-INTEGRITY", size), repr(attrs))

    def code(answer):
        _, _, attrs = parse(answer)
        e = dict(attrs).get(ERROR_CODE, b"\0\0\0\0")
        return e[2] * 100 + e[3], MESSAGE_INTEGRITY in dict(attrs)

    check(code(ask(c, port, signed(os.urandom(12), b"bob", b"wonderland"))) == (401, False),
          "a wrong password gets 401 without MESSAGE-INTEGRITY")
    check(code(ask(c, port, signed(os.urandom(12), b"carol", b"builder", True))) == (401, False),
          "an unknown user gets 401")
    check(code(ask(c, port, message(0x0001, os.urandom(12)))) == (400, False),
          "a request without USERNAME and MESSAGE-INTEGRITY gets 400")
    lbl = frozenset({("listener", "stun_in")})
    m = uu.metrics(ap, "sluice_stun")
    got = [m.get(("sluice_stun_responses_total", lbl | {("status", s)})) for s in ("success", "401", "400")]
    check(got == [3, 2, 1], "counted: 3 success, 2 of 401, 1 of 400 (%r)" % got)
    sl.stop()


def case_wildcard_listener_answers_from_the_address_sent_to():
    sl, ap = uu.start([stun_listener("0.0.0.0:0")], [])
    port = sl.port("stun_in")
    c = uu.client()
    for dst in ("127.0.0.2", "127.0.0.3", "127.0.0.1"):
        tid = os.urandom(12)
        c.sendto(message(0x0001, tid), (dst, port))
        data, peer = c.recvfrom(2048)
        check(parse(data)[1] == tid and peer == (dst, port),
              "a request sent to %s:%d is answered from there (IP_PKTINFO)" % (dst, port), repr(peer))
    sl.stop()


def case_turnutils_natdiscovery():
    tool = "/usr/bin/turnutils_natdiscovery"
    if not os.access(tool, os.X_OK):
        raise harness.Skip("coturn's turnutils_natdiscovery is not installed (scripts/bootstrap)")
    sl, ap = uu.start([stun_listener(alternate_address="127.0.0.2:0")], [])
    line = sl.wait_log(ALT_RE, 5)
    p1, p2 = map(int, ALT_RE.search(line).groups())
    # -P pads each request with 1,500 bytes: enough for sluice to add OTHER-ADDRESS and
    # RESPONSE-ORIGIN (unpadded, coturn's 20-odd-byte requests get the minimal answer).
    r = subprocess.run([tool, "-m", "-f", "-P", "-p", str(p1), "127.0.0.1"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60, preexec_fn=harness.die_with_parent)
    lines = r.stdout.splitlines()
    check("NAT with Endpoint Independent Mapping!" in lines and
          "NAT with Endpoint Independent Filtering!" in lines,
          "turnutils_natdiscovery runs RFC 5780's tests against sluice: no NAT on loopback", r.stdout)
    check("0: : IPv4. Other addr: : 127.0.0.2:%d" % p2 in lines,
          "it reads OTHER-ADDRESS 127.0.0.2:%d" % p2, r.stdout)
    sl.stop()


def case_turnutils_stunclient():
    tool = "/usr/bin/turnutils_stunclient"
    if not os.access(tool, os.X_OK):
        raise harness.Skip("coturn's turnutils_stunclient is not installed (scripts/bootstrap)")
    sl, ap = uu.start([stun_listener()], [])
    port = sl.port("stun_in")
    r = subprocess.run([tool, "-p", str(port), "127.0.0.1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=30, preexec_fn=harness.die_with_parent)
    found = re.findall(r"UDP reflexive addr: (\S+)", r.stdout)
    check(r.returncode == 0 and len(set(found)) == 1 and found[0].startswith("127.0.0.1:"),
          "turnutils_stunclient reads its reflexive address 127.0.0.1:PORT from sluice", r.stdout)
    check(uu.sample(ap, "sluice_stun_responses_total", listener="stun_in", status="success") == 1,
          "one success response counted")
    sl.stop()


if __name__ == "__main__":
    harness.run_cases([case_binding_ipv4_minimal_and_padded, case_binding_ipv6, case_errors_and_drops,
                       case_rate_limit_per_source, case_nat_discovery_answers,
                       case_reload_moves_the_alternate_address,
                       case_alternate_address_errors_are_located, case_stun_over_tcp,
                       case_short_term_credentials, case_wildcard_listener_answers_from_the_address_sent_to,
                       case_turnutils_natdiscovery,
                       case_turnutils_stunclient])

#!/usr/bin/env python3
"""The STUN listener (`protocol: stun`) answering real clients on loopback: a hand-written
client's Binding request over IPv4 and IPv6 gets XOR-MAPPED-ADDRESS with its own address,
its transaction id and a correct FINGERPRINT, in the minimal 40 / 52 bytes even with
SOFTWARE configured, and SOFTWARE once PADDING asks for it; an unknown comprehension-
required attribute gets 420 listing it; a bad attribute value 400; non-STUN bytes, a bad
FINGERPRINT, indications and responses get nothing and are counted; a source over its rate
limit is dropped and counted; coturn's turnutils_stunclient reads its mapped address."""

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
import udp_util as uu  # noqa: E402

COOKIE = 0x2112A442
XOR_MAPPED_ADDRESS, ERROR_CODE, UNKNOWN_ATTRIBUTES = 0x0020, 0x0009, 0x000A
SOFTWARE, FINGERPRINT, PADDING, PRIORITY = 0x8022, 0x8028, 0x0026, 0x0024


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
                       case_rate_limit_per_source, case_turnutils_stunclient])

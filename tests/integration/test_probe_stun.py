#!/usr/bin/env python3
"""`sluice probe stun://HOST:PORT` against real servers on loopback: sluice's own STUN
listener (three requests from one socket, one mapped address, text and --json), a server
that never answers (the RFC 8489 retransmission schedule seen by it, exit 13), one that
answers an error response (exit 14) and one that answers garbage (exit 15), and a bad URL
(exit 2); `sluice probe stun+tcp://` over one TCP connection to sluice's STUN-over-TCP
listener (text and --json), to a closed port, to a server that accepts and never answers
(exit 13 each), and to one that answers another transaction (exit 15)."""

import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
import udp_util as uu  # noqa: E402

COOKIE = 0x2112A442


def probe(args, timeout=30):
    return subprocess.run([harness.sluice_bin(), "probe"] + args, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout,
                          preexec_fn=harness.die_with_parent)


class FakeServer:
    """A UDP socket that records when each datagram came and answers with answer(request)
    (None: no answer)."""

    def __init__(self, answer):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.times = []
        self.answer = answer
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        harness.register_cleanup(self.stop)

    def _run(self):
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(2048)
            except (socket.timeout, OSError):
                continue
            self.times.append(time.monotonic())
            reply = self.answer(data)
            if reply is not None:
                self.sock.sendto(reply, peer)

    def stop(self):
        self._stop = True
        self._t.join(2)
        self.sock.close()


def error_response(request):
    reason = b"Unauthorized"
    attr = struct.pack("!HH", 0x0009, 4 + len(reason)) + b"\0\0\x04\x01" + reason
    head = struct.pack("!HHI", 0x0111, len(attr) + 8, COOKIE) + request[8:20]
    m = head + attr
    return m + struct.pack("!HHI", 0x8028, 4, (zlib.crc32(m) ^ 0x5354554E) & 0xFFFFFFFF)


LINE_RE = re.compile(r"^  binding (\d): mapped 127\.0\.0\.1:(\d+)  rtt (\d+\.\d{3}) ms  transmissions 1$")


def case_against_sluice():
    sl, ap = uu.start([{"name": "stun_in", "address": "127.0.0.1:0", "protocol": "stun"}], [])
    port = sl.port("stun_in")
    r = probe(["stun://127.0.0.1:%d" % port, "-n", "3"])
    lines = r.stdout.splitlines()
    check(r.returncode == 0, "exit 0 when every request is answered (%d)" % r.returncode, r.stderr)
    check(len(lines) == 6 and lines[0] == "stun://127.0.0.1:%d (127.0.0.1:%d)" % (port, port),
          "a header line, three bindings, the mapped address, the NAT line", r.stdout)
    matches = [LINE_RE.match(l) for l in lines[1:4]]
    check(all(matches) and [m.group(1) for m in matches] == ["1", "2", "3"],
          "each binding shows its mapped address, round trip and one transmission", r.stdout)
    ports = {m.group(2) for m in matches if m}
    check(len(ports) == 1 and lines[4] == "  mapped address: 127.0.0.1:%s (the same for every request)" % ports.pop(),
          "one socket, one mapped address, said once", r.stdout)
    check(lines[5] == "  nat behaviour: cannot tell (the server offers no OTHER-ADDRESS: RFC 5780 needs a "
          "server with a second address)", "without OTHER-ADDRESS the NAT behaviour is not guessed", lines[5])
    r = probe(["stun://127.0.0.1:%d" % port, "--json"])
    j = json.loads(r.stdout)
    b = j["bindings"]
    check(r.returncode == 0 and j["server"] == "127.0.0.1:%d" % port and j["failure"] == "" and len(b) == 1 and
          b[0]["transmissions"] == 1 and re.match(r"^127\.0\.0\.1:\d+$", b[0]["mapped"]) and
          b[0]["other_address"] is None and b[0]["error"] == "",
          "--json: one binding with its mapped address", r.stdout)
    check(uu.sample(ap, "sluice_stun_responses_total", listener="stun_in", status="success") == 4,
          "sluice answered the probe's 4 requests")
    sl.stop()


def case_nat_tests_without_a_nat():
    sl, ap = uu.start([{"name": "stun_in", "address": "127.0.0.1:0", "protocol": "stun",
                        "stun": {"alternate_address": "127.0.0.2:0"}}], [])
    line = sl.wait_log(re.compile(r"listening on 127\.0\.0\.1:\d+ \(stun, alternate address "
                                  r"127\.0\.0\.2:(\d+)\)"), 5)
    p2 = re.search(r"127\.0\.0\.2:(\d+)", line).group(1)
    port = sl.port("stun_in")
    r = probe(["stun://127.0.0.1:%d" % port, "--json"])
    j = json.loads(r.stdout)
    nat = j["nat"]
    check(r.returncode == 0 and j["bindings"][0]["other_address"] == "127.0.0.2:" + p2,
          "the probe sees OTHER-ADDRESS 127.0.0.2:%s" % p2, r.stdout)
    check(nat["behind_nat"] is False and nat["mapping"] == "endpoint-independent" and
          re.match(r"^no NAT: the mapped address 127\.0\.0\.1:\d+ is this host's own$",
                   nat["mapping_detail"]),
          "on loopback: no NAT, the mapped address is the probe's own", r.stdout)
    tests = {t["test"]: t for t in nat["tests"]}
    check(nat["filtering"] == "endpoint-independent" and
          [t["test"] for t in nat["tests"]] == ["mapping I", "filtering I", "filtering II", "filtering III"] and
          tests["filtering II"]["answer_from"] == "127.0.0.2:" + p2 and
          tests["filtering III"]["answer_from"] == "127.0.0.1:" + p2,
          "nothing filters: answers from the other IP and port and from the other port came in", r.stdout)
    sl.stop()


def case_no_answer_retransmits():
    silent = FakeServer(lambda req: None)
    r = probe(["stun://127.0.0.1:%d" % silent.port, "--timeout", "1700ms"])
    check(r.returncode == 13, "exit 13 without an answer (%d)" % r.returncode, r.stdout + r.stderr)
    check(r.stderr.strip() == "sluice probe: no answer from 127.0.0.1:%d within 1700 ms (3 transmissions)" %
          silent.port, "the error names the server, the timeout and the transmissions", r.stderr)
    t = silent.times
    check(len(t) == 3, "the server saw 3 transmissions in 1.7 s (at 0, 0.5 and 1.5 s) (%d)" % len(t))
    if len(t) == 3:
        gaps = [t[1] - t[0], t[2] - t[1]]
        check(0.45 <= gaps[0] <= 0.95 and 0.95 <= gaps[1] <= 1.9,
              "retransmitted after 500 ms, then after 1 s (RTO doubling): %r" % gaps)


def case_error_and_malformed_answers():
    err = FakeServer(error_response)
    r = probe(["stun://127.0.0.1:%d" % err.port])
    check(r.returncode == 14 and r.stderr.strip() == "sluice probe: error response 401 Unauthorized",
          "an error response: exit 14 with its code and reason (%d)" % r.returncode, r.stderr)
    junk = FakeServer(lambda req: b"\x01\x01\x00\x04" + req[4:20] + b"\x00\x20\x00\x08")
    r = probe(["stun://127.0.0.1:%d" % junk.port])
    check(r.returncode == 15 and r.stderr.strip() ==
          "sluice probe: malformed answer: attribute past the end",
          "a malformed answer: exit 15 saying what is wrong (%d)" % r.returncode, r.stderr)
    r = probe(["stun://127.0.0.1:99999"])
    check(r.returncode == 2 and r.stderr.strip() == "sluice probe: bad URL: port '99999' is not 1-65535",
          "a bad port: exit 2", r.stderr)
    r = probe(["stun://127.0.0.1:3478", "-H", "a: b"])
    check(r.returncode == 2 and r.stderr.strip() == "sluice probe: stun:// takes only -n, --timeout and --json",
          "HTTP options are refused for stun://", r.stderr)


TCP_LINE_RE = re.compile(r"^  binding (\d): mapped 127\.0\.0\.1:(\d+)  rtt (\d+\.\d{3}) ms  transmissions 1$")


def case_over_tcp():
    sl, ap = uu.start([{"name": "stun_in", "address": "127.0.0.1:0", "protocol": "stun",
                        "stun": {"tcp": True}}], [])
    port = sl.port("stun_in")
    r = probe(["stun+tcp://127.0.0.1:%d" % port, "-n", "3"])
    lines = r.stdout.splitlines()
    check(r.returncode == 0, "stun+tcp://: exit 0 when every request is answered (%d)" % r.returncode,
          r.stdout + r.stderr)
    check(len(lines) == 6 and lines[0] == "stun+tcp://127.0.0.1:%d (127.0.0.1:%d)" % (port, port),
          "a header line, three bindings, the mapped address, the NAT line", r.stdout)
    matches = [TCP_LINE_RE.match(l) for l in lines[1:4]]
    ports = {m.group(2) for m in matches if m}
    check(all(matches) and len(ports) == 1 and
          lines[4] == "  mapped address: 127.0.0.1:%s (the same for every request)" % ports.pop(),
          "three answers on one connection: one mapped address (the connection's source port)", r.stdout)
    check(lines[5] == "  nat behaviour: not tested over TCP (RFC 5780's tests need UDP)",
          "over TCP the NAT tests are not run, and it says why", lines[5])
    accepted = uu.sample(ap, "sluice_stun_tcp_connections_total", listener="stun_in", result="accepted")
    answered = uu.sample(ap, "sluice_stun_responses_total", listener="stun_in", status="success")
    check(accepted == 1 and answered == 3,
          "sluice accepted one TCP connection and answered 3 requests on it (%r, %r)" % (accepted, answered))
    r = probe(["stun+tcp://127.0.0.1:%d" % port, "--json"])
    j = json.loads(r.stdout)
    b = j["bindings"]
    check(r.returncode == 0 and j["transport"] == "tcp" and j["nat"] is None and len(b) == 1 and
          b[0]["transmissions"] == 1 and re.match(r"^127\.0\.0\.1:\d+$", b[0]["mapped"]) and
          b[0]["error"] == "" and j["failure"] == "",
          "--json: transport tcp, one binding with its mapped address", r.stdout)
    r = probe(["stun://127.0.0.1:%d" % port, "--json"])
    check(json.loads(r.stdout)["transport"] == "udp", "--json of stun:// says transport udp", r.stdout)
    sl.stop()


def case_tcp_failures():
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.bind(("127.0.0.1", 0))
    cport = closed.getsockname()[1]
    closed.close()
    r = probe(["stun+tcp://127.0.0.1:%d" % cport])
    check(r.returncode == 13 and r.stderr.strip() ==
          "sluice probe: cannot connect to 127.0.0.1:%d: Connection refused" % cport,
          "a closed port: exit 13, connection refused (%d)" % r.returncode, r.stderr)
    mute = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    mute.bind(("127.0.0.1", 0))
    mute.listen(4)
    harness.register_cleanup(mute.close)
    r = probe(["stun+tcp://127.0.0.1:%d" % mute.getsockname()[1], "--timeout", "800ms"])
    check(r.returncode == 13 and r.stderr.strip() ==
          "sluice probe: no answer from 127.0.0.1:%d within 800 ms (tcp)" % mute.getsockname()[1],
          "a server that accepts and never answers: exit 13 after --timeout (%d)" % r.returncode, r.stderr)
    other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    other.bind(("127.0.0.1", 0))
    other.listen(4)
    harness.register_cleanup(other.close)

    def answer_another():
        c, _ = other.accept()
        req = c.recv(2048)
        c.sendall(error_response(req[:8] + bytes(12) + req[20:]))
        c.recv(10)
        c.close()
    t = threading.Thread(target=answer_another, daemon=True)
    t.start()
    r = probe(["stun+tcp://127.0.0.1:%d" % other.getsockname()[1]])
    check(r.returncode == 15 and r.stderr.strip() == "sluice probe: malformed answer: another transaction's",
          "an answer to another transaction: exit 15 (%d)" % r.returncode, r.stderr)
    t.join(5)
    r = probe(["stun+udp://127.0.0.1:3478"])
    check(r.returncode == 2, "an unknown scheme is a bad URL: exit 2 (%d)" % r.returncode, r.stderr)


if __name__ == "__main__":
    harness.run_cases([case_against_sluice, case_nat_tests_without_a_nat, case_no_answer_retransmits,
                       case_error_and_malformed_answers, case_over_tcp, case_tcp_failures])

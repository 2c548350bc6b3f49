#!/usr/bin/env python3
"""`sluice check`, `sluice run` on bad configs, and `sluice version`.

Runs in its own network namespace (re-executes itself under `unshare -n`) with
net.ipv4.tcp_fastopen=3, since a listener's fastopen setting is checked against it.

Each bad config must give exit code 1 and a line on stderr
`FILE:LINE:COL: key.path: message`, with LINE:COL (1-based) pointing at the
offending key (unknown key) or value (everything else).
"""

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, info, run_cases, run_sluice_cmd, sh

GOOD = """\
workers: 2
log_level: info
drain_timeout: 30s
listeners:
  - name: tcp_in
    address: 127.0.0.1:0
    protocol: tcp
    cluster: backends
    idle_timeout: 300s
    max_duration: 0s
    max_connections: 10000
    backlog: 1024
    splice: true
    socket_options:
      tcp_nodelay: true
      keepalive: {idle: 60s, interval: 10s, count: 5}
      fastopen: 256
      congestion: cubic
      send_buffer: 256KiB
      receive_buffer: 256KiB
clusters:
  - name: backends
    connect_timeout: 1s
    max_connect_attempts: 3
    source_address: 127.0.0.1
    socket_options:
      tcp_nodelay: true
      fastopen: false
    endpoints:
      - address: 127.0.0.1:8081
      - address: 127.0.0.1:8082
        weight: 2
"""

SECOND_LISTENER = """\
  - name: tcp_in
    address: 127.0.0.1:0
    protocol: tcp
    cluster: backends
"""

TMP = None  # set in main, inside the network namespace


def write(name, text):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def replace_once(text, old, new):
    assert text.count(old) == 1, old
    return text.replace(old, new)


def locate(text, needle, after=None):
    """1-based (line, column) of needle in text (the first one after `after`, if given)."""
    start = text.index(after) if after else 0
    i = text.index(needle, start)
    line = text.count("\n", 0, i) + 1
    col = i - (text.rindex("\n", 0, i) + 1 if "\n" in text[:i] else 0) + 1
    return line, col


def available_congestion():
    try:
        with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as f:
            return f.read().split()
    except OSError:
        return []


# name -> (config text, (line, col), key path, words the message should contain)
def bad_configs():
    cases = []

    t = replace_once(GOOD, "    backlog: 1024\n", "    backlog: 1024\n    bogus_key: 1\n")
    cases.append(("unknown_key", t, locate(t, "bogus_key"), "listeners[0].bogus_key", ["unknown"]))

    t = replace_once(GOOD, "workers: 2\n", "workers: many\n")
    cases.append(("wrong_type_scalar", t, locate(t, "many"), "workers", ["integer"]))

    t = replace_once(GOOD, "    backlog: 1024\n", "    backlog: [1, 2]\n")
    cases.append(("wrong_type_list", t, locate(t, "[1, 2]"), "listeners[0].backlog", ["integer"]))

    t = replace_once(GOOD, "    splice: true\n", "    splice: yes please\n")
    cases.append(("wrong_type_bool", t, locate(t, "yes please"), "listeners[0].splice", ["true"]))

    t = replace_once(GOOD, "    idle_timeout: 300s\n", "    idle_timeout: 5 parsecs\n")
    cases.append(("bad_duration", t, locate(t, "5 parsecs"), "listeners[0].idle_timeout", ["duration"]))

    t = replace_once(GOOD, "    connect_timeout: 1s\n", "    connect_timeout: 1\n")
    cases.append(("duration_without_unit", t, locate(t, "1", after="connect_timeout:"),
                  "clusters[0].connect_timeout", ["duration"]))

    t = replace_once(GOOD, "clusters:\n", SECOND_LISTENER + "clusters:\n")
    cases.append(("duplicate_listener_name", t, locate(t, "tcp_in", after="    splice: true"),
                  "listeners[1].name", ["tcp_in"]))

    t = replace_once(GOOD, "    cluster: backends\n", "    cluster: nowhere\n")
    cases.append(("missing_cluster", t, locate(t, "nowhere"), "listeners[0].cluster", ["nowhere"]))

    t = replace_once(GOOD, "    address: 127.0.0.1:0\n", "    address: 127.0.0.1:notaport\n")
    cases.append(("unparsable_listener_address", t, locate(t, "127.0.0.1:notaport"), "listeners[0].address", []))

    t = replace_once(GOOD, "      - address: 127.0.0.1:8082\n", "      - address: 127.0.0.300:8082\n")
    cases.append(("unparsable_endpoint_address", t, locate(t, "127.0.0.300:8082"),
                  "clusters[0].endpoints[1].address", []))

    t = replace_once(GOOD, "      congestion: cubic\n", "      congestion: warp9\n")
    cases.append(("unknown_congestion", t, locate(t, "warp9"), "listeners[0].socket_options.congestion",
                  ["warp9"] + available_congestion()))

    t = replace_once(GOOD, "      keepalive: {idle: 60s, interval: 10s, count: 5}\n",
                     "      keepalive: {idle: 60s, interval: soon, count: 5}\n")
    cases.append(("bad_duration_in_flow_map", t, locate(t, "soon"),
                  "listeners[0].socket_options.keepalive.interval", ["duration"]))
    return cases


def test_check_good_config():
    path = write("good.yaml", GOOD)
    p = run_sluice_cmd(["check", "-c", path])
    check(p.returncode == 0, "sluice check on a good config exits 0", "rc=%d\n%s%s" % (p.returncode, p.stdout, p.stderr))
    check(p.stdout.strip() == "%s: ok" % path, "prints '<FILE>: ok'", "stdout=%r stderr=%r" % (p.stdout, p.stderr))


def test_check_good_minimal_config():
    text = ("listeners:\n  - name: a\n    address: 127.0.0.1:0\n    protocol: tcp\n    cluster: c\n"
            "clusters:\n  - name: c\n    endpoints:\n      - address: 127.0.0.1:9\n")
    path = write("minimal.yaml", text)
    p = run_sluice_cmd(["check", "-c", path])
    check(p.returncode == 0 and p.stdout.strip() == "%s: ok" % path,
          "a minimal config (defaults for everything else) is ok", "rc=%d\n%s%s" % (p.returncode, p.stdout, p.stderr))


def expect_error(cmd, name, text, pos, key_path, words):
    path = write(name + ".yaml", text)
    try:
        p = run_sluice_cmd([cmd, "-c", path], timeout=10)
    except subprocess.TimeoutExpired as e:
        check(False, "exits 1", "still running after 10 s\n%s" % (e.stderr or b"").decode(errors="replace"))
    check(p.returncode == 1, "exits 1",
          "rc=%d\nstdout: %s\nstderr: %s" % (p.returncode, p.stdout, p.stderr))
    prefix = "%s:%d:%d: %s: " % (path, pos[0], pos[1], key_path)
    lines = [l for l in p.stderr.splitlines() if l.startswith(prefix)]
    check(lines, "reports '%s'" % prefix.replace(path, "FILE"),
          "stderr:\n%s" % p.stderr)
    msg = lines[0][len(prefix):]
    info("message: %s" % msg)
    missing = [w for w in words if w.lower() not in msg.lower()]
    check(not missing, "message mentions %s" % (", ".join(words) or "(nothing required)"),
          "missing %s in: %s" % (missing, msg))
    return lines[0]


def bad_config_cases():
    """One case per bad config and command, so that every mismatch is reported."""
    cases = []
    for cmd in ("check", "run"):
        for name, text, pos, key_path, words in bad_configs():
            def case(cmd=cmd, name=name, text=text, pos=pos, key_path=key_path, words=words):
                expect_error(cmd, name, text, pos, key_path, words)
            case.__name__ = "%s_%s" % (cmd, name)
            cases.append(case)
    return cases


def test_listener_fastopen_needs_kernel_support():
    """With net.ipv4.tcp_fastopen lacking the server bit, a listener's fastopen is a config error."""
    sh(["sysctl", "-q", "-w", "net.ipv4.tcp_fastopen=1"])
    try:
        for cmd in ("check", "run"):
            expect_error(cmd, "fastopen_disabled_in_kernel", GOOD, locate(GOOD, "256", after="fastopen:"),
                         "listeners[0].socket_options.fastopen", ["tcp_fastopen"])
    finally:
        sh(["sysctl", "-q", "-w", "net.ipv4.tcp_fastopen=3"])


def test_yaml_syntax_error():
    text = replace_once(GOOD, "    protocol: tcp\n", "    protocol: [tcp\n")
    path = write("syntax.yaml", text)
    p = run_sluice_cmd(["check", "-c", path])
    check(p.returncode == 1, "sluice check on broken YAML exits 1", "rc=%d\n%s" % (p.returncode, p.stderr))
    check(re.search(r"^%s:\d+:\d+: " % re.escape(path), p.stderr, re.M) is not None,
          "broken YAML reported as FILE:LINE:COL:", p.stderr)
    info("syntax error message: %s" % p.stderr.strip().splitlines()[0] if p.stderr.strip() else "(empty)")


def test_missing_file():
    path = os.path.join(TMP, "does-not-exist.yaml")
    p = run_sluice_cmd(["check", "-c", path])
    check(p.returncode == 1, "sluice check on a missing file exits 1", "rc=%d" % p.returncode)
    check(path in p.stderr, "the message names the file", p.stderr)
    info("missing file message: %s" % p.stderr.strip())


def test_version():
    p = run_sluice_cmd(["version"])
    check(p.returncode == 0, "sluice version exits 0", "rc=%d\n%s" % (p.returncode, p.stderr))
    check(re.match(r"^sluice \d+\.\d+\.\d+\S*$", p.stdout.strip()) is not None, "prints 'sluice <version>'",
          repr(p.stdout))
    info(p.stdout.strip())


if __name__ == "__main__":
    harness.reexec_in_netns_or_skip()
    sh(["sysctl", "-q", "-w", "net.ipv4.tcp_fastopen=3"])
    TMP = tempfile.mkdtemp(prefix="sluice-check-")
    atexit.register(shutil.rmtree, TMP, True)
    run_cases([test_check_good_config, test_check_good_minimal_config] + bad_config_cases() +
              [test_listener_fastopen_needs_kernel_support, test_yaml_syntax_error, test_missing_file, test_version])

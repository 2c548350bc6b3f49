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

    t = replace_once(GOOD, "      send_buffer: 256KiB\n", "      send_buffer: 0\n")
    cases.append(("send_buffer_zero", t, locate(t, "0", after="send_buffer:"),
                  "listeners[0].socket_options.send_buffer", ["from 4096 to 268435456 bytes, got 0"]))

    t = replace_once(GOOD, "    connect_timeout: 1s\n", "    connect_timeout: 90m\n")
    cases.append(("duration_out_of_range_as_written", t, locate(t, "90m"), "clusters[0].connect_timeout",
                  ["expected a duration from 1ms to 3600s, got 90m"]))
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


# An HTTP listener for the route rules below; the cases each change one thing.
HTTP = """\
listeners:
  - name: web
    address: 127.0.0.1:0
    protocol: http
    virtual_hosts:
      - name: site
        domains: [example.com]
        routes:
          - match: {prefix: /api/}
            cluster: backends
          - match: {prefix: /}
            direct_response: {status: 200, body: ok}
clusters:
  - name: backends
    endpoints:
      - address: 127.0.0.1:8081
"""

ONLY_FORWARD = "only for a route with a cluster (a redirect or direct_response sends nothing upstream)"


def run_check(name, text):
    path = write(name + ".yaml", text)
    p = run_sluice_cmd(["check", "-c", path], timeout=10)
    return path, p


def expect_exact(name, text, rc, lines):
    """`sluice check` exits `rc` with exactly `lines` on stderr (each (needle, after, message),
    placed at the needle: 'FILE:LINE:COL: message')."""
    path, p = run_check(name, text)
    want = ["%s:%d:%d: %s" % ((path,) + locate(text, needle, after) + (message,))
            for needle, after, message in lines]
    got = p.stderr.splitlines()
    check(p.returncode == rc, "exits %d" % rc, "rc=%d\nstderr: %s" % (p.returncode, p.stderr))
    check(got == want, "stderr is exactly: %s" % " | ".join(w.replace(path, "FILE") for w in want),
          "stderr:\n%s" % p.stderr)
    if rc == 0:
        check(p.stdout.strip() == "%s: ok" % path, "prints '<FILE>: ok'", repr(p.stdout))


def ignored_setting_cases():
    """Settings that used to load and do nothing: each is now a located error or warning."""
    cases = []

    def add(name, text, rc, lines):
        def case():
            expect_exact(name, text, rc, lines)
        case.__name__ = "ignored_" + name
        cases.append(case)

    route = "          - match: {prefix: /}\n            direct_response: {status: 200, body: ok}\n"

    t = replace_once(HTTP, "            cluster: backends\n",
                     "            cluster: backends\n            hash_policy: [{header: x-user}]\n")
    add("hash_policy_without_hashing_cluster", t, 0,
        [("[{header", None, "warning: listeners[0].virtual_hosts[0].routes[0].hash_policy: ignored: cluster "
          "'backends' balances with lb_policy: round_robin (hash_policy steers ring_hash and maglev only)")])

    t2 = replace_once(t, "      - address: 127.0.0.1:8081\n", "      - address: 127.0.0.1:8081\n    lb_policy: maglev\n")
    add("hash_policy_with_maglev_cluster", t2, 0, [])

    t = replace_once(HTTP, route, "          - match: {prefix: /old/}\n            redirect: {location: /new/}\n"
                     "            prefix_rewrite: /new/\n" + route)
    add("prefix_rewrite_on_redirect", t, 1,
        [("/new/\n", "prefix_rewrite:", "listeners[0].virtual_hosts[0].routes[1].prefix_rewrite: " + ONLY_FORWARD)])

    t = replace_once(HTTP, route, route.rstrip("\n") + "\n            prefix_rewrite: /v2/\n")
    add("prefix_rewrite_on_direct_response", t, 1,
        [("/v2/", None, "listeners[0].virtual_hosts[0].routes[1].prefix_rewrite: " + ONLY_FORWARD)])

    t = replace_once(HTTP, "          - match: {prefix: /api/}\n            cluster: backends\n",
                     "          - match: {path: /api}\n            cluster: backends\n            prefix_rewrite: /v2\n")
    add("prefix_rewrite_on_exact_path", t, 1,
        [("/v2", None, "listeners[0].virtual_hosts[0].routes[0].prefix_rewrite: only with match: prefix "
          "(a path or regex match has no prefix to replace)")])

    t = replace_once(HTTP, route, route.rstrip("\n") + "\n            timeout: 5s\n")
    add("timeout_on_direct_response", t, 1,
        [("5s", None, "listeners[0].virtual_hosts[0].routes[1].timeout: " + ONLY_FORWARD)])

    t = replace_once(HTTP, route, route.rstrip("\n") + "\n            request_headers_to_add: [{name: x-a, value: b}]\n")
    add("request_headers_on_direct_response", t, 1,
        [("[{name", None, "listeners[0].virtual_hosts[0].routes[1].request_headers_to_add: " + ONLY_FORWARD)])

    t = replace_once(HTTP, route, route.rstrip("\n") + "\n            response_headers_to_remove: [server]\n")
    add("response_headers_to_remove_on_direct_response", t, 1,
        [("[server]", None, "listeners[0].virtual_hosts[0].routes[1].response_headers_to_remove: only for a "
          "route with a cluster (a redirect or direct_response has no upstream headers to remove)")])

    t = replace_once(HTTP, "          - match: {prefix: /api/}\n", "          - match: {prefix: /}\n")
    add("route_after_catch_all", t, 0,
        [("match: {prefix: /}\n            direct", None, "warning: listeners[0].virtual_hosts[0].routes[1]: never "
          "used: routes[0] before it matches every request")])

    t = replace_once(HTTP, "clusters:\n", "      - name: other\n        domains: [www.example.com, EXAMPLE.com]\n"
                     "        routes:\n          - match: {prefix: /}\n            cluster: backends\nclusters:\n")
    add("domain_in_two_virtual_hosts", t, 1,
        [("EXAMPLE.com", None, "listeners[0].virtual_hosts[1].domains[1]: 'EXAMPLE.com' is already a domain of "
          "virtual_hosts[0], which gets all its requests")])

    t = replace_once(HTTP, "        domains: [example.com]\n", "        domains: []\n")
    add("virtual_host_without_domains", t, 1,
        [("[]", None, "listeners[0].virtual_hosts[0].domains: expected a non-empty list of domains")])

    t = replace_once(HTTP, "    protocol: http\n", "    protocol: http\n    access_log: {path: /dev/null, sample_percent: 10}\n")
    add("sample_percent_without_sample_mode", t, 1,
        [("10}", None, "listeners[0].access_log.sample_percent: only for mode: sample")])

    t = replace_once(HTTP, "    protocol: http\n", "    protocol: http\n    access_log:\n      path: /dev/null\n"
                     "      mode: sample\n      slow_threshold: 2s\n")
    add("slow_threshold_without_errors_and_slow_mode", t, 1,
        [("2s", None, "listeners[0].access_log.slow_threshold: only for mode: errors_and_slow")])

    t = "dns:\n  timeout: 1s\n" + GOOD
    add("dns_without_dns_cluster", t, 0,
        [("timeout: 1s", None, "warning: dns: not used: no cluster has type strict_dns, logical_dns or dns_srv")])

    t = replace_once(GOOD, "    splice: true\n", "    splice: true\n    hash_key: source_ip_port\n")
    add("hash_key_without_hashing_cluster", t, 0,
        [("source_ip_port", None, "warning: listeners[0].hash_key: ignored: cluster 'backends' balances with "
          "lb_policy: round_robin (hash_key steers ring_hash and maglev only)")])

    t = replace_once(GOOD, "    max_connect_attempts: 3\n",
                     "    max_connect_attempts: 3\n    pool: {max_connections: 8}\n"
                     "    circuit_breakers: {max_active_requests: 100}\n")
    add("http_blocks_on_tcp_only_cluster", t, 0,
        [("{max_connections", None, "warning: clusters[0].pool: not used: only TCP listeners use cluster "
          "'backends' (it applies to HTTP routes)"),
         ("{max_active", None, "warning: clusters[0].circuit_breakers: not used: only TCP listeners use cluster "
          "'backends' (it applies to HTTP routes)")])

    t = GOOD + "  - name: spare\n    endpoints:\n      - address: 127.0.0.1:8083\n"
    add("cluster_nobody_uses", t, 0,
        [("name: spare", None, "warning: clusters[1]: not used: no listener or route names cluster 'spare'")])
    return cases


def test_errors_in_document_order():
    """Errors found reading the text and by the blocks' own rules come out by line."""
    t = replace_once(GOOD, "workers: 2\n", "workers: 0\n")
    t = replace_once(t, "    splice: true\n", "    splice: maybe\n")
    t = replace_once(t, "        weight: 2\n", "        weight: 0\n")
    expect_exact("document_order", t, 1,
                 [("0", "workers:", "workers: expected an integer from 1 to 256, got 0"),
                  ("maybe", None, "listeners[0].splice: expected true or false, got 'maybe'"),
                  ("0", "weight:", "clusters[0].endpoints[1].weight: expected an integer from 1 to 1000, got 0")])


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
              [test_listener_fastopen_needs_kernel_support, test_yaml_syntax_error, test_missing_file, test_version,
               test_errors_in_document_order] + ignored_setting_cases())

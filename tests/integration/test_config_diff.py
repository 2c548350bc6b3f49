#!/usr/bin/env python3
"""`sluice check -c NEW --diff OLD`: what a reload from OLD to NEW would change.

Both files are loaded and checked as `sluice check` does; with both valid, stdout is
`NEW: ok` and then one line per change (or `No changes`), exit 0. An invalid NEW or OLD
gives its located errors (`FILE:LINE:COL: key.path: message`) on stderr and exit 1.
"""

import atexit
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, run_cases, run_sluice_cmd

OLD = """\
workers: 2
drain_timeout: 5s
admin:
  address: 127.0.0.1:9901
listeners:
  - name: web
    address: 127.0.0.1:8080
    protocol: http
    virtual_hosts:
      - name: main
        domains: ["*"]
        routes:
          - match: {prefix: /static}
            cluster: api
          - match: {prefix: /api}
            cluster: api
  - name: old
    address: 127.0.0.1:7000
    protocol: tcp
    cluster: api_v2
clusters:
  - name: api
    endpoints:
      - address: 10.0.0.5:8080
      - address: 10.0.0.6:8080
    pool:
      max_connections: 1024
  - name: api_v2
    endpoints:
      - address: 10.0.0.9:8080
"""

NEW = """\
workers: 4
drain_timeout: 5s
log_level: warn
admin:
  address: 127.0.0.1:9901
listeners:
  - name: web
    address: 127.0.0.1:8080
    protocol: http
    virtual_hosts:
      - name: main
        domains: ["*"]
        routes:
          - match: {prefix: /static}
            cluster: api
          - match: {prefix: /api}
            cluster: api_v2
            timeout: 5s
  - name: tcp_api
    address: 0.0.0.0:9000
    protocol: tcp
    cluster: api
  - name: moved
    address: 127.0.0.1:7100
    protocol: tcp
    cluster: api
clusters:
  - name: api
    protocol: http2
    endpoints:
      - address: 10.0.0.6:8080
      - address: 10.0.0.7:8080
    pool:
      max_connections: 512
  - name: api_v2
    endpoints:
      - address: 10.0.0.9:8080
        weight: 2
"""

# OLD with a listener "moved" on 127.0.0.1:7001, so that NEW moves it.
OLD_WITH_MOVED = OLD.replace("clusters:\n", """\
  - name: moved
    address: 127.0.0.1:7001
    protocol: tcp
    cluster: api
clusters:
""", 1)

TMP = None  # set in main


def write(name, text):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_changes_listed_in_order():
    old = write("old.yaml", OLD_WITH_MOVED)
    new = write("new.yaml", NEW)
    p = run_sluice_cmd(["check", "-c", new, "--diff", old])
    check(p.returncode == 0, "exit code 0 with changes", "rc=%d\n%s" % (p.returncode, p.stderr))
    expected = [
        "%s: ok" % new,
        "listener web (127.0.0.1:8080): unchanged address: keeps its sockets",
        "listener tcp_api: added on 0.0.0.0:9000: will bind",
        "listener moved: removed from 127.0.0.1:7001: stops accepting, its connections drain (drain_timeout 5s)",
        "listener moved: added on 127.0.0.1:7100: will bind",
        "listener old: removed from 127.0.0.1:7000: stops accepting, its connections drain (drain_timeout 5s)",
        "listener web: route main/1 (prefix /api) cluster api -> api_v2 (new requests only)",
        "listener web: route main/1 (prefix /api) timeout 15s -> 5s (new requests only)",
        "cluster api: protocol http1 -> http2 (new connections only)",
        "cluster api: endpoint 10.0.0.7:8080 added; endpoint 10.0.0.5:8080 removed (drains)",
        "cluster api: pool.max_connections 1024 -> 512 (new connections only)",
        "cluster api_v2: endpoint 10.0.0.9:8080 weight 1 -> 2 (applies at once)",
        "workers 2 -> 4: cannot change in place (needs a restart or a binary upgrade)",
        "log_level info -> warn (applies at once)",
    ]
    lines = p.stdout.splitlines()
    check(lines == expected, "stdout lists each change in order",
          "\n".join(["got:"] + lines + ["expected:"] + expected))
    check(p.stderr == "", "nothing on stderr", p.stderr)


def test_no_changes():
    old = write("same_old.yaml", OLD)
    new = write("same_new.yaml", OLD)
    p = run_sluice_cmd(["check", "-c", new, "--diff", old])
    check(p.returncode == 0, "exit code 0 without changes", "rc=%d\n%s" % (p.returncode, p.stderr))
    check(p.stdout.splitlines() == ["%s: ok" % new, "No changes"], "stdout says No changes", p.stdout)


def test_invalid_new():
    old = write("valid_old.yaml", OLD)
    bad = NEW.replace("            cluster: api_v2\n", "            cluster: api_v3\n", 1)
    new = write("bad_new.yaml", bad)
    lines = bad.splitlines()
    line = next(i for i, l in enumerate(lines) if "api_v3" in l) + 1
    col = lines[line - 1].index("api_v3") + 1
    p = run_sluice_cmd(["check", "-c", new, "--diff", old])
    check(p.returncode == 1, "exit code 1 for an invalid NEW", "rc=%d\n%s" % (p.returncode, p.stderr))
    check(p.stdout == "", "nothing on stdout", p.stdout)
    expected = ["%s:%d:%d: listeners[0].virtual_hosts[0].routes[1].cluster: no cluster named 'api_v3'"
                % (new, line, col)]
    check(p.stderr.splitlines() == expected, "the error is located in NEW",
          "\n".join(["got:", p.stderr, "expected:"] + expected))


def test_invalid_old():
    bad = OLD.replace("workers: 2\n", "workers: 0\n", 1)
    old = write("bad_old.yaml", bad)
    new = write("valid_new.yaml", NEW)
    p = run_sluice_cmd(["check", "-c", new, "--diff", old])
    check(p.returncode == 1, "exit code 1 for an invalid OLD", "rc=%d\n%s" % (p.returncode, p.stderr))
    check(p.stdout == "", "nothing on stdout", p.stdout)
    expected = ["%s:1:10: workers: expected an integer from 1 to 256, got 0" % old,
                "sluice: %s (--diff) is not valid: nothing to compare with" % old]
    check(p.stderr.splitlines() == expected, "OLD's error is located, and OLD is named as invalid",
          "\n".join(["got:", p.stderr, "expected:"] + expected))


def test_diff_needs_a_file():
    new = write("alone.yaml", NEW)
    p = run_sluice_cmd(["check", "-c", new, "--diff"])
    check(p.returncode == 2, "--diff without a file is a usage error (exit 2)",
          "rc=%d\n%s" % (p.returncode, p.stderr))
    check(p.stderr.splitlines()[0] == "sluice: unexpected argument '--diff'", "the message names --diff",
          p.stderr)


if __name__ == "__main__":
    TMP = tempfile.mkdtemp(prefix="sluice-diff-")
    atexit.register(shutil.rmtree, TMP, True)
    run_cases([test_changes_listed_in_order, test_no_changes, test_invalid_new, test_invalid_old,
               test_diff_needs_a_file])

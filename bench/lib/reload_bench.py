#!/usr/bin/python3
"""Helpers of the reload scenario (bench/scenarios/reload.sh); Python stdlib only.

  group -- CMD...           keep every generation of a proxy that reloads by starting a new
                            process (HAProxy's classic `-sf` reload) in one process tree: run
                            CMD; on SIGUSR2 run CMD -sf PID... (the live generations); reap
                            everything (also as a child subreaper), so that the tree's CPU
                            counts every generation, the exited ones included
  connclient ...            open-loop client: a new connection per request at a fixed rate
  check ...                 one reload to B and back to A, verified from outside (the second
                            listener answers, then refuses); waits until the old generations left
  phase ...                 one measured phase (baseline, or storm: N reloads during the load):
                            wrk keep-alive load + connclient, the proxy tree's CPU and processes,
                            sluice's reload metrics and log lines; appends one JSON line
  report ...                markdown report of one run's records

A reload swaps the proxy's configuration file (an atomic rename of a rendered copy of A or B)
and then tells the proxy: a signal to a PID (sluice SIGHUP, nginx's master SIGHUP, the HAProxy
group SIGUSR2).
"""

import argparse
import asyncio
import datetime
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (the /proc readers, disturbance check and wrk parsing)

SIGNALS = {"HUP": signal.SIGHUP, "USR2": signal.SIGUSR2}


# ---------------------------------------------------------------------------------------------
# group: the HAProxy generations under one parent


def listening_inodes():
    """Socket inodes of the TCP sockets in state LISTEN (IPv4 and IPv6)."""
    out = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if len(parts) > 9 and parts[3] == "0A":
                        out.add(int(parts[9]))
        except OSError:
            pass
    return out


def generation_ready(pid):
    """A new HAProxy generation is ready once it listens (it binds before it tells the old ones
    to stop) and catches SIGUSR1 (so the next generation's -sf soft-stops it rather than killing
    it: SIGUSR1's default action ends a process still starting)."""
    caught = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    caught = int(line.split()[1], 16)
    except OSError:
        return False
    if not caught & (1 << (signal.SIGUSR1 - 1)):
        return False
    return bool(benchlib.tree_socket_inodes(pid) & listening_inodes())


def cmd_group(args):
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        sys.exit("group: no command")
    # Orphans of the tree (a daemonising child) are re-parented here rather than to init.
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except OSError:
        pass
    handled = {signal.SIGUSR2, signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, handled)
    live = {}  # pid -> generation
    gen = 0
    newest = None  # (pid, generation, monotonic start) until it is ready
    pending = 0  # reloads asked for while the newest generation was still starting

    def log(msg):
        print(f"group: {msg}", file=sys.stderr, flush=True)

    def spawn(argv):
        nonlocal gen, newest
        # The children start with no signal blocked (posix_spawn's setsigmask).
        pid = os.posix_spawnp(argv[0], argv, os.environ, setsigmask=set())
        live[pid] = gen
        newest = (pid, gen, time.monotonic())
        log(f"generation {gen} pid {pid}: {' '.join(argv)}")
        gen += 1
        return pid

    first = spawn(cmd)
    first_rc = None
    stopping = False
    deadline = None
    while True:
        # Reloads run one after another, as a script running `haproxy -D ... -sf` would: the
        # next generation starts once the newest one listens and can be soft-stopped.
        if newest is not None and (newest[0] not in live or generation_ready(newest[0])):
            if newest[0] in live:
                log(f"generation {newest[1]} pid {newest[0]} ready after "
                    f"{(time.monotonic() - newest[2]) * 1000:.1f} ms")
            newest = None
        if pending and newest is None and not stopping:
            pending = 0
            spawn(cmd + ["-sf"] + [str(p) for p in sorted(live)] if live else cmd)
            continue
        if deadline is not None:
            timeout = max(0.0, deadline - time.monotonic())
        else:
            timeout = 0.002 if newest is not None else 3600
        info = signal.sigtimedwait(handled, timeout)
        if info is None:
            if deadline is not None and time.monotonic() >= deadline:
                for pid in live:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                deadline = time.monotonic() + 5
            continue
        if info.si_signo == signal.SIGUSR2 and not stopping:
            # Asked again while one waits: they make one reload, which reads the file as it is
            # then (as nginx's master and sluice merge signals that come close together).
            pending = 1
        elif info.si_signo in (signal.SIGTERM, signal.SIGINT) and not stopping:
            stopping = True
            deadline = time.monotonic() + args.stop_timeout
            for pid in live:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        # Reap whatever exited (SIGCHLD, or a signal that arrived with it).
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            rc = os.waitstatus_to_exitcode(status)
            if pid in live:
                log(f"generation {live.pop(pid)} pid {pid} exited ({rc})")
            if pid == first:
                first_rc = rc
        if not live:
            if stopping:
                return 0
            # Every generation is gone without being asked to stop: fail like the proxy did.
            log("no generation left")
            return 1 if not first_rc else (first_rc if first_rc > 0 else 1)


# ---------------------------------------------------------------------------------------------
# connclient: a new connection per request


def percentile(sorted_vals, p):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


async def _one_request(host, port, path, timeout):
    """(kind, latency_us, detail): kind is ok, status, connect, write, read or timeout."""
    t0 = time.monotonic()
    stage = "connect"
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            stage = "write"
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            stage = "read"
            data = await reader.read(-1)
    except TimeoutError:
        return "timeout", None, stage
    except OSError as e:
        return stage, None, f"{type(e).__name__}: {e.strerror or e}"
    finally:
        if writer is not None:
            writer.close()
    lat = int((time.monotonic() - t0) * 1e6)
    head, sep, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    if not m or not sep:
        return "read", None, f"closed after {len(data)} bytes without a complete response head"
    cl = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
    if cl and len(body) < int(cl.group(1)):
        return "read", None, f"body of {len(body)} bytes, content-length {int(cl.group(1))}"
    status = int(m.group(1))
    if not 200 <= status < 300:
        return "status", lat, f"status {status}"
    return "ok", lat, ""


async def _connclient(args):
    loop_t0 = time.monotonic()
    wall_t0 = time.time()
    n = int(args.rate * args.duration)
    tasks = []
    starts = []

    async def run(i):
        kind, lat, detail = await _one_request(args.host, args.port, args.path, args.timeout)
        return i, kind, lat, detail

    for i in range(n):
        due = loop_t0 + i / args.rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        starts.append(wall_t0 + (time.monotonic() - loop_t0))
        tasks.append(asyncio.create_task(run(i)))
    results = await asyncio.gather(*tasks)
    counts = {k: 0 for k in ("ok", "status", "connect", "write", "read", "timeout")}
    lats = []
    failures = []
    for i, kind, lat, detail in results:
        counts[kind] += 1
        if lat is not None and kind == "ok":
            lats.append(lat)
        if kind != "ok":
            failures.append({"t": round(starts[i], 3), "kind": kind, "detail": detail})
    lats.sort()
    out = {
        "requests": n,
        "ok": counts["ok"],
        "failed": n - counts["ok"],
        "errors": {k: v for k, v in counts.items() if k != "ok"},
        "seconds": round(time.monotonic() - loop_t0, 3),
        "lat_p50_us": percentile(lats, 50),
        "lat_p99_us": percentile(lats, 99),
        "lat_max_us": lats[-1] if lats else None,
        # Refusals can be many (the second listener while A runs); other failures are all kept.
        "failures": [f for f in failures if f["kind"] != "connect"][:500]
        + [f for f in failures if f["kind"] == "connect"][:50],
    }
    with open(args.out, "w") as f:
        json.dump(out, f)
    return 0


def cmd_connclient(args):
    return asyncio.run(_connclient(args))


# ---------------------------------------------------------------------------------------------
# Reloads, processes, sluice's metrics and log


def swap_config(src, live):
    tmp = live + ".tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, live)


def reload_once(args, variant):
    """Installs configuration `variant` ("a" or "b") and tells the proxy; returns the wall time
    of the signal."""
    swap_config(args.cfg_b if variant == "b" else args.cfg_a, args.live)
    t = time.time()
    try:
        os.kill(args.signal_pid, SIGNALS[args.signal])
    except ProcessLookupError:
        return None  # the proxy is gone
    return t


def proxy_procs(root, wrapper):
    """PIDs of the proxy's live (non-zombie) processes: root's tree, minus root when it is only
    the group wrapper."""
    procs = benchlib.snapshot_procs()
    out = [p for p in benchlib.descendants(procs, [root]) if p in procs and procs[p]["state"] != "Z"]
    if wrapper:
        out = [p for p in out if p != root]
    return sorted(out)


def tree_ticks(root):
    """{pid: (starttime, ticks)} of root's tree now."""
    procs = benchlib.snapshot_procs()
    return {p: (procs[p]["starttime"], benchlib.ticks(procs[p]), benchlib.ticks(procs[p]) - procs[p]["cutime"] - procs[p]["cstime"])
            for p in benchlib.descendants(procs, [root]) if p in procs}


def tree_cpu_between(t0, t1, root, wrapper):
    """CPU seconds the tree used between two tree_ticks() snapshots. Processes gone at the end
    were reaped inside the tree: their whole life is in a parent's cutime/cstime, so their
    ticks at the start are taken off. The group wrapper's own time is left out."""
    total = 0
    for pid, (st, ticks, own) in t1.items():
        before = t0.get(pid)
        same = before is not None and before[0] == st
        total += ticks - (before[1] if same else 0)
        if wrapper and pid == root:
            total -= own - (before[2] if same else 0)
    for pid, (st, ticks, _own) in t0.items():
        now = t1.get(pid)
        if now is None or now[0] != st:
            total -= ticks
    return total / benchlib.CLK_TCK


def scrape_sluice(admin_port):
    """{"generation": N, "reloads": {result: N}} from sluice's /metrics; None if unreachable;
    absent keys when the metrics are not exported (a build without reload)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as r:
            text = r.read().decode(errors="replace")
    except OSError:
        return None
    out = {"reloads": {}}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"sluice_config_generation(?:\{[^}]*\})?\s+([0-9.eE+-]+)$", line)
        if m:
            out["generation"] = int(float(m.group(1)))
        m = re.match(r'sluice_config_reloads_total\{[^}]*result="(\w+)"[^}]*\}\s+([0-9.eE+-]+)$', line)
        if m:
            out["reloads"][m.group(1)] = int(float(m.group(2)))
    return out


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")
APPLIED = re.compile(r"reload (\d+) applied in ([0-9.]+) ms")


def log_time(line):
    m = LOG_TIME.match(line)
    if not m:
        return None
    dt = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


def read_from(path, offset):
    try:
        with open(path, errors="replace") as f:
            f.seek(offset)
            return f.read()
    except OSError:
        return ""


RELOAD_START = re.compile(r"sluice reloading: ")
RELOAD_END = re.compile(r"reload \d+ applied in |reload: .* has no changes|reload failed, the running configuration stays")


def sluice_log_summary(text, sent):
    """The reload lines sluice logged: applied (N, X ms, log time), failed, unsupported; and for
    each reload, from the first SIGHUP it answers (the SIGHUPs sent since the previous reload
    started) to the log time of its end (applied, unchanged or failed)."""
    applied, failed, unsupported = [], [], 0
    starts, ends = [], []
    for line in text.splitlines():
        m = APPLIED.search(line)
        if m:
            applied.append({"n": int(m.group(1)), "ms": float(m.group(2)), "t": log_time(line)})
        elif "reload failed" in line:
            failed.append(line.strip()[:300])
        elif "reloading is not supported" in line:
            unsupported += 1
        if RELOAD_START.search(line):
            starts.append(log_time(line))
        elif RELOAD_END.search(line):
            ends.append(log_time(line))
    waits = []
    prev = None
    for st, en in zip(starts, ends):
        if st is None or en is None:
            continue
        # log times are cut to the millisecond: a SIGHUP up to 1 ms after the logged start may
        # be the one that started it
        served = [t for t in sent if (prev is None or t > prev + 0.001) and t <= st + 0.001]
        prev = st
        if served:
            waits.append(round((en - served[0]) * 1000.0, 1))
    return applied, failed, unsupported, waits


CRASH_PATTERNS = (
    # reload_bench.py group: a generation that died of a signal (negative status) or failed
    re.compile(r"group: generation \d+ pid \d+ exited \((-?\d+)\)"),
    # nginx's master about one of its workers
    re.compile(r"worker process \d+ exited on signal (\d+)"),
)


def crashes(text):
    """Exit statuses of proxy processes that died during a phase, from its log: a negative
    status is the signal that killed it (-11: SIGSEGV)."""
    out = []
    for line in text.splitlines():
        for i, pat in enumerate(CRASH_PATTERNS):
            m = pat.search(line)
            if m and int(m.group(1)) != 0:
                out.append(int(m.group(1)) if i == 0 else -int(m.group(1)))
    return out


def expected_reloads(sent, window, variants=None):
    """(reloads, applied): what SIGHUPs sent at `sent` should make when a reload starts at most
    once every `window` seconds and the requests that come in between wait for the next start
    and make one reload together (applying taken as instantaneous). `variants[i]` is the
    configuration installed just before SIGHUP i ("a" or "b", starting from "a"): a reload that
    finds the configuration it already runs is "unchanged" and does not advance the generation."""
    starts, last, pending = [], None, None
    for t in sent:
        if pending is not None and t >= pending:
            starts.append(pending)
            last, pending = pending, None
        if pending is not None:
            continue  # merged into the reload already due
        if last is None or t >= last + window:
            starts.append(t)
            last = t
        else:
            pending = last + window
    if pending is not None:
        starts.append(pending)
    if variants is None:
        return len(starts), len(starts)
    applied, running, i = 0, "a", 0
    for s in starts:
        while i < len(sent) and sent[i] <= s:
            i += 1
        installed = variants[i - 1] if i else "a"
        if installed != running:
            applied, running = applied + 1, installed
    return len(starts), applied


def http_status(port, timeout=2.0):
    """The status of GET / on 127.0.0.1:port, or the error's name (refused, reset, timeout)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"GET / HTTP/1.1\r\nHost: check\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return type(e).__name__
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return m.group(1).decode() if m else "no response"


def wait_for(pred, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


# ---------------------------------------------------------------------------------------------
# check: one reload to B and back, verified from outside


def cmd_check(args):
    base = len(proxy_procs(args.root, args.wrapper))
    m0 = scrape_sluice(args.admin_port) if args.admin_port else None
    steps = []
    ok = True
    t = time.monotonic()
    reload_once(args, "b")
    up = wait_for(lambda: http_status(args.port2) == "200", args.timeout)
    steps.append(f"B: second listener {'answers 200' if up else 'got ' + http_status(args.port2)} "
                 f"after {time.monotonic() - t:.2f}s")
    ok &= up
    t = time.monotonic()
    reload_once(args, "a")
    gone = wait_for(lambda: http_status(args.port2) == "refused", args.timeout)
    steps.append(f"A: second listener {'refuses' if gone else 'got ' + http_status(args.port2)} "
                 f"after {time.monotonic() - t:.2f}s")
    ok &= gone
    main = http_status(args.port)
    steps.append(f"first listener: {main}")
    ok &= main == "200"
    settled = wait_for(lambda: len(proxy_procs(args.root, args.wrapper)) <= base, args.timeout, 0.1)
    steps.append(f"processes {base} before, {len(proxy_procs(args.root, args.wrapper))} after"
                 f"{'' if settled else ' (old generations still there)'}")
    rec = {"ok": bool(ok), "steps": steps}
    if args.admin_port:
        m1 = scrape_sluice(args.admin_port)
        if m0 is not None and m1 is not None and "generation" in m0 and "generation" in m1:
            rec["generation_delta"] = m1["generation"] - m0["generation"]
            steps.append(f"sluice_config_generation {m0['generation']} -> {m1['generation']}")
            ok &= rec["generation_delta"] == 2
            rec["ok"] = bool(ok)
        else:
            steps.append("no sluice_config_generation on /metrics")
    print(json.dumps(rec))
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------------
# phase: one measured phase


def cmd_phase(args):
    storm = args.reloads > 0
    pfx = args.prefix
    lead = max(0.0, (args.duration - args.reloads * args.interval) / 2.0) if storm else 0.0
    log_off = os.path.getsize(args.log) if args.log and os.path.exists(args.log) else 0
    m0 = scrape_sluice(args.admin_port) if args.admin_port else None
    procs0 = proxy_procs(args.root, args.wrapper)
    mem0 = (benchlib.tree_rss_kib(args.root), benchlib.tree_fds(args.root))
    iv = benchlib.Interval([os.getpid(), args.root] + args.ignore)
    ticks0 = tree_ticks(args.root)
    load = ["taskset", "-c", str(args.load_core)]
    wrk = subprocess.Popen(
        load + ["timeout", "-k", "2", str(int(args.duration) + 20), "wrk", "-t1", f"-c{args.conns}",
                f"-d{args.duration}s", "--latency", "--timeout", "5s", "-s", args.wrk_lua,
                f"http://127.0.0.1:{args.port}/"],
        stdout=open(pfx + ".wrk.txt", "w"), stderr=subprocess.STDOUT)
    client = subprocess.Popen(
        load + ["timeout", "-k", "2", str(int(args.duration) + 30), sys.executable, os.path.abspath(__file__),
                "connclient", "--port", str(args.port), "--rate", str(args.rate), "--duration", str(args.duration),
                "--out", pfx + ".conn.json"],
        stdout=open(pfx + ".conn.txt", "w"), stderr=subprocess.STDOUT)
    client2 = None
    if storm and args.port2 and args.rate2 > 0:
        # New connections to the listener that comes and goes: refused while A runs; one that
        # was accepted (queued or in progress) when the listener went away must still get its
        # answer.
        client2 = subprocess.Popen(
            load + ["timeout", "-k", "2", str(int(args.duration) + 30), sys.executable, os.path.abspath(__file__),
                    "connclient", "--port", str(args.port2), "--rate", str(args.rate2), "--duration",
                    str(args.duration), "--out", pfx + ".conn2.json"],
            stdout=open(pfx + ".conn2.txt", "w"), stderr=subprocess.STDOUT)
    t_start = time.monotonic()
    sent = []
    errors = []
    gone_at = None
    peak = len(procs0)
    next_sample = t_start
    i = 0
    while wrk.poll() is None or client.poll() is None or (client2 is not None and client2.poll() is None):
        now = time.monotonic()
        if storm and i < args.reloads and now >= t_start + lead + i * args.interval:
            t = reload_once(args, "b" if i % 2 == 0 else "a")
            if t is None:
                errors.append(f"the proxy (pid {args.signal_pid}) was gone at reload {i + 1}; no more reloads sent")
                gone_at = time.time()
                i = args.reloads
                continue
            sent.append(t)
            i += 1
            continue
        if now >= next_sample:
            peak = max(peak, len(proxy_procs(args.root, args.wrapper)))
            next_sample = now + 0.1
        wait = 0.1
        if storm and i < args.reloads:
            wait = min(wait, t_start + lead + i * args.interval - time.monotonic())
        time.sleep(max(0.001, min(wait, next_sample - time.monotonic())))
    ticks1 = tree_ticks(args.root)
    iv.finish()
    procs_end = proxy_procs(args.root, args.wrapper)
    mem1 = (benchlib.tree_rss_kib(args.root), benchlib.tree_fds(args.root))
    m1 = scrape_sluice(args.admin_port) if args.admin_port else None
    time.sleep(args.settle)
    procs_later = proxy_procs(args.root, args.wrapper)
    mem2 = (benchlib.tree_rss_kib(args.root), benchlib.tree_fds(args.root))
    # After the storm, the proxy runs the configuration installed last: the second listener
    # answers (B) or refuses (A), and in A it holds no connection to the second backend.
    final = ("b" if len(sent) % 2 else "a") if storm else "a"
    port2 = http_status(args.port2) if args.port2 else None
    mine = set()
    for pid in proxy_procs(args.root, args.wrapper):
        try:
            mine |= benchlib.tree_socket_inodes(pid)
        except OSError:
            pass
    b2_conns = (sum(1 for ino in benchlib.tcp_established_to(args.backend2_port).values() if ino in mine)
                if args.backend2_port else None)

    rec = {"run_id": args.run_id, "ts": time.strftime("%Y-%m-%dT%H:%M:%S"), "scenario": args.scenario,
           "case": args.phase, "phase": args.phase, "target": args.target, "rep": args.rep, "attempt": 1,
           "connections": args.conns, "duration_s": args.duration, "conn_rate": args.rate, "ok": True}
    if gone_at is not None:
        rec["ok"] = False
        rec["proxy_gone_after_s"] = round(gone_at - sent[0], 3) if sent else 0
    # wrk
    try:
        w = benchlib.read_wrk_json(pfx + ".wrk.txt")
        secs = max(w["duration_us"] / 1e6, 1e-6)
        werr = {k: w.get(k + "_errors", 0) for k in ("connect", "read", "write", "timeout", "status")}
        rec.update(requests=w["requests"], rps=round(w["requests"] / secs, 1), lat_p50_us=w["lat_p50_us"],
                   lat_p99_us=w["lat_p99_us"], lat_max_us=w["lat_max_us"], wrk_errors=werr,
                   wrk_failed=sum(werr.values()))
    except (OSError, ValueError) as e:
        errors.append(f"wrk: {e}")
        rec["ok"] = False
    # connection client
    try:
        with open(pfx + ".conn.json") as f:
            c = json.load(f)
        rec.update(conn_requests=c["requests"], conn_ok=c["ok"], conn_failed=c["failed"], conn_errors=c["errors"],
                   conn_lat_p50_us=c["lat_p50_us"], conn_lat_p99_us=c["lat_p99_us"],
                   conn_failures=c["failures"][:20])
    except (OSError, ValueError, KeyError) as e:
        errors.append(f"connection client: {e}")
        rec["ok"] = False
    if client2 is not None:
        try:
            with open(pfx + ".conn2.json") as f:
                c = json.load(f)
            e = c["errors"]
            rec.update(conn2_requests=c["requests"], conn2_ok=c["ok"], conn2_refused=e["connect"],
                       conn2_lost=c["failed"] - e["connect"], conn2_errors=e,
                       conn2_failures=[x for x in c["failures"] if x["kind"] != "connect"][:20])
        except (OSError, ValueError, KeyError) as e:
            errors.append(f"second-listener client: {e}")
    # CPU and processes
    cpu = tree_cpu_between(ticks0, ticks1, args.root, args.wrapper)
    served = (rec.get("requests") or 0) + (rec.get("conn_ok") or 0) + (rec.get("conn2_ok") or 0)
    rec["proxy_cpu_s"] = round(cpu, 3)
    if served:
        rec["cpu_us_per_req"] = round(cpu / served * 1e6, 2)
    rec.update(procs_start=len(procs0), procs_peak=max(peak, len(procs_end)), procs_end=len(procs_end),
               procs_later=len(procs_later), settle_s=args.settle,
               rss_kib_start=mem0[0], rss_kib_end=mem1[0], rss_kib_later=mem2[0],
               fds_start=mem0[1], fds_end=mem1[1], fds_later=mem2[1], final_config=final)
    if port2 is not None:
        rec["final_port2"] = port2
        rec["final_ok"] = port2 == ("200" if final == "b" else "refused")
        if not rec["final_ok"]:
            errors.append(f"after the reloads (configuration {final.upper()}) the second listener got {port2}")
    if b2_conns is not None:
        rec["backend2_conns_later"] = b2_conns
    m = {"seconds": round(iv.seconds, 3), "cores": {str(k): v for k, v in iv.cores().items()}}
    m.update(iv.others())
    benchlib.judge(m)
    for k in ("other_cpu_s", "other_pct", "other_top", "kthread_cpu_s", "disturbed", "disturb_reason"):
        rec[k] = m.get(k)
    for core, key in ((args.proxy_core, "proxy_core_busy_pct"), (args.load_core, "load_core_busy_pct")):
        if str(core) in m["cores"]:
            rec[key] = m["cores"][str(core)]["busy_pct"]
    # Reloads
    if storm:
        rec.update(reloads_sent=len(sent), reload_interval_ms=round(args.interval * 1000),
                   storm_s=round(sent[-1] - sent[0], 3) if sent else 0, reload_sent_at=[round(t, 4) for t in sent])
    log_text = read_from(args.log, log_off) if args.log else ""
    died = crashes(log_text)
    if args.wrapper:
        # reload_bench.py group: generations started, and how long each took to listen
        started = re.findall(r"group: generation (\d+) pid \d+: ", log_text)
        ready = [float(x) for x in re.findall(r"group: generation \d+ pid \d+ ready after ([0-9.]+) ms", log_text)]
        rec["generations_started"] = len(started)
        if ready:
            rec.update(generation_ready_ms_median=round(statistics.median(ready), 1),
                       generation_ready_ms_max=max(ready))
    rec["proxy_crashes"] = len(died)
    if died:
        rec["proxy_crash_statuses"] = died
    if args.admin_port:
        applied, failed, unsupported, waits = sluice_log_summary(log_text, sent)
        rec["sluice_log_applied"] = len(applied)
        rec["sluice_log_failed"] = len(failed)
        if failed:
            rec["sluice_log_failed_lines"] = failed[:5]
        rec["sluice_log_unsupported"] = unsupported
        if applied:
            ms = [a["ms"] for a in applied]
            rec.update(apply_ms_median=round(statistics.median(ms), 3), apply_ms_max=max(ms), apply_ms=ms,
                       applied_logged_at=[a["t"] for a in applied])
        if waits:
            rec.update(hup_to_applied_ms_median=statistics.median(waits), hup_to_applied_ms_max=max(waits))
        if m0 is not None and m1 is not None:
            if "generation" in m0 and "generation" in m1:
                rec["generation_delta"] = m1["generation"] - m0["generation"]
                rec["generation_end"] = m1["generation"]
            rec["reloads_delta"] = {k: v - m0["reloads"].get(k, 0) for k, v in m1["reloads"].items()}
        else:
            errors.append("sluice admin /metrics unreachable")
        if storm:
            variants = ["b" if k % 2 == 0 else "a" for k in range(len(sent))]
            rec["reloads_expected"], rec["generation_expected"] = expected_reloads(sent, args.coalesce_window, variants)
            # Whether a reload finds A or B is only predictable when SIGHUPs are far enough apart
            # for each to make its own reload; the number of reloads always is.
            rec["generation_exact"] = args.interval >= 2 * args.coalesce_window
            rd = rec.get("reloads_delta") or {}
            checks = [rec.get("generation_delta") == rd.get("applied") == rec["sluice_log_applied"],
                      sum(rd.values()) == rec["reloads_expected"]]
            if rec["generation_exact"]:
                checks.append(rec.get("generation_delta") == rec["generation_expected"])
            rec["generation_ok"] = all(checks)
    if not bench_alive(args.signal_pid) and not args.wrapper:
        if gone_at is None:
            errors.append(f"the proxy (pid {args.signal_pid}) is gone")
        rec["ok"] = False
        # The parent reaps it: its exit status shows in the scenario's log and `stopped` record.
        rec["proxy_died"] = True
    if not procs_later:
        errors.append("no proxy process left")
        rec["ok"] = False
    if errors:
        rec["error"] = "; ".join(errors)
    with open(args.out, "a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")
    # One line for the shell.
    failed_n = (rec.get("wrk_failed") or 0) + (rec.get("conn_failed") or 0)
    line = (f"{'ok' if rec['ok'] else 'fail'} {'disturbed' if rec['disturbed'] else 'clean'} "
            f"{rec.get('rps', 0)} req/s p50={rec.get('lat_p50_us', '-')}us p99={rec.get('lat_p99_us', '-')}us "
            f"new-conn p99={rec.get('conn_lat_p99_us', '-')}us failed={failed_n} "
            f"cpu={rec.get('cpu_us_per_req', '-')}us/req procs {rec['procs_start']}->{rec['procs_peak']} peak, "
            f"{rec['procs_end']} end, {rec['procs_later']} after {args.settle:g}s; "
            f"fds {mem0[1]}->{mem2[1]}, RSS {mem0[0] / 1024:.1f}->{mem2[0] / 1024:.1f} MiB; "
            f"then in {final.upper()}: second listener {port2}, conns to the second backend {b2_conns}")
    if storm:
        line += f" reloads={len(sent)}"
    if "conn2_requests" in rec:
        line += (f" second listener: {rec['conn2_ok']} ok, {rec['conn2_refused']} refused, {rec['conn2_lost']} lost "
                 f"{rec['conn2_errors']}")
    if rec.get("generations_started"):
        line += (f" generations started {rec['generations_started']}, ready in median "
                 f"{rec.get('generation_ready_ms_median', '-')} ms max {rec.get('generation_ready_ms_max', '-')} ms")
    if died:
        line += f" {len(died)} proxy processes died (statuses {', '.join(str(d) for d in died)})"
    if "generation_delta" in rec:
        line += f" generation +{rec['generation_delta']}"
        if storm:
            line += f" (expected +{rec['generation_expected']})"
            rd = rec.get("reloads_delta") or {}
            line += (f" reloads applied {rd.get('applied', '-')} unchanged {rd.get('unchanged', '-')} failed "
                     f"{rd.get('failed', '-')} (expected {rec['reloads_expected']} in all)")
    if "apply_ms_median" in rec:
        line += f" apply median {rec['apply_ms_median']} ms max {rec['apply_ms_max']} ms"
    if rec.get("sluice_log_unsupported"):
        line += f" ({rec['sluice_log_unsupported']} 'reloading is not supported' lines)"
    if rec.get("error"):
        line += " " + rec["error"]
    print(line)
    return 0


def bench_alive(pid):
    st = benchlib.read_pid_stat(pid)
    return st is not None and st["state"] != "Z"


# ---------------------------------------------------------------------------------------------
# report


LABELS = benchlib.TARGET_LABELS


def _med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def _f(v, fmt="%.0f"):
    return "–" if v is None else fmt % v


def cmd_report(args):
    recs, meta = [], []
    with open(args.results) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if r.get("run_id") != args.run_id or r.get("scenario") != args.scenario:
                continue
            (meta if r.get("kind") == "meta" else recs).append(r)
    if not recs and not meta:
        print(f"report: no records for run {args.run_id} in {args.results}", file=sys.stderr)
        return 1
    targets = [t for t in args.targets.split(",") if t]
    for r in recs + meta:
        if r["target"] not in targets:
            targets.append(r["target"])
    by = {}
    for r in recs:
        by.setdefault(r["target"], {}).setdefault(r["phase"], []).append(r)
    notes = {}
    for r in meta:
        if r.get("event") in ("skipped", "start_failed"):
            notes[r["target"]] = r.get("reason", "did not start (see the run's log)")
    # A proxy that died by itself: its exit status when the scenario stopped it (128 + signal;
    # 143 is the scenario's own SIGTERM, 0 a clean exit).
    exits = {}
    for r in meta:
        if r.get("event") == "stopped" and r.get("exit_status") not in (None, "", 0, 143):
            exits.setdefault(r["target"], []).append((r.get("rep"), r["exit_status"]))
    checks = {}
    for r in meta:
        if r.get("event") == "reload_check":
            checks.setdefault(r["target"], []).append(r)

    def agg(t, phase, key):
        return _med([r.get(key) for r in by.get(t, {}).get(phase, [])])

    def total(t, phase, key):
        rs = by.get(t, {}).get(phase, [])
        return sum(r.get(key) or 0 for r in rs) if rs else None

    lines = [f"#### {args.title}", "", args.meta, ""]
    head = ["target", "reps", "req/s baseline", "req/s storm", "p99 µs baseline", "p99 µs storm", "p99 storm ÷ baseline",
            "new-conn p99 µs baseline", "new-conn p99 µs storm", "failed baseline", "failed storm",
            "processes end / +%ss (start)" % _f(args.settle, "%g"), "2nd listener ok / refused / lost", "processes died", "fds / RSS MiB before → after storm", "CPU µs/req baseline", "CPU µs/req storm",
            "CPU ms per reload", "disturbed"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for t in targets:
        if t not in by:
            if t in notes:
                lines.append("| " + " | ".join([LABELS.get(t, t), "skipped: " + notes[t]] + ["–"] * (len(head) - 2)) + " |")
            continue
        b, s = by[t].get("baseline", []), by[t].get("storm", [])
        p99b, p99s = agg(t, "baseline", "lat_p99_us"), agg(t, "storm", "lat_p99_us")
        ratio = f"{p99s / p99b:.2f}×" if p99b and p99s is not None else "–"

        def failed(rs):
            if not rs:
                return "–"
            wf = sum(r.get("wrk_failed") or 0 for r in rs)
            cf = sum(r.get("conn_failed") or 0 for r in rs)
            reqs = sum((r.get("requests") or 0) + (r.get("conn_requests") or 0) for r in rs)
            txt = f"{wf + cf}"
            if wf + cf:
                parts = []
                we = {}
                for r in rs:
                    for k, v in (r.get("wrk_errors") or {}).items():
                        we[k] = we.get(k, 0) + v
                    for k, v in (r.get("conn_errors") or {}).items():
                        we["new-conn " + k] = we.get("new-conn " + k, 0) + v
                parts = [f"{k} {v}" for k, v in we.items() if v]
                txt += f" of {reqs} ({', '.join(parts)})"
            return txt

        def died_txt(rs):
            sts = [d for r in rs for d in r.get("proxy_crash_statuses") or []]
            sts += [-(int(st) - 128) if int(st) > 128 else int(st) for _rep, st in exits.get(t, [])]
            if not any("proxy_crashes" in r for r in rs) and not sts:
                return "–"
            if not sts:
                return "0"
            names = {-11: "SIGSEGV", -6: "SIGABRT", -9: "SIGKILL", -7: "SIGBUS"}
            kinds = {}
            for d in sts:
                k = names.get(d, f"signal {-d}" if d < 0 else f"status {d}")
                kinds[k] = kinds.get(k, 0) + 1
            return f"{len(sts)} (" + ", ".join(f"{v} {k}" for k, v in kinds.items()) + ")"

        def second_txt(rs):
            rs = [r for r in rs if r.get("conn2_requests") is not None]
            if not rs:
                return "–"
            lost = {}
            for r in rs:
                for k, v in (r.get("conn2_errors") or {}).items():
                    if k != "connect" and v:
                        lost[k] = lost.get(k, 0) + v
            txt = " / ".join(str(sum(r[k] for r in rs)) for k in ("conn2_ok", "conn2_refused", "conn2_lost"))
            return txt + (" (" + ", ".join(f"{k} {v}" for k, v in lost.items()) + ")" if lost else "")

        def mem_txt(rs):
            rs = [r for r in rs if r.get("fds_start") is not None]
            if not rs:
                return "–"
            return (f"{_f(_med([r['fds_start'] for r in rs]))} → {_f(_med([r['fds_later'] for r in rs]))} / "
                    f"{_f(_med([r['rss_kib_start'] / 1024 for r in rs]), '%.1f')} → "
                    f"{_f(_med([r['rss_kib_later'] / 1024 for r in rs]), '%.1f')}")

        procs = "–"
        if s:
            procs = (f"{_f(_med([r['procs_end'] for r in s]))} / {_f(_med([r['procs_later'] for r in s]))} "
                     f"({_f(_med([r['procs_start'] for r in s]))}; peak {max(r['procs_peak'] for r in s)})")
        # Extra CPU of a reload: the storm's CPU beyond what its requests cost at the baseline's
        # CPU per request, per reload sent.
        per_reload = []
        for rs in s:
            rb = [x for x in b if x.get("rep") == rs.get("rep")]
            if not rb or not rb[0].get("cpu_us_per_req") or not rs.get("reloads_sent"):
                continue
            served = (rs.get("requests") or 0) + (rs.get("conn_ok") or 0)
            extra = rs["proxy_cpu_s"] - rb[0]["cpu_us_per_req"] / 1e6 * served
            per_reload.append(extra / rs["reloads_sent"] * 1000.0)
        dist = sum(1 for r in b + s if r.get("disturbed"))
        reps = len({r.get("rep") for r in b + s})
        fails = sum(1 for r in b + s if not r.get("ok"))
        row = [LABELS.get(t, t), f"{reps}" + (f" ({fails} failed)" if fails else ""),
               _f(agg(t, "baseline", "rps")), _f(agg(t, "storm", "rps")), _f(p99b), _f(p99s), ratio,
               _f(agg(t, "baseline", "conn_lat_p99_us")), _f(agg(t, "storm", "conn_lat_p99_us")),
               failed(b), failed(s), procs, second_txt(s), died_txt(b + s), mem_txt(s), _f(agg(t, "baseline", "cpu_us_per_req"), "%.1f"),
               _f(agg(t, "storm", "cpu_us_per_req"), "%.1f"), _f(_med(per_reload), "%.1f"), str(dist)]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(args.legend)
    lines.append("")
    # sluice's own view of its reloads
    sl = [t for t in targets if t.startswith("sluice") and by.get(t, {}).get("storm")]
    if sl:
        lines.append("**sluice's reloads during the storm** (from its log lines `reload N applied in X ms` and "
                     "its admin `/metrics`)")
        lines.append("")
        head = ["target", "SIGHUPs sent", "applied (log lines)", "failed (log lines)", "generation advanced",
                "expected", "reloads_total applied / unchanged / failed", "expected reloads", "apply ms median", "apply ms max",
                "first SIGHUP → reload logged, ms median", "max"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
        for t in sl:
            for r in by[t]["storm"]:
                rd = r.get("reloads_delta") or {}
                gd = r.get("generation_delta")
                exp = r.get("generation_expected")
                gtxt = _f(gd)
                if r.get("generation_ok") is False:
                    gtxt += " (**check failed**)"
                if not r.get("generation_exact", True):
                    exp = f"≈ {exp}" if exp is not None else None
                if r.get("sluice_log_unsupported"):
                    gtxt = f"{gtxt}; {r['sluice_log_unsupported']} × 'reloading is not supported yet'"
                row = [f"{LABELS.get(t, t)} rep {r.get('rep')}", _f(r.get("reloads_sent")),
                       _f(r.get("sluice_log_applied")), _f(r.get("sluice_log_failed")), gtxt,
                       exp if isinstance(exp, str) else _f(exp),
                       " / ".join(_f(rd.get(k)) for k in ("applied", "unchanged", "failed")) if rd else "–",
                       _f(r.get("reloads_expected")) + (" (**≠**)" if rd and r.get("reloads_expected") is not None and
                                                        sum(rd.values()) != r["reloads_expected"] else ""),
                       _f(r.get("apply_ms_median"), "%.2f"), _f(r.get("apply_ms_max"), "%.2f"),
                       _f(r.get("hup_to_applied_ms_median"), "%.0f"), _f(r.get("hup_to_applied_ms_max"), "%.0f")]
                lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    for t in targets:
        st = [r for r in by.get(t, {}).get("storm", []) if r.get("generations_started") is not None]
        if st:
            lines.append(
                f"{LABELS.get(t, t)}: {sum(r['generations_started'] for r in st)} new processes started during "
                f"{len(st)} storm(s), each once the previous one listened (as a script running `haproxy -D -sf` one "
                f"reload after another would); from start to listening: median "
                f"{_f(_med([r.get('generation_ready_ms_median') for r in st]), '%.0f')} ms, max "
                f"{_f(max((r.get('generation_ready_ms_max') or 0) for r in st), '%.0f')} ms.")
            lines.append("")
    problems = []
    for t in targets:
        for phase in ("baseline", "storm"):
            for r in by.get(t, {}).get(phase, []):
                what = [r["error"]] if r.get("error") else []
                if r.get("final_config") == "a" and r.get("backend2_conns_later"):
                    what.append(f"{r['backend2_conns_later']} connections to the removed second backend "
                                f"{_f(r.get('settle_s'), '%g')} s after the load")
                if what:
                    problems.append(f"{LABELS.get(t, t)} rep {r.get('rep')} {phase}: " + "; ".join(what))
    for t in targets:
        for rep, st in exits.get(t, []):
            st = int(st)
            how = f"died of signal {st - 128}" if st > 128 else f"exited with status {st}"
            problems.append(f"{LABELS.get(t, t)} rep {rep}: the process {how} (status {st} when the scenario stopped it)")
    if problems:
        lines.append("Problems seen: " + " — ".join(problems) + ".")
        lines.append("")
    bad = [f"{LABELS.get(t, t)}: " + "; ".join(c.get("steps") or ["no answer"]) for t in targets
           for c in (r.get("check") if isinstance(r.get("check"), dict) else {} for r in checks.get(t, []))
           if not c.get("ok")]
    if bad:
        lines.append("Reload checks that failed (one reload to B and back before measuring): " + " — ".join(bad) + ".")
        lines.append("")
    md = "\n".join(lines)
    with open(args.md, "w") as f:
        f.write(md)
    print(md)
    return 0


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("group")
    p.add_argument("--stop-timeout", type=float, default=5.0)
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_group)

    p = sub.add_parser("connclient")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/")
    p.add_argument("--rate", type=float, required=True, help="new connections (= requests) per second")
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_connclient)

    def reload_args(p):
        p.add_argument("--root", type=int, required=True, help="root of the proxy's process tree")
        p.add_argument("--wrapper", action="store_true", help="the root is the group wrapper, not a proxy process")
        p.add_argument("--signal-pid", type=int, required=True)
        p.add_argument("--signal", choices=sorted(SIGNALS), required=True)
        p.add_argument("--live", required=True, help="the configuration file the proxy reads")
        p.add_argument("--cfg-a", required=True)
        p.add_argument("--cfg-b", required=True)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--admin-port", type=int, default=0, help="sluice's admin port (sluice only)")

    p = sub.add_parser("check")
    reload_args(p)
    p.add_argument("--port2", type=int, required=True)
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("phase")
    reload_args(p)
    p.add_argument("--phase", choices=["baseline", "storm"], required=True)
    p.add_argument("--port2", type=int, default=0, help="the second listener's port (B only)")
    p.add_argument("--backend2-port", type=int, default=0, help="the second backend (B only)")
    p.add_argument("--reloads", type=int, default=0)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--coalesce-window", type=float, default=0.1)
    p.add_argument("--duration", type=int, required=True)
    p.add_argument("--conns", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--rate2", type=float, default=0, help="storm: new connections per second to the second listener")
    p.add_argument("--settle", type=float, default=5.0)
    p.add_argument("--log", default="", help="the proxy's log (processes that died; sluice's reload lines)")
    p.add_argument("--ignore", type=int, action="append", default=[])
    p.add_argument("--wrk-lua", required=True)
    p.add_argument("--prefix", required=True, help="path prefix of this phase's output files")
    p.add_argument("--load-core", type=int, required=True)
    p.add_argument("--proxy-core", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--scenario", default="reload")
    p.add_argument("--target", required=True)
    p.add_argument("--rep", type=int, default=1)
    p.set_defaults(func=cmd_phase)

    p = sub.add_parser("report")
    p.add_argument("--results", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--scenario", default="reload")
    p.add_argument("--targets", default="sluice,haproxy,nginx")
    p.add_argument("--title", required=True)
    p.add_argument("--meta", default="")
    p.add_argument("--legend", default="")
    p.add_argument("--settle", type=float, default=5.0)
    p.add_argument("--md", required=True)
    p.set_defaults(func=cmd_report)

    args = ap.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main() or 0)

#!/usr/bin/python3
"""Measurement and reporting helpers for the sluice benchmarks (Python stdlib only).

Called from bench/lib.sh as `benchlib.py COMMAND ...`:

  freeport [N]                     print N free TCP ports on 127.0.0.1
  treecpu PID                      CPU seconds (user+sys, children included) of PID's process tree
  treerss PID                      VmRSS in KiB summed over PID's process tree
  treefds PID                      open file descriptors summed over PID's process tree
  quiet                            wait (bounded) until no other process uses the CPU
  measure --out F [--proxy PID] [--ignore PID]... -- CMD...
                                   run CMD, measure CPU of the proxy tree, per-core busy %,
                                   steal % and CPU used by unrelated processes during CMD
  iperf-record ...                 merge an iperf3 --json result and a measurement into a JSON line
  wrk-record ...                   merge a wrk result (bench/lib/wrk_report.lua) and a measurement
  stime-record ...                 merge the outputs of parallel `openssl s_time` clients and a measurement
  speed-record ...                 the crypto floor from `openssl speed -mr` outputs, as a record
  floor-md ...                     markdown table of a run's crypto floor
  report --spec JSON ...           markdown summary (and gnuplot plots) of one run's JSON lines
  publish ...                      copy a report between markers into docs/benchmarks.md

All times come from /proc: per-process utime/stime/cutime/cstime (clock ticks, CLK_TCK) and the
per-CPU lines of /proc/stat.
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PF_KTHREAD = 0x00200000


# ---------------------------------------------------------------------------------------------
# /proc readers


def read_proc_stat_cpus():
    """Per-CPU tick counters from /proc/stat: {"cpu0": [user, nice, system, idle, iowait, irq,
    softirq, steal], ...}."""
    cpus = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                parts = line.split()
                cpus[parts[0]] = [int(x) for x in parts[1:9]]
    return cpus


def read_pid_stat(pid):
    """Returns a dict for one process or None if it vanished. Fields per proc(5)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    lpar = data.index("(")
    rpar = data.rindex(")")
    comm = data[lpar + 1 : rpar]
    rest = data[rpar + 2 :].split()
    # rest[0] is field 3 (state); field k is rest[k - 3].
    return {
        "pid": int(pid),
        "comm": comm,
        "state": rest[0],
        "ppid": int(rest[1]),
        "flags": int(rest[6]),
        "utime": int(rest[11]),
        "stime": int(rest[12]),
        "cutime": int(rest[13]),
        "cstime": int(rest[14]),
        "starttime": int(rest[19]),
    }


def snapshot_procs():
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = read_pid_stat(name)
            if st is not None:
                procs[st["pid"]] = st
    return procs


def ticks(st):
    return st["utime"] + st["stime"] + st["cutime"] + st["cstime"]


def descendants(procs, roots):
    """PIDs of roots and all their descendants in a snapshot."""
    children = {}
    for p in procs.values():
        children.setdefault(p["ppid"], []).append(p["pid"])
    out = set()
    stack = [r for r in roots if r]
    while stack:
        pid = stack.pop()
        if pid in out:
            continue
        out.add(pid)
        stack.extend(children.get(pid, []))
    return out


def tree_cpu_ticks(pid):
    procs = snapshot_procs()
    return sum(ticks(procs[p]) for p in descendants(procs, [pid]) if p in procs)


def read_status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return 0


def tree_rss_kib(pid):
    procs = snapshot_procs()
    return sum(read_status_kib(p, "VmRSS") for p in descendants(procs, [pid]))


def tree_fds(pid):
    procs = snapshot_procs()
    n = 0
    for p in descendants(procs, [pid]):
        try:
            n += len(os.listdir(f"/proc/{p}/fd"))
        except (FileNotFoundError, PermissionError):
            pass
    return n


# ---------------------------------------------------------------------------------------------
# Interval measurement


class Interval:
    """What happened on the machine between start and finish, from /proc.

    Besides the snapshots at both ends, a background thread samples every process every
    SAMPLE_S seconds, so that processes which start and stop during the interval are seen too
    (down to about SAMPLE_S of lifetime). `roots` are the benchmark's own processes: they and
    their descendants are never counted as disturbance."""

    SAMPLE_S = 0.2

    def __init__(self, roots, sample=True):
        self.roots = [r for r in roots if r]
        self.seen = {}  # (pid, starttime) -> {"first", "last", "comm", "kthread"}; own ticks
        self.bench = set()  # (pid, starttime) of benchmark processes
        self.t0 = time.monotonic()
        self.cpu0 = read_proc_stat_cpus()
        self.procs0 = self._sample(first=True)
        self._stop = threading.Event()
        self._thread = None
        if sample:
            self._thread = threading.Thread(target=self._sampler, daemon=True)
            self._thread.start()

    def _sample(self, first=False):
        procs = snapshot_procs()
        for pid, p in procs.items():
            key = (pid, p["starttime"])
            own = p["utime"] + p["stime"]
            e = self.seen.get(key)
            if e is None:
                # A process first seen after the start snapshot lived entirely in the interval.
                self.seen[key] = {"first": own if first else 0, "last": own, "comm": p["comm"],
                                  "kthread": bool(p["flags"] & PF_KTHREAD)}
            else:
                e["last"] = own
        for pid in descendants(procs, self.roots):
            if pid in procs:  # a root that exited meanwhile is not in the snapshot
                self.bench.add((pid, procs[pid]["starttime"]))
        return procs

    def _sampler(self):
        while not self._stop.wait(self.SAMPLE_S):
            self._sample()

    def finish(self):
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.procs1 = self._sample()
        self.cpu1 = read_proc_stat_cpus()
        self.t1 = time.monotonic()
        return self

    @property
    def seconds(self):
        return self.t1 - self.t0

    def tree_cpu_seconds(self, root):
        """CPU of root's process tree over the interval: utime+stime of every process in the tree
        at the end (all threads included) plus the times of children it reaped meanwhile."""
        total = 0
        merged = dict(self.procs0)
        merged.update(self.procs1)
        for pid in descendants(merged, [root]):
            p1 = self.procs1.get(pid)
            if p1 is None:
                continue
            p0 = self.procs0.get(pid)
            same = p0 is not None and p0["starttime"] == p1["starttime"]
            total += ticks(p1) - (ticks(p0) if same else 0)
        return total / CLK_TCK

    def cores(self):
        """Per-core busy time over the interval. Busy = elapsed - idle - iowait - steal: on this
        kernel (NO_HZ) idle time is measured precisely, while the user/system/softirq split is
        sampled at each tick (shown as percentages of the ticks)."""
        out = {}
        elapsed = max(self.seconds, 1e-6)
        for name in sorted(self.cpu1, key=lambda n: int(n[3:])):
            a, b = self.cpu0.get(name), self.cpu1[name]
            if a is None:
                continue
            d = [y - x for x, y in zip(a, b)]
            ticks_total = sum(d) or 1
            idle_s = (d[3] + d[4]) / CLK_TCK
            steal_s = d[7] / CLK_TCK
            busy_s = min(elapsed, max(0.0, elapsed - idle_s - steal_s))
            out[int(name[3:])] = {
                "busy_pct": round(100.0 * busy_s / elapsed, 1),
                "busy_s": round(busy_s, 3),
                "user_pct": round(100.0 * (d[0] + d[1]) / ticks_total, 1),
                "sys_pct": round(100.0 * d[2] / ticks_total, 1),
                "softirq_pct": round(100.0 * (d[5] + d[6]) / ticks_total, 1),
                "steal_pct": round(100.0 * steal_s / elapsed, 1),
            }
        return out

    def others(self):
        """CPU used during the interval by user-space processes outside the benchmark's trees
        (own utime+stime, so a reaped child is never counted twice). Kernel threads (softirq,
        kworkers) are reported apart: on loopback they mostly do the benchmark's network work.
        unattributed_cpu_s is the CPUs' busy time beyond all processes seen (irq and softirq time
        outside any task, processes shorter than a sample, measurement error): informational."""
        user, kthreads, seen_total = [], 0, 0
        for key, e in self.seen.items():
            d = e["last"] - e["first"]
            if d <= 0:
                continue
            seen_total += d
            if key in self.bench:
                continue
            if e["kthread"]:
                kthreads += d
            else:
                user.append((d, key[0], e["comm"]))
        user.sort(reverse=True)
        busy = sum(c["busy_s"] for c in self.cores().values()) * CLK_TCK
        return {
            "other_cpu_s": round(sum(d for d, _, _ in user) / CLK_TCK, 3),
            "other_top": [f"{comm}[{pid}]={d / CLK_TCK:.2f}s" for d, pid, comm in user[:3]],
            "kthread_cpu_s": round(kthreads / CLK_TCK, 3),
            "unattributed_cpu_s": round(max(0, busy - seen_total) / CLK_TCK, 3),
        }


def disturbance_limits():
    return (
        float(os.environ.get("BENCH_DISTURB_PCT", "5")),
        float(os.environ.get("BENCH_STEAL_PCT", "5")),
    )


def judge(m):
    """Marks a measurement disturbed when unrelated processes used more than BENCH_DISTURB_PCT %
    of one core on average, or the hypervisor stole more than BENCH_STEAL_PCT % of any core."""
    other_lim, steal_lim = disturbance_limits()
    secs = max(m["seconds"], 1e-6)
    m["other_pct"] = round(100.0 * m["other_cpu_s"] / secs, 1)
    max_steal = max((c["steal_pct"] for c in m["cores"].values()), default=0.0)
    reasons = []
    if m["other_pct"] > other_lim:
        reasons.append(f"other processes used {m['other_pct']}% of a core ({', '.join(m['other_top'])})")
    if max_steal > steal_lim:
        reasons.append(f"steal {max_steal}%")
    m["disturbed"] = bool(reasons)
    m["disturb_reason"] = "; ".join(reasons)
    return m


def tree_socket_inodes(pid):
    """Inodes of the sockets open in pid's process tree."""
    out = set()
    for p in descendants(snapshot_procs(), [pid]):
        try:
            fds = os.listdir(f"/proc/{p}/fd")
        except (FileNotFoundError, PermissionError):
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{p}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                out.add(int(link[8:-1]))
    return out


def tcp_established_to(port):
    """{client-side local port: socket inode} of the ESTABLISHED IPv4 TCP connections whose remote
    port is `port` (/proc/net/tcp: the client ends of the connections to a local server)."""
    out = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if len(parts) < 10 or parts[3] != "01":
                continue
            if int(parts[2].rsplit(":", 1)[1], 16) == port:
                out[int(parts[1].rsplit(":", 1)[1], 16)] = int(parts[9])
    return out


class UpstreamCounter:
    """Counts the proxy's established connections to the backend port during a measurement.

    The other proxies of a scenario stay up with their idle backend connections, so the proxy's
    own connections are told apart once, at the start, by the socket inodes of its process tree;
    every connection to the backend that opens later can only be the measured proxy's (the
    others are idle). Sampled every SAMPLE_S seconds: the peak, the count at both ends, and how
    many distinct connections were seen (a lower bound of those opened: one that lives less than
    a sample can be missed)."""

    SAMPLE_S = 0.2

    def __init__(self, proxy, port):
        self.port = port
        conns = tcp_established_to(port)
        mine = tree_socket_inodes(proxy) if proxy else set()
        self.others = {lp for lp, ino in conns.items() if ino not in mine}
        first = self._sample()
        self.start = len(first)
        self.peak = self.start
        self.seen = set(first)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self):
        now = {lp for lp in tcp_established_to(self.port) if lp not in self.others}
        return now

    def _run(self):
        while not self._stop.wait(self.SAMPLE_S):
            now = self._sample()
            self.peak = max(self.peak, len(now))
            self.seen |= now

    def finish(self):
        self._stop.set()
        self._thread.join()
        now = self._sample()
        self.peak = max(self.peak, len(now))
        self.seen |= now
        return {"upstream_conns_start": self.start, "upstream_conns_end": len(now),
                "upstream_conns_max": self.peak, "upstream_conns_seen": len(self.seen)}


def nginx_accepts(port):
    """The `accepts` counter of an nginx stub_status page at http://127.0.0.1:port/status (the
    connections nginx has accepted since it started, this request's own included)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /status HTTP/1.1\r\nHost: status\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    m = re.search(rb"server accepts handled requests\s+(\d+) (\d+) (\d+)", data)
    if not m:
        raise ValueError("no stub_status counters in the answer of port %d" % port)
    return int(m.group(1))


def cmd_measure(args):
    cmd = args.cmd
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        sys.exit("measure: no command")
    up = UpstreamCounter(args.proxy, args.upstream_port) if args.upstream_port and args.proxy else None
    accepts0 = nginx_accepts(args.backend_status_port) if args.backend_status_port else None
    iv = Interval([os.getpid()] + args.ignore + [args.proxy])
    child = subprocess.Popen(cmd)
    # Forward SIGTERM/SIGINT so that stopping the measurement stops the load tool too.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, f: child.send_signal(s))
    rc = child.wait()
    iv.finish()
    m = {
        "seconds": round(iv.seconds, 3),
        "rc": rc,
        "proxy_cpu_s": round(iv.tree_cpu_seconds(args.proxy), 3) if args.proxy else None,
        "cores": {str(k): v for k, v in iv.cores().items()},
    }
    if up is not None:
        m.update(up.finish())
    if accepts0 is not None:
        # Both readings count their own connection: the second one is not the proxy's.
        m["backend_accepts"] = nginx_accepts(args.backend_status_port) - accepts0 - 1
    m.update(iv.others())
    judge(m)
    with open(args.out, "w") as f:
        json.dump(m, f)
    sys.exit(rc)


def cmd_quiet(args):
    """Waits until one window of args.window seconds shows no disturbance, at most args.max_wait
    seconds. Prints the last verdict; exit status 0 if quiet, 1 if still disturbed."""
    deadline = time.monotonic() + args.max_wait
    while True:
        iv = Interval([os.getpid(), os.getppid()] + args.ignore)
        time.sleep(args.window)
        iv.finish()
        m = {"seconds": iv.seconds, "cores": {str(k): v for k, v in iv.cores().items()}}
        m.update(iv.others())
        judge(m)
        if not m["disturbed"]:
            print("quiet")
            return 0
        if time.monotonic() >= deadline:
            print(f"still busy: {m['disturb_reason']}")
            return 1
        time.sleep(0.5)


# ---------------------------------------------------------------------------------------------
# Small helpers for the shell side


def cmd_freeport(args):
    socks, ports = [], []
    for _ in range(args.n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    print(" ".join(str(p) for p in ports))


def cmd_treecpu(args):
    print(f"{tree_cpu_ticks(args.pid) / CLK_TCK:.3f}")


def cmd_treerss(args):
    print(tree_rss_kib(args.pid))


def cmd_treefds(args):
    print(tree_fds(args.pid))


# ---------------------------------------------------------------------------------------------
# iperf3 results


def cmd_iperf_record(args):
    with open(args.meas) as f:
        m = json.load(f)
    rec = {
        "run_id": args.run_id,
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "scenario": args.scenario,
        "case": args.case,
        "target": args.target,
        "rep": args.rep,
        "attempt": args.attempt,
        "warmup": args.warmup,
        "streams": args.streams,
        "duration_s": args.duration,
        "ok": False,
    }
    try:
        with open(args.iperf) as f:
            j = json.load(f)
    except (OSError, ValueError) as e:
        j = {"error": f"unreadable iperf3 output: {e}"}
    if "error" in j or "end" not in j or "sum_received" not in j.get("end", {}):
        rec["error"] = j.get("error", "no end.sum_received in iperf3 output")
    else:
        recv = j["end"]["sum_received"]
        sent = j["end"].get("sum_sent", {})
        rec["ok"] = m["rc"] == 0
        rec["bytes"] = recv["bytes"]
        rec["gbps"] = round(recv["bits_per_second"] / 1e9, 3)
        rec["retransmits"] = sent.get("retransmits")
        cpu = j["end"].get("cpu_utilization_percent", {})
        rec["iperf_client_cpu_pct"] = cpu.get("host_total")
        rec["iperf_server_cpu_pct"] = cpu.get("remote_total")
        if m.get("proxy_cpu_s") is not None and recv["bytes"] > 0:
            rec["cpu_s_per_gb"] = round(m["proxy_cpu_s"] / (recv["bytes"] / 1e9), 4)
    proxy_core, load_core = str(args.proxy_core), str(args.load_core)
    rec["proxy_cpu_s"] = m.get("proxy_cpu_s")
    rec["measured_s"] = m["seconds"]
    if proxy_core in m["cores"]:
        rec["proxy_core_busy_pct"] = m["cores"][proxy_core]["busy_pct"]
        # Everything the proxy's core did, including kernel work on the proxy's behalf that is
        # not charged to the proxy process (e.g. softirq handled while the proxy sleeps).
        if m.get("proxy_cpu_s") is not None and rec.get("bytes"):
            rec["core_cpu_s_per_gb"] = round(m["cores"][proxy_core]["busy_s"] / (rec["bytes"] / 1e9), 4)
    if load_core in m["cores"]:
        rec["load_core_busy_pct"] = m["cores"][load_core]["busy_pct"]
    rec["cores"] = m["cores"]
    for k in ("other_cpu_s", "other_pct", "other_top", "kthread_cpu_s", "unattributed_cpu_s",
              "disturbed", "disturb_reason"):
        rec[k] = m.get(k)
    rec["client_rc"] = m["rc"]
    line = json.dumps(rec, sort_keys=True)
    with open(args.out, "a") as f:
        f.write(line + "\n")
    # One-line summary for the shell: ok disturbed gbps
    print(f"{'ok' if rec['ok'] else 'fail'} {'disturbed' if rec['disturbed'] else 'clean'} "
          f"{rec.get('gbps', 0)} {rec.get('cpu_s_per_gb', '-')} {rec.get('error', '')}")


def cmd_udp_record(args):
    """One run of bench/lib/udp_load (rr, stream or stun) under `measure`: answers a second,
    losses, round trips and the proxy's CPU per datagram it relayed (each answered exchange is
    two datagrams through the proxy, one each way) and per answer (a STUN server's CPU per
    Binding request answered, and answers per CPU-second)."""
    with open(args.meas) as f:
        m = json.load(f)
    rec = {"run_id": args.run_id, "ts": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "scenario": args.scenario, "case": args.case, "target": args.target, "rep": args.rep,
           "attempt": args.attempt, "warmup": args.warmup, "ok": False}
    try:
        with open(args.load) as f:
            j = json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError) as e:
        j = {"error": f"unreadable udp_load output: {e}"}
    if "error" in j:
        rec["error"] = j["error"]
    else:
        for k in ("sessions", "size", "sent", "received", "lost", "per_s", "rtt_p50_us", "rtt_p99_us"):
            rec[k] = j.get(k)
        rec["ok"] = m["rc"] == 0 and j.get("received", 0) > 0
        rec["loss_pct"] = round(100.0 * j["lost"] / j["sent"], 3) if j.get("sent") else None
        if j.get("errors") is not None:
            rec["errors"] = j["errors"]
        if m.get("proxy_cpu_s") is not None and j.get("received"):
            rec["cpu_us_per_datagram"] = round(m["proxy_cpu_s"] * 1e6 / (2 * j["received"]), 3)
            # The server's CPU per answer (stun: per Binding answered) and its inverse.
            rec["cpu_us_per_answer"] = round(m["proxy_cpu_s"] * 1e6 / j["received"], 3)
            if m["proxy_cpu_s"] > 0:
                rec["answers_per_cpu_s"] = round(j["received"] / m["proxy_cpu_s"])
    proxy_core, load_core = str(args.proxy_core), str(args.load_core)
    rec["proxy_cpu_s"] = m.get("proxy_cpu_s")
    rec["measured_s"] = m["seconds"]
    if proxy_core in m["cores"]:
        rec["proxy_core_busy_pct"] = m["cores"][proxy_core]["busy_pct"]
        if rec.get("received"):
            rec["core_cpu_us_per_datagram"] = round(
                m["cores"][proxy_core]["busy_s"] * 1e6 / (2 * rec["received"]), 3)
    if load_core in m["cores"]:
        rec["load_core_busy_pct"] = m["cores"][load_core]["busy_pct"]
    rec["cores"] = m["cores"]
    for k in ("other_cpu_s", "other_pct", "other_top", "kthread_cpu_s", "unattributed_cpu_s",
              "disturbed", "disturb_reason"):
        rec[k] = m.get(k)
    with open(args.out, "a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")
    print(f"{'ok' if rec['ok'] else 'fail'} {'disturbed' if rec['disturbed'] else 'clean'} "
          f"{rec.get('per_s', 0)}/s cpu {rec.get('cpu_us_per_datagram', '-')} us/datagram "
          f"loss {rec.get('loss_pct', '-')}% {rec.get('error', '')}")


# ---------------------------------------------------------------------------------------------
# wrk results (HTTP scenarios)


WRK_MARK = "WRKJSON "


def read_wrk_json(path):
    """The JSON object that bench/lib/wrk_report.lua prints at the end of a wrk run."""
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith(WRK_MARK):
                return json.loads(line[len(WRK_MARK):])
    raise ValueError("no WRKJSON line (wrk did not finish)")


def cmd_wrk_record(args):
    with open(args.meas) as f:
        m = json.load(f)
    rec = {
        "run_id": args.run_id,
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "scenario": args.scenario,
        "case": args.case,
        "target": args.target,
        "rep": args.rep,
        "attempt": args.attempt,
        "warmup": args.warmup,
        "connections": args.connections,
        "duration_s": args.duration,
        "ok": False,
    }
    try:
        w = read_wrk_json(args.wrk)
    except (OSError, ValueError) as e:
        rec["error"] = f"unreadable wrk output: {e}"
        w = None
    if w is not None:
        secs = max(w["duration_us"] / 1e6, 1e-6)
        n = w["requests"]
        errors = {k: w.get(k + "_errors", 0) for k in ("connect", "read", "write", "timeout", "status")}
        rec.update(requests=n, bytes=w["bytes"], wrk_seconds=round(secs, 3),
                   rps=round(n / secs, 1), gbps=round(w["bytes"] * 8 / secs / 1e9, 3),
                   errors=errors, lat_mean_us=w["lat_mean_us"], lat_max_us=w["lat_max_us"])
        for p in ("p50", "p90", "p99", "p999"):
            if f"lat_{p}_us" in w:
                rec[f"lat_{p}_us"] = w[f"lat_{p}_us"]
        bad = {k: v for k, v in errors.items() if v}
        if bad:
            # status = responses other than 2xx/3xx
            rec["error"] = "wrk errors: " + ", ".join(f"{k} {v}" for k, v in bad.items())
        rec["ok"] = m["rc"] == 0 and n > 0 and not bad
        cpu = m.get("proxy_cpu_s")
        if cpu is not None and n > 0:
            rec["cpu_us_per_req"] = round(cpu / n * 1e6, 3)
            rec["cpu_s_per_100k"] = round(cpu / n * 1e5, 4)
            if w["bytes"] > 0:
                rec["cpu_s_per_gb"] = round(cpu / (w["bytes"] / 1e9), 4)
                if args.floor_s_per_gb:
                    rec["floor_s_per_gb"] = args.floor_s_per_gb
                    rec["x_floor"] = round(rec["cpu_s_per_gb"] / args.floor_s_per_gb, 2)
    proxy_core, load_core = str(args.proxy_core), str(args.load_core)
    rec["proxy_cpu_s"] = m.get("proxy_cpu_s")
    rec["measured_s"] = m["seconds"]
    if proxy_core in m["cores"]:
        rec["proxy_core_busy_pct"] = m["cores"][proxy_core]["busy_pct"]
        # All busy time of the proxy's core (kernel work on its behalf included), per unit.
        if m.get("proxy_cpu_s") is not None and rec.get("requests"):
            busy = m["cores"][proxy_core]["busy_s"]
            rec["core_cpu_us_per_req"] = round(busy / rec["requests"] * 1e6, 3)
            rec["core_cpu_s_per_100k"] = round(busy / rec["requests"] * 1e5, 4)
            if rec.get("bytes"):
                rec["core_cpu_s_per_gb"] = round(busy / (rec["bytes"] / 1e9), 4)
    if load_core in m["cores"]:
        rec["load_core_busy_pct"] = m["cores"][load_core]["busy_pct"]
    rec["cores"] = m["cores"]
    for k in ("other_cpu_s", "other_pct", "other_top", "kthread_cpu_s", "unattributed_cpu_s",
              "disturbed", "disturb_reason"):
        rec[k] = m.get(k)
    rec["client_rc"] = m["rc"]
    with open(args.out, "a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")
    # One-line summary for the shell: ok|fail clean|disturbed req/s p50 p99 CPU-us/req [error]
    print(f"{'ok' if rec['ok'] else 'fail'} {'disturbed' if rec['disturbed'] else 'clean'} "
          f"{rec.get('rps', 0)} req/s p50={rec.get('lat_p50_us', '-')}us p99={rec.get('lat_p99_us', '-')}us "
          f"{rec.get('gbps', 0)} Gbit/s cpu={rec.get('cpu_us_per_req', '-')}us/req {rec.get('error', '')}")


# ---------------------------------------------------------------------------------------------
# h2load results (HTTP/2 scenario)


def read_h2load(path):
    """What one h2load run printed: requests by outcome, status classes, run time, req/s, the
    negotiated TLS and application protocol. Raises ValueError if it did not finish."""
    with open(path, errors="replace") as f:
        text = f.read()
    out = {}
    m = re.search(r"^finished in ([0-9.]+)(ms|s), ([0-9.]+) req/s", text, re.M)
    r = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", text, re.M)
    c = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    t = re.search(r"^traffic: .*\((\d+)\) total", text, re.M)
    if not (m and r and c):
        tail = " | ".join(l for l in text.strip().splitlines()[-3:] if len(l) < 300)
        raise ValueError("no h2load summary (%s)" % (tail or "empty output"))
    out["finished_s"] = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
    out["h2load_rps"] = float(m.group(3))
    keys = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
    out.update({"req_" + k: int(v) for k, v in zip(keys, r.groups())})
    out.update({"status_" + k: int(v) for k, v in zip(("2xx", "3xx", "4xx", "5xx"), c.groups())})
    if t:
        out["bytes"] = int(t.group(1))
    for key, pat in (("tls_protocol", r"^TLS Protocol: (.*)$"), ("cipher", r"^Cipher: (.*)$"),
                     ("server_temp_key", r"^Server Temp Key: (.*)$"), ("alpn", r"^Application protocol: (.*)$")):
        mm = re.search(pat, text, re.M)
        if mm:
            out[key] = mm.group(1).strip()
    return out


def read_h2load_log(path):
    """Latency percentiles (µs) from h2load --log-file: one line per request, tab-separated start
    time (µs since the epoch), status, µs until the end of the response."""
    lat = []
    with open(path, errors="replace") as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) >= 3:
                try:
                    lat.append(int(parts[2]))
                except ValueError:
                    pass
    if not lat:
        return {}
    lat.sort()

    def pct(p):
        return lat[min(len(lat) - 1, int(p / 100.0 * len(lat)))]
    return {"logged": len(lat), "lat_mean_us": round(sum(lat) / len(lat), 1), "lat_p50_us": pct(50),
            "lat_p90_us": pct(90), "lat_p99_us": pct(99), "lat_p999_us": pct(99.9), "lat_max_us": lat[-1]}


def cmd_h2load_record(args):
    """One record per h2load run. Requests are h2load's `done` count; a run is ok when every
    request started was done and succeeded with a 2xx and h2load exited with 0 (and, when
    given, the negotiated application protocol is --expect-alpn). CPU per request is the
    proxy tree's CPU over the whole h2load process (connection set-up included) / requests."""
    with open(args.meas) as f:
        m = json.load(f)
    rec = {
        "run_id": args.run_id,
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "scenario": args.scenario,
        "case": args.case,
        "target": args.target,
        "rep": args.rep,
        "attempt": args.attempt,
        "warmup": args.warmup,
        "connections": args.connections,
        "streams_per_connection": args.streams,
        "ok": False,
    }
    try:
        h = read_h2load(args.h2load)
    except (OSError, ValueError) as e:
        rec["error"] = f"unreadable h2load output: {e}"
        h = None
    if h is not None:
        n = h["req_done"]
        secs = max(h["finished_s"], 1e-6)
        rec.update(h)
        rec.update(requests=n, rps=round(h["h2load_rps"], 1))
        if h.get("bytes"):
            rec["gbps"] = round(h["bytes"] * 8 / secs / 1e9, 3)
        if args.log:
            try:
                rec.update(read_h2load_log(args.log))
            except OSError:
                pass
        errs = []
        if h["req_failed"] or h["req_errored"] or h["req_timeout"]:
            errs.append(f"{h['req_failed']} failed, {h['req_errored']} errored, {h['req_timeout']} timed out")
        if h["req_done"] != h["req_total"] or h["status_2xx"] != h["req_total"]:
            errs.append(f"{h['req_done']} of {h['req_total']} done, {h['status_2xx']} 2xx, "
                        f"{h['status_4xx']} 4xx, {h['status_5xx']} 5xx")
        if args.expect_alpn and h.get("alpn") != args.expect_alpn:
            errs.append(f"application protocol {h.get('alpn', 'none')!r}, not {args.expect_alpn!r}")
        if errs:
            rec["error"] = "h2load: " + "; ".join(errs)
        rec["ok"] = m["rc"] == 0 and n > 0 and not errs
        cpu = m.get("proxy_cpu_s")
        if cpu is not None and n > 0:
            rec["cpu_us_per_req"] = round(cpu / n * 1e6, 3)
            rec["cpu_s_per_100k"] = round(cpu / n * 1e5, 4)
    proxy_core, load_core = str(args.proxy_core), str(args.load_core)
    rec["proxy_cpu_s"] = m.get("proxy_cpu_s")
    rec["measured_s"] = m["seconds"]
    if proxy_core in m["cores"]:
        rec["proxy_core_busy_pct"] = m["cores"][proxy_core]["busy_pct"]
        if m.get("proxy_cpu_s") is not None and rec.get("requests"):
            rec["core_cpu_us_per_req"] = round(m["cores"][proxy_core]["busy_s"] / rec["requests"] * 1e6, 3)
    if load_core in m["cores"]:
        rec["load_core_busy_pct"] = m["cores"][load_core]["busy_pct"]
    rec["cores"] = m["cores"]
    for k in ("upstream_conns_start", "upstream_conns_end", "upstream_conns_max", "upstream_conns_seen",
              "other_cpu_s", "other_pct", "other_top", "kthread_cpu_s", "unattributed_cpu_s",
              "disturbed", "disturb_reason"):
        rec[k] = m.get(k)
    if rec["upstream_conns_seen"] is not None:
        # Those open at the start are among those seen: the rest opened during the run.
        rec["upstream_conns_opened"] = rec["upstream_conns_seen"] - rec["upstream_conns_start"]
    if m.get("backend_accepts") is not None:
        rec["backend_accepts"] = m["backend_accepts"]
    rec["client_rc"] = m["rc"]
    with open(args.out, "a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")
    print(f"{'ok' if rec['ok'] else 'fail'} {'disturbed' if rec['disturbed'] else 'clean'} "
          f"{rec.get('rps', 0)} req/s p50={rec.get('lat_p50_us', '-')}us p99={rec.get('lat_p99_us', '-')}us "
          f"cpu={rec.get('cpu_us_per_req', '-')}us/req backend conns: peak {rec.get('upstream_conns_max', '-')}, "
          f"end {rec.get('upstream_conns_end', '-')}, opened >= {rec.get('upstream_conns_opened', '-')}"
          + (f", accepted by the backend {rec['backend_accepts']}" if "backend_accepts" in rec else "")
          + f" {rec.get('error', '')}")


# ---------------------------------------------------------------------------------------------
# TLS: openssl s_time clients and the crypto floor (bench/scenarios/tls.sh)


def read_stime(path):
    """One `openssl s_time` client's output: connections made, full ('*') and resumed ('r')
    handshakes from its progress characters, bytes read per connection; error if it did not
    print its summary (it stops at the first connection it cannot make)."""
    with open(path, errors="replace") as f:
        text = f.read()
    out = {"file": path}
    m = re.search(r"^(\d+) connections in [0-9.]+s;", text, re.M)
    m2 = re.search(r"^(\d+) connections in \d+ real seconds, (\d+) bytes read per connection", text, re.M)
    if not m or not m2:
        tail = " | ".join(l for l in text.strip().splitlines()[-3:] if len(l) < 300)
        out["error"] = "no s_time summary (%s)" % (tail or "empty output")
        return out
    # one character per connection: r resumed, * (or t, 3: older protocols) a full handshake
    marks = "".join(l for l in text.splitlines() if l and set(l) <= set("*rt3"))
    out.update(connections=int(m.group(1)), bytes_per_conn=int(m2.group(2)),
               full=marks.count("*") + marks.count("t") + marks.count("3"), resumed=marks.count("r"))
    return out


def cmd_stime_record(args):
    with open(args.meas) as f:
        m = json.load(f)
    rec = {
        "run_id": args.run_id,
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "scenario": args.scenario,
        "case": args.case,
        "target": args.target,
        "rep": args.rep,
        "attempt": args.attempt,
        "warmup": args.warmup,
        "connections": len(args.stime),
        "duration_s": args.duration,
        "ok": False,
    }
    clients = [read_stime(p) for p in args.stime]
    errors = [c["error"] for c in clients if "error" in c]
    n = sum(c.get("connections", 0) for c in clients)
    full = sum(c.get("full", 0) for c in clients)
    resumed = sum(c.get("resumed", 0) for c in clients)
    secs = max(m["seconds"], 1e-6)
    rec.update(requests=n, handshakes_full=full, handshakes_resumed=resumed, rps=round(n / secs, 1),
               bytes_per_conn=min((c["bytes_per_conn"] for c in clients if "bytes_per_conn" in c), default=0))
    if n:
        rec["resumed_pct"] = round(100.0 * resumed / n, 1)
    if errors:
        rec["error"] = "%d of %d s_time clients failed: %s" % (len(errors), len(clients), errors[0])
    elif n == 0 or rec["bytes_per_conn"] == 0:
        rec["error"] = "no connection carried a response"
    elif args.mode == "new" and resumed:
        rec["error"] = "%d handshakes were resumptions in a full-handshake run" % resumed
    elif args.mode == "reuse" and resumed < 0.95 * n:
        # The first connection of each client is a full one; the others must all resume.
        rec["error"] = "only %d of %d handshakes resumed a session (tickets not accepted?)" % (resumed, n)
    rec["ok"] = m["rc"] == 0 and "error" not in rec
    cpu = m.get("proxy_cpu_s")
    if cpu is not None and n > 0:
        rec["cpu_us_per_req"] = round(cpu / n * 1e6, 2)
        if args.floor_us:
            rec["floor_us"] = args.floor_us
            rec["x_floor"] = round(rec["cpu_us_per_req"] / args.floor_us, 2)
    proxy_core, load_core = str(args.proxy_core), str(args.load_core)
    rec["proxy_cpu_s"] = cpu
    rec["measured_s"] = m["seconds"]
    if proxy_core in m["cores"]:
        rec["proxy_core_busy_pct"] = m["cores"][proxy_core]["busy_pct"]
        if cpu is not None and n:
            rec["core_cpu_us_per_req"] = round(m["cores"][proxy_core]["busy_s"] / n * 1e6, 2)
    if load_core in m["cores"]:
        rec["load_core_busy_pct"] = m["cores"][load_core]["busy_pct"]
    rec["cores"] = m["cores"]
    for k in ("other_cpu_s", "other_pct", "other_top", "kthread_cpu_s", "unattributed_cpu_s",
              "disturbed", "disturb_reason"):
        rec[k] = m.get(k)
    rec["client_rc"] = m["rc"]
    with open(args.out, "a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")
    print(f"{'ok' if rec['ok'] else 'fail'} {'disturbed' if rec['disturbed'] else 'clean'} "
          f"{rec['rps']} conn/s resumed={resumed}/{n} cpu={rec.get('cpu_us_per_req', '-')}us/handshake "
          f"x_floor={rec.get('x_floor', '-')} {rec.get('error', '')}")


# `openssl speed -mr` result lines: +F2 RSA, +F4 ECDSA (num:bits:sign/s:verify/s), +F5 ECDH
# (num:bits:op/s:...), +F EVP cipher (num:name:bytes/s for each -bytes size).
SPEED_LINES = {
    "+F2": lambda f: {"rsa%s_sign_us" % f[2]: 1e6 / float(f[3]), "rsa%s_verify_us" % f[2]: 1e6 / float(f[4])},
    "+F4": lambda f: {"ecdsap%s_sign_us" % f[2]: 1e6 / float(f[3]), "ecdsap%s_verify_us" % f[2]: 1e6 / float(f[4])},
    "+F5": lambda f: {("x25519" if f[2] == "253" else "ecdh%s" % f[2]) + "_derive_us": 1e6 / float(f[3])},
    "+F": lambda f: {f[2].lower().replace("-", "") + "_s_per_gb": 1e9 / float(f[-1])},
}


def cmd_speed_record(args):
    """Writes one meta record (event crypto_floor) with the time of each operation and prints
    the floors as shell assignments: FLOOR_ECDSA_US (ECDSA P-256 sign + X25519), FLOOR_RSA_US
    (RSA 2048 sign + X25519), FLOOR_RESUME_US (X25519: a TLS 1.3 resumption still does the
    key exchange), FLOOR_AES_S_PER_GB (AES-128-GCM over 16 KiB records)."""
    ops = {}
    for path in args.speed:
        with open(path, errors="replace") as f:
            for line in f:
                fields = line.strip().split(":")
                if fields[0] in SPEED_LINES:
                    ops.update({k: round(v, 3) for k, v in SPEED_LINES[fields[0]](fields).items()})
    need = ("ecdsap256_sign_us", "rsa2048_sign_us", "x25519_derive_us", "aes128gcm_s_per_gb")
    missing = [k for k in need if k not in ops]
    if missing:
        print("speed-record: no figure for %s in %s" % (", ".join(missing), " ".join(args.speed)), file=sys.stderr)
        return 1
    floors = {
        "FLOOR_ECDSA_US": round(ops["ecdsap256_sign_us"] + ops["x25519_derive_us"], 1),
        "FLOOR_RSA_US": round(ops["rsa2048_sign_us"] + ops["x25519_derive_us"], 1),
        "FLOOR_RESUME_US": round(ops["x25519_derive_us"], 1),
        "FLOOR_AES_S_PER_GB": round(ops["aes128gcm_s_per_gb"], 4),
    }
    rec = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S"), "kind": "meta", "event": "crypto_floor",
           "run_id": args.run_id, "scenario": args.scenario, "core": args.core,
           "openssl": " ".join(_first_line(["openssl", "version"]).split()[:2]), "ops": ops,
           "floors": {k.lower(): v for k, v in floors.items()}}
    with open(args.out, "a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")
    for k, v in floors.items():
        print(f"{k}={v}")
    return 0


def cmd_floor_md(args):
    recs = [r for r in load_records(args.results, args.run_id, args.scenario) if r.get("event") == "crypto_floor"]
    if not recs:
        print(f"floor-md: no crypto_floor record for run {args.run_id}", file=sys.stderr)
        return 1
    r = recs[-1]
    o, fl = r["ops"], r["floors"]
    lines = [
        f"#### Crypto floor (`openssl speed -seconds 1`, {r['openssl']}, core {r['core']})",
        "",
        "| operation | µs each | |",
        "|---|---:|---|",
        f"| ECDSA P-256 sign | {o['ecdsap256_sign_us']:.1f} | the server's signature in a full ECDSA handshake |",
        f"| ECDSA P-256 verify | {o.get('ecdsap256_verify_us', 0):.1f} | the client's side of it (not the proxy's) |",
        f"| RSA 2048 sign | {o['rsa2048_sign_us']:.1f} | the server's signature in a full RSA handshake |",
        f"| RSA 2048 verify | {o.get('rsa2048_verify_us', 0):.1f} | the client's side of it |",
        f"| X25519 derive | {o['x25519_derive_us']:.1f} | the key exchange, in every TLS 1.3 handshake (resumed too) |",
        f"| AES-128-GCM, 16 KiB records | {o['aes128gcm_s_per_gb']:.3f} CPU-s/GB | the bulk cipher (TLS_AES_128_GCM_SHA256) |",
        "",
        f"Floor per handshake, server side: full ECDSA = sign + X25519 = **{fl['floor_ecdsa_us']:.1f} µs**; "
        f"full RSA = sign + X25519 = **{fl['floor_rsa_us']:.1f} µs**; resumed = X25519 = "
        f"**{fl['floor_resume_us']:.1f} µs**; bulk **{fl['floor_aes_s_per_gb']:.3f} CPU-s/GB**. A lower bound: "
        f"the server's X25519 key generation, the key schedule (HKDF), the Finished MACs, tickets, "
        f"certificate handling, TCP and HTTP come on top. *× floor* in the tables below is the "
        f"proxy's CPU per handshake (or per GB) divided by it.",
        "",
    ]
    md = "\n".join(lines)
    with open(args.md, "w") as f:
        f.write(md)
    print(md)
    return 0


def cmd_record(args):
    """Appends one JSON object (given as key=value pairs; values parsed as JSON when possible)."""
    rec = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for kv in args.kv:
        k, _, v = kv.partition("=")
        try:
            rec[k] = json.loads(v)
        except ValueError:
            rec[k] = v
    with open(args.out, "a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------------
# Reports


TARGET_LABELS = {"direct": "direct (no proxy)", "sluice": "sluice", "haproxy": "HAProxy", "nginx": "nginx",
                 "sluice_log": "sluice, access log on", "nginx_log": "nginx, access log on"}
TARGET_COLORS = {"direct": "#8c8c8c", "sluice": "#dd8452", "haproxy": "#4c72b0", "nginx": "#55a868",
                 "sluice_log": "#c44e52", "nginx_log": "#8172b2"}


def fmt(v, f):
    return "–" if v is None else (f % v)


def load_records(path, run_id, scenario):
    recs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if r.get("run_id") == run_id and r.get("scenario") == scenario:
                recs.append(r)
    return recs


def final_records(recs):
    """Measured repetitions only: no warm-ups, no metadata, and for a repetition that was run
    again (disturbed or failed) only its last attempt."""
    last = {}
    for r in recs:
        if r.get("kind") == "meta" or r.get("warmup"):
            continue
        key = (r["case"], r["target"], r.get("rep"))
        if key not in last or r.get("attempt", 1) >= last[key].get("attempt", 1):
            last[key] = r
    return list(last.values())


def summarize(recs, spec):
    """{case: {target: {key: (median, min, max, n)}}} plus run counts and disturbed counts."""
    cases = []
    for r in recs:
        if r["case"] not in cases:
            cases.append(r["case"])
    targets = spec.get("targets") or []
    for r in recs:
        if r["target"] not in targets:
            targets.append(r["target"])
    out = {}
    min_clean = spec.get("min_clean", 1)
    for case in cases:
        out[case] = {}
        # Statistics over the undisturbed runs when every target of the case has enough of them,
        # else over all runs: the same rule for every target, so that they stay comparable.
        only_clean = all(
            sum(1 for r in recs if r["case"] == case and r["target"] == t
                and r.get("ok", True) and not r.get("disturbed")) >= min_clean
            for t in targets if any(r["case"] == case and r["target"] == t for r in recs))
        for t in targets:
            rs = [r for r in recs if r["case"] == case and r["target"] == t]
            if not rs:
                continue
            ok = [r for r in rs if r.get("ok", True)]
            clean = [r for r in ok if not r.get("disturbed")]
            use = clean if only_clean else ok
            entry = {"runs": len(rs), "ok": len(ok), "used": len(use),
                     "disturbed": sum(1 for r in rs if r.get("disturbed")),
                     "mixed": any(r.get("disturbed") for r in use)}
            for col in spec["columns"]:
                vals = [r[col["key"]] for r in use if r.get(col["key"]) is not None]
                if vals:
                    entry[col["key"]] = (statistics.median(vals), min(vals), max(vals), len(vals))
            out[case][t] = entry
    return cases, targets, out


def pair_ratios(spec, recs):
    """{case: [line]}: for each spec["pair_ratios"] entry ({"key", "num", "den", "label"}), the
    ratio num/den of the key within each repetition (both targets measured in the same
    interleaved round), in repetition order; a disturbed run is marked *."""
    out = {}
    for pr in spec.get("pair_ratios", []):
        by = {}
        for r in recs:
            if r["target"] in (pr["num"], pr["den"]) and r.get("ok", True) and r.get(pr["key"]) is not None:
                by.setdefault(r["case"], {}).setdefault(r.get("rep"), {})[r["target"]] = r
        for case, reps in by.items():
            vals = []
            for rep in sorted(k for k in reps if k is not None):
                a, b = reps[rep].get(pr["num"]), reps[rep].get(pr["den"])
                if a is None or b is None or not b[pr["key"]]:
                    continue
                mark = "*" if a.get("disturbed") or b.get("disturbed") else ""
                vals.append((a[pr["key"]] / b[pr["key"]], mark))
            if not vals:
                continue
            text = ", ".join(f"{v:.2f}{m}" for v, m in vals)
            lo, hi = min(v for v, _ in vals), max(v for v, _ in vals)
            line = f"{pr['label']}, per repetition: {text} (min {lo:.2f}, max {hi:.2f})"
            if "aim_max" in pr:
                n_ok = sum(1 for v, _ in vals if v <= pr["aim_max"])
                line += f"; ≤ {pr['aim_max']:.2f} in {n_ok} of {len(vals)}"
            if any(m for _, m in vals):
                line += "; * a disturbed run"
            out.setdefault(case, []).append(line + ".")
    # spec["pair_diffs"]: the same pairing, as differences num - den ({"key", "num", "den",
    # "label", "fmt", optional "aim_max"}), e.g. the CPU a feature adds per request.
    for pd in spec.get("pair_diffs", []):
        by = {}
        for r in recs:
            if r["target"] in (pd["num"], pd["den"]) and r.get("ok", True) and r.get(pd["key"]) is not None:
                by.setdefault(r["case"], {}).setdefault(r.get("rep"), {})[r["target"]] = r
        f = pd.get("fmt", "%+.2f")
        for case, reps in by.items():
            vals = []
            for rep in sorted(k for k in reps if k is not None):
                a, b = reps[rep].get(pd["num"]), reps[rep].get(pd["den"])
                if a is None or b is None:
                    continue
                mark = "*" if a.get("disturbed") or b.get("disturbed") else ""
                vals.append((a[pd["key"]] - b[pd["key"]], mark))
            if not vals:
                continue
            text = ", ".join((f % v) + m for v, m in vals)
            ordered = sorted(v for v, _ in vals)
            median = ordered[len(ordered) // 2] if len(ordered) % 2 else \
                (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2
            line = (f"{pd['label']}, per repetition: {text} (median {f % median}, "
                    f"min {f % ordered[0]}, max {f % ordered[-1]})")
            if "aim_max" in pd:
                n_ok = sum(1 for v, _ in vals if v <= pd["aim_max"])
                line += f"; ≤ {pd['aim_max']:.2f} in {n_ok} of {len(vals)}"
            if any(m for _, m in vals):
                line += "; * a disturbed run"
            out.setdefault(case, []).append(line + ".")
    return out


def render_markdown(spec, meta, cases, targets, summary, skipped=None, pairs=None):
    """skipped: {case: {target: reason}} of targets the run could not measure, in one case or,
    under the case "", in every case; a table shows them as a row of dashes with the reason, a
    placeholder for a later run. pairs: {case: [line]} printed under the case's table
    (pair_ratios)."""
    skipped = skipped or {}
    pairs = pairs or {}
    lines = []
    if spec.get("title"):
        lines.append(f"#### {spec['title']}")
        lines.append("")
    if meta:
        lines.append(meta)
        lines.append("")
    ref = spec.get("ref")

    def ratio_base(case, rk):
        """Median of the reference for one ratio: spec["ref"], or with "better" set ("max" or
        "min"), the best median among spec["ref_among"] (e.g. the better of HAProxy and nginx)."""
        if rk.get("better"):
            vals = [summary[case][t][rk["key"]][0] for t in spec.get("ref_among", [])
                    if summary[case].get(t, {}).get(rk["key"]) is not None]
            if not vals:
                return None
            return max(vals) if rk["better"] == "max" else min(vals)
        base = summary[case].get(rk.get("ref", ref), {}).get(rk["key"])
        return None if base is None else base[0]

    for case in cases:
        if len(cases) > 1 or spec.get("case_headings"):
            lines.append(f"**{case}**")
            lines.append("")
        head = ["target", "runs"]
        for col in spec["columns"]:
            head.append(col["label"] + (" median (min–max)" if col.get("range") else ""))
        for dk in spec.get("diffs", []):
            head.append(dk["label"])
        for rk in spec.get("ratios", []):
            head.append(rk["label"])
        if spec.get("show_disturbed", True):
            head.append("disturbed")
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
        for t in targets:
            e = summary[case].get(t)
            if e is None:
                why = skipped.get(case, {}).get(t) or skipped.get("", {}).get(t)
                if why:
                    row = [TARGET_LABELS.get(t, t), "skipped: " + why] + ["–"] * (len(head) - 2)
                    lines.append("| " + " | ".join(row) + " |")
                continue
            runs = str(e["runs"]) if e["used"] == e["runs"] else f"{e['used']} of {e['runs']}"
            if e["ok"] != e["runs"]:
                runs += f" ({e['runs'] - e['ok']} failed)"
            row = [TARGET_LABELS.get(t, t), runs]
            for col in spec["columns"]:
                v = e.get(col["key"])
                if v is None:
                    row.append("–")
                elif col.get("range") and v[3] > 1:
                    row.append(f"{col['fmt'] % v[0]} ({col['fmt'] % v[1]}–{col['fmt'] % v[2]})")
                else:
                    row.append(col["fmt"] % v[0])
            for dk in spec.get("diffs", []):
                # difference of medians to another target's (e.g. added latency vs direct)
                mine = e.get(dk["key"])
                base = summary[case].get(dk["ref"], {}).get(dk["key"])
                if mine is None or base is None or t == dk["ref"]:
                    row.append("–")
                else:
                    row.append(("%+" + dk["fmt"].lstrip("%")) % (mine[0] - base[0]))
            for rk in spec.get("ratios", []):
                mine = e.get(rk["key"])
                base = ratio_base(case, rk)
                if mine is None or base is None or base == 0:
                    row.append("–")
                else:
                    row.append(f"{mine[0] / base:.2f}×")
            if spec.get("show_disturbed", True):
                row.append(str(e["disturbed"]) + (" †" if e["mixed"] else ""))
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        for line in pairs.get(case, []):
            lines.append(line)
            lines.append("")
    if spec.get("show_disturbed", True):
        lines.append(
            f"*runs*: repetitions the statistics use ('4 of 5': only the undisturbed ones, used when "
            f"every target has at least {spec.get('min_clean', 1)}); *disturbed*: repetitions during "
            f"which other processes used the CPU, even after one repeat; † the statistics include "
            f"disturbed repetitions.")
        lines.append("")
    return "\n".join(lines)


def gnuplot_escape(s):
    return s.replace('"', '\\"')


def render_plot(plot, cases, targets, summary, workdir):
    """Clustered bar chart: one cluster per case, one bar per target, min–max error bars."""
    key = plot["key"]
    shown = [t for t in targets if any(summary[c].get(t, {}).get(key) for c in cases)]
    if not shown or not shutil.which("gnuplot"):
        return None
    dat = os.path.join(workdir, f"plot-{key}.dat")
    with open(dat, "w") as f:
        f.write("# case " + " ".join(f"{t}_median {t}_min {t}_max" for t in shown) + "\n")
        for c in cases:
            cols = []
            for t in shown:
                v = summary[c].get(t, {}).get(key)
                cols += ["NaN"] * 3 if v is None else [f"{v[0]:.6g}", f"{v[1]:.6g}", f"{v[2]:.6g}"]
            label = plot.get("labels", {}).get(c, c)  # short x labels for long case names
            f.write(f'"{gnuplot_escape(label)}" ' + " ".join(cols) + "\n")
    out = plot["out"]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    extra = ["#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
    series = []
    for i, t in enumerate(shown):
        u = f"{2 + 3 * i}:{3 + 3 * i}:{4 + 3 * i}" + (":xtic(1)" if i == 0 else "")
        src = f"'{dat}'" if i == 0 else "''"
        color = TARGET_COLORS.get(t, extra[i % len(extra)])
        series.append(f"{src} using {u} title \"{gnuplot_escape(TARGET_LABELS.get(t, t))}\" lc rgb \"{color}\"")
    script = "\n".join([
        "set terminal pngcairo size 900,500 enhanced font 'DejaVu Sans,11'",
        f"set output '{out}'",
        f"set title \"{gnuplot_escape(plot.get('title', key))}\"",
        f"set ylabel \"{gnuplot_escape(plot.get('ylabel', key))}\"",
        "set style data histograms",
        "set style histogram errorbars gap 1 lw 1.5",
        "set style fill solid 0.85 border -1",
        "set boxwidth 0.9",
        "set yrange [0:*]",
        "set grid ytics",
        "set key outside top center horizontal",
        "set bars 2",
        "plot " + ", \\\n     ".join(series),
        "",
    ])
    gp = os.path.join(workdir, f"plot-{key}.gp")
    with open(gp, "w") as f:
        f.write(script)
    r = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"gnuplot failed for {out}: {r.stderr.strip()}", file=sys.stderr)
        return None
    return out


def cmd_report(args):
    spec = json.loads(args.spec)
    raw = load_records(args.results, args.run_id, args.scenario)
    # A skip or a failed start names a case when it concerns that case alone (`case` = its title).
    skipped = {}
    for r in raw:
        if r.get("event") in ("skipped", "start_failed"):
            reason = r.get("reason", "not run") if r["event"] == "skipped" else "did not start (see the run's log)"
            skipped.setdefault(r.get("case", ""), {})[r["target"]] = reason
    recs = final_records(raw)
    if spec.get("cases"):
        # One table of several: only these cases, in this order.
        recs = sorted((r for r in recs if r["case"] in spec["cases"]), key=lambda r: spec["cases"].index(r["case"]))
    if not recs:
        print(f"report: no records for run {args.run_id} in {args.results}", file=sys.stderr)
        return 1
    cases, targets, summary = summarize(recs, spec)
    md = render_markdown(spec, args.meta, cases, targets, summary, skipped, pair_ratios(spec, recs))
    plots = []
    for plot in spec.get("plots", []):
        p = render_plot(plot, cases, targets, summary, args.workdir)
        if p:
            plots.append(p)
    with open(args.md, "w") as f:
        f.write(md)
    print(md)
    return 0


def cmd_publish(args):
    """Replaces the text between `<!-- bench:NAME:begin -->` and `<!-- bench:NAME:end -->` in
    the document by the contents of the given markdown file."""
    with open(args.doc) as f:
        doc = f.read()
    with open(args.md) as f:
        body = f.read().strip()
    begin, end = f"<!-- bench:{args.name}:begin -->", f"<!-- bench:{args.name}:end -->"
    i, j = doc.find(begin), doc.find(end)
    if i < 0 or j < i:
        print(f"publish: markers for '{args.name}' not found in {args.doc}", file=sys.stderr)
        return 1
    doc = doc[: i + len(begin)] + "\n" + body + "\n" + doc[j:]
    with open(args.doc, "w") as f:
        f.write(doc)
    return 0


def _first_line(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    out = (r.stdout or r.stderr).strip().splitlines()
    return out[0].strip() if out else "unknown"


def cmd_machine(args):
    """Markdown description of the machine and tool versions."""
    cpuinfo = open("/proc/cpuinfo").read()
    model = next((l.split(":", 1)[1].strip() for l in cpuinfo.splitlines() if l.startswith("model name")), "?")
    mhz = next((l.split(":", 1)[1].strip() for l in cpuinfo.splitlines() if l.startswith("cpu MHz")), "?")
    ncpu = cpuinfo.count("processor\t:")
    hyper = "hypervisor" in cpuinfo
    with open("/proc/meminfo") as f:
        mem_kib = next(int(l.split()[1]) for l in f if l.startswith("MemTotal:"))
    u = os.uname()
    distro = "?"
    if os.path.exists("/etc/os-release"):
        for l in open("/etc/os-release"):
            if l.startswith("PRETTY_NAME="):
                distro = l.split("=", 1)[1].strip().strip('"')
    if os.path.exists("/etc/debian_version"):
        distro += f" ({open('/etc/debian_version').read().strip()})"
    sluice = os.environ.get("SLUICE_BIN", "")
    lines = [
        f"- CPU: {model}, {ncpu} logical CPUs at {mhz} MHz" + (" (virtual machine)" if hyper else ""),
        f"- Memory: {mem_kib / 1048576:.1f} GiB",
        f"- Kernel: {u.sysname} {u.release} ({u.machine}); distribution: {distro}",
        f"- Clock ticks: CLK_TCK={CLK_TCK}; RLIMIT_NOFILE hard limit {resource.getrlimit(resource.RLIMIT_NOFILE)[1]}",
        f"- sluice: {_first_line([sluice, 'version']) if sluice and os.path.exists(sluice) else 'not built'}",
        f"- HAProxy: {_first_line(['haproxy', '-v'])}",
        f"- nginx: {_first_line(['nginx', '-v'])}",
        f"- iperf3: {_first_line(['iperf3', '--version'])}",
        f"- wrk: {_first_line(['wrk', '-v'])}",
        f"- gnuplot: {_first_line(['gnuplot', '--version'])}",
        f"- Python: {sys.version.split()[0]}",
    ]
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text, end="")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("freeport")
    p.add_argument("n", type=int, nargs="?", default=1)
    p.set_defaults(func=cmd_freeport)

    for name, fn in (("treecpu", cmd_treecpu), ("treerss", cmd_treerss), ("treefds", cmd_treefds)):
        p = sub.add_parser(name)
        p.add_argument("pid", type=int)
        p.set_defaults(func=fn)

    p = sub.add_parser("quiet")
    p.add_argument("--max-wait", type=float, default=30)
    p.add_argument("--window", type=float, default=1.0)
    p.add_argument("--ignore", type=int, action="append", default=[])
    p.set_defaults(func=cmd_quiet)

    p = sub.add_parser("measure")
    p.add_argument("--out", required=True)
    p.add_argument("--proxy", type=int, default=0)
    p.add_argument("--ignore", type=int, action="append", default=[])
    p.add_argument("--upstream-port", type=int, default=0,
                   help="also count the proxy's established connections to this local port")
    p.add_argument("--backend-status-port", type=int, default=0,
                   help="also count the connections an nginx backend accepted during the run, from "
                        "its stub_status page at http://127.0.0.1:PORT/status")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("iperf-record")
    for a in ("--meas", "--iperf", "--out", "--run-id", "--scenario", "--case", "--target"):
        p.add_argument(a, required=True)
    p.add_argument("--rep", type=int, default=0)
    p.add_argument("--attempt", type=int, default=1)
    p.add_argument("--warmup", action="store_true")
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--duration", type=float, default=0)
    p.add_argument("--proxy-core", type=int, default=1)
    p.add_argument("--load-core", type=int, default=0)
    p.set_defaults(func=cmd_iperf_record)

    p = sub.add_parser("udp-record")
    for a in ("--meas", "--load", "--out", "--run-id", "--scenario", "--case", "--target"):
        p.add_argument(a, required=True)
    p.add_argument("--rep", type=int, required=True)
    p.add_argument("--attempt", type=int, default=1)
    p.add_argument("--warmup", action="store_true")
    p.add_argument("--proxy-core", type=int, required=True)
    p.add_argument("--load-core", type=int, required=True)
    p.set_defaults(func=cmd_udp_record)

    p = sub.add_parser("wrk-record")
    for a in ("--meas", "--wrk", "--out", "--run-id", "--scenario", "--case", "--target"):
        p.add_argument(a, required=True)
    p.add_argument("--rep", type=int, default=0)
    p.add_argument("--attempt", type=int, default=1)
    p.add_argument("--warmup", action="store_true")
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--duration", type=float, default=0)
    p.add_argument("--proxy-core", type=int, default=1)
    p.add_argument("--load-core", type=int, default=0)
    p.add_argument("--floor-s-per-gb", type=float, default=0,
                   help="the crypto floor of the body's cipher: x_floor = proxy CPU-s/GB over it")
    p.set_defaults(func=cmd_wrk_record)

    p = sub.add_parser("h2load-record")
    for a in ("--meas", "--h2load", "--out", "--run-id", "--scenario", "--case", "--target"):
        p.add_argument(a, required=True)
    p.add_argument("--log", default="", help="h2load --log-file output, for latency percentiles")
    p.add_argument("--expect-alpn", default="", help="the application protocol h2load must report (TLS)")
    p.add_argument("--rep", type=int, default=0)
    p.add_argument("--attempt", type=int, default=1)
    p.add_argument("--warmup", action="store_true")
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--proxy-core", type=int, default=1)
    p.add_argument("--load-core", type=int, default=0)
    p.set_defaults(func=cmd_h2load_record)

    p = sub.add_parser("stime-record")
    for a in ("--meas", "--out", "--run-id", "--scenario", "--case", "--target"):
        p.add_argument(a, required=True)
    p.add_argument("--stime", nargs="+", required=True, help="the output files of the s_time clients")
    p.add_argument("--mode", choices=("new", "reuse"), required=True)
    p.add_argument("--rep", type=int, default=0)
    p.add_argument("--attempt", type=int, default=1)
    p.add_argument("--warmup", action="store_true")
    p.add_argument("--duration", type=float, default=0)
    p.add_argument("--proxy-core", type=int, default=1)
    p.add_argument("--load-core", type=int, default=0)
    p.add_argument("--floor-us", type=float, default=0,
                   help="the crypto floor of one handshake: x_floor = proxy CPU µs/handshake over it")
    p.set_defaults(func=cmd_stime_record)

    p = sub.add_parser("speed-record")
    for a in ("--out", "--run-id", "--scenario"):
        p.add_argument(a, required=True)
    p.add_argument("--speed", nargs="+", required=True, help="outputs of `openssl speed -mr`")
    p.add_argument("--core", type=int, default=1)
    p.set_defaults(func=cmd_speed_record)

    p = sub.add_parser("floor-md")
    for a in ("--results", "--run-id", "--scenario", "--md"):
        p.add_argument(a, required=True)
    p.set_defaults(func=cmd_floor_md)

    p = sub.add_parser("record")
    p.add_argument("--out", required=True)
    p.add_argument("kv", nargs="+")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("report")
    p.add_argument("--results", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--scenario", required=True)
    p.add_argument("--spec", required=True)
    p.add_argument("--md", required=True)
    p.add_argument("--meta", default="")
    p.add_argument("--workdir", default="/tmp")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("publish")
    p.add_argument("--doc", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--md", required=True)
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("machine")
    p.add_argument("--out", default="")
    p.set_defaults(func=cmd_machine)

    args = ap.parse_args()
    rc = args.func(args)
    sys.exit(rc or 0)


if __name__ == "__main__":
    main()

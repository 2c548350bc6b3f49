#!/usr/bin/python3
"""udp_cost: what sluice spends per datagram in the udp and stun scenarios, in figures that a
busy machine does not move much: system calls (and context switches) per datagram, counted with
perf's syscall tracepoints, and user-space instructions per datagram, counted with callgrind.

    bench/udp_cost.py [--sluice build/release/sluice] [--seconds 5] [--callgrind | --record DIR]
                      [--cases rr64,stream64,stream1200,stun] [--stream-rate 20000]
                      [--backend auto|epoll|io_uring]

Each case starts sluice alone (one worker, bench/conf/udp_rr, udp_stream or stun with an admin
listener added), bench/lib/udp_load's echo backend and load as bench/scenarios/udp.sh and
stun.sh run them (rr: 200 sockets, a session per request; stream: 4 sockets, 20,000
datagrams/s; stun: 200 sockets), and divides what was counted over the load by the datagrams
sluice moved in that time (sluice_udp_datagrams_total, both directions; STUN: requests
answered plus answers sent, so two per Binding), read from its /metrics before and after.

Without --callgrind: `perf stat` on the process counts its system calls by name, its context
switches and its CPU time (user and kernel, from /proc: noisy on a shared machine, a cross-
check only). With --callgrind: sluice runs under valgrind's callgrind (slowly: the load's
retransmissions and the batches differ from a real run, the same way for a before and an
after; with the epoll event backend, since valgrind does not run io_uring's ring), the
counters are zeroed before the load and dumped after it; the figure is Ir (user-space
instructions, all of sluice's threads) per datagram.

With --record DIR: `perf record -g` (cpu-clock samples) on the process instead of counting,
into DIR/CASE.perf.data, for `perf report --children` (where the kernel's share goes).

Every case also reports, per datagram: sluice's CPU time (all threads, from
/proc/PID/task/*/schedstat: exact, where the user/kernel split of /proc/PID/stat is sampled at
each tick), the loop's wake-ups (sluice_worker_iterations_total) and the readiness reports it
handled (sluice_worker_events_total), the recvmmsg calls that moved a datagram
(sluice_udp_batches_total: the other recvmmsg system calls found the socket empty) and the
share of datagrams sent joined (GSO). --backend picks the event backend (SLUICE_EVENT_BACKEND).
Cases: rr64, stream64, stream1200 (the udp scenario's 1,200-byte stream), stun.

The cores: sluice on core 1, load and echo on core 0 (BENCH_PROXY_CORE, BENCH_LOAD_CORE). It
prints one JSON line per case and a table. It sends only to 127.0.0.1 and ends by itself.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
PROXY_CORE = os.environ.get("BENCH_PROXY_CORE", "1")
LOAD_CORE = os.environ.get("BENCH_LOAD_CORE", "0")

SYSCALLS = ["recvmmsg", "sendmmsg", "recvfrom", "sendto", "recvmsg", "sendmsg", "epoll_wait",
            "epoll_pwait", "epoll_ctl", "io_uring_enter", "socket", "connect", "close",
            "setsockopt", "getsockopt", "read", "write", "clock_gettime"]

CASES = {
    # name: (conf dir, load args after the port, what counts as datagrams)
    "rr64": ("udp_rr", ["rr", None, "200", "64"], "udp"),
    "stream64": ("udp_stream", ["stream", None, "4", "64", "@RATE@"], "udp"),
    "stream1200": ("udp_stream", ["stream", None, "4", "1200", "@RATE@"], "udp"),
    "stun": ("stun", ["stun", None, "200"], "stun"),
}


def free_port(kind=socket.SOCK_DGRAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def metrics(admin):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=30) as r:
        return r.read().decode()


def metric_sum(text, name, label_filter=""):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and label_filter in line and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def moved(text, kind):
    if kind == "udp":
        return metric_sum(text, "sluice_udp_datagrams_total{")
    # STUN: each answer is a request in and a response out.
    return 2 * metric_sum(text, "sluice_stun_responses_total{")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])  # utime, stime


def run_ns(pid):
    """CPU time of all the process's threads in ns (schedstat: exact, where the tick split of
    cpu_ticks is sampled)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def wait_ready(admin, proc, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"sluice exited during startup ({proc.returncode})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("sluice did not become ready")


def render(case, listen, backend, admin, tmp):
    conf_dir = CASES[case][0]
    with open(os.path.join(BENCH, "conf", conf_dir, "sluice.yaml")) as f:
        text = f.read()
    text = text.replace("@LISTEN@", str(listen)).replace("@BACKEND@", str(backend))
    text += f"admin:\n  address: 127.0.0.1:{admin}\n"
    path = os.path.join(tmp, f"{case}.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def parse_perf(path):
    counts = {}
    with open(path) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) < 3 or not parts[0].replace(".", "").isdigit():
                continue
            counts[parts[2]] = float(parts[0])
    return counts


def callgrind_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    raise SystemExit(f"no totals in {path}")


def run_case(case, args, load_bin, tmp):
    _, load_args, kind = CASES[case]
    listen, backend, admin = free_port(), free_port(), free_port(socket.SOCK_STREAM)
    cfg = render(case, listen, backend, admin, tmp)
    echo = None
    if kind == "udp":
        echo = subprocess.Popen(["taskset", "-c", LOAD_CORE, load_bin, "echo", str(backend)])
    cmd = [args.sluice, "run", "-c", cfg]
    out_prefix = os.path.join(tmp, f"callgrind.{case}")
    if args.callgrind:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_prefix}.%p",
               "--dump-instr=no", "--separate-threads=no"] + cmd
    log = open(os.path.join(tmp, f"{case}.log"), "w")
    env = dict(os.environ)
    if args.backend:
        env["SLUICE_EVENT_BACKEND"] = args.backend
    if args.callgrind:
        # valgrind does not run io_uring's ring: the epoll backend, under callgrind only.
        env["SLUICE_EVENT_BACKEND"] = "epoll"
    proc = subprocess.Popen(["taskset", "-c", PROXY_CORE] + cmd, stdout=log, stderr=log,
                            env=env)
    try:
        wait_ready(admin, proc, 120 if args.callgrind else 20)
        before = metrics(admin)
        perf = None
        if args.callgrind:
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True,
                           stdout=subprocess.DEVNULL)
        elif args.record:
            perf_out = os.path.join(args.record, f"{case}.perf.data")
            perf = subprocess.Popen(["perf", "record", "-q", "-g", "-e", "cpu-clock", "-o",
                                     perf_out, "-p", str(proc.pid)])
            time.sleep(0.3)
        else:
            events = ["raw_syscalls:sys_enter", "context-switches"] + [
                f"syscalls:sys_enter_{s}" for s in SYSCALLS]
            perf_out = os.path.join(tmp, f"{case}.perf.csv")
            perf = subprocess.Popen(["perf", "stat", "-x", ",", "-o", perf_out, "-e",
                                     ",".join(events), "-p", str(proc.pid)])
            time.sleep(0.3)
        ticks0 = cpu_ticks(proc.pid)
        ns0 = run_ns(proc.pid)
        la = [a if a is not None else str(listen) for a in load_args] + [str(args.seconds)]
        la = [str(args.stream_rate) if a == "@RATE@" else a for a in la]
        load = subprocess.run(["taskset", "-c", LOAD_CORE, load_bin] + la, capture_output=True,
                              text=True, timeout=args.seconds + 60)
        time.sleep(0.5 if not args.callgrind else 3)  # late answers still in flight
        ticks1 = cpu_ticks(proc.pid)
        ns1 = run_ns(proc.pid)
        if args.callgrind:
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True,
                           stdout=subprocess.DEVNULL)
            time.sleep(1)
        else:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=10)
        after = metrics(admin)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if echo:
            echo.send_signal(signal.SIGTERM)
            echo.wait(timeout=10)
        log.close()
    datagrams = moved(after, kind) - moved(before, kind)
    hz = os.sysconf("SC_CLK_TCK")
    result = {"case": case, "datagrams": int(datagrams),
              "load": json.loads(load.stdout.strip().splitlines()[-1]) if load.stdout else None}
    if datagrams <= 0:
        result["error"] = "no datagram moved"
        return result
    result["user_us_per_datagram"] = round((ticks1[0] - ticks0[0]) / hz * 1e6 / datagrams, 3)
    result["sys_us_per_datagram"] = round((ticks1[1] - ticks0[1]) / hz * 1e6 / datagrams, 3)
    result["cpu_us_per_datagram"] = round((ns1 - ns0) / 1e3 / datagrams, 3)
    # The loop's wake-ups (iterations) and the readiness reports it handled, per datagram;
    # recvmmsg calls that moved a datagram (the rest of the recvmmsg system calls found none).
    for key, name in [("iterations", "sluice_worker_iterations_total"),
                      ("events", "sluice_worker_events_total")]:
        result[f"{key}_per_datagram"] = round(
            (metric_sum(after, name) - metric_sum(before, name)) / datagrams, 4)
    result["recvmmsg_moving_per_datagram"] = round(
        (metric_sum(after, "sluice_udp_batches_total", 'call="recvmmsg"') -
         metric_sum(before, "sluice_udp_batches_total", 'call="recvmmsg"')) / datagrams, 4)
    result["gso_share"] = round(
        (metric_sum(after, "sluice_udp_offload_datagrams_total", 'offload="gso"') -
         metric_sum(before, "sluice_udp_offload_datagrams_total", 'offload="gso"')) / datagrams, 4)
    if args.record:
        result["perf_data"] = os.path.join(args.record, f"{case}.perf.data")
    elif args.callgrind:
        dumps = sorted(f for f in os.listdir(tmp) if f.startswith(f"callgrind.{case}.")
                       and re.search(r"\.\d+$", f))
        # The dump of the -d call is the one numbered .1 (the final dump at exit has none).
        numbered = [f for f in os.listdir(tmp) if re.match(rf"callgrind\.{case}\.\d+\.1$", f)]
        path = os.path.join(tmp, numbered[0] if numbered else dumps[-1])
        result["ir_per_datagram"] = round(callgrind_total(path) / datagrams, 1)
        result["callgrind_file"] = path
    else:
        counts = parse_perf(os.path.join(tmp, f"{case}.perf.csv"))
        per = {}
        for name, value in counts.items():
            if value == 0:
                continue
            short = name.replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter",
                                                                      "all")
            per[short] = round(value / datagrams, 4)
        result["per_datagram"] = per
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sluice", default=os.path.join(ROOT, "build/release/sluice"))
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--callgrind", action="store_true")
    p.add_argument("--stream-rate", type=int, default=20000,
                   help="datagrams/s of the stream case (under callgrind sluice keeps up with "
                        "about 2000: the same wake-ups before and after)")
    p.add_argument("--cases", default="rr64,stream64,stun",
                   help="of " + ", ".join(CASES))
    p.add_argument("--backend", choices=["auto", "epoll", "io_uring"],
                   help="the event backend (SLUICE_EVENT_BACKEND; default: the configuration's, "
                        "auto)")
    p.add_argument("--keep", help="keep the work files in this directory")
    p.add_argument("--record", metavar="DIR",
                   help="instead of counting, sample where sluice's CPU goes (perf record -g, "
                        "cpu-clock) into DIR/CASE.perf.data, for perf report")
    args = p.parse_args()
    for tool in ["taskset", "cc"] + (["valgrind", "callgrind_control"] if args.callgrind
                                     else ["perf"]):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found")
    if args.record:
        os.makedirs(args.record, exist_ok=True)
    tmp = args.keep or tempfile.mkdtemp(prefix="udp_cost.")
    os.makedirs(tmp, exist_ok=True)
    load_bin = os.path.join(tmp, "udp_load")
    subprocess.run(["cc", "-O2", "-Wall", "-o", load_bin,
                    os.path.join(BENCH, "lib", "udp_load.c")], check=True)
    results = []
    for case in args.cases.split(","):
        r = run_case(case, args, load_bin, tmp)
        print(json.dumps(r), flush=True)
        results.append(r)
    for r in results:
        if "error" in r:
            print(f"{r['case']}: {r['error']}")
            continue
        line = f"{r['case']:9} datagrams {r['datagrams']:>8}"
        if "perf_data" in r:
            line += f"  samples in {r['perf_data']}"
        elif "ir_per_datagram" in r:
            line += f"  Ir/datagram {r['ir_per_datagram']:>9.1f}"
        elif "per_datagram" in r:
            per = r["per_datagram"]
            line += (f"  syscalls/datagram {per.get('all', 0):.3f}"
                     f"  cs/datagram {per.get('context-switches', 0):.3f}")
        line += (f"  CPU-us/datagram {r['cpu_us_per_datagram']:.2f}"
                 f" (ticks: user {r['user_us_per_datagram']:.2f}"
                 f" sys {r['sys_us_per_datagram']:.2f})")
        print(line)
        print(f"          wake-ups/datagram {r['iterations_per_datagram']:.3f}"
              f"  events/datagram {r['events_per_datagram']:.3f}"
              f"  recvmmsg that moved datagrams {r['recvmmsg_moving_per_datagram']:.3f}"
              f"  sent joined (GSO) {r['gso_share']:.3f}")
        if "per_datagram" in r:
            detail = {k: v for k, v in r["per_datagram"].items()
                      if k not in ("all", "context-switches")}
            print("          " + "  ".join(f"{k} {v:.3f}" for k, v in sorted(detail.items())))
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

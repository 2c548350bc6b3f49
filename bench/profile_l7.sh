#!/usr/bin/env bash
# Where does sluice's CPU go per HTTP keep-alive request? Runs the l7 setup once (nginx backend
# and wrk on BENCH_LOAD_CORE, sluice alone on BENCH_PROXY_CORE with conf/l7/sluice.yaml) and
# looks at sluice with one of:
#   bench/profile_l7.sh cpu      CPU µs per request (utime+stime of sluice over the wrk run)
#   bench/profile_l7.sh perf     + perf record; prints kernel/user split and the top symbols
#   bench/profile_l7.sh strace   + strace -c; prints the system calls (per request: divide)
#   bench/profile_l7.sh syscalls system calls per request, by call, over exactly
#                                PROFILE_REQUESTS requests (wrk stops itself): counted with
#                                perf's syscall tracepoints (all threads of sluice, little
#                                overhead), or with strace -c -f where perf cannot (slower:
#                                it changes how many requests one loop iteration handles)
#   bench/profile_l7.sh callgrind user-space instructions per request over exactly
#                                PROFILE_REQUESTS requests (default 2000 in this mode; wrk -c16),
#                                sluice under valgrind's callgrind with instrumentation on only
#                                for them; prints the total and the top functions (inclusive
#                                and self). Runs on epoll unless SLUICE_EVENT_BACKEND says
#                                otherwise (valgrind does not follow io_uring's rings)
# Knobs: SLUICE_BIN (build/release/sluice), PROFILE_SECONDS (5), PROFILE_REQUESTS (200000),
#        PROFILE_ACCESS_LOG (0; 1: the JSON access log on, every request, to a file),
#        PROFILE_SYSCALLS_WITH (perf|strace: force one), PROFILE_MALLOC (0; 1: syscalls also
#        counts libc malloc calls, through a uprobe added for the run and removed after it),
#        BENCH_LOAD_CORE (0), BENCH_PROXY_CORE (1), PROFILE_CLOSE (0; 1: every request with
#        Connection: close, a new client connection each: the l7_close case),
#        PROFILE_PERF_GRAPH (unset; 1: perf mode records call graphs; the data stays in
#        bench/results/profile-l7/perf.data), PROFILE_NETNS (0; 1: run everything in a network
#        namespace of its own, as root, and also print the TCP segments sent per request,
#        counted over the measured requests: nothing else on the machine adds to them there).
# Not part of `bench/run`: a diagnostic, not a comparison.
set -euo pipefail
if [ "${PROFILE_NETNS:-0}" = 1 ] && [ -z "${PROFILE_IN_NETNS:-}" ]; then
  # shellcheck disable=SC2016 # expanded by the inner shell
  exec unshare -n env PROFILE_IN_NETNS=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mode=${1:-cpu}
bin=${SLUICE_BIN:-$BENCH_DIR/../build/release/sluice}
seconds=${PROFILE_SECONDS:-5}
dir="$BENCH_RESULTS/profile-l7"
rm -rf "$dir"
mkdir -p "$dir/static"
read -r backend_port listen_port <<<"$(bench_free_ports 2)"
bench_render "$BENCH_DIR/conf/l7/backend.conf" "$dir/backend.conf" LISTEN="$backend_port" DIR="$dir"
bench_render "$BENCH_DIR/conf/l7/sluice.yaml" "$dir/sluice.yaml" LISTEN="$listen_port" BACKEND="$backend_port"
if [ "${PROFILE_ACCESS_LOG:-0}" = 1 ]; then
  sed -i "s|^    protocol: http\$|&\n    access_log: {path: $dir/access.log}|" "$dir/sluice.yaml"
  grep -q 'access_log:' "$dir/sluice.yaml" || bench_die "could not turn the access log on"
fi
bench_start backend "$BENCH_LOAD_CORE" "$dir/backend.log" nginx -p "$dir" -e stderr -c "$dir/backend.conf"
backend_pid=$BENCH_PID
sluice_cmd=("$bin" run -c "$dir/sluice.yaml")
if [ "$mode" = callgrind ]; then
  command -v valgrind >/dev/null || bench_die "valgrind not installed"
  export SLUICE_EVENT_BACKEND=${SLUICE_EVENT_BACKEND:-epoll}
  sluice_cmd=(valgrind -q --tool=callgrind --instr-atstart=no
              --callgrind-out-file="$dir/callgrind.out" "${sluice_cmd[@]}")
fi
bench_start sluice "$BENCH_PROXY_CORE" "$dir/sluice.log" "${sluice_cmd[@]}"
sluice_pid=$BENCH_PID
trap 'bench_stop "$sluice_pid" 5; bench_stop "$backend_pid" 5' EXIT
bench_wait_listen "$backend_port" 10 "$backend_pid" || bench_die "backend did not start"
bench_wait_listen "$listen_port" 60 "$sluice_pid" || bench_die "sluice did not start"
url="http://127.0.0.1:$listen_port/"
wrk_headers=()
if [ "${PROFILE_CLOSE:-0}" = 1 ]; then wrk_headers=(-H "Connection: close"); fi
taskset -c "$BENCH_LOAD_CORE" wrk -t1 -c64 -d1s "${wrk_headers[@]}" "$url" >/dev/null  # warm-up

watcher=""
requests_wanted=${PROFILE_REQUESTS:-200000}
wrk_args=(-t1 -c64 -d"${seconds}s")
case $mode in
  cpu) ;;
  callgrind)
    requests_wanted=${PROFILE_REQUESTS:-2000}
    wrk_args=(-t1 -c16 -d600s -s "$BENCH_DIR/lib/wrk_stop_after.lua")
    export STOP_AFTER=$requests_wanted
    callgrind_control -i on "$sluice_pid" >/dev/null ;;
  syscalls)
    # A fixed number of requests; the time limit only guards against a stuck run.
    wrk_args=(-t1 -c64 -d600s -s "$BENCH_DIR/lib/wrk_stop_after.lua")
    export STOP_AFTER=$requests_wanted
    counter=${PROFILE_SYSCALLS_WITH:-perf}
    if [ "$counter" = perf ] &&
       ! perf stat -e 'raw_syscalls:sys_enter' -o /dev/null -- true 2>/dev/null; then
      bench_log "perf syscall tracepoints unavailable here: counting with strace"
      counter=strace
    fi
    if [ "$counter" = perf ]; then
      # Every thread of sluice (workers, the main thread, the access log writer).
      # The calls a proxy makes on its request path, by name; the rest add up to "(other)".
      # (Enabling every syscall tracepoint at once takes the kernel minutes.)
      events=(-e raw_syscalls:sys_enter)
      available=$(perf list 'syscalls:sys_enter_*' 2>/dev/null)
      for call in read write readv writev recvfrom sendto recvmsg sendmsg recvmmsg sendmmsg \
                  epoll_wait epoll_pwait epoll_pwait2 epoll_ctl io_uring_enter setsockopt \
                  getsockopt futex accept4 connect socket close shutdown ioctl splice \
                  mmap munmap brk madvise mprotect openat fstat newfstatat clock_gettime \
                  gettimeofday getrandom timerfd_settime eventfd2 sched_yield nanosleep; do
        grep -qw "syscalls:sys_enter_$call" <<<"$available" && events+=(-e "syscalls:sys_enter_$call")
      done
      if [ "${PROFILE_MALLOC:-0}" = 1 ]; then
        libc=$(ldd "$bin" | awk '/libc\.so/ {print $3}')
        perf probe -q -x "$libc" --add malloc_calls=malloc 2>/dev/null ||
          bench_die "cannot add a uprobe on malloc in $libc"
        trap 'perf probe -q -d "probe_libc:malloc_calls" 2>/dev/null || true; bench_stop "$sluice_pid" 5; bench_stop "$backend_pid" 5' EXIT
        events+=(-e probe_libc:malloc_calls)
      fi
      perf stat -x, "${events[@]}" -p "$sluice_pid" -o "$dir/syscalls.csv" 2>/dev/null &
    else
      strace -c -f -p "$sluice_pid" -o "$dir/syscalls.strace" 2>/dev/null &
    fi
    watcher=$!
    sleep 0.5 ;;  # attached before the first request
  perf) perf record ${PROFILE_PERF_GRAPH:+-g} -F 2000 -p "$sluice_pid" -o "$dir/perf.data" -- sleep "$seconds" 2>/dev/null &
        watcher=$! ;;
  strace) strace -c -f -p "$sluice_pid" -o "$dir/strace.txt" &
          watcher=$! ;;
  *) bench_die "usage: bench/profile_l7.sh cpu|perf|strace|syscalls|callgrind" ;;
esac
ticks() { awk '{print $14 + $15}' "/proc/$sluice_pid/stat"; }
# TCP segments sent by every socket of the network namespace (/proc/net/snmp, Tcp: OutSegs).
out_segs() { awk '/^Tcp:/ { if (!col) { for (i = 1; i <= NF; i++) if ($i == "OutSegs") col = i } else print $col }' /proc/net/snmp; }
s0=$(out_segs)
t0=$(ticks)
taskset -c "$BENCH_LOAD_CORE" wrk "${wrk_args[@]}" "${wrk_headers[@]}" "$url" >"$dir/wrk.txt"
t1=$(ticks)
s1=$(out_segs)
if [ -n "$watcher" ]; then kill -INT "$watcher" 2>/dev/null || true; wait "$watcher" 2>/dev/null || true; fi
hz=$(getconf CLK_TCK)
if [ "$mode" = callgrind ]; then
  callgrind_control -i off "$sluice_pid" >/dev/null
  callgrind_control -d "$sluice_pid" >/dev/null
fi
if [ "$mode" = syscalls ] || [ "$mode" = callgrind ]; then
  requests=$(awk '/STOPPED_AFTER/ {print $2}' "$dir/wrk.txt")
  [ -n "$requests" ] || bench_die "wrk did not reach $requests_wanted requests: $(cat "$dir/wrk.txt")"
  echo "requests $requests (fixed count)," \
    "sluice CPU $(python3 -c "print(round(($t1 - $t0) / $hz * 1e6 / $requests, 1))") µs per request (under the counter)"
  if [ -n "${PROFILE_IN_NETNS:-}" ]; then
    echo "TCP segments sent in the network namespace (client, sluice, backend): $((s1 - s0))," \
      "$(python3 -c "print(round(($s1 - $s0) / $requests, 2))") per request"
  fi
else
  requests=$(awk '/requests in/ {print $1}' "$dir/wrk.txt")
  echo "requests $requests, $(awk '/Requests\/sec/ {print $2}' "$dir/wrk.txt") req/s," \
    "sluice CPU $(python3 -c "print(round(($t1 - $t0) / $hz * 1e6 / $requests, 1))") µs per request"
fi
case $mode in
  callgrind)
    out=$dir/callgrind.out.1  # the dump after the counted requests (callgrind_control -d)
    callgrind_annotate --inclusive=yes "$out" >"$dir/callgrind.inclusive.txt" 2>/dev/null
    callgrind_annotate "$out" >"$dir/callgrind.self.txt" 2>/dev/null
    total=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}' "$dir/callgrind.self.txt")
    echo "user-space instructions of sluice: $total over $requests requests," \
      "$(python3 -c "print(round($total / $requests))") per request (callgrind, $SLUICE_EVENT_BACKEND)"
    echo "inclusive (all of them: $dir/callgrind.inclusive.txt):"
    grep -E '^ *[0-9,]+ \(' "$dir/callgrind.inclusive.txt" | head -40 | cut -c1-200
    echo "self ($dir/callgrind.self.txt):"
    grep -E '^ *[0-9,]+ \(' "$dir/callgrind.self.txt" | head -40 | cut -c1-200 ;;
  perf) perf report -i "$dir/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep '%' | head -5
        perf report -i "$dir/perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep '%' | head -30 ;;
  strace) cat "$dir/strace.txt" ;;
  syscalls)
    # One row per system call: total calls and calls per request, most frequent first.
    python3 - "$requests" "$dir" <<'PY'
import os, sys
requests, d = int(sys.argv[1]), sys.argv[2]
counts = {}
mallocs = None
if os.path.exists(os.path.join(d, "syscalls.csv")):
    for line in open(os.path.join(d, "syscalls.csv")):
        f = line.strip().split(",")
        if len(f) < 3 or not f[0].strip().isdigit():
            continue
        name = f[2].replace("syscalls:sys_enter_", "")
        if name == "probe_libc:malloc_calls":
            mallocs = int(f[0])
            continue
        counts["(all)" if name == "raw_syscalls:sys_enter" else name] = int(f[0])
    counts["(other)"] = counts.get("(all)", 0) - sum(n for k, n in counts.items() if k != "(all)")
    how = "perf stat syscall tracepoints"
else:
    for line in open(os.path.join(d, "syscalls.strace")):
        f = line.split()
        if len(f) >= 5 and f[3].isdigit():
            counts[f[-1]] = int(f[3])
    counts["(all)"] = sum(counts.values())
    how = "strace -c -f"
print(f"system calls of sluice (all threads) over {requests} requests ({how}):")
print(f"{'syscall':<20} {'calls':>10} {'per request':>12}")
for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
    if n and (name == "(all)" or n / requests >= 0.001):
        print(f"{name:<20} {n:>10} {n / requests:>12.3f}")
if mallocs is not None:
    print(f"{'malloc (libc calls)':<20} {mallocs:>10} {mallocs / requests:>12.3f}")
PY
    ;;
esac

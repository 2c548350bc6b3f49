#!/usr/bin/env bash
# Where does sluice's CPU go per HTTP keep-alive request? Runs the l7 setup once (nginx backend
# and wrk on BENCH_LOAD_CORE, sluice alone on BENCH_PROXY_CORE with conf/l7/sluice.yaml) and
# looks at sluice with one of:
#   bench/profile_l7.sh cpu      CPU µs per request (utime+stime of sluice over the wrk run)
#   bench/profile_l7.sh perf     + perf record; prints kernel/user split and the top symbols
#   bench/profile_l7.sh strace   + strace -c; prints the system calls (per request: divide)
# Knobs: SLUICE_BIN (build/release/sluice), PROFILE_SECONDS (5), BENCH_LOAD_CORE (0),
#        BENCH_PROXY_CORE (1), PROFILE_CLOSE=1 (every request with Connection: close, a new
#        client connection each: the l7_close case). Not part of `bench/run`: a diagnostic, not a comparison.
set -euo pipefail
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
bench_start backend "$BENCH_LOAD_CORE" "$dir/backend.log" nginx -p "$dir" -e stderr -c "$dir/backend.conf"
backend_pid=$BENCH_PID
bench_start sluice "$BENCH_PROXY_CORE" "$dir/sluice.log" "$bin" run -c "$dir/sluice.yaml"
sluice_pid=$BENCH_PID
trap 'bench_stop "$sluice_pid" 5; bench_stop "$backend_pid" 5' EXIT
bench_wait_listen "$backend_port" 10 "$backend_pid" || bench_die "backend did not start"
bench_wait_listen "$listen_port" 10 "$sluice_pid" || bench_die "sluice did not start"
url="http://127.0.0.1:$listen_port/"
wrk_headers=()
if [ "${PROFILE_CLOSE:-0}" = 1 ]; then wrk_headers=(-H "Connection: close"); fi
taskset -c "$BENCH_LOAD_CORE" wrk -t1 -c64 -d1s "${wrk_headers[@]}" "$url" >/dev/null  # warm-up

watcher=""
case $mode in
  cpu) ;;
  perf) perf record -F 2000 -p "$sluice_pid" -o "$dir/perf.data" -- sleep "$seconds" 2>/dev/null &
        watcher=$! ;;
  strace) strace -c -f -p "$sluice_pid" -o "$dir/strace.txt" &
          watcher=$! ;;
  *) bench_die "usage: bench/profile_l7.sh cpu|perf|strace" ;;
esac
ticks() { awk '{print $14 + $15}' "/proc/$sluice_pid/stat"; }
t0=$(ticks)
taskset -c "$BENCH_LOAD_CORE" wrk -t1 -c64 -d"${seconds}s" "${wrk_headers[@]}" "$url" >"$dir/wrk.txt"
t1=$(ticks)
if [ -n "$watcher" ]; then kill -INT "$watcher" 2>/dev/null || true; wait "$watcher" 2>/dev/null || true; fi
requests=$(awk '/requests in/ {print $1}' "$dir/wrk.txt")
hz=$(getconf CLK_TCK)
echo "requests $requests, $(awk '/Requests\/sec/ {print $2}' "$dir/wrk.txt") req/s," \
  "sluice CPU $(python3 -c "print(round(($t1 - $t0) / $hz * 1e6 / $requests, 1))") µs per request"
case $mode in
  perf) perf report -i "$dir/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep '%' | head -5
        perf report -i "$dir/perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep '%' | head -30 ;;
  strace) cat "$dir/strace.txt" ;;
esac

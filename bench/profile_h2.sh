#!/usr/bin/env bash
# Where does a proxy's CPU go per HTTP/2 request? Runs the h2 setup once (nginx backend and
# h2load on BENCH_LOAD_CORE, the proxy alone on BENCH_PROXY_CORE with conf/h2/TARGET.*, or
# conf/h2h2/ and the HTTP/2-only backend for PROFILE_CASE=h2h2) and looks at the proxy with one of:
#   bench/profile_h2.sh cpu      CPU µs per request (utime+stime of its process tree over the h2load run)
#   bench/profile_h2.sh perf     + perf record; prints kernel/user split and the top symbols
#   bench/profile_h2.sh strace   + strace -c; prints the system calls (per request: divide)
# Knobs: PROFILE_TARGET sluice|haproxy|nginx (sluice; no nginx with h2h2), PROFILE_CASE
#        h2c|h2_tls|h2h2 (h2c),
#        PROFILE_REQUESTS (200000), PROFILE_CONNS (64), PROFILE_STREAMS (10),
#        PROFILE_PERF_ARGS ("-F 2000 -g"; e.g. "-F 500 --call-graph dwarf" for callers in a
#        build without frame pointers), SLUICE_BIN (build/release/sluice), BENCH_LOAD_CORE (0),
#        BENCH_PROXY_CORE (1).
#        Not part of `bench/run`: a diagnostic, not a comparison.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mode=${1:-cpu}
case $mode in cpu | perf | strace) ;; *) bench_die "usage: bench/profile_h2.sh cpu|perf|strace" ;; esac
target=${PROFILE_TARGET:-sluice}
requests=${PROFILE_REQUESTS:-200000}
conns=${PROFILE_CONNS:-64}
streams=${PROFILE_STREAMS:-10}
pcase=${PROFILE_CASE:-h2c}
case $pcase in h2c | h2_tls | h2h2) ;; *) bench_die "unknown PROFILE_CASE '$pcase' (h2c h2_tls h2h2)" ;; esac
conf_mode=h2
[ "$pcase" = h2h2 ] && conf_mode=h2h2
dir="$BENCH_RESULTS/profile-h2"
BENCH_LOGDIR=$dir # where target_*_start puts the rendered configs and logs
rm -rf "$dir"
mkdir -p "$dir/static"
declare -F "target_${target}_start" >/dev/null || bench_die "unknown target '$target'"
pki=$("$BENCH_PY" "$BENCH_ROOT/tests/integration/tls_pki.py" --dir "$dir/pki") || bench_die "could not make the test PKI"
pki_file() { "$BENCH_PY" -c 'import json,sys; j=json.load(sys.stdin); print(j["leaf_ecdsa"][sys.argv[1]])' "$1" <<<"$pki"; }
read -r backend_port listen_port tls_port status_port <<<"$(bench_free_ports 4)"
if [ "$conf_mode" = h2h2 ]; then
  bench_render "$BENCH_DIR/conf/h2h2/backend.conf" "$dir/backend.conf" LISTEN="$backend_port" STATUS="$status_port" DIR="$dir"
else
  bench_render "$BENCH_DIR/conf/l7/backend.conf" "$dir/backend.conf" LISTEN="$backend_port" DIR="$dir"
fi
bench_start backend "$BENCH_LOAD_CORE" "$dir/backend.log" nginx -p "$dir" -e stderr -c "$dir/backend.conf"
backend_pid=$BENCH_PID
bench_wait_listen "$backend_port" 10 "$backend_pid" || bench_die "backend did not start"
# TLS as in bench/scenarios/h2.sh
TARGET_RENDER_VARS=(LISTEN_TLS="$tls_port" ECDSA_CHAIN="$(pki_file chain)" ECDSA_KEY="$(pki_file key)"
  ECDSA_COMBINED="$(pki_file combined)" TLS13_SUITES=TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384
  TLS12_CIPHERS=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256 GROUPS=X25519:P-256:P-384)
"target_${target}_start" "$conf_mode" "$listen_port" "$backend_port" || bench_die "$target did not start (see $TARGET_LOG)"
proxy_pid=$TARGET_PID
trap 'bench_stop "$proxy_pid" 5; bench_stop "$backend_pid" 5' EXIT
bench_wait_listen "$listen_port" 10 "$proxy_pid" || bench_die "$target did not start"
[ "$conf_mode" = h2h2 ] || bench_wait_listen "$tls_port" 10 "$proxy_pid" || bench_die "$target did not start its TLS listener"
# The process doing the work: nginx's worker is the master's child.
work_pid=$proxy_pid
child=$(pgrep -P "$proxy_pid" | head -n 1 || true)
[ -n "$child" ] && work_pid=$child
url="http://127.0.0.1:$listen_port/"
[ "$pcase" = h2_tls ] && url="https://127.0.0.1:$tls_port/"
load() { taskset -c "$BENCH_LOAD_CORE" timeout 120 h2load -t1 -c"$conns" -m"$streams" -n"$1" "$url"; }
load 20000 >/dev/null # warm-up: the backend connections are open after it

watcher=""
case $mode in
  # shellcheck disable=SC2086 # PROFILE_PERF_ARGS is a list of options
  perf) perf record ${PROFILE_PERF_ARGS:--F 2000 -g} -p "$work_pid" -o "$dir/perf.data" 2>"$dir/perf.log" &
        watcher=$! ;;
  strace) strace ${PROFILE_STRACE_ARGS:--c} -f -p "$work_pid" -o "$dir/strace.txt" &
          watcher=$! ;;
esac
t0=$(bench_tree_cpu "$proxy_pid")
load "$requests" >"$dir/h2load.txt"
t1=$(bench_tree_cpu "$proxy_pid")
if [ -n "$watcher" ]; then kill -INT "$watcher" 2>/dev/null || true; wait "$watcher" 2>/dev/null || true; fi
done_n=$(sed -n 's/^requests: [0-9]* total, [0-9]* started, \([0-9]*\) done.*/\1/p' "$dir/h2load.txt")
echo "$target $pcase: $done_n requests, $(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$dir/h2load.txt") req/s," \
  "$target CPU $("$BENCH_PY" -c "print(round(($t1 - $t0) * 1e6 / $done_n, 1))") µs per request"
case $mode in
  perf) perf report -i "$dir/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep '%' | head -8
        perf report -i "$dir/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null | grep '%' | head -40 ;;
  strace) cat "$dir/strace.txt" ;;
esac

#!/usr/bin/env bash
# L4 connection rate: wrk -H 'Connection: close' through each L4 (TCP) proxy, 64 concurrent; one TCP
# connection through the proxy (and one to the backend) per request: connections/s, CPU each.
#
# An L4 proxy knows nothing of HTTP: each client connection becomes one backend connection, so
# this measures accept + connect + relay + two closes per request. Same layout and method as l7
# (proxy alone on core 1, wrk and the nginx backend on core 0), with the L4 configs of bench/conf/l4.
# Short runs keep the ephemeral ports in TIME_WAIT well below the range.
#
# Knobs: BENCH_L4_RATE_REPS (5), BENCH_L4_RATE_DURATION seconds per run (2),
#        BENCH_L4_RATE_WARMUP seconds (1), BENCH_L4_RATE_CONNS (64), BENCH_L7_MIN_CLEAN (3).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

: "${BENCH_L4_RATE_REPS:=5}"
: "${BENCH_L4_RATE_DURATION:=2}"
: "${BENCH_L4_RATE_WARMUP:=1}"
: "${BENCH_L4_RATE_CONNS:=64}"
: "${BENCH_L7_MIN_CLEAN:=3}"
SCENARIO=l4_conn_rate
WRK_MODE=l4
WRK_CONNS=$BENCH_L4_RATE_CONNS
WRK_PATH=/
WRK_HEADERS=("Connection: close")
WRK_DURATION=$BENCH_L4_RATE_DURATION
WRK_WARMUP=$BENCH_L4_RATE_WARMUP
WRK_REPS=$BENCH_L4_RATE_REPS
WRK_CASE="new TCP connection per request, $WRK_CONNS concurrent"
# shellcheck source-path=SCRIPTDIR source=../lib/wrk_scenario.sh
source "$BENCH_DIR/lib/wrk_scenario.sh"

wrk_scenario_run

spec=$(cat <<EOF
{"title": "L4 connection rate (wrk with Connection: close through a TCP proxy, ${WRK_DURATION}s runs)",
 "min_clean": $BENCH_L7_MIN_CLEAN,
 "targets": [$(wrk_targets_json)],
 "ref_among": ["haproxy", "nginx"],
 "case_headings": true,
 "columns": [
   {"key": "rps", "label": "connections (= req)/s", "fmt": "%.0f", "range": true},
   {"key": "lat_p50_us", "label": "p50 µs", "fmt": "%.0f"},
   {"key": "lat_p99_us", "label": "p99 µs", "fmt": "%.0f"},
   {"key": "cpu_us_per_req", "label": "proxy CPU µs/connection", "fmt": "%.1f", "range": true},
   {"key": "core_cpu_us_per_req", "label": "core $BENCH_PROXY_CORE CPU µs/connection", "fmt": "%.1f"},
   {"key": "proxy_core_busy_pct", "label": "core $BENCH_PROXY_CORE busy %", "fmt": "%.0f"},
   {"key": "load_core_busy_pct", "label": "core $BENCH_LOAD_CORE busy %", "fmt": "%.0f"}],
 "ratios": [
   {"key": "rps", "label": "conn/s vs best", "better": "max"},
   {"key": "cpu_us_per_req", "label": "CPU/conn vs best", "better": "min"}],
 "plots": [
   {"key": "cpu_us_per_req", "title": "L4 proxy CPU per proxied connection (median, min–max)",
    "ylabel": "CPU µs per connection", "out": "$BENCH_RESULTS/latest-l4_conn_rate-cpu-per-conn.png"}]}
EOF
)
meta="Run \`$BENCH_RUN_ID\`, $WRK_REPS interleaved repetitions of $WRK_DURATION s per target after a $WRK_WARMUP s warm-up; L4 proxy alone on core $BENCH_PROXY_CORE (HAProxy \`mode tcp\`, nginx \`stream\`, sluice \`protocol: tcp\`), \`wrk -t1 -c$WRK_CONNS -H 'Connection: close'\` and the nginx backend on core $BENCH_LOAD_CORE; one TCP connection per request. *vs best*: ratio to the better of HAProxy and nginx. Versions: $(wrk_versions)."
wrk_scenario_report "$spec" "$meta"

#!/usr/bin/env bash
# L7 HTTP/1.1 keep-alive: wrk, 64 connections, ~100-byte responses; req/s, latency, CPU/request.
#
# wrk (-t1 -c64, keep-alive) and the nginx backend share BENCH_LOAD_CORE (0); the proxy runs alone
# on BENCH_PROXY_CORE (1) with one worker/thread. Interleaved repetitions after a warm-up, as l4.
#
# Knobs: BENCH_L7_REPS (5), BENCH_L7_DURATION seconds per run (3), BENCH_L7_WARMUP seconds (1),
#        BENCH_L7_CONNS (64), BENCH_L7_MIN_CLEAN (3), BENCH_QUIET_RUN_WAIT (10).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

: "${BENCH_L7_REPS:=5}"
: "${BENCH_L7_DURATION:=3}"
: "${BENCH_L7_WARMUP:=1}"
: "${BENCH_L7_CONNS:=64}"
: "${BENCH_L7_MIN_CLEAN:=3}"
SCENARIO=l7
WRK_CONNS=$BENCH_L7_CONNS
WRK_PATH=/
WRK_HEADERS=()
WRK_DURATION=$BENCH_L7_DURATION
WRK_WARMUP=$BENCH_L7_WARMUP
WRK_REPS=$BENCH_L7_REPS
WRK_CASE="$WRK_CONNS keep-alive connections, 100-byte responses"
# shellcheck source-path=SCRIPTDIR source=../lib/wrk_scenario.sh
source "$BENCH_DIR/lib/wrk_scenario.sh"

wrk_scenario_run

spec=$(cat <<EOF
{"title": "L7 HTTP/1.1 keep-alive, small responses (wrk, ${WRK_DURATION}s runs)",
 "min_clean": $BENCH_L7_MIN_CLEAN,
 "targets": [$(wrk_targets_json)],
 "ref_among": ["haproxy", "nginx"],
 "case_headings": true,
 "columns": [
   {"key": "rps", "label": "req/s", "fmt": "%.0f", "range": true},
   {"key": "lat_p50_us", "label": "p50 µs", "fmt": "%.0f"},
   {"key": "lat_p99_us", "label": "p99 µs", "fmt": "%.0f"},
   {"key": "cpu_s_per_100k", "label": "proxy CPU-s/100k req", "fmt": "%.2f", "range": true},
   {"key": "core_cpu_s_per_100k", "label": "core $BENCH_PROXY_CORE CPU-s/100k req", "fmt": "%.2f"},
   {"key": "proxy_core_busy_pct", "label": "core $BENCH_PROXY_CORE busy %", "fmt": "%.0f"},
   {"key": "load_core_busy_pct", "label": "core $BENCH_LOAD_CORE busy %", "fmt": "%.0f"}],
 "ratios": [
   {"key": "rps", "label": "req/s vs best", "better": "max"},
   {"key": "cpu_s_per_100k", "label": "CPU/req vs best", "better": "min"}],
 "plots": [
   {"key": "rps", "title": "HTTP/1.1 keep-alive, $WRK_CONNS connections, 100-byte responses (median, min–max)",
    "ylabel": "requests per second", "out": "$BENCH_RESULTS/latest-l7-rps.png"},
   {"key": "cpu_s_per_100k", "title": "Proxy CPU per 100k requests, $WRK_CONNS connections (median, min–max)",
    "ylabel": "CPU-seconds per 100,000 requests", "out": "$BENCH_RESULTS/latest-l7-cpu-per-100k.png"}]}
EOF
)
meta="Run \`$BENCH_RUN_ID\`, $WRK_REPS interleaved repetitions of $WRK_DURATION s per target after a $WRK_WARMUP s warm-up; proxy alone on core $BENCH_PROXY_CORE, \`wrk -t1 -c$WRK_CONNS\` and the nginx backend on core $BENCH_LOAD_CORE. *vs best*: ratio to the better of HAProxy and nginx (higher req/s, lower CPU). Versions: $(wrk_versions)."
wrk_scenario_report "$spec" "$meta"

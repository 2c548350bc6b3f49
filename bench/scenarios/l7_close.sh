#!/usr/bin/env bash
# L7 without keep-alive: wrk -H 'Connection: close', 64 connections; new connections/s, CPU each.
#
# Every request opens a new client connection (the proxy closes it after the response); the
# proxies keep their backend connections alive. Same layout and method as l7.
#
# Knobs: BENCH_L7_CLOSE_REPS (5), BENCH_L7_CLOSE_DURATION seconds per run (3),
#        BENCH_L7_CLOSE_WARMUP seconds (1), BENCH_L7_CLOSE_CONNS (64), BENCH_L7_MIN_CLEAN (3).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

: "${BENCH_L7_CLOSE_REPS:=5}"
: "${BENCH_L7_CLOSE_DURATION:=3}"
: "${BENCH_L7_CLOSE_WARMUP:=1}"
: "${BENCH_L7_CLOSE_CONNS:=64}"
: "${BENCH_L7_MIN_CLEAN:=3}"
SCENARIO=l7_close
WRK_CONNS=$BENCH_L7_CLOSE_CONNS
WRK_PATH=/
WRK_HEADERS=("Connection: close")
WRK_DURATION=$BENCH_L7_CLOSE_DURATION
WRK_WARMUP=$BENCH_L7_CLOSE_WARMUP
WRK_REPS=$BENCH_L7_CLOSE_REPS
WRK_CASE="Connection: close, $WRK_CONNS concurrent, 100-byte responses"
# shellcheck source-path=SCRIPTDIR source=../lib/wrk_scenario.sh
source "$BENCH_DIR/lib/wrk_scenario.sh"

wrk_scenario_run

spec=$(cat <<EOF
{"title": "L7 HTTP/1.1 with Connection: close (wrk, ${WRK_DURATION}s runs)",
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
 "pair_ratios": [
   {"key": "cpu_us_per_req", "num": "sluice", "den": "haproxy", "aim_max": 0.8,
    "label": "sluice ÷ HAProxy proxy CPU per connection"},
   {"key": "cpu_us_per_req", "num": "sluice", "den": "nginx", "aim_max": 0.8,
    "label": "sluice ÷ nginx proxy CPU per connection"}],
 "plots": [
   {"key": "cpu_us_per_req", "title": "Proxy CPU per new client connection (one request each; median, min–max)",
    "ylabel": "CPU µs per connection", "out": "$BENCH_RESULTS/latest-l7_close-cpu-per-conn.png"}]}
EOF
)
meta="Run \`$BENCH_RUN_ID\`, $WRK_REPS interleaved repetitions of $WRK_DURATION s per target after a $WRK_WARMUP s warm-up; proxy alone on core $BENCH_PROXY_CORE, \`wrk -t1 -c$WRK_CONNS -H 'Connection: close'\` and the nginx backend on core $BENCH_LOAD_CORE; one request per client connection. *vs best*: ratio to the better of HAProxy and nginx. Versions: $(wrk_versions)."
wrk_scenario_report "$spec" "$meta"

#!/usr/bin/env bash
# What the JSON access log costs: HTTP/1.1 keep-alive as in l7 (wrk, 64 connections, ~100-byte
# responses), each proxy with its access log off and on (every request logged to a file):
# sluice and sluice_log, nginx and nginx_log (a log_format with the fields of sluice's line that
# nginx has, escape=json, written unbuffered as nginx does by default). Reports the extra proxy
# CPU per logged request within each repetition (log-on minus log-off of the same proxy, both
# measured in the same interleaved round).
#
# Knobs: BENCH_L7_LOG_REPS (5), BENCH_L7_LOG_DURATION seconds per run (3), BENCH_L7_LOG_WARMUP (1),
#        BENCH_L7_LOG_MIN_CLEAN (3), BENCH_QUIET_RUN_WAIT (10).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

: "${BENCH_L7_LOG_REPS:=5}"
: "${BENCH_L7_LOG_DURATION:=3}"
: "${BENCH_L7_LOG_WARMUP:=1}"
: "${BENCH_L7_LOG_MIN_CLEAN:=3}"
SCENARIO=l7_log
WRK_MODE=l7_log
WRK_DEFAULT_TARGETS="sluice sluice_log nginx nginx_log"
WRK_CONNS=64
WRK_PATH=/
WRK_HEADERS=()
WRK_DURATION=$BENCH_L7_LOG_DURATION
WRK_WARMUP=$BENCH_L7_LOG_WARMUP
WRK_REPS=$BENCH_L7_LOG_REPS
WRK_CASE="$WRK_CONNS keep-alive connections, 100-byte responses, access log off and on"
# shellcheck source-path=SCRIPTDIR source=../lib/wrk_scenario.sh
source "$BENCH_DIR/lib/wrk_scenario.sh"

wrk_scenario_run

spec=$(cat <<EOF
{"title": "Access log cost: L7 HTTP/1.1 keep-alive, small responses, log off and on (wrk, ${WRK_DURATION}s runs)",
 "min_clean": $BENCH_L7_LOG_MIN_CLEAN,
 "targets": [$(wrk_targets_json)],
 "case_headings": true,
 "columns": [
   {"key": "rps", "label": "req/s", "fmt": "%.0f", "range": true},
   {"key": "cpu_us_per_req", "label": "proxy CPU µs/req", "fmt": "%.2f", "range": true},
   {"key": "lat_p99_us", "label": "p99 µs", "fmt": "%.0f"},
   {"key": "proxy_core_busy_pct", "label": "core $BENCH_PROXY_CORE busy %", "fmt": "%.0f"},
   {"key": "load_core_busy_pct", "label": "core $BENCH_LOAD_CORE busy %", "fmt": "%.0f"}],
 "pair_diffs": [
   {"key": "cpu_us_per_req", "num": "sluice_log", "den": "sluice", "fmt": "%+.2f", "aim_max": 2.0,
    "label": "sluice: CPU µs added per logged request (log on − off)"},
   {"key": "cpu_us_per_req", "num": "nginx_log", "den": "nginx", "fmt": "%+.2f",
    "label": "nginx: CPU µs added per logged request (log on − off)"}],
 "pair_ratios": [
   {"key": "cpu_us_per_req", "num": "sluice_log", "den": "sluice", "label": "sluice log on ÷ off, CPU per request"},
   {"key": "cpu_us_per_req", "num": "nginx_log", "den": "nginx", "label": "nginx log on ÷ off, CPU per request"}],
 "plots": [
   {"key": "cpu_us_per_req", "title": "Proxy CPU per request, access log off and on (median, min–max)",
    "ylabel": "CPU µs per request", "out": "$BENCH_RESULTS/latest-l7_log-cpu-per-req.png"}]}
EOF
)
meta="Run \`$BENCH_RUN_ID\`, $WRK_REPS interleaved repetitions of $WRK_DURATION s per target after a $WRK_WARMUP s warm-up; proxy alone on core $BENCH_PROXY_CORE, \`wrk -t1 -c$WRK_CONNS\` and the nginx backend on core $BENCH_LOAD_CORE. The machine is shared with other work: compare the two targets of one proxy within a repetition (the per-repetition differences below), not absolute figures across runs. Versions: $(wrk_versions)."
wrk_scenario_report "$spec" "$meta"

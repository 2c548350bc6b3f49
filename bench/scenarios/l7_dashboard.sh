#!/usr/bin/env bash
# What an open dashboard costs: HTTP/1.1 keep-alive as in l7 (wrk, 64 connections, ~100-byte
# responses) through sluice with its dashboard closed (sluice) and open: sluice_dash, the
# same binary with lib/dashboard_poller.py asking for GET /dashboard/data once a second (the
# page polling), and sluice_events, with one GET /dashboard/events stream open (the page
# following the event stream, one frame a second); HAProxy and nginx as in l7 for reference.
# Reports the ratio of sluice's CPU per request page open to page closed within each
# repetition, for either way (aim: at most 1.02). A dashboard client that stops (sluice
# answered something else than the page expects) stops the benchmark.
#
# Knobs: BENCH_L7_DASHBOARD_REPS (5), BENCH_L7_DASHBOARD_DURATION seconds per run (5),
#        BENCH_L7_DASHBOARD_WARMUP (1), BENCH_L7_DASHBOARD_MIN_CLEAN (3), BENCH_QUIET_RUN_WAIT.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

: "${BENCH_L7_DASHBOARD_REPS:=5}"
: "${BENCH_L7_DASHBOARD_DURATION:=5}"
: "${BENCH_L7_DASHBOARD_WARMUP:=1}"
: "${BENCH_L7_DASHBOARD_MIN_CLEAN:=3}"
SCENARIO=l7_dashboard
WRK_MODE=l7_dashboard
WRK_DEFAULT_TARGETS="sluice sluice_dash sluice_events haproxy nginx"
WRK_CONNS=64
WRK_PATH=/
WRK_HEADERS=()
WRK_DURATION=$BENCH_L7_DASHBOARD_DURATION
WRK_WARMUP=$BENCH_L7_DASHBOARD_WARMUP
WRK_REPS=$BENCH_L7_DASHBOARD_REPS
WRK_CASE="$WRK_CONNS keep-alive connections, 100-byte responses, dashboard closed and open"
# shellcheck source-path=SCRIPTDIR source=../lib/wrk_scenario.sh
source "$BENCH_DIR/lib/wrk_scenario.sh"

wrk_scenario_run

spec=$(cat <<EOF
{"title": "Dashboard cost: L7 HTTP/1.1 keep-alive, small responses, page closed and open (wrk, ${WRK_DURATION}s runs)",
 "min_clean": $BENCH_L7_DASHBOARD_MIN_CLEAN,
 "targets": [$(wrk_targets_json)],
 "case_headings": true,
 "columns": [
   {"key": "rps", "label": "req/s", "fmt": "%.0f", "range": true},
   {"key": "cpu_us_per_req", "label": "proxy CPU µs/req", "fmt": "%.2f", "range": true},
   {"key": "lat_p99_us", "label": "p99 µs", "fmt": "%.0f"},
   {"key": "proxy_core_busy_pct", "label": "core $BENCH_PROXY_CORE busy %", "fmt": "%.0f"},
   {"key": "load_core_busy_pct", "label": "core $BENCH_LOAD_CORE busy %", "fmt": "%.0f"}],
 "pair_ratios": [
   {"key": "cpu_us_per_req", "num": "sluice_dash", "den": "sluice", "aim_max": 1.02,
    "label": "sluice dashboard open (polling) ÷ closed, CPU per request"},
   {"key": "cpu_us_per_req", "num": "sluice_events", "den": "sluice", "aim_max": 1.02,
    "label": "sluice dashboard open (event stream) ÷ closed, CPU per request"}],
 "plots": [
   {"key": "cpu_us_per_req", "title": "Proxy CPU per request, dashboard closed and open (median, min–max)",
    "ylabel": "CPU µs per request", "out": "$BENCH_RESULTS/latest-l7_dashboard-cpu-per-req.png"}]}
EOF
)
meta="Run \`$BENCH_RUN_ID\`, $WRK_REPS interleaved repetitions of $WRK_DURATION s per target after a $WRK_WARMUP s warm-up; proxy alone on core $BENCH_PROXY_CORE, \`wrk -t1 -c$WRK_CONNS\`, the nginx backend and the dashboard clients on core $BENCH_LOAD_CORE. The machine is shared with other work: compare sluice's two targets within a repetition (the per-repetition ratios below), not absolute figures across runs. Versions: $(wrk_versions)."
wrk_scenario_report "$spec" "$meta"

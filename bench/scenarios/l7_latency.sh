#!/usr/bin/env bash
# L7 added latency: one keep-alive connection, proxy, wrk and backend all on one core.
#
# One wrk connection sends requests back to back (~100-byte responses); the latency percentiles
# through each proxy minus those of the direct path are the latency the proxy adds. Everything
# (proxy, wrk, nginx backend) is pinned to BENCH_LOAD_CORE (0), so that the figure is the
# proxy's own processing time and not the cost of waking another core for every hop.
#
# Knobs: BENCH_L7_LAT_REPS (5), BENCH_L7_LAT_DURATION seconds per run (3),
#        BENCH_L7_LAT_WARMUP seconds (1), BENCH_L7_MIN_CLEAN (3).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
BENCH_PROXY_CORE=$BENCH_LOAD_CORE

: "${BENCH_L7_LAT_REPS:=5}"
: "${BENCH_L7_LAT_DURATION:=3}"
: "${BENCH_L7_LAT_WARMUP:=1}"
: "${BENCH_L7_MIN_CLEAN:=3}"
SCENARIO=l7_latency
WRK_CONNS=1
WRK_PATH=/
WRK_HEADERS=()
WRK_DURATION=$BENCH_L7_LAT_DURATION
WRK_WARMUP=$BENCH_L7_LAT_WARMUP
WRK_REPS=$BENCH_L7_LAT_REPS
WRK_CASE="1 keep-alive connection, 100-byte responses, all on core $BENCH_LOAD_CORE"
# shellcheck source-path=SCRIPTDIR source=../lib/wrk_scenario.sh
source "$BENCH_DIR/lib/wrk_scenario.sh"

wrk_scenario_run

spec=$(cat <<EOF
{"title": "L7 added latency, one connection (wrk, ${WRK_DURATION}s runs)",
 "min_clean": $BENCH_L7_MIN_CLEAN,
 "targets": [$(wrk_targets_json)],
 "case_headings": true,
 "columns": [
   {"key": "lat_p50_us", "label": "p50 µs", "fmt": "%.0f", "range": true},
   {"key": "lat_p99_us", "label": "p99 µs", "fmt": "%.0f", "range": true},
   {"key": "rps", "label": "req/s", "fmt": "%.0f"},
   {"key": "cpu_us_per_req", "label": "proxy CPU µs/req", "fmt": "%.1f"},
   {"key": "load_core_busy_pct", "label": "core $BENCH_LOAD_CORE busy %", "fmt": "%.0f"}],
 "diffs": [
   {"key": "lat_p50_us", "label": "added p50 µs", "ref": "direct", "fmt": "%.0f"},
   {"key": "lat_p99_us", "label": "added p99 µs", "ref": "direct", "fmt": "%.0f"}],
 "plots": [
   {"key": "lat_p50_us", "title": "Median latency, one connection, everything on one core (median, min–max)",
    "ylabel": "p50 latency (µs)", "out": "$BENCH_RESULTS/latest-l7_latency-p50.png"}]}
EOF
)
meta="Run \`$BENCH_RUN_ID\`, $WRK_REPS interleaved repetitions of $WRK_DURATION s per target after a $WRK_WARMUP s warm-up; proxy, \`wrk -t1 -c1\` and the nginx backend all on core $BENCH_LOAD_CORE. *added*: difference of the medians to the direct path. wrk records latency in whole microseconds. Versions: $(wrk_versions)."
wrk_scenario_report "$spec" "$meta"

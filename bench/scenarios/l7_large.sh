#!/usr/bin/env bash
# L7 HTTP/1.1 keep-alive, 1 MiB responses: wrk, 16 connections; req/s, Gbit/s, CPU per GB.
#
# Same layout and method as l7 (proxy alone on BENCH_PROXY_CORE, wrk and the nginx backend on
# BENCH_LOAD_CORE, interleaved repetitions after a warm-up); the backend serves a 1 MiB file.
#
# Knobs: BENCH_L7_LARGE_REPS (5), BENCH_L7_LARGE_DURATION seconds per run (3),
#        BENCH_L7_LARGE_WARMUP seconds (1), BENCH_L7_LARGE_CONNS (16), BENCH_L7_MIN_CLEAN (3).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

: "${BENCH_L7_LARGE_REPS:=5}"
: "${BENCH_L7_LARGE_DURATION:=3}"
: "${BENCH_L7_LARGE_WARMUP:=1}"
: "${BENCH_L7_LARGE_CONNS:=16}"
: "${BENCH_L7_MIN_CLEAN:=3}"
SCENARIO=l7_large
WRK_CONNS=$BENCH_L7_LARGE_CONNS
WRK_PATH=/static/1mib.bin
WRK_HEADERS=()
WRK_DURATION=$BENCH_L7_LARGE_DURATION
WRK_WARMUP=$BENCH_L7_LARGE_WARMUP
WRK_REPS=$BENCH_L7_LARGE_REPS
WRK_CASE="$WRK_CONNS keep-alive connections, 1 MiB responses"
# shellcheck source-path=SCRIPTDIR source=../lib/wrk_scenario.sh
source "$BENCH_DIR/lib/wrk_scenario.sh"

wrk_scenario_run

spec=$(cat <<EOF
{"title": "L7 HTTP/1.1 keep-alive, 1 MiB responses (wrk, ${WRK_DURATION}s runs)",
 "min_clean": $BENCH_L7_MIN_CLEAN,
 "targets": [$(wrk_targets_json)],
 "ref_among": ["haproxy", "nginx"],
 "case_headings": true,
 "columns": [
   {"key": "rps", "label": "req/s", "fmt": "%.0f", "range": true},
   {"key": "gbps", "label": "Gbit/s", "fmt": "%.2f", "range": true},
   {"key": "lat_p50_us", "label": "p50 µs", "fmt": "%.0f"},
   {"key": "cpu_s_per_gb", "label": "proxy CPU-s/GB", "fmt": "%.3f", "range": true},
   {"key": "core_cpu_s_per_gb", "label": "core $BENCH_PROXY_CORE CPU-s/GB", "fmt": "%.3f"},
   {"key": "proxy_core_busy_pct", "label": "core $BENCH_PROXY_CORE busy %", "fmt": "%.0f"},
   {"key": "load_core_busy_pct", "label": "core $BENCH_LOAD_CORE busy %", "fmt": "%.0f"}],
 "ratios": [
   {"key": "gbps", "label": "Gbit/s vs best", "better": "max"},
   {"key": "cpu_s_per_gb", "label": "CPU/GB vs best", "better": "min"}],
 "plots": [
   {"key": "gbps", "title": "HTTP/1.1, 1 MiB responses, $WRK_CONNS connections (median, min–max)",
    "ylabel": "Gbit/s of responses (wrk)", "out": "$BENCH_RESULTS/latest-l7_large-throughput.png"},
   {"key": "cpu_s_per_gb", "title": "Proxy CPU per GB of 1 MiB responses (median, min–max)",
    "ylabel": "CPU-seconds per GB", "out": "$BENCH_RESULTS/latest-l7_large-cpu-per-gb.png"}]}
EOF
)
meta="Run \`$BENCH_RUN_ID\`, $WRK_REPS interleaved repetitions of $WRK_DURATION s per target after a $WRK_WARMUP s warm-up; proxy alone on core $BENCH_PROXY_CORE, \`wrk -t1 -c$WRK_CONNS\` and the nginx backend (static file, sendfile) on core $BENCH_LOAD_CORE. Gbit/s counts everything wrk read (headers and bodies). *vs best*: ratio to the better of HAProxy and nginx. Versions: $(wrk_versions)."
wrk_scenario_report "$spec" "$meta"

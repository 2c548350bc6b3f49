#!/usr/bin/env bash
# L7 HTTP/1.1 keep-alive uploads: wrk POSTs a 256 KiB body per request over 16 connections;
# the backend reads it and answers ~100 bytes. Req/s and CPU per request (and per GB uploaded).
#
# Same layout and method as l7 (proxy alone on BENCH_PROXY_CORE, wrk and the nginx backend on
# BENCH_LOAD_CORE, interleaved repetitions after a warm-up). Every proxy streams the body to
# the backend as it arrives (nginx with proxy_request_buffering off, as HAProxy and sluice do
# by default), so none of them writes it to a temporary file.
#
# Knobs: BENCH_L7_UPLOAD_REPS (5), BENCH_L7_UPLOAD_DURATION seconds per run (3),
#        BENCH_L7_UPLOAD_WARMUP seconds (1), BENCH_L7_UPLOAD_CONNS (16),
#        BENCH_L7_UPLOAD_BYTES (262144), BENCH_L7_MIN_CLEAN (3).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

: "${BENCH_L7_UPLOAD_REPS:=5}"
: "${BENCH_L7_UPLOAD_DURATION:=3}"
: "${BENCH_L7_UPLOAD_WARMUP:=1}"
: "${BENCH_L7_UPLOAD_CONNS:=16}"
: "${BENCH_L7_UPLOAD_BYTES:=262144}"
: "${BENCH_L7_MIN_CLEAN:=3}"
SCENARIO=l7_upload
WRK_CONNS=$BENCH_L7_UPLOAD_CONNS
WRK_PATH=/upload
WRK_HEADERS=()
WRK_DURATION=$BENCH_L7_UPLOAD_DURATION
WRK_WARMUP=$BENCH_L7_UPLOAD_WARMUP
WRK_REPS=$BENCH_L7_UPLOAD_REPS
kib=$((BENCH_L7_UPLOAD_BYTES / 1024))
WRK_CASE="$WRK_CONNS keep-alive connections, $kib KiB request bodies"
# shellcheck source-path=SCRIPTDIR source=../lib/wrk_scenario.sh
source "$BENCH_DIR/lib/wrk_scenario.sh"
# The request: a POST with the body, then the shared end-of-run report.
mkdir -p "$BENCH_LOGDIR"
WRK_LUA="$BENCH_LOGDIR/upload.lua"
cat >"$WRK_LUA" <<LUA
wrk.method = "POST"
wrk.body = string.rep("u", $BENCH_L7_UPLOAD_BYTES)
wrk.headers["Content-Type"] = "application/octet-stream"
dofile("$BENCH_DIR/lib/wrk_report.lua")
LUA

wrk_scenario_run

gb_per_req=$(awk -v b="$BENCH_L7_UPLOAD_BYTES" 'BEGIN { printf "%.9f", b / 1e9 }')
spec=$(cat <<EOF
{"title": "L7 HTTP/1.1 keep-alive uploads, $kib KiB request bodies (wrk, ${WRK_DURATION}s runs)",
 "min_clean": $BENCH_L7_MIN_CLEAN,
 "targets": [$(wrk_targets_json)],
 "ref_among": ["haproxy", "nginx"],
 "case_headings": true,
 "columns": [
   {"key": "rps", "label": "req/s", "fmt": "%.0f", "range": true},
   {"key": "lat_p50_us", "label": "p50 µs", "fmt": "%.0f"},
   {"key": "cpu_us_per_req", "label": "proxy CPU µs/request", "fmt": "%.1f", "range": true},
   {"key": "core_cpu_us_per_req", "label": "core $BENCH_PROXY_CORE CPU µs/request", "fmt": "%.1f"},
   {"key": "proxy_core_busy_pct", "label": "core $BENCH_PROXY_CORE busy %", "fmt": "%.0f"},
   {"key": "load_core_busy_pct", "label": "core $BENCH_LOAD_CORE busy %", "fmt": "%.0f"}],
 "ratios": [
   {"key": "rps", "label": "req/s vs best", "better": "max"},
   {"key": "cpu_us_per_req", "label": "CPU/request vs best", "better": "min"}],
 "plots": [
   {"key": "cpu_us_per_req", "title": "Proxy CPU per $kib KiB upload (median, min–max)",
    "ylabel": "CPU µs per request", "out": "$BENCH_RESULTS/latest-l7_upload-cpu-per-req.png"}]}
EOF
)
meta="Run \`$BENCH_RUN_ID\`, $WRK_REPS interleaved repetitions of $WRK_DURATION s per target after a $WRK_WARMUP s warm-up; proxy alone on core $BENCH_PROXY_CORE, \`wrk -t1 -c$WRK_CONNS\` POSTing $BENCH_L7_UPLOAD_BYTES-byte bodies and the nginx backend (reads and discards them, answers ~100 bytes) on core $BENCH_LOAD_CORE. CPU per GB uploaded = CPU µs per request / ($gb_per_req × 10⁶). *vs best*: ratio to the better of HAProxy and nginx. Versions: $(wrk_versions)."
wrk_scenario_report "$spec" "$meta"

#!/usr/bin/env bash
# UDP proxy: request/response (DNS-like, many sessions) and streaming datagrams, sluice vs nginx.
#
# HAProxy has no UDP proxy, so it is not a target here. The load generator and the echo backend
# are bench/lib/udp_load.c (recvmmsg / sendmmsg), built into the run's log directory.
#
# Cases (each a fresh configuration pair, conf/udp_rr/ and conf/udp_stream/):
#   rr 64 B, rr 1200 B      BENCH_UDP_SESSIONS client sockets (200), one request outstanding
#                           each; a session per request that ends with its answer (sluice
#                           max_responses: 1, nginx proxy_responses 1), as DNS does
#   stream 64 B, 1200 B     BENCH_UDP_STREAMS sockets (4) sending BENCH_UDP_RATE datagrams/s
#                           (20000) in all, paced each millisecond, echoed back; one session per
#                           socket for the whole run
# Measured per run: answers/s, losses (rr: unanswered after 200 ms; stream: not back 300 ms after
# the end), round trip p50/p99, and the proxy's CPU per datagram relayed (its CPU time over twice
# the answers: each answer is two datagrams through the proxy).
#
# Layout as l4: the proxy alone on BENCH_PROXY_CORE with one worker; udp_load and the echo
# backend on BENCH_LOAD_CORE; repetitions interleaved (rotated target order) after a warm-up.
#
# Knobs: BENCH_UDP_REPS (5), BENCH_UDP_DURATION seconds (5), BENCH_UDP_WARMUP seconds (2),
#        BENCH_UDP_SESSIONS (200), BENCH_UDP_STREAMS (4), BENCH_UDP_RATE (20000),
#        BENCH_UDP_SIZES ("64 1200"), BENCH_UDP_CASES ("rr stream"), BENCH_QUIET_RUN_WAIT (10),
#        BENCH_UDP_MIN_CLEAN (3). QUICK=1: one 2-second repetition per case, no warm-up, no
#        waiting for a quiet machine (a smoke test of the script, not a measurement).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

if [ "${QUICK:-0}" = 1 ]; then
  : "${BENCH_UDP_REPS:=1}" "${BENCH_UDP_DURATION:=2}" "${BENCH_UDP_WARMUP:=0}"
  : "${BENCH_QUIET_RUN_WAIT:=0}" "${BENCH_UDP_MIN_CLEAN:=1}"
fi
: "${BENCH_UDP_REPS:=5}"
: "${BENCH_UDP_DURATION:=5}"
: "${BENCH_UDP_WARMUP:=2}"
: "${BENCH_UDP_SESSIONS:=200}"
: "${BENCH_UDP_STREAMS:=4}"
: "${BENCH_UDP_RATE:=20000}"
: "${BENCH_UDP_SIZES:=64 1200}"
: "${BENCH_UDP_CASES:=rr stream}"
: "${BENCH_QUIET_RUN_WAIT:=10}"
: "${BENCH_UDP_MIN_CLEAN:=3}"
SCENARIO=udp
OUT="$BENCH_RESULTS/$SCENARIO.jsonl"
read -r -a TARGETS <<<"$(bench_targets sluice nginx)"
[ ${#TARGETS[@]} -gt 0 ] || bench_die "no target available"
bench_log "udp: targets=${TARGETS[*]} (HAProxy has no UDP proxy) cases=($BENCH_UDP_CASES) sizes=($BENCH_UDP_SIZES) reps=$BENCH_UDP_REPS duration=${BENCH_UDP_DURATION}s"

declare -A VERSION_OF=()
for t in "${TARGETS[@]}"; do VERSION_OF[$t]=$("target_${t}_version"); done

if [ "${BENCH_REPORT_ONLY:-0}" != 1 ]; then

LOAD="$BENCH_LOGDIR/udp_load"
cc -O2 -Wall -o "$LOAD" "$BENCH_DIR/lib/udp_load.c" || bench_die "cannot build bench/lib/udp_load.c"

# --- the echo backend ----------------------------------------------------------------------------
SPORT=$(bench_free_ports 1)
bench_start udp-echo "$BENCH_LOAD_CORE" "$BENCH_LOGDIR/udp-echo.log" "$LOAD" echo "$SPORT"
ECHO_PID=$BENCH_PID
bench_wait_listen "$SPORT" 5 "$ECHO_PID" || bench_die "the udp_load echo backend did not start"

# run_one TARGET CASE SIZE DURATION REP ATTEMPT [--warmup] -> RUN_OK, RUN_DISTURBED
run_one() {
  local t=$1 kind=$2 size=$3 dur=$4 rep=$5 attempt=$6 warm=${7:-} pfx verdict load_args
  local pid=${PID_OF[$t]}
  pfx="$BENCH_LOGDIR/udp-$t-$kind$size-r$rep-a$attempt${warm:+-warmup}"
  if [ "$kind" = rr ]; then
    load_args=(rr "${PORT_OF[$t]}" "$BENCH_UDP_SESSIONS" "$size" "$dur")
  else
    load_args=(stream "${PORT_OF[$t]}" "$BENCH_UDP_STREAMS" "$size" "$BENCH_UDP_RATE" "$dur")
  fi
  taskset -c "$BENCH_LOAD_CORE" "${BENCHLIB[@]}" measure --out "$pfx.meas.json" \
    --ignore "$ECHO_PID" --proxy "$pid" -- timeout -k 2 $((dur + 20)) \
    taskset -c "$BENCH_LOAD_CORE" "$LOAD" "${load_args[@]}" >"$pfx.load.json" 2>"$pfx.load.err" || true
  verdict=$("${BENCHLIB[@]}" udp-record --meas "$pfx.meas.json" --load "$pfx.load.json" \
    --out "$OUT" --run-id "$BENCH_RUN_ID" --scenario "$SCENARIO" --case "$kind $size B" \
    --target "$t" --rep "$rep" --attempt "$attempt" ${warm:+--warmup} \
    --proxy-core "$BENCH_PROXY_CORE" --load-core "$BENCH_LOAD_CORE")
  bench_log "  $t $kind $size B rep=$rep attempt=$attempt${warm:+ (warm-up)}: $verdict"
  RUN_OK=0
  RUN_DISTURBED=0
  [[ $verdict == ok* ]] && RUN_OK=1
  [[ $verdict == *" disturbed "* ]] && RUN_DISTURBED=1
  return 0
}

wait_quiet() {
  [ "$BENCH_QUIET_RUN_WAIT" = 0 ] && return 0
  local verdict
  verdict=$(taskset -c "$BENCH_LOAD_CORE" "${BENCHLIB[@]}" quiet --max-wait "$BENCH_QUIET_RUN_WAIT" \
    --window 0.5 --ignore "$ECHO_PID") || bench_log "  $verdict"
}

for kind in $BENCH_UDP_CASES; do
  # --- the proxies, configured for this case ------------------------------------------------------
  declare -A PID_OF=() PORT_OF=()
  LIVE=()
  for t in "${TARGETS[@]}"; do
    lport=$(bench_free_ports 1)
    if "target_${t}_start" "udp_$kind" "$lport" "$SPORT"; then
      PID_OF[$t]=$TARGET_PID
      PORT_OF[$t]=$TARGET_PORT
      LIVE+=("$t")
    else
      bench_log "target $t did not start; last lines of ${TARGET_LOG:-its log}:"
      tail -n 20 "${TARGET_LOG:-/dev/null}" >&2 || true
      [ -n "${TARGET_PID:-}" ] && bench_stop "$TARGET_PID" 3
      "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" \
        target="$t" event=start_failed case="$kind"
    fi
  done
  [ ${#LIVE[@]} -gt 0 ] || bench_die "no target came up"
  [ "$BENCH_QUIET_RUN_WAIT" = 0 ] || bench_quiet --ignore "$ECHO_PID"
  for size in $BENCH_UDP_SIZES; do
    if [ "$BENCH_UDP_WARMUP" != 0 ]; then
      for t in "${LIVE[@]}"; do run_one "$t" "$kind" "$size" "$BENCH_UDP_WARMUP" 0 1 --warmup; done
    fi
    for ((rep = 1; rep <= BENCH_UDP_REPS; rep++)); do
      for ((i = 0; i < ${#LIVE[@]}; i++)); do
        t=${LIVE[$(((i + rep - 1) % ${#LIVE[@]}))]}
        bench_alive "${PID_OF[$t]}" || continue
        wait_quiet
        run_one "$t" "$kind" "$size" "$BENCH_UDP_DURATION" "$rep" 1
        if [ "$RUN_OK" = 1 ] && [ "$RUN_DISTURBED" = 1 ] && [ "$BENCH_QUIET_RUN_WAIT" != 0 ]; then
          bench_log "  disturbed: running it again once"
          wait_quiet
          run_one "$t" "$kind" "$size" "$BENCH_UDP_DURATION" "$rep" 2
        fi
      done
    done
  done
  for t in "${LIVE[@]}"; do
    bench_stop "${PID_OF[$t]}" 10
    bench_log "target $t ($kind) stopped with status $BENCH_STOP_RC"
    "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" \
      target="$t" event=stopped case="$kind" exit_status="$BENCH_STOP_RC" version="${VERSION_OF[$t]}"
  done
done
bench_stop "$ECHO_PID" 5

fi # BENCH_REPORT_ONLY

# --- report --------------------------------------------------------------------------------------
ordered=$(printf '"%s",' "${TARGETS[@]}")
spec=$(cat <<EOF
{"title": "UDP proxy: request/response and streaming datagrams (udp_load, ${BENCH_UDP_DURATION}s runs)",
 "min_clean": $BENCH_UDP_MIN_CLEAN,
 "targets": [${ordered%,}],
 "ref": "nginx",
 "columns": [
   {"key": "per_s", "label": "answers/s", "fmt": "%.0f", "range": true},
   {"key": "cpu_us_per_datagram", "label": "proxy CPU-µs/datagram", "fmt": "%.2f", "range": true},
   {"key": "core_cpu_us_per_datagram", "label": "core $BENCH_PROXY_CORE CPU-µs/datagram", "fmt": "%.2f"},
   {"key": "loss_pct", "label": "lost %", "fmt": "%.3f"},
   {"key": "rtt_p99_us", "label": "rtt p99 µs", "fmt": "%.0f"},
   {"key": "proxy_core_busy_pct", "label": "core $BENCH_PROXY_CORE busy %", "fmt": "%.0f"}],
 "ratios": [
   {"key": "cpu_us_per_datagram", "label": "CPU/datagram vs nginx"},
   {"key": "per_s", "label": "answers/s vs nginx"}]}
EOF
)
versions=""
for t in "${TARGETS[@]}"; do versions+="${t}: ${VERSION_OF[$t]}; "; done
meta="Run \`$BENCH_RUN_ID\`, $BENCH_UDP_REPS interleaved repetitions of ${BENCH_UDP_DURATION} s per target and case after a ${BENCH_UDP_WARMUP} s warm-up; proxy alone on core $BENCH_PROXY_CORE with one worker, bench/lib/udp_load (load and echo backend) on core $BENCH_LOAD_CORE; rr: $BENCH_UDP_SESSIONS sockets, one request outstanding each, a session per request; stream: $BENCH_UDP_STREAMS sockets, $BENCH_UDP_RATE datagrams/s offered. HAProxy has no UDP proxy. Versions: ${versions%; }."
"${BENCHLIB[@]}" report --results "$OUT" --run-id "$BENCH_RUN_ID" --scenario "$SCENARIO" \
  --spec "$spec" --meta "$meta" --workdir "$BENCH_LOGDIR" --md "$BENCH_RESULTS/latest-$SCENARIO.md"
echo "$BENCH_RUN_ID" >"$BENCH_RESULTS/latest-$SCENARIO.run"

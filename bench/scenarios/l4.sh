#!/usr/bin/env bash
# L4 TCP throughput: iperf3 direct and through each proxy, 1 and 8 streams, interleaved.
#
# Layout on a 2-core machine: the proxy under test runs alone on BENCH_PROXY_CORE (1) with one
# worker/thread; iperf3 client and server share BENCH_LOAD_CORE (0). Every proxy stays up for
# the whole scenario (idle ones use no CPU) so repetitions can be interleaved: rep r runs the
# targets rotated by r (A B C D, B C D A, ...), after one warm-up run per target.
#
# Knobs: BENCH_L4_REPS (5), BENCH_L4_DURATION seconds per run (4), BENCH_L4_WARMUP seconds (2),
#        BENCH_L4_STREAMS ("1 8"), BENCH_QUIET_RUN_WAIT (10: at most that many seconds of waiting
#        for a quiet machine before each measured run), BENCH_L4_MIN_CLEAN (3: statistics use only
#        undisturbed repetitions when every target has at least that many). Disturbance thresholds:
#        BENCH_DISTURB_PCT, BENCH_STEAL_PCT (see bench/lib/benchlib.py).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

: "${BENCH_L4_REPS:=5}"
: "${BENCH_L4_DURATION:=4}"
: "${BENCH_L4_WARMUP:=2}"
: "${BENCH_L4_STREAMS:=1 8}"
: "${BENCH_QUIET_RUN_WAIT:=10}"
: "${BENCH_L4_MIN_CLEAN:=3}"
SCENARIO=l4
OUT="$BENCH_RESULTS/$SCENARIO.jsonl"
read -r -a TARGETS <<<"$(bench_targets direct sluice haproxy nginx)"
[ ${#TARGETS[@]} -gt 0 ] || bench_die "no target available"
bench_log "l4: targets=${TARGETS[*]} reps=$BENCH_L4_REPS duration=${BENCH_L4_DURATION}s warmup=${BENCH_L4_WARMUP}s streams=($BENCH_L4_STREAMS)"

declare -A VERSION_OF=()
for t in "${TARGETS[@]}"; do VERSION_OF[$t]=$("target_${t}_version"); done

# BENCH_REPORT_ONLY=1 (bench/run report l4 RUN_ID) only redoes the report of BENCH_RUN_ID.
if [ "${BENCH_REPORT_ONLY:-0}" != 1 ]; then

# --- iperf3 server (the backend) ---------------------------------------------------------------
SPORT=$(bench_free_ports 1)
start_iperf_server() {
  bench_start iperf3-server "$BENCH_LOAD_CORE" "$BENCH_LOGDIR/iperf3-server.log" \
    iperf3 -s -B 127.0.0.1 -p "$SPORT"
  IPERF_SERVER_PID=$BENCH_PID
  bench_wait_listen "$SPORT" 5 "$IPERF_SERVER_PID" || bench_die "iperf3 server did not start"
}
start_iperf_server

# --- proxies -----------------------------------------------------------------------------------
declare -A PID_OF=() PORT_OF=() LOG_OF=()
LIVE=()
for t in "${TARGETS[@]}"; do
  lport=$(bench_free_ports 1)
  if "target_${t}_start" l4 "$lport" "$SPORT"; then
    PID_OF[$t]=${TARGET_PID:-}
    PORT_OF[$t]=$TARGET_PORT
    LOG_OF[$t]=$TARGET_LOG
    LIVE+=("$t")
  else
    bench_log "target $t did not start; last lines of ${TARGET_LOG:-its log}:"
    tail -n 20 "${TARGET_LOG:-/dev/null}" >&2 || true
    [ -n "${TARGET_PID:-}" ] && bench_stop "$TARGET_PID" 3
    "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" \
      target="$t" event=start_failed
  fi
done
[ ${#LIVE[@]} -gt 0 ] || bench_die "no target came up"

# --- one measured iperf3 run -------------------------------------------------------------------
# run_one TARGET STREAMS DURATION REP ATTEMPT [--warmup] -> sets RUN_OK (0/1), RUN_DISTURBED (0/1)
run_one() {
  local t=$1 n=$2 dur=$3 rep=$4 attempt=$5 warm=${6:-} pfx case verdict
  local pid=${PID_OF[$t]}
  case=$([ "$n" = 1 ] && echo "1 stream" || echo "$n streams")
  pfx="$BENCH_LOGDIR/l4-$t-P$n-r$rep-a$attempt${warm:+-warmup}"
  # The measuring process samples /proc every 0.2 s; it stays off the proxy's core.
  local measure=(taskset -c "$BENCH_LOAD_CORE" "${BENCHLIB[@]}" measure --out "$pfx.meas.json"
    --ignore "$IPERF_SERVER_PID")
  [ -n "$pid" ] && measure+=(--proxy "$pid")
  "${measure[@]}" -- timeout -k 2 $((dur + 20)) taskset -c "$BENCH_LOAD_CORE" \
    iperf3 -c 127.0.0.1 -p "${PORT_OF[$t]}" -t "$dur" -P "$n" --connect-timeout 3000 --json \
    >"$pfx.iperf.json" 2>"$pfx.iperf.err" || true
  verdict=$("${BENCHLIB[@]}" iperf-record --meas "$pfx.meas.json" --iperf "$pfx.iperf.json" \
    --out "$OUT" --run-id "$BENCH_RUN_ID" --scenario "$SCENARIO" --case "$case" --target "$t" \
    --rep "$rep" --attempt "$attempt" ${warm:+--warmup} --streams "$n" --duration "$dur" \
    --proxy-core "$BENCH_PROXY_CORE" --load-core "$BENCH_LOAD_CORE")
  bench_log "  $t P=$n rep=$rep attempt=$attempt${warm:+ (warm-up)}: $verdict"
  RUN_OK=0
  RUN_DISTURBED=0
  [[ $verdict == ok* ]] && RUN_OK=1
  [[ $verdict == *" disturbed "* ]] && RUN_DISTURBED=1
  return 0
}

# After a failed run: is it the proxy (dead -> drop it) or the iperf3 server (restart it)?
recover() {
  local t=$1
  if [ -n "${PID_OF[$t]}" ] && ! bench_alive "${PID_OF[$t]}"; then
    bench_stop "${PID_OF[$t]}" 1
    bench_log "target $t (pid ${PID_OF[$t]}) died with status $BENCH_STOP_RC; last lines of its log:"
    tail -n 20 "${LOG_OF[$t]}" >&2 || true
    "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" \
      target="$t" event=died exit_status="$BENCH_STOP_RC"
    DEAD[$t]=1
  elif ! bench_alive "$IPERF_SERVER_PID"; then
    bench_log "iperf3 server died; restarting it"
    bench_stop "$IPERF_SERVER_PID" 1
    start_iperf_server
  fi
}

# Before each measured run: wait (bounded) for half a second in which nothing else runs.
wait_quiet() {
  local verdict
  verdict=$(taskset -c "$BENCH_LOAD_CORE" "${BENCHLIB[@]}" quiet --max-wait "$BENCH_QUIET_RUN_WAIT" --window 0.5 \
    --ignore "$IPERF_SERVER_PID") || bench_log "  $verdict"
}

declare -A DEAD=()
bench_quiet --ignore "$IPERF_SERVER_PID"
for n in $BENCH_L4_STREAMS; do
  if [ "$BENCH_L4_WARMUP" != 0 ]; then
    for t in "${LIVE[@]}"; do
      run_one "$t" "$n" "$BENCH_L4_WARMUP" 0 1 --warmup
      [ "$RUN_OK" = 1 ] || recover "$t"
    done
  fi
  for ((rep = 1; rep <= BENCH_L4_REPS; rep++)); do
    for ((i = 0; i < ${#LIVE[@]}; i++)); do
      t=${LIVE[$(((i + rep - 1) % ${#LIVE[@]}))]}
      [ -z "${DEAD[$t]:-}" ] || continue
      wait_quiet
      run_one "$t" "$n" "$BENCH_L4_DURATION" "$rep" 1
      if [ "$RUN_OK" = 0 ]; then
        recover "$t"
        [ -z "${DEAD[$t]:-}" ] || continue
        run_one "$t" "$n" "$BENCH_L4_DURATION" "$rep" 2
      elif [ "$RUN_DISTURBED" = 1 ]; then
        bench_log "  disturbed: running it again once"
        wait_quiet
        run_one "$t" "$n" "$BENCH_L4_DURATION" "$rep" 2
      fi
    done
  done
done

# --- shut down, check that each proxy exits cleanly on SIGTERM -------------------------------------
for t in "${LIVE[@]}"; do
  if [ -z "${PID_OF[$t]}" ] || [ -n "${DEAD[$t]:-}" ]; then continue; fi
  bench_stop "${PID_OF[$t]}" 10
  bench_log "target $t stopped with status $BENCH_STOP_RC"
  "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" \
    target="$t" event=stopped exit_status="$BENCH_STOP_RC" version="${VERSION_OF[$t]}"
done
bench_stop "$IPERF_SERVER_PID" 5

fi # BENCH_REPORT_ONLY

# --- report ------------------------------------------------------------------------------------
ordered=$(printf '"%s",' "${TARGETS[@]}")
spec=$(cat <<EOF
{"title": "L4 TCP throughput (iperf3, ${BENCH_L4_DURATION}s runs)",
 "min_clean": $BENCH_L4_MIN_CLEAN,
 "targets": [${ordered%,}],
 "ref": "haproxy",
 "columns": [
   {"key": "gbps", "label": "Gbit/s", "fmt": "%.2f", "range": true},
   {"key": "cpu_s_per_gb", "label": "proxy CPU-s/GB", "fmt": "%.3f", "range": true},
   {"key": "core_cpu_s_per_gb", "label": "core $BENCH_PROXY_CORE CPU-s/GB", "fmt": "%.3f"},
   {"key": "proxy_core_busy_pct", "label": "core $BENCH_PROXY_CORE busy %", "fmt": "%.0f"},
   {"key": "load_core_busy_pct", "label": "core $BENCH_LOAD_CORE busy %", "fmt": "%.0f"}],
 "ratios": [
   {"key": "gbps", "label": "Gbit/s vs HAProxy"},
   {"key": "cpu_s_per_gb", "label": "CPU/GB vs HAProxy"},
   {"key": "core_cpu_s_per_gb", "label": "core CPU/GB vs HAProxy"}],
 "plots": [
   {"key": "gbps", "title": "L4 throughput through one proxy core (median, min–max)",
    "ylabel": "Gbit/s (iperf3 receiver)", "out": "$BENCH_RESULTS/latest-l4-throughput.png"},
   {"key": "cpu_s_per_gb", "title": "Proxy CPU per GB relayed (median, min–max)",
    "ylabel": "CPU-seconds per GB", "out": "$BENCH_RESULTS/latest-l4-cpu-per-gb.png"}]}
EOF
)
versions=""
for t in "${TARGETS[@]}"; do versions+="${t}: ${VERSION_OF[$t]}; "; done
meta="Run \`$BENCH_RUN_ID\`, $BENCH_L4_REPS interleaved repetitions of ${BENCH_L4_DURATION} s per target and stream count after a ${BENCH_L4_WARMUP} s warm-up; proxy alone on core $BENCH_PROXY_CORE, iperf3 $(iperf3 --version | sed -n 1p | awk '{print $2}') client and server on core $BENCH_LOAD_CORE. Versions: ${versions%; }."
"${BENCHLIB[@]}" report --results "$OUT" --run-id "$BENCH_RUN_ID" --scenario "$SCENARIO" \
  --spec "$spec" --meta "$meta" --workdir "$BENCH_LOGDIR" --md "$BENCH_RESULTS/latest-$SCENARIO.md"
echo "$BENCH_RUN_ID" >"$BENCH_RESULTS/latest-$SCENARIO.run"

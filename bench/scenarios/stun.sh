#!/usr/bin/env bash
# STUN: Binding requests answered per CPU-second on one core, sluice vs coturn.
#
# The server answers 20-byte STUN Binding requests itself (sluice `protocol: stun`, coturn's
# turnserver with --stun-only); nothing is proxied, so there is no backend. The load generator
# is bench/lib/udp_load.c in its stun mode, built into the run's log directory:
# BENCH_STUN_SESSIONS client sockets (200), each with one request outstanding (no attributes, a
# random transaction id); an answer counts when it is a Binding success response with that
# transaction id; a request unanswered for 200 ms is lost and sent again.
#
# coturn is a target of this scenario only (defined below, not in bench/targets.sh): the
# distribution's turnserver, conf/stun/turnserver.conf (UDP on 127.0.0.1, one relay thread, no
# TURN, TCP, TLS, DTLS, CLI or credentials, no SOFTWARE attribute). sluice: conf/stun/sluice.yaml
# (one worker, no rate limit: coturn has none).
#
# Measured per run: answers/s, losses, round trip p50/p99 and the server's CPU per Binding
# answered (its process's CPU time from /proc, all threads, over the answers) and its inverse,
# Binding requests answered per CPU-second. The report's pair ratio is sluice ÷ coturn CPU per
# answer within each repetition; the aim is ≤ 0.5.
#
# Layout as udp: the server alone on BENCH_PROXY_CORE, udp_load on BENCH_LOAD_CORE; repetitions
# interleaved (rotated target order) after a warm-up.
#
# Knobs: BENCH_STUN_REPS (5), BENCH_STUN_DURATION seconds (5), BENCH_STUN_WARMUP seconds (2),
#        BENCH_STUN_SESSIONS (200), BENCH_QUIET_RUN_WAIT (10), BENCH_STUN_MIN_CLEAN (3).
#        QUICK=1: one 2-second repetition, no warm-up, no waiting for a quiet machine (a smoke
#        test of the script, not a measurement).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

if [ "${QUICK:-0}" = 1 ]; then
  : "${BENCH_STUN_REPS:=1}" "${BENCH_STUN_DURATION:=2}" "${BENCH_STUN_WARMUP:=0}"
  : "${BENCH_QUIET_RUN_WAIT:=0}" "${BENCH_STUN_MIN_CLEAN:=1}"
fi
: "${BENCH_STUN_REPS:=5}"
: "${BENCH_STUN_DURATION:=5}"
: "${BENCH_STUN_WARMUP:=2}"
: "${BENCH_STUN_SESSIONS:=200}"
: "${BENCH_QUIET_RUN_WAIT:=10}"
: "${BENCH_STUN_MIN_CLEAN:=3}"
SCENARIO=stun
CASE="binding 20 B"
OUT="$BENCH_RESULTS/$SCENARIO.jsonl"

# --- coturn (this scenario's target only) -------------------------------------------------------
target_coturn_unavailable() {
  command -v turnserver >/dev/null || { echo "turnserver not installed (coturn, scripts/bootstrap)"; return 0; }
  return 1
}
target_coturn_version() {
  local v
  v=$(timeout 5 turnserver --version 2>/dev/null </dev/null | head -n 1) || true
  echo "coturn ${v:-(unknown version)}"
}
target_coturn_start() {
  local mode=$1 lport=$2 cfg
  _target_files coturn "$mode"
  # shellcheck disable=SC2153 # TARGET_DIR is set by _target_files
  cfg="$TARGET_DIR/turnserver.conf"
  bench_render "$(_target_conf "$mode" turnserver conf)" "$cfg" LISTEN="$lport" DIR="$TARGET_DIR"
  # In the foreground (no -o): the PID is the server itself, its threads included in its CPU.
  # Its own log goes to the log-file of the config; stdout/stderr to TARGET_LOG.
  bench_start coturn "$BENCH_PROXY_CORE" "$TARGET_LOG" turnserver -c "$cfg"
  TARGET_PID=$BENCH_PID
  TARGET_PORT=$lport
  bench_wait_listen "$lport" 10 "$TARGET_PID"
}

read -r -a TARGETS <<<"$(bench_targets sluice coturn)"
[ ${#TARGETS[@]} -gt 0 ] || bench_die "no target available"
bench_log "stun: targets=${TARGETS[*]} reps=$BENCH_STUN_REPS duration=${BENCH_STUN_DURATION}s sessions=$BENCH_STUN_SESSIONS"

declare -A VERSION_OF=()
for t in "${TARGETS[@]}"; do VERSION_OF[$t]=$("target_${t}_version"); done

if [ "${BENCH_REPORT_ONLY:-0}" != 1 ]; then

LOAD="$BENCH_LOGDIR/udp_load"
cc -O2 -Wall -o "$LOAD" "$BENCH_DIR/lib/udp_load.c" || bench_die "cannot build bench/lib/udp_load.c"

# run_one TARGET DURATION REP ATTEMPT [--warmup] -> RUN_OK, RUN_DISTURBED
run_one() {
  local t=$1 dur=$2 rep=$3 attempt=$4 warm=${5:-} pfx verdict
  pfx="$BENCH_LOGDIR/stun-$t-r$rep-a$attempt${warm:+-warmup}"
  taskset -c "$BENCH_LOAD_CORE" "${BENCHLIB[@]}" measure --out "$pfx.meas.json" \
    --proxy "${PID_OF[$t]}" -- timeout -k 2 $((dur + 20)) \
    taskset -c "$BENCH_LOAD_CORE" "$LOAD" stun "${PORT_OF[$t]}" "$BENCH_STUN_SESSIONS" "$dur" \
    >"$pfx.load.json" 2>"$pfx.load.err" || true
  verdict=$("${BENCHLIB[@]}" udp-record --meas "$pfx.meas.json" --load "$pfx.load.json" \
    --out "$OUT" --run-id "$BENCH_RUN_ID" --scenario "$SCENARIO" --case "$CASE" \
    --target "$t" --rep "$rep" --attempt "$attempt" ${warm:+--warmup} \
    --proxy-core "$BENCH_PROXY_CORE" --load-core "$BENCH_LOAD_CORE")
  bench_log "  $t rep=$rep attempt=$attempt${warm:+ (warm-up)}: $verdict"
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
    --window 0.5) || bench_log "  $verdict"
}

# --- the servers, all up for the whole run -------------------------------------------------------
declare -A PID_OF=() PORT_OF=()
LIVE=()
for t in "${TARGETS[@]}"; do
  lport=$(bench_free_ports 1)
  if "target_${t}_start" stun "$lport" 0; then
    PID_OF[$t]=$TARGET_PID
    PORT_OF[$t]=$TARGET_PORT
    LIVE+=("$t")
  else
    bench_log "target $t did not start; last lines of ${TARGET_LOG:-its log}:"
    tail -n 20 "${TARGET_LOG:-/dev/null}" >&2 || true
    [ -n "${TARGET_PID:-}" ] && bench_stop "$TARGET_PID" 3
    "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" \
      target="$t" event=start_failed case="$CASE"
  fi
done
[ ${#LIVE[@]} -gt 0 ] || bench_die "no target came up"
[ "$BENCH_QUIET_RUN_WAIT" = 0 ] || bench_quiet --window 1

if [ "$BENCH_STUN_WARMUP" != 0 ]; then
  for t in "${LIVE[@]}"; do run_one "$t" "$BENCH_STUN_WARMUP" 0 1 --warmup; done
fi
for ((rep = 1; rep <= BENCH_STUN_REPS; rep++)); do
  for ((i = 0; i < ${#LIVE[@]}; i++)); do
    t=${LIVE[$(((i + rep - 1) % ${#LIVE[@]}))]}
    bench_alive "${PID_OF[$t]}" || continue
    wait_quiet
    run_one "$t" "$BENCH_STUN_DURATION" "$rep" 1
    if [ "$RUN_OK" = 1 ] && [ "$RUN_DISTURBED" = 1 ] && [ "$BENCH_QUIET_RUN_WAIT" != 0 ]; then
      bench_log "  disturbed: running it again once"
      wait_quiet
      run_one "$t" "$BENCH_STUN_DURATION" "$rep" 2
    fi
  done
done
for t in "${LIVE[@]}"; do
  bench_stop "${PID_OF[$t]}" 10
  bench_log "target $t stopped with status $BENCH_STOP_RC"
  "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" \
    target="$t" event=stopped case="$CASE" exit_status="$BENCH_STOP_RC" version="${VERSION_OF[$t]}"
done

fi # BENCH_REPORT_ONLY

# --- report --------------------------------------------------------------------------------------
ordered=$(printf '"%s",' "${TARGETS[@]}")
spec=$(cat <<EOF
{"title": "STUN: Binding requests answered per CPU-second on one core (udp_load stun, ${BENCH_STUN_DURATION}s runs)",
 "min_clean": $BENCH_STUN_MIN_CLEAN,
 "targets": [${ordered%,}],
 "ref": "coturn",
 "columns": [
   {"key": "answers_per_cpu_s", "label": "answers/CPU-s", "fmt": "%.0f", "range": true},
   {"key": "cpu_us_per_answer", "label": "server CPU-µs/answer", "fmt": "%.2f", "range": true},
   {"key": "per_s", "label": "answers/s", "fmt": "%.0f", "range": true},
   {"key": "loss_pct", "label": "lost %", "fmt": "%.3f"},
   {"key": "rtt_p99_us", "label": "rtt p99 µs", "fmt": "%.0f"},
   {"key": "proxy_core_busy_pct", "label": "core $BENCH_PROXY_CORE busy %", "fmt": "%.0f"}],
 "ratios": [
   {"key": "cpu_us_per_answer", "label": "CPU/answer vs coturn"},
   {"key": "answers_per_cpu_s", "label": "answers/CPU-s vs coturn"}],
 "pair_ratios": [
   {"key": "cpu_us_per_answer", "num": "sluice", "den": "coturn", "label": "sluice ÷ coturn, CPU per Binding answered", "aim_max": 0.5}]}
EOF
)
versions=""
for t in "${TARGETS[@]}"; do versions+="${t}: ${VERSION_OF[$t]}; "; done
meta="Run \`$BENCH_RUN_ID\`, $BENCH_STUN_REPS interleaved repetitions of ${BENCH_STUN_DURATION} s per target after a ${BENCH_STUN_WARMUP} s warm-up; the server alone on core $BENCH_PROXY_CORE (sluice one worker without a rate limit, coturn --stun-only with one relay thread), bench/lib/udp_load stun on core $BENCH_LOAD_CORE: $BENCH_STUN_SESSIONS sockets, one 20-byte Binding request outstanding each. Aim: sluice's CPU per answer ≤ 0.5 × coturn's. Versions: ${versions%; }."
"${BENCHLIB[@]}" report --results "$OUT" --run-id "$BENCH_RUN_ID" --scenario "$SCENARIO" \
  --spec "$spec" --meta "$meta" --workdir "$BENCH_LOGDIR" --md "$BENCH_RESULTS/latest-$SCENARIO.md"
echo "$BENCH_RUN_ID" >"$BENCH_RESULTS/latest-$SCENARIO.run"

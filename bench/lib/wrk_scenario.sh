# shellcheck shell=bash
# Shared driver of the wrk-based HTTP scenarios (bench/scenarios/l7*.sh). Source it after
# bench/lib.sh, after setting:
#   SCENARIO        name (results/SCENARIO.jsonl, latest-SCENARIO.md)
#   WRK_CASE        the table's case heading, e.g. "64 connections, 100-byte responses"
#   WRK_CONNS       wrk -c (wrk always runs one thread, -t1, on BENCH_LOAD_CORE)
#   WRK_PATH        request path (/ = ~100-byte response, /static/1mib.bin = 1 MiB)
#   WRK_HEADERS     extra wrk -H arguments (array, may be empty)
#   WRK_DURATION, WRK_WARMUP, WRK_REPS, WRK_MIN_CLEAN
#   optionally WRK_SCHEME (http, or https for a TLS listener) and WRK_RECORD_ARGS (more
#   `benchlib.py wrk-record` arguments, e.g. --floor-s-per-gb)
# A target may define target_NAME_check: called after each of its runs, its failure stops the
# benchmark (bench_die).
# then call wrk_scenario_run and wrk_scenario_report SPEC META.
#
# Layout: one nginx backend (conf/l7/backend.conf) on BENCH_LOAD_CORE serves every target;
# each proxy (conf/l7/TARGET.*) runs alone on BENCH_PROXY_CORE with one worker/thread; wrk runs
# on BENCH_LOAD_CORE under `timeout`. All proxies stay up for the whole scenario so repetitions
# can be interleaved: rep r runs the targets rotated by r (A B C D, B C D A, ...), after one
# warm-up run per target. A disturbed run is repeated once; a failed one is repeated once after
# checking that the proxy and the backend are still alive.

: "${BENCH_QUIET_RUN_WAIT:=10}"
WRK_LUA="$BENCH_DIR/lib/wrk_report.lua"
OUT="$BENCH_RESULTS/$SCENARIO.jsonl"
# shellcheck disable=SC2086 # a list of names
read -r -a TARGETS <<<"$(bench_targets ${WRK_DEFAULT_TARGETS:-direct sluice haproxy nginx})"
[ ${#TARGETS[@]} -gt 0 ] || bench_die "no target available"
command -v wrk >/dev/null || bench_die "wrk not installed (scripts/bootstrap)"
declare -A VERSION_OF=()
for t in "${TARGETS[@]}"; do VERSION_OF[$t]=$("target_${t}_version"); done

# l7_backend_start -> BACKEND_PID, BACKEND_PORT (nginx master; its worker is a child)
l7_backend_start() {
  local dir="$BENCH_LOGDIR/backend-$SCENARIO" cfg
  mkdir -p "$dir/static"
  [ -f "$dir/static/1mib.bin" ] || head -c 1048576 /dev/urandom >"$dir/static/1mib.bin"
  BACKEND_PORT=$(bench_free_ports 1)
  cfg="$dir/backend.conf"
  bench_render "$BENCH_DIR/conf/l7/backend.conf" "$cfg" LISTEN="$BACKEND_PORT" DIR="$dir"
  nginx -q -t -p "$dir" -e stderr -c "$cfg" >"$dir/check.log" 2>&1 || { cat "$dir/check.log" >&2; bench_die "backend config"; }
  bench_start backend "$BENCH_LOAD_CORE" "$dir/backend.log" nginx -p "$dir" -e stderr -c "$cfg"
  BACKEND_PID=$BENCH_PID
  bench_wait_listen "$BACKEND_PORT" 10 "$BACKEND_PID" || bench_die "backend did not start"
}

# wrk_one TARGET DURATION REP ATTEMPT [--warmup] -> RUN_OK, RUN_DISTURBED (0/1)
wrk_one() {
  local t=$1 dur=$2 rep=$3 attempt=$4 warm=${5:-} pfx verdict
  local pid=${PID_OF[$t]} h hdr=()
  for h in "${WRK_HEADERS[@]}"; do hdr+=(-H "$h"); done
  pfx="$BENCH_LOGDIR/$SCENARIO-$t-r$rep-a$attempt${warm:+-warmup}"
  local measure=(taskset -c "$BENCH_LOAD_CORE" "${BENCHLIB[@]}" measure --out "$pfx.meas.json"
    --ignore "$BACKEND_PID")
  [ -n "$pid" ] && measure+=(--proxy "$pid")
  "${measure[@]}" -- timeout -k 2 $((dur + 20)) taskset -c "$BENCH_LOAD_CORE" \
    wrk -t1 -c"$WRK_CONNS" -d"${dur}s" --latency --timeout 5s -s "$WRK_LUA" "${hdr[@]}" \
    "${WRK_SCHEME:-http}://127.0.0.1:${PORT_OF[$t]}$WRK_PATH" >"$pfx.wrk.txt" 2>&1 || true
  verdict=$("${BENCHLIB[@]}" wrk-record --meas "$pfx.meas.json" --wrk "$pfx.wrk.txt" \
    --out "$OUT" --run-id "$BENCH_RUN_ID" --scenario "$SCENARIO" --case "$WRK_CASE" --target "$t" \
    --rep "$rep" --attempt "$attempt" ${warm:+--warmup} --connections "$WRK_CONNS" --duration "$dur" \
    --proxy-core "$BENCH_PROXY_CORE" --load-core "$BENCH_LOAD_CORE" ${WRK_RECORD_ARGS[@]+"${WRK_RECORD_ARGS[@]}"})
  bench_log "  $t rep=$rep attempt=$attempt${warm:+ (warm-up)}: $verdict"
  RUN_OK=0
  RUN_DISTURBED=0
  [[ $verdict == ok* ]] && RUN_OK=1
  [[ $verdict == *" disturbed "* ]] && RUN_DISTURBED=1
  if [ "$RUN_OK" = 0 ]; then
    bench_log "  wrk output ($pfx.wrk.txt):"
    sed 's/^/    /' "$pfx.wrk.txt" >&2 || true
  fi
  # A target with a companion (the dashboard's client) measured nothing if it stopped.
  if declare -F "target_${t}_check" >/dev/null && ! "target_${t}_check"; then
    bench_die "$t: its run $rep${warm:+ (warm-up)} did not measure what it says; stopping the benchmark"
  fi
  return 0
}

# After a failed run: a dead proxy is dropped (with the end of its log), a dead backend restarted.
wrk_recover() {
  local t=$1
  if [ -n "${PID_OF[$t]}" ] && ! bench_alive "${PID_OF[$t]}"; then
    bench_stop "${PID_OF[$t]}" 1
    bench_log "target $t (pid ${PID_OF[$t]}) died with status $BENCH_STOP_RC; last lines of its log:"
    tail -n 20 "${LOG_OF[$t]}" >&2 || true
    "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" \
      target="$t" event=died exit_status="$BENCH_STOP_RC"
    DEAD[$t]=1
  elif ! bench_alive "$BACKEND_PID"; then
    bench_log "backend died; restarting it (proxies keep the old port: scenario aborted)"
    bench_die "backend died"
  elif [ -n "${LOG_OF[$t]:-}" ] && [ -s "${LOG_OF[$t]}" ]; then
    bench_log "  last lines of $t's log:"
    tail -n 5 "${LOG_OF[$t]}" >&2 || true
  fi
}

wrk_wait_quiet() {
  local verdict
  verdict=$(taskset -c "$BENCH_LOAD_CORE" "${BENCHLIB[@]}" quiet --max-wait "$BENCH_QUIET_RUN_WAIT" --window 0.5 \
    --ignore "$BACKEND_PID") || bench_log "  $verdict"
}

wrk_scenario_run() {
  [ "${BENCH_REPORT_ONLY:-0}" != 1 ] || return 0
  bench_log "$SCENARIO: targets=${TARGETS[*]} case='$WRK_CASE' reps=$WRK_REPS duration=${WRK_DURATION}s warmup=${WRK_WARMUP}s proxy core=$BENCH_PROXY_CORE load core=$BENCH_LOAD_CORE"
  l7_backend_start
  declare -gA PID_OF=() PORT_OF=() LOG_OF=() DEAD=()
  LIVE=()
  local t lport rep i
  for t in "${TARGETS[@]}"; do
    lport=$(bench_free_ports 1)
    if "target_${t}_start" "${WRK_MODE:-l7}" "$lport" "$BACKEND_PORT"; then
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

  bench_quiet --ignore "$BACKEND_PID"
  if [ "$WRK_WARMUP" != 0 ]; then
    for t in "${LIVE[@]}"; do
      wrk_one "$t" "$WRK_WARMUP" 0 1 --warmup
      [ "$RUN_OK" = 1 ] || wrk_recover "$t"
    done
  fi
  for ((rep = 1; rep <= WRK_REPS; rep++)); do
    for ((i = 0; i < ${#LIVE[@]}; i++)); do
      t=${LIVE[$(((i + rep - 1) % ${#LIVE[@]}))]}
      [ -z "${DEAD[$t]:-}" ] || continue
      wrk_wait_quiet
      wrk_one "$t" "$WRK_DURATION" "$rep" 1
      if [ "$RUN_OK" = 0 ]; then
        wrk_recover "$t"
        [ -z "${DEAD[$t]:-}" ] || continue
        wrk_one "$t" "$WRK_DURATION" "$rep" 2
      elif [ "$RUN_DISTURBED" = 1 ]; then
        bench_log "  disturbed: running it again once"
        wrk_wait_quiet
        wrk_one "$t" "$WRK_DURATION" "$rep" 2
      fi
    done
  done

  for t in "${LIVE[@]}"; do
    if [ -z "${PID_OF[$t]}" ] || [ -n "${DEAD[$t]:-}" ]; then continue; fi
    bench_stop "${PID_OF[$t]}" 10
    bench_log "target $t stopped with status $BENCH_STOP_RC"
    "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" \
      target="$t" event=stopped exit_status="$BENCH_STOP_RC" version="${VERSION_OF[$t]}"
  done
  bench_stop "$BACKEND_PID" 5
}

# wrk_scenario_report SPEC_JSON META
wrk_scenario_report() {
  "${BENCHLIB[@]}" report --results "$OUT" --run-id "$BENCH_RUN_ID" --scenario "$SCENARIO" \
    --spec "$1" --meta "$2" --workdir "$BENCH_LOGDIR" --md "$BENCH_RESULTS/latest-$SCENARIO.md"
  echo "$BENCH_RUN_ID" >"$BENCH_RESULTS/latest-$SCENARIO.run"
}

# Target list as a JSON array body and versions, for specs and meta lines.
wrk_targets_json() { local s; s=$(printf '"%s",' "${TARGETS[@]}"); echo "${s%,}"; }
wrk_versions() { local t s=""; for t in "${TARGETS[@]}"; do s+="${t}: ${VERSION_OF[$t]}; "; done; echo "${s%; }"; }

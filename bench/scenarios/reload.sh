#!/usr/bin/env bash
# Configuration reload under load: 50 reloads in 10 s (A/B: a route, a backend endpoint, a second listener); p99, failed requests, leftover processes, CPU.
#
# Two nginx backends (conf/l7/backend.conf, the backend of the l7 scenarios, on two ports) on
# BENCH_LOAD_CORE (0); each proxy alone on BENCH_PROXY_CORE (1) with one worker, started fresh
# for each repetition with configuration A of conf/reload/ (B adds the second backend, a second
# listener, and has another route prefix). Per target and repetition:
#   check     one reload to B and back to A, verified from outside: B's second listener must
#             answer 200, then refuse again; then wait until old generations are gone.
#   baseline  wrk -t1 -cBENCH_RELOAD_CONNS keep-alive on the first listener for
#             BENCH_RELOAD_DURATION s, plus bench/lib/reload_bench.py connclient: a new
#             connection per request (Connection: close) at BENCH_RELOAD_RATE per second.
#   storm     the same load, plus new connections at BENCH_RELOAD_RATE2 per second to the
#             second listener (refused while A runs; one it accepted must get its answer),
#             while the proxy reloads BENCH_RELOAD_COUNT times, every
#             BENCH_RELOAD_INTERVAL s (centred in the load), alternating B and A: the rendered
#             file is copied over the proxy's -c file (atomic rename), then sluice gets SIGHUP,
#             nginx's master SIGHUP, and HAProxy a new process `haproxy -db -f FILE -sf
#             <every live haproxy PID>` (the classic reload; all generations run under
#             `reload_bench.py group`, so the tree's CPU counts the exited ones too).
# Recorded per phase: wrk req/s, p50/p99 and errors (connect, read, write, timeout, non-2xx);
# the new-connection client's p50/p99 and failures by kind; the proxy's CPU (all processes of
# its tree, /proc) per request; its processes at the start, peak, at the end of the load and
# BENCH_RELOAD_SETTLE s later. sluice: sluice_config_generation and sluice_config_reloads_total
# from its admin /metrics before and after, and its log lines "reload N applied in X ms"
# (median, max; and SIGHUP → log time); its reloads must be as many as its rule makes of the
# SIGHUPs (a start at most every BENCH_RELOAD_COALESCE_MS, SIGHUPs in between merge into the
# next), its generation advance by the applied ones (all of them when SIGHUPs are 2 windows
# apart). After the storm the second listener must answer (B) or refuse (A) as the last
# configuration says.
#
# Knobs: BENCH_RELOAD_REPS (3), BENCH_RELOAD_DURATION seconds per phase (12),
#        BENCH_RELOAD_COUNT (50), BENCH_RELOAD_INTERVAL seconds (0.2), BENCH_RELOAD_CONNS (64),
#        BENCH_RELOAD_RATE new connections per second (100), BENCH_RELOAD_RATE2 new connections per
#        second to the second listener during the storm (50; 0: none), BENCH_RELOAD_SETTLE seconds (5),
#        BENCH_RELOAD_COALESCE_MS (100), BENCH_QUIET_RUN_WAIT (10);
#        QUICK=1: one repetition, 6 s phases, 20 reloads, no waiting for quiet (a smoke test).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

if [ "${QUICK:-0}" = 1 ]; then
  : "${BENCH_RELOAD_REPS:=1}" "${BENCH_RELOAD_DURATION:=6}" "${BENCH_RELOAD_COUNT:=20}" "${BENCH_QUIET_WAIT:=0}" "${BENCH_QUIET_RUN_WAIT:=0}"
fi
: "${BENCH_RELOAD_REPS:=3}"
: "${BENCH_RELOAD_DURATION:=12}"
: "${BENCH_RELOAD_COUNT:=50}"
: "${BENCH_RELOAD_INTERVAL:=0.2}"
: "${BENCH_RELOAD_CONNS:=64}"
: "${BENCH_RELOAD_RATE:=100}"
: "${BENCH_RELOAD_RATE2:=50}"
: "${BENCH_RELOAD_SETTLE:=5}"
: "${BENCH_RELOAD_COALESCE_MS:=100}"
: "${BENCH_QUIET_RUN_WAIT:=10}"
SCENARIO=reload
OUT="$BENCH_RESULTS/$SCENARIO.jsonl"
RELOADLIB=("$BENCH_PY" "$BENCH_DIR/lib/reload_bench.py")
WANT=()
for t in ${BENCH_TARGETS:-sluice haproxy nginx}; do [ "$t" = direct ] || WANT+=("$t"); done
[ ${#WANT[@]} -gt 0 ] || bench_die "no proxy asked for (direct has nothing to reload)"

# --- proxies with two configurations ----------------------------------------------------------
# reload_start TARGET REP -> R_ROOT (root of the proxy's process tree), R_WRAPPER (--wrapper or
# empty), R_SIGPID/R_SIGNAL (what a reload signals), R_LIVE (the -c file), R_CFG_A, R_CFG_B,
# R_PORT, R_PORT2, R_ADMIN (sluice), R_LOG; returns non-zero with R_REASON if it did not start.
reload_start() {
  local t=$1 rep=$2 dir ports ext vars i
  dir="$BENCH_LOGDIR/$SCENARIO-$t-r$rep"
  mkdir -p "$dir"
  read -r -a ports <<<"$(bench_free_ports 3)"
  R_PORT=${ports[0]} R_PORT2=${ports[1]} R_ADMIN=''
  R_LOG="$dir/$t.log" R_WRAPPER='' R_REASON=''
  case $t in
    sluice | sluice_base) ext=yaml ;;
    haproxy) ext=cfg ;;
    nginx) ext=conf ;;
    *) bench_die "no reload configuration for target '$t'" ;;
  esac
  local name=${t%_base}
  vars=(LISTEN="$R_PORT" LISTEN2="$R_PORT2" BACKEND="$BACKEND_PORT" BACKEND2="$BACKEND2_PORT" DIR="$dir" ADMIN="${ports[2]}")
  R_CFG_A="$dir/$name-a.$ext" R_CFG_B="$dir/$name-b.$ext" R_LIVE="$dir/$name.$ext"
  bench_render "$BENCH_DIR/conf/reload/$name-a.$ext" "$R_CFG_A" "${vars[@]}"
  bench_render "$BENCH_DIR/conf/reload/$name-b.$ext" "$R_CFG_B" "${vars[@]}"
  cp "$R_CFG_A" "$R_LIVE"
  case $name in
    sluice)
      local bin=$SLUICE_BIN out
      [ "$t" = sluice_base ] && bin=$SLUICE_BASE_BIN
      for f in "$R_CFG_A" "$R_CFG_B"; do
        if ! out=$(timeout 20 "$bin" check -c "$f" 2>&1 </dev/null); then
          R_REASON="\`sluice check\` rejects conf/reload/$(basename "$f"): ${out%%$'\n'*}"
          R_REASON=${R_REASON//$dir\//}
          return 1
        fi
      done
      R_ADMIN=${ports[2]}
      bench_start "$t" "$BENCH_PROXY_CORE" "$R_LOG" "$bin" run -c "$R_LIVE"
      R_ROOT=$BENCH_PID R_SIGPID=$BENCH_PID R_SIGNAL=HUP
      bench_wait_listen "$R_ADMIN" 15 "$R_ROOT" || { R_REASON="no admin listener"; return 1; }
      ;;
    haproxy)
      for f in "$R_CFG_A" "$R_CFG_B"; do
        haproxy -q -c -f "$f" >"$dir/check.log" 2>&1 || { R_REASON="haproxy -c rejects $(basename "$f")"; cat "$dir/check.log" >&2; return 1; }
      done
      bench_start haproxy "$BENCH_PROXY_CORE" "$R_LOG" "${RELOADLIB[@]}" group -- haproxy -db -f "$R_LIVE"
      R_ROOT=$BENCH_PID R_SIGPID=$BENCH_PID R_SIGNAL=USR2 R_WRAPPER=--wrapper
      ;;
    nginx)
      for f in "$R_CFG_A" "$R_CFG_B"; do
        nginx -q -t -p "$dir" -e stderr -c "$f" >"$dir/check.log" 2>&1 || { R_REASON="nginx -t rejects $(basename "$f")"; cat "$dir/check.log" >&2; return 1; }
      done
      bench_start nginx "$BENCH_PROXY_CORE" "$R_LOG" nginx -p "$dir" -e stderr -c "$R_LIVE"
      R_ROOT=$BENCH_PID R_SIGPID=$BENCH_PID R_SIGNAL=HUP
      ;;
  esac
  bench_wait_listen "$R_PORT" 15 "$R_ROOT" || { R_REASON="did not listen on its port"; return 1; }
  for ((i = 0; i < 100; i++)); do # the first request through it must succeed
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$R_PORT/")" = 200 ] && return 0
    sleep 0.1
  done
  R_REASON="no 200 on its port within 10 s"
  return 1
}

reload_args() {
  R_ARGS=(--root "$R_ROOT" --signal-pid "$R_SIGPID" --signal "$R_SIGNAL" --live "$R_LIVE"
    --cfg-a "$R_CFG_A" --cfg-b "$R_CFG_B" --port "$R_PORT")
  [ -n "$R_WRAPPER" ] && R_ARGS+=("$R_WRAPPER")
  [ -n "$R_ADMIN" ] && R_ARGS+=(--admin-port "$R_ADMIN")
  return 0
}

# reload_phase TARGET REP PHASE
reload_phase() {
  local t=$1 rep=$2 phase=$3 n=0 verdict pfx
  [ "$phase" = storm ] && n=$BENCH_RELOAD_COUNT
  pfx="$BENCH_LOGDIR/$SCENARIO-$t-r$rep-$phase"
  reload_wait_quiet
  verdict=$(taskset -c "$BENCH_LOAD_CORE" "${RELOADLIB[@]}" phase "${R_ARGS[@]}" --phase "$phase" \
    --reloads "$n" --interval "$BENCH_RELOAD_INTERVAL" --coalesce-window "$(awk -v m="$BENCH_RELOAD_COALESCE_MS" 'BEGIN { print m / 1000 }')" \
    --duration "$BENCH_RELOAD_DURATION" --conns "$BENCH_RELOAD_CONNS" --rate "$BENCH_RELOAD_RATE" --rate2 "$BENCH_RELOAD_RATE2" \
    --settle "$BENCH_RELOAD_SETTLE" --log "$R_LOG" --port2 "$R_PORT2" --backend2-port "$BACKEND2_PORT" --ignore "$BACKEND_PID" --ignore "$BACKEND2_PID" \
    --wrk-lua "$BENCH_DIR/lib/wrk_report.lua" --prefix "$pfx" --load-core "$BENCH_LOAD_CORE" \
    --proxy-core "$BENCH_PROXY_CORE" --out "$OUT" --run-id "$BENCH_RUN_ID" --target "$t" --rep "$rep") ||
    verdict="fail: reload_bench.py phase exited with status $?"
  bench_log "  $t rep=$rep $phase: $verdict"
}

reload_wait_quiet() {
  local verdict
  [ "$BENCH_QUIET_RUN_WAIT" = 0 ] && return 0
  verdict=$(taskset -c "$BENCH_LOAD_CORE" "${BENCHLIB[@]}" quiet --max-wait "$BENCH_QUIET_RUN_WAIT" --window 0.5 \
    --ignore "$BACKEND_PID" --ignore "$BACKEND2_PID") || bench_log "  $verdict"
}

reload_backend_start() { # NAME -> BENCH_PID, port in R_BPORT
  local dir="$BENCH_LOGDIR/$1-$SCENARIO" cfg
  mkdir -p "$dir/static"
  R_BPORT=$(bench_free_ports 1)
  cfg="$dir/backend.conf"
  bench_render "$BENCH_DIR/conf/l7/backend.conf" "$cfg" LISTEN="$R_BPORT" DIR="$dir"
  nginx -q -t -p "$dir" -e stderr -c "$cfg" >"$dir/check.log" 2>&1 || { cat "$dir/check.log" >&2; bench_die "backend config"; }
  bench_start "$1" "$BENCH_LOAD_CORE" "$dir/backend.log" nginx -p "$dir" -e stderr -c "$cfg"
  bench_wait_listen "$R_BPORT" 10 "$BENCH_PID" || bench_die "$1 did not start"
}

reload_scenario_run() {
  [ "${BENCH_REPORT_ONLY:-0}" != 1 ] || return 0
  command -v wrk >/dev/null || bench_die "wrk not installed (scripts/bootstrap)"
  command -v curl >/dev/null || bench_die "curl not installed (scripts/bootstrap)"
  local t rep i reason check
  TARGETS=()
  for t in "${WANT[@]}"; do
    declare -F "target_${t}_start" >/dev/null || bench_die "unknown target '$t' (known: $(target_names))"
    if reason=$("target_${t}_unavailable"); then
      bench_log "skipping target $t: $reason"
      "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" \
        target="$t" event=skipped reason="${reason//$BENCH_ROOT\//}"
    else
      TARGETS+=("$t")
      VERSION_OF[$t]=$("target_${t}_version")
    fi
  done
  [ ${#TARGETS[@]} -gt 0 ] || bench_die "no target available"
  bench_log "$SCENARIO: targets=${TARGETS[*]} reps=$BENCH_RELOAD_REPS duration=${BENCH_RELOAD_DURATION}s reloads=$BENCH_RELOAD_COUNT every ${BENCH_RELOAD_INTERVAL}s conns=$BENCH_RELOAD_CONNS new-conn rate=$BENCH_RELOAD_RATE/s proxy core=$BENCH_PROXY_CORE load core=$BENCH_LOAD_CORE"

  reload_backend_start backend
  BACKEND_PID=$BENCH_PID BACKEND_PORT=$R_BPORT
  reload_backend_start backend2
  BACKEND2_PID=$BENCH_PID BACKEND2_PORT=$R_BPORT
  [ "${BENCH_QUIET_WAIT:-30}" = 0 ] || bench_quiet --ignore "$BACKEND_PID" --ignore "$BACKEND2_PID"

  for ((rep = 1; rep <= BENCH_RELOAD_REPS; rep++)); do
    for ((i = 0; i < ${#TARGETS[@]}; i++)); do
      t=${TARGETS[$(((i + rep - 1) % ${#TARGETS[@]}))]}
      bench_log "target $t, repetition $rep"
      if ! reload_start "$t" "$rep"; then
        bench_log "target $t did not start: $R_REASON; last lines of $R_LOG:"
        tail -n 20 "$R_LOG" >&2 2>/dev/null || true
        [ -n "${R_ROOT:-}" ] && bench_alive "$R_ROOT" && bench_stop "$R_ROOT" 3
        "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" \
          target="$t" rep="$rep" event=start_failed reason="$R_REASON"
        R_ROOT=
        continue
      fi
      reload_args
      if check=$(taskset -c "$BENCH_LOAD_CORE" "${RELOADLIB[@]}" check "${R_ARGS[@]}" --port2 "$R_PORT2"); then
        bench_log "  $t reload check: $check"
      else
        bench_log "  $t reload check FAILED (measuring anyway): $check"
      fi
      [ -n "$check" ] || check='{"ok": false}'
      "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" \
        target="$t" rep="$rep" event=reload_check check="$check"
      reload_phase "$t" "$rep" baseline
      reload_phase "$t" "$rep" storm
      bench_stop "$R_ROOT" 10
      bench_log "  target $t stopped with status $BENCH_STOP_RC"
      "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" \
        target="$t" rep="$rep" event=stopped exit_status="$BENCH_STOP_RC" version="${VERSION_OF[$t]}"
      R_ROOT=
    done
  done
  bench_stop "$BACKEND_PID" 5
  bench_stop "$BACKEND2_PID" 5
}

declare -A VERSION_OF=()
reload_scenario_run

# --- report ----------------------------------------------------------------------------------
versions=$("$BENCH_PY" - "$OUT" "$BENCH_RUN_ID" <<'EOF'
import json, sys
seen = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("run_id") == sys.argv[2] and r.get("event") == "stopped" and r.get("version"):
        seen.setdefault(r["target"], r["version"])
print("; ".join("%s: %s" % kv for kv in seen.items()))
EOF
)
targets_csv=$(IFS=,; echo "${WANT[*]}")
title="Configuration reload under load: $BENCH_RELOAD_COUNT reloads every ${BENCH_RELOAD_INTERVAL}s during ${BENCH_RELOAD_DURATION}s of wrk -c$BENCH_RELOAD_CONNS keep-alive + $BENCH_RELOAD_RATE new connections/s"
meta="Run \`$BENCH_RUN_ID\`, $BENCH_RELOAD_REPS repetition(s) per target, each proxy started fresh with configuration A; proxy alone on core $BENCH_PROXY_CORE with one worker, \`wrk -t1 -c$BENCH_RELOAD_CONNS\` (keep-alive), a client opening a new connection per request at $BENCH_RELOAD_RATE/s, and two nginx backends on core $BENCH_LOAD_CORE. *storm*: the same ${BENCH_RELOAD_DURATION} s of load while the proxy reloads $BENCH_RELOAD_COUNT times, every ${BENCH_RELOAD_INTERVAL} s, alternating configurations B and A (a route prefix, a second backend endpoint, a second listener): sluice by SIGHUP, nginx by SIGHUP to its master, HAProxy by a new \`haproxy -sf <old PIDs>\` (classic reload, no socket transfer). Versions: ${versions:-see the logs of the run}."
legend="*p99*: wrk's keep-alive request latency (send to full response), median over repetitions. *new-conn p99*: the new-connection client's connect + request + response time. *failed*: wrk errors (connect, read, write, timeout, non-2xx status) plus failed new-connection requests, summed over repetitions, of all requests sent. *processes*: the proxy's processes at the end of the load / $BENCH_RELOAD_SETTLE s later (at the start of the phase; the peak during the storm): nginx is a master and a worker, more are old workers still draining; HAProxy one process per generation still alive. *2nd listener*: the storm's new connections to the second listener, which B has and A has not: answered 2xx / refused (A running) / lost: accepted, or being accepted, and then reset or closed without an answer, or timed out. *processes died*: proxy processes that exited with an error or a signal during the phases (from the proxy's log: the generations' exit statuses for HAProxy, the master's lines for nginx), over all repetitions. *fds / RSS*: open file descriptors and resident memory of the proxy's processes at the start of the storm and $BENCH_RELOAD_SETTLE s after its load (medians). *CPU µs/req*: CPU of all the proxy's processes (exited generations included) over the load, per completed request. *CPU ms per reload*: the storm's proxy CPU beyond what its requests cost at the baseline's CPU per request, divided by the reloads."
"${RELOADLIB[@]}" report --results "$OUT" --run-id "$BENCH_RUN_ID" --scenario "$SCENARIO" --targets "$targets_csv" \
  --title "$title" --meta "$meta" --legend "$legend" --settle "$BENCH_RELOAD_SETTLE" --md "$BENCH_RESULTS/latest-$SCENARIO.md"
echo "$BENCH_RUN_ID" >"$BENCH_RESULTS/latest-$SCENARIO.run"

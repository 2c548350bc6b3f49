#!/usr/bin/env bash
# Idle memory: RSS per idle proxied TCP connection (9,000 held connections through each proxy).
#
# For each proxy: a Python backend that accepts and holds connections (core BENCH_LOAD_CORE), the
# proxy (alone on BENCH_PROXY_CORE, RLIMIT_NOFILE 20000: each proxied connection is 2 fds), and a
# Python client that opens BENCH_IDLE_CONNS connections through it and never sends a byte.
# The proxy's VmRSS (summed over its process tree) is read before the client starts and again
# once the backend has accepted every connection and the client still sees all of them open.
#
# Knobs: BENCH_IDLE_CONNS (9000), BENCH_IDLE_REPS (1), BENCH_IDLE_TIMEOUT seconds to establish (60).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

: "${BENCH_IDLE_CONNS:=9000}"
: "${BENCH_IDLE_REPS:=1}"
: "${BENCH_IDLE_TIMEOUT:=60}"
SCENARIO=idle_conns
OUT="$BENCH_RESULTS/$SCENARIO.jsonl"
LIB="$BENCH_DIR/lib"
TARGETS=()
for t in $(bench_targets sluice haproxy nginx); do
  [ "$t" = direct ] || TARGETS+=("$t") # nothing to measure without a proxy
done
[ ${#TARGETS[@]} -gt 0 ] || bench_die "no target available"
CASE="$BENCH_IDLE_CONNS idle connections"
bench_log "idle_conns: targets=${TARGETS[*]} connections=$BENCH_IDLE_CONNS reps=$BENCH_IDLE_REPS"

status_field() { # FILE INDEX -> number (0 if unreadable)
  local v
  v=$(awk -v i="$2" '{ print $i }' "$1" 2>/dev/null) || true
  echo "${v:-0}"
}

# measure_one TARGET REP
measure_one() {
  local t=$1 rep=$2 bport lport pfx backend_pid client_pid pid rss0 rss1 fds0 fds1 t0 t1 i ok=false
  local acc=0 open=0 conn=0 alive=0 err=""
  read -r bport lport <<<"$(bench_free_ports 2)"
  pfx="$BENCH_LOGDIR/idle-$t-r$rep"

  bench_start hold-server "$BENCH_LOAD_CORE" "$pfx-backend.log" \
    "$BENCH_PY" "$LIB/hold_server.py" --port "$bport" --status "$pfx-backend.status"
  backend_pid=$BENCH_PID
  bench_wait_listen "$bport" 5 "$backend_pid" || bench_die "hold server did not start"

  if ! "target_${t}_start" l4 "$lport" "$bport"; then
    bench_log "target $t did not start; last lines of its log:"
    tail -n 20 "${TARGET_LOG:-/dev/null}" >&2 || true
    target_stop 3
    bench_stop "$backend_pid" 3
    "${BENCHLIB[@]}" record --out "$OUT" run_id="$BENCH_RUN_ID" scenario="$SCENARIO" case="$CASE" \
      target="$t" rep="$rep" ok=false error="did not start"
    return 0
  fi
  pid=$TARGET_PID
  sleep 1
  rss0=$(bench_tree_rss "$pid")
  fds0=$(bench_tree_fds "$pid")

  t0=$(date +%s.%N)
  bench_start idle-client "$BENCH_LOAD_CORE" "$pfx-client.log" \
    timeout -k 2 $((BENCH_IDLE_TIMEOUT + 60)) "$BENCH_PY" "$LIB/idle_client.py" --port "$lport" \
    --count "$BENCH_IDLE_CONNS" --status "$pfx-client.status" --backend-status "$pfx-backend.status" \
    --timeout "$BENCH_IDLE_TIMEOUT"
  client_pid=$BENCH_PID

  # Wait until every connection reached the backend and the client holds all of them.
  for ((i = 0; i < (BENCH_IDLE_TIMEOUT + 5) * 10; i++)); do
    acc=$(status_field "$pfx-backend.status" 1)
    conn=$(status_field "$pfx-client.status" 1)
    if [ "$acc" -ge "$BENCH_IDLE_CONNS" ] && [ "$conn" -ge "$BENCH_IDLE_CONNS" ]; then break; fi
    bench_alive "$client_pid" || { err="client exited: $(tail -n 1 "$pfx-client.log")"; break; }
    bench_alive "$pid" || { err="proxy exited"; break; }
    sleep 0.1
  done
  t1=$(date +%s.%N)
  if [ -z "$err" ]; then
    sleep 2 # let the proxy finish any lazy per-connection work
    rss1=$(bench_tree_rss "$pid")
    fds1=$(bench_tree_fds "$pid")
    read -r acc open <"$pfx-backend.status"
    read -r conn alive <"$pfx-client.status"
    if [ "$open" -eq "$BENCH_IDLE_CONNS" ] && [ "$alive" -eq "$BENCH_IDLE_CONNS" ]; then
      ok=true
    else
      err="after settling: backend holds $open, client sees $alive of $BENCH_IDLE_CONNS alive"
    fi
  else
    rss1=$(bench_tree_rss "$pid")
    fds1=$(bench_tree_fds "$pid")
  fi
  bench_log "  $t rep=$rep: backend accepted=$acc open=$open, client connected=$conn alive=$alive," \
    "RSS ${rss0} -> ${rss1} KiB, fds ${fds0} -> ${fds1}${err:+, error: $err}"

  bench_stop "$client_pid" 5
  target_stop 10
  local stop_rc=$TARGET_STOP_RC
  bench_stop "$backend_pid" 5
  bench_log "  $t stopped with status $stop_rc"

  "${BENCHLIB[@]}" record --out "$OUT" run_id="$BENCH_RUN_ID" scenario="$SCENARIO" case="$CASE" \
    target="$t" rep="$rep" ok="$ok" error="$err" connections="$BENCH_IDLE_CONNS" \
    backend_accepted="$acc" backend_open="$open" client_alive="$alive" \
    rss_before_kib="$rss0" rss_after_kib="$rss1" fds_before="$fds0" fds_after="$fds1" \
    rss_before_mib="$(awk -v a="$rss0" 'BEGIN { printf "%.1f", a / 1024 }')" \
    rss_after_mib="$(awk -v a="$rss1" 'BEGIN { printf "%.1f", a / 1024 }')" \
    kib_per_conn="$(awk -v a="$rss0" -v b="$rss1" -v n="$BENCH_IDLE_CONNS" 'BEGIN { printf "%.2f", (b - a) / n }')" \
    establish_s="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" \
    exit_status="$stop_rc" version="$("target_${t}_version")"
}

# BENCH_REPORT_ONLY=1 (bench/run report idle_conns RUN_ID) only redoes the report of BENCH_RUN_ID.
if [ "${BENCH_REPORT_ONLY:-0}" != 1 ]; then
for ((rep = 1; rep <= BENCH_IDLE_REPS; rep++)); do
  for ((i = 0; i < ${#TARGETS[@]}; i++)); do
    t=${TARGETS[$(((i + rep - 1) % ${#TARGETS[@]}))]}
    measure_one "$t" "$rep"
  done
done
fi

ordered=$(printf '"%s",' "${TARGETS[@]}")
spec=$(cat <<EOF
{"title": "Idle connections: proxy memory",
 "targets": [${ordered%,}],
 "ref": "haproxy",
 "case_headings": true,
 "show_disturbed": false,
 "columns": [
   {"key": "backend_open", "label": "held end to end", "fmt": "%d"},
   {"key": "rss_before_mib", "label": "RSS before (MiB)", "fmt": "%.1f"},
   {"key": "rss_after_mib", "label": "RSS with connections (MiB)", "fmt": "%.1f"},
   {"key": "kib_per_conn", "label": "KiB per idle connection", "fmt": "%.2f", "range": true},
   {"key": "fds_after", "label": "proxy fds", "fmt": "%d"},
   {"key": "establish_s", "label": "time to open (s)", "fmt": "%.1f"}],
 "ratios": [{"key": "kib_per_conn", "label": "KiB/conn vs HAProxy"}],
 "plots": [
   {"key": "kib_per_conn", "title": "Proxy RSS per idle TCP connection ($BENCH_IDLE_CONNS connections)",
    "ylabel": "KiB per connection", "out": "$BENCH_RESULTS/latest-idle_conns-kib-per-conn.png"}]}
EOF
)
meta="Run \`$BENCH_RUN_ID\`: $BENCH_IDLE_CONNS idle TCP connections held through each proxy (one worker/thread, alone on core $BENCH_PROXY_CORE, RLIMIT_NOFILE $BENCH_NOFILE), $BENCH_IDLE_REPS repetition(s). RSS is VmRSS summed over the proxy's process tree."
"${BENCHLIB[@]}" report --results "$OUT" --run-id "$BENCH_RUN_ID" --scenario "$SCENARIO" \
  --spec "$spec" --meta "$meta" --workdir "$BENCH_LOGDIR" --md "$BENCH_RESULTS/latest-$SCENARIO.md"
echo "$BENCH_RUN_ID" >"$BENCH_RESULTS/latest-$SCENARIO.run"

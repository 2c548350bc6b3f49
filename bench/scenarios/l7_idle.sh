#!/usr/bin/env bash
# Idle HTTP keep-alive memory: RSS per idle client connection (9,000, one request made on each).
#
# One nginx backend (conf/l7/backend.conf) on BENCH_LOAD_CORE serves every proxy; each proxy in
# turn (alone on BENCH_PROXY_CORE, RLIMIT_NOFILE 20000, HTTP configs of conf/l7/) gets
# BENCH_L7_IDLE_CONNS client connections from bench/lib/idle_http_client.py: each makes one GET /
# (100-byte response) and then stays open and silent, a real idle keep-alive connection. The
# proxies keep a few backend connections for all of them. The proxy's VmRSS (summed over its
# process tree) is read before the client starts and again once every connection completed its
# request, 2 s later, while the client still sees all of them open.
#
# Knobs: BENCH_L7_IDLE_CONNS (9000), BENCH_L7_IDLE_REPS (1), BENCH_L7_IDLE_TIMEOUT seconds (60),
#        BENCH_L7_IDLE_BATCH (200: connections opened, and requests in flight, at a time).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

: "${BENCH_L7_IDLE_CONNS:=9000}"
: "${BENCH_L7_IDLE_REPS:=1}"
: "${BENCH_L7_IDLE_TIMEOUT:=60}"
: "${BENCH_L7_IDLE_BATCH:=200}"
SCENARIO=l7_idle
OUT="$BENCH_RESULTS/$SCENARIO.jsonl"
LIB="$BENCH_DIR/lib"
TARGETS=()
for t in $(bench_targets sluice haproxy nginx); do
  [ "$t" = direct ] || TARGETS+=("$t") # nothing to measure without a proxy
done
[ ${#TARGETS[@]} -gt 0 ] || bench_die "no target available"
CASE="$BENCH_L7_IDLE_CONNS idle keep-alive connections"

status_field() { # FILE INDEX -> number (0 if unreadable)
  local v
  v=$(awk -v i="$2" '{ print $i }' "$1" 2>/dev/null) || true
  echo "${v:-0}"
}

# measure_one TARGET REP
measure_one() {
  local t=$1 rep=$2 lport pfx client_pid pid rss0 rss1 fds0 fds1 t0 t1 i ok=false
  local done_=0 alive=0 err=""
  lport=$(bench_free_ports 1)
  pfx="$BENCH_LOGDIR/l7_idle-$t-r$rep"
  if ! "target_${t}_start" l7 "$lport" "$BACKEND_PORT"; then
    bench_log "target $t did not start; last lines of its log:"
    tail -n 20 "${TARGET_LOG:-/dev/null}" >&2 || true
    target_stop 3
    "${BENCHLIB[@]}" record --out "$OUT" run_id="$BENCH_RUN_ID" scenario="$SCENARIO" case="$CASE" \
      target="$t" rep="$rep" ok=false error="did not start"
    return 0
  fi
  pid=$TARGET_PID
  sleep 1
  rss0=$(bench_tree_rss "$pid")
  fds0=$(bench_tree_fds "$pid")

  t0=$(date +%s.%N)
  bench_start idle-http-client "$BENCH_LOAD_CORE" "$pfx-client.log" \
    timeout -k 2 $((BENCH_L7_IDLE_TIMEOUT + 60)) "$BENCH_PY" "$LIB/idle_http_client.py" --port "$lport" \
    --count "$BENCH_L7_IDLE_CONNS" --batch "$BENCH_L7_IDLE_BATCH" --status "$pfx-client.status" --timeout "$BENCH_L7_IDLE_TIMEOUT"
  client_pid=$BENCH_PID

  for ((i = 0; i < (BENCH_L7_IDLE_TIMEOUT + 5) * 10; i++)); do
    done_=$(status_field "$pfx-client.status" 1)
    [ "$done_" -ge "$BENCH_L7_IDLE_CONNS" ] && break
    bench_alive "$client_pid" || { err="client exited: $(tail -n 1 "$pfx-client.log")"; break; }
    bench_alive "$pid" || { err="proxy exited"; break; }
    sleep 0.1
  done
  t1=$(date +%s.%N)
  [ -n "$err" ] || [ "$done_" -ge "$BENCH_L7_IDLE_CONNS" ] || err="timeout: $done_ of $BENCH_L7_IDLE_CONNS requests done"
  if [ -z "$err" ]; then
    sleep 2 # let the proxy finish any lazy per-connection work
    rss1=$(bench_tree_rss "$pid")
    fds1=$(bench_tree_fds "$pid")
    read -r done_ alive <"$pfx-client.status"
    if [ "$alive" -eq "$BENCH_L7_IDLE_CONNS" ]; then
      ok=true
    else
      err="after settling: client sees $alive of $BENCH_L7_IDLE_CONNS alive"
    fi
  else
    rss1=$(bench_tree_rss "$pid")
    fds1=$(bench_tree_fds "$pid")
  fi
  bench_log "  $t rep=$rep: requests done=$done_, alive=$alive, RSS ${rss0} -> ${rss1} KiB," \
    "fds ${fds0} -> ${fds1}${err:+, error: $err}"

  bench_stop "$client_pid" 5
  target_stop 10
  local stop_rc=$TARGET_STOP_RC
  bench_log "  $t stopped with status $stop_rc"

  "${BENCHLIB[@]}" record --out "$OUT" run_id="$BENCH_RUN_ID" scenario="$SCENARIO" case="$CASE" \
    target="$t" rep="$rep" ok="$ok" error="$err" connections="$BENCH_L7_IDLE_CONNS" \
    requests_done="$done_" client_alive="$alive" \
    rss_before_kib="$rss0" rss_after_kib="$rss1" fds_before="$fds0" fds_after="$fds1" \
    rss_before_mib="$(awk -v a="$rss0" 'BEGIN { printf "%.1f", a / 1024 }')" \
    rss_after_mib="$(awk -v a="$rss1" 'BEGIN { printf "%.1f", a / 1024 }')" \
    kib_per_conn="$(awk -v a="$rss0" -v b="$rss1" -v n="$BENCH_L7_IDLE_CONNS" 'BEGIN { printf "%.2f", (b - a) / n }')" \
    establish_s="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" \
    exit_status="$stop_rc" version="$("target_${t}_version")"
}

# BENCH_REPORT_ONLY=1 (bench/run report l7_idle RUN_ID) only redoes the report of BENCH_RUN_ID.
if [ "${BENCH_REPORT_ONLY:-0}" != 1 ]; then
  bench_log "l7_idle: targets=${TARGETS[*]} connections=$BENCH_L7_IDLE_CONNS reps=$BENCH_L7_IDLE_REPS"
  SCENARIO=l7_idle
  IDLE_TARGETS=("${TARGETS[@]}")
  # shellcheck source-path=SCRIPTDIR source=../lib/wrk_scenario.sh
  source "$BENCH_DIR/lib/wrk_scenario.sh" # for l7_backend_start; it sets TARGETS from the wrk defaults
  TARGETS=("${IDLE_TARGETS[@]}")
  l7_backend_start
  for ((rep = 1; rep <= BENCH_L7_IDLE_REPS; rep++)); do
    for ((i = 0; i < ${#TARGETS[@]}; i++)); do
      t=${TARGETS[$(((i + rep - 1) % ${#TARGETS[@]}))]}
      measure_one "$t" "$rep"
    done
  done
  bench_stop "$BACKEND_PID" 5
fi

ordered=$(printf '"%s",' "${TARGETS[@]}")
spec=$(cat <<EOF
{"title": "Idle HTTP keep-alive connections: proxy memory",
 "targets": [${ordered%,}],
 "ref_among": ["haproxy", "nginx"],
 "case_headings": true,
 "show_disturbed": false,
 "columns": [
   {"key": "client_alive", "label": "kept open", "fmt": "%d"},
   {"key": "rss_before_mib", "label": "RSS before (MiB)", "fmt": "%.1f"},
   {"key": "rss_after_mib", "label": "RSS with connections (MiB)", "fmt": "%.1f"},
   {"key": "kib_per_conn", "label": "KiB per idle connection", "fmt": "%.2f", "range": true},
   {"key": "fds_after", "label": "proxy fds", "fmt": "%d"},
   {"key": "establish_s", "label": "time to open (s)", "fmt": "%.1f"}],
 "ratios": [{"key": "kib_per_conn", "label": "KiB/conn vs best", "better": "min"}],
 "plots": [
   {"key": "kib_per_conn", "title": "Proxy RSS per idle HTTP keep-alive connection ($BENCH_L7_IDLE_CONNS connections)",
    "ylabel": "KiB per connection", "out": "$BENCH_RESULTS/latest-l7_idle-kib-per-conn.png"}]}
EOF
)
meta="Run \`$BENCH_RUN_ID\`: $BENCH_L7_IDLE_CONNS HTTP/1.1 client connections held open through each proxy after one request each (one worker/thread, alone on core $BENCH_PROXY_CORE, RLIMIT_NOFILE $BENCH_NOFILE), $BENCH_L7_IDLE_REPS repetition(s). RSS is VmRSS summed over the proxy's process tree; *vs best*: ratio to the lower of HAProxy and nginx."
"${BENCHLIB[@]}" report --results "$OUT" --run-id "$BENCH_RUN_ID" --scenario "$SCENARIO" \
  --spec "$spec" --meta "$meta" --workdir "$BENCH_LOGDIR" --md "$BENCH_RESULTS/latest-$SCENARIO.md"
echo "$BENCH_RUN_ID" >"$BENCH_RESULTS/latest-$SCENARIO.run"

#!/usr/bin/env bash
# HTTP/2 towards clients (h2load -c64 -m10; cleartext with prior knowledge and TLS 1.3 with ALPN h2), HTTP/1.1 or cleartext HTTP/2 to the backend; req/s, CPU per request, backend connections.
#
# Two phases, each with its own backend and proxy processes:
# 1. h2c, h2_tls: each proxy serves HTTP/2 on two listeners (conf/h2/), in front of the nginx
#    backend of the l7 scenarios, to which it talks HTTP/1.1 over kept-alive connections:
#    cleartext HTTP/2 with prior knowledge (sluice `http2: {prior_knowledge: true}`, HAProxy
#    `bind ... proto h2`, nginx `listen ... http2`) and TLS 1.3 with the ECDSA P-256
#    certificate of the tls scenario and ALPN h2,http/1.1.
# 2. h2h2: cleartext HTTP/2 with prior knowledge on both sides (conf/h2h2/): the same h2c
#    listener in front of an nginx backend that speaks only HTTP/2 (`listen ... http2` without
#    ssl) and returns the same body; sluice's cluster has `protocol: http2`, HAProxy's server
#    `proto h2`. nginx has no row: it cannot send HTTP/2 to a backend (proxy_pass speaks
#    HTTP/1.x, grpc_pass only gRPC). The backend's stub_status (a second, HTTP/1.1 port) counts
#    the connections each run opened to it exactly.
# Same layout as l7 and tls: the proxy alone on BENCH_PROXY_CORE (1) with one worker, h2load
# (one thread) and the backend on BENCH_LOAD_CORE (0), one warm-up run per target and case,
# then interleaved repetitions (targets rotated), medians.
#
# Cases (in this order):
#   h2c     h2load -t1 -c64 -m10 -n BENCH_H2_REQUESTS http://...   (h2c, prior knowledge)
#   h2_tls  the same over https:// (TLS 1.3, ALPN h2; the run fails unless h2load reports h2)
#   h2h2    the same as h2c, with HTTP/2 (prior knowledge) from the proxy to the backend
# Each run is a fixed number of requests, so the proxy's CPU over the whole h2load process
# (/proc, from connecting to the last response) divides by exactly the requests it served; the
# 64 connection set-ups (and TLS handshakes) are in it, a small part of 100,000 requests.
# Latency percentiles come from h2load's per-request log. The proxy's connections to the
# backend are counted during each run (peak, at the end, distinct ones seen).
#
# Knobs: BENCH_H2_REPS (3), BENCH_H2_REQUESTS per run (100000), BENCH_H2_WARMUP_REQUESTS (20000,
#        0: no warm-up), BENCH_H2_CONNS (64), BENCH_H2_STREAMS concurrent streams per connection
#        (10), BENCH_H2_CASES ("h2c h2_tls h2h2"), BENCH_H2_TIMEOUT seconds per h2load run (60),
#        BENCH_H2_MIN_CLEAN (2), BENCH_QUIET_RUN_WAIT (2), BENCH_H2_BUDGET seconds (300: past it,
#        no more waiting for quiet and no repeats of disturbed runs);
#        QUICK=1: one repetition of 10,000 requests per target and case, no warm-up, no waiting
#        for quiet and no repeat of disturbed runs (under a minute; a smoke test, not figures to
#        publish).
# sluice is skipped in a phase, with the config error, while its binary rejects that phase's
# config (the listener `http2:` block; the cluster's `protocol: http2` in h2h2).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

if [ "${QUICK:-0}" = 1 ]; then
  : "${BENCH_H2_REPS:=1}" "${BENCH_H2_REQUESTS:=10000}" "${BENCH_H2_WARMUP_REQUESTS:=0}" "${BENCH_H2_MIN_CLEAN:=1}"
  : "${BENCH_QUIET_WAIT:=0}"
  H2_WAIT_QUIET=0
  H2_REDO_DISTURBED=0
else
  : "${BENCH_H2_REPS:=3}" "${BENCH_H2_REQUESTS:=100000}" "${BENCH_H2_WARMUP_REQUESTS:=20000}" "${BENCH_H2_MIN_CLEAN:=2}"
  : "${BENCH_QUIET_WAIT:=10}"
  H2_WAIT_QUIET=1
  H2_REDO_DISTURBED=1
fi
: "${BENCH_H2_CONNS:=64}"
: "${BENCH_H2_STREAMS:=10}"
: "${BENCH_H2_CASES:=h2c h2_tls h2h2}"
: "${BENCH_H2_TIMEOUT:=60}"
: "${BENCH_H2_BUDGET:=300}"
: "${BENCH_QUIET_RUN_WAIT:=2}"

# TLS as in the tls scenario (sluice's defaults, which the HAProxy and nginx configs copy).
TLS13_SUITES=TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384
TLS12_CIPHERS=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305
TLS_GROUPS=X25519:P-256:P-384

SCENARIO=h2
WRK_DEFAULT_TARGETS="sluice haproxy nginx"
# shellcheck source-path=SCRIPTDIR source=../lib/wrk_scenario.sh
source "$BENCH_DIR/lib/wrk_scenario.sh"
# HTTP/2 needs a proxy: `direct` (the HTTP/1.1 backend itself) has no place here.
H2_WANT=()
for t in ${BENCH_TARGETS:-$WRK_DEFAULT_TARGETS}; do [ "$t" = direct ] || H2_WANT+=("$t"); done
kept=()
for t in "${TARGETS[@]}"; do [ "$t" = direct ] || kept+=("$t"); done
TARGETS=("${kept[@]}")
[ ${#TARGETS[@]} -gt 0 ] || bench_die "no HTTP/2-capable target asked for (targets: ${H2_WANT[*]:-none})"

case_title() {
  case $1 in
    h2c) echo "h2c (prior knowledge) in, HTTP/1.1 out: $BENCH_H2_CONNS connections × $BENCH_H2_STREAMS streams, 100-byte responses" ;;
    h2_tls) echo "h2 over TLS 1.3 (ALPN) in, HTTP/1.1 out: $BENCH_H2_CONNS connections × $BENCH_H2_STREAMS streams, 100-byte responses" ;;
    h2h2) echo "h2c (prior knowledge) in, h2c (prior knowledge) out: $BENCH_H2_CONNS connections × $BENCH_H2_STREAMS streams, 100-byte responses" ;;
    *) bench_die "unknown HTTP/2 case '$1' (known: h2c h2_tls h2h2)" ;;
  esac
}
for c in $BENCH_H2_CASES; do case_title "$c" >/dev/null; done

# h2_pki -> PKI_CA, PKI_ECDSA_* (tests/integration/tls_pki.py, the PKI of the tls scenario)
h2_pki() {
  local dir="$BENCH_LOGDIR/pki" json
  json=$("$BENCH_PY" "$BENCH_ROOT/tests/integration/tls_pki.py" --dir "$dir") || bench_die "could not make the test PKI"
  eval "$("$BENCH_PY" -c '
import json, shlex, sys
j = json.loads(sys.stdin.read())
for k, v in (("CA", j["ca_file"]), ("ECDSA_CHAIN", j["leaf_ecdsa"]["chain"]), ("ECDSA_KEY", j["leaf_ecdsa"]["key"]),
             ("ECDSA_COMBINED", j["leaf_ecdsa"]["combined"])):
    print("PKI_%s=%s" % (k, shlex.quote(v)))' <<<"$json")"
  bench_log "test PKI in ${dir#"$BENCH_ROOT"/}"
}

# h2_render_vars LPORT_TLS -> TARGET_RENDER_VARS
h2_render_vars() {
  TARGET_RENDER_VARS=(LISTEN_TLS="$1" ECDSA_CHAIN="$PKI_ECDSA_CHAIN" ECDSA_KEY="$PKI_ECDSA_KEY"
    ECDSA_COMBINED="$PKI_ECDSA_COMBINED" TLS13_SUITES="$TLS13_SUITES" TLS12_CIPHERS="$TLS12_CIPHERS"
    GROUPS="$TLS_GROUPS")
}

# sluice_accepts MODE BINARY: 0 if this sluice build loads conf/MODE/sluice.yaml (`sluice
# check`), else prints the first line of the error.
sluice_accepts() {
  local cfg="$BENCH_LOGDIR/sluice-$1-check.yaml" out
  bench_render "$BENCH_DIR/conf/$1/sluice.yaml" "$cfg" LISTEN=1 BACKEND=2 ${TARGET_RENDER_VARS[@]+"${TARGET_RENDER_VARS[@]}"}
  if out=$(timeout 20 "$2" check -c "$cfg" 2>&1 </dev/null); then return 0; fi
  echo "${out%%$'\n'*}"
  return 1
}

# h2_skip TARGET REASON [DETAIL]: TARGET has no figures in the cases of the current phase
# (PHASE_CASES); the report shows REASON in its rows.
h2_skip() {
  local c
  for c in "${PHASE_CASES[@]}"; do
    "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" \
      target="$1" case="$(case_title "$c")" event=skipped reason="$2" ${3:+detail="$3"}
  done
}

# h2_get URL -> H2_GOT ("HTTP-VERSION STATUS"), H2_BODY: one request with prior knowledge.
h2_get() {
  local f="$BENCH_LOGDIR/probe-body"
  rm -f "$f"
  H2_GOT=$(timeout 10 curl -s -o "$f" -w '%{http_version} %{response_code}' --http2-prior-knowledge "$1") || true
  H2_BODY=$(cat "$f" 2>/dev/null) || H2_BODY=
}

# h2_probe TARGET: one HTTP/2 request per listener (curl; over TLS verifying the chain and the
# name) must come back as HTTP/2 200, and one handshake (s_client) records what was negotiated.
# In the h2h2 phase, one cleartext request must get the HTTP/2 backend's own body.
h2_probe() {
  local t=$1 got hs proto suite group alpn
  h2_get "http://127.0.0.1:${PORT_OF[$t]}/"
  if [ "$H2_GOT" != "2 200" ]; then
    bench_log "target $t: cleartext HTTP/2 (prior knowledge) on port ${PORT_OF[$t]} got '$H2_GOT', not '2 200'"
    return 1
  fi
  if [ "$PHASE" = h2h2 ]; then
    if [ "$H2_BODY" != "$BACKEND_BODY" ]; then
      bench_log "target $t: the body through the proxy is not the HTTP/2 backend's: '$H2_BODY'"
      return 1
    fi
    bench_log "target $t: h2c 200 with the HTTP/2 backend's body (the backend speaks nothing else)"
    return 0
  fi
  got=$(timeout 10 curl -s -o /dev/null -w '%{http_version} %{response_code}' --http2 --cacert "$PKI_CA" \
    --resolve "localhost:${TLS_PORT_OF[$t]}:127.0.0.1" "https://localhost:${TLS_PORT_OF[$t]}/") || true
  if [ "$got" != "2 200" ]; then
    bench_log "target $t: HTTP/2 over TLS on port ${TLS_PORT_OF[$t]} got '$got', not '2 200'"
    return 1
  fi
  hs=$(timeout 10 openssl s_client -connect "127.0.0.1:${TLS_PORT_OF[$t]}" -servername localhost \
    -alpn h2,http/1.1 -CAfile "$PKI_CA" -verify_hostname localhost </dev/null 2>&1 | tr -d '\000') || true
  proto=$(sed -n 's/^New, \([^,]*\), Cipher is .*/\1/p' <<<"$hs")
  suite=$(sed -n 's/^New, [^,]*, Cipher is //p' <<<"$hs")
  group=$(sed -n 's/^Server Temp Key: \([^,]*\).*/\1/p' <<<"$hs")
  alpn=$(sed -n 's/^ALPN protocol: //p' <<<"$hs")
  if [ "$alpn" != h2 ]; then
    bench_log "target $t: ALPN offering h2,http/1.1 selected '${alpn:-nothing}', not h2; s_client said:"
    sed 's/^/    /' <<<"$hs" >&2
    return 1
  fi
  bench_log "target $t: h2c 200, h2 over TLS 200 ($proto $suite, $group, ALPN $alpn)"
  "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" target="$t" \
    event=negotiated protocol="$proto" ciphersuite="$suite" group="$group" alpn="$alpn"
}

# h2load_one TARGET REQUESTS REP ATTEMPT [--warmup] -> RUN_OK, RUN_DISTURBED: the current
# CASE's load against TARGET.
h2load_one() {
  local t=$1 n=$2 rep=$3 attempt=$4 warm=${5:-} pfx verdict url alpn=()
  pfx="$BENCH_LOGDIR/$SCENARIO-$CASE-$t-r$rep-a$attempt${warm:+-warmup}"
  if [ "$CASE" = h2_tls ]; then
    url="https://127.0.0.1:${TLS_PORT_OF[$t]}/"
    alpn=(--expect-alpn h2)
  else
    url="http://127.0.0.1:${PORT_OF[$t]}/"
  fi
  local measure=(taskset -c "$BENCH_LOAD_CORE" "${BENCHLIB[@]}" measure --out "$pfx.meas.json" --ignore "$BACKEND_PID")
  [ -n "${PID_OF[$t]}" ] && measure+=(--proxy "${PID_OF[$t]}" --upstream-port "$BACKEND_PORT")
  [ -n "$BACKEND_STATUS_PORT" ] && measure+=(--backend-status-port "$BACKEND_STATUS_PORT")
  "${measure[@]}" -- timeout -k 2 "$BENCH_H2_TIMEOUT" taskset -c "$BENCH_LOAD_CORE" \
    h2load -t1 -c"$BENCH_H2_CONNS" -m"$BENCH_H2_STREAMS" -n"$n" --log-file "$pfx.requests.tsv" "$url" \
    >"$pfx.h2load.txt" 2>&1 || true
  verdict=$("${BENCHLIB[@]}" h2load-record --meas "$pfx.meas.json" --h2load "$pfx.h2load.txt" \
    --log "$pfx.requests.tsv" "${alpn[@]}" --out "$OUT" --run-id "$BENCH_RUN_ID" --scenario "$SCENARIO" \
    --case "$(case_title "$CASE")" --target "$t" --rep "$rep" --attempt "$attempt" ${warm:+--warmup} \
    --connections "$BENCH_H2_CONNS" --streams "$BENCH_H2_STREAMS" \
    --proxy-core "$BENCH_PROXY_CORE" --load-core "$BENCH_LOAD_CORE")
  rm -f "$pfx.requests.tsv" # a line per request; the record keeps the percentiles
  bench_log "  $t rep=$rep attempt=$attempt${warm:+ (warm-up)}: $verdict"
  RUN_OK=0
  RUN_DISTURBED=0
  [[ $verdict == ok* ]] && RUN_OK=1
  [[ $verdict == *" disturbed "* ]] && RUN_DISTURBED=1
  if [ "$RUN_OK" = 0 ]; then
    bench_log "  end of the h2load output ($pfx.h2load.txt):"
    tail -n 15 "$pfx.h2load.txt" | sed 's/^/    /' >&2 || true
  fi
  return 0
}

run_case() {
  CASE=$1
  bench_log "case $CASE: $(case_title "$CASE")"
  local t rep i
  if [ "$BENCH_H2_WARMUP_REQUESTS" != 0 ]; then
    for t in "${LIVE[@]}"; do
      [ -z "${DEAD[$t]:-}" ] || continue
      h2load_one "$t" "$BENCH_H2_WARMUP_REQUESTS" 0 1 --warmup
      [ "$RUN_OK" = 1 ] || wrk_recover "$t"
    done
  fi
  for ((rep = 1; rep <= BENCH_H2_REPS; rep++)); do
    for ((i = 0; i < ${#LIVE[@]}; i++)); do
      t=${LIVE[$(((i + rep - 1) % ${#LIVE[@]}))]}
      [ -z "${DEAD[$t]:-}" ] || continue
      if [ "$SECONDS" -gt "$BENCH_H2_BUDGET" ] && [ "$H2_REDO_DISTURBED$H2_WAIT_QUIET" != 00 ]; then
        bench_log "  past the ${BENCH_H2_BUDGET}s budget: no more waiting for quiet or repeats of disturbed runs"
        H2_WAIT_QUIET=0 H2_REDO_DISTURBED=0
      fi
      [ "$H2_WAIT_QUIET" = 0 ] || wrk_wait_quiet
      h2load_one "$t" "$BENCH_H2_REQUESTS" "$rep" 1
      if [ "$RUN_OK" = 0 ]; then
        wrk_recover "$t"
        [ -z "${DEAD[$t]:-}" ] || continue
        h2load_one "$t" "$BENCH_H2_REQUESTS" "$rep" 2
      elif [ "$RUN_DISTURBED" = 1 ] && [ "$H2_REDO_DISTURBED" = 1 ]; then
        bench_log "  disturbed: running it again once"
        wrk_wait_quiet
        h2load_one "$t" "$BENCH_H2_REQUESTS" "$rep" 2
      fi
    done
  done
}

# h2h2_backend_start -> BACKEND_PID, BACKEND_PORT, BACKEND_STATUS_PORT, BACKEND_BODY: the nginx
# backend speaking only cleartext HTTP/2 (conf/h2h2/backend.conf), checked to answer HTTP/2 with
# prior knowledge, not to answer HTTP/1.1, and to return the body of the l7 backend.
h2h2_backend_start() {
  local dir="$BENCH_LOGDIR/backend-h2h2" cfg ports got want
  mkdir -p "$dir"
  read -r -a ports <<<"$(bench_free_ports 2)"
  BACKEND_PORT=${ports[0]}
  BACKEND_STATUS_PORT=${ports[1]}
  cfg="$dir/backend.conf"
  want=$(grep -m1 '^ *return 200' "$BENCH_DIR/conf/l7/backend.conf")
  [ "$(grep -m1 '^ *return 200' "$BENCH_DIR/conf/h2h2/backend.conf")" = "$want" ] ||
    bench_die "conf/h2h2/backend.conf does not return the body of conf/l7/backend.conf"
  bench_render "$BENCH_DIR/conf/h2h2/backend.conf" "$cfg" LISTEN="$BACKEND_PORT" STATUS="$BACKEND_STATUS_PORT" DIR="$dir"
  nginx -q -t -p "$dir" -e stderr -c "$cfg" >"$dir/check.log" 2>&1 || { cat "$dir/check.log" >&2; bench_die "HTTP/2 backend config"; }
  bench_start backend-h2 "$BENCH_LOAD_CORE" "$dir/backend.log" nginx -p "$dir" -e stderr -c "$cfg"
  BACKEND_PID=$BENCH_PID
  bench_wait_listen "$BACKEND_PORT" 10 "$BACKEND_PID" || bench_die "HTTP/2 backend did not start"
  bench_wait_listen "$BACKEND_STATUS_PORT" 10 "$BACKEND_PID" || bench_die "HTTP/2 backend did not start"
  h2_get "http://127.0.0.1:$BACKEND_PORT/"
  [ "$H2_GOT" = "2 200" ] || bench_die "HTTP/2 backend: prior knowledge got '$H2_GOT', not '2 200'"
  BACKEND_BODY=$H2_BODY
  got=$(timeout 10 curl -s -o /dev/null -w '%{http_version} %{response_code}' --http1.1 \
    "http://127.0.0.1:$BACKEND_PORT/") || true
  [ "$got" != "1.1 200" ] || bench_die "HTTP/2 backend answers HTTP/1.1 too: a proxy's 200 would not show HTTP/2"
  "${BENCHLIB[@]}" measure --out "$dir/status-check.json" --backend-status-port "$BACKEND_STATUS_PORT" -- true ||
    bench_die "HTTP/2 backend: no stub_status counters on port $BACKEND_STATUS_PORT"
  bench_log "HTTP/2 backend on port $BACKEND_PORT: h2c 200, HTTP/1.1 refused ('$got'), stub_status on $BACKEND_STATUS_PORT"
}

# h2_start_targets: starts PHASE_TARGETS with conf/PHASE/ in front of BACKEND_PORT -> LIVE,
# PID_OF, PORT_OF, TLS_PORT_OF, LOG_OF
h2_start_targets() {
  local t ports bin reason
  declare -gA PID_OF=() PORT_OF=() TLS_PORT_OF=() LOG_OF=() DEAD=()
  LIVE=()
  for t in "${PHASE_TARGETS[@]}"; do
    read -r -a ports <<<"$(bench_free_ports 2)"
    TARGET_RENDER_VARS=()
    [ "$PHASE" = h2 ] && h2_render_vars "${ports[1]}"
    bin=$SLUICE_BIN
    [ "$t" = sluice_base ] && bin=${SLUICE_BASE_BIN:-}
    if [[ $t == sluice* ]] && ! reason=$(sluice_accepts "$PHASE" "$bin"); then
      reason=${reason//$BENCH_ROOT\//}
      bench_log "skipping target $t in ${PHASE_CASES[*]}: $bin rejects conf/$PHASE/sluice.yaml ($reason)"
      # The table shows the error without the file's path and position and the known keys.
      [[ $reason =~ \.yaml:[0-9]+:[0-9]+:\ (.*)$ ]] && reason=${BASH_REMATCH[1]}
      h2_skip "$t" "\`sluice check\` rejects conf/$PHASE/sluice.yaml: ${reason%% (expected*}" "$reason"
      continue
    fi
    if "target_${t}_start" "$PHASE" "${ports[0]}" "$BACKEND_PORT"; then
      PID_OF[$t]=${TARGET_PID:-}
      PORT_OF[$t]=$TARGET_PORT
      TLS_PORT_OF[$t]=${ports[1]}
      LOG_OF[$t]=$TARGET_LOG
      if { [ "$PHASE" != h2 ] || bench_wait_listen "${ports[1]}" 10 "${PID_OF[$t]}"; } && h2_probe "$t"; then
        LIVE+=("$t")
        continue
      fi
    fi
    bench_log "target $t did not come up; last lines of ${TARGET_LOG:-its log}:"
    tail -n 20 "${TARGET_LOG:-/dev/null}" >&2 || true
    [ -n "${TARGET_PID:-}" ] && bench_alive "$TARGET_PID" && bench_stop "$TARGET_PID" 3
    local c
    for c in "${PHASE_CASES[@]}"; do
      "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" \
        target="$t" case="$(case_title "$c")" event=start_failed
    done
  done
  TARGET_RENDER_VARS=()
}

# h2_phase PHASE CASE...: the backend of PHASE, the targets, the cases, then everything stopped.
h2_phase() {
  PHASE=$1
  shift
  PHASE_CASES=("$@")
  local t c
  bench_log "phase $PHASE (cases ${PHASE_CASES[*]})"
  if [ "$PHASE" = h2 ]; then
    h2_pki
    l7_backend_start
    BACKEND_STATUS_PORT=
  else
    h2h2_backend_start
  fi
  PHASE_TARGETS=()
  for t in "${TARGETS[@]}"; do
    if [ "$PHASE" = h2h2 ] && [ "$t" = nginx ]; then
      bench_log "target nginx has no row in h2h2: it cannot send HTTP/2 to a backend"
      continue
    fi
    PHASE_TARGETS+=("$t")
  done
  h2_start_targets
  if [ ${#LIVE[@]} -eq 0 ]; then
    bench_log "phase $PHASE: no target came up"
    bench_stop "$BACKEND_PID" 5
    return 0
  fi
  H2_ANY_LIVE=1

  bench_quiet --ignore "$BACKEND_PID"
  for c in "${PHASE_CASES[@]}"; do run_case "$c"; done

  for t in "${LIVE[@]}"; do
    if [ -z "${PID_OF[$t]}" ] || [ -n "${DEAD[$t]:-}" ]; then continue; fi
    bench_stop "${PID_OF[$t]}" 10
    bench_log "target $t stopped with status $BENCH_STOP_RC"
    "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" \
      target="$t" phase="$PHASE" event=stopped exit_status="$BENCH_STOP_RC" version="${VERSION_OF[$t]}"
  done
  bench_stop "$BACKEND_PID" 5
}

h2_scenario_run() {
  [ "${BENCH_REPORT_ONLY:-0}" != 1 ] || return 0
  command -v h2load >/dev/null || bench_die "h2load not installed (nghttp2-client, scripts/bootstrap)"
  command -v curl >/dev/null || bench_die "curl not installed (scripts/bootstrap)"
  command -v openssl >/dev/null || bench_die "openssl not installed (scripts/bootstrap)"
  bench_log "$SCENARIO: targets=${TARGETS[*]} cases='$BENCH_H2_CASES' reps=$BENCH_H2_REPS requests=$BENCH_H2_REQUESTS warmup=$BENCH_H2_WARMUP_REQUESTS conns=$BENCH_H2_CONNS streams=$BENCH_H2_STREAMS proxy core=$BENCH_PROXY_CORE load core=$BENCH_LOAD_CORE${QUICK:+ QUICK=$QUICK}"
  local t c reason h1_cases=() h2_cases=()
  # Targets asked for but not available here (e.g. sluice not built) get a placeholder row.
  for t in "${H2_WANT[@]}"; do
    [[ " ${TARGETS[*]} " == *" $t "* ]] && continue
    reason=$("target_${t}_unavailable") || true
    reason=${reason//$BENCH_ROOT\//}
    "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" \
      target="$t" event=skipped reason="$reason"
  done
  for c in $BENCH_H2_CASES; do
    if [ "$c" = h2h2 ]; then h2_cases+=("$c"); else h1_cases+=("$c"); fi
  done
  if [ ${#h2_cases[@]} -gt 0 ] && [[ " ${H2_WANT[*]} " == *" nginx "* ]]; then
    PHASE_CASES=("${h2_cases[@]}")
    h2_skip nginx "nginx cannot send HTTP/2 to a backend (proxy_pass speaks HTTP/1.x, grpc_pass only gRPC)"
  fi
  H2_ANY_LIVE=0
  [ ${#h1_cases[@]} -eq 0 ] || h2_phase h2 "${h1_cases[@]}"
  [ ${#h2_cases[@]} -eq 0 ] || h2_phase h2h2 "${h2_cases[@]}"
  [ "$H2_ANY_LIVE" = 1 ] || bench_die "no target came up"
}

h2_scenario_run

# --- report: one table per case --------------------------------------------------------------
if [ "${BENCH_REPORT_ONLY:-0}" = 1 ]; then
  # Rebuilding an older run's report: only the cases it has records of (runs from before the
  # h2h2 case have none of it).
  run_cases=$("$BENCH_PY" -c '
import json, sys
seen = set()
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("run_id") == sys.argv[2] and r.get("case"):
        seen.add(r["case"])
print("\n".join(seen))' "$OUT" "$BENCH_RUN_ID")
  report_cases=""
  for c in $BENCH_H2_CASES; do
    grep -qxF "$(case_title "$c")" <<<"$run_cases" && report_cases+="$c "
  done
  [ -z "$report_cases" ] || BENCH_H2_CASES=${report_cases% }
fi
cases_json() { local c s=""; for c in "$@"; do s+="\"$(case_title "$c")\","; done; echo "${s%,}"; }
# shellcheck disable=SC2086 # a list of case names
cases=$(cases_json $BENCH_H2_CASES)
plot_labels=""
has_h1_out=0 has_h2_out=0
for c in $BENCH_H2_CASES; do
  case $c in
    h2c) label="h2c → HTTP/1.1" has_h1_out=1 ;;
    h2_tls) label="h2 over TLS → HTTP/1.1" has_h1_out=1 ;;
    h2h2) label="h2c → h2c" has_h2_out=1 ;;
  esac
  plot_labels+="\"$(case_title "$c")\": \"$label\","
done
out_title="HTTP/1.1 out"
backend_desc="the nginx backend (HTTP/1.1) on core $BENCH_LOAD_CORE"
accepts_col=""
accepts_meta=""
if [ "$has_h2_out" = 1 ]; then
  out_title="HTTP/2 out"
  backend_desc="the nginx backend on core $BENCH_LOAD_CORE (cleartext HTTP/2 with prior knowledge only)"
  [ "$has_h1_out" = 1 ] && out_title="HTTP/1.1 or HTTP/2 out" \
    backend_desc="the nginx backend on core $BENCH_LOAD_CORE (HTTP/1.1; in the h2c → h2c case cleartext HTTP/2 with prior knowledge only)"
  accepts_col='{"key": "backend_accepts", "label": "backend conns accepted", "fmt": "%.0f"},'
  accepts_meta=" *backend conns accepted* (HTTP/2 backend only): the connections the backend accepted during the run, from its stub_status counter (exact)."
fi
targets_json=$(printf '"%s",' "${H2_WANT[@]}")
targets_json=${targets_json%,}
spec=$(cat <<EOF
{"title": "HTTP/2 in, $out_title (h2load -c$BENCH_H2_CONNS -m$BENCH_H2_STREAMS, $BENCH_H2_REQUESTS requests per run)",
 "cases": [$cases],
 "min_clean": $BENCH_H2_MIN_CLEAN, "targets": [$targets_json], "ref": "haproxy", "case_headings": true,
 "columns": [
   {"key": "rps", "label": "req/s", "fmt": "%.0f", "range": true},
   {"key": "lat_p50_us", "label": "p50 µs", "fmt": "%.0f"},
   {"key": "lat_p99_us", "label": "p99 µs", "fmt": "%.0f"},
   {"key": "cpu_us_per_req", "label": "proxy CPU µs/req", "fmt": "%.1f", "range": true},
   {"key": "core_cpu_us_per_req", "label": "core $BENCH_PROXY_CORE CPU µs/req", "fmt": "%.1f"},
   {"key": "upstream_conns_max", "label": "backend conns (peak)", "fmt": "%.0f"},
   {"key": "upstream_conns_end", "label": "backend conns (end)", "fmt": "%.0f"},
   {"key": "upstream_conns_opened", "label": "backend conns opened (≥)", "fmt": "%.0f"},
   $accepts_col
   {"key": "proxy_core_busy_pct", "label": "core $BENCH_PROXY_CORE busy %", "fmt": "%.0f"},
   {"key": "load_core_busy_pct", "label": "core $BENCH_LOAD_CORE busy %", "fmt": "%.0f"}],
 "ratios": [
   {"key": "rps", "label": "req/s vs HAProxy", "ref": "haproxy"},
   {"key": "rps", "label": "req/s vs nginx", "ref": "nginx"},
   {"key": "cpu_us_per_req", "label": "CPU/req vs HAProxy", "ref": "haproxy"},
   {"key": "cpu_us_per_req", "label": "CPU/req vs nginx", "ref": "nginx"}],
 "pair_ratios": [
   {"key": "cpu_us_per_req", "num": "sluice", "den": "haproxy", "aim_max": 0.75,
    "label": "sluice ÷ HAProxy proxy CPU per request"},
   {"key": "cpu_us_per_req", "num": "sluice", "den": "nginx", "label": "sluice ÷ nginx proxy CPU per request"}],
 "plots": [{"key": "cpu_us_per_req", "title": "Proxy CPU per HTTP/2 request, $out_title (median, min–max)",
            "ylabel": "CPU µs per request", "out": "$BENCH_RESULTS/latest-h2-cpu-per-req.png",
            "labels": {${plot_labels%,}}}]}
EOF
)
negotiated=$("$BENCH_PY" - "$OUT" "$BENCH_RUN_ID" <<'EOF'
import json, sys
seen = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("run_id") != sys.argv[2]:
        continue
    if r.get("event") == "negotiated":
        seen[r["target"]] = "%s, %s, %s, ALPN %s" % (r["protocol"], r["ciphersuite"], r["group"], r["alpn"])
    if r.get("event") == "skipped" and r["target"] not in seen and (not r.get("case") or r["case"].startswith("h2 over TLS")):
        seen[r["target"]] = "skipped (%s)" % r["reason"]
print("; ".join("%s: %s" % (t, v) for t, v in seen.items()))
EOF
)
h2load_version=$(h2load --version 2>/dev/null | head -n 1)
meta="Run \`$BENCH_RUN_ID\`, $BENCH_H2_REPS interleaved repetitions of $BENCH_H2_REQUESTS requests per target and case after a warm-up of $BENCH_H2_WARMUP_REQUESTS; proxy alone on core $BENCH_PROXY_CORE with one worker, \`h2load -t1 -c$BENCH_H2_CONNS -m$BENCH_H2_STREAMS\` (${h2load_version:-h2load}) and $backend_desc. ${negotiated:+TLS negotiated: $negotiated. }*vs HAProxy*, *vs nginx*: ratio of the medians. *backend conns*: the proxy's established connections to the backend (sampled every 0.2 s), at the peak of the run and at its end, and how many of those seen opened during the run (a lower bound: one that lives less than a sample is missed).$accepts_meta Versions: $(wrk_versions)."
wrk_scenario_report "$spec" "$meta"

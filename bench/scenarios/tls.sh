#!/usr/bin/env bash
# TLS termination in front of a plain HTTP backend: handshakes (full ECDSA/RSA, resumed), HTTPS keep-alive, bulk; CPU per handshake vs the crypto floor.
#
# Each proxy terminates TLS 1.3 on two listeners (ECDSA P-256 and RSA 2048 certificates from
# tests/integration/tls_pki.py) and has a plain HTTP listener for the no-TLS baseline, in front
# of the nginx backend of the l7 scenarios. Same layout as l7: the proxy alone on
# BENCH_PROXY_CORE (1) with one worker, clients and backend on BENCH_LOAD_CORE (0), one warm-up
# run per target and case, then interleaved repetitions (targets rotated), medians.
#
# Cases (in this order):
#   plain      wrk -H 'Connection: close' on the plain listener: a TCP connection per request
#   full_ecdsa openssl s_time -new, BENCH_TLS_CLIENTS clients in parallel: a full handshake and
#              one HTTP/1.0 GET per connection, ECDSA P-256 certificate
#   full_rsa   the same with the RSA 2048 certificate
#   resumed    openssl s_time -reuse: every connection resumes the session (TLS 1.3 ticket)
#   keepalive  wrk over HTTPS, 64 keep-alive connections, ~100-byte responses
#   bulk       wrk over HTTPS, 16 keep-alive connections, 1 MiB responses
# The deciding figures are the proxy's CPU per handshake, per request and per GB, from /proc;
# each run's handshake CPU is also divided by the crypto floor measured first on the proxy's
# core with `openssl speed` (sign + X25519 for a full handshake, X25519 for a resumed one,
# AES-128-GCM for the bulk case).
#
# Knobs: BENCH_TLS_REPS (3), BENCH_TLS_DURATION seconds per run (3), BENCH_TLS_WARMUP seconds (1),
#        BENCH_TLS_CLIENTS parallel s_time clients (8), BENCH_TLS_CASES (all six, space-separated),
#        BENCH_TLS_MIN_CLEAN (2), BENCH_QUIET_RUN_WAIT (2), BENCH_TLS_BUDGET seconds (240: past
#        it, no more waiting for quiet and no repeats of disturbed runs, so a busy machine does
#        not double the run time);
#        QUICK=1: one 1 s repetition per target and case, no warm-up, no waiting for quiet and no
#        repeat of disturbed runs (under a minute; a smoke test, not figures to publish).
# sluice is skipped, with the reason, while its binary rejects the listener `tls:` block.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

if [ "${QUICK:-0}" = 1 ]; then
  : "${BENCH_TLS_REPS:=1}" "${BENCH_TLS_DURATION:=1}" "${BENCH_TLS_WARMUP:=0}" "${BENCH_TLS_MIN_CLEAN:=1}"
  : "${BENCH_QUIET_WAIT:=0}"
  TLS_WAIT_QUIET=0
  TLS_REDO_DISTURBED=0
else
  : "${BENCH_TLS_REPS:=3}" "${BENCH_TLS_DURATION:=3}" "${BENCH_TLS_WARMUP:=1}" "${BENCH_TLS_MIN_CLEAN:=2}"
  : "${BENCH_QUIET_WAIT:=10}"
  TLS_WAIT_QUIET=1
  TLS_REDO_DISTURBED=1
fi
: "${BENCH_TLS_CLIENTS:=8}"
: "${BENCH_TLS_BUDGET:=240}"
: "${BENCH_TLS_CASES:=plain full_ecdsa full_rsa resumed keepalive bulk}"
: "${BENCH_QUIET_RUN_WAIT:=2}"

# What every target is configured with: sluice's defaults (src/tls/context.cc), which the
# HAProxy and nginx configs copy: TLS 1.3 suites with AES-128-GCM first and the server's order
# deciding, ECDHE with AEAD for TLS 1.2, groups X25519 first.
TLS13_SUITES=TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384
TLS12_CIPHERS=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305
TLS_GROUPS=X25519:P-256:P-384

SCENARIO=tls
WRK_DEFAULT_TARGETS="sluice haproxy nginx"
WRK_CONNS=64
WRK_PATH=/
WRK_HEADERS=()
WRK_DURATION=$BENCH_TLS_DURATION
WRK_WARMUP=$BENCH_TLS_WARMUP
WRK_REPS=$BENCH_TLS_REPS
WRK_CASE=
# shellcheck source-path=SCRIPTDIR source=../lib/wrk_scenario.sh
source "$BENCH_DIR/lib/wrk_scenario.sh"
# No TLS without a proxy: `direct` (e.g. from `bench/run all direct ...`) has no place here.
TLS_WANT=()
for t in ${BENCH_TARGETS:-$WRK_DEFAULT_TARGETS}; do [ "$t" = direct ] || TLS_WANT+=("$t"); done
kept=()
for t in "${TARGETS[@]}"; do [ "$t" = direct ] || kept+=("$t"); done
TARGETS=("${kept[@]}")
[ ${#TARGETS[@]} -gt 0 ] || bench_die "no TLS-capable target asked for (targets: ${TLS_WANT[*]:-none})"

case_title() {
  case $1 in
    plain) echo "plain HTTP (no TLS), a new connection per request, $BENCH_TLS_CLIENTS concurrent" ;;
    full_ecdsa) echo "full handshake, ECDSA P-256, a new connection per request, $BENCH_TLS_CLIENTS concurrent" ;;
    full_rsa) echo "full handshake, RSA 2048, a new connection per request, $BENCH_TLS_CLIENTS concurrent" ;;
    resumed) echo "resumed handshake (session ticket), ECDSA P-256, a new connection per request, $BENCH_TLS_CLIENTS concurrent" ;;
    keepalive) echo "HTTPS keep-alive, 64 connections, 100-byte responses" ;;
    bulk) echo "HTTPS keep-alive, 16 connections, 1 MiB responses" ;;
    *) bench_die "unknown TLS case '$1' (known: plain full_ecdsa full_rsa resumed keepalive bulk)" ;;
  esac
}
for c in $BENCH_TLS_CASES; do case_title "$c" >/dev/null; done

# tls_pki -> PKI_* paths (tests/integration/tls_pki.py, the same PKI the TLS tests use)
tls_pki() {
  local dir="$BENCH_LOGDIR/pki" json
  json=$("$BENCH_PY" "$BENCH_ROOT/tests/integration/tls_pki.py" --dir "$dir") || bench_die "could not make the test PKI"
  eval "$("$BENCH_PY" -c '
import json, shlex, sys
j = json.loads(sys.stdin.read())
for k, v in (("CA", j["ca_file"]), ("ECDSA_CHAIN", j["leaf_ecdsa"]["chain"]), ("ECDSA_KEY", j["leaf_ecdsa"]["key"]),
             ("ECDSA_COMBINED", j["leaf_ecdsa"]["combined"]), ("RSA_CHAIN", j["leaf_rsa"]["chain"]),
             ("RSA_KEY", j["leaf_rsa"]["key"]), ("RSA_COMBINED", j["leaf_rsa"]["combined"])):
    print("PKI_%s=%s" % (k, shlex.quote(v)))' <<<"$json")"
  bench_log "test PKI in ${dir#"$BENCH_ROOT"/}"
}

# crypto_floor -> FLOOR_* (and a crypto_floor record), measured on the proxy's core before any
# proxy runs.
crypto_floor() {
  local d="$BENCH_LOGDIR/speed" out
  mkdir -p "$d"
  bench_log "crypto floor: openssl speed on core $BENCH_PROXY_CORE"
  taskset -c "$BENCH_PROXY_CORE" timeout 30 openssl speed -seconds 1 -mr ecdsap256 >"$d/ecdsa.txt" 2>&1
  taskset -c "$BENCH_PROXY_CORE" timeout 30 openssl speed -seconds 1 -mr rsa2048 >"$d/rsa.txt" 2>&1
  taskset -c "$BENCH_PROXY_CORE" timeout 30 openssl speed -seconds 1 -mr ecdhx25519 >"$d/x25519.txt" 2>&1
  taskset -c "$BENCH_PROXY_CORE" timeout 30 openssl speed -seconds 1 -mr -bytes 16384 -evp aes-128-gcm >"$d/aes.txt" 2>&1
  out=$("${BENCHLIB[@]}" speed-record --out "$OUT" --run-id "$BENCH_RUN_ID" --scenario "$SCENARIO" \
    --core "$BENCH_PROXY_CORE" --speed "$d"/*.txt) || bench_die "openssl speed gave no usable figures (see $d)"
  eval "$out"
  bench_log "floor: full ECDSA ${FLOOR_ECDSA_US} µs, full RSA ${FLOOR_RSA_US} µs, resumed ${FLOOR_RESUME_US} µs, bulk ${FLOOR_AES_S_PER_GB} CPU-s/GB"
}

# tls_render_vars LPORT_RSA LPORT_PLAIN -> TARGET_RENDER_VARS
tls_render_vars() {
  TARGET_RENDER_VARS=(LISTEN_RSA="$1" LISTEN_PLAIN="$2" ECDSA_CHAIN="$PKI_ECDSA_CHAIN" ECDSA_KEY="$PKI_ECDSA_KEY"
    ECDSA_COMBINED="$PKI_ECDSA_COMBINED" RSA_CHAIN="$PKI_RSA_CHAIN" RSA_KEY="$PKI_RSA_KEY"
    RSA_COMBINED="$PKI_RSA_COMBINED" TLS13_SUITES="$TLS13_SUITES" TLS12_CIPHERS="$TLS12_CIPHERS"
    GROUPS="$TLS_GROUPS")
}

# sluice_accepts_tls BINARY: 0 if this sluice build loads the TLS config (`sluice check`), else
# prints why not.
sluice_accepts_tls() {
  local cfg="$BENCH_LOGDIR/sluice-tls-check.yaml" out
  bench_render "$BENCH_DIR/conf/tls/sluice.yaml" "$cfg" LISTEN=1 BACKEND=2 "${TARGET_RENDER_VARS[@]}"
  if out=$(timeout 20 "$1" check -c "$cfg" 2>&1 </dev/null); then return 0; fi
  echo "${out%%$'\n'*}"
  return 1
}

# tls_probe TARGET: one HTTPS request per TLS listener (curl, verifying the chain and the name)
# and one handshake (s_client) for what was negotiated (a meta record per listener).
tls_probe() {
  local t=$1 port kind code hs proto suite group alpn status
  for kind in ecdsa rsa; do
    port=${PORT_OF[$t]}
    [ "$kind" = rsa ] && port=${RSA_PORT_OF[$t]}
    code=$(timeout 10 curl -s -o /dev/null -w '%{http_code}' --cacert "$PKI_CA" \
      --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/") || true
    hs=$(timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost -alpn http/1.1 \
      -CAfile "$PKI_CA" -verify_hostname localhost </dev/null 2>&1) || true
    proto=$(sed -n 's/^New, \([^,]*\), Cipher is .*/\1/p' <<<"$hs")
    suite=$(sed -n 's/^New, [^,]*, Cipher is //p' <<<"$hs")
    group=$(sed -n 's/^Server Temp Key: \([^,]*\).*/\1/p' <<<"$hs")
    alpn=$(sed -n 's/^ALPN protocol: //p' <<<"$hs")
    if [ "$code" != 200 ] || [ -z "$proto" ]; then
      bench_log "target $t: HTTPS on its $kind listener failed (status '${code}'); s_client said:"
      sed 's/^/    /' <<<"$hs" >&2
      return 1
    fi
    # What each s_time connection sends: an HTTP/1.0 GET without Host; it must get a 200 too.
    status=$(printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$port" -quiet \
      -no-CAfile -no-CApath -no-CAstore 2>/dev/null | head -n 1 | tr -d '\r') || true
    if [[ $status != HTTP/1.[01]" 200"* ]]; then
      bench_log "target $t: the s_time request (HTTP/1.0 GET /, no Host) on its $kind listener got '${status}', not 200"
      return 1
    fi
    bench_log "target $t $kind: status $code, $proto $suite, $group, ALPN ${alpn:-none}"
    "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" target="$t" \
      event=negotiated certificate="$kind" protocol="$proto" ciphersuite="$suite" group="$group" alpn="${alpn:-none}"
  done
}

# stime_one TARGET MODE(new|reuse) PORT FLOOR_US DURATION REP ATTEMPT [--warmup] -> RUN_OK, RUN_DISTURBED
stime_one() {
  local t=$1 mode=$2 port=$3 floor=$4 dur=$5 rep=$6 attempt=$7 warm=${8:-} pfx verdict i files=()
  pfx="$BENCH_LOGDIR/$SCENARIO-$CASE-$t-r$rep-a$attempt${warm:+-warmup}"
  for ((i = 1; i <= BENCH_TLS_CLIENTS; i++)); do files+=("$pfx.stime.$i.txt"); done
  local measure=(taskset -c "$BENCH_LOAD_CORE" "${BENCHLIB[@]}" measure --out "$pfx.meas.json" --ignore "$BACKEND_PID")
  [ -n "${PID_OF[$t]}" ] && measure+=(--proxy "${PID_OF[$t]}")
  # s_time runs until its clock passes start + DURATION whole seconds; each client is one
  # process doing one connection after another. No trust store: s_time does not verify the
  # chain anyway (the probe did, with curl), and OpenSSL would otherwise scan the system's
  # certificate directory for every connection, which made the client several times slower.
  # shellcheck disable=SC2016 # the inner script expands its own arguments
  "${measure[@]}" -- timeout -k 2 $((dur + 20)) taskset -c "$BENCH_LOAD_CORE" bash -c '
    pfx=$1 n=$2 mode=$3 port=$4 dur=$5
    for ((i = 1; i <= n; i++)); do
      openssl s_time -connect "127.0.0.1:$port" "-$mode" -time "$dur" -www / \
        -no-CAfile -no-CApath -no-CAstore >"$pfx.stime.$i.txt" 2>&1 &
    done
    wait' stime "$pfx" "$BENCH_TLS_CLIENTS" "$mode" "$port" "$dur" || true
  verdict=$("${BENCHLIB[@]}" stime-record --meas "$pfx.meas.json" --stime "${files[@]}" --mode "$mode" \
    --out "$OUT" --run-id "$BENCH_RUN_ID" --scenario "$SCENARIO" --case "$(case_title "$CASE")" --target "$t" \
    --rep "$rep" --attempt "$attempt" ${warm:+--warmup} --duration "$dur" --floor-us "$floor" \
    --proxy-core "$BENCH_PROXY_CORE" --load-core "$BENCH_LOAD_CORE")
  bench_log "  $t rep=$rep attempt=$attempt${warm:+ (warm-up)}: $verdict"
  RUN_OK=0
  RUN_DISTURBED=0
  [[ $verdict == ok* ]] && RUN_OK=1
  [[ $verdict == *" disturbed "* ]] && RUN_DISTURBED=1
  return 0
}

# run_one TARGET DURATION REP ATTEMPT [--warmup]: the current CASE's load against TARGET.
run_one() {
  local t=$1
  shift
  case $CASE in
    full_ecdsa) stime_one "$t" new "${PORT_OF[$t]}" "$FLOOR_ECDSA_US" "$@" ;;
    full_rsa) stime_one "$t" new "${RSA_PORT_OF[$t]}" "$FLOOR_RSA_US" "$@" ;;
    resumed) stime_one "$t" reuse "${PORT_OF[$t]}" "$FLOOR_RESUME_US" "$@" ;;
    *)
      # wrk_one reads PORT_OF: the plain listener for the baseline, else the ECDSA TLS one.
      local tls_port=${PORT_OF[$t]}
      [ "$CASE" = plain ] && PORT_OF[$t]=${PLAIN_PORT_OF[$t]}
      wrk_one "$t" "$@"
      PORT_OF[$t]=$tls_port
      ;;
  esac
}

run_case() {
  CASE=$1
  WRK_CASE=$(case_title "$CASE")
  WRK_SCHEME=https
  WRK_PATH=/
  WRK_HEADERS=()
  WRK_RECORD_ARGS=()
  case $CASE in
    plain) WRK_SCHEME=http WRK_CONNS=$BENCH_TLS_CLIENTS WRK_HEADERS=("Connection: close") ;;
    keepalive) WRK_CONNS=64 ;;
    bulk) WRK_CONNS=16 WRK_PATH=/static/1mib.bin WRK_RECORD_ARGS=(--floor-s-per-gb "$FLOOR_AES_S_PER_GB") ;;
  esac
  bench_log "case $CASE: $WRK_CASE"
  local t rep i
  if [ "$WRK_WARMUP" != 0 ]; then
    for t in "${LIVE[@]}"; do
      [ -z "${DEAD[$t]:-}" ] || continue
      run_one "$t" "$WRK_WARMUP" 0 1 --warmup
      [ "$RUN_OK" = 1 ] || wrk_recover "$t"
    done
  fi
  for ((rep = 1; rep <= WRK_REPS; rep++)); do
    for ((i = 0; i < ${#LIVE[@]}; i++)); do
      t=${LIVE[$(((i + rep - 1) % ${#LIVE[@]}))]}
      [ -z "${DEAD[$t]:-}" ] || continue
      if [ "$SECONDS" -gt "$BENCH_TLS_BUDGET" ] && [ "$TLS_REDO_DISTURBED$TLS_WAIT_QUIET" != 00 ]; then
        bench_log "  past the ${BENCH_TLS_BUDGET}s budget: no more waiting for quiet or repeats of disturbed runs"
        TLS_WAIT_QUIET=0 TLS_REDO_DISTURBED=0
      fi
      [ "$TLS_WAIT_QUIET" = 0 ] || wrk_wait_quiet
      run_one "$t" "$WRK_DURATION" "$rep" 1
      if [ "$RUN_OK" = 0 ]; then
        wrk_recover "$t"
        [ -z "${DEAD[$t]:-}" ] || continue
        run_one "$t" "$WRK_DURATION" "$rep" 2
      elif [ "$RUN_DISTURBED" = 1 ] && [ "$TLS_REDO_DISTURBED" = 1 ]; then
        bench_log "  disturbed: running it again once"
        wrk_wait_quiet
        run_one "$t" "$WRK_DURATION" "$rep" 2
      fi
    done
  done
}

tls_scenario_run() {
  [ "${BENCH_REPORT_ONLY:-0}" != 1 ] || return 0
  command -v openssl >/dev/null || bench_die "openssl not installed (scripts/bootstrap)"
  command -v curl >/dev/null || bench_die "curl not installed (scripts/bootstrap)"
  bench_log "$SCENARIO: targets=${TARGETS[*]} cases='$BENCH_TLS_CASES' reps=$WRK_REPS duration=${WRK_DURATION}s warmup=${WRK_WARMUP}s clients=$BENCH_TLS_CLIENTS proxy core=$BENCH_PROXY_CORE load core=$BENCH_LOAD_CORE${QUICK:+ QUICK=$QUICK}"
  local t reason
  # Targets asked for but not available here (e.g. sluice not built) get a placeholder row.
  for t in "${TLS_WANT[@]}"; do
    [[ " ${TARGETS[*]} " == *" $t "* ]] && continue
    reason=$("target_${t}_unavailable") || true
    reason=${reason//$BENCH_ROOT\//}
    "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" \
      target="$t" event=skipped reason="$reason"
  done
  tls_pki
  crypto_floor
  l7_backend_start
  declare -gA PID_OF=() PORT_OF=() RSA_PORT_OF=() PLAIN_PORT_OF=() LOG_OF=() DEAD=()
  LIVE=()
  local ports c bin
  for t in "${TARGETS[@]}"; do
    read -r -a ports <<<"$(bench_free_ports 3)"
    tls_render_vars "${ports[1]}" "${ports[2]}"
    bin=$SLUICE_BIN
    [ "$t" = sluice_base ] && bin=${SLUICE_BASE_BIN:-}
    if [[ $t == sluice* ]] && ! reason=$(sluice_accepts_tls "$bin"); then
      bench_log "skipping target $t: $bin does not accept the listener tls block yet ($reason)"
      "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" \
        target="$t" event=skipped reason="this build rejects the listener tls block" detail="$reason"
      continue
    fi
    if "target_${t}_start" tls "${ports[0]}" "$BACKEND_PORT"; then
      PID_OF[$t]=${TARGET_PID:-}
      PORT_OF[$t]=$TARGET_PORT
      RSA_PORT_OF[$t]=${ports[1]}
      PLAIN_PORT_OF[$t]=${ports[2]}
      LOG_OF[$t]=$TARGET_LOG
      if bench_wait_listen "${ports[1]}" 10 "${PID_OF[$t]}" && bench_wait_listen "${ports[2]}" 10 "${PID_OF[$t]}" &&
        tls_probe "$t"; then
        LIVE+=("$t")
        continue
      fi
    fi
    bench_log "target $t did not come up; last lines of ${TARGET_LOG:-its log}:"
    tail -n 20 "${TARGET_LOG:-/dev/null}" >&2 || true
    [ -n "${TARGET_PID:-}" ] && bench_alive "$TARGET_PID" && bench_stop "$TARGET_PID" 3
    "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" \
      target="$t" event=start_failed
  done
  TARGET_RENDER_VARS=()
  [ ${#LIVE[@]} -gt 0 ] || bench_die "no target came up"

  bench_quiet --ignore "$BACKEND_PID"
  for c in $BENCH_TLS_CASES; do run_case "$c"; done

  for t in "${LIVE[@]}"; do
    if [ -z "${PID_OF[$t]}" ] || [ -n "${DEAD[$t]:-}" ]; then continue; fi
    bench_stop "${PID_OF[$t]}" 10
    bench_log "target $t stopped with status $BENCH_STOP_RC"
    "${BENCHLIB[@]}" record --out "$OUT" kind=meta run_id="$BENCH_RUN_ID" scenario="$SCENARIO" \
      target="$t" event=stopped exit_status="$BENCH_STOP_RC" version="${VERSION_OF[$t]}"
  done
  bench_stop "$BACKEND_PID" 5
}

tls_scenario_run

# --- report: the crypto floor, then one table per group of cases ------------------------------
md_dir="$BENCH_LOGDIR/report"
mkdir -p "$md_dir"
rm -f "$md_dir"/*.md
"${BENCHLIB[@]}" floor-md --results "$OUT" --run-id "$BENCH_RUN_ID" --scenario "$SCENARIO" --md "$md_dir/floor.md" >/dev/null

cases_json() { local c s=""; for c in "$@"; do s+="\"$(case_title "$c")\","; done; echo "${s%,}"; }
# Every target asked for, available here or not: the report shows a placeholder row for a
# target the run skipped.
targets_json=$(printf '"%s",' "${TLS_WANT[@]}")
targets_json=${targets_json%,}
common_tail="\"proxy_core_busy_pct\", \"label\": \"core $BENCH_PROXY_CORE busy %\", \"fmt\": \"%.0f\"},
   {\"key\": \"load_core_busy_pct\", \"label\": \"core $BENCH_LOAD_CORE busy %\", \"fmt\": \"%.0f\"}"

spec_hs=$(cat <<EOF
{"title": "TLS handshakes: a new connection per request (s_time -new / -reuse; wrk for plain HTTP)",
 "cases": [$(cases_json plain full_ecdsa full_rsa resumed)],
 "min_clean": $BENCH_TLS_MIN_CLEAN, "targets": [$targets_json], "ref_among": ["haproxy", "nginx"], "case_headings": true,
 "columns": [
   {"key": "rps", "label": "conn/s", "fmt": "%.0f", "range": true},
   {"key": "cpu_us_per_req", "label": "proxy CPU µs/conn", "fmt": "%.1f", "range": true},
   {"key": "core_cpu_us_per_req", "label": "core $BENCH_PROXY_CORE CPU µs/conn", "fmt": "%.1f"},
   {"key": "floor_us", "label": "crypto floor µs", "fmt": "%.1f"},
   {"key": "x_floor", "label": "× floor", "fmt": "%.1f"},
   {"key": "resumed_pct", "label": "resumed %", "fmt": "%.0f"},
   {"key": $common_tail],
 "ratios": [{"key": "cpu_us_per_req", "label": "CPU/conn vs best", "better": "min"}],
 "plots": [{"key": "cpu_us_per_req", "title": "Proxy CPU per TLS connection (median, min–max)",
            "ylabel": "CPU µs per connection", "out": "$BENCH_RESULTS/latest-tls-cpu-per-handshake.png",
            "labels": {"$(case_title plain)": "plain HTTP", "$(case_title full_ecdsa)": "full ECDSA",
                       "$(case_title full_rsa)": "full RSA", "$(case_title resumed)": "resumed ECDSA"}}]}
EOF
)
spec_ka=$(cat <<EOF
{"title": "HTTPS keep-alive, small responses (wrk)",
 "cases": [$(cases_json keepalive)],
 "min_clean": $BENCH_TLS_MIN_CLEAN, "targets": [$targets_json], "ref_among": ["haproxy", "nginx"], "case_headings": true,
 "columns": [
   {"key": "rps", "label": "req/s", "fmt": "%.0f", "range": true},
   {"key": "lat_p50_us", "label": "p50 µs", "fmt": "%.0f"},
   {"key": "lat_p99_us", "label": "p99 µs", "fmt": "%.0f"},
   {"key": "cpu_us_per_req", "label": "proxy CPU µs/req", "fmt": "%.1f", "range": true},
   {"key": "core_cpu_us_per_req", "label": "core $BENCH_PROXY_CORE CPU µs/req", "fmt": "%.1f"},
   {"key": $common_tail],
 "ratios": [{"key": "rps", "label": "req/s vs best", "better": "max"},
            {"key": "cpu_us_per_req", "label": "CPU/req vs best", "better": "min"}]}
EOF
)
spec_bulk=$(cat <<EOF
{"title": "HTTPS bulk: 1 MiB responses (wrk)",
 "cases": [$(cases_json bulk)],
 "min_clean": $BENCH_TLS_MIN_CLEAN, "targets": [$targets_json], "ref_among": ["haproxy", "nginx"], "case_headings": true,
 "columns": [
   {"key": "gbps", "label": "Gbit/s", "fmt": "%.2f", "range": true},
   {"key": "cpu_s_per_gb", "label": "proxy CPU-s/GB", "fmt": "%.3f", "range": true},
   {"key": "core_cpu_s_per_gb", "label": "core $BENCH_PROXY_CORE CPU-s/GB", "fmt": "%.3f"},
   {"key": "floor_s_per_gb", "label": "AES-GCM floor CPU-s/GB", "fmt": "%.3f"},
   {"key": "x_floor", "label": "× floor", "fmt": "%.1f"},
   {"key": $common_tail],
 "ratios": [{"key": "gbps", "label": "Gbit/s vs best", "better": "max"},
            {"key": "cpu_s_per_gb", "label": "CPU/GB vs best", "better": "min"}]}
EOF
)

negotiated=$("$BENCH_PY" - "$OUT" "$BENCH_RUN_ID" <<'EOF'
import json, sys
seen = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("run_id") == sys.argv[2] and r.get("event") == "negotiated":
        seen.setdefault(r["target"], []).append("%s %s, %s, %s, ALPN %s" % (
            r["certificate"], r["protocol"], r["ciphersuite"], r["group"], r.get("alpn", "?")))
    if r.get("run_id") == sys.argv[2] and r.get("event") == "skipped":
        seen[r["target"]] = ["skipped (%s)" % r["reason"]]
print("; ".join("%s: %s" % (t, " / ".join(v)) for t, v in seen.items()))
EOF
)
meta="Run \`$BENCH_RUN_ID\`, $WRK_REPS interleaved repetitions of $WRK_DURATION s per target and case after a $WRK_WARMUP s warm-up; proxy alone on core $BENCH_PROXY_CORE, clients (\`openssl s_time\` ×$BENCH_TLS_CLIENTS, \`wrk -t1\`) and the nginx backend on core $BENCH_LOAD_CORE. Negotiated: $negotiated. *vs best*: ratio to the better of HAProxy and nginx. Versions: $(wrk_versions)."
report_part() { # NAME SPEC META CASE... (nothing when none of the cases ran)
  local c any=0
  for c in "${@:4}"; do [[ " $BENCH_TLS_CASES " == *" $c "* ]] && any=1; done
  [ "$any" = 1 ] || return 0
  "${BENCHLIB[@]}" report --results "$OUT" --run-id "$BENCH_RUN_ID" --scenario "$SCENARIO" --spec "$2" \
    --meta "$3" --workdir "$BENCH_LOGDIR" --md "$md_dir/$1.md" >/dev/null || true
}
report_part hs "$spec_hs" "$meta" plain full_ecdsa full_rsa resumed
report_part ka "$spec_ka" "" keepalive
report_part bulk "$spec_bulk" "" bulk
for part in floor hs ka bulk; do
  [ -f "$md_dir/$part.md" ] && { cat "$md_dir/$part.md"; echo; }
done >"$BENCH_RESULTS/latest-$SCENARIO.md"
echo "$BENCH_RUN_ID" >"$BENCH_RESULTS/latest-$SCENARIO.run"
cat "$BENCH_RESULTS/latest-$SCENARIO.md"

# shellcheck shell=bash
# Targets: the things a scenario sends traffic through. Sourced by bench/lib.sh.
#
# Each target NAME provides
#   target_NAME_unavailable        prints a reason and returns 0 if it cannot run here
#   target_NAME_version            prints one line
#   target_NAME_start MODE LISTEN_PORT BACKEND_PORT
#                                  starts it pinned to BENCH_PROXY_CORE in front of
#                                  127.0.0.1:BACKEND_PORT using bench/conf/MODE/NAME.*; sets
#                                  TARGET_PID (empty if no process), TARGET_PORT (where clients
#                                  connect) and TARGET_LOG; returns non-zero if it did not come up.
#                                  TARGET_RENDER_VARS (KEY=VALUE...) adds placeholders of the
#                                  scenario's own (e.g. the tls mode's second port and cert files).
# target_stop stops whatever target_start started and sets TARGET_STOP_RC.
# shellcheck disable=SC2034 # TARGET_* are read by the scenarios
#
# A new mode (e.g. l7) only needs its config templates in bench/conf/l7/.

target_names() { declare -F | awk '{print $3}' | sed -n 's/^target_\(.*\)_start$/\1/p' | tr '\n' ' '; }

_target_conf() { # MODE NAME EXT -> template path
  local tpl="$BENCH_DIR/conf/$1/$2.$3"
  [ -f "$tpl" ] || bench_die "no config template $tpl"
  echo "$tpl"
}

_target_files() { # NAME MODE -> sets TARGET_DIR (per target+mode scratch dir), TARGET_LOG
  TARGET_DIR="$BENCH_LOGDIR/$1-$2"
  mkdir -p "$TARGET_DIR"
  TARGET_LOG="$TARGET_DIR/$1.log"
}

target_stop() {
  TARGET_STOP_RC=
  if [ -n "${TARGET_PID:-}" ]; then
    bench_stop "$TARGET_PID" "${1:-10}"
    TARGET_STOP_RC=$BENCH_STOP_RC
  fi
  TARGET_PID=
}

# --- direct: the client talks to the backend itself --------------------------------------------
target_direct_unavailable() { return 1; }
target_direct_version() { echo "none"; }
target_direct_start() {
  TARGET_PID=
  TARGET_PORT=$3
  TARGET_LOG=/dev/null
}

# --- sluice ------------------------------------------------------------------------------------
target_sluice_unavailable() {
  if [ ! -x "$SLUICE_BIN" ]; then echo "$SLUICE_BIN not built (make build)"; return 0; fi
  return 1
}
target_sluice_version() {
  local out
  if out=$(timeout 5 "$SLUICE_BIN" --version 2>&1 </dev/null) && [ -n "$out" ]; then
    echo "${out%%$'\n'*}"
  else
    echo "sluice (binary built $(date -r "$SLUICE_BIN" '+%F %H:%M'))"
  fi
}
target_sluice_start() { _start_sluice sluice "$SLUICE_BIN" "$@"; }

# The same binary with conf/MODE/sluice_log.yaml (its access log on; scenario l7_log).
target_sluice_log_unavailable() {
  target_sluice_unavailable && return 0
  [ -f "$BENCH_DIR/conf/${WRK_MODE:-l7}/sluice_log.yaml" ] && return 1
  echo "no conf/${WRK_MODE:-l7}/sluice_log.yaml"
  return 0
}
target_sluice_log_version() { target_sluice_version; }
target_sluice_log_start() { _start_sluice sluice_log "$SLUICE_BIN" "$@"; }

# The same binary with its dashboard open (scenario l7_dashboard): conf/MODE/sluice_dash.yaml,
# and lib/dashboard_poller.py on the load core getting the page's data as the page does:
# sluice_dash polls GET /dashboard/data once a second, sluice_events follows one
# GET /dashboard/events stream (one a second). target_*_check fails once the client stopped
# (sluice refused it: the page would be closed or polling, and the run would measure that).
target_sluice_dash_unavailable() {
  target_sluice_unavailable && return 0
  [ -f "$BENCH_DIR/conf/${WRK_MODE:-l7}/sluice_dash.yaml" ] && return 1
  echo "no conf/${WRK_MODE:-l7}/sluice_dash.yaml"
}
target_sluice_dash_version() { target_sluice_version; }
target_sluice_dash_start() { _start_sluice_dashboard sluice_dash --interval 1 -- "$@"; }
target_sluice_dash_check() { _check_dashboard_client sluice_dash; }
target_sluice_events_unavailable() { target_sluice_dash_unavailable; }
target_sluice_events_version() { target_sluice_version; }
target_sluice_events_start() { _start_sluice_dashboard sluice_events --events -- "$@"; }
target_sluice_events_check() { _check_dashboard_client sluice_events; }

declare -gA DASHBOARD_CLIENT_PID=() DASHBOARD_CLIENT_LOG=()
# _start_sluice_dashboard NAME CLIENT_ARGS... -- MODE LISTEN_PORT BACKEND_PORT
_start_sluice_dashboard() {
  local name=$1 admin pid client=()
  shift
  while [ "$1" != -- ]; do client+=("$1"); shift; done
  shift
  admin=$(bench_free_ports 1)
  local TARGET_RENDER_VARS=(ADMIN="$admin")  # seen by _start_sluice (dynamic scope)
  local TARGET_TEMPLATE=sluice_dash
  _start_sluice "$name" "$SLUICE_BIN" "$@" || return 1
  pid=$TARGET_PID
  bench_wait_listen "$admin" 15 "$pid" || { bench_log "$name: no admin listener"; return 1; }
  DASHBOARD_CLIENT_LOG[$name]="$TARGET_DIR/dashboard-client.log"
  bench_start "$name-dashboard-client" "$BENCH_LOAD_CORE" "${DASHBOARD_CLIENT_LOG[$name]}" \
    python3 "$BENCH_DIR/lib/dashboard_poller.py" --port "$admin" "${client[@]}"
  DASHBOARD_CLIENT_PID[$name]=$BENCH_PID
  TARGET_PID=$pid
}

# _check_dashboard_client NAME: fails (with the client's log) once the client has stopped.
_check_dashboard_client() {
  local name=$1
  bench_alive "${DASHBOARD_CLIENT_PID[$name]}" && return 0
  bench_log "error: $name's dashboard client stopped; the dashboard is no longer open. Its log:"
  tail -n 20 "${DASHBOARD_CLIENT_LOG[$name]}" >&2 || true
  return 1
}

# _start_sluice NAME BINARY MODE LISTEN_PORT BACKEND_PORT: one sluice build as target NAME.
_start_sluice() {
  local name=$1 bin=$2 mode=$3 lport=$4 bport=$5 cfg i
  _target_files "$name" "$mode"
  cfg="$TARGET_DIR/sluice.yaml"
  # A target's own template (conf/MODE/NAME.yaml, or TARGET_TEMPLATE's) if the mode has one,
  # else sluice.yaml.
  local tpl="$BENCH_DIR/conf/$mode/${TARGET_TEMPLATE:-$name}.yaml"
  [ -f "$tpl" ] || tpl=$(_target_conf "$mode" sluice yaml)
  bench_render "$tpl" "$cfg" LISTEN="$lport" BACKEND="$bport" DIR="$TARGET_DIR" \
    ${TARGET_RENDER_VARS[@]+"${TARGET_RENDER_VARS[@]}"}
  bench_start "$name" "$BENCH_PROXY_CORE" "$TARGET_LOG" "$bin" run -c "$cfg"
  TARGET_PID=$BENCH_PID
  TARGET_PORT=$lport
  # Ready when it says so or, since the ready line may be filtered by log_level, when the
  # listener is bound.
  for ((i = 0; i < 150; i++)); do
    if grep -q 'sluice ready' "$TARGET_LOG" 2>/dev/null || [ -n "$(ss -Htln "sport = :$lport")" ]; then
      return 0
    fi
    bench_alive "$TARGET_PID" || { bench_log "$name exited during startup"; return 1; }
    sleep 0.1
  done
  bench_log "timeout: $name neither printed 'sluice ready' nor listened on $lport within 15s"
  return 1
}

# --- sluice_epoll / sluice_io_uring: the same sluice binary on each event backend -------------
# `bench/run l7 sluice_epoll sluice_io_uring` compares the backends in one interleaved run.
target_sluice_epoll_unavailable() { target_sluice_unavailable; }
target_sluice_epoll_version() { echo "$(target_sluice_version) on epoll"; }
target_sluice_epoll_start() { SLUICE_EVENT_BACKEND=epoll _start_sluice sluice_epoll "$SLUICE_BIN" "$@"; }
target_sluice_io_uring_unavailable() { target_sluice_unavailable; }
target_sluice_io_uring_version() { echo "$(target_sluice_version) on io_uring"; }
target_sluice_io_uring_start() {
  SLUICE_EVENT_BACKEND=io_uring _start_sluice sluice_io_uring "$SLUICE_BIN" "$@"
}
# sluice_io_uring_readiness: io_uring, connections reading on readiness (event.receive:
# readiness), to weigh receiving by completion against it in one run.
target_sluice_io_uring_readiness_unavailable() { target_sluice_unavailable; }
target_sluice_io_uring_readiness_version() { echo "$(target_sluice_version) on io_uring, receive on readiness"; }
target_sluice_io_uring_readiness_start() {
  SLUICE_EVENT_BACKEND=io_uring SLUICE_EVENT_RECEIVE=readiness \
    _start_sluice sluice_io_uring_readiness "$SLUICE_BIN" "$@"
}

# --- sluice_base: another sluice binary (SLUICE_BASE_BIN), e.g. the build before a change ----
# Runs with the same config templates as sluice, so `bench/run l7 sluice sluice_base` compares
# two builds in one run, interleaved like any other targets.
target_sluice_base_unavailable() {
  if [ -z "${SLUICE_BASE_BIN:-}" ]; then echo "SLUICE_BASE_BIN not set"; return 0; fi
  if [ ! -x "$SLUICE_BASE_BIN" ]; then echo "$SLUICE_BASE_BIN is not executable"; return 0; fi
  return 1
}
target_sluice_base_version() { echo "sluice (base build $(date -r "$SLUICE_BASE_BIN" '+%F %H:%M'))"; }
target_sluice_base_start() { _start_sluice sluice_base "$SLUICE_BASE_BIN" "$@"; }

# --- HAProxy -----------------------------------------------------------------------------------
target_haproxy_unavailable() {
  command -v haproxy >/dev/null || { echo "haproxy not installed (scripts/bootstrap)"; return 0; }
  return 1
}
target_haproxy_version() { haproxy -v 2>&1 | awk 'NR == 1 { print "HAProxy " $3 }'; }
target_haproxy_start() {
  local mode=$1 lport=$2 bport=$3 cfg
  _target_files haproxy "$mode"
  cfg="$TARGET_DIR/haproxy.cfg"
  bench_render "$(_target_conf "$mode" haproxy cfg)" "$cfg" LISTEN="$lport" BACKEND="$bport" DIR="$TARGET_DIR" \
    ${TARGET_RENDER_VARS[@]+"${TARGET_RENDER_VARS[@]}"}
  haproxy -q -c -f "$cfg" >"$TARGET_DIR/check.log" 2>&1 || { cat "$TARGET_DIR/check.log" >&2; return 1; }
  # -db: foreground, no master process: the PID is the (single) worker.
  bench_start haproxy "$BENCH_PROXY_CORE" "$TARGET_LOG" haproxy -db -f "$cfg"
  TARGET_PID=$BENCH_PID
  TARGET_PORT=$lport
  bench_wait_listen "$lport" 10 "$TARGET_PID"
}

# --- nginx (stream module) ---------------------------------------------------------------------
NGINX_STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
target_nginx_unavailable() {
  command -v nginx >/dev/null || { echo "nginx not installed (scripts/bootstrap)"; return 0; }
  [ -f "$NGINX_STREAM_MODULE" ] || { echo "$NGINX_STREAM_MODULE missing (libnginx-mod-stream, scripts/bootstrap)"; return 0; }
  return 1
}
target_nginx_version() { nginx -v 2>&1 | awk 'NR == 1 { print $3 }'; }
target_nginx_start() { _start_nginx nginx "$@"; }

# nginx with conf/MODE/nginx_log.conf (its access log on; scenario l7_log).
target_nginx_log_unavailable() {
  target_nginx_unavailable && return 0
  [ -f "$BENCH_DIR/conf/${WRK_MODE:-l7}/nginx_log.conf" ] && return 1
  echo "no conf/${WRK_MODE:-l7}/nginx_log.conf"
  return 0
}
target_nginx_log_version() { target_nginx_version; }
target_nginx_log_start() { _start_nginx nginx_log "$@"; }

_start_nginx() {
  local name=$1 mode=$2 lport=$3 bport=$4 cfg
  _target_files "$name" "$mode"
  cfg="$TARGET_DIR/nginx.conf"
  bench_render "$(_target_conf "$mode" "$name" conf)" "$cfg" LISTEN="$lport" BACKEND="$bport" \
    DIR="$TARGET_DIR" STREAM_MODULE="$NGINX_STREAM_MODULE" ${TARGET_RENDER_VARS[@]+"${TARGET_RENDER_VARS[@]}"}
  nginx -q -t -p "$TARGET_DIR" -e stderr -c "$cfg" >"$TARGET_DIR/check.log" 2>&1 || { cat "$TARGET_DIR/check.log" >&2; return 1; }
  # daemon off in the config: the PID is the master; the worker is its child (the CPU and RSS
  # helpers sum the whole tree).
  bench_start "$name" "$BENCH_PROXY_CORE" "$TARGET_LOG" nginx -p "$TARGET_DIR" -e stderr -c "$cfg"
  TARGET_PID=$BENCH_PID
  TARGET_PORT=$lport
  bench_wait_listen "$lport" 10 "$TARGET_PID"
}

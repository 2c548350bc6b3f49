# shellcheck shell=bash
# Shared helpers for bench/scenarios/*.sh. Source it; do not execute it.
#
# Conventions
#   - every process a scenario starts goes through bench_start (pinned with taskset, PID
#     recorded) and is stopped by PID with bench_stop; an EXIT trap stops whatever is left;
#   - every load tool runs under `timeout`;
#   - all traffic stays on 127.0.0.1;
#   - raw results are JSON lines in bench/results/<scenario>.jsonl, tagged with BENCH_RUN_ID.

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
BENCH_PY=/usr/bin/python3
BENCHLIB=("$BENCH_PY" "$BENCH_DIR/lib/benchlib.py")

# Knobs (environment). See docs/benchmarks.md.
: "${BENCH_PROXY_CORE:=1}"      # the proxy under test runs alone on this core
: "${BENCH_LOAD_CORE:=0}"       # load generators and test backends run here
: "${BENCH_NOFILE:=20000}"      # RLIMIT_NOFILE for proxies and test peers
: "${BENCH_RUN_ID:=$(date +%Y%m%dT%H%M%S)}"
: "${BENCH_RESULTS:=$BENCH_DIR/results}"
: "${SLUICE_BIN:=$BENCH_ROOT/build/release/sluice}"
export BENCH_PROXY_CORE BENCH_LOAD_CORE BENCH_NOFILE BENCH_RUN_ID BENCH_RESULTS SLUICE_BIN

BENCH_LOGDIR="$BENCH_RESULTS/logs/$BENCH_RUN_ID"
mkdir -p "$BENCH_RESULTS" "$BENCH_LOGDIR"

declare -a BENCH_PIDS=()
declare -A BENCH_PID_NAME=()

bench_log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
bench_die() { bench_log "error: $*"; exit 1; }

# bench_start NAME CORE LOGFILE CMD... -> sets BENCH_PID.
# The subshell raises its fd limit and execs taskset, which execs CMD: the recorded PID is the
# PID of CMD itself, so /proc/$BENCH_PID is the process under test.
bench_start() {
  local name=$1 core=$2 logfile=$3
  shift 3
  (
    ulimit -n "$BENCH_NOFILE" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    exec taskset -c "$core" "$@"
  ) >"$logfile" 2>&1 </dev/null &
  BENCH_PID=$!
  BENCH_PIDS+=("$BENCH_PID")
  BENCH_PID_NAME[$BENCH_PID]=$name
  bench_log "started $name pid=$BENCH_PID core=$core log=${logfile#"$BENCH_ROOT"/}"
}

# True while PID runs (a zombie does not count).
bench_alive() {
  local state
  state=$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# bench_stop PID [TIMEOUT_S] -> SIGTERM, then SIGKILL after TIMEOUT_S (default 5).
# Sets BENCH_STOP_RC to the exit status (143 = died of SIGTERM, 137 = had to be killed).
bench_stop() {
  local pid=$1 timeout=${2:-5} name i
  name=${BENCH_PID_NAME[$pid]:-pid}
  BENCH_STOP_RC=0
  if bench_alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
      bench_alive "$pid" || break
      sleep 0.1
    done
    if bench_alive "$pid"; then
      bench_log "$name pid=$pid ignored SIGTERM for ${timeout}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  # shellcheck disable=SC2034 # read by callers
  wait "$pid" 2>/dev/null && BENCH_STOP_RC=0 || BENCH_STOP_RC=$?
  local keep=() p
  for p in "${BENCH_PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  BENCH_PIDS=("${keep[@]}")
  unset 'BENCH_PID_NAME[$pid]'
}

bench_stop_all() {
  local p
  for p in "${BENCH_PIDS[@]}"; do
    [ -n "$p" ] && bench_stop "$p" 3
  done
}
trap 'bench_stop_all' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# bench_wait_log PID LOGFILE REGEX TIMEOUT_S: waits until REGEX appears in LOGFILE.
bench_wait_log() {
  local pid=$1 logfile=$2 re=$3 timeout=$4 i
  for ((i = 0; i < timeout * 10; i++)); do
    grep -qE "$re" "$logfile" 2>/dev/null && return 0
    bench_alive "$pid" || { bench_log "pid $pid exited before '$re' appeared in $logfile"; return 1; }
    sleep 0.1
  done
  bench_log "timeout: '$re' did not appear in $logfile within ${timeout}s"
  return 1
}

# bench_wait_listen PORT TIMEOUT_S [PID]: waits until something listens on 127.0.0.1:PORT (TCP,
# or a bound UDP socket).
bench_wait_listen() {
  local port=$1 timeout=$2 pid=${3:-} i
  for ((i = 0; i < timeout * 10; i++)); do
    [ -n "$(ss -Htuln "sport = :$port" 2>/dev/null)" ] && return 0
    if [ -n "$pid" ] && ! bench_alive "$pid"; then
      bench_log "pid $pid exited before listening on port $port"
      return 1
    fi
    sleep 0.1
  done
  bench_log "timeout: nothing listens on port $port after ${timeout}s"
  return 1
}

bench_free_ports() { "${BENCHLIB[@]}" freeport "${1:-1}"; }          # prints N free ports
bench_tree_cpu() { "${BENCHLIB[@]}" treecpu "$1"; }                 # CPU seconds, whole tree
bench_tree_rss() { "${BENCHLIB[@]}" treerss "$1"; }                 # VmRSS KiB, whole tree
bench_tree_fds() { "${BENCHLIB[@]}" treefds "$1"; }                 # open fds, whole tree

# bench_quiet: waits up to BENCH_QUIET_WAIT seconds for the machine to be idle.
bench_quiet() {
  local verdict
  verdict=$("${BENCHLIB[@]}" quiet --max-wait "${BENCH_QUIET_WAIT:-30}" "$@") || true
  bench_log "machine before measuring: $verdict"
}

# bench_render TEMPLATE OUT KEY=VALUE...: replaces @KEY@ by VALUE in a config template.
bench_render() {
  local tpl=$1 out=$2 kv expr=()
  shift 2
  for kv in "$@"; do expr+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  sed "${expr[@]}" "$tpl" >"$out"
  if grep -q '@[A-Z_]*@' "$out"; then bench_die "unrendered placeholder in $out"; fi
}

# bench_targets DEFAULT... : the targets requested on the command line (BENCH_TARGETS), or the
# scenario's defaults, minus those that are not available here (e.g. sluice not built yet).
bench_targets() {
  local want=("$@") t out=()
  [ -n "${BENCH_TARGETS:-}" ] && read -r -a want <<<"$BENCH_TARGETS"
  for t in "${want[@]}"; do
    if ! declare -F "target_${t}_start" >/dev/null; then
      bench_die "unknown target '$t' (known: $(target_names))"
    fi
    if reason=$("target_${t}_unavailable"); then
      bench_log "skipping target $t: $reason"
    else
      out+=("$t")
    fi
  done
  echo "${out[*]}"
}

# shellcheck source-path=SCRIPTDIR source=targets.sh
source "$BENCH_DIR/targets.sh"

#!/usr/bin/env bash
# send(2) against io_uring's send_zc on one loopback TCP connection, alternating, for 64 KiB
# and 1 MiB pieces (BENCH_ZC_REPS rounds, default 3). Decides whether sluice's io_uring
# backend should send large bodies with send_zc (docs/event-backends.md). Not a proxy
# comparison: it measures the kernel path alone.
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cc -O2 -Wall -o "$dir/send_zc" "$(dirname "${BASH_SOURCE[0]}")/lib/send_zc.c" -luring -lpthread
echo "# $(uname -r); load average: $(cut -d' ' -f1-3 /proc/loadavg) (above the core count: disturbed)"
for chunk in 65536 1048576; do
  for _ in $(seq "${BENCH_ZC_REPS:-3}"); do
    "$dir/send_zc" send "$chunk"
    "$dir/send_zc" zc "$chunk"
  done
done

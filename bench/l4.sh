#!/usr/bin/env bash
# L4 throughput benchmark (iperf3 direct / sluice / HAProxy / nginx). Same as `bench/run l4`.
exec "$(dirname "${BASH_SOURCE[0]}")/run" l4 "$@"

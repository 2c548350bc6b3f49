#!/usr/bin/env bash
# HTTP/2 benchmark (sluice / HAProxy / nginx): h2c and h2 over TLS in, HTTP/1.1 out. Same as `bench/run h2`; QUICK=1 for a smoke run.
exec "$(dirname "${BASH_SOURCE[0]}")/run" h2 "$@"

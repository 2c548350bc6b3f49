#!/usr/bin/env bash
# TLS termination benchmark (sluice / HAProxy / nginx). Same as `bench/run tls`; QUICK=1 for a smoke run.
exec "$(dirname "${BASH_SOURCE[0]}")/run" tls "$@"

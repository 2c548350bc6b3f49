#!/usr/bin/env bash
# Idle-connection memory benchmark (sluice / HAProxy / nginx). Same as `bench/run idle_conns`.
exec "$(dirname "${BASH_SOURCE[0]}")/run" idle_conns "$@"

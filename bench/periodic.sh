#!/usr/bin/env bash
# Periodic queries at a million orders (issue 9): loads 1 M orders' worth of rows with COPY into
# a database of its own (ofbench_periodic, dropped afterwards), then times every query a
# service runs periodically, as the service runs it, EXPLAINs each (a large table read whole is
# counted), runs one full purge cycle and reports the purged tables before and after.
# Prints "RESULT key value" lines for bench/run.sh and a table on stderr.
#   PERIODIC_ORDERS=1000000  orders' worth of rows
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
eval "$(deploy/local/stack.sh env)"
mkdir -p .local/bench
go build -o .local/bench/periodic ./bench/periodic
DATABASE_URL="$DATABASE_URL" .local/bench/periodic -orders "${PERIODIC_ORDERS:-1000000}"

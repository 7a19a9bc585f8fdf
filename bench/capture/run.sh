#!/usr/bin/env bash
# Capture vs pg_recvlogical, decode-only, RSS and commit-to-Kafka latency (bench/capture/main.go).
# Prints "RESULT key value" lines for bench/run.sh and a table on stderr.
#   CAPTURE_BENCH_ARGS="-backlog 200000 -backlog-100k 100000 -backlog-2m 2000000 -big-txn 1000000" (the defaults)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
eval "$(deploy/local/stack.sh env)"
export DATABASE_URL KAFKA_BROKERS
[ -x bin/orderflow ] || go build -o bin/orderflow ./cmd/orderflow
# shellcheck disable=SC2086
go run ./bench/capture -bin bin/orderflow ${CAPTURE_BENCH_ARGS:-} "$@"

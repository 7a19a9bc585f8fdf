#!/usr/bin/env bash
# make test: start PostgreSQL and Kafka if 'make up' has not, run every test against them,
# and stop only what this run started.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STACK="$ROOT/deploy/local/stack.sh"
cd "$ROOT"

started=()
for s in postgres kafka; do "$STACK" running "$s" || started+=("$s"); done
stop_started() {
	if [ ${#started[@]} -gt 0 ]; then
		# kafka before postgres: reverse start order
		for ((i = ${#started[@]} - 1; i >= 0; i--)); do "$STACK" stop "${started[$i]}" || true; done
	fi
}
trap stop_started EXIT
"$STACK" infra

eval "$("$STACK" env)"
export ORDERFLOW_TEST_DATABASE_URL="$DATABASE_URL"
export ORDERFLOW_TEST_KAFKA_BROKERS="$KAFKA_BROKERS"
export ORDERFLOW_ROOT="$ROOT"

echo "== go vet"
go vet ./...
echo "== go build"
go build -o bin/orderflow ./cmd/orderflow
echo "== go test"
go test -count=1 -timeout 18m ${GOTESTFLAGS:-} ./...

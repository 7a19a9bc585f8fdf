#!/usr/bin/env bash
# Create-order throughput through the HTTP API vs pgbench running the same SQL transaction at
# the same concurrency, on the same machine, in the same run. Prints "RESULT key value" lines
# for bench/run.sh and a short table on stderr.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
eval "$(deploy/local/stack.sh env)"
C=${BENCH_CONCURRENCY:-16}
D=${BENCH_DURATION:-20}
SKUS=${BENCH_SKUS:-1000}
PORT=${BENCH_API_PORT:-18090}
PGBIN=$(dirname "$(command -v pgbench 2>/dev/null || ls /usr/lib/postgresql/*/bin/pgbench | tail -n1)")
BENCH_URL="${DATABASE_URL/\/orderflow\?/\/orderflow_bench?}"
KEY="bench-key-$RANDOM$RANDOM"
log() { printf '%s\n' "$*" >&2; }

log "api: fresh database orderflow_bench, $SKUS SKUs, $C clients, ${D}s per side"
"$PGBIN/psql" -X -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS orderflow_bench WITH (FORCE)" -c "CREATE DATABASE orderflow_bench"
bin/orderflow migrate -database-url "$BENCH_URL" >/dev/null
"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$BENCH_URL" <<SQL
INSERT INTO api_clients (id, name, key_sha256) VALUES ('bench', 'benchmark', sha256(convert_to('$KEY', 'UTF8')));
INSERT INTO inventory (sku, stock) SELECT 'SKU-' || g, 1000000000 FROM generate_series(1, $SKUS) g;
VACUUM ANALYZE;
SQL

bin/orderflow api -database-url "$BENCH_URL" -http-addr "127.0.0.1:$PORT" -db-max-conns $((C + 4)) \
	>"$ROOT/.local/log/bench-api.log" 2>&1 &
api_pid=$!
trap 'kill $api_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

api_json=$(bin/orderflow bench api -api-url "http://127.0.0.1:$PORT" -api-key "$KEY" -concurrency "$C" \
	-duration "${D}s" -warmup 3s -skus "$SKUS")
kill $api_pid; wait $api_pid 2>/dev/null || true
trap - EXIT
field() { printf '%s' "$api_json" | sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p"; }
api_rate=$(field per_second); api_p50=$(field p50_ms); api_p99=$(field p99_ms); api_err=$(field errors)

log "api: pgbench -M prepared -c $C -j 2 -T $D, the same transaction"
"$PGBIN/psql" -X -q "$BENCH_URL" -c "CHECKPOINT"
pg_out=$("$PGBIN/pgbench" -n -M prepared -c "$C" -j 2 -T "$D" -D skus="$SKUS" -f bench/sql/create_order.pgbench "$BENCH_URL" 2>&1) ||
	{ log "$pg_out"; exit 1; }
pg_tps=$(printf '%s\n' "$pg_out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n1)
pg_lat=$(printf '%s\n' "$pg_out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
ratio=$(awk -v a="$api_rate" -v p="$pg_tps" 'BEGIN { printf "%.2f", a / p }')

log "$(printf '  %-34s %10s %10s %10s\n' "" "orders/s" "p50 ms" "p99 ms")"
log "$(printf '  %-34s %10.0f %10s %10s\n' "API (HTTP, $C clients)" "$api_rate" "$api_p50" "$api_p99")"
log "$(printf '  %-34s %10.0f %10s %10s\n' "pgbench, same SQL ($C clients)" "$pg_tps" "avg $pg_lat" "")"
log "  ratio API / pgbench: $ratio   (goal >= 0.70; API errors: $api_err)"

echo "RESULT api_orders_per_s $api_rate"
echo "RESULT api_p50_ms $api_p50"
echo "RESULT api_p99_ms $api_p99"
echo "RESULT pgbench_tps $pg_tps"
echo "RESULT api_vs_pgbench_ratio $ratio"

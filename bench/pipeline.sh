#!/usr/bin/env bash
# End-to-end latency at a steady rate through the real API and every service of 'make up':
# commit -> Kafka ack (capture's histogram), commit -> summary (order_summary), commit ->
# partner receipt (partner.receipts). Prints "RESULT key value" lines for bench/run.sh.
#   PIPELINE_RATES="2000 150"  orders/s offered (open loop), one run each; the first run's figures
#   carry the contract's key names, later ones get an _at_<rate> suffix.  PIPELINE_DURATION=20
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RATES=${PIPELINE_RATES:-2000 150}
D=${PIPELINE_DURATION:-20}
log() { printf '%s\n' "$*" >&2; }

deploy/local/stack.sh up >"$ROOT/.local/log/bench-pipeline-up.log" 2>&1 ||
	{ tail -n 20 "$ROOT/.local/log/bench-pipeline-up.log" >&2; exit 1; }
# shellcheck source=/dev/null
. .local/env
PSQL=(psql -X -q -tA -v ON_ERROR_STOP=1 "$DATABASE_URL")
"${PSQL[@]}" -c "INSERT INTO inventory (sku, stock) SELECT 'SKU-' || g, 1000000000 FROM generate_series(1, 1000) g
	ON CONFLICT (sku) DO UPDATE SET stock = greatest(inventory.stock, 1000000000)"
measure() { # measure RATE SUFFIX
	local RATE=$1 sfx=$2
	t0=$("${PSQL[@]}" -c "SELECT now()")

	# capture's commit -> ack histogram before and after the run; quantiles from the difference.
	hist() { curl -fsS "$CAPTURE_METRICS_URL" | grep '^orderflow_capture_commit_to_ack_seconds_bucket' | sed 's/.*le="\([^"]*\)"} \(.*\)/\1 \2/'; }
	hist >"$ROOT/.local/bench/ack-before.txt"

	log "pipeline: offering $RATE orders/s for ${D}s through the API (open loop, latency from the scheduled time)"
	api_json=$(bin/orderflow bench api -api-url "$API_URL" -api-key "$API_KEY" -rate "$RATE" -concurrency 256 \
		-duration "${D}s" -warmup 2s -skus 1000)
	field() { printf '%s' "$api_json" | sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p"; }
	achieved=$(field per_second)

	log "pipeline: waiting for the read model and the partner to catch up (at most 5 min)"
	for _ in $(seq 1 300); do
		behind=$("${PSQL[@]}" -c "SELECT
			(SELECT count(*) FROM orders o LEFT JOIN order_summary s ON s.order_id = o.id
			  WHERE o.created_at >= '$t0' AND s.version IS DISTINCT FROM o.version)
			+ (SELECT count(*) FROM outbox x LEFT JOIN partner.receipts r ON r.webhook_id = x.id::text
			  WHERE x.created_at >= '$t0' AND x.event_type = 'order.created' AND r.webhook_id IS NULL)")
		[ "$behind" = 0 ] && break
		sleep 1
	done
	[ "$behind" = 0 ] || log "pipeline: still $behind behind after 5 min; figures cover what arrived"
	hist >"$ROOT/.local/bench/ack-after.txt"

	# Histogram quantile with linear interpolation inside the bucket, as Prometheus does.
	ack_q() {
		# Both files list the buckets in the same (ascending) order.
		paste -d' ' "$ROOT/.local/bench/ack-before.txt" "$ROOT/.local/bench/ack-after.txt" | awk -v q="$1" '
			{ le[NR] = $1; c[NR] = $4 - $2 }
			END {
				total = c[NR]; if (total <= 0) { print "null"; exit }
				rank = q * total; prev = 0; prevc = 0
				for (i = 1; i <= NR; i++) {
					if (c[i] >= rank) {
						if (le[i] == "+Inf") { printf "%.1f", prev * 1000; exit }
						printf "%.1f", (prev + (le[i] - prev) * (rank - prevc) / (c[i] - prevc)) * 1000; exit
					}
					prev = le[i]; prevc = c[i]
				}
			}'
	}
	sql_q() { "${PSQL[@]}" -c "SELECT coalesce(round((percentile_cont($1) WITHIN GROUP (ORDER BY $2))::numeric, 1)::text, 'null') FROM $3"; }
	summary_src="(SELECT extract(epoch FROM projected_at - last_event_at) * 1000 AS ms FROM order_summary WHERE last_event_at >= '$t0') s"
	partner_src="(SELECT extract(epoch FROM received_at - event_time) * 1000 AS ms FROM partner.receipts WHERE event_time >= '$t0') r"
	k50=$(ack_q 0.5); k99=$(ack_q 0.99)
	s50=$(sql_q 0.5 ms "$summary_src"); s99=$(sql_q 0.99 ms "$summary_src")
	p50=$(sql_q 0.5 ms "$partner_src"); p99=$(sql_q 0.99 ms "$partner_src")

	log "$(printf '  %-44s %10s %10s\n' "achieved $achieved orders/s (offered $RATE)" "p50 ms" "p99 ms")"
	log "$(printf '  %-44s %10s %10s\n' "API create-order" "$(field p50_ms)" "$(field p99_ms)")"
	log "$(printf '  %-44s %10s %10s\n' "commit -> Kafka ack (capture)" "$k50" "$k99")"
	log "$(printf '  %-44s %10s %10s\n' "commit -> summary (projector)" "$s50" "$s99")"
	log "$(printf '  %-44s %10s %10s\n' "commit -> partner receipt (deliver)" "$p50" "$p99")"

	echo "RESULT pipeline_offered_orders_per_s$sfx $RATE"
	echo "RESULT pipeline_orders_per_s$sfx $achieved"
	echo "RESULT pipeline_api_p99_ms$sfx $(field p99_ms)"
	echo "RESULT pipeline_commit_to_kafka_p50_ms$sfx $k50"
	echo "RESULT pipeline_commit_to_kafka_p99_ms$sfx $k99"
	echo "RESULT commit_to_summary_p50_ms$sfx $s50"
	echo "RESULT commit_to_summary_p99_ms$sfx $s99"
	echo "RESULT commit_to_partner_p50_ms$sfx $p50"
	echo "RESULT commit_to_partner_p99_ms$sfx $p99"
}

first=1
for r in $RATES; do
	if [ -n "$first" ]; then measure "$r" ""; first=; else measure "$r" "_at_$r"; fi
done

#!/usr/bin/env bash
# The short demo at the end of 'make up': a few calls through the real API and what they wrote.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=/dev/null
. "$ROOT/.local/env"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL")
run_id=$(date +%s)

call() { # call METHOD PATH KEY BODY [IDEMPOTENCY-KEY]
	local args=(-sS -X "$1" "$API_URL$2" -H "Authorization: Bearer $3" -H 'Content-Type: application/json' -d "$4")
	[ -n "${5:-}" ] && args+=(-H "Idempotency-Key: $5")
	curl "${args[@]}" -D "$ROOT/.local/demo.headers" -o "$ROOT/.local/demo.body" -w '%{http_code}'
}
show() { printf '  %s  %s\n' "$1" "$(head -c 220 "$ROOT/.local/demo.body")"; }
expect() { # expect WANT GOT: the demo stops at the first answer that is not what it shows
	[ "$1" = "$2" ] || { printf 'demo: expected HTTP %s, got %s: %s\n' "$1" "$2" "$(cat "$ROOT/.local/demo.body")" >&2; exit 1; }
}

echo
echo "== demo: stock two SKUs (admin key); the tee gets 3 more than open orders hold"
tee_reserved=$("${PSQL[@]}" -tAc "SELECT coalesce((SELECT reserved FROM inventory WHERE sku = 'DEMO-TEE'), 0)")
for sku in DEMO-MUG:1000000 "DEMO-TEE:$((tee_reserved + 3))"; do
	s=$(call PUT "/v1/inventory/${sku%%:*}" "$ADMIN_API_KEY" "{\"stock\": ${sku##*:}}")
	show "$s"; expect 200 "$s"
done

echo "== demo: create an order (Idempotency-Key demo-$run_id-1)"
body='{"customer_id": "cust-42", "currency": "EUR", "items": [{"sku": "DEMO-MUG", "quantity": 2, "unit_price_cents": 1450}, {"sku": "DEMO-TEE", "quantity": 1, "unit_price_cents": 2200}]}'
s=$(call POST /v1/orders "$API_KEY" "$body" "demo-$run_id-1")
# When the 201 came back: the start-up figure below times the order from here to the partner.
answered_at=$(date +%s.%N)
show "$s"; expect 201 "$s"
order_id=$(sed -n 's/.*"id":"\([^"]*\)".*/\1/p' "$ROOT/.local/demo.body")

echo "== demo: send the same request again: the stored answer, no second order"
s=$(call POST /v1/orders "$API_KEY" "$body" "demo-$run_id-1")
printf '  %s  %s\n' "$s" "$(grep -i '^Idempotent-Replayed' "$ROOT/.local/demo.headers" | tr -d '\r')"
expect 201 "$s"; grep -qi '^Idempotent-Replayed: true' "$ROOT/.local/demo.headers" || { echo "demo: the replay was not marked" >&2; exit 1; }

echo "== demo: same key, different body: refused"
s=$(call POST /v1/orders "$API_KEY" '{"customer_id": "cust-42", "currency": "EUR", "items": [{"sku": "DEMO-MUG", "quantity": 9, "unit_price_cents": 1450}]}' "demo-$run_id-1")
show "$s"; expect 422 "$s"

echo "== demo: more tees than there are: 409, nothing reserved"
s=$(call POST /v1/orders "$API_KEY" '{"customer_id": "cust-7", "currency": "EUR", "items": [{"sku": "DEMO-TEE", "quantity": 5, "unit_price_cents": 2200}]}' "demo-$run_id-2")
show "$s"; expect 409 "$s"

echo "== demo: what the database holds for order $order_id"
"${PSQL[@]}" -c "SELECT id, status, version, total_cents FROM orders WHERE id = '$order_id'" \
	-c "SELECT sku, stock, reserved, stock - reserved AS available FROM inventory WHERE sku LIKE 'DEMO-%' ORDER BY sku" \
	-c "SELECT id AS event_id, event_type, aggregate_id FROM outbox WHERE aggregate_id = '$order_id'"

echo "== demo: order.created travels capture -> Kafka -> deliver (signed webhook) -> partner, which fulfills it"
fulfilled=
for _ in $(seq 1 150); do
	s=$(call GET "/v1/orders/$order_id" "$API_KEY" "")
	grep -q '"status":"fulfilled"' "$ROOT/.local/demo.body" && { fulfilled=1; break; }
	sleep 0.1
done
show "$s"
[ -n "$fulfilled" ] || { echo "demo: order $order_id not fulfilled within 15 s (see .local/log/deliver.log and partner.log)" >&2; exit 1; }
# The first order after 'make up' must not wait for the consumers to join their groups
# (docs/BENCHMARKS.md, bench/pipeline.sh reads this line): the API's 201 to the partner's receipt.
printf '  first order: 201 -> partner receipt in %s ms\n' "$("${PSQL[@]}" -tAc "SELECT round(extract(epoch FROM received_at) * 1000 - $answered_at * 1000)
	FROM partner.receipts WHERE subject = '$order_id' AND event_type = 'order.created'")"
"${PSQL[@]}" -c "SELECT d.event_type, d.state AS delivery, d.attempts, r.received_at - r.event_time AS commit_to_partner, c.action, c.state AS callback
	FROM webhook_deliveries d JOIN partner.receipts r ON r.webhook_id = d.event_id LEFT JOIN partner.callbacks c ON c.webhook_id = d.event_id
	WHERE d.subject = '$order_id'"

echo "== demo: the read model (projector) catches up: summary with freshness"
for _ in $(seq 1 150); do
	s=$(call GET "/v1/orders/$order_id/summary" "$API_KEY" "")
	[ "$s" = 200 ] && grep -q '"status":"fulfilled"' "$ROOT/.local/demo.body" && break
	sleep 0.1
done
printf '  %s  %s\n' "$s" "$(cat "$ROOT/.local/demo.body")"
expect 200 "$s"

cat <<EOF

orderflow is running. Next:
  . .local/env                                  URLs and keys for your shell
  curl -H "Authorization: Bearer \$API_KEY" \$API_URL/v1/orders/$order_id
  curl -H "Authorization: Bearer \$API_KEY" \$API_URL/v1/orders/$order_id/summary
  bin/orderflow reconcile                       drift report (reconcile also runs every minute)
  kcat -b \$KAFKA_BROKERS -t orderflow.order -C -e -f '%k %h %s\\n'   the topic, if kcat is installed
  psql "\$DATABASE_URL"                          the source of truth
  \$API_METRICS_URL, \$CAPTURE_METRICS_URL, ...  Prometheus metrics (one *_METRICS_URL per service)
  .local/log/<service>.log                      logs;  make down  stops everything
EOF

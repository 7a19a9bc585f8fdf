#!/usr/bin/env bash
# Proves the monitoring works on the running stack: promtool accepts the rules, and a real
# Prometheus scrapes every service that 'make up' started (up == 1), evaluates every rule
# without error, and finds the metrics the rules and the dashboard use.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# The slot's WAL budget rules fire before invalidation and stay quiet while capture keeps up.
promtool test rules deploy/prometheus/rules_capture_test.yml
# shellcheck source=/dev/null
. .local/env
PORT=${ORDERFLOW_PROMETHEUS_PORT:-19090}
promtool check rules deploy/prometheus/rules.yml
promtool test rules deploy/prometheus/rules_test.yml
promtool test rules deploy/prometheus/rules_oversize_test.yml
# The Prometheus this check starts is recorded in .local/run, so one left behind by an
# interrupted check is stopped by its pid, never by name: other Prometheus servers on the
# machine are not ours.
mkdir -p .local/run
pidfile=.local/run/prometheus.pid
if [ -f "$pidfile" ]; then
	old=$(head -n1 "$pidfile")
	[ "$(cat "/proc/$old/comm" 2>/dev/null)" != prometheus ] || kill "$old" 2>/dev/null || true
	rm -f "$pidfile"
fi
dir=$(mktemp -d)
prom_pid=
trap '[ -z "$prom_pid" ] || { kill "$prom_pid" 2>/dev/null || true; wait "$prom_pid" 2>/dev/null || true; }; rm -f "$pidfile"; rm -rf "$dir"' EXIT
{
	printf 'global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [%s]\nscrape_configs:\n  - job_name: orderflow\n    static_configs:\n' "$ROOT/deploy/prometheus/rules.yml"
	for s in $(deploy/local/stack.sh services); do
		var="${s^^}_METRICS_URL"
		url=${!var}
		hostport=${url#http://}; hostport=${hostport%%/*}
		printf '      - targets: ["%s"]\n        labels: {service: %s}\n' "$hostport" "$s"
	done
} >"$dir/prometheus.yml"
promtool check config "$dir/prometheus.yml" >/dev/null
prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
	--web.listen-address="127.0.0.1:$PORT" >"$dir/log" 2>&1 &
prom_pid=$!
echo "$prom_pid" >"$pidfile"
q() { curl -fsS "http://127.0.0.1:$PORT/api/v1/query" --data-urlencode "query=$1"; }
want=$(deploy/local/stack.sh services | wc -w)
for _ in $(seq 1 60); do
	up=$(q 'sum(up{job="orderflow"})' 2>/dev/null | sed -n 's/.*"value":\[[0-9.]*,"\([0-9]*\)".*/\1/p' || true)
	[ "${up:-0}" = "$want" ] && break
	sleep 1
done
if [ "${up:-0}" != "$want" ]; then
	echo "prometheus: $up of $want services scraped" >&2
	q 'up{job="orderflow"}' >&2
	exit 1
fi
sleep 3 # a few rule evaluations
bad=$(curl -fsS "http://127.0.0.1:$PORT/api/v1/rules" | grep -o '"health":"[a-z]*"' | grep -vc '"health":"ok"' || true)
[ "$bad" = 0 ] || { echo "prometheus: $bad rules failed to evaluate" >&2; curl -fsS "http://127.0.0.1:$PORT/api/v1/rules" >&2; exit 1; }
missing=()
for m in orderflow_api_request_duration_seconds_count orderflow_capture_slot_lag_bytes orderflow_capture_active \
	orderflow_capture_commit_to_ack_seconds_count orderflow_projector_consumer_lag orderflow_deliver_pending \
	orderflow_deliver_dead_letters orderflow_reconcile_drift orderflow_partner_receipts_total; do
	n=$(q "count($m)" | sed -n 's/.*"value":\[[0-9.]*,"\([0-9]*\)".*/\1/p')
	[ "${n:-0}" -gt 0 ] || missing+=("$m")
done
[ ${#missing[@]} -eq 0 ] || { echo "prometheus: no series for ${missing[*]}" >&2; exit 1; }
# Every dashboard query must be valid PromQL that Prometheus answers.
while IFS= read -r expr; do
	curl -fsS "http://127.0.0.1:$PORT/api/v1/query" --data-urlencode "query=$expr" | grep -q '"status":"success"' ||
		{ echo "prometheus: the dashboard query fails: $expr" >&2; exit 1; }
done < <(python3 -c 'import json,sys; [print(t["expr"]) for p in json.load(open(sys.argv[1]))["panels"] for t in p["targets"]]' deploy/grafana/orderflow.json)
echo "prometheus: $want/$want services scraped, every rule evaluates, the alerted metrics exist, every dashboard query answers"

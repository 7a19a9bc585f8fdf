#!/usr/bin/env bash
# CPU per order of every part of a running 'make up' stack: each service, Kafka, and
# PostgreSQL's backends grouped by role (pg_stat_activity.usename), over an open-loop load
# through the API plus a drain. Not part of 'make bench': a tool for finding where the
# pipeline's CPU goes (docs/BENCHMARKS.md, "CPU budget per order").
#   bench/cpu-split.sh [RATE orders/s, default 300] [SECONDS, default 20]   CPU_SPLIT_DRAIN=4
# Alternate the two sides of any comparison and run each several times: on this machine two
# identical 30 s runs differ by up to 10 % per part.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RATE=${1:-300} DUR=${2:-20} DRAIN=${CPU_SPLIT_DRAIN:-4}
[ -f .local/env ] || { echo "cpu-split: no .local/env: run 'make up' first" >&2; exit 1; }
# shellcheck source=/dev/null
. .local/env
for s in postgres kafka api; do
	deploy/local/stack.sh running "$s" || { echo "cpu-split: $s is not running: run 'make up' first" >&2; exit 1; }
done
[ -x bin/orderflow ] || go build -o bin/orderflow ./cmd/orderflow
PSQL=(psql -X -q -At "$DATABASE_URL")
# shellcheck source=bench/lib.sh
. bench/lib.sh
stock_bench_skus
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# snap: "part ticks" lines, ticks = user + system CPU so far; PostgreSQL's by backend role.
snap() {
	local pg p role
	service_ticks
	"${PSQL[@]}" -F' ' -c "SELECT pid, coalesce(nullif(usename, ''), replace(backend_type, ' ', '_')) FROM pg_stat_activity" >"$TMP/roles"
	pg=$(head -n1 .local/run/postgres.pid)
	{ echo "$pg"; pgrep -P "$pg"; } | while read -r p; do
		role=$(awk -v p="$p" '$1 == p { print $2 }' "$TMP/roles")
		printf 'postgres:%s %s\n' "${role:-other}" "$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)"
	done
}
sum() { awk '{ a[$1] += $2 } END { for (k in a) print k, a[k] }' | sort; }

echo "cpu-split: $RATE orders/s for ${DUR}s, then ${DRAIN}s of drain   ($(uptime))" >&2
snap | sum >"$TMP/before"
/usr/bin/time -f "%U %S" -o "$TMP/loadgen" bin/orderflow bench api -api-url "$API_URL" -api-key "$API_KEY" \
	-rate "$RATE" -concurrency 256 -duration "${DUR}s" -warmup 0s -skus 1000 >"$TMP/load.json"
sleep "$DRAIN"
snap | sum >"$TMP/after"
n=$(sed -n 's/.*"requests":\([0-9]*\).*/\1/p' "$TMP/load.json")
[ "${n:-0}" -gt 0 ] || { echo "cpu-split: the load generator made no orders" >&2; cat "$TMP/load.json" >&2; exit 1; }
echo "cpu-split: $n orders ($(sed -n 's/.*"per_second":\([0-9.]*\).*/\1/p' "$TMP/load.json") a second achieved, $(sed -n 's/.*"refused":\([0-9]*\).*/\1/p' "$TMP/load.json") refused); CPU ms per order:"
join "$TMP/before" "$TMP/after" | awk -v n="$n" -v hz="$(getconf CLK_TCK)" '
	{ d = ($3 - $2) / hz * 1000 / n; t += d; if ($1 ~ /^postgres:/) p += d; if (d >= 0.0005) printf "  %-32s %.3f\n", $1, d }
	END { printf "  %-32s %.3f\n  %-32s %.3f\n", "postgres (all)", p, "all but the load generator", t }'
awk -v n="$n" '{ printf "  %-32s %.3f\n", "load generator", ($1 + $2) * 1000 / n }' "$TMP/loadgen"

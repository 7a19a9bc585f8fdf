#!/usr/bin/env bash
# Create-order throughput through the HTTP API vs pgbench running the same SQL transaction
# (bench/sql/create_order.pgbench: the statements and the one round trip of
# postgres.DB.CreateOrder) at the same concurrency, on the same machine, in the same run; then
# the API offered more than it can do, open loop, to show it sheds load instead of queueing.
# Prints "RESULT key value" lines for bench/run.sh and a short table on stderr.
#
# The two sides alternate BENCH_API_ROUNDS times (API, then pgbench), each on freshly emptied
# tables after a CHECKPOINT, with the load average printed before each side; the figures are
# the medians, with the spread of the per-round ratio. Next to the rates, each side's CPU time
# per order (PostgreSQL, the API, the load generator or pgbench) is measured from /proc: a
# loaded machine changes how fast things go, much less what they cost.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
eval "$(deploy/local/stack.sh env)"
C=${BENCH_CONCURRENCY:-16}
D=${BENCH_DURATION:-20}
SKUS=${BENCH_SKUS:-1000}
ROUNDS=${BENCH_API_ROUNDS:-3}
PORT=${BENCH_API_PORT:-18090}
OPS_PORT=$((PORT + 1))
PGBIN=$(dirname "$(command -v pgbench 2>/dev/null || ls /usr/lib/postgresql/*/bin/pgbench | tail -n1)")
BENCH_URL="${DATABASE_URL/\/orderflow\?/\/orderflow_bench?}"
KEY="bench-key-$RANDOM$RANDOM"
FKEY="bench-fulfiller-$RANDOM$RANDOM"
APILOG="$ROOT/.local/log/bench-api.log"
log() { printf '%s\n' "$*" >&2; }
psql_bench() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$BENCH_URL" "$@"; }

log "api: fresh database orderflow_bench, $SKUS SKUs, $C clients, ${D}s per side, $ROUNDS rounds, ${BENCH_BASE_ORDERS:-100000} orders before each side"
"$PGBIN/psql" -X -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS orderflow_bench WITH (FORCE)" -c "CREATE DATABASE orderflow_bench"
bin/orderflow migrate -database-url "$BENCH_URL" >/dev/null
psql_bench <<SQL
INSERT INTO api_clients (id, name, key_sha256) VALUES ('bench', 'benchmark', sha256(convert_to('$KEY', 'UTF8')));
INSERT INTO api_clients (id, name, key_sha256, client_id, role) VALUES ('bench-partner', 'benchmark partner', sha256(convert_to('$FKEY', 'UTF8')), 'bench-partner', 'fulfiller');
INSERT INTO inventory (sku, stock) SELECT 'SKU-' || g, 1000000000 FROM generate_series(1, $SKUS) g;
SQL

# fresh: the state each side starts from, the same for both: no keys or events, no
# reservations, statistics and visibility up to date, no dirty pages from the side before, and
# BASE_ORDERS older orders of another client. Not an empty orders table: each order_items
# insert checks its foreign key with a cached plan per backend, and a backend whose plan was
# made while orders had a page or two keeps a sequential scan of orders for the whole side
# (the statistics of a vacuumed empty table say so), reading every order written so far for
# every order it writes. Which backends got that plan, and on which side, was chance: measured
# on empty tables (issue 13), four sides made 441 to 5,823 such scans reading 1.2 to 78.5 M
# rows, at 0.51 to 0.76 ms of PostgreSQL CPU per order; from 100,000 orders, four sides made
# none, at 0.54 to 0.60 ms, API and pgbench alike. Every check is then an index probe.
BASE_ORDERS=${BENCH_BASE_ORDERS:-100000}
fresh() {
	psql_bench -c "TRUNCATE orders, order_items, outbox, idempotency_keys" \
		-c "INSERT INTO orders (id, client_id, customer_id, currency, status, total_cents, version, created_at, updated_at, customer_tier)
			SELECT (lpad(to_hex((extract(epoch FROM now()) * 1000)::bigint - 86400000 + g), 12, '0') || substr(md5(g::text), 13))::uuid,
				'seed', 'cust-' || (g % 100000), 'EUR', 'fulfilled', 1250, 2, now() - interval '1 day', now() - interval '1 day', 'standard'
			FROM generate_series(1, $BASE_ORDERS) g" \
		-c "UPDATE inventory SET reserved = 0" -c "VACUUM ANALYZE" -c "CHECKPOINT"
}

# CPU time, in clock ticks, of PostgreSQL (the postmaster, its live children and the children
# that exited, so pgbench's backends count too), of one process, and of this script's
# finished children (the load generator, pgbench).
TCK=$(getconf CLK_TCK)
PG_PID=$(head -n1 .local/run/postgres.pid)
pg_ticks() {
	local t=0 p f
	read -r -a f <"/proc/$PG_PID/stat"
	t=$((f[13] + f[14] + f[15] + f[16]))
	for p in $(pgrep -P "$PG_PID"); do
		read -r -a f 2>/dev/null <"/proc/$p/stat" || continue
		t=$((t + f[13] + f[14]))
	done
	echo "$t"
}
# A client's backends are reaped, and their CPU time added to the postmaster's, a moment
# after the client exits: PostgreSQL's count is read a second later (on both sides alike).
settle() { sleep 1; }
proc_ticks() { local f; read -r -a f <"/proc/$1/stat"; echo $((f[13] + f[14])); }
child_ticks() { local f; read -r -a f <"/proc/$$/stat"; echo $((f[15] + f[16])); }
orders() { psql_bench -Atc "SELECT count(*) FROM orders WHERE client_id = 'bench'"; }
# Sequential scans of orders (read before orders(), which makes one): none is expected during
# a side; any is a foreign-key check gone to a sequential plan, and the side's CPU is suspect.
seq_scans() { psql_bench -Atc "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'orders'"; }
per_order() { awk -v t="$1" -v n="$2" -v hz="$TCK" 'BEGIN { printf "%.3f", (n > 0 ? t / hz * 1000 / n : 0) }'; }

# BENCH_API_BIN runs another build of the API against the same generator and script (a
# baseline, to alternate with this build and compare CPU per order).
# The API as the bench runs it: per-client rate limit far above what one client sends here
# (this section measures capacity; the 429 per client has tests of its own), admission at its
# defaults (as many in flight as connections, 32 queued, 50 ms queue timeout).
: >"$APILOG"
"${BENCH_API_BIN:-bin/orderflow}" api -database-url "$BENCH_URL" -http-addr "127.0.0.1:$PORT" -ops-addr "127.0.0.1:$OPS_PORT" \
	-db-max-conns $((C + 4)) -rate-limit 1000000 -rate-burst 1000000 >>"$APILOG" 2>&1 &
api_pid=$!
trap 'kill $api_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

# Closed loop, the load generator runs on one P (GOMAXPROCS=1): it only waits on sockets, and
# a second P spinning for work costs CPU (about a tenth of the generator's, measured) that
# PostgreSQL and the API need. Open loop it keeps every P: with thousands of connections it
# must keep up with its schedule, and how late it sent is reported.
load() { # load ARGS...: one run of the load generator, its JSON on stdout
	bin/orderflow bench api -api-url "http://127.0.0.1:$PORT" -api-key "$KEY" -warmup 3s -skus "$SKUS" "$@"
}
field() { printf '%s' "$1" | sed -n "s/.*\"$2\":\([0-9.e+-]*\).*/\1/p"; }

api_rates=() api_p50s=() api_p99s=() pg_tpss=() ratios=() api_errs=0 scans=0
api_cpu=() api_cpu_pg=() api_cpu_srv=() api_cpu_cli=() pg_cpu=() pg_cpu_pg=() pg_cpu_cli=()
for r in $(seq 1 "$ROUNDS"); do
	fresh
	log "api: round $r/$ROUNDS, API ($C clients, ${D}s)   $(uptime)"
	q0=$(seq_scans) p0=$(pg_ticks) s0=$(proc_ticks "$api_pid") c0=$(child_ticks)
	j=$(GOMAXPROCS=${BENCH_GENERATOR_PROCS:-1} load -concurrency "$C" -duration "${D}s")
	s1=$(proc_ticks "$api_pid") c1=$(child_ticks)
	settle
	p1=$(pg_ticks)
	scans=$((scans + $(seq_scans) - q0))
	n=$(orders)
	api_rates+=("$(field "$j" per_second)") api_p50s+=("$(field "$j" p50_ms)") api_p99s+=("$(field "$j" p99_ms)")
	api_errs=$((api_errs + $(field "$j" errors)))
	api_cpu_pg+=("$(per_order $((p1 - p0)) "$n")") api_cpu_srv+=("$(per_order $((s1 - s0)) "$n")")
	api_cpu_cli+=("$(per_order $((c1 - c0)) "$n")") api_cpu+=("$(per_order $((p1 - p0 + s1 - s0 + c1 - c0)) "$n")")

	fresh
	log "api: round $r/$ROUNDS, pgbench -M prepared -c $C -j 2 -T $D, the same transaction   $(uptime)"
	q0=$(seq_scans) p0=$(pg_ticks) c0=$(child_ticks)
	pg_out=$("$PGBIN/pgbench" -n -M prepared -c "$C" -j 2 -T "$D" -D skus="$SKUS" -f bench/sql/create_order.pgbench "$BENCH_URL" 2>&1) ||
		{ log "$pg_out"; exit 1; }
	c1=$(child_ticks)
	settle
	p1=$(pg_ticks)
	scans=$((scans + $(seq_scans) - q0))
	n=$(orders)
	pg_tpss+=("$(printf '%s\n' "$pg_out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n1)")
	pg_cpu_pg+=("$(per_order $((p1 - p0)) "$n")") pg_cpu_cli+=("$(per_order $((c1 - c0)) "$n")")
	pg_cpu+=("$(per_order $((p1 - p0 + c1 - c0)) "$n")")
	ratios+=("$(awk -v a="${api_rates[-1]}" -v p="${pg_tpss[-1]}" 'BEGIN { printf "%.3f", a / p }')")
	log "$(printf '  round %d: API %.0f orders/s (p50 %s ms, p99 %s ms, %s ms CPU/order), pgbench %.0f tps (%s ms CPU/order), ratio %s' \
		"$r" "${api_rates[-1]}" "${api_p50s[-1]}" "${api_p99s[-1]}" "${api_cpu[-1]}" "${pg_tpss[-1]}" "${pg_cpu[-1]}" "${ratios[-1]}")"
done

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
minimum() { printf '%s\n' "$@" | sort -g | head -n1; }
maximum() { printf '%s\n' "$@" | sort -g | tail -n1; }
api_rate=$(median "${api_rates[@]}") pg_tps=$(median "${pg_tpss[@]}")
ratio=$(median "${ratios[@]}") ratio_min=$(minimum "${ratios[@]}") ratio_max=$(maximum "${ratios[@]}")
cpu_api=$(median "${api_cpu[@]}") cpu_pg=$(median "${pg_cpu[@]}")
cpu_ratio=$(awk -v a="$cpu_api" -v p="$cpu_pg" 'BEGIN { printf "%.3f", (a > 0 ? p / a : 0) }')

# Fulfill, the partner's callback: the API's second transaction per order in the pipeline
# (postgres.changeOrderPipelined: the order read, then one pipeline). The orders come from a
# create load that is not measured; then each is fulfilled once, closed loop, and the CPU per
# fulfill is split like the create's. There is no pgbench side to it: it is read against the
# create's CPU per order above.
fresh
GOMAXPROCS=${BENCH_GENERATOR_PROCS:-1} load -concurrency "$C" -duration "${D}s" >/dev/null
FIDS="$ROOT/.local/log/bench-api-fulfill.ids"
psql_bench -Atc "SELECT id FROM orders WHERE client_id = 'bench' AND status = 'pending'" >"$FIDS"
psql_bench -c "VACUUM ANALYZE" -c "CHECKPOINT"
fdone() { psql_bench -Atc "SELECT count(*) FROM orders WHERE client_id = 'bench' AND status = 'fulfilled'"; }
log "api: fulfill $(wc -l <"$FIDS") orders ($C clients, at most ${D}s)   $(uptime)"
p0=$(pg_ticks) s0=$(proc_ticks "$api_pid") c0=$(child_ticks)
fj=$(GOMAXPROCS=${BENCH_GENERATOR_PROCS:-1} load -api-key "$FKEY" -fulfill-ids "$FIDS" -concurrency "$C" -duration "${D}s")
s1=$(proc_ticks "$api_pid") c1=$(child_ticks)
settle
p1=$(pg_ticks)
n=$(fdone)
f_cpu_pg=$(per_order $((p1 - p0)) "$n") f_cpu_srv=$(per_order $((s1 - s0)) "$n") f_cpu_cli=$(per_order $((c1 - c0)) "$n")
f_cpu=$(per_order $((p1 - p0 + s1 - s0 + c1 - c0)) "$n")
f_errs=$(field "$fj" errors)

# Overload, open loop: below the knee (half the closed-loop rate) for the reference p99, then
# at a saturating rate (twice the closed-loop rate, at least 2,000/s) with enough clients that
# the generator never queues in front of the API, so the API sees the whole offered rate.
low=$(awk -v r="$api_rate" 'BEGIN { printf "%d", r / 2 }')
sat=$(awk -v r="$api_rate" 'BEGIN { s = 2 * r; if (s < 2000) s = 2000; printf "%d", s }')
fresh
log "api: open loop at $low orders/s (below the knee)   $(uptime)"
knee=$(load -rate "$low" -concurrency 512 -duration "${D}s")
# The API's own view of the saturating run: its request-duration histogram of POST
# /v1/orders before and after, per status (201 accepted, 503 shed); p99 to the bucket.
metrics_orders() {
	curl -fsS "http://127.0.0.1:$OPS_PORT/metrics" | grep '^orderflow_api_request_duration_seconds_[a-z]*{method="POST",route="/v1/orders"' || true
}
server_view() { # server_view BEFORE AFTER STATUS: "count mean_ms p99_bucket_ms"
	awk -v st="status=\"$3\"" '
		NR == FNR { before[$1] = $2; next }
		index($1, st) == 0 { next }
		{ d = $2 - before[$1] }
		/_count/ { n = d } /_sum/ { sum = d }
		/_bucket/ { le = $1; sub(/.*le="/, "", le); sub(/".*/, "", le); les[++k] = le; cum[le] = d }
		END {
			p = "inf"
			for (i = 1; i <= k; i++) if (n > 0 && cum[les[i]] >= 0.99 * n) { p = (les[i] == "+Inf" ? "inf" : les[i] * 1000); break }
			printf "%d %.1f %s\n", n, (n > 0 ? sum / n * 1000 : 0), p
		}' "$1" "$2"
}
fresh
log "api: open loop at $sat orders/s (saturating)   $(uptime)"
metrics_orders >"$ROOT/.local/log/bench-api-metrics.before"
over=$(load -rate "$sat" -concurrency 2048 -duration "${D}s")
metrics_orders >"$ROOT/.local/log/bench-api-metrics.after"
read -r srv_acc_n srv_acc_mean srv_acc_p99 < <(server_view "$ROOT/.local/log/bench-api-metrics.before" "$ROOT/.local/log/bench-api-metrics.after" 201)
read -r srv_shed_n srv_shed_mean srv_shed_p99 < <(server_view "$ROOT/.local/log/bench-api-metrics.before" "$ROOT/.local/log/bench-api-metrics.after" 503)
knee_p99=$(field "$knee" p99_ms)
over_p99=$(field "$over" p99_ms)
over_p99_ratio=$(awk -v o="$over_p99" -v k="$knee_p99" 'BEGIN { printf "%.2f", (k > 0 ? o / k : 0) }')
over_failed=$(($(field "$over" errors) - $(field "$over" refused)))
knee_failed=$(($(field "$knee" errors) - $(field "$knee" refused)))
shed=$(curl -fsS "http://127.0.0.1:$OPS_PORT/metrics" | awk '/^orderflow_api_shed_total/ { s += $2 } END { print s + 0 }')

kill $api_pid
wait $api_pid 2>/dev/null || true
trap - EXIT
# A shed request is not logged; anything at ERROR is something that went wrong.
log_errors=$(grep -c '"level":"ERROR"' "$APILOG" || true)

log "$(printf '  %-40s %10s %10s %10s %12s\n' "median of $ROUNDS rounds" "orders/s" "p50 ms" "p99 ms" "CPU ms/order")"
log "$(printf '  %-40s %10.0f %10s %10s %12s\n' "API (HTTP, $C clients)" "$api_rate" "$(median "${api_p50s[@]}")" "$(median "${api_p99s[@]}")" "$cpu_api")"
log "$(printf '  %-40s %10s %10s %10s %12s\n' "  of which PostgreSQL / API / generator" "" "" "" "$(median "${api_cpu_pg[@]}")/$(median "${api_cpu_srv[@]}")/$(median "${api_cpu_cli[@]}")")"
log "$(printf '  %-40s %10.0f %10s %10s %12s\n' "pgbench, same SQL ($C clients)" "$pg_tps" "" "" "$cpu_pg")"
log "$(printf '  %-40s %10s %10s %10s %12s\n' "  of which PostgreSQL / pgbench" "" "" "" "$(median "${pg_cpu_pg[@]}")/$(median "${pg_cpu_cli[@]}")")"
log "  ratio API / pgbench: median $ratio (min $ratio_min, max $ratio_max; per round: ${ratios[*]})   goal >= 0.80"
log "  CPU per order, pgbench side / API side: $cpu_ratio (the ratio a saturated, otherwise idle machine would show)"
log "$(printf '  %-40s %10.0f %10s %10s %12s\n' "fulfill (HTTP, $C clients, one run)" "$(field "$fj" per_second)" "$(field "$fj" p50_ms)" "$(field "$fj" p99_ms)" "$f_cpu")"
log "$(printf '  %-40s %10s %10s %10s %12s\n' "  of which PostgreSQL / API / generator" "" "" "" "$f_cpu_pg/$f_cpu_srv/$f_cpu_cli")"
log "  open loop $low/s: accepted $(field "$knee" per_second)/s, p99 $knee_p99 ms, refused $(field "$knee" refused)"
log "  open loop $sat/s: accepted $(field "$over" per_second)/s, refused $(field "$over" refused_per_s)/s (answered in p99 $(field "$over" refused_p99_ms) ms), accepted p99 $over_p99 ms, max $(field "$over" max_ms) ms"
log "  accepted p99 at $sat/s vs at $low/s: ${over_p99_ratio}x   goal <= 10x; shed by the API: $shed; failed (not refusals): $over_failed"
log "  the generator sent late by p99 $(field "$knee" send_lag_p99_ms) ms at $low/s, $(field "$over" send_lag_p99_ms) ms (max $(field "$over" send_lag_max_ms)) at $sat/s"
log "  the API's own view at $sat/s: $srv_acc_n accepted in mean $srv_acc_mean ms (p99 <= $srv_acc_p99 ms), $srv_shed_n shed in mean $srv_shed_mean ms (p99 <= $srv_shed_p99 ms)"
if [ "$scans" -gt 0 ]; then
	log "  SUSPECT: $scans sequential scans of orders during the measured sides (a foreign-key check without its index)"
fi
if [ "$api_errs" -gt 0 ] || [ "$f_errs" -gt 0 ] || [ "$knee_failed" -gt 0 ] || [ "$over_failed" -gt 0 ] || [ "$log_errors" -gt 0 ]; then
	log "  FAILED: $api_errs closed-loop errors, $f_errs fulfill errors, $knee_failed + $over_failed open-loop failures, $log_errors ERROR lines in $APILOG"
fi

echo "RESULT api_orders_per_s $api_rate"
echo "RESULT api_p50_ms $(median "${api_p50s[@]}")"
echo "RESULT api_p99_ms $(median "${api_p99s[@]}")"
echo "RESULT pgbench_tps $pg_tps"
echo "RESULT api_vs_pgbench_ratio $ratio"
echo "RESULT api_vs_pgbench_ratio_min $ratio_min"
echo "RESULT api_vs_pgbench_ratio_max $ratio_max"
echo "RESULT api_orders_per_s_min $(minimum "${api_rates[@]}")"
echo "RESULT api_orders_per_s_max $(maximum "${api_rates[@]}")"
echo "RESULT pgbench_tps_min $(minimum "${pg_tpss[@]}")"
echo "RESULT pgbench_tps_max $(maximum "${pg_tpss[@]}")"
echo "RESULT api_cpu_ms_per_order $cpu_api"
echo "RESULT api_cpu_ms_per_order_postgres $(median "${api_cpu_pg[@]}")"
echo "RESULT api_cpu_ms_per_order_api $(median "${api_cpu_srv[@]}")"
echo "RESULT api_cpu_ms_per_order_generator $(median "${api_cpu_cli[@]}")"
echo "RESULT pgbench_cpu_ms_per_order $cpu_pg"
echo "RESULT pgbench_cpu_ms_per_order_postgres $(median "${pg_cpu_pg[@]}")"
echo "RESULT api_vs_pgbench_cpu_ratio $cpu_ratio"
echo "RESULT api_fulfill_per_s $(field "$fj" per_second)"
echo "RESULT api_fulfill_p99_ms $(field "$fj" p99_ms)"
echo "RESULT api_fulfill_cpu_ms $f_cpu"
echo "RESULT api_fulfill_cpu_ms_postgres $f_cpu_pg"
echo "RESULT api_fulfill_cpu_ms_api $f_cpu_srv"
echo "RESULT api_fulfill_cpu_ms_generator $f_cpu_cli"
echo "RESULT api_fulfill_errors $f_errs"
echo "RESULT api_errors $api_errs"
echo "RESULT api_bench_orders_seq_scans $scans"
echo "RESULT api_log_errors $log_errors"
echo "RESULT api_knee_offered_per_s $low"
echo "RESULT api_knee_accepted_p99_ms $knee_p99"
echo "RESULT api_knee_refused $(field "$knee" refused)"
echo "RESULT api_overload_offered_per_s $sat"
echo "RESULT api_overload_accepted_per_s $(field "$over" per_second)"
echo "RESULT api_overload_refused_per_s $(field "$over" refused_per_s)"
echo "RESULT api_overload_accepted_p99_ms $over_p99"
echo "RESULT api_overload_accepted_max_ms $(field "$over" max_ms)"
echo "RESULT api_overload_refused_p99_ms $(field "$over" refused_p99_ms)"
echo "RESULT api_overload_p99_vs_knee $over_p99_ratio"
echo "RESULT api_overload_failed $over_failed"
echo "RESULT api_overload_send_lag_p99_ms $(field "$over" send_lag_p99_ms)"
echo "RESULT api_overload_server_accepted_mean_ms $srv_acc_mean"
echo "RESULT api_overload_server_shed_mean_ms $srv_shed_mean"

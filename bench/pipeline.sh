#!/usr/bin/env bash
# End-to-end latency through the real API and every service of 'make up': commit -> Kafka ack
# (capture's histogram), commit -> summary (order_summary), commit -> partner receipt
# (partner.receipts). Prints "RESULT key value" lines for bench/run.sh.
#   PIPELINE_RATES="2000 150"  orders/s offered (open loop), one run each; the first run's figures
#     carry the contract's key names, later ones get an _at_<rate> suffix.  PIPELINE_DURATION=20
#   PIPELINE_KNEE_RATES="250 500 625 750 875 1000 1250 1500"  the knee sweep, ascending, after those;
#     PIPELINE_KNEE_DURATION=12 seconds each. The sweep stops after two rates in a row that the
#     pipeline cannot carry (achieved < 97% of offered, or queues still draining after the load).
#   PIPELINE_WARMUP=30 seconds of unmeasured load at PIPELINE_WARMUP_RATE=150 first (0: none).
# The knee (RESULT pipeline_knee_orders_per_s) is the highest rate measured, in either list, at
# which the pipeline carried the offered rate, held every p99 goal (commit -> Kafka <= 25 ms,
# -> summary <= 100 ms, -> partner <= 250 ms) and no service logged an error in the window.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RATES=${PIPELINE_RATES:-2000 150}
KNEE_RATES=${PIPELINE_KNEE_RATES-250 500 625 750 875 1000 1250 1500}
D=${PIPELINE_DURATION:-20}
KD=${PIPELINE_KNEE_DURATION:-12}
GOAL_KAFKA=25 GOAL_SUMMARY=100 GOAL_PARTNER=250
DRAIN_MAX=${PIPELINE_DRAIN_MAX:-3}
log() { printf '%s\n' "$*" >&2; }

# Stop, at the end, the services this section started: left running after make bench stopped
# PostgreSQL and Kafka, they retried and logged errors, and their CPU skewed whatever ran next.
started_services=()
for s in $(deploy/local/stack.sh services); do
	deploy/local/stack.sh running "$s" || started_services+=("$s")
done
stop_started_services() {
	for ((i = ${#started_services[@]} - 1; i >= 0; i--)); do
		deploy/local/stack.sh stop "${started_services[$i]}" >/dev/null 2>&1 || true
	done
}
trap stop_started_services EXIT
deploy/local/stack.sh up >"$ROOT/.local/log/bench-pipeline-up.log" 2>&1 ||
	{ tail -n 20 "$ROOT/.local/log/bench-pipeline-up.log" >&2; exit 1; }
# shellcheck source=/dev/null
. .local/env
mkdir -p "$ROOT/.local/bench"
PSQL=(psql -X -q -tA -v ON_ERROR_STOP=1 "$DATABASE_URL")
SERVICES=$(deploy/local/stack.sh services)
# shellcheck source=bench/lib.sh
. bench/lib.sh

# The demo at the end of 'make up' timed its order from the API's 201 to the partner's receipt;
# only meaningful as a start-up figure when this 'make up' started the consumers.
first=$(sed -n 's/.*first order: 201 -> partner receipt in \([0-9]*\) ms.*/\1/p' "$ROOT/.local/log/bench-pipeline-up.log" | tail -n1)
echo "RESULT pipeline_first_order_to_partner_ms ${first:-null}"
grep -q 'deliver: ready on' "$ROOT/.local/log/bench-pipeline-up.log" ||
	log "pipeline: the services were already running: pipeline_first_order_to_partner_ms is not a start-up figure"

stock_bench_skus

# Warm-up, not measured: a broker (re)started for this section spends most of its CPU in the
# JIT compiler for its first minutes under load (C2 was 12.5% of a core of the broker's 30%
# at 250 orders/s two minutes after a start), which would be counted against the first rates.
WARMUP=${PIPELINE_WARMUP:-30}
if [ "$WARMUP" -gt 0 ]; then
	log "pipeline: warming up for ${WARMUP}s at ${PIPELINE_WARMUP_RATE:-150} orders/s (not measured)"
	bin/orderflow bench api -api-url "$API_URL" -api-key "$API_KEY" -rate "${PIPELINE_WARMUP_RATE:-150}" -concurrency 256 \
		-duration "${WARMUP}s" -warmup 0s -skus 1000 >/dev/null 2>&1 || log "pipeline: the warm-up load failed; measuring anyway"
	sleep 3
fi

# Log lines of each service from a byte offset on: what it said during a measured window.
log_mark() { local s; for s in $SERVICES; do printf '%s %s\n' "$s" "$(stat -c %s ".local/log/$s.log" 2>/dev/null || echo 0)"; done; }
log_count() { # log_count MARKS LEVEL: "service=n ..." for services that logged LEVEL since MARKS
	local s off n out=""
	while read -r s off; do
		n=$(tail -c +"$((off + 1))" ".local/log/$s.log" 2>/dev/null | grep -c "\"level\":\"$2\"" || true)
		[ "${n:-0}" -gt 0 ] && out+="${out:+ }$s=$n"
	done <<<"$1"
	printf '%s' "$out"
}

# CPU ticks (user + system, cumulative) per part of the stack: each service, Kafka, and
# PostgreSQL with all its backends. The difference over a window, against the window's length,
# says who eats the two cores at a given rate.
cpu_ticks() {
	local pg
	service_ticks
	pg=$(head -n1 .local/run/postgres.pid 2>/dev/null) || return 0
	printf 'postgres %s\n' "$( (echo "$pg"; pgrep -P "$pg") | while read -r pid; do awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null; done | awk '{ n += $1 } END { print n + 0 }')"
}
cpu_share() { # cpu_share BEFORE AFTER SECONDS LOADGEN_SECONDS: "name=percent-of-one-core ..."
	local hz
	hz=$(getconf CLK_TCK)
	join <(sort <<<"$1") <(sort <<<"$2") | awk -v hz="$hz" -v t="$3" '{ printf "%s=%.0f%% ", $1, ($3 - $2) / hz / t * 100 }'
	awk -v l="$4" -v t="$3" 'BEGIN { printf "loadgen=%.0f%%", l / t * 100 }'
}

# child_cpu: CPU seconds this shell's finished children used so far ('times' must run in this
# shell, not in a command substitution's subshell, hence the file).
TIMES="$ROOT/.local/bench/pipeline-times.txt"
child_cpu() { awk 'NR == 2 { sub(/s/, "", $1); sub(/s/, "", $2); split($1, u, "m"); split($2, s, "m"); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$TIMES"; }

# Where the time goes inside the services: mean of a few histograms over a window (sum and
# count before and after, every label set added up).
STAGES="deliver:orderflow_deliver_attempt_duration_seconds partner:orderflow_partner_hook_duration_seconds
	partner:orderflow_partner_receipt_batch_size
	project:orderflow_projector_batch_phase_seconds:apply project:orderflow_projector_batch_size"
stage_snap() {
	local st svc name url f
	for st in $STAGES; do
		svc=${st%%:*} name=${st#*:} f=
		case $name in *:*) f=${name#*:} name=${name%%:*} ;; esac
		case $svc in deliver) url=$DELIVER_METRICS_URL ;; partner) url=$PARTNER_METRICS_URL ;; project) url=$PROJECT_METRICS_URL ;; esac
		curl -fsS "$url" 2>/dev/null | awk -v n="$name" -v f="$f" '
			f != "" && index($1, "\"" f "\"") == 0 { next }
			index($1, n "_sum") == 1 { s += $2 } index($1, n "_count") == 1 { c += $2 }
			END { printf "%s%s %s %s\n", n, (f != "" ? "_" f : ""), s + 0, c + 0 }'
	done
}
stage_means() { # stage_means BEFORE AFTER: "name=mean (count)" per histogram
	join <(sort <<<"$1") <(sort <<<"$2") | awk '{
		n = $1; sub(/^orderflow_/, "", n); c = $5 - $3; s = $4 - $2
		if (c <= 0) next
		if (n ~ /_seconds/) { sub(/_seconds/, "", n); printf "%s=%.1fms(n=%d) ", n, s / c * 1000, c }
		else printf "%s=%.1f(n=%d) ", n, s / c, c }'
}

# PostgreSQL's background work that a window can overlap: autovacuum and autoanalyze runs per
# table (pg_stat_user_tables) and checkpoints (pg_stat_bgwriter), as "name count" lines.
bg_snap() {
	"${PSQL[@]}" -F' ' -c "SELECT relname, autovacuum_count + autoanalyze_count FROM pg_stat_user_tables
		UNION ALL SELECT 'checkpoints', checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
}
bg_diff() { # bg_diff BEFORE AFTER: "name=n ..." for what ran in between
	join <(sort <<<"$1") <(sort <<<"$2") | awk '$3 > $2 { printf "%s%s=%d", sep, $1, $3 - $2; sep = " " }'
}

# Settle before each measured rate: the previous rate (above all 2,000/s, which queues
# tens of thousands of orders) leaves work behind after its queues drained: autovacuum and
# autoanalyze of the tables it grew, the partner's shed callbacks retrying. Measured over the
# next rate's window, that work is a figure about the previous rate (at 150/s PostgreSQL ran
# at 97 % of a core in one run and 70 % in another). Wait, at most PIPELINE_SETTLE_MAX
# seconds, until no autovacuum worker runs and the whole stack used less than
# PIPELINE_SETTLE_CPU % of one core over a second; say how long it took, or that it did not.
SETTLE_MAX=${PIPELINE_SETTLE_MAX:-90}
SETTLE_CPU=${PIPELINE_SETTLE_CPU:-30}
settle() { # settle SUFFIX
	local t0 a b w0 w1 cpu av waited
	t0=$(date +%s.%N)
	while :; do
		a=$(cpu_ticks); w0=$(date +%s.%N); sleep 1; b=$(cpu_ticks); w1=$(date +%s.%N)
		cpu=$(join <(sort <<<"$a") <(sort <<<"$b") | awk -v hz="$(getconf CLK_TCK)" -v t="$(awk -v a="$w0" -v b="$w1" 'BEGIN { print b - a }')" \
			'{ n += $3 - $2 } END { printf "%.0f", n / hz / t * 100 }')
		av=$("${PSQL[@]}" -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")
		waited=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
		if [ "$av" = 0 ] && [ "$cpu" -lt "$SETTLE_CPU" ]; then
			log "pipeline: settled after ${waited}s (stack CPU ${cpu}% of one core, no autovacuum running)"
			break
		fi
		if [ "$waited" -ge "$SETTLE_MAX" ]; then
			log "pipeline: NOT settled after ${waited}s (stack CPU ${cpu}% of one core, $av autovacuum workers); measuring anyway"
			break
		fi
	done
	echo "RESULT pipeline_settle_s$1 $waited"
}

declare -A verdict=()
measure() { # measure RATE SUFFIX DURATION
	local RATE=$1 sfx=$2 dur=$3
	settle "$sfx"
	log "pipeline: $(uptime)"
	local bg0 bgran
	bg0=$(bg_snap)
	t0=$("${PSQL[@]}" -c "SELECT now()")
	marks=$(log_mark)

	# capture's commit -> ack histogram before and after the run; quantiles from the difference.
	hist() { curl -fsS "$CAPTURE_METRICS_URL" | grep '^orderflow_capture_commit_to_ack_seconds_bucket' | sed 's/.*le="\([^"]*\)"} \(.*\)/\1 \2/'; }
	hist >"$ROOT/.local/bench/ack-before.txt"

	log "pipeline: offering $RATE orders/s for ${dur}s through the API (open loop, latency from the scheduled time)"
	local c0 c1 w0 w1 lg h0 h1
	times >"$TIMES"; lg=$(child_cpu)
	c0=$(cpu_ticks); w0=$(date +%s.%N); h0=$(stage_snap)
	api_json=$(bin/orderflow bench api -api-url "$API_URL" -api-key "$API_KEY" -rate "$RATE" -concurrency 256 \
		-duration "${dur}s" -warmup 2s -skus 1000)
	c1=$(cpu_ticks); w1=$(date +%s.%N); h1=$(stage_snap)
	# The load generator's own CPU: what this shell's children used during the load.
	times >"$TIMES"; lg=$(awk -v a="$lg" -v b="$(child_cpu)" 'BEGIN { print b - a }')
	field() { printf '%s' "$api_json" | sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p"; }
	achieved=$(field per_second)
	log "pipeline: waiting for the read model and the partner to catch up (at most 5 min)"
	local tl drain
	tl=$(date +%s.%N)
	# Orders are found by updated_at (indexed; never before created_at): the fulfil callback
	# bumps it, and the order's summary must reach the order's last version.
	for _ in $(seq 1 1500); do
		behind=$("${PSQL[@]}" -c "SELECT
			(SELECT count(*) FROM orders o LEFT JOIN order_summary s ON s.order_id = o.id
			  WHERE o.updated_at >= '$t0' AND o.created_at >= '$t0' AND s.version IS DISTINCT FROM o.version)
			+ (SELECT count(*) FROM outbox x LEFT JOIN partner.receipts r ON r.webhook_id = x.id::text
			  WHERE x.created_at >= '$t0' AND x.event_type = 'order.created' AND r.webhook_id IS NULL)")
		[ "$behind" = 0 ] && break
		sleep 0.2
	done
	drain=$(awk -v a="$tl" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	[ "$behind" = 0 ] || log "pipeline: still $behind behind after 5 min; figures cover what arrived"
	hist >"$ROOT/.local/bench/ack-after.txt"
	errs=$(log_count "$marks" ERROR)
	warns=$(log_count "$marks" WARN)
	bgran=$(bg_diff "$bg0" "$(bg_snap)")

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

	# The verdict: carried (>= 97% of offered, and the queues drained within DRAIN_MAX seconds of
	# the load's end: the partner calls back FulfillDelay (1 s) after a receipt, so the last
	# orders' summaries reach their final version a little over a second after the load even
	# when nothing queues), every p99 goal held, no error logged in the window.
	local carried held clean v
	carried=$(awk -v a="$achieved" -v r="$RATE" -v d="$drain" -v m="$DRAIN_MAX" 'BEGIN { print (a >= 0.97 * r && d <= m) ? 1 : 0 }')
	held=$(awk -v k="$k99" -v s="$s99" -v p="$p99" -v gk="$GOAL_KAFKA" -v gs="$GOAL_SUMMARY" -v gp="$GOAL_PARTNER" \
		'BEGIN { print (k != "null" && s != "null" && p != "null" && k + 0 <= gk && s + 0 <= gs && p + 0 <= gp) ? 1 : 0 }')
	clean=1; [ -z "$errs" ] || clean=0
	v="$carried$held$clean"
	verdict[$RATE]=$v

	log "$(printf '  %-44s %10s %10s\n' "achieved $achieved orders/s (offered $RATE)" "p50 ms" "p99 ms")"
	log "$(printf '  %-44s %10s %10s\n' "API create-order" "$(field p50_ms)" "$(field p99_ms)")"
	log "$(printf '  %-44s %10s %10s\n' "commit -> Kafka ack (capture)" "$k50" "$k99")"
	log "$(printf '  %-44s %10s %10s\n' "commit -> summary (projector)" "$s50" "$s99")"
	log "$(printf '  %-44s %10s %10s\n' "commit -> partner receipt (deliver)" "$p50" "$p99")"
	log "  queues drained ${drain}s after the load; carried=$carried goals_held=$held"
	log "  CPU over the load, % of one core (2 cores = 200%): $(cpu_share "$c0" "$c1" "$(awk -v a="$w0" -v b="$w1" 'BEGIN { print b - a }')" "$lg")"
	log "  inside the services over the load (means): $(stage_means "$h0" "$h1")"
	log "  PostgreSQL background work from the load's start to the drain (autovacuum/analyze runs per table, checkpoints): ${bgran:-none}"
	[ -z "$warns" ] || log "  warnings logged in the window: $warns"
	[ -z "$errs" ] || log "  FLAGGED: errors logged in the window: $errs (see .local/log/)"

	echo "RESULT pipeline_offered_orders_per_s$sfx $RATE"
	echo "RESULT pipeline_orders_per_s$sfx $achieved"
	echo "RESULT pipeline_api_p99_ms$sfx $(field p99_ms)"
	echo "RESULT pipeline_commit_to_kafka_p50_ms$sfx $k50"
	echo "RESULT pipeline_commit_to_kafka_p99_ms$sfx $k99"
	echo "RESULT commit_to_summary_p50_ms$sfx $s50"
	echo "RESULT commit_to_summary_p99_ms$sfx $s99"
	echo "RESULT commit_to_partner_p50_ms$sfx $p50"
	echo "RESULT commit_to_partner_p99_ms$sfx $p99"
	echo "RESULT pipeline_drain_s$sfx $drain"
	echo "RESULT pipeline_log_errors$sfx $(printf '%s' "$errs" | tr ' ' '\n' | awk -F= '{ n += $2 } END { print n + 0 }')"
}

first=1
for r in $RATES; do
	if [ -n "$first" ]; then measure "$r" "" "$D"; first=; else measure "$r" "_at_$r" "$D"; fi
done

log "pipeline: knee sweep over $KNEE_RATES orders/s, ${KD}s each"
fails=0
for r in $KNEE_RATES; do
	[ -n "${verdict[$r]:-}" ] && continue
	measure "$r" "_at_$r" "$KD"
	if [ "${verdict[$r]:0:1}" = 1 ]; then fails=0; else fails=$((fails + 1)); fi
	[ "$fails" -ge 2 ] && { log "pipeline: two rates in a row not carried; the sweep stops at $r/s"; break; }
done

knee=0
for r in "${!verdict[@]}"; do
	[ "${verdict[$r]}" = 111 ] && [ "$r" -gt "$knee" ] && knee=$r
done
log "pipeline: verdicts (carried, goals held, no errors) per offered rate:"
for r in $(printf '%s\n' "${!verdict[@]}" | sort -n); do log "  $r/s: ${verdict[$r]}"; done
log "pipeline: knee $knee orders/s"
echo "RESULT pipeline_knee_orders_per_s $knee"

#!/usr/bin/env bash
# make bench: every benchmark in one run, against limits measured in the same run, on the
# real local stack. Prints a table and writes .local/bench/results.json (one flat object).
#   BENCH_ONLY="api capture pipeline periodic"  choose sections;  BENCH_DURATION=20  seconds per measured side
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STACK=deploy/local/stack.sh
started=()
for s in postgres kafka; do "$STACK" running "$s" || started+=("$s"); done
stop_started() {
	for ((i = ${#started[@]} - 1; i >= 0; i--)); do "$STACK" stop "${started[$i]}" || true; done
}
trap stop_started EXIT
"$STACK" infra >&2
go build -o bin/orderflow ./cmd/orderflow
mkdir -p .local/bench

declare -A results=()
# A figure from a loaded machine is a figure about the load: the 1-minute load average before
# each section is printed and kept (load_average_before_<section>), next to the figures.
load1() { cut -d' ' -f1 /proc/loadavg; }
sections=${BENCH_ONLY:-api capture pipeline periodic}
for s in $sections; do
	script="bench/$s.sh"
	[ -x "$script" ] || script="bench/$s/run.sh"
	if [ ! -x "$script" ]; then echo "bench: no benchmark named $s" >&2; exit 1; fi
	# The pipeline measures its own load on a fresh PostgreSQL and Kafka: after the capture
	# section's backlogs (millions of rows and records, dropped again) their checkpoints,
	# autovacuum and segment deletions ran inside the pipeline's windows. Only what this run
	# started is restarted; bench/pipeline.sh warms the new broker's JIT up before measuring.
	if [ "$s" = pipeline ] && [ -n "${ran:-}" ] && [ "${#started[@]}" = 2 ]; then
		echo "== bench: restarting PostgreSQL and Kafka for the pipeline section" >&2
		for svc in $("$STACK" services); do "$STACK" stop "$svc" >&2 || true; done
		"$STACK" stop kafka postgres >&2
		"$STACK" infra >&2
	elif [ "$s" = pipeline ] && [ -n "${ran:-}" ]; then
		echo "bench: PostgreSQL and Kafka were running before make bench: the pipeline section shares them with what ran before it" >&2
	fi
	ran=1
	echo "== bench: $s   ($(uptime))" >&2
	results[load_average_before_$s]=$(load1)
	while read -r tag key value; do
		[ "$tag" = RESULT ] && results[$key]=$value
	done < <("$script")
done

{
	printf '{'
	sep=''
	for k in $(printf '%s\n' "${!results[@]}" | sort); do
		printf '%s\n  "%s": %s' "$sep" "$k" "${results[$k]}"
		sep=','
	done
	printf '\n}\n'
} >.local/bench/results.json
echo "== results (.local/bench/results.json)" >&2
cat .local/bench/results.json

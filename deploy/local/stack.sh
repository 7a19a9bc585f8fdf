#!/usr/bin/env bash
# The local stack: a private PostgreSQL cluster and a KRaft Kafka cluster (one node, or three
# with ORDERFLOW_KAFKA_NODES=3) under .local/, plus the orderflow services. Never touches a
# system cluster; everything binds to 127.0.0.1.
#
#   stack.sh up            postgres + kafka + every built service, then the demo (make up)
#   stack.sh infra         postgres + kafka only (make test uses this)
#   stack.sh down          stop everything this script started (make down)
#   stack.sh stop NAME...  stop the named services (kafka: every node; kafka-2: node 2 only)
#   stack.sh start NAME... start the named services again (after make up)
#   stack.sh status        one line per service
#   stack.sh running NAME  exit 0 when NAME is running
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOCAL="$ROOT/.local"
RUN="$LOCAL/run"
LOG="$LOCAL/log"
# shellcheck source=versions.env
. "$ROOT/deploy/local/versions.env"

# Default ports sit below 32768, outside Linux's ephemeral range (32768-60999): a port in that
# range can be taken at any moment by an outgoing connection's local end, and a service then
# fails to bind although nothing listens there.
# Ports: the environment wins, then what the first 'make up' of this checkout chose (saved in
# .local/ports.env, so a later 'make down', 'make drill' or 'stack.sh start' finds the same
# stack), then the defaults.
if [ -f "$LOCAL/ports.env" ]; then
	while IFS='=' read -r k v; do
		[ -n "$k" ] && [ -z "${!k:-}" ] && export "$k=$v"
	done <"$LOCAL/ports.env"
fi
PG_PORT=${ORDERFLOW_PG_PORT:-15432}
KAFKA_PORT=${ORDERFLOW_KAFKA_PORT:-19092}
CONTROLLER_PORT=${ORDERFLOW_KAFKA_CONTROLLER_PORT:-19093}
API_PORT=${ORDERFLOW_API_PORT:-18080}
CAPTURE_METRICS_PORT=${ORDERFLOW_CAPTURE_METRICS_PORT:-18081}
PROJECT_METRICS_PORT=${ORDERFLOW_PROJECT_METRICS_PORT:-18082}
DELIVER_METRICS_PORT=${ORDERFLOW_DELIVER_METRICS_PORT:-18083}
PARTNER_PORT=${ORDERFLOW_PARTNER_PORT:-18084}
RECONCILE_METRICS_PORT=${ORDERFLOW_RECONCILE_METRICS_PORT:-18085}
# The API's /metrics is on a listener of its own, not on the public one.
API_OPS_PORT=${ORDERFLOW_API_OPS_PORT:-18086}
# The broker's SASL_SSL listener (SCRAM-SHA-512 over TLS), next to its plaintext one.
KAFKA_SASL_PORT=${ORDERFLOW_KAFKA_SASL_PORT:-19094}
PG_DB=orderflow
PG_SUPERUSER=orderflow

# Kafka: one node by default (fast to start), or three (ORDERFLOW_KAFKA_NODES=3, what make drill
# runs), each a combined broker and controller from the same jars. Node i listens for clients
# on KAFKA_PORT + 2(i-1) and for the controller quorum on CONTROLLER_PORT + 2(i-1).
KAFKA_NODES=${ORDERFLOW_KAFKA_NODES:-1}
case $KAFKA_NODES in 1 | 3) ;; *) printf 'orderflow stack: ORDERFLOW_KAFKA_NODES=%s: use 1 or 3\n' "$KAFKA_NODES" >&2; exit 1 ;; esac
# The settings of the topics capture creates (and the brokers' defaults for any other topic):
# with three nodes every record is on three brokers and acks=all waits for two of them, so one
# broker can die without losing or refusing anything.
TOPIC_PARTITIONS=${ORDERFLOW_TOPIC_PARTITIONS:-6}
TOPIC_REPLICATION_FACTOR=${ORDERFLOW_TOPIC_REPLICATION_FACTOR:-$KAFKA_NODES}
TOPIC_MIN_ISR=${ORDERFLOW_TOPIC_MIN_ISR:-$((KAFKA_NODES == 3 ? 2 : 1))}
TOPIC_RETENTION=${ORDERFLOW_TOPIC_RETENTION:-168h}
# Broker threads: one network thread per listener and two request handlers instead of Kafka's
# 3 and 8. The broker shares two cores with PostgreSQL and every service; at 300 orders/s the
# fewer threads used 0.91 instead of 1.05 ms of broker CPU per order (median of four 30 s runs
# each, restarts alternated; docs/BENCHMARKS.md, "CPU budget per order").
# ORDERFLOW_KAFKA_EXTRA_PROPS: more lines for every node's server.properties (a later line
# overrides an earlier one), e.g. $'num.io.threads=8'.
KAFKA_THREAD_PROPS=$'num.network.threads=1\nnum.io.threads=2'

save_ports() {
	mkdir -p "$LOCAL"
	cat >"$LOCAL/ports.env" <<EOF
ORDERFLOW_PG_PORT=$PG_PORT
ORDERFLOW_KAFKA_PORT=$KAFKA_PORT
ORDERFLOW_KAFKA_CONTROLLER_PORT=$CONTROLLER_PORT
ORDERFLOW_KAFKA_NODES=$KAFKA_NODES
ORDERFLOW_API_PORT=$API_PORT
ORDERFLOW_CAPTURE_METRICS_PORT=$CAPTURE_METRICS_PORT
ORDERFLOW_PROJECT_METRICS_PORT=$PROJECT_METRICS_PORT
ORDERFLOW_DELIVER_METRICS_PORT=$DELIVER_METRICS_PORT
ORDERFLOW_PARTNER_PORT=$PARTNER_PORT
ORDERFLOW_RECONCILE_METRICS_PORT=$RECONCILE_METRICS_PORT
ORDERFLOW_API_OPS_PORT=$API_OPS_PORT
ORDERFLOW_KAFKA_SASL_PORT=$KAFKA_SASL_PORT
EOF
}

DATABASE_URL="postgres://$PG_SUPERUSER@127.0.0.1:$PG_PORT/$PG_DB?sslmode=disable"
kafka_port() { echo $((KAFKA_PORT + 2 * ($1 - 1))); }
kafka_controller_port() { echo $((CONTROLLER_PORT + 2 * ($1 - 1))); }
# kafka_name N: node 1 keeps the name every script knows (kafka.pid, kafka.log); the others are
# kafka-2 and kafka-3.
kafka_name() { if [ "$1" = 1 ]; then echo kafka; else echo "kafka-$1"; fi; }
KAFKA_BROKERS=""
for ((i = 1; i <= KAFKA_NODES; i++)); do KAFKA_BROKERS+="${KAFKA_BROKERS:+,}127.0.0.1:$(kafka_port "$i")"; done
API_URL="http://127.0.0.1:$API_PORT"
PARTNER_URL="http://127.0.0.1:$PARTNER_PORT"

# Services in start order: capture first, so its slot exists before the API writes the first
# outbox row (the slot streams from its creation on).
read -ra SERVICES <<<"${ORDERFLOW_SERVICES:-capture api project deliver partner reconcile}"

say() { printf '%s\n' "$*"; }
die() { printf 'orderflow stack: %s\n' "$*" >&2; exit 1; }

pg_bin() {
	local d
	for d in "${ORDERFLOW_PG_BIN:-}" /usr/lib/postgresql/*/bin /usr/local/pgsql/bin; do
		[ -n "$d" ] && [ -x "$d/initdb" ] && { printf '%s\n' "$d"; return 0; }
	done
	command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
	return 1
}

check_prereqs() {
	local need=("$@") missing=()
	for t in "${need[@]}"; do
		case $t in
		initdb) pg_bin >/dev/null || missing+=("initdb (apt-get install postgresql-15, or set ORDERFLOW_PG_BIN)") ;;
		go) command -v go >/dev/null || missing+=("go (Go 1.26 from go.dev/dl)") ;;
		java) command -v java >/dev/null || missing+=("java (apt-get install openjdk-17-jre-headless)") ;;
		mvn) command -v mvn >/dev/null || missing+=("mvn (apt-get install maven)") ;;
		psql) command -v psql >/dev/null || missing+=("psql (apt-get install postgresql-client)") ;;
		curl) command -v curl >/dev/null || missing+=("curl (apt-get install curl)") ;;
		esac
	done
	if [ ${#missing[@]} -gt 0 ]; then
		for m in "${missing[@]}"; do printf 'orderflow stack: missing prerequisite: install %s\n' "$m" >&2; done
		exit 1
	fi
}

pid_alive() { # pid_alive PID: a running process, not a zombie
	local state
	kill -0 "$1" 2>/dev/null || return 1
	# A killed service whose parent does not reap it lingers as a zombie, which kill -0 still
	# reports: read its state, or 'make up' would take a dead service for a running one.
	# An empty state means the process was reaped between kill -0 and this read (a zombie that
	# init collected just then): gone, not running. Taking "" for alive once let a drill's
	# restart of a killed deliverer answer "running" with the dead pid.
	state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

alive() { # alive NAME: the pid in .local/run/NAME.pid is a running process
	[ -f "$RUN/$1.pid" ] && pid_alive "$(head -n1 "$RUN/$1.pid")"
}

wait_tcp() { # wait_tcp PORT SECONDS
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# --- PostgreSQL -------------------------------------------------------------------------------

# PostgreSQL refuses to run as root, so when we are root the cluster belongs to an unprivileged
# user (postgres if it exists, else nobody).
pg_user() {
	if [ "$(id -u)" != 0 ]; then id -un; elif id postgres >/dev/null 2>&1; then echo postgres; else echo nobody; fi
}

as_pg() {
	local u
	u=$(pg_user)
	# From /, so the unprivileged user is not left in a directory it may not enter.
	if [ "$(id -u)" = 0 ] && [ "$u" != root ]; then (cd / && runuser -u "$u" -- "$@"); else "$@"; fi
}

# pg_dirs sets PGDIR (data), PGSOCK and PGLOG. They live under .local/ unless PostgreSQL's
# unprivileged user cannot reach it (a checkout under /root, mode 700): then they go to a
# directory of their own under /var/tmp, named after this checkout and recorded in
# .local/pg-home. A .local/ without that record is a fresh checkout, so an old directory of
# the same name (an earlier clone at the same path) is wiped, never reused.
pg_dirs() {
	PGDIR="$LOCAL/pg" PGSOCK="$LOCAL/pgsock" PGLOG="$LOG/postgres.log"
	local u home
	u=$(pg_user)
	mkdir -p "$LOCAL"
	if [ -f "$LOCAL/pg-home" ]; then
		home=$(cat "$LOCAL/pg-home")
	elif [ "$(id -u)" = 0 ] && [ "$u" != root ] && ! runuser -u "$u" -- test -x "$LOCAL" 2>/dev/null; then
		home="/var/tmp/orderflow-pg-$(printf '%s' "$ROOT" | md5sum | cut -c1-12)"
		rm -rf "$home"
		mkdir -p "$home"
		chown "$u" "$home"
		printf '%s\n' "$home" >"$LOCAL/pg-home"
		ln -sfn "$home/pg" "$LOCAL/pg"
	fi
	if [ -n "${home:-}" ]; then
		PGDIR="$home/pg" PGSOCK="$home/sock" PGLOG="$home/postgres.log"
	fi
}

pg_up() {
	local bin u
	bin=$(pg_bin) || die "initdb not found"
	u=$(pg_user)
	pg_dirs
	mkdir -p "$RUN" "$LOG" "$PGSOCK"
	touch "$PGLOG"
	[ "$PGLOG" = "$LOG/postgres.log" ] || ln -sfn "$PGLOG" "$LOG/postgres.log"
	if [ "$(id -u)" = 0 ]; then chown "$u" "$PGSOCK" "$PGLOG"; chmod 755 "$LOCAL"; fi
	if [ ! -f "$PGDIR/PG_VERSION" ]; then
		say "postgres: initdb into $PGDIR (user $u, port $PG_PORT)"
		mkdir -p "$PGDIR"
		[ "$(id -u)" = 0 ] && chown "$u" "$PGDIR"
		as_pg "$bin/initdb" -D "$PGDIR" -U "$PG_SUPERUSER" --auth=trust -E UTF8 --locale=C.UTF-8 >"$LOCAL/initdb.log" 2>&1 ||
			{ cat "$LOCAL/initdb.log" >&2; die "initdb failed"; }
		cat >>"$PGDIR/postgresql.conf" <<EOF

# orderflow local stack
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PGSOCK'
wal_level = logical
max_wal_senders = 40
max_replication_slots = 40
# A slot that nobody reads may pin at most this much WAL before PostgreSQL invalidates it,
# so a forgotten slot cannot fill the disk.
max_slot_wal_keep_size = 4GB
wal_sender_timeout = 60s
max_connections = 300
shared_buffers = 256MB
fsync = on
# The API's commit is durable when it returns, and the walsender only sends flushed WAL, so
# the flush is part of commit -> Kafka either way (docs/CAPTURE.md, "Latency").
synchronous_commit = on
# Checkpoints (docs/CAPTURE.md, "Latency: where commit -> Kafka time goes"). After each one,
# the first change to every page of the outbox's random-uuid primary key writes the whole
# page to WAL: measured 7.5x the WAL per commit (3.0 kB instead of 0.4 kB) for the first
# 10,000 commits into a 1 M-row outbox. The default max_wal_size (1GB) started a checkpoint
# every ~540 MB of WAL, i.e. about every 300,000 order-sized events of a backlog, and the
# spread checkpoint was still writing when the next bench began. 8GB holds bench/capture's
# largest backlog (2 M events) without one; 15min halves timed checkpoints. Production: both
# lengthen crash recovery (up to max_wal_size of WAL to replay) and max_wal_size needs that
# much disk for pg_wal; size it from the WAL rate times checkpoint_timeout.
max_wal_size = 8GB
checkpoint_timeout = 15min
checkpoint_completion_target = 0.9
# wal_compression is left off: the full-page images are of uuid index pages, random bytes;
# measured WAL saved after a checkpoint: lz4 3%, pglz 0%, zstd 16%.
# Observability only: checkpoint and autovacuum lines (with their WAL and full-page-image
# counts) to tie a slow second to them, and pg_stat_wal.wal_write_time/wal_sync_time
# (pg_test_timing: 48 ns per clock read here).
log_checkpoints = on
log_autovacuum_min_duration = 0
track_wal_io_timing = on
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
EOF
	fi
	if alive postgres; then say "postgres: running (pid $(cat "$RUN/postgres.pid"))"; return 0; fi
	port_in_use "$PG_PORT" && die "postgres: 127.0.0.1:$PG_PORT is already in use by another process (set ORDERFLOW_PG_PORT)"
	as_pg "$bin/pg_ctl" -D "$PGDIR" -l "$PGLOG" -o "-p $PG_PORT" -w -t 60 start >/dev/null ||
		{ tail -n 20 "$PGLOG" >&2; die "postgres did not start (see .local/log/postgres.log)"; }
	head -n1 "$PGDIR/postmaster.pid" >"$RUN/postgres.pid"
	"$bin/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_SUPERUSER" -d postgres -tAc \
		"SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1 ||
		"$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_SUPERUSER" "$PG_DB"
	say "postgres: started on 127.0.0.1:$PG_PORT (pid $(cat "$RUN/postgres.pid"))"
}

pg_down() {
	local bin
	bin=$(pg_bin) || return 0
	pg_dirs
	if [ -f "$PGDIR/postmaster.pid" ]; then
		as_pg "$bin/pg_ctl" -D "$PGDIR" -m fast -w -t 60 stop >/dev/null 2>&1 || true
		say "postgres: stopped"
	fi
	rm -f "$RUN/postgres.pid"
}

# --- Kafka ------------------------------------------------------------------------------------

kafka_libs() {
	local libs="$LOCAL/kafka/libs" marker="$LOCAL/kafka/libs/.resolved-$KAFKA_SCALA-$KAFKA_VERSION-log4j-$LOG4J_VERSION"
	[ -f "$marker" ] && return 0
	say "kafka: resolving org.apache.kafka:kafka_$KAFKA_SCALA:$KAFKA_VERSION and its runtime dependencies with mvn"
	rm -rf "$libs"
	mkdir -p "$libs" "$LOCAL/kafka/resolve"
	cat >"$LOCAL/kafka/resolve/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>orderflow.local</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_$KAFKA_SCALA</artifactId><version>$KAFKA_VERSION</version></dependency>
    <!-- the broker logs through SLF4J 1.7: bind it to log4j2, as the Kafka distribution does -->
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
	mvn -q -B -f "$LOCAL/kafka/resolve/pom.xml" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$libs" >"$LOG/kafka-resolve.log" 2>&1 ||
		{ tail -n 30 "$LOG/kafka-resolve.log" >&2; die "mvn could not resolve Kafka $KAFKA_VERSION (see .local/log/kafka-resolve.log)"; }
	touch "$marker"
}

# kafka_reshape makes the cluster on disk the one asked for. A cluster formatted with another
# number of nodes cannot be reused (its controller quorum is part of its storage), so its data
# is deleted and the Kafka users among the services are stopped, to be started again with the
# new topic settings. PostgreSQL is left alone: capture goes on from its slot.
kafka_reshape() {
	local had=1 n s
	[ -f "$LOCAL/kafka/nodes" ] && had=$(cat "$LOCAL/kafka/nodes")
	[ -f "$LOCAL/kafka/data/meta.properties" ] || had=$KAFKA_NODES
	[ "$had" = "$KAFKA_NODES" ] && return 0
	say "kafka: the stack's cluster has $had node(s), $KAFKA_NODES asked for: its topics start again empty"
	for s in capture project deliver; do stop_pid "$s"; done
	for ((n = 1; n <= 3; n++)); do stop_pid "$(kafka_name "$n")"; done
	rm -rf "$LOCAL/kafka/data" "$LOCAL/kafka"/data-* "$LOCAL/kafka/cluster-id"
}

kafka_up() {
	local n
	mkdir -p "$RUN" "$LOG" "$LOCAL/kafka"
	kafka_reshape
	for ((n = 1; n <= KAFKA_NODES; n++)); do kafka_up_node "$n"; done
	printf '%s\n' "$KAFKA_NODES" >"$LOCAL/kafka/nodes"
	for ((n = 1; n <= KAFKA_NODES; n++)); do kafka_wait_node "$n"; done
}

kafka_up_node() {
	local n=$1 name port cport conf data voters="" i p
	name=$(kafka_name "$n")
	if alive "$name"; then return 0; fi
	port=$(kafka_port "$n")
	cport=$(kafka_controller_port "$n")
	local ports=("$port" "$cport")
	# The SASL_SSL listener (kafka_sasl_conf) is node 1's.
	[ "$n" = 1 ] && ports+=("$KAFKA_SASL_PORT")
	for p in "${ports[@]}"; do
		port_in_use "$p" && die "$name: 127.0.0.1:$p is already in use by another process (set ORDERFLOW_KAFKA_PORT / ORDERFLOW_KAFKA_CONTROLLER_PORT)"
	done
	kafka_libs
	for ((i = 1; i <= KAFKA_NODES; i++)); do voters+="${voters:+,}$i@127.0.0.1:$(kafka_controller_port "$i")"; done
	if [ "$n" = 1 ]; then
		conf="$LOCAL/kafka/server.properties" data="$LOCAL/kafka/data"
	else
		conf="$LOCAL/kafka/server-$n.properties" data="$LOCAL/kafka/data-$n"
	fi
	cat >"$conf" <<EOF
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$data
num.partitions=$TOPIC_PARTITIONS
default.replication.factor=$TOPIC_REPLICATION_FACTOR
min.insync.replicas=$TOPIC_MIN_ISR
auto.create.topics.enable=false
unclean.leader.election.enable=false
offsets.topic.replication.factor=$KAFKA_NODES
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=$KAFKA_NODES
transaction.state.log.min.isr=$TOPIC_MIN_ISR
share.coordinator.state.topic.replication.factor=$KAFKA_NODES
share.coordinator.state.topic.min.isr=$TOPIC_MIN_ISR
group.initial.rebalance.delay.ms=0
log.retention.hours=168
$KAFKA_THREAD_PROPS
${ORDERFLOW_KAFKA_EXTRA_PROPS:-}
EOF
	# The SASL_SSL listener lives on node 1 only: one such path is what the tests need.
	[ "$n" = 1 ] && kafka_sasl_conf "$conf"
	local cp="$LOCAL/kafka/libs/*" heap=768m
	[ "$KAFKA_NODES" = 1 ] || heap=384m # three JVMs on a small machine
	local jopts=(-Xms256m "-Xmx$heap" -XX:+UseG1GC -Djava.awt.headless=true
		"-Dlog4j2.configurationFile=$ROOT/deploy/local/kafka-log4j2.properties")
	if [ ! -f "$data/meta.properties" ]; then
		local cid
		# One cluster id for every node of the cluster.
		cid=$(cat "$LOCAL/kafka/cluster-id" 2>/dev/null || true)
		if [ -z "$cid" ]; then
			cid=$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)
			[ -n "$cid" ] || die "kafka: could not make a cluster id"
			printf '%s\n' "$cid" >"$LOCAL/kafka/cluster-id"
		fi
		java "${jopts[@]}" -cp "$cp" kafka.tools.StorageTool format -t "$cid" -c "$conf" >"$LOG/$name-format.log" 2>&1 ||
			{ cat "$LOG/$name-format.log" >&2; die "$name: formatting storage failed"; }
		say "$name: formatted KRaft storage (cluster $cid, node $n of $KAFKA_NODES)"
	fi
	nohup java "${jopts[@]}" -cp "$cp" kafka.Kafka "$conf" >>"$LOG/$name.log" 2>&1 </dev/null &
	echo $! >"$RUN/$name.pid"
}

# kafka_wait_node waits for a node's client port. A node of a three-node cluster opens it only
# once the quorum has a leader, so all nodes are started before any is waited for.
kafka_wait_node() {
	local n=$1 name port
	name=$(kafka_name "$n")
	port=$(kafka_port "$n")
	if ! wait_tcp "$port" 90; then
		tail -n 30 "$LOG/$name.log" >&2
		die "$name did not open 127.0.0.1:$port within 90 s (see .local/log/$name.log)"
	fi
	say "$name: $KAFKA_VERSION on 127.0.0.1:$port (pid $(cat "$RUN/$name.pid"))"
}

# kafka_down stops every node at once: one after the other, each controlled shutdown waits to
# hand its leaderships to nodes that are about to stop too.
kafka_down() {
	local n
	for ((n = 3; n >= 1; n--)); do stop_pid "$(kafka_name "$n")" & done
	wait
}

# --- TLS and SASL ------------------------------------------------------------------------------
# One TLS path to PostgreSQL (the same port: the server takes TLS and plain connections; the
# API connects with sslmode=verify-full) and one SASL_SSL listener on the broker (SCRAM-SHA-512;
# the deliverer consumes through it), with certificates of a local CA made here by openssl. The
# plaintext paths stay for everything else, so tests and tools need no credentials.

TLS_DIR="$LOCAL/tls"
KAFKA_SASL_USER=orderflow
KAFKA_SASL_PASSWORD_FILE="$TLS_DIR/kafka-sasl-password"

# tls_certs makes, once, a CA and a server certificate for 127.0.0.1 and localhost, the same
# certificate as a PKCS#12 keystore for the broker, and the broker's SCRAM password.
tls_certs() {
	[ -s "$TLS_DIR/kafka.p12" ] && [ -s "$KAFKA_SASL_PASSWORD_FILE" ] && return 0
	command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
	mkdir -p "$TLS_DIR"
	chmod 700 "$TLS_DIR"
	(
		cd "$TLS_DIR"
		umask 077
		openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=orderflow local CA" 2>/dev/null
		openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
		printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
		openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 825 -extfile server.ext 2>/dev/null
		head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >kafka-keystore-password
		openssl pkcs12 -export -in server.crt -inkey server.key -certfile ca.crt -name kafka \
			-out kafka.p12 -passout "file:kafka-keystore-password"
		head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$KAFKA_SASL_PASSWORD_FILE"
		chmod 644 ca.crt
	) || die "making the local TLS certificates failed"
	say "tls: made a local CA and certificates in $TLS_DIR"
}

# pg_tls turns TLS on in the local PostgreSQL (a reload, no restart): the server certificate is
# copied into the data directory, where the server's user can read it.
pg_tls() {
	local bin u
	bin=$(pg_bin)
	u=$(pg_user)
	pg_dirs
	if ! cmp -s "$TLS_DIR/server.crt" "$PGDIR/server.crt" 2>/dev/null; then
		install -m 600 "$TLS_DIR/server.key" "$PGDIR/server.key"
		install -m 644 "$TLS_DIR/server.crt" "$PGDIR/server.crt"
		[ "$(id -u)" = 0 ] && chown "$u" "$PGDIR/server.key" "$PGDIR/server.crt"
	fi
	[ "$("$bin/psql" -X -tAq "$DATABASE_URL" -c "SHOW ssl")" = on ] && return 0
	"$bin/psql" -X -q "$DATABASE_URL" -c "ALTER SYSTEM SET ssl_cert_file = 'server.crt'" \
		-c "ALTER SYSTEM SET ssl_key_file = 'server.key'" -c "ALTER SYSTEM SET ssl = on" -c "SELECT pg_reload_conf()" >/dev/null ||
		die "turning on TLS in postgres failed"
	local i
	for ((i = 0; i < 50; i++)); do
		[ "$("$bin/psql" -X -tAq "$DATABASE_URL" -c "SHOW ssl")" = on ] && { say "postgres: TLS on (verify against $TLS_DIR/ca.crt)"; return 0; }
		sleep 0.1
	done
	die "postgres did not turn TLS on (see .local/log/postgres.log)"
}

# DATABASE_TLS_URL is the owner's connection over TLS, verifying the server's certificate.
TLS_PARAMS="sslmode=verify-full&sslrootcert=$TLS_DIR/ca.crt"
DATABASE_TLS_URL="${DATABASE_URL/sslmode=disable/"$TLS_PARAMS"}"
KAFKA_SASL_BROKERS="127.0.0.1:$KAFKA_SASL_PORT"

# kafka_sasl_conf CONF adds the SASL_SSL listener to a broker configuration kafka_up wrote.
kafka_sasl_conf() {
	local conf=$1 ks
	ks=$(cat "$TLS_DIR/kafka-keystore-password")
	sed -i -e "s|^listeners=.*|&,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT|" \
		-e "s|^advertised.listeners=.*|&,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT|" \
		-e "s|^listener.security.protocol.map=.*|&,SASL_SSL:SASL_SSL|" "$conf"
	cat >>"$conf" <<EOF
# SASL_SSL listener (deploy/local/stack.sh kafka_sasl_conf): SCRAM-SHA-512 over TLS
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$TLS_DIR/kafka.p12
listener.name.sasl_ssl.ssl.keystore.password=$ks
listener.name.sasl_ssl.ssl.key.password=$ks
EOF
}

# kafka_sasl_user gives the SCRAM user its password (again: it is idempotent), through the
# plaintext listener, as the broker keeps SCRAM credentials in its metadata.
kafka_sasl_user() {
	local i
	wait_tcp "$KAFKA_SASL_PORT" 60 || die "kafka: no SASL_SSL listener on 127.0.0.1:$KAFKA_SASL_PORT"
	for ((i = 0; i < 30; i++)); do
		java -cp "$LOCAL/kafka/libs/*" "-Dlog4j2.configurationFile=$ROOT/deploy/local/kafka-log4j2.properties" kafka.admin.ConfigCommand \
			--bootstrap-server "$KAFKA_BROKERS" --alter --entity-type users --entity-name "$KAFKA_SASL_USER" \
			--add-config "SCRAM-SHA-512=[password=$(cat "$KAFKA_SASL_PASSWORD_FILE")]" >>"$LOG/kafka-sasl.log" 2>&1 && return 0
		sleep 1
	done
	tail -n 20 "$LOG/kafka-sasl.log" >&2
	die "kafka: could not set the SCRAM user's password (see .local/log/kafka-sasl.log)"
}

stop_pid() { # stop_pid NAME: SIGTERM, wait up to 30 s, then SIGKILL
	local name=$1 f="$RUN/$1.pid" pid i
	[ -f "$f" ] || return 0
	pid=$(head -n1 "$f")
	if pid_alive "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 300; i++)); do pid_alive "$pid" || break; sleep 0.1; done
		pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
		say "$name: stopped"
	fi
	rm -f "$f"
}

# --- orderflow services -------------------------------------------------------------------------

write_env() {
	mkdir -p "$LOCAL"
	local webhook_secret endpoint_id
	# The partner's endpoint secret is issued once by the admin API (register_partner) and kept.
	webhook_secret=${WEBHOOK_SECRET:-$(env_value WEBHOOK_SECRET)}
	endpoint_id=${PARTNER_ENDPOINT_ID:-$(env_value PARTNER_ENDPOINT_ID)}
	# The file holds API keys and the webhook secret: readable by its owner only, from the
	# moment it exists (umask), not after a chmod that leaves a window.
	(umask 077 && cat >"$LOCAL/env.tmp") <<EOF
# Written by 'make up'. Source it: . .local/env
DATABASE_URL='$DATABASE_URL'
KAFKA_BROKERS='$KAFKA_BROKERS'
API_URL='$API_URL'
PARTNER_URL='$PARTNER_URL'
API_KEY=$API_KEY
ADMIN_API_KEY=$ADMIN_API_KEY
PARTNER_API_KEY=$PARTNER_API_KEY
WEBHOOK_SECRET=$webhook_secret
PARTNER_ENDPOINT_ID=$endpoint_id
# The API seals webhook secrets with this key ring; the deliverer opens them to sign. The
# partner listens on loopback, which webhook endpoints may use only when allowlisted.
WEBHOOK_KEYRING_FILE='$KEYRING'
WEBHOOK_ALLOW=127.0.0.1
API_METRICS_URL='http://127.0.0.1:$API_OPS_PORT/metrics'
CAPTURE_METRICS_URL='http://127.0.0.1:$CAPTURE_METRICS_PORT/metrics'
PROJECT_METRICS_URL='http://127.0.0.1:$PROJECT_METRICS_PORT/metrics'
DELIVER_METRICS_URL='http://127.0.0.1:$DELIVER_METRICS_PORT/metrics'
PARTNER_METRICS_URL='$PARTNER_URL/metrics'
RECONCILE_METRICS_URL='http://127.0.0.1:$RECONCILE_METRICS_PORT/metrics'
export DATABASE_URL KAFKA_BROKERS API_URL PARTNER_URL API_KEY ADMIN_API_KEY PARTNER_API_KEY WEBHOOK_SECRET
export PARTNER_ENDPOINT_ID WEBHOOK_KEYRING_FILE WEBHOOK_ALLOW
EOF
	chmod 600 "$LOCAL/env.tmp"
	mv "$LOCAL/env.tmp" "$LOCAL/env"
}

service_addr() {
	case $1 in
	api) echo "127.0.0.1:$API_PORT" ;;
	capture) echo "127.0.0.1:$CAPTURE_METRICS_PORT" ;;
	project) echo "127.0.0.1:$PROJECT_METRICS_PORT" ;;
	deliver) echo "127.0.0.1:$DELIVER_METRICS_PORT" ;;
	partner) echo "127.0.0.1:$PARTNER_PORT" ;;
	reconcile) echo "127.0.0.1:$RECONCILE_METRICS_PORT" ;;
	esac
}

# service_db_url NAME: how service NAME connects to PostgreSQL: as its own least-privilege
# role, which the migrations create (sql/migrations/00008_service_roles.sql). DATABASE_URL in
# .local/env stays the owner's, for migrations, scripts and operators.
service_db_url() {
	local role
	case $1 in
	api) role=orderflow_api ;;
	capture) role=orderflow_capture ;;
	project) role=orderflow_projector ;;
	deliver) role=orderflow_deliver ;;
	partner) role=orderflow_partner ;;
	reconcile) role=orderflow_reconcile ;;
	*) printf '%s\n' "$DATABASE_URL"; return ;;
	esac
	local from="//$PG_SUPERUSER@" to="//$role@" url=$DATABASE_URL
	# The API takes the TLS path, verifying the server's certificate.
	[ "$1" = api ] && url=$DATABASE_TLS_URL
	printf '%s\n' "${url/"$from"/"$to"}"
}

# service_env NAME: settings one service gets beyond the common ones. The deliverer consumes
# through the broker's SASL_SSL listener.
service_env() {
	# ORDERFLOW_PPROF_PORT=P serves Go's profiles of the services on P (project), P+1 (deliver),
	# P+2 (partner), P+3 (api) and P+4 (capture), on a listener of their own
	# (docs/BENCHMARKS.md "Profiling a service").
	if [ -n "${ORDERFLOW_PPROF_PORT:-}" ]; then
		case $1 in
		project) echo "PPROF_ADDR=127.0.0.1:$ORDERFLOW_PPROF_PORT" ;;
		deliver) echo "PPROF_ADDR=127.0.0.1:$((ORDERFLOW_PPROF_PORT + 1))" ;;
		partner) echo "PPROF_ADDR=127.0.0.1:$((ORDERFLOW_PPROF_PORT + 2))" ;;
		api) echo "PPROF_ADDR=127.0.0.1:$((ORDERFLOW_PPROF_PORT + 3))" ;;
		capture) echo "PPROF_ADDR=127.0.0.1:$((ORDERFLOW_PPROF_PORT + 4))" ;;
		esac
	fi
	# The consumers share the box's cores with PostgreSQL, Kafka and the API, and each needs a
	# fraction of one: one thread (no hand-offs between threads, no scheduler spinning to find
	# work) and a collector that runs a quarter as often over their few MB of live heap cut
	# their CPU per order by 14-19 % at 300 orders/s (docs/BENCHMARKS.md, "CPU budget per
	# order"). Settings in the caller's environment win.
	case $1 in
	project | deliver | partner) echo "GOMAXPROCS=${GOMAXPROCS:-1}" "GOGC=${GOGC:-400}" ;;
	esac
	case $1 in
	deliver)
		# Only node 1 has the SASL_SSL listener, and a client that bootstraps through it sees
		# only the brokers that have one: on a three-node cluster the deliverer stays on the
		# plaintext listeners.
		[ "$KAFKA_NODES" = 1 ] || return 0
		printf '%s\n' "KAFKA_BROKERS=$KAFKA_SASL_BROKERS" "KAFKA_CA_FILE=$TLS_DIR/ca.crt" "KAFKA_SASL_MECHANISM=SCRAM-SHA-512" \
			"KAFKA_USERNAME=$KAFKA_SASL_USER" "KAFKA_PASSWORD_FILE=$KAFKA_SASL_PASSWORD_FILE"
		;;
	esac
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

service_up() {
	local name=$1 addr
	if alive "$name"; then say "$name: running (pid $(cat "$RUN/$name.pid"))"; return 0; fi
	addr=$(service_addr "$name")
	# Another process on our port would answer our readiness check and hide our failure.
	port_in_use "${addr##*:}" && die "$name: 127.0.0.1:${addr##*:} is already in use by another process (stop it, or move ours with the ORDERFLOW_*_PORT variables at the top of deploy/local/stack.sh)"
	# reconcile runs as a daemon here (--every); alone it is a one-shot report.
	DATABASE_URL="$(service_db_url "$name")" KAFKA_BROKERS="$KAFKA_BROKERS" HTTP_ADDR="$addr" API_URL="$API_URL" OPS_ADDR="127.0.0.1:$API_OPS_PORT" \
		RECONCILE_EVERY="${RECONCILE_EVERY:-1m}" CAPTURE_PARTITIONS="$TOPIC_PARTITIONS" \
		CAPTURE_REPLICATION_FACTOR="$TOPIC_REPLICATION_FACTOR" CAPTURE_MIN_INSYNC_REPLICAS="$TOPIC_MIN_ISR" \
		CAPTURE_TOPIC_RETENTION="$TOPIC_RETENTION" env $(service_env "$name") nohup "$ROOT/bin/orderflow" "$name" >>"$LOG/$name.log" 2>&1 </dev/null &
	echo $! >"$RUN/$name.pid"
	local i
	for ((i = 0; i < 300; i++)); do
		curl -fsS "http://$addr/readyz" >/dev/null 2>&1 && { say "$name: ready on http://$addr (pid $(cat "$RUN/$name.pid"))"; return 0; }
		alive "$name" || { tail -n 20 "$LOG/$name.log" >&2; die "$name exited at start (see .local/log/$name.log)"; }
		sleep 0.1
	done
	tail -n 20 "$LOG/$name.log" >&2
	die "$name not ready after 30 s (see .local/log/$name.log)"
}

# --- API keys --------------------------------------------------------------------------------

env_value() { # env_value NAME: NAME's value in the current .local/env, if any
	grep -s "^$1=" "$LOCAL/env" | cut -d= -f2- || true
}

# ensure_key VAR CLIENT ROLE sets VAR to the key .local/env holds when it is still an active
# key of CLIENT with ROLE; otherwise 'orderflow apikey create' makes one (it prints the key
# once; only its digest is stored). Keys therefore survive 'make up' and a revoked one is
# replaced.
ensure_key() {
	local var=$1 client=$2 role=$3 key bin
	bin=$(pg_bin)
	key=$(env_value "$var")
	if [ -n "$key" ] && [ "$("$bin/psql" -X -tAq -v key="$key" -v client="$client" -v role="$role" "$DATABASE_URL" <<'SQL'
SELECT count(*) FROM api_clients WHERE key_sha256 = sha256(convert_to(:'key', 'UTF8'))
	AND revoked_at IS NULL AND client_id = :'client' AND role = :'role';
SQL
	)" = 1 ]; then
		printf -v "$var" '%s' "$key"
		return 0
	fi
	key=$(DATABASE_URL="$DATABASE_URL" "$ROOT/bin/orderflow" apikey create -client "$client" -role "$role" \
		-name "make up" 2>>"$LOG/apikey.log") || { tail -n 5 "$LOG/apikey.log" >&2; die "creating the $role key for $client failed"; }
	printf -v "$var" '%s' "$key"
	say "api: created a $role key for client $client (\$$var in .local/env)"
}

KEYRING="$LOCAL/webhook-keyring"

# ensure_keyring makes the key ring that encrypts webhook secrets at rest, once: one AES-256
# key, readable by its owner only. Losing it makes every stored secret unreadable.
ensure_keyring() {
	[ -s "$KEYRING" ] && return 0
	mkdir -p "$LOCAL"
	(umask 077 && printf '# orderflow webhook secret key ring (docs/WEBHOOKS.md)\nlocal1:%s\n' \
		"$(head -c 32 /dev/urandom | base64 | tr -d '\n')" >"$KEYRING.tmp")
	mv "$KEYRING.tmp" "$KEYRING"
	say "api: made the webhook secret key ring $KEYRING"
}

# ensure_keys: the demo client's key, the partner's fulfiller key (the partner calls back with
# it, never with a client's key) and an admin key.
ensure_keys() {
	ensure_key API_KEY demo client
	ensure_key PARTNER_API_KEY partner fulfiller
	ensure_key ADMIN_API_KEY admin admin
}

# register_partner makes the mock partner a webhook endpoint for order.created, through the
# admin API (so the demo shows the real path), once: the secret it returns and the endpoint's
# id go to .local/env and are reused by every later 'make up'. The database cannot say which
# secret an endpoint has (it holds them encrypted), so the endpoint id is what ties the two.
register_partner() {
	local bin hook body id stale st
	bin=$(pg_bin)
	hook="$PARTNER_URL/partner-hook"
	id=${PARTNER_ENDPOINT_ID:-}
	[ -n "${WEBHOOK_SECRET:-}" ] || id=
	# Any other enabled endpoint of the local mock partner is stale: a secret we no longer hold,
	# or an old port. Left enabled, its deliveries would fail until they die.
	stale=$("$bin/psql" -X -tAq -v id="$id" -v hook="$hook" "$DATABASE_URL" <<'SQL'
SELECT id FROM webhook_endpoints WHERE disabled_at IS NULL AND url LIKE 'http://127.0.0.1:%/partner-hook'
	AND NOT (id::text = :'id' AND url = :'hook');
SQL
	)
	for st in $stale; do
		curl -fsS -o /dev/null -X POST "$API_URL/v1/admin/endpoints/$st/disable" -H "Authorization: Bearer $ADMIN_API_KEY" \
			-H 'Content-Type: application/json' -d '{"reason": "make up registered a new partner endpoint"}' || die "disabling stale endpoint $st failed"
	done
	if [ -n "$id" ] && [ "$("$bin/psql" -X -tAq -v id="$id" -v hook="$hook" "$DATABASE_URL" <<'SQL'
SELECT count(*) FROM webhook_endpoints WHERE id::text = :'id' AND url = :'hook' AND disabled_at IS NULL;
SQL
	)" = 1 ]; then
		return 0
	fi
	body=$(curl -fsS -X POST "$API_URL/v1/admin/endpoints" -H "Authorization: Bearer $ADMIN_API_KEY" \
		-H 'Content-Type: application/json' -d "{\"url\": \"$hook\", \"event_types\": [\"order.created\"]}") ||
		die "registering the partner as a webhook endpoint failed"
	WEBHOOK_SECRET=$(printf '%s' "$body" | sed -n 's/.*"secret":"\(whsec_[^"]*\)".*/\1/p')
	PARTNER_ENDPOINT_ID=$(printf '%s' "$body" | sed -n 's/.*"id":"\([0-9a-f-]*\)".*/\1/p')
	[ -n "$WEBHOOK_SECRET" ] && [ -n "$PARTNER_ENDPOINT_ID" ] || die "the endpoint registration answered without an id or a secret"
	export WEBHOOK_SECRET PARTNER_ENDPOINT_ID
	write_env
	say "partner: registered $hook for order.created"
}

# On any failure (set -e, die, or a signal) stop what this run started, newest first, so a
# failed 'make up' leaves nothing half-started behind. Parts that were already running stay.
cleanup_failed_up() {
	local rc=$? i
	[ "$rc" = 0 ] && return 0
	[ ${#STARTED[@]} -gt 0 ] || return "$rc"
	say "orderflow stack: start failed; stopping what this run started: ${STARTED[*]}" >&2
	for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
		case ${STARTED[$i]} in postgres) pg_down ;; kafka) kafka_down ;; *) stop_pid "${STARTED[$i]}" ;; esac
	done >&2
	return "$rc"
}

STARTED=()
note_start() { alive "$1" || STARTED+=("$1"); }

cmd_infra() {
	check_prereqs initdb java mvn psql
	save_ports
	trap cleanup_failed_up EXIT
	tls_certs
	note_start postgres; pg_up; pg_tls
	note_start kafka; kafka_up; kafka_sasl_user
	trap - EXIT
}

cmd_up() {
	check_prereqs go initdb java mvn psql curl
	save_ports
	trap cleanup_failed_up EXIT
	tls_certs
	note_start postgres; pg_up; pg_tls
	note_start kafka; kafka_up; kafka_sasl_user
	(cd "$ROOT" && go build -o bin/orderflow ./cmd/orderflow) || die "go build failed"
	DATABASE_URL="$DATABASE_URL" "$ROOT/bin/orderflow" migrate >>"$LOG/migrate.log" 2>&1 ||
		{ tail -n 20 "$LOG/migrate.log" >&2; die "migrations failed (see .local/log/migrate.log)"; }
	ensure_keys
	ensure_keyring
	write_env
	# shellcheck source=/dev/null
	. "$LOCAL/env"
	for s in "${SERVICES[@]}"; do
		# The partner verifies with the endpoint's secret, which the running API issues.
		[ "$s" = partner ] && register_partner
		note_start "$s"; service_up "$s"
	done
	trap - EXIT
	"$ROOT/deploy/local/demo.sh"
}

cmd_down() {
	local s
	for s in reconcile partner deliver project capture api; do stop_pid "$s"; done
	kafka_down
	pg_down
}

# cmd_start NAME...: start named parts of a stack that 'make up' set up before (the drill
# uses it to bring back what it killed).
cmd_start() {
	local s
	for s in "$@"; do
		case $s in
		postgres) pg_up ;;
		kafka) kafka_up ;;
		kafka-[23])
			kafka_up_node "${s#kafka-}"
			kafka_wait_node "${s#kafka-}"
			;;
		*)
			[ -f "$LOCAL/env" ] || die "run 'make up' first: $LOCAL/env is missing"
			# shellcheck source=/dev/null
			. "$LOCAL/env"
			service_up "$s"
			;;
		esac
	done
}

cmd_status() {
	local s
	local kafkas=() n
	for ((n = 1; n <= KAFKA_NODES; n++)); do kafkas+=("$(kafka_name "$n")"); done
	for s in postgres "${kafkas[@]}" "${SERVICES[@]}"; do
		if alive "$s"; then say "$s: running (pid $(head -n1 "$RUN/$s.pid"))"; else say "$s: stopped"; fi
	done
}

# print_env: what tests need to reach the stack; the TLS and SASL paths once they exist.
print_env() {
	say "DATABASE_URL=$DATABASE_URL"
	say "KAFKA_BROKERS=$KAFKA_BROKERS"
	[ -s "$TLS_DIR/ca.crt" ] || return 0
	say "DATABASE_TLS_URL='$DATABASE_TLS_URL'"
	say "KAFKA_SASL_BROKERS=$KAFKA_SASL_BROKERS"
	say "KAFKA_SASL_CA_FILE=$TLS_DIR/ca.crt"
	say "KAFKA_SASL_USERNAME=$KAFKA_SASL_USER"
	say "KAFKA_SASL_PASSWORD_FILE=$KAFKA_SASL_PASSWORD_FILE"
}

case ${1:-} in
up) cmd_up ;;
infra) cmd_infra ;;
down) cmd_down ;;
stop) shift; for s in "$@"; do case $s in postgres) pg_down ;; kafka) kafka_down ;; *) stop_pid "$s" ;; esac; done ;;
start) shift; cmd_start "$@" ;;
status) cmd_status ;;
running) alive "$2" ;;
services) echo "${SERVICES[@]}" ;;
env) print_env ;;
kafka-nodes) echo "$KAFKA_NODES" ;;
*) die "usage: stack.sh up|infra|down|stop NAME...|status|env" ;;
esac

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"time"

	"golang.org/x/sync/errgroup"

	"orderflow/capture"
	"orderflow/internal/httpserver"
)

// captureMemoryLimit is capture's soft memory limit (debug.SetMemoryLimit) when GOMEMLIMIT is
// not set: 32 MiB plus four times the queue's byte budget, 64 MiB by default.
//
// Why: the byte budget bounds the live heap (events queued or in flight, and about as much
// again in the encoded request; plus ~10 MB of clients, metrics and the partitions' batch
// buffers), but at GOGC=100 the heap grows to twice the live heap before a collection, and
// the pages freed stay in RSS until the scavenger returns them. The limit makes the collector
// run, and the scavenger return pages, as the heap nears it, so RSS stays flat (measured in
// docs/CAPTURE.md, "Memory"); with the live heap well below it, it costs no extra collections.
// The text and data of the binary (~20 MB of RSS) are outside it.
func captureMemoryLimit(queueBytes int) int64 {
	if queueBytes <= 0 {
		queueBytes = capture.DefaultQueueBytes
	}
	return 32<<20 + 4*int64(queueBytes)
}

func runCapture(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("capture", stderr)
	env := newEnvDefaults(getenv)
	dbURL := fs.String("database-url", getenv("DATABASE_URL"), "PostgreSQL URL; the role needs REPLICATION (env DATABASE_URL)")
	brokers := fs.String("kafka-brokers", getenv("KAFKA_BROKERS"), "comma-separated Kafka brokers (env KAFKA_BROKERS)")
	httpAddr := fs.String("http-addr", envOr(getenv, "HTTP_ADDR", "127.0.0.1:18081"), "address for /healthz, /readyz and /metrics (env HTTP_ADDR)")
	slot := fs.String("slot", envOr(getenv, "CAPTURE_SLOT", "orderflow_capture"), "logical replication slot (env CAPTURE_SLOT)")
	publication := fs.String("publication", envOr(getenv, "CAPTURE_PUBLICATION", "orderflow_outbox"), "publication on the outbox table (env CAPTURE_PUBLICATION)")
	prefix := fs.String("topic-prefix", envOr(getenv, "CAPTURE_TOPIC_PREFIX", "orderflow"), "topics are <prefix>.<aggregate_type> (env CAPTURE_TOPIC_PREFIX)")
	aggregates := fs.String("aggregate-types", envOr(getenv, "CAPTURE_AGGREGATE_TYPES", "order"), "aggregate types whose topics are created at start (env CAPTURE_AGGREGATE_TYPES)")
	partitions := fs.Int("partitions", env.Int("CAPTURE_PARTITIONS", 6), "partitions of topics capture creates (env CAPTURE_PARTITIONS)")
	replication := fs.Int("replication-factor", env.Int("CAPTURE_REPLICATION_FACTOR", 1), "replication factor of topics capture creates (env CAPTURE_REPLICATION_FACTOR)")
	minISR := fs.Int("min-insync-replicas", env.Int("CAPTURE_MIN_INSYNC_REPLICAS", 0), "min.insync.replicas of topics capture creates, 0 for the broker's default (env CAPTURE_MIN_INSYNC_REPLICAS)")
	topicRetention := fs.Duration("topic-retention", env.Duration("CAPTURE_TOPIC_RETENTION", 0), "retention.ms of topics capture creates, 0 for the broker's default (env CAPTURE_TOPIC_RETENTION)")
	maxMessageBytes := fs.Int("topic-max-message-bytes", env.Int("CAPTURE_TOPIC_MAX_MESSAGE_BYTES", 0),
		"max.message.bytes of topics capture creates, 0 for the broker's; the limit assumed when a topic's cannot be read (env CAPTURE_TOPIC_MAX_MESSAGE_BYTES)")
	heartbeat := fs.Duration("heartbeat", env.Duration("CAPTURE_HEARTBEAT", 0), "interval of pg_logical_emit_message heartbeats, 0 for none (env CAPTURE_HEARTBEAT)")
	status := fs.Duration("status-interval", env.Duration("CAPTURE_STATUS_INTERVAL", 10*time.Second), "longest time between standby status updates, at most 10s (env CAPTURE_STATUS_INTERVAL)")
	replTimeout := fs.Duration("replication-timeout", env.Duration("CAPTURE_REPLICATION_TIMEOUT", 20*time.Second), "reconnect when the replication connection stays silent this long although a reply was asked for (env CAPTURE_REPLICATION_TIMEOUT)")
	retention := fs.Duration("retention", env.Duration("CAPTURE_RETENTION", 7*24*time.Hour), "delete outbox rows older than this, 0 to keep them (env CAPTURE_RETENTION)")
	lookback := fs.Duration("rebuild-lookback", env.Duration("CAPTURE_REBUILD_LOOKBACK", 15*time.Minute), "longest an outbox-writing transaction stays open; bounds the comparison of table and topic when a lost slot is rebuilt (env CAPTURE_REBUILD_LOOKBACK)")
	retentionEvery := fs.Duration("retention-interval", env.Duration("CAPTURE_RETENTION_INTERVAL", time.Minute), "how often retention runs (env CAPTURE_RETENTION_INTERVAL)")
	queueBytes := fs.Int("queue-bytes", env.Int("CAPTURE_QUEUE_BYTES", capture.DefaultQueueBytes),
		"bytes of events queued or in flight to Kafka before capture stops reading the slot; bounds its memory (env CAPTURE_QUEUE_BYTES)")
	linger := fs.Duration("linger", env.Duration("CAPTURE_LINGER", capture.DefaultLinger),
		"how long a produce request waits for more events before it is sent: fewer requests for the broker and its consumers to handle, against that much latency; 0 for none (env CAPTURE_LINGER)")
	discard := fs.Bool("discard", false, "decode only: acknowledge events without Kafka (benchmarks)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this file until exit (benchmarks)")
	pprofAddr := pprofFlag(fs, getenv)
	kafkaSec := addKafkaFlags(fs, env, getenv)
	if err := env.err(); err != nil {
		return err
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	security, err := kafkaSec.security()
	if err != nil {
		return err
	}
	if err := requireFlag("database-url", *dbURL, "DATABASE_URL"); err != nil {
		return err
	}
	if !*discard {
		if err := requireFlag("kafka-brokers", *brokers, "KAFKA_BROKERS"); err != nil {
			return err
		}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("creating cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("starting cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(captureMemoryLimit(*queueBytes))
	}
	log := newLogger(getenv, stderr, "capture")
	stopTracing, err := startTracing(ctx, "capture", getenv, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	c, err := capture.New(capture.Config{
		DatabaseURL:    *dbURL,
		Slot:           *slot,
		Publication:    *publication,
		TopicPrefix:    *prefix,
		AggregateTypes: splitList(*aggregates),
		Kafka: capture.KafkaConfig{
			Brokers:              splitList(*brokers),
			Partitions:           *partitions,
			ReplicationFactor:    *replication,
			TopicMaxMessageBytes: *maxMessageBytes,
			Security:             security,
			MinInsyncReplicas:    *minISR,
			Retention:            *topicRetention,
			QueueBytes:           *queueBytes,
			Linger:               lingerSetting(*linger),
		},
		Discard:            *discard,
		StatusInterval:     *status,
		ReplicationTimeout: *replTimeout,
		Heartbeat:          *heartbeat,
		RebuildLookback:    *lookback,
		Logger:             log,
	})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.Run(gctx) })
	if *retention > 0 {
		r, err := capture.NewRetention(capture.Retention{
			DatabaseURL: *dbURL, Age: *retention, Interval: *retentionEvery, Logger: log,
		}, c.Registerer())
		if err != nil {
			return err
		}
		g.Go(func() error { return r.Run(gctx) })
	}
	g.Go(func() error { return httpserver.Serve(gctx, *httpAddr, c.Handler(), log, nil) })
	g.Go(func() error { return servePprof(gctx, *pprofAddr, log) })
	return g.Wait()
}

// lingerSetting maps -linger to capture.KafkaConfig.Linger, whose zero means the default and
// negative none.
func lingerSetting(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// Package capture streams outbox inserts from a PostgreSQL logical replication slot to Kafka.
//
// The slot's confirmed LSN is the checkpoint: it is only ever moved past a transaction once
// Kafka acknowledged every event of that transaction, so a crash at any moment replays from a
// point at or before the first unacknowledged event. Replays are made duplicate-free by
// reading the last record of every partition before producing (see kafkaSink). docs/CAPTURE.md
// has the whole argument.
package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"orderflow"
	"orderflow/internal/httpserver"
	"orderflow/internal/kafka"
)

// DefaultQueueBytes is KafkaConfig.QueueBytes when unset: a few produce requests' worth of
// order-sized events, enough to keep one request in flight and the next one filling while
// the walsender streams (docs/CAPTURE.md, "Memory").
const DefaultQueueBytes = 8 << 20

// DefaultLinger is KafkaConfig.Linger when unset. Below Kafka 4's producer default
// (linger.ms=5): every request waits this long for company (see kafkaSink.write), so it is
// also the latency a lone event pays.
const DefaultLinger = 3 * time.Millisecond

// Config configures a capture daemon.
type Config struct {
	DatabaseURL string
	Slot        string
	Publication string
	// TopicPrefix names the topics: <prefix>.<aggregate_type>.
	TopicPrefix string
	// AggregateTypes are created as topics at start; others are created on their first event.
	AggregateTypes []string
	Kafka          KafkaConfig
	// Discard acknowledges every event without Kafka: decode-only mode for benchmarks.
	Discard bool
	// StatusInterval is the longest time between two standby status updates (at most 10 s,
	// well inside the server's wal_sender_timeout).
	StatusInterval time.Duration
	// ReplicationTimeout is how long the replication connection may stay silent before the
	// session gives up on it and reconnects. Capture asks the server for a reply (a status
	// update with the reply flag) once a quarter of it passed without a message, so a healthy
	// but idle server answers well within it, and a silent network is noticed after it.
	ReplicationTimeout time.Duration
	// KafkaProbeInterval is how often capture checks that Kafka answers, also while it has
	// nothing to produce; /readyz fails while it does not.
	KafkaProbeInterval time.Duration
	// ConfirmInterval is how soon a newly acknowledged position is confirmed to the slot.
	ConfirmInterval time.Duration
	// Heartbeat, if positive, writes a pg_logical_emit_message this often so the slot sees WAL
	// from its own database even when nothing else there writes.
	Heartbeat time.Duration
	// StandbyRetry is how often a standby tries to take the slot over.
	StandbyRetry time.Duration
	// SlotStatsInterval is how often the lag gauges are refreshed.
	SlotStatsInterval time.Duration
	// RebuildLookback bounds how long a transaction that writes the outbox may stay open. When
	// a lost slot is rebuilt, rows created up to this long before a partition's last record
	// are compared with the partition's records by event id (rebuild.go).
	RebuildLookback time.Duration
	Logger          *slog.Logger
}

func (c *Config) defaults() error {
	if c.DatabaseURL == "" {
		return errors.New("capture: database url is required")
	}
	if !c.Discard && len(c.Kafka.Brokers) == 0 {
		return errors.New("capture: kafka brokers are required")
	}
	if c.Slot == "" {
		c.Slot = "orderflow_capture"
	}
	if !validSlotName(c.Slot) {
		// The name goes into replication commands as is, so it must be what PostgreSQL allows.
		return fmt.Errorf("capture: slot name %q: use 1 to 63 lower-case letters, digits and underscores", c.Slot)
	}
	if c.Publication == "" {
		c.Publication = "orderflow_outbox"
	}
	if c.TopicPrefix == "" {
		c.TopicPrefix = orderflow.TopicPrefix
	}
	if c.AggregateTypes == nil {
		c.AggregateTypes = []string{"order"}
	}
	if c.Kafka.Partitions <= 0 {
		c.Kafka.Partitions = 6
	}
	if c.Kafka.ReplicationFactor <= 0 {
		c.Kafka.ReplicationFactor = 1
	}
	if c.Kafka.RequestTimeout <= 0 {
		c.Kafka.RequestTimeout = 15 * time.Second
	}
	if c.Kafka.MaxBatch <= 0 {
		c.Kafka.MaxBatch = 2000
	}
	if c.Kafka.QueueSize <= 0 {
		c.Kafka.QueueSize = 8192
	}
	if c.Kafka.QueueBytes <= 0 {
		c.Kafka.QueueBytes = DefaultQueueBytes
	}
	if c.Kafka.Linger == 0 {
		c.Kafka.Linger = DefaultLinger
	}
	if c.Kafka.CatchUpLinger == 0 {
		c.Kafka.CatchUpLinger = 20 * time.Millisecond
	}
	if c.StatusInterval <= 0 || c.StatusInterval > 10*time.Second {
		c.StatusInterval = 10 * time.Second
	}
	if c.ReplicationTimeout <= 0 {
		c.ReplicationTimeout = 20 * time.Second
	}
	if c.KafkaProbeInterval <= 0 {
		c.KafkaProbeInterval = 5 * time.Second
	}
	if c.ConfirmInterval <= 0 {
		c.ConfirmInterval = 200 * time.Millisecond
	}
	if c.StandbyRetry <= 0 {
		c.StandbyRetry = time.Second
	}
	if c.SlotStatsInterval <= 0 {
		c.SlotStatsInterval = 5 * time.Second
	}
	if c.RebuildLookback <= 0 {
		c.RebuildLookback = 15 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Capture is the daemon. Create it with New and run it with Run.
type Capture struct {
	cfg     Config
	kafka   *kafkago.Client
	probe   *kafka.Probe // nil with Discard
	log     *slog.Logger
	metrics *metrics
	ready   atomic.Bool
	// unanswered is the send time of the latest produce request that timed out, in any
	// session so far; produceFailed says a produce failed since positions were last read.
	// Both are owned by the stream loop's goroutine.
	unanswered    time.Time
	produceFailed bool
}

// New checks cfg and returns a daemon ready to Run.
func New(cfg Config) (*Capture, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	c := &Capture{cfg: cfg, log: cfg.Logger, metrics: newMetrics()}
	if !cfg.Discard {
		c.kafka = cfg.Kafka.client()
		c.probe = kafka.NewProbe("orderflow_capture_kafka_reachable", c.kafka, cfg.KafkaProbeInterval, min(cfg.KafkaProbeInterval, 5*time.Second))
		c.metrics.registry.MustRegister(c.probe)
	}
	return c, nil
}

// Registerer lets components that run beside capture (retention) add their metrics to
// capture's /metrics.
func (c *Capture) Registerer() prometheus.Registerer { return c.metrics.registry }

// Streaming reports whether this instance holds the slot and streams.
func (c *Capture) Streaming() bool { return c.ready.Load() }

// Handler serves /healthz (the process is up), /readyz (this instance streams from the slot
// and Kafka answers) and /metrics.
func (c *Capture) Handler() http.Handler {
	return httpserver.OpsHandler(c.metrics.registry, func(context.Context) error {
		if !c.ready.Load() {
			return errNotStreaming
		}
		if c.probe != nil && c.probe.Err() != nil {
			// Say what is down, not the client's error, which names addresses.
			return errKafkaUnreachable
		}
		return nil
	}, nil)
}

var (
	errNotStreaming     = errors.New("not streaming (standby or reconnecting)")
	errKafkaUnreachable = errors.New("kafka does not answer")
)

// Run streams until ctx is cancelled, then lets in-flight events be acknowledged, confirms
// them and returns nil. It returns an error only for conditions a restart cannot fix, such as
// a misconfiguration; a lost slot is rebuilt.
func (c *Capture) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.streamLoop(ctx) })
	g.Go(func() error { c.pollSlot(ctx); return nil })
	if c.probe != nil {
		g.Go(func() error { return c.probe.Run(ctx) })
	}
	if c.cfg.Heartbeat > 0 {
		g.Go(func() error { c.heartbeat(ctx); return nil })
	}
	return g.Wait()
}

// validSlotName is PostgreSQL's rule for replication slot names.
func validSlotName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

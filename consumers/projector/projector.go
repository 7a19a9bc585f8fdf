// Package projector builds the order_summary read model from the orderflow.order topic.
//
// It is an at-least-once consumer with an idempotent effect: every event carries the order's
// version, and a summary row is only ever replaced by a strictly newer version. Offsets are
// committed after the database commit, so a crash replays events the database may already
// hold, which the version check absorbs; it never skips one.
package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"orderflow"
	"orderflow/internal/backoff"
	"orderflow/internal/kafka"
	"orderflow/internal/retention"
)

// Defaults of Config.
const (
	DefaultGroupID     = "orderflow-projector"
	DefaultMaxAttempts = 3
	DefaultBatchSize   = 500
	// DefaultCommitInterval is how often applied offsets are committed to Kafka.
	DefaultCommitInterval = 100 * time.Millisecond
)

// Config is what a projector needs.
type Config struct {
	Brokers []string
	Topic   string // default orderflow.order
	GroupID string // default orderflow-projector
	// DLQTopic defaults to Topic + ".dlq"; it is created when missing.
	DLQTopic string
	// MaxAttempts bounds how often a poison event is tried before it is dead-lettered.
	MaxAttempts int
	// RetryBackoff is the pause between attempts of a poison event (doubling), and the first
	// pause after a database error (doubling up to 5 s).
	RetryBackoff time.Duration
	// BatchSize bounds the events applied in one transaction; Linger is how long a batch waits
	// to fill once it has its first event.
	BatchSize int
	Linger    time.Duration
	// CommitInterval is how often the offsets of applied batches are committed. Only offsets
	// of batches already committed to the database are handed to the committer, so the
	// interval only bounds how much a crash replays (harmlessly); it takes a broker round trip
	// per batch off the path from commit to summary.
	CommitInterval time.Duration
	// SessionTimeout is how long the group coordinator waits for a silent member (a killed
	// process) before giving its partitions to another; the broker's minimum is 6 s.
	SessionTimeout time.Duration
	// Kafka is TLS and SASL for every broker connection; the zero value is plaintext.
	Kafka kafka.Security
	// Dial, if set, opens every connection to Kafka (the reader's, the DLQ writer's and the
	// admin client's); tests put a proxy in between to take Kafka away.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// RetainDeadLetters is how long projector_dead_letters rows are kept (docs/RETENTION.md):
	// zero for DefaultRetainDeadLetters, negative for ever. PurgeEvery and PurgeBatch pace the
	// purge.
	RetainDeadLetters time.Duration
	PurgeEvery        time.Duration
	PurgeBatch        int
	Logger            *slog.Logger
}

func (c *Config) defaults() {
	if c.Topic == "" {
		c.Topic = orderflow.Topic(orderflow.AggregateOrder)
	}
	if c.GroupID == "" {
		c.GroupID = DefaultGroupID
	}
	if c.DLQTopic == "" {
		c.DLQTopic = DLQTopic(c.Topic)
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 100 * time.Millisecond
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Linger <= 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.CommitInterval <= 0 {
		c.CommitInterval = DefaultCommitInterval
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RetainDeadLetters == 0 {
		c.RetainDeadLetters = DefaultRetainDeadLetters
	}
	if c.PurgeEvery <= 0 {
		c.PurgeEvery = time.Minute
	}
}

// summaryStore is what the projector needs from the database.
type summaryStore interface {
	ApplySummaries(ctx context.Context, ss []orderflow.Summary, dead []orderflow.ProjectorDeadLetter) ([]bool, error)
	Ping(ctx context.Context) error
	retentionStore
}

// Projector consumes order events and applies them to order_summary.
type Projector struct {
	cfg     Config
	store   summaryStore
	dlq     *kafkaDLQ
	log     *slog.Logger
	metrics *metrics
	client  *kafkago.Client
	lag     *kafka.Lag
	purger  *retention.Purger
	probe   *kafka.Probe
	dbOK    atomic.Bool
	kafkaOK atomic.Bool
	// assigned counts the partitions the group gave this projector.
	assigned kafka.Assignment
}

// New returns a projector that writes to store.
func New(cfg Config, store summaryStore) (*Projector, error) {
	cfg.defaults()
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("projector: no Kafka brokers")
	}
	transport := cfg.Kafka.OnTransport(kafka.NewTransport("orderflow-projector", cfg.Dial))
	client := &kafkago.Client{Addr: kafkago.TCP(cfg.Brokers...), Timeout: kafka.RequestTimeout, Transport: transport}
	lag := kafka.NewLag("orderflow_projector_consumer_lag", client, cfg.GroupID, cfg.Topic)
	p := &Projector{cfg: cfg, store: store, log: cfg.Logger, client: client, lag: lag,
		probe: kafka.NewProbe("orderflow_projector_kafka_reachable", client, 0, 2*time.Second)}
	p.metrics = newMetrics(lag, p.dependencyUp)
	p.metrics.registry.MustRegister(p.probe)
	purger, err := retention.New("orderflow_projector", p.metrics.registry, retention.Config{Batch: cfg.PurgeBatch, Logger: cfg.Logger},
		retention.Rule{Name: "projector_dead_letters", Keep: cfg.RetainDeadLetters,
			Purge: store.PurgeProjectorDeadLetters, OldestAge: store.OldestProjectorDeadLetter})
	if err != nil {
		return nil, err
	}
	p.purger = purger
	p.dlq = &kafkaDLQ{
		topic: cfg.DLQTopic, group: cfg.GroupID,
		writer: &kafkago.Writer{
			Addr: kafkago.TCP(cfg.Brokers...), Topic: cfg.DLQTopic, Balancer: &kafkago.Hash{},
			RequiredAcks: kafkago.RequireAll, BatchTimeout: time.Millisecond, WriteTimeout: 10 * time.Second,
			Transport: transport,
		},
	}
	return p, nil
}

// Run consumes until ctx is cancelled. On cancellation the batch in hand is finished: applied,
// committed to the database, its offsets committed; then the reader leaves the group and Run
// returns nil.
func (p *Projector) Run(ctx context.Context) error {
	health, stopHealth := context.WithCancel(ctx)
	defer stopHealth()
	go p.watchHealth(health)
	go func() { _ = p.purger.Run(health, p.cfg.PurgeEvery) }()
	if err := p.waitForTopic(ctx); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	if !p.createDLQTopic(ctx) {
		return nil
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:           p.cfg.Brokers,
		Dialer:            p.cfg.Kafka.OnDialer(kafka.NewDialer("orderflow-projector", p.cfg.Dial)),
		GroupID:           p.cfg.GroupID,
		Topic:             p.cfg.Topic,
		MinBytes:          1,
		MaxBytes:          16 << 20,
		MaxWait:           kafka.ReaderMaxWait,
		JoinGroupBackoff:  kafka.JoinGroupBackoff,
		StartOffset:       kafkago.FirstOffset,  // a new group builds the model from the beginning
		CommitInterval:    p.cfg.CommitInterval, // flushed on Close and on every rebalance too
		HeartbeatInterval: time.Second,
		SessionTimeout:    p.cfg.SessionTimeout,
		RebalanceTimeout:  p.cfg.SessionTimeout,
		ReadBackoffMin:    50 * time.Millisecond,
		ReadBackoffMax:    time.Second,
		// Partitions added to the topic later are picked up by a rebalance.
		WatchPartitionChanges:  true,
		PartitionWatchInterval: 10 * time.Second,
		// Readiness waits for the first assignment (Ready).
		Logger: p.assigned.Logger(nil),
		ErrorLogger: kafkago.LoggerFunc(func(msg string, args ...any) {
			p.log.Warn("kafka reader", "msg", fmt.Sprintf(msg, args...))
		}),
	})
	defer func() {
		if err := r.Close(); err != nil {
			p.log.Warn("closing kafka reader", "err", err)
		}
		_ = p.dlq.writer.Close()
	}()

	p.log.Info("projecting", "topic", p.cfg.Topic, "group", p.cfg.GroupID, "dlq", p.cfg.DLQTopic)
	// Kafka being away is an outage to wait out, never a reason to exit: the reader rejoins
	// the group by itself once the broker answers, so the loop only has to keep asking.
	wait := backoff.New(100*time.Millisecond, 5*time.Second)
	for {
		batch, err := p.fetch(ctx, r)
		if len(batch) > 0 {
			wait.Reset()
			// The batch is finished even if ctx was cancelled meanwhile: it has been read, and
			// finishing it is cheaper than replaying it.
			work := context.WithoutCancel(ctx)
			p.metrics.batchSize.Observe(float64(len(batch)))
			t0 := time.Now()
			if perr := p.process(work, ctx, batch); perr != nil {
				return perr
			}
			t1 := time.Now()
			cctx, cancel := context.WithTimeout(work, 15*time.Second)
			cerr := r.CommitMessages(cctx, batch...)
			cancel()
			p.metrics.phase.WithLabelValues("apply").Observe(t1.Sub(t0).Seconds())
			p.metrics.phase.WithLabelValues("commit").Observe(time.Since(t1).Seconds())
			if cerr != nil {
				// Not fatal: the events are in the database; if the offsets are lost they are
				// delivered again and change nothing.
				p.log.Warn("committing offsets", "err", cerr, "events", len(batch))
			}
		}
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			p.log.Info("stopping: batch finished and committed")
			return nil
		}
		p.kafkaOK.Store(false)
		p.metrics.kafkaErrors.Inc()
		pause := wait.Next()
		p.log.Warn("fetching from kafka failed; retrying", "topic", p.cfg.Topic, "err", err,
			"failures", wait.Failures(), "backoff", pause)
		if !backoff.Sleep(ctx, pause) {
			return nil
		}
	}
}

// createDLQTopic creates the dead-letter topic, retrying while Kafka is away; false means ctx
// ended first.
func (p *Projector) createDLQTopic(ctx context.Context) bool {
	wait := backoff.New(100*time.Millisecond, 5*time.Second)
	for {
		_, err := kafka.CreateTopic(ctx, p.client, kafka.TopicSpec{Name: p.cfg.DLQTopic, Partitions: 1})
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		p.kafkaOK.Store(false)
		p.metrics.kafkaErrors.Inc()
		pause := wait.Next()
		p.log.Warn("creating the dead-letter topic failed; retrying", "topic", p.cfg.DLQTopic, "err", err, "backoff", pause)
		if !backoff.Sleep(ctx, pause) {
			return false
		}
	}
}

// fetch blocks for one event, then takes whatever else arrives within Linger.
func (p *Projector) fetch(ctx context.Context, r *kafkago.Reader) ([]kafkago.Message, error) {
	batch, err := kafka.FetchBatch(ctx, r, p.cfg.BatchSize, p.cfg.Linger)
	if err == nil {
		p.kafkaOK.Store(true)
	}
	return batch, err
}

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
	"strconv"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"orderflow"
)

// Defaults of Config.
const (
	DefaultGroupID     = "orderflow-projector"
	DefaultMaxAttempts = 3
	DefaultBatchSize   = 500
	// DefaultCommitInterval is how often applied offsets are committed to Kafka.
	DefaultCommitInterval = 100 * time.Millisecond
)

// DLQTopic is where events the projector cannot apply go: the source topic plus ".dlq".
func DLQTopic(topic string) string { return topic + ".dlq" }

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
	Logger         *slog.Logger
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
}

// summaryStore is what the projector needs from the database.
type summaryStore interface {
	ApplySummaries(ctx context.Context, ss []orderflow.Summary, dead []orderflow.ProjectorDeadLetter) ([]bool, error)
	Ping(ctx context.Context) error
}

// Projector consumes order events and applies them to order_summary.
type Projector struct {
	cfg     Config
	store   summaryStore
	dlq     *kafkaDLQ
	log     *slog.Logger
	metrics *metrics
	client  *kafka.Client
	dbOK    atomic.Bool
	kafkaOK atomic.Bool
}

// New returns a projector that writes to store.
func New(cfg Config, store summaryStore) (*Projector, error) {
	cfg.defaults()
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("projector: no Kafka brokers")
	}
	p := &Projector{
		cfg: cfg, store: store, log: cfg.Logger, metrics: newMetrics(),
		client: &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: 10 * time.Second},
	}
	p.dlq = &kafkaDLQ{
		topic: cfg.DLQTopic, group: cfg.GroupID,
		writer: &kafka.Writer{
			Addr: kafka.TCP(cfg.Brokers...), Topic: cfg.DLQTopic, Balancer: &kafka.Hash{},
			RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, WriteTimeout: 10 * time.Second,
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
	if err := p.waitForTopic(ctx); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := ensureTopic(ctx, p.client, p.cfg.DLQTopic, 1); err != nil {
		return err
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           p.cfg.Brokers,
		GroupID:           p.cfg.GroupID,
		Topic:             p.cfg.Topic,
		MinBytes:          1,
		MaxBytes:          16 << 20,
		MaxWait:           250 * time.Millisecond,
		StartOffset:       kafka.FirstOffset,    // a new group builds the model from the beginning
		CommitInterval:    p.cfg.CommitInterval, // flushed on Close and on every rebalance too
		HeartbeatInterval: time.Second,
		SessionTimeout:    p.cfg.SessionTimeout,
		RebalanceTimeout:  p.cfg.SessionTimeout,
		ReadBackoffMin:    50 * time.Millisecond,
		ReadBackoffMax:    time.Second,
		// Partitions added to the topic later are picked up by a rebalance.
		WatchPartitionChanges:  true,
		PartitionWatchInterval: 10 * time.Second,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
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
	for {
		batch, err := p.fetchBatch(ctx, r)
		if len(batch) > 0 {
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
		if err != nil {
			if ctx.Err() != nil {
				p.log.Info("stopping: batch finished and committed")
				return nil
			}
			return fmt.Errorf("fetching from %s: %w", p.cfg.Topic, err)
		}
	}
}

// fetchBatch blocks for one message, then takes whatever else arrives within Linger.
func (p *Projector) fetchBatch(ctx context.Context, r *kafka.Reader) ([]kafka.Message, error) {
	m, err := r.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	p.kafkaOK.Store(true)
	batch := []kafka.Message{m}
	lctx, cancel := context.WithTimeout(ctx, p.cfg.Linger)
	defer cancel()
	for len(batch) < p.cfg.BatchSize {
		m, err := r.FetchMessage(lctx)
		if err != nil {
			break // linger over (or ctx cancelled: the caller sees it on the next fetch)
		}
		batch = append(batch, m)
	}
	return batch, nil
}

// decoded is one message after decoding: a summary to apply, or nothing (skipped), or dead.
type decoded struct {
	msg     kafka.Message
	summary *orderflow.Summary
	evTime  time.Time
}

// process decodes and applies one batch. Poison events are dead-lettered before the batch's
// transaction, and recorded in it, so offsets are committed only once every event of the
// batch is either in order_summary, skipped on purpose, or in the dead-letter topic.
// Database errors are retried until they stop or ctx (not work) is cancelled: a database that
// is down is not the events' fault. A batch the database keeps refusing while it answers pings
// holds a bad event; it is then applied event by event and the bad one dead-lettered.
func (p *Projector) process(work, ctx context.Context, batch []kafka.Message) error {
	var (
		items []decoded
		ss    []orderflow.Summary
		dead  []orderflow.ProjectorDeadLetter
	)
	for _, m := range batch {
		d, err := p.decodeWithRetries(work, m)
		switch {
		case errors.Is(err, errSkip):
			continue
		case err != nil:
			if err := p.sendDead(work, ctx, m, err); err != nil {
				return err
			}
			dead = append(dead, deadRecord(m, err, p.cfg.MaxAttempts))
			continue
		}
		items = append(items, d)
		ss = append(ss, *d.summary)
	}
	if len(ss) == 0 && len(dead) == 0 {
		return nil
	}
	// poison is set when the database answers pings but keeps refusing the batch: then one
	// of its events is bad, and the batch is applied event by event to find it.
	poison := func(failures int) bool { return failures >= p.cfg.MaxAttempts && len(ss) > 0 }
	applied, err := p.apply(work, ctx, ss, dead, poison)
	if errors.Is(err, errPoison) {
		return p.applyOneByOne(work, ctx, items, dead)
	}
	if err != nil {
		return err
	}
	p.observe(items, applied)
	return nil
}

// errPoison ends apply when the batch, not the database, is the problem.
var errPoison = errors.New("the database answers but refuses the batch")

// apply writes ss and dead in one transaction, retrying while it fails. A failure while the
// database does not even answer a ping is an outage: it is retried until it ends or ctx is
// cancelled, because it is not the events' fault. When the database answers and giveUp says
// so, apply returns errPoison.
func (p *Projector) apply(work, ctx context.Context, ss []orderflow.Summary, dead []orderflow.ProjectorDeadLetter,
	giveUp func(failures int) bool) ([]bool, error) {
	backoff := p.cfg.RetryBackoff
	failures := 0
	for {
		applied, err := p.store.ApplySummaries(work, ss, dead)
		if err == nil {
			p.dbOK.Store(true)
			return applied, nil
		}
		p.metrics.dbErrors.Inc()
		pctx, cancel := context.WithTimeout(work, 5*time.Second)
		up := p.store.Ping(pctx) == nil
		cancel()
		p.dbOK.Store(up)
		if up {
			failures++
			if giveUp(failures) {
				return nil, errPoison
			}
		}
		p.log.Warn("applying events failed; retrying", "err", err, "events", len(ss), "database_up", up, "backoff", backoff)
		select {
		case <-ctx.Done():
			// Stopping with the batch unapplied: its offsets stay uncommitted, so the next
			// run gets it again.
			return nil, fmt.Errorf("stopped while the database was failing: %w", err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// applyOneByOne applies a batch the database refused, one event per transaction; an event the
// database refuses MaxAttempts times while it answers pings is dead-lettered, so one bad event
// cannot stall its partition forever.
func (p *Projector) applyOneByOne(work, ctx context.Context, items []decoded, dead []orderflow.ProjectorDeadLetter) error {
	p.log.Warn("the database refuses a batch; applying its events one by one", "events", len(items))
	never := func(int) bool { return false }
	if len(dead) > 0 {
		if _, err := p.apply(work, ctx, nil, dead, never); err != nil {
			return err
		}
	}
	for _, it := range items {
		applied, err := p.apply(work, ctx, []orderflow.Summary{*it.summary}, nil,
			func(failures int) bool { return failures >= p.cfg.MaxAttempts })
		if errors.Is(err, errPoison) {
			cause := fmt.Errorf("the database refused the event %d times", p.cfg.MaxAttempts)
			if err := p.sendDead(work, ctx, it.msg, cause); err != nil {
				return err
			}
			if _, err := p.apply(work, ctx, nil, []orderflow.ProjectorDeadLetter{deadRecord(it.msg, cause, p.cfg.MaxAttempts)}, never); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		p.observe([]decoded{it}, applied)
	}
	return nil
}

func (p *Projector) observe(items []decoded, applied []bool) {
	now := time.Now()
	for i, ok := range applied {
		if ok {
			p.metrics.events.WithLabelValues(outcomeApplied).Inc()
			p.metrics.applyLatency.Observe(now.Sub(items[i].evTime).Seconds())
		} else {
			p.metrics.events.WithLabelValues(outcomeStale).Inc()
		}
	}
}

// errSkip marks an event that is deliberately not applied (an unknown type).
var errSkip = errors.New("skipped")

// decodeWithRetries decodes m, trying a failing event MaxAttempts times before giving up on
// it. Decoding is deterministic today; the attempts bound the cost if it ever is not (a
// decoder that depends on a lookup), and they are what the dead letter's attempts header
// counts.
func (p *Projector) decodeWithRetries(ctx context.Context, m kafka.Message) (decoded, error) {
	backoff := p.cfg.RetryBackoff
	var err error
	for attempt := 1; attempt <= p.cfg.MaxAttempts; attempt++ {
		var s *orderflow.Summary
		var evTime time.Time
		s, evTime, err = decodeSummary(m.Value)
		if err == nil {
			return decoded{msg: m, summary: s, evTime: evTime}, nil
		}
		var unknown *unknownTypeError
		if errors.As(err, &unknown) {
			p.metrics.events.WithLabelValues(outcomeUnknownType).Inc()
			p.log.Info("skipping event of unknown type", "type", unknown.typ, "event_id", unknown.id,
				"partition", m.Partition, "offset", m.Offset)
			return decoded{}, errSkip
		}
		if attempt < p.cfg.MaxAttempts {
			select {
			case <-ctx.Done():
				return decoded{}, err
			case <-time.After(backoff):
			}
			backoff *= 2
		}
	}
	return decoded{}, err
}

// sendDead produces m to the dead-letter topic, retrying until Kafka takes it: skipping the
// event without a dead letter would lose it.
func (p *Projector) sendDead(work, ctx context.Context, m kafka.Message, cause error) error {
	backoff := p.cfg.RetryBackoff
	for {
		err := p.dlq.deadLetter(work, m, cause, p.cfg.MaxAttempts)
		if err == nil {
			p.metrics.events.WithLabelValues(outcomeDeadLettered).Inc()
			p.log.Warn("dead-lettered poison event", "err", cause, "partition", m.Partition,
				"offset", m.Offset, "event_id", header(m, orderflow.HeaderEventID), "dlq", p.cfg.DLQTopic)
			return nil
		}
		p.log.Warn("producing to dead-letter topic failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped while the dead-letter topic was failing: %w", err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func deadRecord(m kafka.Message, cause error, attempts int) orderflow.ProjectorDeadLetter {
	return orderflow.ProjectorDeadLetter{
		Topic: m.Topic, Partition: m.Partition, Offset: m.Offset,
		EventID: header(m, orderflow.HeaderEventID), OrderID: string(m.Key),
		Error: truncate(cause.Error(), 2000), Attempts: attempts,
	}
}

func header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// waitForTopic waits until the source topic exists. The projector does not create it: capture
// owns its partition count, and a consumer group that joined a missing topic would hold no
// partitions until the next rebalance.
func (p *Projector) waitForTopic(ctx context.Context) error {
	logged := false
	for {
		n, err := p.partitions(ctx)
		if err == nil && n > 0 {
			return nil
		}
		if !logged {
			p.log.Info("waiting for the topic to exist", "topic", p.cfg.Topic, "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// partitions returns the source topic's partition count, 0 if it does not exist.
func (p *Projector) partitions(ctx context.Context) (int, error) {
	md, err := p.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{p.cfg.Topic}})
	if err != nil {
		return 0, fmt.Errorf("reading metadata of %s: %w", p.cfg.Topic, err)
	}
	for _, t := range md.Topics {
		if t.Name == p.cfg.Topic && t.Error == nil {
			return len(t.Partitions), nil
		}
	}
	return 0, nil
}

// watchHealth keeps the readiness flags and the consumer lag current, also while no events
// flow or while the projector is stuck: lag must grow when nothing is consumed.
func (p *Projector) watchHealth(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		p.dbOK.Store(p.store.Ping(pctx) == nil)
		n, err := p.partitions(pctx)
		p.kafkaOK.Store(err == nil && n > 0)
		if err == nil && n > 0 {
			if err := p.updateLag(pctx, n); err != nil {
				p.log.Debug("measuring consumer lag", "err", err)
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// updateLag sets the lag gauge per partition: log end offset minus the group's committed
// offset (or minus the log start offset before the group committed anything), the definition
// kafka-consumer-groups.sh shows.
func (p *Projector) updateLag(ctx context.Context, n int) error {
	parts := make([]int, n)
	reqs := make([]kafka.OffsetRequest, 0, 2*n)
	for i := range parts {
		parts[i] = i
		reqs = append(reqs, kafka.FirstOffsetOf(i), kafka.LastOffsetOf(i))
	}
	committed, err := p.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: p.cfg.GroupID, Topics: map[string][]int{p.cfg.Topic: parts}})
	if err != nil {
		return fmt.Errorf("fetching committed offsets: %w", err)
	}
	ends, err := p.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{p.cfg.Topic: reqs}})
	if err != nil {
		return fmt.Errorf("listing offsets: %w", err)
	}
	have := map[int]int64{}
	for _, c := range committed.Topics[p.cfg.Topic] {
		if c.Error == nil {
			have[c.Partition] = c.CommittedOffset
		}
	}
	for _, po := range ends.Topics[p.cfg.Topic] {
		if po.Error != nil {
			continue
		}
		from, ok := have[po.Partition]
		if !ok || from < po.FirstOffset {
			from = po.FirstOffset
		}
		p.metrics.lag.WithLabelValues(p.cfg.GroupID, p.cfg.Topic, strconv.Itoa(po.Partition)).Set(float64(max(po.LastOffset-from, 0)))
	}
	return nil
}

// Ready reports whether the last checks reached both the database and Kafka.
func (p *Projector) Ready() bool { return p.dbOK.Load() && p.kafkaOK.Load() }

// kafkaDLQ produces dead letters: the original key, value and headers, plus headers saying
// where the event came from and why it died, so it can be inspected and replayed as is.
type kafkaDLQ struct {
	topic, group string
	writer       *kafka.Writer
}

// Headers added to a dead-lettered record.
const (
	HeaderDLQError     = "dlq_error"
	HeaderDLQAttempts  = "dlq_attempts"
	HeaderDLQTopic     = "dlq_original_topic"
	HeaderDLQPartition = "dlq_original_partition"
	HeaderDLQOffset    = "dlq_original_offset"
	HeaderDLQGroup     = "dlq_consumer_group"
	HeaderDLQTime      = "dlq_time"
)

func (d *kafkaDLQ) deadLetter(ctx context.Context, m kafka.Message, cause error, attempts int) error {
	headers := append([]kafka.Header{}, m.Headers...)
	headers = append(headers,
		kafka.Header{Key: HeaderDLQError, Value: []byte(truncate(cause.Error(), 2000))},
		kafka.Header{Key: HeaderDLQAttempts, Value: []byte(strconv.Itoa(attempts))},
		kafka.Header{Key: HeaderDLQTopic, Value: []byte(m.Topic)},
		kafka.Header{Key: HeaderDLQPartition, Value: []byte(strconv.Itoa(m.Partition))},
		kafka.Header{Key: HeaderDLQOffset, Value: []byte(strconv.FormatInt(m.Offset, 10))},
		kafka.Header{Key: HeaderDLQGroup, Value: []byte(d.group)},
		kafka.Header{Key: HeaderDLQTime, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
	)
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := d.writer.WriteMessages(wctx, kafka.Message{Key: m.Key, Value: m.Value, Headers: headers}); err != nil {
		return fmt.Errorf("producing to %s: %w", d.topic, err)
	}
	return nil
}

// ensureTopic creates topic with n partitions unless it exists (broker auto-creation is off).
func ensureTopic(ctx context.Context, c *kafka.Client, topic string, n int) error {
	resp, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: n, ReplicationFactor: -1,
	}}})
	if err != nil {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	if err := resp.Errors[topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	return nil
}

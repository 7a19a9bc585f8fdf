package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
)

// KafkaConfig says where and how capture writes.
type KafkaConfig struct {
	Brokers           []string
	Partitions        int // for topics capture creates
	ReplicationFactor int
	// Dial, if set, replaces the TCP dialer for every broker connection (tests route the
	// traffic through a proxy they can cut).
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// RequestTimeout bounds one produce, fetch or metadata request.
	RequestTimeout time.Duration
	// MaxBatch bounds the records in one produce request.
	MaxBatch int
	// QueueSize bounds the events waiting per partition; with MaxBatch it bounds memory.
	QueueSize int
	// Linger is how long a writer waits for more events before sending a batch that is not
	// full (Kafka's linger.ms). Negative disables it.
	Linger time.Duration
}

func (k *KafkaConfig) client() *kafka.Client {
	tr := &kafka.Transport{ClientID: "orderflow-capture", DialTimeout: 5 * time.Second, MetadataTTL: 10 * time.Second}
	if k.Dial != nil {
		tr.Dial = k.Dial
	}
	return &kafka.Client{Addr: kafka.TCP(k.Brokers...), Timeout: k.RequestTimeout, Transport: tr}
}

// kafkaSink produces events to one Kafka cluster. It lives for one replication session: its
// dedupe positions are read after the session acquired the slot and are only valid while
// nobody else writes to the topics.
//
// Why the dedupe is exact. Every partition has one writer goroutine that sends at most one
// produce request at a time, in stream order, and stops for good at the first failure. So
// whatever a partition holds of this session's events is a prefix of the events routed to it
// (a request is all or nothing: one record batch), and their positions grow along the stream.
// When the next session replays the slot from its confirmed LSN, it reads the last record of
// every partition first and drops each event whose position is at or below that record's:
// those, and only those, are already in the partition. Nothing later can be there, because
// the writer that wrote that last record sent nothing after a failure and the session waits
// for every request to finish before it ends.
type kafkaSink struct {
	cfg     KafkaConfig
	client  *kafka.Client
	log     *slog.Logger
	metrics *metrics
	onAck   func(*outEvent)

	topics map[string]*topicState // owned by the stream goroutine

	wg       sync.WaitGroup
	aborted  atomic.Bool
	failOnce sync.Once
	failC    chan struct{}
	failErr  error
}

type topicState struct {
	name    string
	last    []Position
	hasLast []bool
	writers []*partitionWriter
}

type partitionWriter struct {
	topic     string
	partition int
	queue     chan *outEvent
}

// newKafkaSink starts a session's sink. The client (and its connection pool) outlives sessions.
func newKafkaSink(cfg KafkaConfig, client *kafka.Client, log *slog.Logger, m *metrics, onAck func(*outEvent)) *kafkaSink {
	return &kafkaSink{
		cfg: cfg, client: client, log: log, metrics: m, onAck: onAck,
		topics: map[string]*topicState{}, failC: make(chan struct{}),
	}
}

func (s *kafkaSink) fail(err error) {
	s.failOnce.Do(func() {
		s.failErr = err
		close(s.failC)
	})
}

func (s *kafkaSink) failed() <-chan struct{} { return s.failC }

func (s *kafkaSink) err() error {
	select {
	case <-s.failC:
		return s.failErr
	default:
		return nil
	}
}

// open makes sure the topics exist and reads their last positions.
func (s *kafkaSink) open(ctx context.Context, topics []string) error {
	for _, t := range topics {
		if _, err := s.topic(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// hasRecords reports whether any of the topics holds a record: that is capture's evidence
// that a slot existed and confirmed events.
func (s *kafkaSink) hasRecords(ctx context.Context, topics []string) (bool, error) {
	for _, t := range topics {
		n, err := s.partitionCount(ctx, t)
		if err != nil {
			return false, err
		}
		if n == 0 {
			continue
		}
		ends, err := s.endOffsets(ctx, t, n)
		if err != nil {
			return false, err
		}
		for _, o := range ends {
			if o.LastOffset > 0 { // even if retention deleted them since
				return true, nil
			}
		}
	}
	return false, nil
}

// partitionCount returns the topic's partition count, 0 when it does not exist.
func (s *kafkaSink) partitionCount(ctx context.Context, topic string) (int, error) {
	resp, err := s.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("reading metadata of topic %s: %w", topic, err)
	}
	for _, t := range resp.Topics {
		if t.Name != topic {
			continue
		}
		if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
			return 0, nil
		}
		if t.Error != nil {
			return 0, fmt.Errorf("reading metadata of topic %s: %w", topic, t.Error)
		}
		return len(t.Partitions), nil
	}
	return 0, nil
}

func (s *kafkaSink) createTopic(ctx context.Context, topic string) error {
	resp, err := s.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: s.cfg.Partitions, ReplicationFactor: s.cfg.ReplicationFactor,
	}}})
	if err != nil {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	if err := resp.Errors[topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	s.log.Info("created topic", "topic", topic, "partitions", s.cfg.Partitions)
	return nil
}

func (s *kafkaSink) endOffsets(ctx context.Context, topic string, n int) ([]kafka.PartitionOffsets, error) {
	reqs := make([]kafka.OffsetRequest, 0, 2*n)
	for p := 0; p < n; p++ {
		reqs = append(reqs, kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	resp, err := s.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	out := make([]kafka.PartitionOffsets, n)
	got := 0
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("listing offsets of %s[%d]: %w", topic, po.Partition, po.Error)
		}
		if po.Partition >= 0 && po.Partition < n {
			out[po.Partition] = po
			got++
		}
	}
	if got != n {
		return nil, fmt.Errorf("listing offsets of %s: got %d of %d partitions", topic, got, n)
	}
	return out, nil
}

// topic returns the state of a topic, creating the topic and reading its last positions the
// first time this session sees it. Topics are created by capture because broker-side
// auto-creation is off (and would pick the broker's partition count, not ours).
func (s *kafkaSink) topic(ctx context.Context, name string) (*topicState, error) {
	if ts := s.topics[name]; ts != nil {
		return ts, nil
	}
	if !validTopic(name) {
		// Retrying cannot help and skipping would lose the event: stop and say why.
		return nil, fatalError{fmt.Errorf("topic name %q is not a valid Kafka topic name (from an outbox aggregate_type)", name)}
	}
	n, err := s.partitionCount(ctx, name)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		if err := s.createTopic(ctx, name); err != nil {
			return nil, err
		}
	}
	// A new topic's partitions get leaders a moment after creation; until then the broker
	// answers with retriable errors.
	var ends []kafka.PartitionOffsets
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n, err = s.partitionCount(ctx, name); err == nil && n > 0 {
			if ends, err = s.endOffsets(ctx, name, n); err == nil {
				break
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("waiting for topic %s: %w", name, errors.Join(err, ctx.Err()))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n != s.cfg.Partitions {
		// The dedupe assumes each key maps to the partition it mapped to when the last
		// session wrote. A changed partition count moves keys between partitions, and an
		// event compared against the wrong partition's last record could be skipped without
		// ever having been written. The operator must drain capture first (docs/CAPTURE.md).
		return nil, fatalError{fmt.Errorf("topic %s has %d partitions but capture is configured for %d: "+
			"changing the partition count needs a drained capture (see docs/CAPTURE.md), then set -partitions", name, n, s.cfg.Partitions)}
	}
	ts := &topicState{name: name, last: make([]Position, n), hasLast: make([]bool, n)}
	for p, o := range ends {
		if o.LastOffset <= o.FirstOffset {
			continue
		}
		pos, err := s.lastPosition(ctx, name, p, o.LastOffset-1)
		if err != nil {
			return nil, err
		}
		ts.last[p], ts.hasLast[p] = pos, true
	}
	for p := 0; p < n; p++ {
		w := &partitionWriter{topic: name, partition: p, queue: make(chan *outEvent, s.cfg.QueueSize)}
		ts.writers = append(ts.writers, w)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.write(w)
		}()
	}
	s.topics[name] = ts
	s.log.Info("topic ready", "topic", name, "partitions", n, "last_positions", fmt.Sprint(ts.last))
	return ts, nil
}

// validTopic follows Kafka's rule: 1-249 characters of [a-zA-Z0-9._-], not "." or "..".
func validTopic(name string) bool {
	if name == "" || len(name) > 249 || name == "." || name == ".." {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// lastPosition reads the record at offset and returns its (pg_lsn, pg_seq) headers.
func (s *kafkaSink) lastPosition(ctx context.Context, topic string, partition int, offset int64) (Position, error) {
	resp, err := s.client.Fetch(ctx, &kafka.FetchRequest{
		Topic: topic, Partition: partition, Offset: offset,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 2 * time.Second,
	})
	if err != nil {
		return Position{}, fmt.Errorf("fetching last record of %s[%d]: %w", topic, partition, err)
	}
	if resp.Error != nil {
		return Position{}, fmt.Errorf("fetching last record of %s[%d]: %w", topic, partition, resp.Error)
	}
	for {
		r, err := resp.Records.ReadRecord()
		if errors.Is(err, io.EOF) {
			return Position{}, fmt.Errorf("fetching last record of %s[%d]: offset %d not returned", topic, partition, offset)
		}
		if err != nil {
			return Position{}, fmt.Errorf("reading last record of %s[%d]: %w", topic, partition, err)
		}
		if r.Offset != offset {
			continue
		}
		pos, err := recordPosition(r.Headers)
		if err != nil {
			return Position{}, fmt.Errorf("record %s[%d]@%d: %w", topic, partition, offset, err)
		}
		return pos, nil
	}
}

func recordPosition(headers []kafka.Header) (Position, error) {
	var pos Position
	var haveLSN, haveSeq bool
	for _, h := range headers {
		switch h.Key {
		case "pg_lsn":
			l, err := ParseLSN(string(h.Value))
			if err != nil {
				return pos, err
			}
			pos.LSN, haveLSN = l, true
		case "pg_seq":
			n, err := strconv.ParseUint(string(h.Value), 10, 32)
			if err != nil {
				return pos, fmt.Errorf("parsing pg_seq %q: %w", h.Value, err)
			}
			pos.Seq, haveSeq = uint32(n), true
		}
	}
	if !haveLSN || !haveSeq {
		return pos, errors.New("record has no pg_lsn/pg_seq headers: something other than capture writes to this topic")
	}
	return pos, nil
}

// publish routes ev to its partition and queues it, unless the partition already holds it.
// It waits at most wait for room, so the caller can keep the replication connection alive.
func (s *kafkaSink) publish(ctx context.Context, ev *outEvent, wait time.Duration) (publishResult, error) {
	ts, err := s.topic(ctx, ev.topic)
	if err != nil {
		return 0, err
	}
	p := partitionFor(ev.key, len(ts.writers))
	if ts.hasLast[p] && !ev.pos.After(ts.last[p]) {
		return resSkipped, nil
	}
	w := ts.writers[p]
	select {
	case w.queue <- ev:
		return resQueued, nil
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case w.queue <- ev:
		return resQueued, nil
	case <-s.failC:
		return 0, s.failErr
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-t.C:
		return resFull, nil
	}
}

var murmur = kafka.Murmur2Balancer{Consistent: true}

// partitionFor is the Java client's default partitioner (murmur2), so producers in other
// languages that key by order id agree with capture on where an order lives.
func partitionFor(key []byte, n int) int {
	return murmur.Balance(kafka.Message{Key: key}, seq(n)...)
}

var seqCache = map[int][]int{}
var seqMu sync.Mutex

func seq(n int) []int {
	seqMu.Lock()
	defer seqMu.Unlock()
	s := seqCache[n]
	if s == nil {
		s = make([]int, n)
		for i := range s {
			s[i] = i
		}
		seqCache[n] = s
	}
	return s
}

// lingerMin is how many queued events make a writer linger (see write).
const lingerMin = 4

// write is a partition's only producer: one request in flight, in queue order, and nothing
// more after a failure (see the type comment for why that makes the dedupe exact).
func (s *kafkaSink) write(w *partitionWriter) {
	batch := make([]*outEvent, 0, s.cfg.MaxBatch)
	records := make([]kafka.Record, 0, s.cfg.MaxBatch)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for ev := range w.queue {
		batch = append(batch[:0], ev)
		size := len(ev.value)
		lingering, decided := false, false
	fill:
		for len(batch) < s.cfg.MaxBatch && size < 1<<20 {
			select {
			case e, ok := <-w.queue:
				if !ok {
					break fill
				}
				batch = append(batch, e)
				size += len(e.value)
				continue
			default:
			}
			// The queue is empty. Wait up to Linger for more only when it held several
			// events, i.e. events arrive faster than requests complete: a backlog of
			// single-event transactions otherwise becomes thousands of tiny requests a
			// second, and on a small machine the broker's per-request work starves the
			// walsender we read from. A trickle of events still goes out at once.
			if !decided {
				decided = true
				if s.cfg.Linger > 0 && len(batch) >= lingerMin {
					linger.Reset(s.cfg.Linger)
					lingering = true
				}
			}
			if !lingering {
				break
			}
			select {
			case e, ok := <-w.queue:
				if !ok {
					break fill
				}
				batch = append(batch, e)
				size += len(e.value)
			case <-linger.C:
				lingering = false
			}
		}
		if lingering && !linger.Stop() {
			<-linger.C
		}
		if s.aborted.Load() || s.err() != nil {
			break
		}
		records = records[:0]
		now := time.Now()
		for _, e := range batch {
			records = append(records, kafka.Record{
				Time:  now,
				Key:   kafka.NewBytes(e.key),
				Value: kafka.NewBytes(e.value),
				Headers: []kafka.Header{
					{Key: "ce_id", Value: []byte(e.id)},
					{Key: "ce_type", Value: []byte(e.eventType)},
					{Key: "pg_lsn", Value: []byte(e.pos.LSN.String())},
					{Key: "pg_seq", Value: strconv.AppendUint(nil, uint64(e.pos.Seq), 10)},
				},
			})
		}
		// Not the session's context: a request already on the wire is waited for, never
		// abandoned, so that the next session's read of the last record sees its outcome.
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		t0 := time.Now()
		resp, err := s.client.Produce(ctx, &kafka.ProduceRequest{
			Topic: w.topic, Partition: w.partition, RequiredAcks: kafka.RequireAll,
			Records: kafka.NewRecordReader(records...),
		})
		cancel()
		s.metrics.produceSeconds.Observe(time.Since(t0).Seconds())
		s.metrics.batchSize.Observe(float64(len(batch)))
		if err == nil {
			err = resp.Error
		}
		if err == nil {
			for _, re := range resp.RecordErrors {
				err = re
				break
			}
		}
		if err != nil {
			s.metrics.produceErrors.Inc()
			s.fail(fmt.Errorf("producing to %s[%d]: %w", w.topic, w.partition, err))
			break
		}
		for _, e := range batch {
			s.onAck(e)
		}
	}
	// Drop whatever is left: after a failure nothing more may reach this partition.
	for range w.queue {
	}
}

// finish stops the writers and waits for them. With abort, queued events are dropped (the
// slot was not confirmed past them, so the next session replays them); without, they are
// produced first.
func (s *kafkaSink) finish(abort bool) error {
	if abort {
		s.aborted.Store(true)
	}
	for _, ts := range s.topics {
		for _, w := range ts.writers {
			close(w.queue)
		}
	}
	s.wg.Wait()
	return s.err()
}

package capture

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"orderflow/internal/kafka"
)

// KafkaConfig says where and how capture writes.
type KafkaConfig struct {
	Brokers           []string
	Partitions        int // for topics capture creates
	ReplicationFactor int
	// MinInsyncReplicas, if positive, is the min.insync.replicas of topics capture creates:
	// with acks=all, how many replicas must hold a record before Kafka acknowledges it.
	MinInsyncReplicas int
	// Retention, if positive, is the retention.ms of topics capture creates.
	Retention time.Duration
	// Dial, if set, replaces the TCP dialer for every broker connection (tests route the
	// traffic through a proxy they can cut).
	Dial kafka.DialFunc
	// RequestTimeout bounds one produce, fetch or metadata request.
	RequestTimeout time.Duration
	// MaxBatch bounds the records of one partition in one produce request.
	MaxBatch int
	// QueueSize bounds the events waiting per topic.
	QueueSize int
	// QueueBytes bounds the bytes of the events a session holds, over all topics: queued,
	// in the request being built, or in flight until Kafka acknowledges them (byteBudget).
	// It is what bounds capture's memory; an event larger than it passes alone.
	QueueBytes int
	// Linger is how long a writer waits for more events before sending a batch that is not
	// full (Kafka's linger.ms). Negative disables it.
	Linger time.Duration
	// CatchUpLinger is how long a writer waits for more events while capture catches up on
	// a backlog (its events committed over a second ago), to send fewer, fuller requests.
	// Negative disables it.
	CatchUpLinger time.Duration
	// TopicMaxMessageBytes, if positive, is the max.message.bytes of topics capture creates,
	// and the limit capture assumes when it cannot read a topic's from the broker.
	TopicMaxMessageBytes int
	// Security is TLS and SASL for every broker connection; the zero value is plaintext.
	Security kafka.Security
}

func (k *KafkaConfig) client() *kafkago.Client {
	timeout := k.RequestTimeout
	if timeout <= 0 {
		timeout = kafka.RequestTimeout
	}
	return &kafkago.Client{Addr: kafkago.TCP(k.Brokers...), Timeout: timeout,
		Transport: k.Security.OnTransport(kafka.NewTransport("orderflow-capture", k.Dial))}
}

// kafkaSink produces events to one Kafka cluster. It lives for one replication session: its
// dedupe positions are read after the session acquired the slot and are only valid while
// nobody else writes to the topics.
//
// Why the dedupe is exact. Every topic has one writer goroutine that sends at most one
// produce request at a time, in stream order, and stops for good at the first failure. So
// whatever a partition holds of this session's events is a prefix of the events routed to it
// (a request carries one record batch per partition, and each batch is all or nothing, even
// when the request's other batches fail), and their positions grow along the stream.
// When the next session replays the slot from its confirmed LSN, it reads the last record of
// every partition first and drops each event whose position is at or below that record's:
// those, and only those, are already in the partition. Nothing later can be there, because
// the writer that wrote that last record sent nothing after a failure and the session waits
// for every request to finish before it ends.
type kafkaSink struct {
	cfg     KafkaConfig
	client  *kafkago.Client
	log     *slog.Logger
	metrics *metrics
	onAck   func(*outEvent)

	topics map[string]*topicState // owned by the stream goroutine
	budget *byteBudget

	wg       sync.WaitGroup
	aborted  atomic.Bool
	failOnce sync.Once
	failC    chan struct{}
	failErr  error

	// unanswered is the latest send time (unix nanoseconds) of a request that timed out.
	unanswered atomic.Int64
	// produceFailed: a produce request of this session failed.
	produceFailed atomic.Bool
	// settle, if positive, makes the session wait for the partitions' ends to stop moving
	// before it reads their last records (see settleEnds).
	settle time.Duration
}

func (s *kafkaSink) hadFailures() bool { return s.produceFailed.Load() }

// noteUnanswered records that a request sent at t got no answer in time.
func (s *kafkaSink) noteUnanswered(t time.Time) {
	for {
		old := s.unanswered.Load()
		if t.UnixNano() <= old || s.unanswered.CompareAndSwap(old, t.UnixNano()) {
			return
		}
	}
}

// lastUnanswered is the send time of the latest request that timed out, zero if none did.
func (s *kafkaSink) lastUnanswered() time.Time {
	if n := s.unanswered.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// newKafkaSink starts a session's sink. The client (and its connection pool) outlives sessions.
func newKafkaSink(cfg KafkaConfig, client *kafkago.Client, log *slog.Logger, m *metrics, onAck func(*outEvent)) *kafkaSink {
	return &kafkaSink{
		cfg: cfg, client: client, log: log, metrics: m, onAck: onAck,
		topics: map[string]*topicState{}, failC: make(chan struct{}),
		budget: newByteBudget(int64(cfg.QueueBytes), func(d int64) { m.queuedBytes.Add(d) }),
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

// finish stops the writers and waits for them. With abort, queued events are dropped (the
// slot was not confirmed past them, so the next session replays them); without, they are
// produced first.
func (s *kafkaSink) finish(abort bool) error {
	if abort {
		s.aborted.Store(true)
	}
	for _, ts := range s.topics {
		close(ts.writer.queue)
	}
	s.wg.Wait()
	// Events a writer dropped after a failure or an abort were never acknowledged: give their
	// bytes back, so the gauge says what the next session holds.
	if u := s.budget.used.Load(); u != 0 {
		s.budget.give(u)
	}
	return s.err()
}

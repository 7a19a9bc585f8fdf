package capture

import (
	"context"
	"log/slog"
	"net"
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
	// TopicMaxMessageBytes, if positive, is the max.message.bytes of topics capture creates,
	// and the limit capture assumes when it cannot read a topic's from the broker.
	TopicMaxMessageBytes int
	// Security is TLS and SASL for every broker connection; the zero value is plaintext.
	Security kafka.Security
}

func (k *KafkaConfig) client() *kafkago.Client {
	tr := &kafkago.Transport{ClientID: "orderflow-capture", DialTimeout: 5 * time.Second, MetadataTTL: 10 * time.Second,
		TLS: k.Security.TLS, SASL: k.Security.SASL}
	if k.Dial != nil {
		tr.Dial = k.Dial
	}
	return &kafkago.Client{Addr: kafkago.TCP(k.Brokers...), Timeout: k.RequestTimeout, Transport: tr}
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
	client  *kafkago.Client
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

// newKafkaSink starts a session's sink. The client (and its connection pool) outlives sessions.
func newKafkaSink(cfg KafkaConfig, client *kafkago.Client, log *slog.Logger, m *metrics, onAck func(*outEvent)) *kafkaSink {
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

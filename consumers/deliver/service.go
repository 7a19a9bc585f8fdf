package deliver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"orderflow"
	"orderflow/internal/egress"
	"orderflow/internal/httpserver"
	"orderflow/internal/kafka"
	"orderflow/internal/periodic"
	"orderflow/internal/retention"
)

// Store is everything the deliverer needs from the database; postgres.DB implements it.
type Store interface {
	intakeStore
	senderStore
	retentionStore
	endpointStore
	DeliveryStats(ctx context.Context) (orderflow.DeliveryStats, error)
	Ping(ctx context.Context) error
}

// Config configures a deliverer. Zero values take the defaults documented in docs/WEBHOOKS.md.
type Config struct {
	Brokers []string
	Topic   string // default orderflow.order
	GroupID string // default orderflow-deliver
	Policy  Policy // zero: DefaultPolicy()
	// Workers bounds the POSTs in flight in this process; PerEndpoint bounds them per
	// endpoint, so one slow endpoint can occupy at most PerEndpoint of the Workers.
	Workers     int           // default DefaultWorkers
	PerEndpoint int           // default DefaultPerEndpoint
	Poll        time.Duration // how often the sender looks for due retries; default 250ms
	// Lease is how long a claim lasts beyond the attempt timeout before another deliverer
	// may take the delivery over; default 30s.
	Lease      time.Duration
	StatsEvery time.Duration // gauges refresh; default 5s
	MaxBatch   int           // records per intake transaction; default 500
	// CommitInterval is how often the intake's offsets are committed to Kafka; default 100ms.
	CommitInterval time.Duration
	Logger         *slog.Logger
	HTTPClient     *http.Client // default: no redirects, pooled per endpoint, dialing through Egress
	RandomDelay    func(n int64) int64
	// Egress says which endpoints may be reached besides public https ones; the zero Policy
	// allows those only. It is checked on the URL and on every address dialed, so a name that
	// resolves to a private address at send time (DNS rebinding) is refused then.
	Egress egress.Policy
	// Resolver resolves endpoint host names for the egress check; nil is net.DefaultResolver.
	Resolver egress.Resolver
	// Secrets opens the endpoint secrets the API stored sealed; nil can only sign with secrets
	// stored in clear (rows older than encryption at rest).
	Secrets SecretOpener
	// Kafka is TLS and SASL for every broker connection; the zero value is plaintext.
	Kafka kafka.Security
	// Dial, if set, opens every connection to Kafka; tests put a proxy in between to take
	// Kafka away.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Retention (docs/RETENTION.md): how long succeeded deliveries and dead letters are kept,
	// zero for the defaults (DefaultRetainSucceeded, DefaultRetainDead), negative to keep
	// them forever; how often the purge runs and how many rows one statement deletes.
	RetainSucceeded time.Duration
	RetainDead      time.Duration
	PurgeEvery      time.Duration
	PurgeBatch      int
	// AutoDisableAfter disables an endpoint whose attempts have all failed for this long; 0
	// never does (the command's default is 5 days). AutoDisableEvery is how often endpoints
	// are checked; default 30s.
	AutoDisableAfter time.Duration
	AutoDisableEvery time.Duration
}

// Defaults of Config's concurrency. An endpoint's throughput is its slots over its answer
// time: 8 slots at the mock partner's 20-60 ms on a busy two-core box capped the pipeline
// at 130-400 deliveries/s, below the 1,000 orders/s goal. 32 slots carry 1,000/s up to 32 ms
// per answer; the pool keeps the old 1:8 ratio, so a hanging endpoint still holds at most an
// eighth of it.
const (
	DefaultPerEndpoint = 32
	DefaultWorkers     = 8 * DefaultPerEndpoint
)

// SecretOpener opens a sealed webhook secret; *secretbox.Ring is one.
type SecretOpener interface {
	Open(sealed string) ([]byte, error)
}

// Service is a running deliverer: intake, sender and gauges.
type Service struct {
	cfg    Config
	store  Store
	reader *kafkago.Reader
	lag    *kafka.Lag
	probe  *kafka.Probe
	sender *sender
	intake *intake
	purger *retention.Purger
	health *autoDisabler
	m      *metrics
	reg    *prometheus.Registry
	log    *slog.Logger
	// dbOK and kafkaOK say whether the last contact with each dependency worked; the
	// deliverer runs either way (the sender needs no Kafka, the intake waits for both).
	dbOK    atomic.Bool
	kafkaOK atomic.Bool
	// assigned counts the partitions the group gave this deliverer's intake.
	assigned kafka.Assignment
}

// New prepares a deliverer; Run starts it.
func New(cfg Config, store Store) (*Service, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("deliver: no kafka brokers")
	}
	if cfg.Topic == "" {
		cfg.Topic = orderflow.Topic(orderflow.AggregateOrder)
	}
	if cfg.GroupID == "" {
		cfg.GroupID = "orderflow-deliver"
	}
	if cfg.Policy == (Policy{}) {
		cfg.Policy = DefaultPolicy()
	}
	if err := cfg.Policy.validate(); err != nil {
		return nil, err
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.PerEndpoint <= 0 {
		cfg.PerEndpoint = DefaultPerEndpoint
	}
	cfg.PerEndpoint = min(cfg.PerEndpoint, cfg.Workers)
	if cfg.Poll <= 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.StatsEvery <= 0 {
		cfg.StatsEvery = 5 * time.Second
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 500
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTPClient == nil {
		resolver := cfg.Resolver
		if resolver == nil {
			resolver = net.DefaultResolver
		}
		cfg.HTTPClient = newHTTPClient(cfg.PerEndpoint, cfg.Egress, resolver)
	}
	if cfg.RandomDelay == nil {
		cfg.RandomDelay = jitter
	}
	if cfg.RetainSucceeded == 0 {
		cfg.RetainSucceeded = DefaultRetainSucceeded
	}
	if cfg.RetainDead == 0 {
		cfg.RetainDead = DefaultRetainDead
	}
	if cfg.PurgeEvery <= 0 {
		cfg.PurgeEvery = DefaultPurgeEvery
	}
	if cfg.AutoDisableEvery <= 0 {
		cfg.AutoDisableEvery = 30 * time.Second
	}
	s := &Service{cfg: cfg, store: store, log: cfg.Logger}
	reg := prometheus.NewRegistry()
	m := newMetrics(reg, s.dependencyUp)
	em := newEndpointMetrics(reg)
	reader := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:          cfg.Brokers,
		Dialer:           cfg.Kafka.OnDialer(kafka.NewDialer("orderflow-deliver", cfg.Dial)),
		GroupID:          cfg.GroupID,
		Topic:            cfg.Topic,
		MinBytes:         1,
		MaxBytes:         10 << 20,
		MaxWait:          kafka.ReaderMaxWait,
		JoinGroupBackoff: kafka.JoinGroupBackoff,
		// A killed deliverer's partitions go to its replacement only when the coordinator
		// gives up on the dead member: kafka-go's 30 s default kept a restarted deliverer
		// unready (it is ready only with partitions) past make drill's 30 s start wait. The
		// projector's 10 s; the broker's minimum is 6 s.
		SessionTimeout:   10 * time.Second,
		RebalanceTimeout: 10 * time.Second,
		StartOffset:      kafkago.FirstOffset,
		// Offsets are committed in the background every CommitInterval (and on every
		// rebalance and on Close). Only offsets of records whose deliveries are already in
		// PostgreSQL are handed to CommitMessages, so a crash can only replay records, which
		// the (event id, endpoint id) key absorbs; a synchronous commit per batch put a broker
		// round trip between one intake transaction and the next.
		CommitInterval: cfg.CommitInterval,
		// Readiness waits for the first assignment.
		Logger:      s.assigned.Logger(nil),
		ErrorLogger: kafkago.LoggerFunc(func(msg string, args ...any) { cfg.Logger.Warn("kafka reader: " + fmt.Sprintf(msg, args...)) }),
	})
	wake := make(chan struct{}, 1)
	handoff := make(chan handoffRequest)
	client := &kafkago.Client{Addr: kafkago.TCP(cfg.Brokers...), Timeout: kafka.RequestTimeout,
		Transport: cfg.Kafka.OnTransport(kafka.NewTransport("orderflow-deliver", cfg.Dial))}
	lag := kafka.NewLag("orderflow_deliver_consumer_lag", client, cfg.GroupID, cfg.Topic)
	probe := kafka.NewProbe("orderflow_deliver_kafka_reachable", client, 0, 0)
	reg.MustRegister(lag, probe)
	s.reader, s.m, s.reg, s.lag, s.probe = reader, m, reg, lag, probe
	purger, err := retention.New("orderflow_deliver", reg, retention.Config{Batch: cfg.PurgeBatch, Logger: cfg.Logger.With("loop", "retention")},
		retentionRules(store, cfg.RetainSucceeded, cfg.RetainDead)...)
	if err != nil {
		return nil, err
	}
	s.purger = purger
	s.intake = &intake{reader: reader, store: store, maxBatch: cfg.MaxBatch, linger: 5 * time.Millisecond,
		log: cfg.Logger.With("loop", "intake"), m: m, wake: wake, handoff: handoff, kafkaOK: &s.kafkaOK, dbOK: &s.dbOK}
	s.sender =
		&sender{store: store, client: cfg.HTTPClient, egress: cfg.Egress, secrets: cfg.Secrets, policy: cfg.Policy, workers: cfg.Workers,
			perEndpoint: cfg.PerEndpoint, prefetch: 2 * cfg.PerEndpoint, poll: cfg.Poll, lease: cfg.Policy.Timeout + cfg.Lease,
			log: cfg.Logger.With("loop", "sender"), m: m, wake: wake, handoff: handoff, now: time.Now, rnd: cfg.RandomDelay,
			inFlight: map[string]int{}, queued: map[string][]held{}, slots: store, em: em}
	s.health = &autoDisabler{store: store, after: cfg.AutoDisableAfter, every: cfg.AutoDisableEvery,
		log: cfg.Logger.With("loop", "endpoint_health"), m: em}
	return s, nil
}

// Run consumes, delivers and refreshes the gauges until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	defer s.reader.Close()
	s.log.Info("delivering", "topic", s.cfg.Topic, "group", s.cfg.GroupID, "workers", s.cfg.Workers,
		"per_endpoint", s.cfg.PerEndpoint, "timeout", s.cfg.Policy.Timeout, "max_attempts", s.cfg.Policy.MaxAttempts,
		"auto_disable_after", s.cfg.AutoDisableAfter)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.intake.run(gctx) })
	g.Go(func() error { return s.sender.run(gctx) })
	g.Go(func() error { return s.health.run(gctx) })
	g.Go(func() error { return s.probe.Run(gctx) })
	g.Go(func() error {
		return periodic.Run(gctx, s.cfg.StatsEvery, s.refreshStats, func(err error) { s.log.Warn("counting deliveries", "err", err) })
	})
	g.Go(func() error { return s.purger.Run(gctx, s.cfg.PurgeEvery) })
	return g.Wait()
}

// refreshStats sets the gauges from the delivery tables and the group's lag on the broker,
// and with them whether each dependency answers.
func (s *Service) refreshStats(ctx context.Context) error {
	st, err := s.store.DeliveryStats(ctx)
	if ctx.Err() != nil {
		return nil
	}
	s.dbOK.Store(err == nil)
	if err == nil {
		s.m.pending.Set(float64(st.Pending))
		s.m.retrying.Set(float64(st.Retrying))
		s.m.dead.Set(float64(st.Dead))
	}
	_, lerr := s.lag.Refresh(ctx)
	if ctx.Err() != nil {
		return nil
	}
	s.kafkaOK.Store(lerr == nil)
	if lerr != nil {
		s.log.Debug("measuring consumer lag", "err", lerr)
	}
	return err
}

func (s *Service) dependencyUp(dep string) bool {
	if dep == dependencyKafka {
		return s.kafkaOK.Load()
	}
	return s.dbOK.Load()
}

// Handler serves /healthz, /readyz (PostgreSQL and Kafka answer, the intake holds partitions)
// and /metrics.
func (s *Service) Handler() http.Handler {
	return httpserver.OpsHandler(s.reg, func(ctx context.Context) error {
		// /readyz says what is away, not the driver's error, which may name hosts and users.
		if err := s.store.Ping(ctx); err != nil {
			return errors.New("database unavailable; retrying")
		}
		if !s.kafkaOK.Load() {
			return errors.New("kafka unavailable; retrying (deliveries already in the database are still sent)")
		}
		if s.probe.Err() != nil {
			return errors.New("kafka unavailable")
		}
		// Until the group gives the intake partitions, a new event waits for the join.
		if s.assigned.Partitions() == 0 {
			return errors.New("no partitions assigned yet (joining the consumer group)")
		}
		return nil
	}, nil)
}

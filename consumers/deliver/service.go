package deliver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"orderflow"
	"orderflow/internal/httpserver"
	"orderflow/internal/kafka"
	"orderflow/internal/periodic"
)

// Store is everything the deliverer needs from the database; postgres.DB implements it.
type Store interface {
	intakeStore
	senderStore
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
	Workers     int           // default 64
	PerEndpoint int           // default 8
	Poll        time.Duration // how often the sender looks for due retries; default 250ms
	// Lease is how long a claim lasts beyond the attempt timeout before another deliverer
	// may take the delivery over; default 30s.
	Lease       time.Duration
	StatsEvery  time.Duration // gauges refresh; default 5s
	MaxBatch    int           // records per intake transaction; default 500
	Logger      *slog.Logger
	HTTPClient  *http.Client // default: no redirects, pooled per endpoint
	RandomDelay func(n int64) int64
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
	m      *metrics
	reg    *prometheus.Registry
	log    *slog.Logger
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
		cfg.Workers = 64
	}
	if cfg.PerEndpoint <= 0 {
		cfg.PerEndpoint = 8
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
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = newHTTPClient(cfg.PerEndpoint)
	}
	if cfg.RandomDelay == nil {
		cfg.RandomDelay = jitter
	}
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	reader := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:        cfg.Brokers,
		GroupID:        cfg.GroupID,
		Topic:          cfg.Topic,
		Dialer:         kafka.NewDialer("orderflow-deliver", nil),
		MinBytes:       1,
		MaxBytes:       10 << 20,
		MaxWait:        250 * time.Millisecond,
		StartOffset:    kafkago.FirstOffset,
		CommitInterval: 0, // synchronous: CommitMessages returns once the broker has the offsets
		ErrorLogger:    kafkago.LoggerFunc(func(msg string, args ...any) { cfg.Logger.Warn("kafka reader: " + fmt.Sprintf(msg, args...)) }),
	})
	wake := make(chan struct{}, 1)
	client := kafka.NewClient(cfg.Brokers, "orderflow-deliver", nil, 0)
	lag := kafka.NewLag("orderflow_deliver_consumer_lag", client, cfg.GroupID, cfg.Topic)
	probe := kafka.NewProbe("orderflow_deliver_kafka_reachable", client, 0, 0)
	reg.MustRegister(lag, probe)
	s := &Service{
		cfg: cfg, store: store, reader: reader, m: m, reg: reg, log: cfg.Logger,
		lag: lag, probe: probe,
		intake: &intake{reader: reader, store: store, maxBatch: cfg.MaxBatch, linger: 5 * time.Millisecond,
			log: cfg.Logger.With("loop", "intake"), m: m, wake: wake},
		sender: &sender{store: store, client: cfg.HTTPClient, policy: cfg.Policy, workers: cfg.Workers,
			perEndpoint: cfg.PerEndpoint, prefetch: cfg.PerEndpoint, poll: cfg.Poll, lease: cfg.Policy.Timeout + cfg.Lease,
			log: cfg.Logger.With("loop", "sender"), m: m, wake: wake, now: time.Now, rnd: cfg.RandomDelay,
			inFlight: map[string]int{}, queued: map[string][]held{}},
	}
	return s, nil
}

// Run consumes, delivers and refreshes the gauges until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	defer s.reader.Close()
	s.log.Info("delivering", "topic", s.cfg.Topic, "group", s.cfg.GroupID, "workers", s.cfg.Workers,
		"per_endpoint", s.cfg.PerEndpoint, "timeout", s.cfg.Policy.Timeout, "max_attempts", s.cfg.Policy.MaxAttempts)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.intake.run(gctx) })
	g.Go(func() error { return s.sender.run(gctx) })
	g.Go(func() error { return s.probe.Run(gctx) })
	g.Go(func() error {
		return periodic.Run(gctx, s.cfg.StatsEvery, s.refreshStats, func(err error) { s.log.Warn("counting deliveries", "err", err) })
	})
	return g.Wait()
}

// refreshStats sets the gauges from the delivery tables and the group's lag on the broker.
func (s *Service) refreshStats(ctx context.Context) error {
	st, err := s.store.DeliveryStats(ctx)
	if err == nil {
		s.m.pending.Set(float64(st.Pending))
		s.m.retrying.Set(float64(st.Retrying))
		s.m.dead.Set(float64(st.Dead))
	}
	if _, lerr := s.lag.Refresh(ctx); lerr != nil && ctx.Err() == nil {
		s.log.Debug("measuring consumer lag", "err", lerr)
	}
	return err
}

// Handler serves /healthz, /readyz (the database and Kafka answer) and /metrics.
func (s *Service) Handler() http.Handler {
	return httpserver.OpsHandler(s.reg, func(ctx context.Context) error {
		if err := s.store.Ping(ctx); err != nil {
			// /readyz says what is down, not the driver's error, which may name hosts and users.
			return errors.New("database unavailable")
		}
		if s.probe.Err() != nil {
			return errors.New("kafka unavailable")
		}
		return nil
	}, nil)
}

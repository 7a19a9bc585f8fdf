// Package partner is the mock fulfillment partner: it receives orderflow's webhooks the way a
// careful real partner would (verify the signature and timestamp, dedupe on webhook-id in the
// same transaction as the work, answer 2xx only after the commit), and it closes the saga by
// calling the API back: fulfill the order, or cancel it with a reason (the compensating step,
// which releases the reserved stock).
//
// Its fault flags (error rate, latency, timeouts, "commit then answer 500") exist for drills:
// each one exercises a path of the deliverer that must not lose or duplicate work.
package partner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"orderflow/internal/httpserver"
	"orderflow/internal/retention"
	"orderflow/webhook"
)

// Faults are the failures the partner injects on purpose. Rates are probabilities in [0, 1],
// drawn per request.
type Faults struct {
	// ErrorRate answers 500 before doing anything: nothing is stored, the retry does the work.
	ErrorRate float64
	// Latency is added to every webhook request before it is handled.
	Latency time.Duration
	// TimeoutRate hangs the request until the sender gives up (or Hang passes) and stores
	// nothing.
	TimeoutRate float64
	Hang        time.Duration
	// CommitThen500Rate stores the receipt and its work, commits, and then answers 500: the
	// sender retries a message that was already processed, and the receipt must absorb it.
	CommitThen500Rate float64
}

func (f Faults) validate() error {
	for _, r := range []float64{f.ErrorRate, f.TimeoutRate, f.CommitThen500Rate} {
		if r < 0 || r > 1 {
			return fmt.Errorf("fault rates must be within [0, 1], got %v", r)
		}
	}
	if f.Latency < 0 || f.Hang < 0 {
		return errors.New("fault latency and hang must not be negative")
	}
	return nil
}

// Config configures the partner.
type Config struct {
	DatabaseURL string
	// Secrets verify the webhooks: the endpoint's whsec_ secret, and during a rotation the
	// other one too.
	Secrets []string
	// Tolerance is the accepted distance between webhook-timestamp and now; default 5 min.
	Tolerance time.Duration
	// APIURL and APIKey are how the partner calls orderflow back.
	APIURL string
	APIKey string
	// FulfillDelay is how long after the receipt the partner calls back (default 1 s).
	FulfillDelay time.Duration
	// RejectRatio is the share of order.created events answered with a cancel.
	RejectRatio float64
	// UnknownSKU matches SKUs the partner does not carry: an order naming one is always
	// rejected. Nil matches nothing.
	UnknownSKU *regexp.Regexp
	Faults     Faults
	// Callback retries: backoff doubling from CallbackBackoff up to CallbackMaxBackoff,
	// for as long as CallbackMaxAge after the callback was first due (or replayed), then it
	// fails and waits in the replayable list; CallbackMaxAttempts, if above 0, also bounds the
	// attempts. Defaults 500 ms, 5 min, 12 h, no attempt bound.
	CallbackBackoff     time.Duration
	CallbackMaxBackoff  time.Duration
	CallbackMaxAge      time.Duration
	CallbackMaxAttempts int
	// AdminToken enables the admin routes (/admin/callbacks...) for requests bearing it;
	// empty disables them.
	AdminToken      string
	CallbackPoll    time.Duration // default 200 ms
	CallbackTimeout time.Duration // default 10 s
	// Retention (docs/RETENTION.md): receipts, callbacks that failed for good with dead-lettered
	// webhooks, and the fault log; zero for the defaults, negative to keep for ever. PurgeEvery
	// and PurgeBatch pace the purge.
	RetainReceipts time.Duration
	RetainFailed   time.Duration
	RetainFaults   time.Duration
	PurgeEvery     time.Duration
	PurgeBatch     int
	// Addr is where Run listens; OnListen, if set, gets the bound address.
	Addr     string
	OnListen func(net.Addr)
	Logger   *slog.Logger
	// Random returns a number in [0, 1); tests make it deterministic.
	Random func() float64
	// Tracer, if set, sees every query the partner runs (the periodic-query benchmark records
	// them to EXPLAIN them).
	Tracer pgx.QueryTracer
	// MaxConns bounds the database pool (default DefaultMaxConns); pool_max_conns in
	// DatabaseURL wins over both.
	MaxConns int32
}

// DefaultMaxConns is the partner's default pool size. Every webhook holds a connection for its
// receipt's statement and every callback for its outcome's: pgx's own default (4 on two
// cores) made webhooks queue behind each other and behind callbacks long before PostgreSQL
// was busy. It matches the deliverer's default slots per endpoint, so a deliverer at full
// concurrency never waits for the pool.
const DefaultMaxConns = 32

// Defaults of the callback retries.
const (
	DefaultCallbackMaxBackoff = 5 * time.Minute
	// DefaultCallbackMaxAge is how long a callback is retried: an API down for hours loses
	// no callback.
	DefaultCallbackMaxAge = 12 * time.Hour
)

// Partner is the mock partner.
type Partner struct {
	cfg    Config
	pool   *pgxpool.Pool
	faults atomic.Pointer[Faults]
	client *http.Client
	log    *slog.Logger
	m      *metrics
	reg    *prometheus.Registry
	wake   chan struct{}
	// dbOK and apiOK say whether the last contact with PostgreSQL and with the API worked;
	// the partner runs either way and retries.
	dbOK  atomic.Bool
	apiOK atomic.Bool
	purge *retention.Purger
	// receipts groups the receipts of concurrent webhooks into one statement.
	receipts receiptQueue

	stop     chan struct{}
	stopOnce sync.Once
}

// New connects to the database and prepares the partner; Run starts it.
func New(ctx context.Context, cfg Config) (*Partner, error) {
	if len(cfg.Secrets) == 0 {
		return nil, errors.New("partner: a webhook secret is required")
	}
	// Verify skips a malformed secret, so one would only show up as refused webhooks; saying
	// which one at start is kinder. The secret itself is never printed.
	for i, s := range cfg.Secrets {
		if !webhook.ValidSecret(s) {
			return nil, fmt.Errorf("partner: webhook secret %d of %d is not in whsec_<base64> form", i+1, len(cfg.Secrets))
		}
	}
	if cfg.APIURL == "" {
		return nil, errors.New("partner: the API URL is required for the callbacks")
	}
	if err := cfg.Faults.validate(); err != nil {
		return nil, err
	}
	if cfg.RejectRatio < 0 || cfg.RejectRatio > 1 {
		return nil, fmt.Errorf("partner: reject ratio must be within [0, 1], got %v", cfg.RejectRatio)
	}
	if cfg.Tolerance <= 0 {
		cfg.Tolerance = 5 * time.Minute
	}
	if cfg.FulfillDelay < 0 {
		cfg.FulfillDelay = 0
	}
	if cfg.CallbackBackoff <= 0 {
		cfg.CallbackBackoff = 500 * time.Millisecond
	}
	if cfg.CallbackMaxBackoff <= 0 {
		cfg.CallbackMaxBackoff = DefaultCallbackMaxBackoff
	}
	if cfg.CallbackMaxAge <= 0 {
		cfg.CallbackMaxAge = DefaultCallbackMaxAge
	}
	if cfg.CallbackPoll <= 0 {
		cfg.CallbackPoll = 200 * time.Millisecond
	}
	if cfg.CallbackTimeout <= 0 {
		cfg.CallbackTimeout = 10 * time.Second
	}
	if cfg.Faults.Hang <= 0 {
		cfg.Faults.Hang = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&cfg.RetainReceipts, DefaultRetainReceipts}, {&cfg.RetainFailed, DefaultRetainFailed}, {&cfg.RetainFaults, DefaultRetainFaults}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.RetainReceipts > 0 && cfg.RetainReceipts < minReceipts {
		cfg.Logger.Warn("receipts are kept for less than the deliverer's default retry horizon: a late retry would be acted on twice",
			"retain_receipts", cfg.RetainReceipts, "horizon", minReceipts)
	}
	if cfg.PurgeEvery <= 0 {
		cfg.PurgeEvery = time.Minute
	}
	if cfg.Random == nil {
		cfg.Random = rand.Float64
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("partner: parsing database url: %w", err)
	}
	if cfg.Tracer != nil {
		pcfg.ConnConfig.Tracer = cfg.Tracer
	}
	if !strings.Contains(cfg.DatabaseURL, "pool_max_conns") {
		pcfg.MaxConns = cmp.Or(cfg.MaxConns, DefaultMaxConns)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("partner: opening database pool: %w", err)
	}
	reg := prometheus.NewRegistry()
	p := &Partner{cfg: cfg, pool: pool, client: callbackClient(cfg.CallbackTimeout), log: cfg.Logger,
		reg: reg, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	p.m = newMetrics(reg, p.dependencyUp)
	purger, err := retention.New("orderflow_partner", reg, retention.Config{Batch: cfg.PurgeBatch, Logger: cfg.Logger}, p.RetentionRules()...)
	if err != nil {
		pool.Close()
		return nil, err
	}
	p.purge = purger
	p.dbOK.Store(true)
	p.apiOK.Store(true)
	f := cfg.Faults
	p.faults.Store(&f)
	return p, nil
}

// callbackClient is the HTTP client of the callbacks. http.DefaultTransport keeps two idle
// connections per host, and the callbacks make up to callbackConcurrency calls at once: at
// 350 orders/s the partner dialed a new connection for most calls (12% of its CPU in dialing,
// and an accept, a goroutine and a TIME_WAIT socket on the API's side for each). Keeping that
// many idle lets every call reuse one.
func callbackClient(timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = callbackConcurrency
	tr.MaxIdleConns = 2 * callbackConcurrency
	return &http.Client{Timeout: timeout, Transport: tr}
}

// SetFaults changes the injected faults while the partner runs (drills switch them on and off).
func (p *Partner) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	if f.Hang <= 0 {
		f.Hang = time.Minute
	}
	p.faults.Store(&f)
	return nil
}

// Close releases the database pool.
func (p *Partner) Close() { p.pool.Close() }

// Run serves the webhook endpoint on cfg.Addr and runs the callback loop until ctx ends.
func (p *Partner) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.RunCallbacks(gctx) })
	g.Go(func() error { return p.purge.Run(gctx, p.cfg.PurgeEvery) })
	g.Go(func() error { return httpserver.Serve(gctx, p.cfg.Addr, p.Handler(), p.log, p.cfg.OnListen) })
	return g.Wait()
}

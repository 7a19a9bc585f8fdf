// Package api is orderflow's HTTP API: orders, inventory, health and metrics. It speaks JSON
// and answers every refusal with an RFC 9457 problem.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"orderflow"
	"orderflow/internal/egress"
	"orderflow/internal/negcache"
	"orderflow/internal/periodic"
	"orderflow/internal/ratelimit"
	"orderflow/internal/secretbox"
)

// orderStore is what the API needs from the database.
type orderStore interface {
	CreateOrder(ctx context.Context, k orderflow.IdempotencyKey, n orderflow.NewOrder, respond orderflow.Responder) (orderflow.Response, error)
	ChangeOrder(ctx context.Context, scope orderflow.Scope, k orderflow.IdempotencyKey, id string, a orderflow.Action, reason string, respond orderflow.Responder) (orderflow.Response, error)
	Order(ctx context.Context, scope orderflow.Scope, id string) (*orderflow.Order, error)
	OrderSummary(ctx context.Context, scope orderflow.Scope, id string) (orderflow.Summary, int, error)
	CustomerSummaries(ctx context.Context, scope orderflow.Scope, customerID string, after *orderflow.SummaryCursor, limit int) ([]orderflow.Summary, error)
	SetStock(ctx context.Context, sku string, stock int64) (orderflow.Stock, error)
	ClientByKeyDigest(ctx context.Context, digest []byte) (orderflow.Client, bool, error)
	Ping(ctx context.Context) error
}

// Server holds the API's dependencies; Handler returns its routes.
type Server struct {
	store   orderStore
	log     *slog.Logger
	metrics *metrics
	reg     *prometheus.Registry
	clients *clientCache
	handler http.Handler
	// egress decides which webhook endpoint URLs may be registered; the zero Policy accepts
	// public https URLs only.
	egress egress.Policy
	// secrets seals webhook secrets (and the stored answers that carry them) at rest; without
	// it the API registers no endpoint and rotates no secret, rather than store one in clear.
	secrets *secretbox.Ring
	// limits holds a token bucket per client; nil is no limit.
	limits *ratelimit.Limiter
	// unknown, lookups and lookupSlots bound what unknown keys cost (see authenticate).
	unknown     *negcache.Cache
	lookups     *ratelimit.Limiter
	blocked     *negcache.Cache
	lookupSlots chan struct{}
	flights     singleflight.Group
	// admission bounds the requests working at once (shed.go); nil is no bound.
	admission *admission
}

// Option configures a Server.
type Option func(*Server)

// WithEgress sets which webhook endpoint URLs registration accepts besides public https ones
// (the local stack allows loopback for its mock partner).
func WithEgress(p egress.Policy) Option { return func(s *Server) { s.egress = p } }

// WithSecrets sets the key ring that encrypts webhook secrets at rest.
func WithSecrets(r *secretbox.Ring) Option { return func(s *Server) { s.secrets = r } }

// WithRateLimit limits each client (all its keys together) to rate requests per second with
// bursts of burst; a client over it is answered 429 with Retry-After. rate 0 is no limit.
func WithRateLimit(rate float64, burst int) Option {
	return func(s *Server) { s.limits = mustLimiter(rate, burst) }
}

// WithKeyLookupLimit limits how many unknown API keys one address may have looked up in the
// database per second (bursts of burst); beyond it the address is answered 429 without a
// query. rate 0 is no limit (the cache of unknown keys and the bound on concurrent lookups stay).
func WithKeyLookupLimit(rate float64, burst int) Option {
	return func(s *Server) { s.lookups = mustLimiter(rate, burst) }
}

// Defaults of the limits, used when no option sets them: generous enough that the benchmarks
// on a development machine are not throttled, tight enough that one client cannot take the
// API alone, and a key sprayer gets a handful of queries per second per address.
const (
	DefaultRateLimit       = 2000
	DefaultRateBurst       = 4000
	DefaultKeyLookupRate   = 10
	DefaultKeyLookupBurst  = 20
	rateLimitTrackedClient = 100_000
)

func mustLimiter(rate float64, burst int) *ratelimit.Limiter {
	if rate <= 0 {
		return nil
	}
	l, err := ratelimit.New(ratelimit.Config{Rate: rate, Burst: max(burst, 1), MaxKeys: rateLimitTrackedClient})
	if err != nil {
		// Rate and burst are positive here and the key cap is a constant.
		panic(err)
	}
	return l
}

// New returns an API server on store.
func New(store orderStore, log *slog.Logger, opts ...Option) *Server {
	reg := prometheus.NewRegistry()
	s := &Server{
		store:       store,
		log:         log,
		metrics:     newMetrics(reg),
		reg:         reg,
		clients:     newClientCache(keyCacheTTL),
		limits:      mustLimiter(DefaultRateLimit, DefaultRateBurst),
		unknown:     negcache.New(unknownKeyTTL, maxUnknownKeys, nil),
		blocked:     negcache.New(lookupBlock, maxUnknownKeys, nil),
		lookups:     mustLimiter(DefaultKeyLookupRate, DefaultKeyLookupBurst),
		lookupSlots: make(chan struct{}, maxKeyLookups),
		admission:   newAdmission(DefaultMaxInFlight, DefaultMaxQueued, DefaultQueueTimeout),
	}
	for _, o := range opts {
		o(s)
	}
	registerAdmission(reg, s.admission)
	s.handler = s.routes()
	return s
}

// RunKeyPurger purges expired idempotency keys every interval until ctx ends.
func RunKeyPurger(ctx context.Context, purge func(context.Context) (int64, error), every time.Duration, log *slog.Logger) error {
	return periodic.Run(ctx, every, func(ctx context.Context) error {
		n, err := purge(ctx)
		if err == nil && n > 0 {
			log.Info("purged expired idempotency keys", "count", n)
		}
		return err
	}, func(err error) {
		log.Warn("purging expired idempotency keys", "err", err)
	})
}

var _ http.Handler = (*Server)(nil)

// ServeHTTP makes the server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

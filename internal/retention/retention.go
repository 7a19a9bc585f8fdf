// Package retention runs the retention rules of one service: each rule deletes the rows of one
// table (or one state of it) older than its window, in bounded batches, and exports what it
// purged and how old the oldest row it keeps is. The rules themselves — which rows, how long,
// and why that long is safe — belong to the service that writes the table; this package only
// runs them the same way everywhere.
package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"orderflow/internal/periodic"
)

// Rule is one retention rule.
type Rule struct {
	// Name is the rule's label in the metrics, such as "webhook_deliveries_succeeded".
	Name string
	// Keep is how long rows are kept; a rule with Keep <= 0 is off.
	Keep time.Duration
	// Purge deletes at most limit rows older than keep and returns how many it deleted. Each
	// call is one short transaction: a purge never holds many locks for long.
	Purge func(ctx context.Context, keep time.Duration, limit int) (int64, error)
	// OldestAge returns the age of the oldest row the rule keeps, 0 when there is none.
	OldestAge func(ctx context.Context) (time.Duration, error)
}

// DefaultBatch is the rows one purge statement deletes by default.
const DefaultBatch = 1000

// Config tunes a Purger.
type Config struct {
	// Batch bounds the rows one statement deletes; default 1000, which keeps a batch of
	// deliveries with their attempts and seven indexes under 50 ms (make bench, periodic).
	Batch int
	// MaxBatches bounds the statements per rule and cycle, so one cycle ends even when a
	// backlog built up (it is worked off over the next cycles); default 1000.
	MaxBatches int
	// Pause is the wait between two batches, leaving the database to others; default 10 ms.
	Pause  time.Duration
	Logger *slog.Logger
}

// Purger runs rules.
type Purger struct {
	cfg    Config
	rules  []Rule
	purged *prometheus.CounterVec
	oldest *prometheus.GaugeVec
	window *prometheus.GaugeVec
}

// New registers the metrics <prefix>_retention_purged_rows_total{rule},
// <prefix>_retention_oldest_row_age_seconds{rule} and <prefix>_retention_window_seconds{rule}
// on reg and returns a purger of rules.
func New(prefix string, reg prometheus.Registerer, cfg Config, rules ...Rule) (*Purger, error) {
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.MaxBatches <= 0 {
		cfg.MaxBatches = 1000
	}
	if cfg.Pause <= 0 {
		cfg.Pause = 10 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Purger{cfg: cfg, rules: rules,
		purged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "_retention_purged_rows_total",
			Help: "Rows deleted by the retention rule, by rule.",
		}, []string{"rule"}),
		oldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: prefix + "_retention_oldest_row_age_seconds",
			Help: "Age of the oldest row the retention rule keeps (0: none); stays below the rule's window while purging keeps up.",
		}, []string{"rule"}),
		window: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: prefix + "_retention_window_seconds",
			Help: "How long the retention rule keeps rows (0: for ever).",
		}, []string{"rule"}),
	}
	for _, r := range rules {
		p.purged.WithLabelValues(r.Name)
		p.oldest.WithLabelValues(r.Name)
		p.window.WithLabelValues(r.Name).Set(max(r.Keep, 0).Seconds())
	}
	for _, c := range []prometheus.Collector{p.purged, p.oldest, p.window} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering retention metrics: %w", err)
		}
	}
	return p, nil
}

// Once runs every rule once: batches until a batch comes back short or MaxBatches ran, then
// the oldest-row gauge. It returns the rows purged per rule and the errors joined; a failing
// rule does not stop the others.
func (p *Purger) Once(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	var errs []error
	for _, r := range p.rules {
		if r.Keep <= 0 {
			continue
		}
		for i := 0; i < p.cfg.MaxBatches; i++ {
			n, err := r.Purge(ctx, r.Keep, p.cfg.Batch)
			out[r.Name] += n
			p.purged.WithLabelValues(r.Name).Add(float64(n))
			if err != nil {
				errs = append(errs, fmt.Errorf("retention %s: %w", r.Name, err))
				break
			}
			if n < int64(p.cfg.Batch) {
				break
			}
			select {
			case <-ctx.Done():
				return out, ctx.Err()
			case <-time.After(p.cfg.Pause):
			}
		}
		if r.OldestAge != nil {
			age, err := r.OldestAge(ctx)
			if err != nil {
				errs = append(errs, fmt.Errorf("retention %s: %w", r.Name, err))
				continue
			}
			p.oldest.WithLabelValues(r.Name).Set(age.Seconds())
		}
		if out[r.Name] > 0 {
			p.cfg.Logger.Info("retention purged rows", "rule", r.Name, "rows", out[r.Name], "keep", r.Keep)
		}
	}
	return out, errors.Join(errs...)
}

// Run runs the rules every interval until ctx ends; a failing cycle is logged and retried at
// the next one (the database may be away: that is no reason to stop).
func (p *Purger) Run(ctx context.Context, every time.Duration) error {
	return periodic.Run(ctx, every, func(ctx context.Context) error {
		_, err := p.Once(ctx)
		return err
	}, func(err error) { p.cfg.Logger.Warn("retention", "err", err) })
}

// Package backfill re-emits every order's current state through the outbox, so a consumer or a
// webhook endpoint added after the topic's retention deleted old records can still build the
// whole picture ("rebuild from scratch", docs/TOOLS.md).
//
// Going through the outbox, not around it, means the re-emitted events take the normal path:
// capture publishes them in commit order after everything already in the topic, and each
// consumer absorbs them with the keys it already has. The projector applies an order version
// once (order_summary.version only grows), so an up-to-date read model ignores them and an empty
// one is rebuilt. Each event's id is orderflow.StateEventID(order, version, type), the same on
// every re-emission, so the deliverer's (event id, endpoint) key and a partner's webhook-id
// dedupe take a fact once however often it is backfilled.
package backfill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"orderflow"
	"orderflow/internal/tracing"
)

// Defaults for Config.
const (
	DefaultBatchSize = 500
	DefaultRate      = 1000
)

// store is what a backfill needs of the database (postgres.DB is one).
type store interface {
	CountOrdersAfter(ctx context.Context, afterID string) (int64, error)
	EmitOrderStates(ctx context.Context, afterID string, limit int) (orderflow.StatePage, error)
}

// Config tunes a backfill.
type Config struct {
	// BatchSize is the number of orders read and re-emitted per transaction.
	BatchSize int
	// Rate caps the orders re-emitted per second, so capture, Kafka and the consumers absorb
	// the extra events beside live traffic; 0 is no limit.
	Rate float64
	// After resumes a backfill after this order id (the last id a previous run reported).
	After string
	// Progress, if set, is called after every batch.
	Progress func(Progress)
	Logger   *slog.Logger
	// sleep waits d or until ctx ends; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error
	now   func() time.Time
}

// Progress is where a backfill stands.
type Progress struct {
	// Total is the number of orders after Config.After when the run started; orders created
	// during the run are re-emitted too when their ids sort later, so Scanned may pass it.
	Total int64
	// Scanned counts the orders read, Emitted the events written, Existing the states that
	// were already in the outbox from an earlier run.
	Scanned, Emitted, Existing int64
	// LastOrderID is the last order re-emitted: pass it as Config.After to resume.
	LastOrderID string
	Elapsed     time.Duration
}

// Backfill re-emits order states.
type Backfill struct {
	cfg   Config
	store store
}

// New returns a backfill of the orders in s.
func New(cfg Config, s store) (*Backfill, error) {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.Rate < 0 {
		return nil, errors.New("backfill: rate must not be negative")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.sleep == nil {
		cfg.sleep = sleepCtx
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	return &Backfill{cfg: cfg, store: s}, nil
}

// Run re-emits every order after Config.After, batch by batch, and returns where it stopped.
// When ctx ends, the batches already committed stay emitted and the returned progress says
// where to resume.
func (b *Backfill) Run(ctx context.Context) (Progress, error) {
	start := b.cfg.now()
	p := Progress{LastOrderID: b.cfg.After}
	total, err := b.store.CountOrdersAfter(ctx, b.cfg.After)
	if err != nil {
		return p, fmt.Errorf("backfill: %w", err)
	}
	p.Total = total
	for {
		page, err := b.emitPage(ctx, p.LastOrderID)
		if err != nil {
			return p, fmt.Errorf("backfill after order %q: %w", p.LastOrderID, err)
		}
		if page.Scanned == 0 {
			break
		}
		p.Scanned += int64(page.Scanned)
		p.Emitted += int64(page.Emitted)
		p.Existing += int64(page.Scanned - page.Emitted)
		p.LastOrderID = page.LastOrderID
		p.Elapsed = b.cfg.now().Sub(start)
		if b.cfg.Progress != nil {
			b.cfg.Progress(p)
		}
		b.cfg.Logger.Debug("backfill batch", "scanned", p.Scanned, "emitted", p.Emitted, "last_order_id", p.LastOrderID)
		if page.Scanned < b.cfg.BatchSize {
			break
		}
		if err := b.cfg.sleep(ctx, b.pause(start, p.Scanned)); err != nil {
			return p, err
		}
	}
	p.Elapsed = b.cfg.now().Sub(start)
	return p, nil
}

// pause is how long to wait before the next batch so that, on average since start, no more
// than Rate orders per second were re-emitted. Pacing against the start rather than per batch
// keeps the average right when batches take a while.
func (b *Backfill) pause(start time.Time, scanned int64) time.Duration {
	if b.cfg.Rate == 0 {
		return 0
	}
	due := start.Add(time.Duration(float64(scanned) / b.cfg.Rate * float64(time.Second)))
	return max(due.Sub(b.cfg.now()), 0)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ProgressPrinter prints one line per batch to w, for people at a terminal.
func ProgressPrinter(w io.Writer) func(Progress) {
	return func(p Progress) {
		rate := 0.0
		if s := p.Elapsed.Seconds(); s > 0 {
			rate = float64(p.Scanned) / s
		}
		fmt.Fprintf(w, "backfill: %d/%d orders (%d%%), %d events written, %d already in the outbox, %.0f orders/s, last order %s\n",
			p.Scanned, p.Total, 100*p.Scanned/max(p.Total, 1), p.Emitted, p.Existing, rate, p.LastOrderID)
	}
}

var tracer = tracing.Tracer("orderflow/backfill")

// emitPage writes one page of states in a trace of its own: its events carry the page's span
// as their traceparent, so what they cause downstream can be found from the backfill run.
func (b *Backfill) emitPage(ctx context.Context, after string) (orderflow.StatePage, error) {
	ctx, span := tracing.Start(ctx, tracer, "backfill page", tracing.TraceParent{},
		trace.WithAttributes(attribute.String("orderflow.after_order_id", after)))
	defer span.End()
	page, err := b.store.EmitOrderStates(ctx, after, b.cfg.BatchSize)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.SetAttributes(attribute.Int("orderflow.emitted", page.Emitted))
	return page, err
}

// Package reconcile finds drift between the source of truth (orders), the read model
// (order_summary) and webhook deliveries, reports it, and repairs what can be repaired by
// re-publishing the order through the outbox, so every consumer converges the normal way.
package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"orderflow"
	"orderflow/internal/backoff"
)

// Kind names a kind of drift; it is the label of orderflow_reconcile_drift.
type Kind string

const (
	// KindMissingSummary: an order changed longer ago than the freshness SLA has no summary.
	KindMissingSummary Kind = "missing_summary"
	// KindStaleSummary: the summary's status or version differs from the order's, and the
	// order changed longer ago than the freshness SLA.
	KindStaleSummary Kind = "stale_summary"
	// KindOpenPastSLA: an order still pending longer than the fulfillment SLA after creation.
	// Reported only: the fix belongs to whoever fulfills or cancels it.
	KindOpenPastSLA Kind = "open_past_fulfillment_sla"
	// KindUndelivered: an event older than the delivery SLA that a subscribed endpoint has
	// neither received nor dead-lettered.
	KindUndelivered Kind = "undelivered_event"
)

// Kinds lists every kind, in report order.
var Kinds = []Kind{KindMissingSummary, KindStaleSummary, KindOpenPastSLA, KindUndelivered}

// repairable reports whether --fix re-publishes the order for this kind of drift.
func (k Kind) repairable() bool { return k != KindOpenPastSLA }

// Drift is one finding, naming the order it is about.
type Drift struct {
	Kind           Kind             `json:"kind"`
	OrderID        string           `json:"order_id"`
	Status         orderflow.Status `json:"status,omitempty"`
	Version        int              `json:"version,omitempty"`
	SummaryStatus  orderflow.Status `json:"summary_status,omitempty"`
	SummaryVersion int              `json:"summary_version,omitempty"`
	// Since is when the drift became due: the order's last change, its creation (open past
	// SLA) or the event's time (undelivered).
	Since      time.Time `json:"since"`
	EventID    string    `json:"event_id,omitempty"`
	EndpointID string    `json:"endpoint_id,omitempty"`
	Detail     string    `json:"detail,omitempty"`
	// Repair says what --fix did: "published" (a new repair event), "in_flight" (a repair of
	// this order version was published less than the cooldown ago), "skipped" (the run
	// reached MaxRepairs) or "failed".
	Repair        string `json:"repair,omitempty"`
	RepairEventID string `json:"repair_event_id,omitempty"`
}

// Report is one reconciliation run.
type Report struct {
	At            time.Time    `json:"at"`
	OrdersScanned int64        `json:"orders_scanned"`
	Deliveries    bool         `json:"delivery_checks"`
	Counts        map[Kind]int `json:"counts"`
	Drift         []Drift      `json:"drift"`
	// Truncated is true when more drift was found than the report lists (Counts are
	// complete).
	Truncated bool `json:"truncated,omitempty"`
}

// Config tunes a run. Zero values take the defaults.
type Config struct {
	// FreshnessSLA: how long after an order change its summary may still lag.
	FreshnessSLA time.Duration
	// FulfillmentSLA: how long an order may stay pending.
	FulfillmentSLA time.Duration
	// DeliverySLA: how long an event may be neither delivered nor dead-lettered. Set it above
	// the deliverer's retry age bound, or retries in progress are reported.
	DeliverySLA time.Duration
	// Lookback bounds the delivery check to events this recent (and still in the outbox).
	Lookback time.Duration
	// Fix re-publishes the orders with repairable drift.
	Fix bool
	// RepairCooldown: a repair of the same order version younger than this is in flight and
	// not repeated.
	RepairCooldown time.Duration
	// MaxRepairs bounds the events one run writes. Mass drift (a projector that never ran, a
	// lost topic) is better repaired by replaying the topic than by flooding the outbox.
	MaxRepairs int
	// PageSize is the number of orders read per query; MaxReport bounds the findings listed.
	PageSize  int
	MaxReport int
	// Progress, if set, is called after each page of a long scan.
	Progress func(scanned, total int64)
	Logger   *slog.Logger
}

// Defaults of Config.
const (
	DefaultFreshnessSLA   = 5 * time.Second
	DefaultFulfillmentSLA = 24 * time.Hour
	DefaultDeliverySLA    = time.Hour
	DefaultLookback       = 7 * 24 * time.Hour
	DefaultRepairCooldown = 10 * time.Minute
)

func (c *Config) defaults() {
	if c.FreshnessSLA <= 0 {
		c.FreshnessSLA = DefaultFreshnessSLA
	}
	if c.FulfillmentSLA <= 0 {
		c.FulfillmentSLA = DefaultFulfillmentSLA
	}
	if c.DeliverySLA <= 0 {
		c.DeliverySLA = DefaultDeliverySLA
	}
	if c.Lookback <= 0 {
		c.Lookback = DefaultLookback
	}
	if c.RepairCooldown <= 0 {
		c.RepairCooldown = DefaultRepairCooldown
	}
	if c.MaxRepairs <= 0 {
		c.MaxRepairs = 1000
	}
	if c.PageSize <= 0 {
		c.PageSize = 5000
	}
	if c.MaxReport <= 0 {
		c.MaxReport = 1000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// store is what reconcile reads and writes.
type store interface {
	ReconcileClock(ctx context.Context) (time.Time, int64, error)
	OrderStates(ctx context.Context, afterID string, limit int) ([]orderflow.OrderState, error)
	HasDeliveryTables(ctx context.Context) (bool, error)
	UndeliveredEvents(ctx context.Context, from, to time.Time, limit int) ([]orderflow.UndeliveredEvent, error)
	RepublishOrder(ctx context.Context, orderID, kind string, cooldown time.Duration) (orderflow.Repair, error)
}

// Reconciler runs reconciliations.
type Reconciler struct {
	cfg     Config
	store   store
	metrics *metrics
	lastOK  atomic.Bool
}

// New returns a reconciler on store.
func New(cfg Config, st store) *Reconciler {
	cfg.defaults()
	r := &Reconciler{cfg: cfg, store: st}
	r.metrics = newMetrics(r.lastOK.Load)
	return r
}

// classify returns the drift of one order at time now. It is the whole definition of order
// drift, kept free of I/O so it can be tested case by case.
func classify(o orderflow.OrderState, now time.Time, cfg Config) []Drift {
	var out []Drift
	base := Drift{OrderID: o.OrderID, Status: o.Status, Version: o.Version,
		SummaryStatus: o.SummaryStatus, SummaryVersion: o.SummaryVersion}
	// A change younger than the freshness SLA may legitimately still be on its way.
	if now.Sub(o.UpdatedAt) > cfg.FreshnessSLA {
		switch {
		case !o.HasSummary:
			d := base
			d.Kind, d.Since, d.Detail = KindMissingSummary, o.UpdatedAt, "no summary"
			out = append(out, d)
		case o.SummaryVersion != o.Version || o.SummaryStatus != o.Status:
			d := base
			d.Kind, d.Since = KindStaleSummary, o.UpdatedAt
			d.Detail = fmt.Sprintf("summary %s v%d, order %s v%d", o.SummaryStatus, o.SummaryVersion, o.Status, o.Version)
			out = append(out, d)
		}
	}
	if o.Status == orderflow.StatusPending && now.Sub(o.CreatedAt) > cfg.FulfillmentSLA {
		d := base
		d.Kind, d.Since = KindOpenPastSLA, o.CreatedAt
		d.Detail = fmt.Sprintf("pending for %s", now.Sub(o.CreatedAt).Round(time.Second))
		out = append(out, d)
	}
	return out
}

// Run scans once, repairs if configured, updates the drift gauges and returns the report.
func (r *Reconciler) Run(ctx context.Context) (*Report, error) {
	started := time.Now()
	now, total, err := r.store.ReconcileClock(ctx)
	if err != nil {
		return nil, err
	}
	rep := &Report{At: now, Counts: map[Kind]int{}, Drift: []Drift{}}
	for _, k := range Kinds {
		rep.Counts[k] = 0
	}
	add := func(d Drift) {
		rep.Counts[d.Kind]++
		if len(rep.Drift) >= r.cfg.MaxReport {
			rep.Truncated = true
			return
		}
		rep.Drift = append(rep.Drift, d)
	}
	// repaired remembers the orders this run already re-published: one event covers every
	// kind of drift of one order.
	repaired := map[string]Drift{}
	published := 0
	fix := func(d *Drift) {
		if !r.cfg.Fix || !d.Kind.repairable() {
			return
		}
		if prev, ok := repaired[d.OrderID]; ok {
			d.Repair, d.RepairEventID = prev.Repair, prev.RepairEventID
			return
		}
		if published >= r.cfg.MaxRepairs {
			d.Repair = "skipped"
			r.metrics.repairs.WithLabelValues("skipped").Inc()
			return
		}
		res, err := r.store.RepublishOrder(ctx, d.OrderID, string(d.Kind), r.cfg.RepairCooldown)
		switch {
		case err != nil:
			d.Repair = "failed"
			d.Detail += "; repair failed: " + err.Error()
			r.metrics.repairs.WithLabelValues("failed").Inc()
			r.cfg.Logger.Warn("repair failed", "order_id", d.OrderID, "kind", d.Kind, "err", err)
		case res.Published:
			published++
			d.Repair, d.RepairEventID = "published", res.EventID
			r.metrics.repairs.WithLabelValues("published").Inc()
		default:
			d.Repair, d.RepairEventID = "in_flight", res.EventID
			r.metrics.repairs.WithLabelValues("in_flight").Inc()
		}
		repaired[d.OrderID] = *d
	}

	after := ""
	for {
		page, err := r.store.OrderStates(ctx, after, r.cfg.PageSize)
		if err != nil {
			return nil, err
		}
		for _, o := range page {
			for _, d := range classify(o, now, r.cfg) {
				fix(&d)
				add(d)
			}
		}
		rep.OrdersScanned += int64(len(page))
		if r.cfg.Progress != nil && total > int64(r.cfg.PageSize) {
			r.cfg.Progress(rep.OrdersScanned, total)
		}
		if len(page) < r.cfg.PageSize {
			break
		}
		after = page[len(page)-1].OrderID
	}

	rep.Deliveries, err = r.store.HasDeliveryTables(ctx)
	if err != nil {
		return nil, err
	}
	if rep.Deliveries {
		evs, err := r.store.UndeliveredEvents(ctx, now.Add(-r.cfg.Lookback), now.Add(-r.cfg.DeliverySLA), 100_000)
		if err != nil {
			return nil, err
		}
		for _, u := range evs {
			d := Drift{Kind: KindUndelivered, OrderID: u.OrderID, Since: u.At, EventID: u.EventID, EndpointID: u.EndpointID}
			d.Detail = u.EventType + ": no delivery"
			if u.Pending {
				d.Detail = u.EventType + ": delivery still pending"
			}
			fix(&d)
			add(d)
		}
	}
	for _, k := range Kinds {
		r.metrics.drift.WithLabelValues(string(k)).Set(float64(rep.Counts[k]))
	}
	r.metrics.runs.Inc()
	r.metrics.lastRun.Set(float64(now.Unix()))
	r.metrics.duration.Observe(time.Since(started).Seconds())
	return rep, nil
}

// RunEvery reconciles every interval until ctx is cancelled; each report goes to emit. A failed
// run (the database away) is logged and counted, /readyz answers 503, and the run is retried
// with a capped backoff (at most the interval) until one succeeds: the daemon never exits
// because its database is away.
func (r *Reconciler) RunEvery(ctx context.Context, every time.Duration, emit func(*Report)) error {
	wait := backoff.New(min(time.Second, every), every)
	for {
		rep, err := r.Run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		pause := every
		if err != nil {
			r.lastOK.Store(false)
			r.metrics.failures.Inc()
			pause = wait.Next()
			r.cfg.Logger.Warn("reconciliation failed; retrying", "err", err, "failures", wait.Failures(), "backoff", pause)
		} else {
			wait.Reset()
			r.lastOK.Store(true)
			emit(rep)
		}
		if !backoff.Sleep(ctx, pause) {
			return nil
		}
	}
}

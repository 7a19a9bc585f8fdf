// Package reconcile finds drift between the source of truth (orders), the read model
// (order_summary) and webhook deliveries, reports it, and repairs what can be repaired by
// restating the drifted fact through the outbox, so every consumer converges the normal way.
//
// A repair restates one fact — order X reached version V with an event of type T — under an
// id derived from the fact (orderflow.RepairEventID), at most once ever, so every receiver's
// own dedupe takes it once: the read model applies a version once, the deliverer sends one
// event per fact and endpoint, the partner acts once per fact. See docs/RECONCILE.md.
package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"orderflow"
	"orderflow/internal/backoff"
	"orderflow/internal/retention"
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
	// KindUndelivered: an event older than the delivery SLA of which a subscribed endpoint has
	// no delivery at all (the deliverer's intake never saw it).
	KindUndelivered Kind = "undelivered_event"
	// KindPastHorizon: a delivery still pending although its cycle began longer ago than the
	// deliverer's retry horizon: the deliverer is not settling it. Reported only: a repair
	// would be one more delivery for the same stuck deliverer.
	KindPastHorizon Kind = "delivery_past_horizon"
)

// Kinds lists every kind, in report order.
var Kinds = []Kind{KindMissingSummary, KindStaleSummary, KindOpenPastSLA, KindUndelivered, KindPastHorizon}

// repairable reports whether --fix restates a fact for this kind of drift.
func (k Kind) repairable() bool {
	return k == KindMissingSummary || k == KindStaleSummary || k == KindUndelivered
}

// Repair outcomes: the Repair field of a finding and the label of
// orderflow_reconcile_repairs_total.
const (
	// RepairPublished: this run wrote the repair event.
	RepairPublished = "published"
	// RepairInFlight: the fact's repair was published less than the repair grace ago; the
	// consumers may not have applied it yet.
	RepairInFlight = "in_flight"
	// RepairNotCleared: the fact's repair was published longer than the grace ago and the
	// finding is still there. Reported (logged and counted) once; never repaired again.
	RepairNotCleared = "not_cleared"
	// RepairRefused: PostgreSQL refused the repair for its values; the reason is in the
	// detail. Counted once; never tried again.
	RepairRefused = "refused"
	// RepairWaiting: the read model has not yet moved past the order's change (the projector
	// is behind or stopped), so the change may still be on its way: nothing is published.
	RepairWaiting = "waiting"
	// RepairSkipped: the run reached MaxRepairs.
	RepairSkipped = "skipped"
	// RepairFailed: the repair could not be written (the database away); the next run tries
	// again.
	RepairFailed = "failed"
)

// Drift is one finding, naming the order it is about.
type Drift struct {
	Kind           Kind             `json:"kind"`
	OrderID        string           `json:"order_id"`
	Status         orderflow.Status `json:"status,omitempty"`
	Version        int              `json:"version,omitempty"`
	SummaryStatus  orderflow.Status `json:"summary_status,omitempty"`
	SummaryVersion int              `json:"summary_version,omitempty"`
	// Since is when the drift became due: the order's last change, its creation (open past
	// SLA), the event's time (undelivered) or the delivery cycle's start (past the horizon).
	Since      time.Time `json:"since"`
	EventID    string    `json:"event_id,omitempty"`
	EndpointID string    `json:"endpoint_id,omitempty"`
	Detail     string    `json:"detail,omitempty"`
	// Repair says what became of the repair: one of the Repair* outcomes, or empty for a
	// finding no repair applies to (or without --fix and no earlier repair).
	Repair        string `json:"repair,omitempty"`
	RepairEventID string `json:"repair_event_id,omitempty"`
}

// Report is one reconciliation run.
type Report struct {
	At time.Time `json:"at"`
	// Mode is "full" (every order, every event of the lookback) or "incremental" (what changed
	// since the last pass, and the findings still open).
	Mode          string       `json:"mode"`
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
	// FreshnessSLA: how long after an order change its summary may still lag before it is
	// reported. A repair waits, in addition, until the read model has moved past the change.
	FreshnessSLA time.Duration
	// FulfillmentSLA: how long an order may stay pending.
	FulfillmentSLA time.Duration
	// DeliverySLA: how long after an event a subscribed endpoint may still have no delivery of
	// it at all (the intake's lag).
	DeliverySLA time.Duration
	// DeliveryHorizon: how long a delivery may stay pending after its cycle began: the
	// deliverer's retry horizon (its -max-age) plus the last attempt's time. A delivery within
	// it is being retried and is never "undelivered".
	DeliveryHorizon time.Duration
	// Lookback bounds the full pass's delivery check to events this recent (and still in the
	// outbox). Keep it below the deliverer's -retain-succeeded: an event older than the
	// deliveries kept would look undelivered.
	Lookback time.Duration
	// FullScanEvery is how often the daemon (RunEvery) makes a full pass over every order and
	// the lookback's events; in between, each pass reads only what changed since the last one
	// and rechecks the findings still open. Run (the one-shot command) always makes a full
	// pass.
	FullScanEvery time.Duration
	// RetainRepairs is how long reconcile_repairs rows are kept by the daemon (docs/RETENTION.md),
	// zero for DefaultRetainRepairs, negative for ever; PurgeEvery and PurgeBatch pace the purge.
	RetainRepairs time.Duration
	PurgeEvery    time.Duration
	PurgeBatch    int
	// Fix restates the facts of repairable drift.
	Fix bool
	// RepairGrace: how long a published repair has to clear its finding before the finding
	// is reported as not cleared.
	RepairGrace time.Duration
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
	// DefaultDeliveryHorizon is the deliverer's default -max-age (24 h) plus an hour for the
	// last attempt, its lease and clock skew.
	DefaultDeliveryHorizon = orderflow.DefaultDeliveryMaxAge + time.Hour
	// DefaultLookback is two days: well past the deliverer's horizon (every event older is
	// settled or reported as past it), and below the deliverer's default -retain-succeeded of
	// three days.
	DefaultLookback      = 48 * time.Hour
	DefaultRepairGrace   = 10 * time.Minute
	DefaultFullScanEvery = 24 * time.Hour
	// DefaultRetainRepairs keeps a repair's row (the fact's "published once, ever") 32 days:
	// longer than the partner keeps receipts (16 days) and the deliverer keeps the deliveries
	// that dedupe a fact, so a fact whose row is gone was long settled by every receiver.
	DefaultRetainRepairs = 32 * 24 * time.Hour
)

// overlap is how far each incremental pass reaches back before the previous one's horizon:
// a change is stamped before its transaction commits, and the clocks of the API and the
// database may differ a little, so a change may become visible after a pass that should have
// seen it by its time. A minute covers both.
const overlap = time.Minute

// maxFindings bounds the findings one run keeps in memory to decide their repairs; beyond it
// they are counted only.
const maxFindings = 100_000

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
	if c.DeliveryHorizon <= 0 {
		c.DeliveryHorizon = DefaultDeliveryHorizon
	}
	if c.Lookback <= 0 {
		c.Lookback = DefaultLookback
	}
	if c.RepairGrace <= 0 {
		c.RepairGrace = DefaultRepairGrace
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
	if c.FullScanEvery <= 0 {
		c.FullScanEvery = DefaultFullScanEvery
	}
	if c.RetainRepairs == 0 {
		c.RetainRepairs = DefaultRetainRepairs
	}
	if c.PurgeEvery <= 0 {
		c.PurgeEvery = time.Minute
	}
}

// store is what reconcile reads and writes.
type store interface {
	ReconcileClock(ctx context.Context) (time.Time, int64, error)
	DatabaseNow(ctx context.Context) (time.Time, error)
	OrderStates(ctx context.Context, afterID string, limit int) ([]orderflow.OrderState, error)
	OrderStatesChangedSince(ctx context.Context, afterAt time.Time, afterID string, limit int) ([]orderflow.OrderState, error)
	OrderStatesByID(ctx context.Context, ids []string) ([]orderflow.OrderState, error)
	OpenOrdersCreatedBefore(ctx context.Context, before time.Time, limit int) ([]orderflow.OrderState, error)
	HasDeliveryTables(ctx context.Context) (bool, error)
	UndeliveredEvents(ctx context.Context, from, to time.Time, limit int) ([]orderflow.UndeliveredEvent, error)
	UndeliveredEventsByID(ctx context.Context, ids []string) ([]orderflow.UndeliveredEvent, error)
	StuckDeliveries(ctx context.Context, horizon time.Time, limit int) ([]orderflow.UndeliveredEvent, error)
	RepairOrder(ctx context.Context, orderID, kind string) (orderflow.Repair, error)
	RepairEvent(ctx context.Context, eventID, kind string) (orderflow.Repair, error)
	MarkRepairReported(ctx context.Context, orderID string, version int) (bool, error)
	PurgeRepairs(ctx context.Context, keep time.Duration, limit int) (int64, error)
	OldestRepair(ctx context.Context) (time.Duration, error)
}

// Reconciler runs reconciliations.
type Reconciler struct {
	cfg     Config
	store   store
	metrics *metrics
	purger  *retention.Purger
	lastOK  atomic.Bool
	// inc is where the daemon's incremental passes stand; only RunEvery's goroutine uses it.
	inc incremental
}

// incremental is what the next incremental pass needs: where its windows start and the
// findings still open, which it rechecks by id wherever they are in time.
type incremental struct {
	lastFull    time.Time
	ordersSince time.Time
	eventsSince time.Time
	openOrders  []string
	openEvents  []string
}

// New returns a reconciler on store.
func New(cfg Config, st store) *Reconciler {
	cfg.defaults()
	r := &Reconciler{cfg: cfg, store: st}
	r.metrics = newMetrics(r.lastOK.Load)
	// The registry is the reconciler's own: registering can only fail on a duplicate name,
	// which would be a bug here.
	r.purger, _ = retention.New("orderflow_reconcile", r.metrics.registry, retention.Config{Batch: cfg.PurgeBatch, Logger: cfg.Logger},
		retention.Rule{Name: "reconcile_repairs", Keep: cfg.RetainRepairs, Purge: st.PurgeRepairs, OldestAge: st.OldestRepair})
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

// current reports whether o's summary is at o's version: the read model has applied o's last
// change.
func current(o orderflow.OrderState) bool {
	return o.HasSummary && o.SummaryVersion == o.Version && o.SummaryStatus == o.Status
}

// finding is a drift with what deciding its repair needs.
type finding struct {
	Drift
	factVersion int
	repair      *orderflow.RepairState
}

// run is the state of one reconciliation.
type run struct {
	r   *Reconciler
	rep *Report
	now time.Time
	// progress is the newest change the read model is known to have applied: the latest
	// update of a scanned order whose summary is current. A change older than progress by
	// more than the freshness SLA was passed over by the projector, not merely not reached.
	progress  time.Time
	findings  []finding
	repaired  map[string]Drift // fact ("order/version") -> the finding that repaired it this run
	published int
	seen      map[string]bool // orders and (event, endpoint) pairs classified, each once
	started   time.Time
}

func (r *Reconciler) newRun(now time.Time, mode string) *run {
	x := &run{r: r, now: now, rep: &Report{At: now, Mode: mode, Counts: map[Kind]int{}, Drift: []Drift{}},
		repaired: map[string]Drift{}, seen: map[string]bool{}, started: time.Now()}
	for _, k := range Kinds {
		x.rep.Counts[k] = 0
	}
	return x
}

func (x *run) add(f finding) {
	x.rep.Counts[f.Kind]++
	if len(x.findings) >= maxFindings {
		x.rep.Truncated = true
		return
	}
	x.findings = append(x.findings, f)
}

// Run makes a full pass — every order, every event of the lookback — repairs if configured,
// updates the drift gauges and returns the report.
func (r *Reconciler) Run(ctx context.Context) (*Report, error) {
	now, total, err := r.store.ReconcileClock(ctx)
	if err != nil {
		return nil, err
	}
	x := r.newRun(now, "full")
	after := ""
	for {
		page, err := r.store.OrderStates(ctx, after, r.cfg.PageSize)
		if err != nil {
			return nil, err
		}
		x.orders(page)
		if r.cfg.Progress != nil && total > int64(r.cfg.PageSize) && len(page) > 0 {
			r.cfg.Progress(x.rep.OrdersScanned, total)
		}
		if len(page) < r.cfg.PageSize {
			break
		}
		after = page[len(page)-1].OrderID
	}
	if err := x.checkDeliveries(ctx, func() ([]orderflow.UndeliveredEvent, error) {
		return r.store.UndeliveredEvents(ctx, now.Add(-r.cfg.Lookback), now.Add(-r.cfg.DeliverySLA), maxFindings)
	}); err != nil {
		return nil, err
	}
	rep := x.finish(ctx)
	r.inc = incremental{lastFull: now}
	r.advance(x)
	return rep, nil
}

// RunIncremental makes an incremental pass: the orders changed since the last pass (through
// orders_updated_idx), the events written since (through the outbox's time index), the open
// orders past the fulfillment SLA (through the pending orders' index), and a recheck of every
// finding still open. Its cost follows the changes since the last pass, not the size of the
// tables. Without an earlier pass it makes a full one.
func (r *Reconciler) RunIncremental(ctx context.Context) (*Report, error) {
	if r.inc.lastFull.IsZero() {
		return r.Run(ctx)
	}
	now, err := r.store.DatabaseNow(ctx)
	if err != nil {
		return nil, err
	}
	x := r.newRun(now, "incremental")
	afterAt, afterID := r.inc.ordersSince, ""
	for {
		page, err := r.store.OrderStatesChangedSince(ctx, afterAt, afterID, r.cfg.PageSize)
		if err != nil {
			return nil, err
		}
		x.orders(page)
		if len(page) < r.cfg.PageSize {
			break
		}
		afterAt, afterID = page[len(page)-1].UpdatedAt, page[len(page)-1].OrderID
	}
	open, err := r.store.OrderStatesByID(ctx, r.inc.openOrders)
	if err != nil {
		return nil, err
	}
	x.orders(open)
	late, err := r.store.OpenOrdersCreatedBefore(ctx, now.Add(-r.cfg.FulfillmentSLA), maxFindings)
	if err != nil {
		return nil, err
	}
	x.orders(late)
	if err := x.checkDeliveries(ctx, func() ([]orderflow.UndeliveredEvent, error) {
		evs, err := r.store.UndeliveredEvents(ctx, r.inc.eventsSince, now.Add(-r.cfg.DeliverySLA), maxFindings)
		if err != nil {
			return nil, err
		}
		reopened, err := r.store.UndeliveredEventsByID(ctx, r.inc.openEvents)
		return append(evs, reopened...), err
	}); err != nil {
		return nil, err
	}
	rep := x.finish(ctx)
	r.advance(x)
	return rep, nil
}

// advance moves the incremental windows to this pass and keeps its open findings.
func (r *Reconciler) advance(x *run) {
	r.inc.ordersSince = x.now.Add(-r.cfg.FreshnessSLA - overlap)
	r.inc.eventsSince = x.now.Add(-r.cfg.DeliverySLA - overlap)
	r.inc.openOrders, r.inc.openEvents = nil, nil
	for _, f := range x.findings {
		switch f.Kind {
		case KindMissingSummary, KindStaleSummary:
			r.inc.openOrders = append(r.inc.openOrders, f.OrderID)
		case KindUndelivered:
			r.inc.openEvents = append(r.inc.openEvents, f.EventID)
		}
	}
}

// checkDeliveries adds the delivery findings: events read by undelivered, and deliveries past
// the horizon.
func (x *run) checkDeliveries(ctx context.Context, undelivered func() ([]orderflow.UndeliveredEvent, error)) error {
	var err error
	x.rep.Deliveries, err = x.r.store.HasDeliveryTables(ctx)
	if err != nil || !x.rep.Deliveries {
		return err
	}
	evs, err := undelivered()
	if err != nil {
		return err
	}
	x.deliveries(evs)
	stuck, err := x.r.store.StuckDeliveries(ctx, x.now.Add(-x.r.cfg.DeliveryHorizon), maxFindings)
	if err != nil {
		return err
	}
	x.deliveries(stuck)
	return nil
}

// finish settles every finding's repair, fills the report and the gauges.
func (x *run) finish(ctx context.Context) *Report {
	r := x.r
	for i := range x.findings {
		x.settle(ctx, &x.findings[i])
		if len(x.rep.Drift) < r.cfg.MaxReport {
			x.rep.Drift = append(x.rep.Drift, x.findings[i].Drift)
		} else {
			x.rep.Truncated = true
		}
	}
	for _, k := range Kinds {
		r.metrics.drift.WithLabelValues(string(k)).Set(float64(x.rep.Counts[k]))
	}
	r.metrics.runs.Inc()
	r.metrics.passes.WithLabelValues(x.rep.Mode).Inc()
	r.metrics.lastRun.Set(float64(x.now.Unix()))
	r.metrics.duration.Observe(time.Since(x.started).Seconds())
	return x.rep
}

// orders classifies a page of orders, each once, and keeps track of the read model's progress.
func (x *run) orders(page []orderflow.OrderState) {
	for _, o := range page {
		if x.seen[o.OrderID] {
			continue
		}
		x.seen[o.OrderID] = true
		x.rep.OrdersScanned++
		if current(o) && o.UpdatedAt.After(x.progress) {
			x.progress = o.UpdatedAt
		}
		for _, d := range classify(o, x.now, x.r.cfg) {
			x.add(finding{Drift: d, factVersion: o.Version, repair: o.Repair})
		}
	}
}

// deliveries turns the delivery check's events into findings.
func (x *run) deliveries(evs []orderflow.UndeliveredEvent) {
	for _, u := range evs {
		key := fmt.Sprintf("%s %s %v", u.EventID, u.EndpointID, u.Stuck)
		if x.seen[key] {
			continue
		}
		x.seen[key] = true
		d := Drift{Kind: KindUndelivered, OrderID: u.OrderID, Version: u.Version, Since: u.At, EventID: u.EventID, EndpointID: u.EndpointID,
			Detail: u.EventType + ": no delivery of this fact to the endpoint"}
		if u.Stuck {
			d.Kind, d.Since = KindPastHorizon, u.CycleStartedAt
			d.Detail = fmt.Sprintf("%s: delivery pending since %s, past the deliverer's horizon (%s)",
				u.EventType, u.CycleStartedAt.Format(time.RFC3339), x.r.cfg.DeliveryHorizon)
		}
		x.add(finding{Drift: d, factVersion: u.Version, repair: u.Repair})
	}
}

// settle decides, and with --fix does, what becomes of one finding's repair.
func (x *run) settle(ctx context.Context, f *finding) {
	cfg := x.r.cfg
	if !f.Kind.repairable() {
		return
	}
	if f.repair != nil {
		x.judge(ctx, f, *f.repair)
		return
	}
	if !cfg.Fix {
		return
	}
	fact := fmt.Sprintf("%s/%d", f.OrderID, f.factVersion)
	if prev, ok := x.repaired[fact]; ok {
		// One event restates a fact for every finding about it.
		f.Repair, f.RepairEventID = prev.Repair, prev.RepairEventID
		return
	}
	summary := f.Kind == KindMissingSummary || f.Kind == KindStaleSummary
	if summary && !x.progress.After(f.Since.Add(cfg.FreshnessSLA)) {
		// The read model has not applied anything newer than this change: the projector is
		// behind or stopped, and the event is most likely still on its way. Restating it now
		// would only add to the queue (a projector stopped for a while would otherwise bring
		// a republish flood).
		f.Repair = RepairWaiting
		f.Detail += "; the read model has not moved past this change yet"
		return
	}
	if x.published >= cfg.MaxRepairs {
		f.Repair = RepairSkipped
		x.r.metrics.repairs.WithLabelValues(RepairSkipped).Inc()
		return
	}
	var (
		res orderflow.Repair
		err error
	)
	if summary {
		res, err = x.r.store.RepairOrder(ctx, f.OrderID, string(f.Kind))
	} else {
		res, err = x.r.store.RepairEvent(ctx, f.EventID, string(f.Kind))
	}
	switch {
	case err != nil:
		f.Repair = RepairFailed
		f.Detail += "; repair failed: " + err.Error()
		x.r.metrics.repairs.WithLabelValues(RepairFailed).Inc()
		cfg.Logger.Warn("repair failed", "order_id", f.OrderID, "kind", f.Kind, "err", err)
		return
	case res.Published:
		x.published++
		f.Repair, f.RepairEventID = RepairPublished, res.EventID
		x.r.metrics.repairs.WithLabelValues(RepairPublished).Inc()
	case res.Refused:
		// Refused by this very call: counted and logged once, here.
		f.Repair, f.RepairEventID = RepairRefused, res.State.EventID
		f.Detail += "; repair refused: " + res.State.Reason
		x.r.metrics.repairs.WithLabelValues(RepairRefused).Inc()
		cfg.Logger.Warn("repair refused by the database; it will not be tried again", "order_id", f.OrderID,
			"version", res.Version, "kind", f.Kind, "reason", res.State.Reason)
	default:
		// Repaired meanwhile by another reconciler.
		x.judge(ctx, f, res.State)
	}
	x.repaired[fmt.Sprintf("%s/%d", f.OrderID, res.Version)] = f.Drift
	x.repaired[fact] = f.Drift
}

// judge reports the state of a fact's earlier repair, and reports a repair that did not clear
// its finding once.
func (x *run) judge(ctx context.Context, f *finding, st orderflow.RepairState) {
	f.RepairEventID = st.EventID
	switch {
	case st.Refused:
		f.Repair = RepairRefused
		f.Detail += "; repair refused: " + st.Reason
	case x.now.Sub(st.PublishedAt) < x.r.cfg.RepairGrace:
		f.Repair = RepairInFlight
		x.r.metrics.repairs.WithLabelValues(RepairInFlight).Inc()
	default:
		f.Repair = RepairNotCleared
		f.Detail += fmt.Sprintf("; repair %s published %s did not clear it: it will not be repeated", st.EventID,
			st.PublishedAt.Format(time.RFC3339))
		if st.Reported {
			return
		}
		marked, err := x.r.store.MarkRepairReported(ctx, f.OrderID, f.factVersion)
		if err != nil {
			x.r.cfg.Logger.Warn("marking a repair reported", "order_id", f.OrderID, "err", err)
			return
		}
		if marked {
			x.r.metrics.repairs.WithLabelValues(RepairNotCleared).Inc()
			x.r.cfg.Logger.Warn("a repair did not clear its finding; it will not be repeated", "order_id", f.OrderID,
				"version", f.factVersion, "kind", f.Kind, "repair_event_id", st.EventID, "published_at", st.PublishedAt)
		}
	}
}

// RunEvery reconciles every interval until ctx is cancelled; each report goes to emit. The
// first pass and then one every FullScanEvery are full, the others incremental. It also runs
// the retention of reconcile_repairs. A failed pass (the database away) is logged and
// counted, /readyz answers 503, and the pass is retried with a capped backoff (at most the
// interval) until one succeeds: the daemon never exits because its database is away.
func (r *Reconciler) RunEvery(ctx context.Context, every time.Duration, emit func(*Report)) error {
	go func() { _ = r.purger.Run(ctx, r.cfg.PurgeEvery) }()
	wait := backoff.New(min(time.Second, every), every)
	for {
		var (
			rep *Report
			err error
		)
		if r.inc.lastFull.IsZero() || time.Since(r.inc.lastFull) >= r.cfg.FullScanEvery {
			rep, err = r.Run(ctx)
		} else {
			rep, err = r.RunIncremental(ctx)
		}
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

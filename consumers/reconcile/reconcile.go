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
	"log/slog"
	"sync/atomic"
	"time"

	"orderflow"
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
	// KindCallbackFailed: the partner gave up on calling the API back for an order (an answer
	// no retry can change, or its retry horizon passed). Reported only: the partner replays it
	// (POST /admin/callbacks/{webhook_id}/replay).
	KindCallbackFailed Kind = "partner_callback_failed"
)

// Kinds lists every kind, in report order.
var Kinds = []Kind{KindMissingSummary, KindStaleSummary, KindOpenPastSLA, KindUndelivered, KindPastHorizon, KindCallbackFailed}

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
	FailedCallbacks(ctx context.Context, limit int) ([]orderflow.FailedCallback, error)
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

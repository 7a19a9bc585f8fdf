package reconcile

import (
	"context"
	"fmt"
	"time"

	"orderflow"
)

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
	failed, err := x.r.store.FailedCallbacks(ctx, maxFindings)
	if err != nil {
		return err
	}
	for _, c := range failed {
		x.add(finding{Drift: Drift{Kind: KindCallbackFailed, OrderID: c.OrderID, Since: c.FailedAt, EventID: c.WebhookID,
			Detail: fmt.Sprintf("%s failed for good after %d attempts: %s; replay it on the partner: POST /admin/callbacks/%s/replay",
				c.Action, c.Attempts, c.Error, c.WebhookID)}})
	}
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

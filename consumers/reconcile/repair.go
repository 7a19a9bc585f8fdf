package reconcile

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"orderflow"
	"orderflow/internal/tracing"
)

var tracer = tracing.Tracer("orderflow/reconcile")

// repair publishes one finding's repair in a trace of its own: the repair event carries the
// span as its traceparent, so its way through capture, the read model and the webhooks is one
// trace that starts at reconcile.
func (x *run) repair(ctx context.Context, f *finding, summary bool) (orderflow.Repair, error) {
	ctx, span := tracing.Start(ctx, tracer, "reconcile repair", tracing.TraceParent{}, trace.WithAttributes(
		attribute.String("orderflow.order_id", f.OrderID), attribute.String("orderflow.finding", string(f.Kind))))
	defer span.End()
	var (
		res orderflow.Repair
		err error
	)
	if summary {
		res, err = x.r.store.RepairOrder(ctx, f.OrderID, string(f.Kind))
	} else {
		res, err = x.r.store.RepairEvent(ctx, f.EventID, string(f.Kind))
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	return res, err
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
	res, err := x.repair(ctx, f, summary)
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

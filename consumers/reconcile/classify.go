package reconcile

import (
	"fmt"
	"time"

	"orderflow"
)

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

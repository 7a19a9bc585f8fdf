package eventtrace

import (
	"strings"
	"testing"
	"time"

	"orderflow"
)

// What the read-model line concludes from the event's version and the row.
func TestReadModelVerdicts(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	row := func(v int, lastEvent string) *orderflow.Summary {
		return &orderflow.Summary{Version: v, Status: orderflow.StatusPending, LastEventID: lastEvent, ProjectedAt: at}
	}
	order := func(s *orderflow.Summary) *orderflow.OrderTrace {
		return &orderflow.OrderTrace{OrderID: "o1", Exists: true, Status: orderflow.StatusFulfilled, Version: 3, Summary: s}
	}
	for _, tc := range []struct {
		name string
		rep  Report
		want string
	}{
		{"unknown order", Report{EventID: "e1"}, "read model  unknown: no stage names the event's order"},
		{"no summary", Report{EventID: "e1", Version: 2, Order: order(nil)}, "read model  no summary of order o1 (orders: version 3 fulfilled)"},
		{"produced by it", Report{EventID: "e1", Version: 2, Order: order(row(2, "E1"))}, "this event produced the row"},
		{"superseded", Report{EventID: "e1", Version: 2, Order: order(row(3, "e9"))}, "applied or superseded (the event carries version 2); the row came from event e9"},
		{"behind", Report{EventID: "e1", Version: 3, Order: order(row(2, "e8"))}, "not applied yet: the event carries version 3"},
		{"gone from orders", Report{EventID: "e1", Order: &orderflow.OrderTrace{OrderID: "o1"}}, "order o1 is not in the orders table"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var b strings.Builder
			if err := WriteText(&b, &tc.rep); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(b.String(), tc.want) {
				t.Errorf("got\n%s\nwant a line with %q", b.String(), tc.want)
			}
		})
	}
}

package reconcile

import (
	"context"
	"fmt"
	"testing"
	"time"

	"orderflow"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	cfg := Config{}
	cfg.defaults()
	old := now.Add(-time.Minute)
	ancient := now.Add(-48 * time.Hour)
	fresh := now.Add(-time.Second)
	cases := []struct {
		name string
		o    orderflow.OrderState
		want []Kind
	}{
		{"in sync", orderflow.OrderState{Status: "pending", Version: 1, CreatedAt: old, UpdatedAt: old,
			HasSummary: true, SummaryStatus: "pending", SummaryVersion: 1}, nil},
		{"missing past the SLA", orderflow.OrderState{Status: "pending", Version: 1, CreatedAt: old, UpdatedAt: old}, []Kind{KindMissingSummary}},
		{"missing within the SLA is not drift yet", orderflow.OrderState{Status: "pending", Version: 1, CreatedAt: fresh, UpdatedAt: fresh}, nil},
		{"older version", orderflow.OrderState{Status: "fulfilled", Version: 2, CreatedAt: old, UpdatedAt: old,
			HasSummary: true, SummaryStatus: "pending", SummaryVersion: 1}, []Kind{KindStaleSummary}},
		{"older version within the SLA", orderflow.OrderState{Status: "fulfilled", Version: 2, CreatedAt: old, UpdatedAt: fresh,
			HasSummary: true, SummaryStatus: "pending", SummaryVersion: 1}, nil},
		{"same version, other status", orderflow.OrderState{Status: "cancelled", Version: 2, CreatedAt: old, UpdatedAt: old,
			HasSummary: true, SummaryStatus: "fulfilled", SummaryVersion: 2}, []Kind{KindStaleSummary}},
		{"pending past the fulfillment SLA", orderflow.OrderState{Status: "pending", Version: 1, CreatedAt: ancient, UpdatedAt: ancient,
			HasSummary: true, SummaryStatus: "pending", SummaryVersion: 1}, []Kind{KindOpenPastSLA}},
		{"fulfilled long ago is fine", orderflow.OrderState{Status: orderflow.StatusFulfilled, Version: 2, CreatedAt: ancient, UpdatedAt: ancient,
			HasSummary: true, SummaryStatus: "fulfilled", SummaryVersion: 2}, nil},
		{"both", orderflow.OrderState{Status: "pending", Version: 1, CreatedAt: ancient, UpdatedAt: ancient}, []Kind{KindMissingSummary, KindOpenPastSLA}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := classify(tc.o, now, cfg)
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want kinds %v", got, tc.want)
			}
			for i, d := range got {
				if d.Kind != tc.want[i] {
					t.Errorf("finding %d: %s, want %s", i, d.Kind, tc.want[i])
				}
			}
		})
	}
}

// fakeStore is a store whose methods are fields, so each test says what it needs.
type fakeStore struct {
	orders      []orderflow.OrderState
	undelivered []orderflow.UndeliveredEvent
	republish   func(orderID string) (orderflow.Repair, error)
	clockErr    error
}

func (f *fakeStore) ReconcileClock(context.Context) (time.Time, int64, error) {
	if f.clockErr != nil {
		return time.Time{}, 0, f.clockErr
	}
	return time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC), int64(len(f.orders)), nil
}

func (f *fakeStore) OrderStates(_ context.Context, after string, limit int) ([]orderflow.OrderState, error) {
	var out []orderflow.OrderState
	for _, o := range f.orders {
		if o.OrderID > after && len(out) < limit {
			out = append(out, o)
		}
	}
	return out, nil
}

func (f *fakeStore) HasDeliveryTables(context.Context) (bool, error) {
	return f.undelivered != nil, nil
}

func (f *fakeStore) UndeliveredEvents(context.Context, time.Time, time.Time, int) ([]orderflow.UndeliveredEvent, error) {
	return f.undelivered, nil
}

func (f *fakeStore) RepublishOrder(_ context.Context, orderID, _ string, _ time.Duration) (orderflow.Repair, error) {
	return f.republish(orderID)
}

func TestFixWritesOneEventPerOrderAndStopsAtMaxRepairs(t *testing.T) {
	t.Parallel()
	old := time.Date(2026, 1, 2, 11, 0, 0, 0, time.UTC)
	st := &fakeStore{}
	for _, id := range []string{"o1", "o2", "o3"} {
		st.orders = append(st.orders, orderflow.OrderState{OrderID: id, Status: "pending", Version: 1, CreatedAt: old, UpdatedAt: old})
	}
	st.undelivered = []orderflow.UndeliveredEvent{{EventID: "e1", EventType: "order.created", OrderID: "o1", At: old, EndpointID: "ep"}}
	calls := map[string]int{}
	st.republish = func(id string) (orderflow.Repair, error) {
		calls[id]++
		return orderflow.Repair{EventID: "r-" + id, Version: 1, Published: true}, nil
	}
	rep, err := New(Config{Fix: true, MaxRepairs: 2, PageSize: 2}, st).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, d := range rep.Drift {
		got[d.OrderID+" "+string(d.Kind)] = d.Repair + " " + d.RepairEventID
	}
	want := map[string]string{
		"o1 missing_summary":   "published r-o1",
		"o1 undelivered_event": "published r-o1", // the same event covers both findings
		"o2 missing_summary":   "published r-o2",
		"o3 missing_summary":   "skipped ",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("repairs %v, want %v", got, want)
	}
	if fmt.Sprint(calls) != "map[o1:1 o2:1]" {
		t.Errorf("republished %v, want o1 and o2 once each", calls)
	}
}

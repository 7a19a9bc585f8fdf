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
	repairOrder func(orderID string) (orderflow.Repair, error)
	repairEvent func(eventID string) (orderflow.Repair, error)
	marked      map[string]int
	clockErr    error
}

var fakeNow = time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)

func (f *fakeStore) ReconcileClock(context.Context) (time.Time, int64, error) {
	if f.clockErr != nil {
		return time.Time{}, 0, f.clockErr
	}
	return fakeNow, int64(len(f.orders)), nil
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
	var out []orderflow.UndeliveredEvent
	for _, u := range f.undelivered {
		if !u.Stuck {
			out = append(out, u)
		}
	}
	return out, nil
}

func (f *fakeStore) UndeliveredEventsByID(context.Context, []string) ([]orderflow.UndeliveredEvent, error) {
	return nil, nil
}

func (f *fakeStore) StuckDeliveries(context.Context, time.Time, int) ([]orderflow.UndeliveredEvent, error) {
	var out []orderflow.UndeliveredEvent
	for _, u := range f.undelivered {
		if u.Stuck {
			out = append(out, u)
		}
	}
	return out, nil
}

func (f *fakeStore) DatabaseNow(context.Context) (time.Time, error) { return fakeNow, f.clockErr }

func (f *fakeStore) OrderStatesChangedSince(_ context.Context, afterAt time.Time, _ string, limit int) ([]orderflow.OrderState, error) {
	var out []orderflow.OrderState
	for _, o := range f.orders {
		if o.UpdatedAt.After(afterAt) && len(out) < limit {
			out = append(out, o)
		}
	}
	return out, nil
}

func (f *fakeStore) OrderStatesByID(_ context.Context, ids []string) ([]orderflow.OrderState, error) {
	var out []orderflow.OrderState
	for _, o := range f.orders {
		for _, id := range ids {
			if o.OrderID == id {
				out = append(out, o)
			}
		}
	}
	return out, nil
}

func (f *fakeStore) OpenOrdersCreatedBefore(context.Context, time.Time, int) ([]orderflow.OrderState, error) {
	return nil, nil
}

func (f *fakeStore) FailedCallbacks(context.Context, int) ([]orderflow.FailedCallback, error) {
	return nil, nil
}

func (f *fakeStore) PurgeRepairs(context.Context, time.Duration, int) (int64, error) { return 0, nil }
func (f *fakeStore) OldestRepair(context.Context) (time.Duration, error)             { return 0, nil }

func (f *fakeStore) RepairOrder(_ context.Context, orderID, _ string) (orderflow.Repair, error) {
	return f.repairOrder(orderID)
}

func (f *fakeStore) RepairEvent(_ context.Context, eventID, _ string) (orderflow.Repair, error) {
	return f.repairEvent(eventID)
}

func (f *fakeStore) MarkRepairReported(_ context.Context, orderID string, version int) (bool, error) {
	if f.marked == nil {
		f.marked = map[string]int{}
	}
	key := fmt.Sprintf("%s/%d", orderID, version)
	f.marked[key]++
	return f.marked[key] == 1, nil
}

// inSync is an order whose summary is current, changed at t: it shows the read model has
// applied changes up to t.
func inSync(id string, t time.Time) orderflow.OrderState {
	return orderflow.OrderState{OrderID: id, Status: "pending", Version: 1, CreatedAt: t, UpdatedAt: t,
		HasSummary: true, SummaryStatus: "pending", SummaryVersion: 1}
}

func missing(id string, t time.Time) orderflow.OrderState {
	return orderflow.OrderState{OrderID: id, Status: "pending", Version: 1, CreatedAt: t, UpdatedAt: t}
}

func TestFixWritesOneEventPerFactAndStopsAtMaxRepairs(t *testing.T) {
	t.Parallel()
	old := fakeNow.Add(-time.Hour)
	st := &fakeStore{orders: []orderflow.OrderState{inSync("o0", fakeNow.Add(-time.Minute))}}
	for _, id := range []string{"o1", "o2", "o3"} {
		st.orders = append(st.orders, missing(id, old))
	}
	st.undelivered = []orderflow.UndeliveredEvent{{EventID: "e1", EventType: "order.created", OrderID: "o1", Version: 1, At: old, EndpointID: "ep"}}
	calls := map[string]int{}
	st.repairOrder = func(id string) (orderflow.Repair, error) {
		calls[id]++
		return orderflow.Repair{EventID: "r-" + id, Version: 1, Published: true}, nil
	}
	st.repairEvent = func(id string) (orderflow.Repair, error) {
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
		"o1 undelivered_event": "published r-o1", // the same fact (o1 v1): one event covers both findings
		"o2 missing_summary":   "published r-o2",
		"o3 missing_summary":   "skipped ",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("repairs %v, want %v", got, want)
	}
	if fmt.Sprint(calls) != "map[o1:1 o2:1]" {
		t.Errorf("repaired %v, want o1 and o2 once each", calls)
	}
}

// Each finding's repair is decided from what reconcile_repairs says about its fact and from how
// far the read model got; only a fact never repaired, whose change the read model has moved
// past, is published.
func TestSettle(t *testing.T) {
	t.Parallel()
	old := fakeNow.Add(-time.Hour)
	published := func(at time.Time) *orderflow.RepairState {
		return &orderflow.RepairState{EventID: "r", PublishedAt: at}
	}
	cases := []struct {
		name     string
		orders   []orderflow.OrderState
		fix      bool
		want     string // the Repair of o1's finding
		repairs  int    // RepairOrder calls
		reported bool   // o1's repair marked reported
	}{
		{"published once the read model moved past the change", []orderflow.OrderState{inSync("o0", fakeNow.Add(-time.Minute)), missing("o1", old)}, true, RepairPublished, 1, false},
		{"waiting while the read model has applied nothing newer", []orderflow.OrderState{inSync("o0", old.Add(-time.Minute)), missing("o1", old)}, true, RepairWaiting, 0, false},
		{"nothing without --fix", []orderflow.OrderState{inSync("o0", fakeNow.Add(-time.Minute)), missing("o1", old)}, false, "", 0, false},
		{"in flight within the grace", []orderflow.OrderState{inSync("o0", fakeNow.Add(-time.Minute)),
			func() orderflow.OrderState {
				o := missing("o1", old)
				o.Repair = published(fakeNow.Add(-time.Minute))
				return o
			}()}, true, RepairInFlight, 0, false},
		{"not cleared after the grace: reported once, never repeated", []orderflow.OrderState{inSync("o0", fakeNow.Add(-time.Minute)),
			func() orderflow.OrderState { o := missing("o1", old); o.Repair = published(old); return o }()}, true, RepairNotCleared, 0, true},
		{"not cleared and already reported", []orderflow.OrderState{inSync("o0", fakeNow.Add(-time.Minute)),
			func() orderflow.OrderState {
				o := missing("o1", old)
				o.Repair = published(old)
				o.Repair.Reported = true
				return o
			}()}, true, RepairNotCleared, 0, false},
		{"refused before: never tried again", []orderflow.OrderState{inSync("o0", fakeNow.Add(-time.Minute)),
			func() orderflow.OrderState {
				o := missing("o1", old)
				o.Repair = &orderflow.RepairState{EventID: "r", PublishedAt: old, Refused: true, Reason: "22021"}
				return o
			}()}, true, RepairRefused, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			calls := 0
			st := &fakeStore{orders: tc.orders, repairOrder: func(string) (orderflow.Repair, error) {
				calls++
				return orderflow.Repair{EventID: "r", Version: 1, Published: true}, nil
			}}
			rep, err := New(Config{Fix: tc.fix}, st).Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var got *Drift
			for i, d := range rep.Drift {
				if d.OrderID == "o1" && d.Kind == KindMissingSummary {
					got = &rep.Drift[i]
				}
			}
			if got == nil || got.Repair != tc.want || calls != tc.repairs {
				t.Fatalf("finding %+v after %d repairs, want repair %q after %d", got, calls, tc.want, tc.repairs)
			}
			if reported := st.marked["o1/1"] == 1; reported != tc.reported {
				t.Errorf("reported %v, want %v", reported, tc.reported)
			}
		})
	}
}

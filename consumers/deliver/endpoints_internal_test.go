package deliver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"orderflow"
)

// fakeSlots answers reservations as configured and remembers deferrals.
type fakeSlots struct {
	wait     time.Duration
	ok       bool
	err      error
	maxWait  time.Duration
	reserved int
	deferred []time.Duration
}

func (f *fakeSlots) ReserveSendSlot(_ context.Context, _ string, maxWait time.Duration) (time.Duration, bool, error) {
	f.reserved++
	f.maxWait = maxWait
	return f.wait, f.ok, f.err
}

func (f *fakeSlots) DeferDelivery(_ context.Context, _ orderflow.Delivery, wait time.Duration) error {
	f.deferred = append(f.deferred, wait)
	return nil
}

func (f *fakeSlots) DisableFailingEndpoints(context.Context, time.Duration) ([]orderflow.Endpoint, error) {
	return nil, nil
}

// TestAwaitSlot: an attempt at a rate-limited endpoint starts at its slot; without a slot
// within the claim's hold it is deferred to when one frees, not attempted; a deliverer that stops
// while waiting gives the claim back.
func TestAwaitSlot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                   string
		limit                  int
		slots                  fakeSlots
		cancel                 bool
		want                   bool
		reserved               int
		deferred               []time.Duration
		released, waitRecorded bool
	}{
		{name: "no limit", limit: 0, want: true},
		{name: "a slot now", limit: 5, slots: fakeSlots{ok: true}, want: true, reserved: 1},
		{name: "a slot soon", limit: 5, slots: fakeSlots{ok: true, wait: 30 * time.Millisecond}, want: true, reserved: 1, waitRecorded: true},
		{name: "no slot within the hold", limit: 5, slots: fakeSlots{wait: 3 * time.Second}, want: false, reserved: 1, deferred: []time.Duration{3 * time.Second}},
		{name: "the database fails", limit: 5, slots: fakeSlots{err: errors.New("down")}, want: false, reserved: 1},
		{name: "stopping while waiting", limit: 5, slots: fakeSlots{ok: true, wait: time.Hour}, cancel: true, want: false, reserved: 1, released: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := &fakeStore{released: map[string]int{}, recorded: map[string]int{}}
			slots := tc.slots
			s := &sender{store: st, slots: &slots, em: newEndpointMetrics(prometheus.NewRegistry()), policy: Policy{Timeout: 10 * time.Second},
				lease: 40 * time.Second, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			ctx, cancel := context.WithCancel(context.Background())
			if tc.cancel {
				time.AfterFunc(20*time.Millisecond, cancel)
			}
			defer cancel()
			got := s.awaitSlot(ctx, orderflow.Delivery{ID: "d1", EndpointID: "ep", RateLimit: tc.limit})
			if got != tc.want || slots.reserved != tc.reserved || len(slots.deferred) != len(tc.deferred) ||
				(len(tc.deferred) > 0 && slots.deferred[0] != tc.deferred[0]) || (st.released["d1"] == 1) != tc.released {
				t.Fatalf("awaitSlot = %v, reserved %d, deferred %v, released %v", got, slots.reserved, slots.deferred, st.released)
			}
			if tc.reserved > 0 && slots.maxWait != s.maxHold()/2 {
				t.Errorf("reserved within %s, want half the hold %s", slots.maxWait, s.maxHold()/2)
			}
			if w := counterValue(s.em.rateWaited); (w > 0) != tc.waitRecorded {
				t.Errorf("rate_limit_wait_seconds_total %v", w)
			}
			if d := counterValue(s.em.rateDeferred); d != float64(len(tc.deferred)) {
				t.Errorf("rate_limit_deferred_total %v", d)
			}
		})
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

package deliver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"orderflow"
	"orderflow/webhook"
)

// fakeStore is one endpoint's pending deliveries in memory. Claims take claimDelay, like a
// query on a busy database.
type fakeStore struct {
	claimDelay time.Duration

	mu       sync.Mutex
	pending  []orderflow.Delivery
	claims   int
	released map[string]int
	recorded map[string]int
}

func (f *fakeStore) ClaimDeliveries(ctx context.Context, c orderflow.DeliveryClaim) ([]orderflow.Delivery, error) {
	time.Sleep(f.claimDelay)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.claims++
	n := min(c.Limit, c.PerEndpoint-c.InFlight["ep"], len(f.pending))
	if n <= 0 {
		return nil, nil
	}
	out := append([]orderflow.Delivery(nil), f.pending[:n]...)
	f.pending = f.pending[n:]
	return out, nil
}

func (f *fakeStore) RecordAttempts(ctx context.Context, rs []orderflow.DeliveryReport) ([]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	owned := make([]bool, len(rs))
	for i, r := range rs {
		f.recorded[r.Delivery.ID]++
		owned[i] = true
	}
	return owned, nil
}

func (f *fakeStore) ReleaseClaim(ctx context.Context, d orderflow.Delivery) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released[d.ID]++
	f.pending = append(f.pending, d)
	return nil
}

// hook answers after delay and remembers how many requests were in flight at most.
type hook struct {
	delay time.Duration
	hang  chan struct{} // when set, requests wait for it to close (or the client to give up)

	mu       sync.Mutex
	inFlight int
	maxIn    int
	calls    map[string]int
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.inFlight++
	h.maxIn = max(h.maxIn, h.inFlight)
	h.calls[r.Header.Get(webhook.HeaderID)]++
	h.mu.Unlock()
	defer func() { h.mu.Lock(); h.inFlight--; h.mu.Unlock() }()
	if h.hang != nil {
		select {
		case <-h.hang:
		case <-r.Context().Done():
			return
		}
	}
	time.Sleep(h.delay)
	_, _ = io.WriteString(w, "ok")
}

func newTestSender(t *testing.T, st *fakeStore, h *hook, perEndpoint int, leaseMargin time.Duration, n int) *sender {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	secret, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	st.released, st.recorded, h.calls = map[string]int{}, map[string]int{}, map[string]int{}
	for i := range n {
		st.pending = append(st.pending, orderflow.Delivery{ID: fmt.Sprint("d", i), EventID: fmt.Sprint("ev", i), EndpointID: "ep",
			URL: srv.URL, Secrets: []string{secret}, Payload: []byte(`{}`), CycleStartedAt: time.Now()})
	}
	p := DefaultPolicy()
	p.Timeout = 5 * time.Second
	return &sender{store: st, client: testHTTPClient(perEndpoint), egress: loopbackPolicy(), policy: p, workers: 16, perEndpoint: perEndpoint,
		prefetch: perEndpoint, poll: time.Hour, lease: p.Timeout + leaseMargin,
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), m: newMetrics(prometheus.NewRegistry(), func(string) bool { return true }),
		now: time.Now, rnd: jitter, inFlight: map[string]int{}, queued: map[string][]held{}}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A slot whose attempt ends starts the endpoint's next delivery from the queue, without a claim
// in between; the endpoint never has more than its slots in flight.
func TestSenderStartsQueuedDeliveriesWithoutAClaimPerAttempt(t *testing.T) {
	const n = 120
	st := &fakeStore{claimDelay: 20 * time.Millisecond}
	h := &hook{delay: 5 * time.Millisecond}
	s := newTestSender(t, st, h, 4, 30*time.Second, n)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()
	waitFor(t, "every delivery is recorded", func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		return len(st.recorded) == n
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.maxIn > 4 {
		t.Errorf("%d requests in flight to one endpoint, want at most its 4 slots", h.maxIn)
	}
	for id, c := range h.calls {
		if c != 1 {
			t.Errorf("%s sent %d times, want once", id, c)
		}
	}
	t.Logf("%d attempts, %d claims, at most %d in flight", n, st.claims, h.maxIn)
	if st.claims >= n/2 {
		t.Errorf("%d claims for %d attempts, want the queue to spare most of them", st.claims, n)
	}
}

// A queued delivery that cannot start within half the lease's margin is given back instead of
// being sent late, and whatever is queued at shutdown is given back too.
func TestSenderReleasesQueuedDeliveriesItCannotStartInTime(t *testing.T) {
	st := &fakeStore{}
	h := &hook{hang: make(chan struct{})}
	s := newTestSender(t, st, h, 2, 100*time.Millisecond, 6)
	s.poll = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()
	// Two hang in flight, two wait in the queue past their 50 ms and go back.
	waitFor(t, "a queued delivery is released", func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		return len(st.released) > 0
	})
	cancel()
	close(h.hang)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.maxIn > 2 {
		t.Errorf("%d requests in flight to one endpoint, want at most its 2 slots", h.maxIn)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	// Nothing is held after shutdown: every delivery is pending in the store again or recorded.
	if got := len(st.pending) + len(st.recorded); got != 6 {
		t.Errorf("%d deliveries pending or recorded after shutdown (%d pending, %d recorded), want all 6", got, len(st.pending), len(st.recorded))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nQueued != 0 || s.running != 0 {
		t.Errorf("%d queued and %d running after shutdown, want none", s.nQueued, s.running)
	}
}

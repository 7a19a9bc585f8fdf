package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"orderflow/api"
	"orderflow/internal/testenv"
)

// metric reads one sample of the ops listener's /metrics, e.g.
// `orderflow_api_shed_total{reason="queue_full"}`; "" when it is not there.
func (e *env) metric(name string) string {
	e.t.Helper()
	w := httptest.NewRecorder()
	e.api.OpsHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, line := range strings.Split(w.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// TestOverloadIsShedWithoutWriting: past its admission limit the API answers 503 overloaded
// with Retry-After and writes nothing for the shed requests, while the ones it accepted
// complete; the database then holds exactly the accepted orders.
func TestOverloadIsShedWithoutWriting(t *testing.T) {
	e := newEnv(t, api.WithAdmission(2, 3, 20*time.Millisecond))
	e.stock("HELD", 100)
	e.stock("FREE", 100)
	ctx := context.Background()

	// Two orders for HELD take both slots and wait on its row, locked here, so the limit is
	// full for as long as this test wants, however fast or slow the machine is.
	lock, err := e.sql.Begin(ctx)
	testenv.Must(t, err, "beginning the locking transaction")
	defer func() { _ = lock.Rollback(ctx) }()
	_, err = lock.Exec(ctx, "SELECT 1 FROM inventory WHERE sku = 'HELD' FOR UPDATE")
	testenv.Must(t, err, "locking HELD")
	held := make([]reply, 2)
	var holders sync.WaitGroup
	for i := range held {
		holders.Add(1)
		go func() {
			defer holders.Done()
			held[i] = e.create(fmt.Sprintf("held-%d", i), orderBody("c", "HELD", 3))
		}()
	}
	for deadline := time.Now().Add(30 * time.Second); e.metric("orderflow_api_requests_in_flight") != "2"; {
		if time.Now().After(deadline) {
			t.Fatalf("the two held orders never took both slots (in flight: %q)", e.metric("orderflow_api_requests_in_flight"))
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Every further request is shed: queued ones when their wait passes the queue timeout,
	// the rest at once because the queue is full.
	const n = 10
	shed := make([]reply, n)
	var wg sync.WaitGroup
	for i := range shed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			shed[i] = e.create(fmt.Sprintf("shed-%d", i), orderBody("c", "FREE", 1))
		}()
	}
	wg.Wait()
	for i, r := range shed {
		mustStatus(t, r, http.StatusServiceUnavailable, "overloaded")
		if r.header.Get("Retry-After") != "1" {
			t.Fatalf("shed request %d: Retry-After %q, want 1", i, r.header.Get("Retry-After"))
		}
	}
	full, timedOut := e.metric(`orderflow_api_shed_total{reason="queue_full"}`), e.metric(`orderflow_api_shed_total{reason="queue_timeout"}`)
	if atoi(t, full)+atoi(t, timedOut) != n {
		t.Fatalf("shed_total queue_full %s + queue_timeout %s, want %d", full, timedOut, n)
	}

	testenv.Must(t, lock.Commit(ctx), "releasing HELD")
	holders.Wait()
	for _, r := range held {
		mustStatus(t, r, http.StatusCreated, "")
	}
	// Only the accepted orders are in the database: their rows, their events, their
	// reservations and their keys; nothing of the shed ones, not even their keys.
	if _, res := e.inventory("HELD"); res != 6 {
		t.Fatalf("HELD reserved %d, want the two accepted orders' 6", res)
	}
	if _, res := e.inventory("FREE"); res != 0 {
		t.Fatalf("FREE reserved %d by shed requests", res)
	}
	for table, want := range map[string]int64{"orders": 2, "order_items": 2, "outbox": 2, "idempotency_keys": 2} {
		if got := e.count(table); got != want {
			t.Fatalf("%d rows in %s, want %d", got, table, want)
		}
	}
	// A shed request retried with its key runs as new: nothing was stored under it.
	retry := e.create("shed-0", orderBody("c", "FREE", 1))
	mustStatus(t, retry, http.StatusCreated, "")
	if retry.header.Get("Idempotent-Replayed") != "" {
		t.Fatal("a shed request's key replayed an answer")
	}

	// A burst with nothing held: whatever mix of accepted and shed it gets, the database
	// holds the accepted orders and only them.
	const burst = 40
	replies := make([]reply, burst)
	for i := range replies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = e.create(fmt.Sprintf("burst-%d", i), orderBody("c", "FREE", 1))
		}()
	}
	wg.Wait()
	accepted := int64(0)
	for i, r := range replies {
		switch r.status {
		case http.StatusCreated:
			accepted++
		case http.StatusServiceUnavailable:
			mustStatus(t, r, http.StatusServiceUnavailable, "overloaded")
		default:
			t.Fatalf("burst request %d: %d %s", i, r.status, r.body)
		}
	}
	if _, res := e.inventory("FREE"); res != 1+accepted {
		t.Fatalf("FREE reserved %d, want %d (the retry and the accepted burst)", res, 1+accepted)
	}
	if o, ev, k := e.count("orders"), e.count("outbox"), e.count("idempotency_keys"); o != 3+accepted || ev != o || k != o {
		t.Fatalf("%d orders, %d events, %d keys; want %d of each", o, ev, k, 3+accepted)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatalf("metric value %q: %v", s, err)
	}
	return n
}

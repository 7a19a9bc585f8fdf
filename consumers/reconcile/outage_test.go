package reconcile_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"orderflow/consumers/reconcile"
	"orderflow/internal/testenv"
	"orderflow/postgres"
)

// TestDaemonRidesOutAPostgresOutage takes PostgreSQL away from the reconcile daemon for longer
// than any retry budget: it keeps running, says so on /readyz and in its metrics, and reports
// drift that appears after the database is back, without a restart.
func TestDaemonRidesOutAPostgresOutage(t *testing.T) {
	t.Parallel()
	w := newWorld(t, false)
	px, proxied := testenv.NewDatabaseProxy(t, w.dsn)
	db, err := postgres.Open(context.Background(), proxied, 2)
	testenv.Must(t, err, "opening the database through the proxy")
	t.Cleanup(db.Close)
	r := reconcile.New(reconcile.Config{FreshnessSLA: time.Millisecond, Logger: quiet()}, db)
	var (
		mu      sync.Mutex
		reports []*reconcile.Report
	)
	run := testenv.Start(t, "reconcile", func(ctx context.Context) error {
		return r.RunEvery(ctx, 200*time.Millisecond, func(rep *reconcile.Report) {
			mu.Lock()
			reports = append(reports, rep)
			mu.Unlock()
		})
	})
	ops := httptest.NewServer(r.Handler())
	defer ops.Close()
	state := func() (int, string) {
		resp, err := http.Get(ops.URL + "/readyz")
		if err != nil {
			return 0, ""
		}
		resp.Body.Close()
		m, err := http.Get(ops.URL + "/metrics")
		if err != nil {
			return 0, ""
		}
		defer m.Body.Close()
		b, _ := io.ReadAll(m.Body)
		return resp.StatusCode, string(b)
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 60 s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitUntil("a first successful run", func() bool { code, _ := state(); return code == http.StatusOK })

	px.Cut()
	waitUntil("the outage reported", func() bool {
		code, m := state()
		return code == http.StatusServiceUnavailable && strings.Contains(m, `orderflow_reconcile_dependency_up{dependency="postgres"} 0`)
	})
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		select {
		case <-run.Done():
			t.Fatalf("the daemon stopped while PostgreSQL was away: %v", run.Err())
		default:
		}
	}
	px.Restore()
	id := w.createOrder() // no projector here: its summary is missing
	waitUntil("the new order's drift reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		if len(reports) == 0 {
			return false
		}
		_, found := kinds(reports[len(reports)-1])[id+" missing_summary"]
		return found
	})
	waitUntil("ready again", func() bool {
		code, m := state()
		return code == http.StatusOK && strings.Contains(m, `orderflow_reconcile_dependency_up{dependency="postgres"} 1`) &&
			!strings.Contains(m, "orderflow_reconcile_failures_total 0")
	})
}

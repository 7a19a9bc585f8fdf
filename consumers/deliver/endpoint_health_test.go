package deliver_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"orderflow"
	"orderflow/consumers/deliver"
	"orderflow/internal/testenv"
	"orderflow/postgres"
)

// startAs runs a deliverer connected as role (orderflow_deliver in production) until the test
// ends, so the test proves the role may do what the deliverer does.
func (e *env) startAs(role string, mod func(*deliver.Config)) *deliver.Service {
	e.t.Helper()
	db, err := postgres.Open(context.Background(), testenv.AsRole(e.t, e.sql.Config().ConnString(), role), 10)
	testenv.Must(e.t, err, "opening the database as "+role)
	e.t.Cleanup(db.Close)
	cfg := deliver.Config{Brokers: e.brokers, Topic: e.topic, GroupID: e.group, Policy: fastPolicy(),
		Workers: 16, PerEndpoint: 4, Poll: 50 * time.Millisecond, StatsEvery: 200 * time.Millisecond,
		Lease: time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Egress: loopbackOnly(e.t)}
	if os.Getenv("ORDERFLOW_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := deliver.New(cfg, db)
	testenv.Must(e.t, err, "creating deliverer")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("deliverer stopped with %v", err)
		}
	})
	return s
}

// TestRateLimitHoldsAcrossDeliverers: two deliverers share one endpoint's limit of 5 deliveries
// a second. Every send takes a slot 200 ms after the previous one from the endpoint's schedule
// in PostgreSQL and never starts before it, so the k-th attempt starts no earlier than k × 200 ms
// after the deliverers started, however the two split the work. (A lower bound only: a slow
// machine cannot fail it. Without the limit the 15 attempts start within a few milliseconds;
// with a limit kept in each process, two deliverers would send at twice the rate.)
func TestRateLimitHoldsAcrossDeliverers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := newReceiver(t, nil)
	ep := e.endpoint(r.srv.URL+"/hook", orderflow.EventOrderCreated)
	r.setSecrets(ep.Secret)
	_, err := e.sql.Exec(context.Background(), `UPDATE webhook_endpoints SET rate_limit = 5 WHERE id = $1`, ep.ID)
	testenv.Must(t, err, "limiting the endpoint")
	const n = 15
	values := make([][]byte, n)
	for i := range values {
		_, values[i] = event(t, orderflow.EventOrderCreated)
	}
	e.produce(values...)
	t0 := time.Now()
	e.startAs("orderflow_deliver", nil)
	e.startAs("orderflow_deliver", nil)
	eventually(t, "every delivery accepted and recorded", 60*time.Second, func() bool {
		return r.acceptedCount() == n && e.count(`SELECT count(*) FROM webhook_deliveries WHERE state = 'succeeded'`) == n
	})

	rows, err := e.sql.Query(context.Background(), `SELECT a.started_at FROM webhook_delivery_attempts a
		JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.endpoint_id = $1 ORDER BY a.started_at`, ep.ID)
	testenv.Must(t, err, "reading attempts")
	starts, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	testenv.Must(t, err, "reading attempts")
	if len(starts) != n {
		t.Fatalf("%d attempts, want %d (one each)", len(starts), n)
	}
	const epsilon = 5 * time.Millisecond // microsecond storage, float seconds
	for k, at := range starts {
		if earliest := t0.Add(time.Duration(k) * 200 * time.Millisecond); at.Before(earliest.Add(-epsilon)) {
			t.Fatalf("attempt %d started %s after the deliverers, before its slot at %s: the limit of 5/s was exceeded",
				k, at.Sub(t0), earliest.Sub(t0))
		}
	}
}

// TestEndpointFailingTooLongIsDisabledAutomatically: an endpoint whose every attempt fails for
// -auto-disable-after is disabled, its pending deliveries become dead letters, and the deliverer
// counts it in orderflow_deliver_endpoint_auto_disabled_total; a healthy endpoint is left alone.
func TestEndpointFailingTooLongIsDisabledAutomatically(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	failing := newReceiver(t, func(string, int) int { return http.StatusServiceUnavailable })
	healthy := newReceiver(t, nil)
	bad := e.endpoint(failing.srv.URL+"/hook", orderflow.EventOrderCreated)
	good := e.endpoint(healthy.srv.URL+"/hook", orderflow.EventOrderCreated)
	failing.setSecrets(bad.Secret)
	healthy.setSecrets(good.Secret)
	svc := e.startAs("orderflow_deliver", func(c *deliver.Config) {
		c.AutoDisableAfter, c.AutoDisableEvery = 2*time.Second, 100*time.Millisecond
	})
	_, v1 := event(t, orderflow.EventOrderCreated)
	_, v2 := event(t, orderflow.EventOrderCreated)
	e.produce(v1, v2)

	var reason string
	eventually(t, "the failing endpoint is disabled", 60*time.Second, func() bool {
		return e.sql.QueryRow(context.Background(), `SELECT coalesce(disabled_reason, '') FROM webhook_endpoints WHERE id = $1`, bad.ID).Scan(&reason) == nil && reason != ""
	})
	if !strings.HasPrefix(reason, "disabled automatically: every attempt failed since ") {
		t.Fatalf("disabled with reason %q", reason)
	}
	if n := e.count(`SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND state <> 'dead'`, bad.ID); n != 0 {
		t.Fatalf("%d deliveries of the disabled endpoint are not dead letters", n)
	}
	if n := e.count(`SELECT count(*) FROM webhook_delivery_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
		WHERE d.endpoint_id = $1 AND a.outcome = 'success'`, bad.ID); n != 0 {
		t.Fatalf("the failing endpoint succeeded %d times", n)
	}
	if n := e.count(`SELECT count(*) FROM webhook_endpoints WHERE id = $1 AND (disabled_at IS NOT NULL OR failing_since IS NOT NULL)`, good.ID); n != 0 {
		t.Fatal("the healthy endpoint is disabled or failing")
	}
	eventually(t, "the healthy endpoint got both events", 30*time.Second, func() bool { return healthy.acceptedCount() == 2 })
	m := httptest.NewServer(svc.Handler())
	defer m.Close()
	resp, err := http.Get(m.URL + "/metrics")
	testenv.Must(t, err, "scraping")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "orderflow_deliver_endpoint_auto_disabled_total 1\n") {
		t.Fatalf("metrics lack orderflow_deliver_endpoint_auto_disabled_total 1:\n%s", grepLines(string(body), "auto_disabled"))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

package reconcile_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"orderflow/consumers/reconcile"
	"orderflow/internal/testenv"
)

// The daemon's passes after the first read what changed since the last pass and recheck the
// findings still open, not every order: new drift is found, drift that cleared leaves the
// report, and the old, settled orders are not read again.
func TestIncrementalPassesReadWhatChangedAndWhatIsOpen(t *testing.T) {
	t.Parallel()
	w := newWorld(t, false)
	ctx := context.Background()
	project := func(id string) {
		t.Helper()
		_, err := w.conn.Exec(ctx, `INSERT INTO order_summary (order_id, customer_id, status, total_cents, item_count, currency,
				version, created_at, updated_at, last_event_id, last_event_type, last_event_at, projected_at)
			SELECT id, customer_id, status, total_cents, 1, currency, version, created_at, updated_at, gen_random_uuid(),
				'order.created', updated_at, now() FROM orders WHERE id = $1`, id)
		testenv.Must(t, err, "projecting")
	}
	// Forty settled orders of yesterday, and one of yesterday whose summary is missing.
	for range 40 {
		project(w.createOrder())
	}
	lost := w.createOrder()
	_, err := w.conn.Exec(ctx, `UPDATE orders SET created_at = created_at - interval '1 day', updated_at = updated_at - interval '1 day';
		UPDATE order_summary SET created_at = created_at - interval '1 day', updated_at = updated_at - interval '1 day'`)
	testenv.Must(t, err, "aging the orders")
	time.Sleep(5 * time.Millisecond)

	r := reconcile.New(reconcile.Config{FreshnessSLA: time.Millisecond, FulfillmentSLA: 48 * time.Hour, Logger: quiet()}, w.db)
	rep, err := r.RunIncremental(ctx) // the first pass is full
	testenv.Must(t, err, "first pass")
	if rep.Mode != "full" || rep.OrdersScanned != 41 || kinds(rep)[lost+" missing_summary"] != "" || len(rep.Drift) != 1 {
		t.Fatalf("first pass: %s over %d orders, drift %v; want full over 41 with %s missing", rep.Mode, rep.OrdersScanned, kinds(rep), lost)
	}

	fresh := w.createOrder() // no summary: new drift
	time.Sleep(5 * time.Millisecond)
	rep, err = r.RunIncremental(ctx)
	testenv.Must(t, err, "second pass")
	want := map[string]string{lost + " missing_summary": "", fresh + " missing_summary": ""}
	if rep.Mode != "incremental" || rep.OrdersScanned != 2 || len(kinds(rep)) != 2 || kinds(rep)[lost+" missing_summary"] != "" {
		t.Fatalf("second pass: %s over %d orders, drift %v; want incremental over the 2 open/changed orders, drift %v",
			rep.Mode, rep.OrdersScanned, kinds(rep), want)
	}

	project(lost) // cleared
	rep, err = r.RunIncremental(ctx)
	testenv.Must(t, err, "third pass")
	if got := kinds(rep); len(got) != 1 || rep.Counts[reconcile.KindMissingSummary] != 1 {
		t.Fatalf("third pass: drift %v, want only %s", got, fresh)
	}
	if _, ok := kinds(rep)[fresh+" missing_summary"]; !ok {
		t.Fatalf("third pass: drift %v, want %s", kinds(rep), fresh)
	}
}

// The daemon purges reconcile_repairs rows past their window and keeps the younger ones.
func TestDaemonPurgesOldRepairs(t *testing.T) {
	t.Parallel()
	w := newWorld(t, false)
	_, err := w.conn.Exec(context.Background(), `INSERT INTO reconcile_repairs (order_id, version, kind, event_id, created_at)
		SELECT gen_random_uuid(), 1, 'missing_summary', gen_random_uuid(), now() - CASE WHEN g <= 3 THEN interval '2 hours' ELSE interval '1 minute' END
		FROM generate_series(1, 5) g`)
	testenv.Must(t, err, "inserting repairs")
	r := reconcile.New(reconcile.Config{RetainRepairs: time.Hour, PurgeEvery: 100 * time.Millisecond, PurgeBatch: 2, Logger: quiet()}, w.db)
	testenv.Start(t, "reconcile", func(ctx context.Context) error { return r.RunEvery(ctx, time.Hour, func(*reconcile.Report) {}) })
	deadline := time.Now().Add(30 * time.Second)
	for testenv.Count(t, w.conn, `SELECT count(*) FROM reconcile_repairs`) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d repairs left, want the 2 younger than the window", testenv.Count(t, w.conn, `SELECT count(*) FROM reconcile_repairs`))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A callback the partner gave up on is reported, with its reason and how to replay it, until
// it is replayed and made.
func TestFailedPartnerCallbacksAreReported(t *testing.T) {
	t.Parallel()
	w := newWorld(t, false)
	ctx := context.Background()
	order := w.createOrder()
	_, err := w.conn.Exec(ctx, `INSERT INTO partner.receipts (webhook_id, event_type, subject) VALUES ('wh-1', 'order.created', $1)`, order)
	testenv.Must(t, err, "recording a receipt")
	_, err = w.conn.Exec(ctx, `INSERT INTO partner.callbacks (webhook_id, order_id, action, due_at, attempts, state, last_error, done_at)
		VALUES ('wh-1', $1, 'fulfill', now(), 7, 'failed', 'the API answered 503; gave up after 7 attempts over 12h0m0s (the retry horizon)', now())`, order)
	testenv.Must(t, err, "recording a failed callback")
	r := reconcile.New(reconcile.Config{FreshnessSLA: time.Hour, Logger: quiet()}, w.db)
	for _, pass := range []func(context.Context) (*reconcile.Report, error){r.Run, r.RunIncremental} {
		rep, err := pass(ctx)
		testenv.Must(t, err, "reconciling")
		if rep.Counts[reconcile.KindCallbackFailed] != 1 || len(rep.Drift) != 1 || rep.Drift[0].OrderID != order ||
			!strings.Contains(rep.Drift[0].Detail, "retry horizon") || !strings.Contains(rep.Drift[0].Detail, "/admin/callbacks/wh-1/replay") {
			t.Fatalf("%s pass: %+v, want the failed callback with its reason and how to replay it", rep.Mode, rep.Drift)
		}
	}
	_, err = w.conn.Exec(ctx, `UPDATE partner.callbacks SET state = 'done'`)
	testenv.Must(t, err, "replaying")
	rep, err := r.RunIncremental(ctx)
	testenv.Must(t, err, "reconciling")
	if rep.Counts[reconcile.KindCallbackFailed] != 0 {
		t.Fatalf("drift after the replay: %+v", rep.Drift)
	}
}

package reconcile_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"orderflow"
	"orderflow/api"
	"orderflow/consumers/deliver"
	"orderflow/consumers/partner"
	"orderflow/consumers/projector"
	"orderflow/consumers/reconcile"
	"orderflow/internal/egress"
	"orderflow/internal/testenv"
	"orderflow/webhook"
)

// repairsWritten counts the outbox rows reconcile wrote.
func (w *world) repairsWritten() int64 {
	w.t.Helper()
	return testenv.Count(w.t, w.conn, `SELECT count(*) FROM outbox ob JOIN reconcile_repairs r ON r.event_id = ob.id`)
}

// projectorRun is a projector started in-process; stop ends it.
type projectorRun struct{ stop func() }

// runProjector creates the world's topic if needed and runs a projector in group on it.
func (w *world) runProjector(group string) projectorRun {
	t := w.t
	t.Helper()
	if w.topic == "" {
		w.topic = testenv.UniqueName("ofrec") + ".order"
		client := &kafka.Client{Addr: kafka.TCP(w.brokers...), Timeout: 15 * time.Second}
		resp, err := client.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: w.topic, NumPartitions: 2, ReplicationFactor: 1}}})
		testenv.Must(t, err, "creating topic")
		testenv.Must(t, resp.Errors[w.topic], "creating topic")
		t.Cleanup(func() {
			_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{w.topic, projector.DLQTopic(w.topic)}})
		})
		w.writer = &kafka.Writer{Addr: kafka.TCP(w.brokers...), Topic: w.topic, Balancer: &kafka.Hash{},
			RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
		t.Cleanup(func() { _ = w.writer.Close() })
	}
	p, err := projector.New(projector.Config{Brokers: w.brokers, Topic: w.topic, GroupID: group,
		SessionTimeout: 6 * time.Second, Logger: quiet()}, w.db)
	testenv.Must(t, err, "projector.New")
	r := testenv.Start(t, "projector", p.Run)
	return projectorRun{stop: func() { testenv.Must(t, r.Stop(t), "stopping the projector") }}
}

// TestProjectorStoppedWithFixWritesNoRepairs stops the projector while orders keep changing
// and runs reconcile --fix again and again with a freshness SLA far shorter than the stop:
// every change is reported as drift, but nothing is republished, because the read model has
// not moved past those changes (the projector is behind, not losing events). Once the
// projector is back, the drift is gone by itself. Before, every drifted order was republished
// (up to 1,000 a minute).
func TestProjectorStoppedWithFixWritesNoRepairs(t *testing.T) {
	t.Parallel()
	w := newWorld(t, true)
	group := testenv.UniqueName("ofrecgroup")
	p := w.runProjector(group)
	var before []string
	want := map[string]string{}
	for range 5 {
		id := w.createOrder()
		before = append(before, id)
		want[id] = "pending v1"
	}
	w.relay()
	w.waitSummaries(want)
	p.stop()

	for _, id := range before[:3] {
		w.fulfill(id)
		want[id] = "fulfilled v2"
	}
	for range 5 {
		want[w.createOrder()] = "pending v1"
	}
	w.relay() // the events wait on the topic for the projector
	cfg := reconcile.Config{FreshnessSLA: time.Millisecond, FulfillmentSLA: time.Hour, Fix: true, Logger: quiet()}
	drift := 0
	for range 10 {
		time.Sleep(200 * time.Millisecond)
		rep, err := reconcile.New(cfg, w.db).Run(context.Background())
		testenv.Must(t, err, "reconciling")
		drift = rep.Counts[reconcile.KindMissingSummary] + rep.Counts[reconcile.KindStaleSummary]
		for _, d := range rep.Drift {
			if d.Repair != reconcile.RepairWaiting {
				t.Fatalf("finding %+v while the projector is stopped, want repair %q", d, reconcile.RepairWaiting)
			}
		}
		w.relay()
	}
	if drift != 8 {
		t.Errorf("%d summaries reported behind while the projector was stopped, want 8", drift)
	}
	if n := w.repairsWritten(); n != 0 {
		t.Fatalf("reconcile wrote %d repair events while the projector was stopped, want none", n)
	}

	w.runProjector(group)
	w.waitSummaries(want)
	rep, err := reconcile.New(cfg, w.db).Run(context.Background())
	testenv.Must(t, err, "reconciling after the projector came back")
	if len(rep.Drift) != 0 || w.repairsWritten() != 0 {
		t.Fatalf("after the projector came back: drift %v, %d repairs", kinds(rep), w.repairsWritten())
	}
}

// TestPartnerDownLongerThanTheSLAWithFixActsOnceOnEachOrder keeps the partner down while
// reconcile --fix runs with a delivery SLA far shorter than the outage, then brings it back:
// each order is received and acted on by the partner exactly once, because deliveries still
// within the deliverer's retry horizon are not undelivered, so nothing is repaired. Before,
// each pending delivery was republished under a new id and the partner acted twice.
func TestPartnerDownLongerThanTheSLAWithFixActsOnceOnEachOrder(t *testing.T) {
	t.Parallel()
	w := newWorld(t, true)
	ctx := context.Background()
	w.runProjector(testenv.UniqueName("ofrecgroup"))
	const partnerKey = "reconcile-test-partner-key"
	_, err := w.conn.Exec(ctx, `INSERT INTO api_clients (id, name, key_sha256, role) VALUES ('partner', 'mock partner', sha256($1::bytea), 'fulfiller')`, []byte(partnerKey))
	testenv.Must(t, err, "seeding the partner's key")
	apiSrv := httptest.NewServer(api.New(w.db, quiet()))
	t.Cleanup(apiSrv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.Must(t, err, "finding a port")
	addr := ln.Addr().String()
	ln.Close()
	secret, err := webhook.NewSecret()
	testenv.Must(t, err, "making a secret")
	_, err = w.db.CreateEndpoint(ctx, "http://"+addr+"/partner-hook", []string{orderflow.EventOrderCreated}, secret)
	testenv.Must(t, err, "registering the partner")
	// The partner listens on loopback, which the egress guard allows only when told.
	loopback, err := egress.NewPolicy("127.0.0.0/8")
	testenv.Must(t, err, "making the egress policy")
	svc, err := deliver.New(deliver.Config{Brokers: w.brokers, Topic: w.topic, GroupID: testenv.UniqueName("ofrecdeliver"), Egress: loopback,
		Policy: deliver.Policy{Timeout: time.Second, MaxAttempts: 1000, MaxAge: time.Hour, BaseBackoff: 20 * time.Millisecond,
			MaxBackoff: 250 * time.Millisecond, MaxRetryAfter: time.Second},
		Workers: 8, PerEndpoint: 4, Poll: 50 * time.Millisecond, Lease: time.Second, Logger: quiet()}, w.db)
	testenv.Must(t, err, "creating deliverer")
	testenv.Start(t, "deliverer", svc.Run)

	var orders []string
	for range 5 {
		orders = append(orders, w.createOrder())
	}
	w.relay()
	waitCount := func(what, q string, want int64) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for testenv.Count(t, w.conn, q) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d, want %d", what, testenv.Count(t, w.conn, q), want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitCount("deliveries failing while the partner is down",
		`SELECT count(*) FROM webhook_deliveries WHERE state = 'pending' AND attempts >= 2`, 5)

	// The partner stays down far longer than the delivery SLA, while reconcile --fix runs.
	cfg := reconcile.Config{FreshnessSLA: time.Hour, DeliverySLA: time.Millisecond, Fix: true, Logger: quiet()}
	for range 10 {
		time.Sleep(200 * time.Millisecond)
		rep, err := reconcile.New(cfg, w.db).Run(ctx)
		testenv.Must(t, err, "reconciling")
		if n := rep.Counts[reconcile.KindUndelivered]; n != 0 {
			t.Fatalf("%d deliveries being retried reported undelivered: %+v", n, rep.Drift)
		}
		w.relay() // as capture would, so any repair would reach the deliverer
	}

	pcfg := partner.Config{DatabaseURL: w.dsn, Secrets: []string{secret}, APIURL: apiSrv.URL, APIKey: partnerKey,
		UnknownSKU: regexp.MustCompile(`^UNKNOWN-`), Addr: addr, CallbackBackoff: 50 * time.Millisecond,
		CallbackMaxBackoff: 500 * time.Millisecond, CallbackPoll: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	pt, err := partner.New(ctx, pcfg)
	testenv.Must(t, err, "creating partner")
	t.Cleanup(pt.Close)
	testenv.Start(t, "partner", pt.Run)

	waitCount("orders fulfilled", `SELECT count(*) FROM orders WHERE status = 'fulfilled'`, 5)
	w.relay()
	waitCount("deliveries settled", `SELECT count(*) FROM webhook_deliveries WHERE state = 'succeeded'`, 5)
	rep, err := reconcile.New(cfg, w.db).Run(ctx)
	testenv.Must(t, err, "reconciling after the partner came back")
	if n := rep.Counts[reconcile.KindUndelivered] + rep.Counts[reconcile.KindPastHorizon]; n != 0 {
		t.Fatalf("delivery drift after the partner came back: %+v", rep.Drift)
	}
	for _, id := range orders {
		receipts := testenv.Count(t, w.conn, `SELECT count(*) FROM partner.receipts WHERE subject = $1`, id)
		callbacks := testenv.Count(t, w.conn, `SELECT count(*) FROM partner.callbacks WHERE order_id = $1`, id)
		fulfilled := testenv.Count(t, w.conn, `SELECT count(*) FROM outbox WHERE aggregate_id = $1 AND event_type = 'order.fulfilled'`, id)
		if receipts != 1 || callbacks != 1 || fulfilled != 1 {
			t.Errorf("order %s: %d receipts, %d callbacks, %d fulfillments; want one of each", id, receipts, callbacks, fulfilled)
		}
	}
	if n := w.repairsWritten(); n != 0 {
		t.Errorf("reconcile wrote %d repair events, want none", n)
	}
}

// TestARepairTheDatabaseRefusesIsReportedOnceAndNeverRetried crafts a repair PostgreSQL
// refuses (a constraint on the outbox refusing one order) beside one it accepts: the good one
// is published, the refused one is reported with the database's reason, counted once, and
// never tried again; a published repair that does not clear its finding within the grace is
// reported as not cleared, once, and never republished.
func TestARepairTheDatabaseRefusesIsReportedOnceAndNeverRetried(t *testing.T) {
	t.Parallel()
	w := newWorld(t, false)
	ctx := context.Background()
	refused, accepted := w.createOrder(), w.createOrder()
	time.Sleep(5 * time.Millisecond)
	later := w.createOrder()
	// The read model has applied a change after both: their missing summaries are a loss.
	_, err := w.conn.Exec(ctx, `INSERT INTO order_summary (order_id, customer_id, status, total_cents, item_count, currency,
			version, created_at, updated_at, last_event_id, last_event_type, last_event_at, projected_at)
		SELECT id, customer_id, status, total_cents, 1, currency, version, created_at, updated_at, gen_random_uuid(),
			'order.created', updated_at, now() FROM orders WHERE id = $1`, later)
	testenv.Must(t, err, "projecting the later order")
	_, err = w.conn.Exec(ctx, fmt.Sprintf(`ALTER TABLE outbox ADD CONSTRAINT crafted_refusal CHECK (aggregate_id <> '%s') NOT VALID`, refused))
	testenv.Must(t, err, "crafting the refusal")
	time.Sleep(10 * time.Millisecond)

	r := reconcile.New(reconcile.Config{FreshnessSLA: time.Millisecond, FulfillmentSLA: time.Hour, Fix: true,
		RepairGrace: 50 * time.Millisecond, Logger: quiet()}, w.db)
	outbox := func() int64 { return testenv.Count(t, w.conn, `SELECT count(*) FROM outbox`) }
	start := outbox()
	repairs := func(rep *reconcile.Report) map[string]string {
		out := map[string]string{}
		for _, d := range rep.Drift {
			out[d.OrderID] = d.Repair
			if d.OrderID == refused && !strings.Contains(d.Detail, "crafted_refusal") {
				t.Errorf("the refused repair's finding does not give the reason: %q", d.Detail)
			}
		}
		return out
	}
	rep, err := r.Run(ctx)
	testenv.Must(t, err, "reconciling")
	if got := repairs(rep); got[refused] != reconcile.RepairRefused || got[accepted] != reconcile.RepairPublished {
		t.Fatalf("repairs %v, want %s refused and %s published", got, refused, accepted)
	}
	if n := outbox() - start; n != 1 {
		t.Fatalf("%d repair events written, want 1", n)
	}
	time.Sleep(100 * time.Millisecond) // past the grace: the accepted repair never reached a projector
	for i := range 3 {
		rep, err = r.Run(ctx)
		testenv.Must(t, err, "reconciling again")
		if got := repairs(rep); got[refused] != reconcile.RepairRefused || got[accepted] != reconcile.RepairNotCleared {
			t.Fatalf("run %d: repairs %v, want %s refused and %s not cleared", i+2, got, refused, accepted)
		}
	}
	if n := outbox() - start; n != 1 {
		t.Errorf("%d repair events written after four runs, want still 1", n)
	}
	_, m := getMetrics(t, r)
	for _, want := range []string{`orderflow_reconcile_repairs_total{outcome="refused"} 1`,
		`orderflow_reconcile_repairs_total{outcome="not_cleared"} 1`, `orderflow_reconcile_repairs_total{outcome="published"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func getMetrics(t *testing.T, r *reconcile.Reconciler) (int, string) {
	t.Helper()
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	testenv.Must(t, err, "reading metrics")
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

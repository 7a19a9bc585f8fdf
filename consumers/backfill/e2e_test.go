package backfill_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	kafkago "github.com/segmentio/kafka-go"

	"orderflow"
	"orderflow/capture"
	"orderflow/consumers/backfill"
	"orderflow/consumers/deliver"
	"orderflow/consumers/projector"
	"orderflow/internal/egress"
	ofkafka "orderflow/internal/kafka"
	"orderflow/internal/testenv"
	"orderflow/postgres"
	"orderflow/webhook"
)

// world is one test's database, topic, pipeline (capture, projector, deliverer) and a webhook
// endpoint that counts what it receives.
type world struct {
	t                *testing.T
	dsn, topic       string
	db               *postgres.DB
	conn             *pgx.Conn
	client           *kafkago.Client
	projGroup, group string
	mu               sync.Mutex
	received         map[string]int // webhook-id -> requests
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func respond(o *orderflow.Order, err error) orderflow.Response {
	if err != nil {
		return orderflow.Response{Status: 409, Body: []byte(`{}`)}
	}
	b, _ := json.Marshal(o)
	return orderflow.Response{Status: 201, Body: b}
}

func (w *world) createOrder(i int) string {
	w.t.Helper()
	r, err := w.db.CreateOrder(context.Background(), orderflow.IdempotencyKey{ClientID: "t", Key: uuid.NewString(), Fingerprint: []byte("x")},
		orderflow.NewOrder{CustomerID: fmt.Sprintf("cust-%d", i%4), Currency: "EUR",
			Items: []orderflow.Item{{SKU: "sku-bf", Quantity: int64(1 + i%3), UnitPriceCents: int64(100 * (i + 1))}}}, respond)
	testenv.Must(w.t, err, "creating order")
	var o orderflow.Order
	testenv.Must(w.t, json.Unmarshal(r.Body, &o), "decoding order")
	return o.ID
}

func (w *world) change(id string, a orderflow.Action, reason string) {
	w.t.Helper()
	_, err := w.db.ChangeOrder(context.Background(), orderflow.AnyClient, orderflow.IdempotencyKey{ClientID: "t", Key: uuid.NewString(), Fingerprint: []byte("y")},
		id, a, reason, respond)
	testenv.Must(w.t, err, "changing order")
}

func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %s", what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// records is the number of records in the topic.
func (w *world) records() int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := ofkafka.EndOffsets(ctx, w.client, w.topic, 3)
	if err != nil {
		return -1
	}
	var n int64
	for _, o := range ends {
		n += o.LastOffset - o.FirstOffset
	}
	return n
}

// waitConsumed waits until the topic holds n records and both groups have committed all of them.
func (w *world) waitConsumed(n int64) {
	w.t.Helper()
	waitFor(w.t, fmt.Sprintf("%d records consumed", n), func() (bool, string) {
		got := w.records()
		if got != n {
			return false, fmt.Sprintf("%d records in the topic", got)
		}
		for _, g := range []string{w.projGroup, w.group} {
			lag, err := ofkafka.NewLag("lag", w.client, g, w.topic).Refresh(context.Background())
			if err != nil || lag != 0 {
				return false, fmt.Sprintf("group %s lag %d (%v)", g, lag, err)
			}
		}
		return true, ""
	})
}

// mismatches compares the read model with the orders table, row by row.
func (w *world) mismatches() []string {
	w.t.Helper()
	const orders = `SELECT o.id::text, o.customer_id, o.status, o.total_cents,
		(SELECT sum(quantity) FROM order_items i WHERE i.order_id = o.id)::bigint, o.currency, o.version,
		coalesce(o.cancel_reason, ''), o.created_at, o.updated_at FROM orders o ORDER BY o.id`
	const summaries = `SELECT order_id::text, customer_id, status, total_cents, item_count::bigint, currency, version,
		coalesce(cancel_reason, ''), created_at, updated_at FROM order_summary ORDER BY order_id`
	read := func(q string) map[string]string {
		rows, err := w.conn.Query(context.Background(), q)
		testenv.Must(w.t, err, q)
		defer rows.Close()
		out := map[string]string{}
		for rows.Next() {
			vals, err := rows.Values()
			testenv.Must(w.t, err, "scanning")
			out[vals[0].(string)] = fmt.Sprint(vals[1:]...)
		}
		testenv.Must(w.t, rows.Err(), q)
		return out
	}
	want, got := read(orders), read(summaries)
	var out []string
	for id, row := range want {
		if got[id] != row {
			out = append(out, fmt.Sprintf("order %s: summary %q, want %q", id, got[id], row))
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			out = append(out, "summary of an unknown order "+id)
		}
	}
	return out
}

// snapshot is the read model including which event produced each row and when.
func (w *world) snapshot() string {
	w.t.Helper()
	var s string
	err := w.conn.QueryRow(context.Background(), `SELECT coalesce(string_agg(order_id::text || ' v' || version || ' ' ||
		last_event_id::text || ' ' || projected_at::text, E'\n' ORDER BY order_id), '') FROM order_summary`).Scan(&s)
	testenv.Must(w.t, err, "reading the read model")
	return s
}

func (w *world) webhooks() (ids, requests int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range w.received {
		ids++
		requests += n
	}
	return ids, requests
}

func (w *world) backfill(batch int) backfill.Progress {
	w.t.Helper()
	b, err := backfill.New(backfill.Config{BatchSize: batch, Rate: 1000, Logger: quiet()}, w.db)
	testenv.Must(w.t, err, "backfill.New")
	p, err := b.Run(context.Background())
	testenv.Must(w.t, err, "backfill")
	return p
}

// Rebuild from scratch: orders whose events never reached the topic (they predate it, as if
// retention had deleted them), a read model dropped, then a backfill through the outbox rebuilds
// the read model equal to the orders table. Backfilling again, even after the outbox rows are
// gone and the topic holds every state twice, changes nothing: the projector applies a version
// once and the endpoint gets each event id once.
func TestBackfillRebuildsTheReadModelAndNothingIsAppliedTwice(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	dsn := testenv.NewDatabase(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, dsn, 10)
	testenv.Must(t, err, "opening database")
	t.Cleanup(db.Close)
	prefix := testenv.UniqueName("ofbackfill")
	w := &world{t: t, dsn: dsn, topic: orderflow.PrefixedTopic(prefix, orderflow.AggregateOrder), db: db,
		conn: testenv.Connect(t, dsn), client: &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 15 * time.Second},
		projGroup: testenv.UniqueName("ofbackfill_proj"), group: testenv.UniqueName("ofbackfill_deliver"), received: map[string]int{}}
	t.Cleanup(func() {
		_, _ = w.client.DeleteTopics(context.Background(), &kafkago.DeleteTopicsRequest{Topics: []string{w.topic, projector.DLQTopic(w.topic)}})
	})
	_, err = db.SetStock(ctx, "sku-bf", 1_000_000)
	testenv.Must(t, err, "stocking")

	// Months ago: orders and their changes, none of which the topic holds any more.
	var old []string
	for i := range 20 {
		old = append(old, w.createOrder(i))
	}
	for i, id := range old[:12] {
		switch {
		case i < 6:
			w.change(id, orderflow.ActionFulfill, "")
		case i < 9:
			w.change(id, orderflow.ActionCancel, "customer asked ✓")
		default:
			w.change(id, orderflow.ActionCancel, "")
		}
	}

	// A webhook endpoint, and the pipeline as it runs today.
	hook := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		w.received[r.Header.Get("webhook-id")]++
		w.mu.Unlock()
		rw.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)
	secret, err := webhook.NewSecret()
	testenv.Must(t, err, "making a secret")
	_, err = db.CreateEndpoint(ctx, hook.URL, []string{orderflow.EventOrderCreated, orderflow.EventOrderCancelled, orderflow.EventOrderFulfilled}, secret)
	testenv.Must(t, err, "registering the endpoint")
	startCapture(t, w, brokers, prefix)
	proj, err := projector.New(projector.Config{Brokers: brokers, Topic: w.topic, GroupID: w.projGroup,
		CommitInterval: 100 * time.Millisecond, SessionTimeout: 6 * time.Second, Logger: quiet()}, db)
	testenv.Must(t, err, "projector.New")
	testenv.Start(t, "projector", proj.Run)
	// The test's endpoint listens on loopback, which the egress guard allows only when told.
	loopback, err := egress.NewPolicy("127.0.0.0/8")
	testenv.Must(w.t, err, "making the egress policy")
	dl, err := deliver.New(deliver.Config{Brokers: brokers, Topic: w.topic, GroupID: w.group, Poll: 50 * time.Millisecond, Logger: quiet(), Egress: loopback}, db)
	testenv.Must(t, err, "deliver.New")
	testenv.Start(t, "deliverer", dl.Run)

	// Live traffic flows: two new orders, one fulfilled.
	live := []string{w.createOrder(100), w.createOrder(101)}
	w.change(live[0], orderflow.ActionFulfill, "")
	w.waitConsumed(3)
	waitFor(t, "the live webhooks", func() (bool, string) {
		ids, _ := w.webhooks()
		return ids == 3, fmt.Sprintf("%d webhooks", ids)
	})
	if n := testenv.Count(t, w.conn, `SELECT count(*) FROM order_summary`); n != 2 {
		t.Fatalf("%d summaries before the backfill, want the 2 live orders only", n)
	}

	// Drop the read model, and rebuild it.
	_, err = w.conn.Exec(ctx, `TRUNCATE order_summary`)
	testenv.Must(t, err, "dropping the read model")
	p := w.backfill(7)
	if p.Total != 22 || p.Scanned != 22 || p.Emitted != 22 || p.Existing != 0 {
		t.Fatalf("first backfill %+v, want 22 orders re-emitted", p)
	}
	w.waitConsumed(3 + 22)
	if m := w.mismatches(); len(m) > 0 {
		t.Fatalf("the rebuilt read model differs from the orders table:\n%s", strings.Join(m, "\n"))
	}
	// The 20 old orders' states are new to the endpoint; the 2 live orders' current states are
	// facts it already received (same order, version and type), which the deliverer's intake
	// recognises (docs/RECONCILE.md, repair identity) and does not send again.
	waitFor(t, "the backfilled webhooks", func() (bool, string) {
		ids, _ := w.webhooks()
		return ids == 3+20, fmt.Sprintf("%d webhook ids", ids)
	})
	rows, err := w.conn.Query(ctx, `SELECT o.id::text, o.version, s.last_event_id::text, s.last_event_type FROM orders o JOIN order_summary s ON s.order_id = o.id`)
	testenv.Must(t, err, "reading event ids")
	for rows.Next() {
		var id, eventID, typ string
		var v int
		testenv.Must(t, rows.Scan(&id, &v, &eventID, &typ), "scanning")
		if eventID != orderflow.StateEventID(id, v, typ) {
			t.Errorf("order %s v%d was rebuilt from event %s, want the deterministic %s", id, v, eventID, orderflow.StateEventID(id, v, typ))
		}
	}
	testenv.Must(t, rows.Err(), "reading event ids")
	before := w.snapshot()
	deliveries := testenv.Count(t, w.conn, `SELECT count(*) FROM webhook_deliveries`)

	// Retention deleted the outbox rows; backfill again: every state goes to the topic a
	// second time with the same ids, and no consumer applies any of them.
	_, err = w.conn.Exec(ctx, `DELETE FROM outbox`)
	testenv.Must(t, err, "deleting the outbox rows")
	if p := w.backfill(50); p.Emitted != 22 {
		t.Fatalf("backfill after retention %+v, want 22 re-emitted", p)
	}
	w.waitConsumed(3 + 22 + 22)
	if after := w.snapshot(); after != before {
		t.Errorf("the read model changed on a second backfill:\n%s\nwas\n%s", after, before)
	}
	if n := testenv.Count(t, w.conn, `SELECT count(*) FROM webhook_deliveries`); n != deliveries {
		t.Errorf("%d deliveries after the second backfill, want still %d", n, deliveries)
	}
	if ids, requests := w.webhooks(); ids != 23 || requests != 23 {
		t.Errorf("endpoint got %d requests for %d ids, want each of the 23 facts once", requests, ids)
	}

	// With the rows still in the outbox, a third run writes nothing at all.
	if p := w.backfill(50); p.Emitted != 0 || p.Existing != 22 {
		t.Errorf("third backfill %+v, want all 22 already in the outbox", p)
	}
	if n := w.records(); n != 47 {
		t.Errorf("%d records after a backfill that wrote nothing, want 47", n)
	}
}

// startCapture runs the real capture daemon in-process, publishing to w's topic.
func startCapture(t *testing.T, w *world, brokers []string, prefix string) {
	t.Helper()
	slot := testenv.UniqueName("ofbfslot")
	c, err := capture.New(capture.Config{
		DatabaseURL: w.dsn, Slot: slot, Publication: testenv.UniqueName("ofbfpub"),
		TopicPrefix: prefix, AggregateTypes: []string{orderflow.AggregateOrder},
		Kafka:  capture.KafkaConfig{Brokers: brokers, Partitions: 3, ReplicationFactor: 1},
		Logger: quiet(),
	})
	testenv.Must(t, err, "capture.New")
	run := testenv.Start(t, "capture", c.Run)
	// Only changes committed after the slot exists are streamed: wait until it streams.
	waitFor(t, "capture to stream", func() (bool, string) {
		rec := httptest.NewRecorder()
		c.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code == http.StatusOK, rec.Body.String()
	})
	t.Cleanup(func() {
		_ = run.Stop(t)
		// The walsender takes a moment to let go of the slot; the database cannot be dropped
		// while it holds it.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, w.dsn)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		for ctx.Err() == nil {
			if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

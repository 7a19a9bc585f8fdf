package reconcile_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"orderflow"
	"orderflow/capture"
	"orderflow/consumers/projector"
	"orderflow/consumers/reconcile"
	"orderflow/internal/testenv"
	"orderflow/postgres"
)

// world is one test's database, topic and projector, with a relay standing in for capture.
type world struct {
	t       *testing.T
	dsn     string
	db      *postgres.DB
	conn    *pgx.Conn
	topic   string
	brokers []string
	writer  *kafka.Writer
	relayed map[string]bool
}

func newWorld(t *testing.T, withKafka bool) *world {
	t.Helper()
	w := &world{t: t, relayed: map[string]bool{}}
	if withKafka {
		w.brokers = testenv.KafkaBrokers(t)
	}
	w.dsn = testenv.NewDatabase(t)
	db, err := postgres.Open(context.Background(), w.dsn, 4)
	testenv.Must(t, err, "opening database")
	t.Cleanup(db.Close)
	w.db, w.conn = db, testenv.Connect(t, w.dsn)
	_, err = db.SetStock(context.Background(), "sku-r", 1000)
	testenv.Must(t, err, "stocking")
	return w
}

// startProjector creates the world's topic and runs a projector on it in-process.
func (w *world) startProjector() {
	t := w.t
	t.Helper()
	w.topic = testenv.UniqueName("ofrec") + ".order"
	client := &kafka.Client{Addr: kafka.TCP(w.brokers...), Timeout: 15 * time.Second}
	ctx := context.Background()
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: w.topic, NumPartitions: 2, ReplicationFactor: 1}}})
	testenv.Must(t, err, "creating topic")
	testenv.Must(t, resp.Errors[w.topic], "creating topic")
	t.Cleanup(func() {
		_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{w.topic, projector.DLQTopic(w.topic)}})
	})
	w.writer = &kafka.Writer{Addr: kafka.TCP(w.brokers...), Topic: w.topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	t.Cleanup(func() { _ = w.writer.Close() })
	p, err := projector.New(projector.Config{
		Brokers: w.brokers, Topic: w.topic, GroupID: testenv.UniqueName("ofrecgroup"),
		SessionTimeout: 6 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, w.db)
	testenv.Must(t, err, "projector.New")
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// relay publishes the outbox rows not yet published, in commit order, exactly as capture
// encodes them: the projector under test cannot tell the difference.
func (w *world) relay() int {
	t := w.t
	t.Helper()
	rows, err := w.conn.Query(context.Background(), `SELECT id::text, aggregate_type, aggregate_id, event_type,
		schema_version, payload::text, created_at FROM outbox ORDER BY created_at, id`)
	testenv.Must(t, err, "reading outbox")
	var msgs []kafka.Message
	for rows.Next() {
		var ev capture.Event
		var payload string
		testenv.Must(t, rows.Scan(&ev.ID, &ev.AggregateType, &ev.AggregateID, &ev.EventType, &ev.SchemaVersion, &payload, &ev.CreatedAt), "scanning outbox")
		if w.relayed[ev.ID] {
			continue
		}
		w.relayed[ev.ID] = true
		ev.Payload = []byte(payload)
		// As capture writes it: binary mode, the payload as the value.
		var headers []kafka.Header
		for _, h := range orderflow.AppendBinaryHeaders(nil, capture.CloudEvent(&ev)) {
			headers = append(headers, kafka.Header(h))
		}
		msgs = append(msgs, kafka.Message{Key: []byte(ev.AggregateID), Value: ev.Payload, Headers: headers})
	}
	testenv.Must(t, rows.Err(), "reading outbox")
	if len(msgs) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		testenv.Must(t, w.writer.WriteMessages(ctx, msgs...), "relaying outbox")
	}
	return len(msgs)
}

func respond(o *orderflow.Order, err error) orderflow.Response {
	if err != nil {
		return orderflow.Response{Status: 409, Body: []byte(`{}`)}
	}
	b, _ := json.Marshal(o)
	return orderflow.Response{Status: 201, Body: b}
}

func (w *world) createOrder() string {
	w.t.Helper()
	r, err := w.db.CreateOrder(context.Background(), orderflow.IdempotencyKey{ClientID: "test", Key: uuid.NewString(), Fingerprint: []byte("x")},
		orderflow.NewOrder{CustomerID: "cust-r", Currency: "EUR", Items: []orderflow.Item{{SKU: "sku-r", Quantity: 1, UnitPriceCents: 500}}}, respond)
	testenv.Must(w.t, err, "creating order")
	var o orderflow.Order
	testenv.Must(w.t, json.Unmarshal(r.Body, &o), "decoding order")
	return o.ID
}

func (w *world) fulfill(id string) {
	w.t.Helper()
	_, err := w.db.ChangeOrder(context.Background(), orderflow.AnyClient, orderflow.IdempotencyKey{ClientID: "test", Key: uuid.NewString(), Fingerprint: []byte("y")},
		id, orderflow.ActionFulfill, "", respond)
	testenv.Must(w.t, err, "fulfilling order")
}

// summaries returns order id -> "status v<version>".
func (w *world) summaries() map[string]string {
	w.t.Helper()
	rows, err := w.conn.Query(context.Background(), `SELECT order_id::text, status, version FROM order_summary`)
	testenv.Must(w.t, err, "reading summaries")
	out := map[string]string{}
	for rows.Next() {
		var id, status string
		var v int
		testenv.Must(w.t, rows.Scan(&id, &status, &v), "scanning")
		out[id] = fmt.Sprintf("%s v%d", status, v)
	}
	return out
}

func (w *world) waitSummaries(want map[string]string) {
	w.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := w.summaries()
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("summaries %v, want %v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func kinds(rep *reconcile.Report) map[string]string {
	out := map[string]string{}
	for _, d := range rep.Drift {
		out[d.OrderID+" "+string(d.Kind)] = d.Repair
	}
	return out
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestDeletedAndStaleSummariesAreReportedAndRepairedThroughTheOutbox(t *testing.T) {
	t.Parallel()
	w := newWorld(t, true)
	w.startProjector()
	a, b, c := w.createOrder(), w.createOrder(), w.createOrder()
	w.fulfill(b)
	w.relay()
	w.waitSummaries(map[string]string{a: "pending v1", b: "fulfilled v2", c: "pending v1"})

	// Drift: a's summary is gone, b's went back to an older version (a lost event).
	_, err := w.conn.Exec(context.Background(), `DELETE FROM order_summary WHERE order_id = $1`, a)
	testenv.Must(t, err, "deleting summary")
	_, err = w.conn.Exec(context.Background(), `UPDATE order_summary SET status = 'pending', version = 1 WHERE order_id = $1`, b)
	testenv.Must(t, err, "aging summary")
	// A later order the projector applies: the read model has moved past a's and b's changes,
	// so their drift is a loss, not a projector that is merely behind.
	time.Sleep(10 * time.Millisecond) // the freshness SLA below is 1 ms: let it pass
	d := w.createOrder()
	w.relay()
	w.waitSummaries(map[string]string{b: "pending v1", c: "pending v1", d: "pending v1"})
	time.Sleep(10 * time.Millisecond)

	cfg := reconcile.Config{FreshnessSLA: time.Millisecond, FulfillmentSLA: time.Hour, Logger: quiet()}
	// Pages of 2 orders: the scan crosses a page boundary and reports its progress.
	paged := cfg
	paged.PageSize = 2
	var progress []string
	paged.Progress = func(n, total int64) { progress = append(progress, fmt.Sprintf("%d/%d", n, total)) }
	rep, err := reconcile.New(paged, w.db).Run(context.Background())
	testenv.Must(t, err, "reconciling")
	if fmt.Sprint(progress) != "[2/4 4/4]" {
		t.Errorf("progress %v, want [2/4 4/4]", progress)
	}
	want := map[string]string{a + " missing_summary": "", b + " stale_summary": ""}
	if fmt.Sprint(kinds(rep)) != fmt.Sprint(want) || rep.OrdersScanned != 4 {
		t.Fatalf("report %v (%d orders), want %v", kinds(rep), rep.OrdersScanned, want)
	}

	// An order pending past the fulfillment SLA is reported, never repaired.
	open := cfg
	open.FulfillmentSLA = time.Millisecond
	open.Fix = true
	outboxBefore := testenv.Count(t, w.conn, `SELECT count(*) FROM outbox`)
	rep, err = reconcile.New(open, w.db).Run(context.Background())
	testenv.Must(t, err, "reconciling with --fix")
	want = map[string]string{a + " missing_summary": "published", a + " open_past_fulfillment_sla": "",
		b + " stale_summary": "published", c + " open_past_fulfillment_sla": "", d + " open_past_fulfillment_sla": ""}
	if fmt.Sprint(kinds(rep)) != fmt.Sprint(want) {
		t.Fatalf("report %v, want %v", kinds(rep), want)
	}
	if n := testenv.Count(t, w.conn, `SELECT count(*) FROM outbox`); n != outboxBefore+2 {
		t.Fatalf("outbox grew by %d, want 2 (one repair event per drifted order)", n-outboxBefore)
	}
	// The repair events carry each order's current state and version, under the fact's id.
	if n := testenv.Count(t, w.conn, `SELECT count(*) FROM outbox ob JOIN reconcile_repairs r ON r.event_id = ob.id
		JOIN orders o ON o.id = r.order_id
		WHERE (ob.payload->>'version')::int = o.version AND ob.payload->>'status' = o.status
		  AND ob.event_type = CASE o.status WHEN 'pending' THEN 'order.created' ELSE 'order.' || o.status END`); n != 2 {
		t.Fatalf("%d repair events carry the current state, want 2", n)
	}
	for id, fact := range map[string]string{a: orderflow.RepairEventID(a, 1, orderflow.EventOrderCreated),
		b: orderflow.RepairEventID(b, 2, orderflow.EventOrderFulfilled)} {
		if n := testenv.Count(t, w.conn, `SELECT count(*) FROM outbox WHERE id = $1 AND aggregate_id = $2`, fact, id); n != 1 {
			t.Errorf("no repair event with the fact's id %s for %s", fact, id)
		}
	}

	// A second --fix while the first repair is in flight writes nothing.
	fixOnly := cfg
	fixOnly.Fix = true
	rep, err = reconcile.New(fixOnly, w.db).Run(context.Background())
	testenv.Must(t, err, "reconciling with --fix again")
	want = map[string]string{a + " missing_summary": "in_flight", b + " stale_summary": "in_flight"}
	if fmt.Sprint(kinds(rep)) != fmt.Sprint(want) {
		t.Fatalf("second fix: report %v, want %v", kinds(rep), want)
	}
	if n := testenv.Count(t, w.conn, `SELECT count(*) FROM outbox`); n != outboxBefore+2 {
		t.Fatalf("second fix: outbox grew by %d in total, want still 2", n-outboxBefore)
	}

	// The repair events travel the normal way: outbox -> topic -> projector.
	if n := w.relay(); n != 2 {
		t.Fatalf("relayed %d events, want the 2 repairs", n)
	}
	w.waitSummaries(map[string]string{a: "pending v1", b: "fulfilled v2", c: "pending v1", d: "pending v1"})
	rep, err = reconcile.New(cfg, w.db).Run(context.Background())
	testenv.Must(t, err, "reconciling after the repair")
	if len(rep.Drift) != 0 {
		t.Fatalf("drift after the repair: %v", kinds(rep))
	}
}

// The delivery check looks at the fact each subscribed endpoint (by type or "*") got: an
// event with no delivery at all is undelivered and its repair restates that event's own fact,
// even after the order moved on; a delivery still being retried within the deliverer's
// horizon is never undelivered, and one pending past it is reported, not repaired.
func TestUndeliveredEventsAreReportedAndRepairedByTheirFact(t *testing.T) {
	t.Parallel()
	w := newWorld(t, false)
	ctx := context.Background()
	endpoint := func(types string) string {
		var id string
		testenv.Must(t, w.conn.QueryRow(ctx, `INSERT INTO webhook_endpoints (url, event_types, secret, created_at)
			VALUES ('http://127.0.0.1:1/hook', $1::text[], 'whsec_dGVzdA==', now() - interval '1 hour') RETURNING id::text`, types).Scan(&id), "registering endpoint")
		return id
	}
	created, all := endpoint("{order.created}"), endpoint("{*}")
	delivered, lost, pending := w.createOrder(), w.createOrder(), w.createOrder()
	w.fulfill(delivered) // order.fulfilled: only the "*" endpoint subscribes to it
	w.fulfill(lost)      // lost's order.created never reached the intake; its order moved on
	deliver := func(order, eventType, endpoint, state string) {
		t.Helper()
		_, err := w.conn.Exec(ctx, `INSERT INTO webhook_deliveries (event_id, endpoint_id, event_type, subject, payload, state, fact_version)
			SELECT ob.id::text, $2, ob.event_type, ob.aggregate_id, '{}'::bytea, $4, (ob.payload->>'version')::int FROM outbox ob
			WHERE ob.aggregate_id = $1 AND ob.event_type = $3`, order, endpoint, eventType, state)
		testenv.Must(t, err, "recording delivery")
	}
	for _, ep := range []string{created, all} {
		deliver(delivered, "order.created", ep, "succeeded")
		deliver(pending, "order.created", ep, "pending")
	}
	deliver(delivered, "order.fulfilled", all, "succeeded")
	deliver(lost, "order.fulfilled", all, "dead") // a dead letter is the deliverer's to report
	time.Sleep(10 * time.Millisecond)

	cfg := reconcile.Config{FreshnessSLA: time.Hour, DeliverySLA: time.Millisecond, Logger: quiet()}
	rep, err := reconcile.New(cfg, w.db).Run(ctx)
	testenv.Must(t, err, "reconciling")
	got := map[string]string{}
	for _, d := range rep.Drift {
		got[d.OrderID+" "+d.EndpointID+" "+string(d.Kind)] = d.Detail
	}
	want := map[string]string{
		lost + " " + created + " undelivered_event": "order.created: no delivery of this fact to the endpoint",
		lost + " " + all + " undelivered_event":     "order.created: no delivery of this fact to the endpoint",
	}
	if !rep.Deliveries || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("findings %v, want %v (a delivery within the horizon is never undelivered)", got, want)
	}

	// --fix restates lost's order.created (v1), not its current state (fulfilled v2), which the
	// order.created endpoint would never receive.
	fix := cfg
	fix.Fix = true
	rep, err = reconcile.New(fix, w.db).Run(ctx)
	testenv.Must(t, err, "reconciling with --fix")
	repair := orderflow.RepairEventID(lost, 1, orderflow.EventOrderCreated)
	for _, d := range rep.Drift {
		if d.Repair != reconcile.RepairPublished || d.RepairEventID != repair {
			t.Errorf("finding %+v, want published as %s", d, repair)
		}
	}
	if n := testenv.Count(t, w.conn, `SELECT count(*) FROM outbox WHERE id = $1 AND event_type = 'order.created'
		AND (payload->>'version')::int = 1`, repair); n != 1 {
		t.Fatalf("%d repair events restating lost's order.created v1, want 1", n)
	}
	// The intake takes the repair like any event: the fact now has a delivery for both.
	for _, ep := range []string{created, all} {
		_, err := w.conn.Exec(ctx, `INSERT INTO webhook_deliveries (event_id, endpoint_id, event_type, subject, payload, fact_version)
			VALUES ($1, $2, 'order.created', $3, '{}'::bytea, 1)`, repair, ep, lost)
		testenv.Must(t, err, "delivering the repair")
	}
	rep, err = reconcile.New(fix, w.db).Run(ctx)
	testenv.Must(t, err, "reconciling after the repair")
	if rep.Counts[reconcile.KindUndelivered] != 0 {
		t.Fatalf("findings after the repair reached the intake: %v", rep.Drift)
	}

	// Past the deliverer's horizon, a pending delivery is reported (the deliverer is not
	// settling it), and not repaired.
	past := fix
	past.DeliveryHorizon = time.Millisecond
	rep, err = reconcile.New(past, w.db).Run(ctx)
	testenv.Must(t, err, "reconciling with a short horizon")
	if rep.Counts[reconcile.KindPastHorizon] != 4 { // pending and lost's repair, each to two endpoints
		t.Fatalf("findings %+v, want 4 deliveries past the horizon", rep.Drift)
	}
	for _, d := range rep.Drift {
		if d.Repair != "" {
			t.Errorf("finding past the horizon was repaired: %+v", d)
		}
	}
}

func TestCommandPrintsATableAndJSON(t *testing.T) {
	t.Parallel()
	w := newWorld(t, false)
	id := w.createOrder()
	bin := testenv.Binary(t)
	time.Sleep(10 * time.Millisecond)
	run := func(args ...string) []byte {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, append([]string{"reconcile", "-freshness-sla", "1ms"}, args...)...)
		cmd.Env = append(os.Environ(), "DATABASE_URL="+w.dsn)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("reconcile %v: %v\n%s", args, err, stderr.String())
		}
		return stdout.Bytes()
	}
	table := string(run())
	if !strings.Contains(table, "missing_summary") || !strings.Contains(table, id) || !strings.Contains(table, "KIND") {
		t.Fatalf("table does not name the order:\n%s", table)
	}
	var rep reconcile.Report
	testenv.Must(t, json.Unmarshal(run("-json"), &rep), "decoding -json")
	if rep.Counts[reconcile.KindMissingSummary] != 1 || rep.Drift[0].OrderID != id {
		t.Fatalf("json report %+v", rep)
	}

	// As a daemon it exports the drift and stops cleanly on SIGTERM.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.Must(t, err, "finding a free port")
	addr := ln.Addr().String()
	ln.Close()
	var logs bytes.Buffer
	cmd := exec.Command(bin, "reconcile", "-every", "200ms", "-freshness-sla", "1ms", "-http-addr", addr)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+w.dsn)
	cmd.Stderr = &logs
	testenv.Must(t, cmd.Start(), "starting the daemon")
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), `orderflow_reconcile_drift{kind="missing_summary"} 1`) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no drift gauge within 30 s; logs:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	testenv.Must(t, cmd.Process.Signal(syscall.SIGTERM), "stopping the daemon")
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("daemon exited with %v after SIGTERM; logs:\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not stop within 30 s of SIGTERM")
	}
}

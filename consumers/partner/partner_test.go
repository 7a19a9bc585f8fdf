package partner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"orderflow"
	"orderflow/api"
	"orderflow/consumers/deliver"
	"orderflow/consumers/partner"
	"orderflow/internal/testenv"
	"orderflow/postgres"
	"orderflow/webhook"
)

const (
	clientKey  = "partner-test-client-key"
	adminKey   = "partner-test-admin-key"
	partnerKey = "partner-test-partner-key"
)

// env is one saga: the API, a topic standing in for capture's, a deliverer and a partner
// address, all on the test's own database.
type env struct {
	t       *testing.T
	dsn     string
	db      *postgres.DB
	sql     *pgx.Conn
	apiURL  string
	brokers []string
	topic   string
	addr    string // where the partner listens (when it runs)
	secret  string
	log     *slog.Logger
	writer  *kafka.Writer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dsn := testenv.NewDatabase(t)
	brokers := testenv.KafkaBrokers(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, dsn, 20)
	testenv.Must(t, err, "opening database")
	t.Cleanup(db.Close)
	e := &env{t: t, dsn: dsn, db: db, sql: testenv.Connect(t, dsn), brokers: brokers,
		topic: testenv.UniqueName("ofpartner"), addr: freeAddr(t), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if os.Getenv("ORDERFLOW_TEST_LOG") != "" {
		e.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	_, err = e.sql.Exec(ctx, `INSERT INTO api_clients (id, name, key_sha256, role) VALUES
		('client', 'test client', sha256($1::bytea), 'client'), ('admin', 'test admin', sha256($2::bytea), 'admin'),
		('partner', 'mock partner', sha256($3::bytea), 'fulfiller')`, []byte(clientKey), []byte(adminKey), []byte(partnerKey))
	testenv.Must(t, err, "seeding api clients")
	srv := httptest.NewServer(api.New(db, e.log))
	t.Cleanup(srv.Close)
	e.apiURL = srv.URL

	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 20 * time.Second}
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: e.topic, NumPartitions: 3, ReplicationFactor: 1}}})
	if err != nil || resp.Errors[e.topic] != nil {
		t.Fatalf("creating topic: %v %v", err, resp)
	}
	t.Cleanup(func() {
		_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{e.topic}})
	})
	e.writer = &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: e.topic, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{}, BatchTimeout: 5 * time.Millisecond}
	t.Cleanup(func() { _ = e.writer.Close() })

	ep, err := e.db.CreateEndpoint(ctx, "http://"+e.addr+"/partner-hook", []string{orderflow.EventOrderCreated}, mustSecret(t))
	testenv.Must(t, err, "registering the partner")
	e.secret = ep.Secret
	return e
}

func mustSecret(t *testing.T) string {
	t.Helper()
	s, err := webhook.NewSecret()
	testenv.Must(t, err, "making secret")
	return s
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (e *env) call(method, path, key, body string, headers ...string) (int, map[string]any) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.apiURL+path, strings.NewReader(body))
	testenv.Must(e.t, err, "building request")
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	testenv.Must(e.t, err, method+" "+path)
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func (e *env) stock(sku string, n int) {
	e.t.Helper()
	if s, m := e.call(http.MethodPut, "/v1/inventory/"+sku, adminKey, fmt.Sprintf(`{"stock": %d}`, n)); s != http.StatusOK {
		e.t.Fatalf("stocking %s: %d %v", sku, s, m)
	}
}

// order creates an order through the API and returns its id.
func (e *env) order(key string, items ...orderflow.Item) string {
	e.t.Helper()
	b, _ := json.Marshal(map[string]any{"customer_id": "cust-" + key, "currency": "EUR", "items": items})
	s, m := e.call(http.MethodPost, "/v1/orders", clientKey, string(b), "Idempotency-Key", key)
	if s != http.StatusCreated {
		e.t.Fatalf("creating order: %d %v", s, m)
	}
	return m["id"].(string)
}

// publish plays capture's part: every outbox row not yet published goes to the topic in the
// contract's format.
func (e *env) publish(published map[string]bool) {
	e.t.Helper()
	ctx := context.Background()
	rows, err := e.sql.Query(ctx, `SELECT id::text, aggregate_id, event_type, schema_version, payload::text, created_at FROM outbox ORDER BY created_at, id`)
	testenv.Must(e.t, err, "reading outbox")
	var msgs []kafka.Message
	for rows.Next() {
		var ev orderflow.CloudEvent
		var payload string
		testenv.Must(e.t, rows.Scan(&ev.ID, &ev.Subject, &ev.Type, &ev.SchemaVersion, &payload, &ev.Time), "scanning outbox")
		if published[ev.ID] {
			continue
		}
		published[ev.ID] = true
		ev.SpecVersion, ev.Source, ev.DataContentType = "1.0", orderflow.EventSource, orderflow.ContentTypeJSON
		ev.DataSchema = orderflow.DataSchema(ev.Type, ev.SchemaVersion)
		// As capture writes it: binary mode, the payload as the value, then the position.
		var headers []kafka.Header
		for _, h := range orderflow.AppendBinaryHeaders(nil, &ev) {
			headers = append(headers, kafka.Header(h))
		}
		headers = append(headers, kafka.Header{Key: orderflow.HeaderLSN, Value: []byte("0/0")},
			kafka.Header{Key: orderflow.HeaderSeq, Value: []byte(strconv.Itoa(len(msgs)))})
		msgs = append(msgs, kafka.Message{Key: []byte(ev.Subject), Value: []byte(payload), Headers: headers})
	}
	testenv.Must(e.t, rows.Err(), "reading outbox")
	if len(msgs) == 0 {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		err := e.writer.WriteMessages(wctx, msgs...)
		if err == nil {
			return
		}
		if wctx.Err() != nil {
			e.t.Fatalf("producing: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startDeliverer runs a deliverer with small backoffs until the test ends.
func (e *env) startDeliverer(policy func(*deliver.Policy)) {
	e.t.Helper()
	p := deliver.Policy{Timeout: time.Second, MaxAttempts: 100, MaxAge: time.Hour, BaseBackoff: 20 * time.Millisecond,
		MaxBackoff: 250 * time.Millisecond, MaxRetryAfter: time.Second}
	if policy != nil {
		policy(&p)
	}
	s, err := deliver.New(deliver.Config{Brokers: e.brokers, Topic: e.topic, GroupID: testenv.UniqueName("ofpartner_group"),
		Policy: p, Workers: 8, PerEndpoint: 4, Poll: 50 * time.Millisecond, Lease: time.Second, Logger: e.log,
		Egress: loopbackOnly(e.t)}, e.db)
	testenv.Must(e.t, err, "creating deliverer")
	e.run("deliverer", s.Run)
}

func (e *env) run(name string, fn func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("%s stopped with %v", name, err)
				}
			case <-time.After(30 * time.Second):
				e.t.Errorf("%s did not stop within 30 s", name)
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

func (e *env) partnerConfig() partner.Config {
	return partner.Config{DatabaseURL: e.dsn, Secrets: []string{e.secret}, APIURL: e.apiURL, APIKey: partnerKey,
		FulfillDelay: 50 * time.Millisecond, UnknownSKU: regexp.MustCompile(`^UNKNOWN-`), Addr: e.addr,
		CallbackBackoff: 50 * time.Millisecond, CallbackMaxBackoff: 500 * time.Millisecond, CallbackPoll: 50 * time.Millisecond, Logger: e.log}
}

// startPartner runs the partner on e.addr and waits until it answers.
func (e *env) startPartner(cfg partner.Config) (*partner.Partner, func()) {
	e.t.Helper()
	p, err := partner.New(context.Background(), cfg)
	testenv.Must(e.t, err, "creating partner")
	stop := e.run("partner", p.Run)
	e.t.Cleanup(p.Close)
	eventually(e.t, "partner ready", 10*time.Second, func() bool {
		resp, err := http.Get("http://" + e.addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p, func() { stop(); p.Close() }
}

func (e *env) count(query string, args ...any) int64 {
	e.t.Helper()
	return testenv.Count(e.t, e.sql, query, args...)
}

func (e *env) status(id string) (orderflow.Status, string) {
	e.t.Helper()
	var s, reason string
	testenv.Must(e.t, e.sql.QueryRow(context.Background(), `SELECT status, coalesce(cancel_reason, '') FROM orders WHERE id = $1`, id).Scan(&s, &reason), "reading order")
	return orderflow.Status(s), reason
}

func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s", what, within)
}

func TestPartnerDownThenUpReceivesEachEventOnceAndFulfills(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stock("SKU-A", 100)
	var ids []string
	for i := range 5 {
		ids = append(ids, e.order(fmt.Sprint("down-", i), orderflow.Item{SKU: "SKU-A", Quantity: 2, UnitPriceCents: 990}))
	}
	e.publish(map[string]bool{})
	e.startDeliverer(nil)

	// Nobody listens yet: every delivery fails at least twice.
	eventually(t, "failed attempts while the partner is down", 60*time.Second, func() bool {
		return e.count(`SELECT count(*) FROM webhook_deliveries WHERE attempts >= 2 AND state = 'pending'`) == 5
	})
	// Up, but with a long callback delay, then down again before the callbacks: the receipts
	// must carry the work over the restart.
	cfg := e.partnerConfig()
	cfg.FulfillDelay = time.Hour
	_, stop := e.startPartner(cfg)
	eventually(t, "receipts", 60*time.Second, func() bool { return e.count(`SELECT count(*) FROM partner.receipts`) == 5 })
	stop()
	if n := e.count(`SELECT count(*) FROM partner.callbacks WHERE state = 'pending'`); n != 5 {
		t.Fatalf("%d pending callbacks after the partner stopped, want 5", n)
	}
	_, err := e.sql.Exec(context.Background(), `UPDATE partner.callbacks SET due_at = now()`) // the hour "passes"
	testenv.Must(t, err, "advancing callbacks")
	e.startPartner(e.partnerConfig())

	eventually(t, "orders fulfilled", 60*time.Second, func() bool {
		return e.count(`SELECT count(*) FROM orders WHERE status = 'fulfilled'`) == 5
	})
	eventually(t, "deliveries succeeded", 30*time.Second, func() bool {
		return e.count(`SELECT count(*) FROM webhook_deliveries WHERE state = 'succeeded'`) == 5
	})
	if n := e.count(`SELECT count(*) FROM partner.receipts`); n != 5 {
		t.Fatalf("%d receipts, want exactly one per event", n)
	}
	if n := e.count(`SELECT count(*) FROM outbox WHERE event_type = 'order.fulfilled'`); n != 5 {
		t.Fatalf("%d order.fulfilled events, want one per order", n)
	}
	for _, id := range ids {
		if s, _ := e.status(id); s != orderflow.StatusFulfilled {
			t.Fatalf("order %s is %s", id, s)
		}
	}
	var stock, reserved int64
	testenv.Must(t, e.sql.QueryRow(context.Background(), `SELECT stock, reserved FROM inventory WHERE sku = 'SKU-A'`).Scan(&stock, &reserved), "inventory")
	if stock != 90 || reserved != 0 {
		t.Fatalf("SKU-A stock %d reserved %d, want 90 and 0", stock, reserved)
	}
}

func TestCommitThen500LeavesOneReceiptAndOneCallback(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stock("SKU-A", 100)
	for i := range 3 {
		e.order(fmt.Sprint("c500-", i), orderflow.Item{SKU: "SKU-A", Quantity: 1, UnitPriceCents: 500})
	}
	cfg := e.partnerConfig()
	cfg.Faults.CommitThen500Rate = 1
	p, _ := e.startPartner(cfg)
	e.publish(map[string]bool{})
	e.startDeliverer(nil)

	// Every webhook is stored and then answered 500, at least twice.
	eventually(t, "retries of committed webhooks", 60*time.Second, func() bool {
		return e.count(`SELECT count(*) FROM (SELECT webhook_id FROM partner.faults WHERE kind = 'commit_then_500'
			GROUP BY webhook_id HAVING count(*) >= 2) x`) == 3
	})
	testenv.Must(t, p.SetFaults(partner.Faults{}), "switching faults off")
	eventually(t, "deliveries succeeded", 60*time.Second, func() bool {
		return e.count(`SELECT count(*) FROM webhook_deliveries WHERE state = 'succeeded'`) == 3
	})
	eventually(t, "orders fulfilled", 60*time.Second, func() bool {
		return e.count(`SELECT count(*) FROM orders WHERE status = 'fulfilled'`) == 3
	})
	if r, c := e.count(`SELECT count(*) FROM partner.receipts`), e.count(`SELECT count(*) FROM partner.callbacks`); r != 3 || c != 3 {
		t.Fatalf("%d receipts and %d callbacks, want 3 and 3", r, c)
	}
	if n := e.count(`SELECT count(*) FROM outbox WHERE event_type = 'order.fulfilled'`); n != 3 {
		t.Fatalf("%d order.fulfilled events, want 3", n)
	}
}

func TestRejectedOrderEndsCancelledWithItsStockReleased(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stock("SKU-A", 10)
	e.stock("UNKNOWN-X", 5)
	good := e.order("good", orderflow.Item{SKU: "SKU-A", Quantity: 2, UnitPriceCents: 1000})
	bad := e.order("bad", orderflow.Item{SKU: "SKU-A", Quantity: 1, UnitPriceCents: 1000}, orderflow.Item{SKU: "UNKNOWN-X", Quantity: 3, UnitPriceCents: 50})
	e.startPartner(e.partnerConfig())
	e.publish(map[string]bool{})
	e.startDeliverer(nil)

	eventually(t, "both orders final", 60*time.Second, func() bool {
		return e.count(`SELECT count(*) FROM orders WHERE status <> 'pending'`) == 2
	})
	if s, _ := e.status(good); s != orderflow.StatusFulfilled {
		t.Fatalf("good order is %s, want fulfilled", s)
	}
	s, reason := e.status(bad)
	if s != orderflow.StatusCancelled || !strings.Contains(reason, "UNKNOWN-X") {
		t.Fatalf("bad order is %s (%q), want cancelled naming UNKNOWN-X", s, reason)
	}
	for sku, want := range map[string][2]int64{"SKU-A": {8, 0}, "UNKNOWN-X": {5, 0}} {
		var stock, reserved int64
		testenv.Must(t, e.sql.QueryRow(context.Background(), `SELECT stock, reserved FROM inventory WHERE sku = $1`, sku).Scan(&stock, &reserved), "inventory")
		if stock != want[0] || reserved != want[1] {
			t.Fatalf("%s: stock %d reserved %d, want %d and %d", sku, stock, reserved, want[0], want[1])
		}
	}
	// The API saw exactly one call per order, keyed by the event id.
	if n := e.count(`SELECT count(*) FROM idempotency_keys WHERE client_id = 'partner'`); n != 2 {
		t.Fatalf("%d partner requests stored, want 2", n)
	}
}

func TestHookVerifiesDedupesAndRefuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.partnerConfig()
	p, err := partner.New(context.Background(), cfg)
	testenv.Must(t, err, "creating partner")
	t.Cleanup(p.Close)
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)

	body := []byte(`{"specversion":"1.0","id":"evt-1","source":"/t","type":"order.cancelled","subject":"o-1","time":"2026-01-01T00:00:00Z","datacontenttype":"application/json","schemaversion":1,"data":{"id":"o-1","version":2}}`)
	post := func(id string, ts time.Time, secret string, b []byte) int {
		sig, err := webhook.Sign(secret, id, ts, b)
		testenv.Must(t, err, "signing")
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/partner-hook", bytes.NewReader(b))
		req.Header.Set(webhook.HeaderID, id)
		req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		req.Header.Set(webhook.HeaderSignature, sig)
		resp, err := http.DefaultClient.Do(req)
		testenv.Must(t, err, "posting")
		resp.Body.Close()
		return resp.StatusCode
	}
	now := time.Now()
	cases := []struct {
		name   string
		id     string
		ts     time.Time
		secret string
		body   []byte
		want   int
	}{
		{"valid", "evt-1", now, e.secret, body, 200},
		{"same webhook-id again", "evt-1", now, e.secret, body, 200},
		{"other secret", "evt-2", now, mustSecret(t), body, 401},
		{"six minutes old", "evt-3", now.Add(-6 * time.Minute), e.secret, body, 401},
		{"six minutes ahead", "evt-4", now.Add(6 * time.Minute), e.secret, body, 401},
		{"not a cloudevent", "evt-5", now, e.secret, []byte(`{"hello": 1}`), 400},
	}
	for _, c := range cases { // in order: the duplicate follows the first
		if got := post(c.id, c.ts, c.secret, c.body); got != c.want {
			t.Errorf("%s: status %d, want %d", c.name, got, c.want)
		}
	}
	if n := e.count(`SELECT count(*) FROM partner.receipts`); n != 1 {
		t.Fatalf("%d receipts, want 1", n)
	}
}

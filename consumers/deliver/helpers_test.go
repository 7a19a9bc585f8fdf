package deliver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"orderflow"
	"orderflow/consumers/deliver"
	"orderflow/internal/testenv"
	"orderflow/postgres"
	"orderflow/webhook"
)

// env is one test's database, topic and consumer group.
type env struct {
	t       *testing.T
	dsn     string
	db      *postgres.DB
	sql     *pgx.Conn
	brokers []string
	topic   string
	group   string
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
		topic: testenv.UniqueName("ofdeliver"), group: testenv.UniqueName("ofdeliver_group")}
	mustCreateTopic(t, brokers, e.topic, 3)
	e.writer = &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: e.topic, RequiredAcks: kafka.RequireAll,
		Balancer: &kafka.Hash{}, BatchTimeout: 5 * time.Millisecond}
	t.Cleanup(func() { _ = e.writer.Close() })
	return e
}

func mustCreateTopic(t *testing.T, brokers []string, topic string, partitions int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 20 * time.Second}
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}}})
	if err != nil || resp.Errors[topic] != nil {
		t.Fatalf("creating topic %s: %v %v", topic, err, resp)
	}
	t.Cleanup(func() {
		_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	})
}

// event builds an order event and its structured JSON form: the webhook body, and the record
// value of the records from before the switch to binary mode.
func event(t *testing.T, evType string) (orderflow.CloudEvent, []byte) {
	t.Helper()
	orderID := uuid.NewString()
	now := time.Now().UTC().Truncate(time.Microsecond)
	o := orderflow.Order{ID: orderID, CustomerID: "cust-1", Currency: "EUR", Status: orderflow.StatusPending,
		Items: []orderflow.Item{{SKU: "SKU-A", Quantity: 1, UnitPriceCents: 1250}}, TotalCents: 1250, Version: 1, CreatedAt: now, UpdatedAt: now}
	data, err := json.Marshal(o)
	testenv.Must(t, err, "encoding order")
	ev := orderflow.CloudEvent{SpecVersion: "1.0", ID: uuid.NewString(), Source: "/orderflow/outbox", Type: evType,
		Subject: orderID, Time: now, DataContentType: "application/json", SchemaVersion: 1, Data: data}
	return ev, orderflow.AppendCloudEvent(nil, &ev)
}

var seq int

// produce writes the events of structured values as capture does: binary mode, key = subject,
// the ce_ headers, the order as the value, then pg_lsn and pg_seq.
func (e *env) produce(values ...[]byte) {
	e.t.Helper()
	e.write(e.messages(false, values))
}

// produceLegacy writes structured values as capture did before the switch to binary mode: the
// value as is, headers ce_id, ce_type, pg_lsn, pg_seq.
func (e *env) produceLegacy(values ...[]byte) {
	e.t.Helper()
	e.write(e.messages(true, values))
}

func (e *env) messages(legacy bool, values [][]byte) []kafka.Message {
	e.t.Helper()
	msgs := make([]kafka.Message, len(values))
	for i, v := range values {
		ev, err := orderflow.DecodeCloudEvent(v)
		testenv.Must(e.t, err, "decoding test event")
		seq++
		position := []kafka.Header{
			{Key: orderflow.HeaderLSN, Value: []byte(fmt.Sprintf("0/%X", 0x1000000+seq))},
			{Key: orderflow.HeaderSeq, Value: []byte("0")},
		}
		if legacy {
			msgs[i] = kafka.Message{Key: []byte(ev.Subject), Value: v, Headers: append([]kafka.Header{
				{Key: orderflow.HeaderEventID, Value: []byte(ev.ID)},
				{Key: orderflow.HeaderEventType, Value: []byte(ev.Type)},
			}, position...)}
			continue
		}
		var headers []kafka.Header
		for _, h := range orderflow.AppendBinaryHeaders(nil, ev) {
			headers = append(headers, kafka.Header(h))
		}
		msgs[i] = kafka.Message{Key: []byte(ev.Subject), Value: ev.Data, Headers: append(headers, position...)}
	}
	return msgs
}

// produceRaw writes values as they are, in order on one key: crafted records capture would
// never write.
func (e *env) produceRaw(values ...[]byte) {
	e.t.Helper()
	msgs := make([]kafka.Message, len(values))
	for i, v := range values {
		msgs[i] = kafka.Message{Key: []byte("crafted"), Value: v}
	}
	e.write(msgs)
}

func (e *env) write(msgs []kafka.Message) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// A new topic's partitions get their leaders a moment after creation.
	var err error
	for ctx.Err() == nil {
		if err = e.writer.WriteMessages(ctx, msgs...); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("producing: %v", err)
}

// metricsURL serves svc's ops handler until the test ends and returns its /metrics URL.
func metricsURL(t *testing.T, svc *deliver.Service) string {
	t.Helper()
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return srv.URL + "/metrics"
}

// lagZero reports whether the exposition m shows the consumer lag of every partition at 0.
func lagZero(m string) bool {
	series := 0
	for _, line := range strings.Split(m, "\n") {
		if strings.HasPrefix(line, "orderflow_deliver_consumer_lag{") {
			if !strings.HasSuffix(line, " 0") {
				return false
			}
			series++
		}
	}
	return series > 0
}

// fastPolicy keeps the suite quick: tiny backoffs, short timeouts.
func fastPolicy() deliver.Policy {
	return deliver.Policy{Timeout: 2 * time.Second, MaxAttempts: 50, MaxAge: time.Hour,
		BaseBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, MaxRetryAfter: time.Second}
}

// start runs a deliverer until the test ends.
func (e *env) start(mod func(*deliver.Config)) *deliver.Service {
	e.t.Helper()
	cfg := deliver.Config{Brokers: e.brokers, Topic: e.topic, GroupID: e.group, Policy: fastPolicy(),
		Workers: 16, PerEndpoint: 4, Poll: 50 * time.Millisecond, StatsEvery: 200 * time.Millisecond,
		Lease: time.Second, Logger: quietLogger(), Egress: loopbackOnly(e.t)}
	if os.Getenv("ORDERFLOW_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := deliver.New(cfg, e.db)
	testenv.Must(e.t, err, "creating deliverer")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				e.t.Errorf("deliverer stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			e.t.Error("deliverer did not stop within 30 s")
		}
	})
	return s
}

// quietLogger discards logs unless ORDERFLOW_TEST_LOG is set.
func quietLogger() *slog.Logger {
	if os.Getenv("ORDERFLOW_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (e *env) endpoint(url string, types ...string) orderflow.Endpoint {
	e.t.Helper()
	secret, err := webhook.NewSecret()
	testenv.Must(e.t, err, "making secret")
	ep, err := e.db.CreateEndpoint(context.Background(), url, types, secret)
	testenv.Must(e.t, err, "creating endpoint")
	return ep
}

func (e *env) count(query string, args ...any) int64 {
	e.t.Helper()
	return testenv.Count(e.t, e.sql, query, args...)
}

// eventually polls cond until it holds or the deadline passes; tests wait on outcomes, they
// never assert how long something took.
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

// receiver is a partner endpoint that verifies every request and counts what it accepted.
type receiver struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	secrets []string
	// answer decides the status for the n-th request (n from 1) carrying this webhook-id.
	answer   func(id string, n int) int
	calls    map[string]int
	accepted map[string]int
	bodies   map[string][]byte
	sigs     map[string]string
	badSig   int
}

func newReceiver(t *testing.T, answer func(id string, n int) int) *receiver {
	r := &receiver{t: t, answer: answer, calls: map[string]int{}, accepted: map[string]int{}, bodies: map[string][]byte{}, sigs: map[string]string{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) setSecrets(s ...string) {
	r.mu.Lock()
	r.secrets = s
	r.mu.Unlock()
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	id := req.Header.Get(webhook.HeaderID)
	r.mu.Lock()
	secrets := r.secrets
	r.calls[id]++
	n := r.calls[id]
	r.sigs[id] = req.Header.Get(webhook.HeaderSignature)
	r.mu.Unlock()
	if err := webhook.Verify(secrets, id, req.Header.Get(webhook.HeaderTimestamp), req.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
		r.mu.Lock()
		r.badSig++
		r.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	status := http.StatusNoContent
	if r.answer != nil {
		status = r.answer(id, n)
	}
	if status == -1 { // hang until the sender gives up
		<-req.Context().Done()
		return
	}
	if status >= 200 && status < 300 {
		r.mu.Lock()
		r.accepted[id]++
		r.bodies[id] = body
		r.mu.Unlock()
	}
	w.WriteHeader(status)
}

func (r *receiver) acceptedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.accepted)
}

func (r *receiver) snapshot() (calls, accepted map[string]int, badSig int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	calls, accepted = map[string]int{}, map[string]int{}
	for k, v := range r.calls {
		calls[k] = v
	}
	for k, v := range r.accepted {
		accepted[k] = v
	}
	return calls, accepted, r.badSig
}

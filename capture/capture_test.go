package capture_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"orderflow"
	"orderflow/capture"
)

// TestRecordsFollowTheContract checks one multi-row transaction and one single-row
// transaction end to end: topic, key, headers and the CloudEvent in binary mode.
func TestRecordsFollowTheContract(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := startCapture(t, e.config())
	r.waitStreaming(t)

	ctx := context.Background()
	key := uuid.NewString()
	ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	payload := `{"b": [1, 2.50, "x"], "a": {"nested": true}, "text": "tab\there \"q\" ü"}`
	tx, err := e.db.Begin(ctx)
	mustOK(t, err)
	for i, id := range ids {
		_, err := tx.Exec(ctx, `INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, schema_version, payload, created_at)
			VALUES ($1, 'order', $2, $3, 2, $4, '2026-01-02T03:04:05.123456Z')`, id, key, []string{"order.created", "order.cancelled", "order.fulfilled"}[i], payload)
		mustOK(t, err)
	}
	mustOK(t, tx.Commit(ctx))
	single := uuid.NewString()
	_, err = e.db.Exec(ctx, `INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, schema_version, payload)
		VALUES ($1, 'order', $2, 'order.created', 1, '{}')`, single, key)
	mustOK(t, err)

	waitDrained(t, e, 4, 60*time.Second)
	recs := readTopic(t, e.brokers, e.topic())
	if len(recs) != 4 {
		t.Fatalf("want 4 records, got %d", len(recs))
	}
	var wantData string
	mustOK(t, e.db.QueryRow(ctx, `SELECT payload::text FROM outbox WHERE id = $1`, ids[0]).Scan(&wantData))
	byID := map[string]record{}
	for _, rec := range recs {
		byID[rec.ce.ID] = rec
	}
	first := byID[ids[0]]
	for i, id := range ids {
		rec, ok := byID[id]
		if !ok {
			t.Fatalf("event %s missing", id)
		}
		ce := rec.ce
		if rec.key != key || ce.Subject != key {
			t.Errorf("key %q subject %q, want %q", rec.key, ce.Subject, key)
		}
		if ce.SpecVersion != "1.0" || ce.Source != orderflow.EventSource || ce.DataContentType != "application/json" || ce.SchemaVersion != 2 {
			t.Errorf("cloudevent attributes: %+v", ce)
		}
		if ce.Time != "2026-01-02T03:04:05.123456Z" {
			t.Errorf("time %q", ce.Time)
		}
		if string(ce.Data) != wantData {
			t.Errorf("data %s, want the payload verbatim %s", ce.Data, wantData)
		}
		if ce.DataSchema != orderflow.DataSchema(ce.Type, 2) || ce.DataSchema == "" {
			t.Errorf("dataschema %q, want the schema of %s v2", ce.DataSchema, ce.Type)
		}
		if rec.headers["ce_id"] != id || rec.headers["ce_type"] != ce.Type || rec.headers["content-type"] != "application/json" {
			t.Errorf("headers %v", rec.headers)
		}
		if rec.headers["pg_lsn"] != first.headers["pg_lsn"] {
			t.Errorf("rows of one transaction have different pg_lsn: %v vs %v", rec.headers, first.headers)
		}
		if want := []string{"0", "1", "2"}[i]; rec.headers["pg_seq"] != want {
			t.Errorf("pg_seq %q, want %s", rec.headers["pg_seq"], want)
		}
	}
	last := byID[single]
	if last.headers["pg_seq"] != "0" || !position(t, last).After(position(t, first)) {
		t.Errorf("second transaction's position %v not after the first's %v", last.headers, first.headers)
	}
	// All of one key's events land in one partition, in commit order.
	checkPerKeyOrder(t, recs)
	for _, rec := range recs {
		if rec.partition != first.partition {
			t.Errorf("one key on partitions %d and %d", rec.partition, first.partition)
		}
	}

	srv := httptest.NewServer(r.c.Handler())
	defer srv.Close()
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200} {
		resp, err := http.Get(srv.URL + path)
		mustOK(t, err)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	addr := srv.Listener.Addr().String()
	if v, _ := metricValue(t, addr, `orderflow_capture_events_produced_total{type="order.created"}`); v != 2 {
		t.Errorf("events produced order.created = %v, want 2", v)
	}
	if v, _ := metricValue(t, addr, "orderflow_capture_active"); v != 1 {
		t.Errorf("active = %v, want 1", v)
	}
	if v, _ := metricValue(t, addr, "orderflow_capture_commit_to_ack_seconds_count"); v != 4 {
		t.Errorf("commit_to_ack count = %v, want 4", v)
	}
	if err := r.Stop(t); err != nil {
		t.Errorf("stop: %v", err)
	}
	resp, err := http.Get(srv.URL + "/readyz")
	mustOK(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz after stop: %d, want 503", resp.StatusCode)
	}
}

func mustOK(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// TestPerKeyOrderUnderConcurrentWriters: several writers, each owning its keys, commit
// transactions of 1-5 rows; every row arrives once and each key in commit order.
func TestPerKeyOrderUnderConcurrentWriters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startCapture(t, e.config()).waitStreaming(t)
	const writers, perWriter = 4, 1000
	w := newWriter()
	ctx := context.Background()
	done := make(chan struct{})
	for i := 0; i < writers; i++ {
		keys := keysN(20)
		go func() {
			defer func() { done <- struct{}{} }()
			writeOrders(t, ctx, e.dsn, w, keys, perWriter, 5, i)
		}()
	}
	for i := 0; i < writers; i++ {
		<-done
	}
	waitDrained(t, e, writers*perWriter, 2*time.Minute)
	checkExactlyOnce(t, e, readTopic(t, e.brokers, e.topic()), w.committed)
}

var _ = pgx.ErrNoRows

// TestPartitionCountMismatchStops: the dedupe relies on keys staying in their partitions, so
// capture refuses a topic whose partition count is not the configured one.
func TestPartitionCountMismatchStops(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kc := &kafka.Client{Addr: kafka.TCP(e.brokers...)}
	resp, err := kc.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: e.topic(), NumPartitions: 3, ReplicationFactor: 1}}})
	if err != nil || resp.Errors[e.topic()] != nil {
		t.Fatalf("creating topic: %v %v", err, resp)
	}
	c, err := capture.New(e.config()) // configured for 6
	mustOK(t, err)
	err = c.Run(ctx)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "partitions") {
		t.Fatalf("Run with a 3-partition topic and -partitions 6: %v, want a partition count error", err)
	}
}

package capture_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
)

// smallTopicLimit is the max.message.bytes the tests here give their topic (through capture's
// own TopicMaxMessageBytes), so that a backlog of a few MB crosses it many times.
const smallTopicLimit = 64 << 10

// orderPayload is an order event of realistic size: items line items of about 800 bytes.
func orderPayload(o order, items int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"order_id": %q, "version": %d, "items": [`, o.key, o.version)
	for i := range items {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `{"sku": "SKU-%06d", "quantity": %d, "unit_price": "19.90", "description": %q}`,
			i, 1+i%5, strings.Repeat("a sturdy thing with a long description ", 19))
	}
	b.WriteString("]}")
	return b.String()
}

// insertSized commits one transaction of outbox rows, the i-th with items[i] line items, all
// for key, and returns them in commit order.
func insertSized(t *testing.T, db *pgx.Conn, key string, version *int, items ...int) []order {
	t.Helper()
	ctx := context.Background()
	tx, err := db.Begin(ctx)
	mustOK(t, err)
	defer tx.Rollback(ctx)
	var out []order
	for _, n := range items {
		*version++
		o := order{id: uuid.NewString(), key: key, version: *version}
		_, err := tx.Exec(ctx, `INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, schema_version, payload)
			VALUES ($1, 'order', $2, 'order.created', 1, $3)`, o.id, o.key, orderPayload(o, n))
		mustOK(t, err)
		out = append(out, o)
	}
	mustOK(t, tx.Commit(ctx))
	return out
}

// A backlog of order-sized events (1-20 line items, several KB each) on a topic that takes
// at most 64 KiB per batch drains with no produce error, in one session, every event once.
// The old writer filled a request until the values alone reached 1 MiB, so every request that
// filled up was refused with MESSAGE_TOO_LARGE and the session restarted forever.
func TestOrderSizedBacklogStaysWithinTheTopicLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.Kafka.TopicMaxMessageBytes = smallTopicLimit
	// A long linger fills every request as far as the limit lets it.
	cfg.Kafka.Linger = 50 * time.Millisecond
	r := startCapture(t, cfg)
	r.waitStreaming(t)

	keys := keysN(4)
	versions := make([]int, len(keys))
	var committed []order
	var bytes int
	for i := 0; len(committed) < 400; i++ {
		k := i % len(keys)
		items := make([]int, 1+i%12)
		for j := range items {
			items[j] = 1 + (i*7+j*3)%20
			bytes += items[j] * 800
		}
		committed = append(committed, insertSized(t, e.db, keys[k], &versions[k], items...)...)
	}
	t.Logf("backlog: %d events, about %d KB of line items", len(committed), bytes>>10)

	waitDrained(t, e, int64(len(committed)), 2*time.Minute)
	checkExactlyOnce(t, e, readTopic(t, e.brokers, e.topic()), committed)

	srv := httptest.NewServer(r.c.Handler())
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	for _, name := range []string{"orderflow_capture_produce_errors_total", "orderflow_capture_reconnects_total", "orderflow_capture_oversized_events_total"} {
		if v, ok := metricValue(t, addr, name); !ok || v != 0 {
			t.Errorf("%s = %v (found %v), want 0", name, v, ok)
		}
	}
	// Several events per request, or the test did not test the limit.
	if n, _ := metricValue(t, addr, "orderflow_capture_produce_batch_records_count"); n == 0 || n >= float64(len(committed)) {
		t.Errorf("%v produce requests for %d events: want batches of several events", n, len(committed))
	}
	if err := r.Stop(t); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// One event larger than the topic's limit stops capture before it, visibly (the metric), and
// nothing is skipped: the events before it are on the topic, it and the events after it on
// its partition are not. Raising the topic's max.message.bytes, the documented way out, lets
// the same running capture go on, and every event ends up on the topic once.
func TestOversizedEventStopsCaptureUntilTheTopicLimitIsRaised(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.Kafka.TopicMaxMessageBytes = smallTopicLimit
	r := startCapture(t, cfg)
	r.waitStreaming(t)
	srv := httptest.NewServer(r.c.Handler())
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	key := uuid.NewString()
	version := 0
	before := insertSized(t, e.db, key, &version, 3)
	waitDrained(t, e, 1, time.Minute)
	big := insertSized(t, e.db, key, &version, 100) // ~80 KB: over the 64 KiB limit on its own
	after := insertSized(t, e.db, key, &version, 2, 5)

	waitFor(t, "the oversized event to be reported", time.Minute, func() (bool, error) {
		v, _ := metricValue(t, addr, "orderflow_capture_oversized_events_total")
		return v >= 1, nil
	})
	select {
	case <-r.Done():
		t.Fatalf("capture stopped: %v", r.Err())
	default:
	}
	recs := readTopic(t, e.brokers, e.topic())
	if len(recs) != 1 || recs[0].headers["ce_id"] != before[0].id {
		t.Fatalf("while stuck the topic holds %d records, want only the event before the oversized one", len(recs))
	}
	if v, _ := metricValue(t, addr, "orderflow_capture_produce_errors_total"); v != 0 {
		t.Errorf("produce errors = %v: the oversized event must be caught before the broker refuses it", v)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(e.brokers...)}
	resp, err := client.AlterConfigs(ctx, &kafka.AlterConfigsRequest{Resources: []kafka.AlterConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: e.topic(),
		Configs: []kafka.AlterConfigRequestConfig{{Name: "max.message.bytes", Value: "1048576"}},
	}}})
	mustOK(t, err)
	for _, err := range resp.Errors {
		mustOK(t, err)
	}

	committed := append(append(before, big...), after...)
	waitDrained(t, e, int64(len(committed)), time.Minute)
	checkExactlyOnce(t, e, readTopic(t, e.brokers, e.topic()), committed)
	if err := r.Stop(t); err != nil {
		t.Errorf("stop: %v", err)
	}
}

package capture_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestBacklogOfLargeEventsFitsTheBroker: a backlog of 1,500 events of about 3.6 KB for one key
// (one partition), as a long outage or a rebuilt slot leaves behind. Capture batches them as
// tightly as it can, and every batch must stay under the broker's message.max.bytes (1 MiB):
// counting only the values, full batches were refused with MESSAGE_TOO_LARGE, and again on
// every retry. (Found by the drill, when a rebuilt slot's rows filled the batches.)
func TestBacklogOfLargeEventsFitsTheBroker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	key := uuid.NewString()
	filler := strings.Repeat("x", 3500)
	const n = 1500
	// The slot must exist before the rows, or it would start after them: start capture once
	// on the empty outbox, stop it, then commit the backlog.
	createSlot(t, e)
	tx, err := e.db.Begin(ctx)
	mustOK(t, err)
	for i := range n {
		_, err := tx.Exec(ctx, `INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, schema_version, payload)
			VALUES ($1, 'order', $2, 'order.created', 1, $3)`, uuid.NewString(), key, fmt.Sprintf(`{"version": %d, "filler": %q}`, i+1, filler))
		mustOK(t, err)
	}
	mustOK(t, tx.Commit(ctx))

	r := startCapture(t, e.config())
	srv := httptest.NewServer(r.c.Handler())
	defer srv.Close()
	waitDrained(t, e, n, 2*time.Minute)
	checkExactlyOnce(t, e, readTopic(t, e.brokers, e.topic()), nil)
	if errs, _ := metricValue(t, srv.Listener.Addr().String(), "orderflow_capture_produce_errors_total"); errs != 0 {
		t.Errorf("%v produce requests failed, want none", errs)
	}
}

// TestTransactionLargerThanQueueBytesDrains: one transaction of 600 events of ~3.6 KB (over
// 2 MB) and one of ~200 KB, under a byte budget of 64 KiB. The budget must make the stream
// wait (or it bounds nothing), and it must never wait for the Commit: the budget comes back on
// Kafka's acks, so the transaction drains a budget's worth at a time, the event larger than
// the whole budget passes alone, and every event lands once, in order.
func TestTransactionLargerThanQueueBytesDrains(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	keys := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	filler := strings.Repeat("x", 3500)
	const n = 600
	createSlot(t, e)
	tx, err := e.db.Begin(ctx)
	mustOK(t, err)
	for i := range n {
		f := filler
		if i == n/2 {
			f = strings.Repeat("y", 200_000)
		}
		_, err := tx.Exec(ctx, `INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, schema_version, payload)
			VALUES ($1, 'order', $2, 'order.created', 1, $3)`, uuid.NewString(), keys[i%3], fmt.Sprintf(`{"version": %d, "filler": %q}`, i/3+1, f))
		mustOK(t, err)
	}
	mustOK(t, tx.Commit(ctx))

	cfg := e.config()
	cfg.Kafka.QueueBytes = 64 << 10
	r := startCapture(t, cfg)
	srv := httptest.NewServer(r.c.Handler())
	defer srv.Close()
	waitDrained(t, e, n, 2*time.Minute)
	checkExactlyOnce(t, e, readTopic(t, e.brokers, e.topic()), nil)
	addr := srv.Listener.Addr().String()
	if waited, _ := metricValue(t, addr, "orderflow_capture_queue_wait_seconds_total"); waited == 0 {
		t.Errorf("the stream never waited for room under a 64 KiB budget: the budget bounds nothing")
	}
	waitFor(t, "queued bytes back to 0 after the drain", 10*time.Second, func() (bool, error) {
		v, ok := metricValue(t, addr, "orderflow_capture_queued_bytes")
		return ok && v == 0, nil
	})
}

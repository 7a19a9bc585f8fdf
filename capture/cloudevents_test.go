package capture_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"orderflow"
	"orderflow/internal/cetest"
	"orderflow/schemas"
)

// Every record of a capture run is a CloudEvent in the Kafka binding's binary mode that the
// CloudEvents Go SDK decodes (readTopic decodes each one through it), with the order JSON as
// the value, a dataschema naming the event's schema, and data that validates against it. On
// the structured records from before the switch, the SDK refused every one.
func TestEveryRecordIsACloudEventTheSDKDecodes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := startCapture(t, e.config())
	r.waitStreaming(t)
	ctx := context.Background()

	// One order through its whole life in one transaction, then others through the load
	// writer (many transactions, many keys, every partition).
	key := uuid.NewString()
	tx, err := e.db.Begin(ctx)
	mustOK(t, err)
	for i, st := range []struct {
		typ    string
		status orderflow.Status
	}{
		{orderflow.EventOrderCreated, orderflow.StatusPending},
		{orderflow.EventOrderCancelled, orderflow.StatusCancelled},
		{orderflow.EventOrderFulfilled, orderflow.StatusFulfilled},
	} {
		payload, err := json.Marshal(realOrder(key, i+1, st.status))
		mustOK(t, err)
		_, err = tx.Exec(ctx, `INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, schema_version, payload)
			VALUES ($1, 'order', $2, $3, $4, $5)`, uuid.NewString(), key, st.typ, orderflow.OrderSchemaVersion, payload)
		mustOK(t, err)
	}
	mustOK(t, tx.Commit(ctx))
	w := newWriter()
	writeOrders(t, ctx, e.dsn, w, keysN(20), 200, 5, 3)
	const total = 3 + 200
	waitDrained(t, e, total, 2*time.Minute)

	payloads := map[string]string{}
	rows, err := e.db.Query(ctx, `SELECT id::text, payload::text FROM outbox`)
	mustOK(t, err)
	for rows.Next() {
		var id, p string
		mustOK(t, rows.Scan(&id, &p))
		payloads[id] = p
	}
	mustOK(t, rows.Err())

	recs := readTopic(t, e.brokers, e.topic())
	if len(recs) != total || len(payloads) != total {
		t.Fatalf("%d records for %d outbox rows, want %d", len(recs), len(payloads), total)
	}
	types := map[string]int{}
	for _, rec := range recs {
		ev := rec.event
		types[ev.Type()]++
		if ev.SpecVersion() != "1.0" || ev.Source() != orderflow.EventSource || ev.DataContentType() != orderflow.ContentTypeJSON ||
			ev.Subject() != rec.key || ev.DataSchema() != schemas.ID(ev.Type(), orderflow.OrderSchemaVersion) || ev.Time().IsZero() {
			t.Errorf("record %d@%d read by the SDK as %s", rec.partition, rec.offset, ev)
		}
		if err := cetest.ValidateData(t, ev); err != nil {
			t.Error(err)
		}
		// Binary mode: the value is the outbox payload as PostgreSQL printed it, byte for byte.
		if want, ok := payloads[ev.ID()]; !ok || !bytes.Equal(rec.value, []byte(want)) {
			t.Errorf("event %s: value %s, want the outbox payload %s", ev.ID(), rec.value, want)
		}
		for k := range rec.headers {
			if !strings.HasPrefix(k, "ce_") && k != orderflow.HeaderContentType && k != orderflow.HeaderLSN && k != orderflow.HeaderSeq {
				t.Errorf("event %s: unexpected header %s", ev.ID(), k)
			}
		}
		if rec.headers[orderflow.HeaderLSN] == "" || rec.headers[orderflow.HeaderSeq] == "" {
			t.Errorf("event %s: position headers missing: %v", ev.ID(), rec.headers)
		}
		// orderflow's own consumers read the same event.
		hs := make([]orderflow.Header, 0, len(rec.headers))
		for k, v := range rec.headers {
			hs = append(hs, orderflow.Header{Key: k, Value: []byte(v)})
		}
		ours, err := orderflow.DecodeRecord(hs, rec.value)
		if err != nil {
			t.Errorf("event %s: orderflow.DecodeRecord: %v", ev.ID(), err)
		} else if ours.ID != ev.ID() || ours.Subject != ev.Subject() || !ours.Time.Equal(ev.Time()) || ours.DataSchema != ev.DataSchema() {
			t.Errorf("event %s: orderflow decoded %+v", ev.ID(), ours)
		}
	}
	if types[orderflow.EventOrderCancelled] != 1 || types[orderflow.EventOrderFulfilled] < 2 {
		t.Errorf("event types on the topic: %v", types)
	}
}

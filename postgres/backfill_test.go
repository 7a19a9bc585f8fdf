package postgres_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/google/uuid"

	"orderflow"
	"orderflow/internal/testenv"
)

// EmitOrderStates writes each order's current state once per version, with the deterministic id,
// the type of its status and the order exactly as the API returns it, page by page in id order.
func TestEmitOrderStates(t *testing.T) {
	t.Parallel()
	db, dsn := mustDB(t)
	conn := testenv.Connect(t, dsn)
	ctx := context.Background()
	_, err := db.SetStock(ctx, "sku-b", 100)
	testenv.Must(t, err, "stocking")
	var ids []string
	for i := range 5 {
		r, err := db.CreateOrder(ctx, orderflow.IdempotencyKey{ClientID: "t", Key: uuid.NewString(), Fingerprint: []byte("f")},
			orderflow.NewOrder{CustomerID: "c", Currency: "EUR", Items: []orderflow.Item{{SKU: "sku-b", Quantity: int64(i + 1), UnitPriceCents: 5}}}, respond)
		testenv.Must(t, err, "creating order")
		var o orderflow.Order
		testenv.Must(t, json.Unmarshal(r.Body, &o), "decoding order")
		ids = append(ids, o.ID)
	}
	slices.Sort(ids)
	_, err = db.ChangeOrder(ctx, orderflow.AnyClient, orderflow.IdempotencyKey{ClientID: "t", Key: uuid.NewString(), Fingerprint: []byte("g")}, ids[1], orderflow.ActionFulfill, "", respond)
	testenv.Must(t, err, "fulfilling")
	_, err = db.ChangeOrder(ctx, orderflow.AnyClient, orderflow.IdempotencyKey{ClientID: "t", Key: uuid.NewString(), Fingerprint: []byte("h")}, ids[3], orderflow.ActionCancel, "too slow", respond)
	testenv.Must(t, err, "cancelling")
	before := testenv.Count(t, conn, `SELECT count(*) FROM outbox`)

	n, err := db.CountOrdersAfter(ctx, "")
	if err != nil || n != 5 {
		t.Fatalf("CountOrdersAfter(\"\") = %d, %v; want 5", n, err)
	}
	n, err = db.CountOrdersAfter(ctx, ids[2])
	if err != nil || n != 2 {
		t.Fatalf("CountOrdersAfter(third) = %d, %v; want 2", n, err)
	}

	p1, err := db.EmitOrderStates(ctx, "", 3)
	testenv.Must(t, err, "first page")
	p2, err := db.EmitOrderStates(ctx, p1.LastOrderID, 3)
	testenv.Must(t, err, "second page")
	p3, err := db.EmitOrderStates(ctx, p2.LastOrderID, 3)
	testenv.Must(t, err, "empty page")
	if p1 != (orderflow.StatePage{Scanned: 3, Emitted: 3, LastOrderID: ids[2]}) ||
		p2 != (orderflow.StatePage{Scanned: 2, Emitted: 2, LastOrderID: ids[4]}) || p3 != (orderflow.StatePage{}) {
		t.Fatalf("pages %+v %+v %+v", p1, p2, p3)
	}
	for i, id := range ids {
		o, err := db.Order(ctx, orderflow.AnyClient, id)
		testenv.Must(t, err, "reading order")
		typ := map[orderflow.Status]string{orderflow.StatusPending: orderflow.EventOrderCreated,
			orderflow.StatusFulfilled: orderflow.EventOrderFulfilled, orderflow.StatusCancelled: orderflow.EventOrderCancelled}[o.Status]
		var gotType, payload string
		var version int
		err = conn.QueryRow(ctx, `SELECT event_type, schema_version, payload::text FROM outbox WHERE id = $1 AND aggregate_id = $2`,
			orderflow.StateEventID(id, o.Version, typ), id).Scan(&gotType, &version, &payload)
		testenv.Must(t, err, "reading the state event of order "+id)
		var got orderflow.Order
		testenv.Must(t, json.Unmarshal([]byte(payload), &got), "decoding payload")
		want, _ := json.Marshal(o)
		again, _ := json.Marshal(got)
		if gotType != typ || version != orderflow.OrderSchemaVersion || string(again) != string(want) {
			t.Errorf("order %d: event %s v%d %s, want %s %s", i, gotType, version, payload, typ, want)
		}
	}

	// A second run finds every state in the outbox and writes nothing.
	again, err := db.EmitOrderStates(ctx, "", 10)
	testenv.Must(t, err, "second run")
	if again.Scanned != 5 || again.Emitted != 0 {
		t.Errorf("second run %+v, want 5 scanned and nothing written", again)
	}
	if got := testenv.Count(t, conn, `SELECT count(*) FROM outbox`); got != before+5 {
		t.Errorf("outbox grew by %d, want 5", got-before)
	}
	if _, err := db.EmitOrderStates(ctx, "not-a-uuid", 10); err == nil {
		t.Error("a start id that is not a UUID was accepted")
	}
}

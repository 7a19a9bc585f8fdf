package postgres_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/google/uuid"

	"orderflow"
	"orderflow/internal/testenv"
)

func respond(o *orderflow.Order, err error) orderflow.Response {
	if err != nil {
		return orderflow.Response{Status: 409, Body: []byte(`{}`)}
	}
	b, _ := json.Marshal(o)
	return orderflow.Response{Status: 201, Body: b}
}

func TestARepairIsOnePerFactEver(t *testing.T) {
	t.Parallel()
	db, dsn := mustDB(t)
	conn := testenv.Connect(t, dsn)
	ctx := context.Background()
	_, err := db.SetStock(ctx, "sku-p", 10)
	testenv.Must(t, err, "stocking")
	r, err := db.CreateOrder(ctx, orderflow.IdempotencyKey{ClientID: "t", Key: "k1", Fingerprint: []byte("f")},
		orderflow.NewOrder{CustomerID: "c", Currency: "EUR", Items: []orderflow.Item{{SKU: "sku-p", Quantity: 1, UnitPriceCents: 5}}}, respond)
	testenv.Must(t, err, "creating order")
	var o orderflow.Order
	testenv.Must(t, json.Unmarshal(r.Body, &o), "decoding order")
	outbox := func() int64 { return testenv.Count(t, conn, `SELECT count(*) FROM outbox`) }
	base := outbox()
	fact1 := orderflow.RepairEventID(o.ID, 1, orderflow.EventOrderCreated)

	// Concurrent repairs of one fact: exactly one writes an event, under the fact's id.
	var wg sync.WaitGroup
	results := make([]orderflow.Repair, 4)
	errs := make([]error, len(results))
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = db.RepairOrder(ctx, o.ID, "missing_summary")
		}()
	}
	wg.Wait()
	for _, err := range errs {
		testenv.Must(t, err, "repairing")
	}
	published := 0
	for _, rep := range results {
		if rep.Published {
			published++
		}
		if rep.EventID != fact1 || rep.Version != 1 {
			t.Errorf("repair %+v, want all to name %s at version 1", rep, fact1)
		}
	}
	if published != 1 || outbox() != base+1 {
		t.Fatalf("%d published, outbox +%d; want exactly one repair event", published, outbox()-base)
	}

	// Later, by another kind of finding or the event's own repair: still the one event.
	var created string
	testenv.Must(t, conn.QueryRow(ctx, `SELECT id::text FROM outbox WHERE aggregate_id = $1 AND event_type = 'order.created' AND id <> $2`,
		o.ID, fact1).Scan(&created), "reading the original event")
	for _, repair := range []func() (orderflow.Repair, error){
		func() (orderflow.Repair, error) { return db.RepairOrder(ctx, o.ID, "stale_summary") },
		func() (orderflow.Repair, error) { return db.RepairEvent(ctx, created, "undelivered_event") },
	} {
		rep, err := repair()
		testenv.Must(t, err, "repairing again")
		if rep.Published || rep.EventID != fact1 || rep.State.PublishedAt.IsZero() || outbox() != base+1 {
			t.Fatalf("repeat: %+v, outbox +%d; want the first repair's state and no new event", rep, outbox()-base)
		}
	}

	// A newer version is another fact.
	_, err = db.ChangeOrder(ctx, orderflow.AnyClient, orderflow.IdempotencyKey{ClientID: "t", Key: "k2", Fingerprint: []byte("g")}, o.ID, orderflow.ActionFulfill, "", respond)
	testenv.Must(t, err, "fulfilling")
	rep, err := db.RepairOrder(ctx, o.ID, "stale_summary")
	testenv.Must(t, err, "repairing version 2")
	if !rep.Published || rep.Version != 2 || rep.EventID != orderflow.RepairEventID(o.ID, 2, orderflow.EventOrderFulfilled) {
		t.Fatalf("version 2: %+v, want a new repair of the fulfilled fact", rep)
	}
	var typ string
	var version int
	testenv.Must(t, conn.QueryRow(ctx, `SELECT event_type, (payload->>'version')::int FROM outbox WHERE id = $1`, rep.EventID).Scan(&typ, &version), "reading the repair event")
	if typ != orderflow.EventOrderFulfilled || version != 2 {
		t.Fatalf("repair event %s v%d, want order.fulfilled v2", typ, version)
	}
	if _, err := db.RepairOrder(ctx, uuid.NewString(), "missing_summary"); orderflow.ErrorCode(err) != orderflow.ECodeNotFound {
		t.Fatalf("repair of an unknown order: %v, want order-not-found", err)
	}
}

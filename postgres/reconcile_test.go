package postgres_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

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

func TestRepublishOrderIsOnePerVersionUntilTheCooldown(t *testing.T) {
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

	// Concurrent repairs of one version: exactly one writes an event.
	var wg sync.WaitGroup
	results := make([]orderflow.Repair, 4)
	errs := make([]error, len(results))
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = db.RepublishOrder(ctx, o.ID, "missing_summary", time.Hour)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		testenv.Must(t, err, "republishing")
	}
	published := 0
	for _, rep := range results {
		if rep.Published {
			published++
		}
		if rep.EventID != results[0].EventID || rep.Version != 1 {
			t.Errorf("repair %+v, want all to name one event at version 1", rep)
		}
	}
	if published != 1 || outbox() != base+1 {
		t.Fatalf("%d published, outbox +%d; want exactly one repair event", published, outbox()-base)
	}

	// A claim older than the cooldown is taken over with a new event.
	rep, err := db.RepublishOrder(ctx, o.ID, "missing_summary", 0)
	testenv.Must(t, err, "republishing after the cooldown")
	if !rep.Published || rep.EventID == results[0].EventID || outbox() != base+2 {
		t.Fatalf("after the cooldown: %+v, outbox +%d; want a new event", rep, outbox()-base)
	}

	// A newer version is a new key.
	_, err = db.ChangeOrder(ctx, orderflow.AnyClient, orderflow.IdempotencyKey{ClientID: "t", Key: "k2", Fingerprint: []byte("g")}, o.ID, orderflow.ActionFulfill, "", respond)
	testenv.Must(t, err, "fulfilling")
	rep, err = db.RepublishOrder(ctx, o.ID, "stale_summary", time.Hour)
	testenv.Must(t, err, "republishing version 2")
	if !rep.Published || rep.Version != 2 {
		t.Fatalf("version 2: %+v, want a new repair", rep)
	}
	var typ string
	var version int
	testenv.Must(t, conn.QueryRow(ctx, `SELECT event_type, (payload->>'version')::int FROM outbox WHERE id = $1`, rep.EventID).Scan(&typ, &version), "reading the repair event")
	if typ != orderflow.EventOrderFulfilled || version != 2 {
		t.Fatalf("repair event %s v%d, want order.fulfilled v2", typ, version)
	}
	if _, err := db.RepublishOrder(ctx, uuid.NewString(), "missing_summary", time.Hour); orderflow.ErrorCode(err) != orderflow.ECodeNotFound {
		t.Fatalf("repair of an unknown order: %v, want order-not-found", err)
	}
}

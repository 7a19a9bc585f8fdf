package postgres_test

import (
	"context"
	"testing"

	"orderflow"
	"orderflow/internal/testenv"
	"orderflow/postgres"
)

// TestCreateOrderAsTheAPIRole runs every way an order is written, the one round trip and the
// step-by-step transaction, as the API's own least-privilege role (reserve_stock runs with
// the caller's rights), and checks what each left in the database.
func TestCreateOrderAsTheAPIRole(t *testing.T) {
	t.Parallel()
	owner, dsn := mustDB(t)
	ctx := context.Background()
	_, err := owner.SetStock(ctx, "sku-r", 5)
	testenv.Must(t, err, "stocking")
	db, err := postgres.Open(ctx, testenv.AsRole(t, dsn, "orderflow_api"), 2)
	testenv.Must(t, err, "opening as orderflow_api")
	t.Cleanup(db.Close)
	conn := testenv.Connect(t, dsn)
	order := func(qty int64) orderflow.NewOrder {
		return orderflow.NewOrder{CustomerID: "c", Currency: "EUR", Items: []orderflow.Item{{SKU: "sku-r", Quantity: qty, UnitPriceCents: 5}}}
	}
	key := func(k string) orderflow.IdempotencyKey {
		return orderflow.IdempotencyKey{ClientID: "t", Key: k, Fingerprint: []byte(k)}
	}
	state := func() (orders, events, keys, reserved int64) {
		return testenv.Count(t, conn, `SELECT count(*) FROM orders`), testenv.Count(t, conn, `SELECT count(*) FROM outbox`),
			testenv.Count(t, conn, `SELECT count(*) FROM idempotency_keys`), testenv.Count(t, conn, `SELECT reserved FROM inventory WHERE sku = 'sku-r'`)
	}

	// A new key with enough stock: one round trip.
	first, err := db.CreateOrder(ctx, key("k1"), order(3), respond)
	testenv.Must(t, err, "creating")
	if first.Status != 201 || first.Replayed {
		t.Fatalf("first order: %d replayed %v", first.Status, first.Replayed)
	}
	if o, e, k, r := state(); o != 1 || e != 1 || k != 1 || r != 3 {
		t.Fatalf("after the order: %d orders, %d events, %d keys, %d reserved; want 1, 1, 1, 3", o, e, k, r)
	}
	// The same key again: the round trip fails on the key, the stepwise path replays.
	again, err := db.CreateOrder(ctx, key("k1"), order(3), respond)
	testenv.Must(t, err, "replaying")
	if !again.Replayed || string(again.Body) != string(first.Body) {
		t.Fatalf("replay %+v, want the first answer replayed", again)
	}
	// Not enough stock: reserve_stock fails the round trip, the stepwise path stores the 409.
	short, err := db.CreateOrder(ctx, key("k2"), order(3), respond)
	testenv.Must(t, err, "refusing")
	if short.Status != 409 || short.Replayed {
		t.Fatalf("short order: %d replayed %v, want a new 409", short.Status, short.Replayed)
	}
	if o, e, k, r := state(); o != 1 || e != 1 || k != 2 || r != 3 {
		t.Fatalf("after the refusal: %d orders, %d events, %d keys, %d reserved; want 1, 1, 2 (the 409 stored), 3", o, e, k, r)
	}
}

package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"orderflow"
	"orderflow/internal/testenv"
)

func tierBody(tier string) string {
	return strings.Replace(orderBody("cust-t", "sku-t", 1), `"currency"`, `"customer_tier": `+tier+`, "currency"`, 1)
}

// TestCustomerTierIsAnOptionalField: an order may name its customer's tier; left out it is
// standard. The order, its row and its event (schema version 2) carry the tier; an unknown tier
// is refused with the field named and writes nothing.
func TestCustomerTierIsAnOptionalField(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stock("sku-t", 100)
	ctx := context.Background()
	check := func(id, want string) {
		t.Helper()
		var tier string
		var version int
		var payload []byte
		testenv.Must(t, e.sql.QueryRow(ctx, `SELECT o.customer_tier, ob.schema_version, ob.payload FROM orders o
			JOIN outbox ob ON ob.aggregate_id = o.id::text WHERE o.id = $1`, id).Scan(&tier, &version, &payload), "reading the order")
		var data orderflow.Order
		testenv.Must(t, json.Unmarshal(payload, &data), "decoding the event")
		if tier != want || version != 2 || data.CustomerTier != want {
			t.Fatalf("order %s: row tier %q, event version %d with tier %q; want %q at version 2", id, tier, version, data.CustomerTier, want)
		}
		mustValidate(t, orderflow.EventOrderCreated, version, payload)
		mustValidate(t, orderflow.EventOrderCreated, 1, payload)
	}
	gold := e.create(uuid.NewString(), tierBody(`"gold"`))
	mustStatus(t, gold, http.StatusCreated, "")
	if o := gold.json(t); o["customer_tier"] != "gold" {
		t.Fatalf("created %v", o)
	}
	check(gold.json(t)["id"].(string), "gold")
	plain := e.create(uuid.NewString(), orderBody("cust-t", "sku-t", 1))
	mustStatus(t, plain, http.StatusCreated, "")
	if o := plain.json(t); o["customer_tier"] != "standard" {
		t.Fatalf("created without a tier: %v", o)
	}
	check(plain.json(t)["id"].(string), "standard")

	before := e.rows()
	for _, bad := range []string{`"diamond"`, `"GOLD"`, `""`} {
		r := e.create(uuid.NewString(), tierBody(bad))
		mustStatus(t, r, http.StatusUnprocessableEntity, "validation-failed")
		if !strings.Contains(string(r.body), `"pointer":"/customer_tier"`) {
			t.Fatalf("tier %s: %s does not name the field", bad, r.body)
		}
	}
	mustStatus(t, e.create(uuid.NewString(), tierBody(`5`)), http.StatusBadRequest, "malformed-request")
	if after := e.rows(); after["orders"] != before["orders"] || after["outbox"] != before["outbox"] || after["reserved"] != before["reserved"] {
		t.Fatalf("refused tiers wrote: %v -> %v", before, after)
	}

	// The default is the request as it was before tiers: the same key replays it.
	key := uuid.NewString()
	first := e.create(key, orderBody("cust-t", "sku-t", 1))
	mustStatus(t, first, http.StatusCreated, "")
	same := e.create(key, tierBody(`"standard"`))
	if same.header.Get("Idempotent-Replayed") != "true" || string(same.body) != string(first.body) {
		t.Fatalf("naming the default tier is another request: %d %s", same.status, same.body)
	}
	mustStatus(t, e.create(key, tierBody(`"gold"`)), http.StatusUnprocessableEntity, "idempotency-key-reused")

	// An order written before tiers existed (NULL until migrate-data fills it) reads as standard.
	id := plain.json(t)["id"].(string)
	_, err := e.sql.Exec(ctx, `UPDATE orders SET customer_tier = NULL WHERE id = $1`, id)
	testenv.Must(t, err, "making an order from before tiers")
	if o := e.do(http.MethodGet, "/v1/orders/"+id, "").json(t); o["customer_tier"] != "standard" {
		t.Fatalf("an order from before tiers reads %v", o)
	}
	c := e.do(http.MethodPost, "/v1/orders/"+id+"/cancel", "", "Idempotency-Key", uuid.NewString())
	mustStatus(t, c, http.StatusOK, "")
	if o := c.json(t); o["customer_tier"] != "standard" {
		t.Fatalf("its cancel event carries %v", o)
	}
}

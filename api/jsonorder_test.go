package api

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"orderflow"
)

// TestOrderEncodingsAreJSONMarshal: the hand-written encodings write exactly what
// json.Marshal writes, whatever the strings and times hold, so stored answers and
// fingerprints do not change with them.
func TestOrderEncodingsAreJSONMarshal(t *testing.T) {
	t.Parallel()
	strs := []string{"", "cust-42", "SKU-1", "EUR", "a<b", "x>y", "a&b", `q"uote`, `back\slash`, "tab\t", "nl\n",
		"\u2028", "é", "日本", "\x7f", "\xff\xfe", "with space", "emoji 🙂", "pending", "fulfilled", "gold"}
	times := []time.Time{
		time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC),
		time.Date(2026, 12, 1, 8, 0, 0, 123456000, time.UTC),
		time.Date(2026, 12, 1, 8, 0, 0, 100000000, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 12, 1, 8, 0, 0, 5000, time.FixedZone("x", 3600)),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		{},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func() string { return strs[rng.IntN(len(strs))] }
	var items [][]orderflow.Item
	items = append(items, nil, []orderflow.Item{})
	for range 50 {
		its := make([]orderflow.Item, 1+rng.IntN(3))
		for i := range its {
			its[i] = orderflow.Item{SKU: pick(), Quantity: rng.Int64N(1000) - 10, UnitPriceCents: rng.Int64N(1 << 40)}
		}
		items = append(items, its)
	}
	for i := range 2000 {
		o := &orderflow.Order{
			ID: pick(), CustomerID: pick(), Currency: pick(), Status: orderflow.Status(pick()),
			Items: items[rng.IntN(len(items))], TotalCents: rng.Int64() - rng.Int64(), Version: rng.IntN(5),
			CancelReason: pick(), CreatedAt: times[rng.IntN(len(times))], UpdatedAt: times[rng.IntN(len(times))],
			CustomerTier: pick(),
		}
		want, wantErr := json.Marshal(o)
		got, err := marshalOrder(o)
		if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("case %d: order %#v\n got %s (%v)\nwant %s (%v)", i, o, got, err, want, wantErr)
		}
		n := orderflow.NewOrder{CustomerID: o.CustomerID, Currency: o.Currency, Items: o.Items, CustomerTier: o.CustomerTier}
		want, wantErr = json.Marshal(n)
		got, err = marshalNewOrder(n)
		if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("case %d: new order %#v\n got %s (%v)\nwant %s (%v)", i, n, got, err, want, wantErr)
		}
	}
	// The usual order takes the direct way (not the fallback), or this test checks nothing of it.
	o := &orderflow.Order{ID: "0193", CustomerID: "cust-1", Currency: "EUR", Status: orderflow.StatusPending,
		Items: []orderflow.Item{{SKU: "SKU-1", Quantity: 1, UnitPriceCents: 1250}}, Version: 1,
		CreatedAt: times[1], UpdatedAt: times[1], CustomerTier: "standard"}
	if _, ok := appendOrder(nil, o); !ok {
		t.Fatal("the usual order fell back to json.Marshal")
	}
	if _, ok := appendNewOrder(nil, orderflow.NewOrder{CustomerID: "cust-1", Currency: "EUR", Items: o.Items}); !ok {
		t.Fatal("the usual new order fell back to json.Marshal")
	}
}

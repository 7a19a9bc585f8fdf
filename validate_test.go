package orderflow_test

import (
	"strings"
	"testing"

	"orderflow"
)

func TestNewOrderValidate(t *testing.T) {
	t.Parallel()
	item := orderflow.Item{SKU: "SKU-1", Quantity: 1, UnitPriceCents: 100}
	many := make([]orderflow.Item, orderflow.MaxItems+1)
	for i := range many {
		many[i] = item
	}
	cases := []struct {
		name     string
		order    orderflow.NewOrder
		pointers []string
	}{
		{"valid", orderflow.NewOrder{CustomerID: "c-1", Currency: "EUR", Items: []orderflow.Item{item}}, nil},
		{"everything wrong", orderflow.NewOrder{CustomerID: "", Currency: "XXX"}, []string{"/customer_id", "/currency", "/items"}},
		{"lower-case currency", orderflow.NewOrder{CustomerID: "c", Currency: "usd", Items: []orderflow.Item{item}}, []string{"/currency"}},
		{"space in customer", orderflow.NewOrder{CustomerID: "a b", Currency: "USD", Items: []orderflow.Item{item}}, []string{"/customer_id"}},
		{"customer too long", orderflow.NewOrder{CustomerID: strings.Repeat("é", 65), Currency: "USD", Items: []orderflow.Item{item}}, []string{"/customer_id"}},
		{"too many items", orderflow.NewOrder{CustomerID: "c", Currency: "JPY", Items: many}, []string{"/items"}},
		{"bad item fields", orderflow.NewOrder{CustomerID: "c", Currency: "GBP", Items: []orderflow.Item{{SKU: "", Quantity: 0, UnitPriceCents: -1}}},
			[]string{"/items/0/sku", "/items/0/quantity", "/items/0/unit_price_cents"}},
		{"gold tier", orderflow.NewOrder{CustomerID: "c", Currency: "EUR", Items: []orderflow.Item{item}, CustomerTier: orderflow.TierGold}, nil},
		{"unknown tier", orderflow.NewOrder{CustomerID: "c", Currency: "EUR", Items: []orderflow.Item{item}, CustomerTier: "diamond"}, []string{"/customer_tier"}},
		{"tier in upper case", orderflow.NewOrder{CustomerID: "c", Currency: "EUR", Items: []orderflow.Item{item}, CustomerTier: "GOLD"}, []string{"/customer_tier"}},
		{"same SKU over the limit", orderflow.NewOrder{CustomerID: "c", Currency: "EUR", Items: []orderflow.Item{
			{SKU: "S", Quantity: 9000, UnitPriceCents: 1}, {SKU: "S", Quantity: 2000, UnitPriceCents: 1}}}, []string{"/items"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, p := range c.order.Validate() {
				got = append(got, p.Pointer)
			}
			if strings.Join(got, " ") != strings.Join(c.pointers, " ") {
				t.Fatalf("problems at %v, want %v", got, c.pointers)
			}
		})
	}
}

func TestNewOrderTotalAndQuantities(t *testing.T) {
	t.Parallel()
	n := orderflow.NewOrder{Items: []orderflow.Item{
		{SKU: "A", Quantity: orderflow.MaxQuantity, UnitPriceCents: orderflow.MaxUnitPriceCents},
		{SKU: "B", Quantity: 2, UnitPriceCents: 5},
		{SKU: "A", Quantity: 1, UnitPriceCents: 0},
	}}
	if got, want := n.Total(), int64(orderflow.MaxQuantity)*orderflow.MaxUnitPriceCents+10; got != want {
		t.Fatalf("total %d, want %d", got, want)
	}
	q := n.Quantities()
	if q["A"] != orderflow.MaxQuantity+1 || q["B"] != 2 || len(q) != 2 {
		t.Fatalf("quantities %v", q)
	}
}

func TestActionTargets(t *testing.T) {
	t.Parallel()
	if orderflow.ActionCancel.Target() != orderflow.StatusCancelled || orderflow.ActionCancel.Event() != orderflow.EventOrderCancelled ||
		orderflow.ActionFulfill.Target() != orderflow.StatusFulfilled || orderflow.ActionFulfill.Event() != orderflow.EventOrderFulfilled {
		t.Fatal("actions map to the wrong status or event")
	}
}

func TestTextRefusals(t *testing.T) {
	t.Parallel()
	item := func(sku string) []orderflow.Item { return []orderflow.Item{{SKU: sku, Quantity: 1, UnitPriceCents: 1}} }
	cases := []struct {
		name    string
		order   orderflow.NewOrder
		pointer string
		detail  string
	}{
		{"NUL in customer", orderflow.NewOrder{CustomerID: "c\x00", Currency: "EUR", Items: item("S")}, "/customer_id", "must not contain NUL characters"},
		{"only NUL customer", orderflow.NewOrder{CustomerID: "\x00", Currency: "EUR", Items: item("S")}, "/customer_id", "must not contain NUL characters"},
		{"invalid UTF-8 customer", orderflow.NewOrder{CustomerID: "c\xff", Currency: "EUR", Items: item("S")}, "/customer_id", "must be valid UTF-8"},
		{"long invalid UTF-8 customer", orderflow.NewOrder{CustomerID: strings.Repeat("\xc3", 100), Currency: "EUR", Items: item("S")}, "/customer_id", "must be valid UTF-8"},
		{"truncated multi-byte customer", orderflow.NewOrder{CustomerID: "caf\xc3", Currency: "EUR", Items: item("S")}, "/customer_id", "must be valid UTF-8"},
		{"surrogate half customer", orderflow.NewOrder{CustomerID: "\xed\xa0\x80", Currency: "EUR", Items: item("S")}, "/customer_id", "must be valid UTF-8"},
		{"NUL in SKU", orderflow.NewOrder{CustomerID: "c", Currency: "EUR", Items: item("S\x00KU")}, "/items/0/sku", "must not contain NUL characters"},
		{"invalid UTF-8 SKU", orderflow.NewOrder{CustomerID: "c", Currency: "EUR", Items: item("\x80")}, "/items/0/sku", "must be valid UTF-8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ps := c.order.Validate()
			if len(ps) != 1 || ps[0].Pointer != c.pointer || ps[0].Detail != c.detail {
				t.Fatalf("problems %+v, want one at %s: %s", ps, c.pointer, c.detail)
			}
		})
	}
}

func TestValidateText(t *testing.T) {
	t.Parallel()
	cases := []struct {
		text   string
		detail string
	}{
		{"", ""},
		{"changed", ""},
		{strings.Repeat("é", 10), ""},
		{strings.Repeat("é", 11), "must be at most 10 characters"},
		{"a\x00b", "must not contain NUL characters"},
		{"a\xffb", "must be valid UTF-8"},
		{"\xed\xbf\xbf", "must be valid UTF-8"},
	}
	for _, c := range cases {
		if got := orderflow.ValidateText(c.text, 10); got != c.detail {
			t.Errorf("ValidateText(%q) = %q, want %q", c.text, got, c.detail)
		}
	}
}

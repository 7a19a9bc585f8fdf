package schemas_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"orderflow"
	"orderflow/schemas"
)

// mustCompile compiles the schema of eventType at version, asserting formats (date-time), which
// draft 2020-12 otherwise only annotates.
func mustCompile(tb testing.TB, eventType string, version int) *jsonschema.Schema {
	tb.Helper()
	b, ok := schemas.Schema(eventType, version)
	if !ok {
		tb.Fatalf("no schema for %s v%d", eventType, version)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		tb.Fatalf("%s v%d is not JSON: %v", eventType, version, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	id := schemas.ID(eventType, version)
	if err := c.AddResource(id, doc); err != nil {
		tb.Fatalf("adding %s: %v", id, err)
	}
	s, err := c.Compile(id)
	if err != nil {
		tb.Fatalf("compiling %s: %v", id, err)
	}
	return s
}

func validate(tb testing.TB, s *jsonschema.Schema, v any) error {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	return s.Validate(doc)
}

func TestEveryEventTypeHasACompilingSchemaWithItsID(t *testing.T) {
	t.Parallel()
	var got []string
	for _, et := range schemas.EventTypes() {
		got = append(got, et.Type)
		for _, v := range et.Versions {
			mustCompile(t, et.Type, v)
			b, _ := schemas.Schema(et.Type, v)
			var head struct {
				Schema string `json:"$schema"`
				ID     string `json:"$id"`
			}
			if err := json.Unmarshal(b, &head); err != nil {
				t.Fatal(err)
			}
			if head.ID != schemas.ID(et.Type, v) || !strings.HasSuffix(head.ID, schemas.Path(et.Type, v)) {
				t.Errorf("%s v%d: $id %q, want %q", et.Type, v, head.ID, schemas.ID(et.Type, v))
			}
			if head.Schema != "https://json-schema.org/draft/2020-12/schema" {
				t.Errorf("%s v%d: $schema %q, want draft 2020-12", et.Type, v, head.Schema)
			}
		}
	}
	want := []string{orderflow.EventOrderCancelled, orderflow.EventOrderCreated, orderflow.EventOrderFulfilled, orderflow.EventWebhookTest}
	if !slices.Equal(got, want) {
		t.Fatalf("event types %v, want %v", got, want)
	}
}

func TestSchemaRefusesUnknownTypesVersionsAndPaths(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		typ string
		v   int
	}{{"order.created", 0}, {"order.created", 99}, {"order.shipped", 1}, {"../schemas", 1}, {"order.created/../order.cancelled", 1}} {
		if _, ok := schemas.Schema(tc.typ, tc.v); ok {
			t.Errorf("Schema(%q, %d) found a schema", tc.typ, tc.v)
		}
	}
}

// order is what the API returns and the outbox carries after each change.
func order(status orderflow.Status, version int, reason string) orderflow.Order {
	created := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	return orderflow.Order{
		ID: "01956f7e-5c2a-7b3e-9a41-0c2d4e6f8a10", CustomerID: "cust-42", Currency: "EUR",
		Status: status, Version: version, CancelReason: reason,
		Items:      []orderflow.Item{{SKU: "MUG", Quantity: 2, UnitPriceCents: 1450}, {SKU: "TEA", Quantity: 1, UnitPriceCents: 0}},
		TotalCents: 2900, CreatedAt: created, UpdatedAt: created.Add(time.Minute), CustomerTier: orderflow.TierGold,
	}
}

func TestRealOrdersValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, typ string
		o         orderflow.Order
	}{
		{"created", orderflow.EventOrderCreated, order(orderflow.StatusPending, 1, "")},
		{"cancelled with reason", orderflow.EventOrderCancelled, order(orderflow.StatusCancelled, 2, "customer changed their mind ✓")},
		{"cancelled without reason", orderflow.EventOrderCancelled, order(orderflow.StatusCancelled, 2, "")},
		{"fulfilled", orderflow.EventOrderFulfilled, order(orderflow.StatusFulfilled, 2, "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, v := range []int{1, orderflow.OrderSchemaVersion} {
				if err := validate(t, mustCompile(t, tc.typ, v), tc.o); err != nil {
					t.Fatalf("%s v%d refuses a real order: %v", tc.typ, v, err)
				}
			}
		})
	}
}

// TestNewFieldsKeepValidating holds the rule that versions of a type only add fields: a
// document written against a later version still validates against this one.
func TestNewFieldsKeepValidating(t *testing.T) {
	t.Parallel()
	s := mustCompile(t, orderflow.EventOrderCreated, 1)
	var m map[string]any
	b, _ := json.Marshal(order(orderflow.StatusPending, 1, ""))
	_ = json.Unmarshal(b, &m)
	m["channel"] = "web"
	if err := validate(t, s, m); err != nil {
		t.Fatalf("an added field is refused: %v", err)
	}
}

func TestBadDocumentsAreRefused(t *testing.T) {
	t.Parallel()
	type edit func(m map[string]any)
	for _, tc := range []struct {
		name, typ string
		o         orderflow.Order
		edit      edit
	}{
		{"missing id", orderflow.EventOrderCreated, order(orderflow.StatusPending, 1, ""), func(m map[string]any) { delete(m, "id") }},
		{"id not a uuid", orderflow.EventOrderCreated, order(orderflow.StatusPending, 1, ""), func(m map[string]any) { m["id"] = "42" }},
		{"negative total", orderflow.EventOrderCreated, order(orderflow.StatusPending, 1, ""), func(m map[string]any) { m["total_cents"] = -1 }},
		{"fractional quantity", orderflow.EventOrderCreated, order(orderflow.StatusPending, 1, ""), func(m map[string]any) {
			m["items"].([]any)[0].(map[string]any)["quantity"] = 1.5
		}},
		{"no items", orderflow.EventOrderCreated, order(orderflow.StatusPending, 1, ""), func(m map[string]any) { m["items"] = []any{} }},
		{"lower-case currency", orderflow.EventOrderCreated, order(orderflow.StatusPending, 1, ""), func(m map[string]any) { m["currency"] = "eur" }},
		{"created_at not a date-time", orderflow.EventOrderCreated, order(orderflow.StatusPending, 1, ""), func(m map[string]any) { m["created_at"] = "yesterday" }},
		{"created but cancelled", orderflow.EventOrderCreated, order(orderflow.StatusCancelled, 1, ""), nil},
		{"created at version 2", orderflow.EventOrderCreated, order(orderflow.StatusPending, 2, ""), nil},
		{"cancelled but pending", orderflow.EventOrderCancelled, order(orderflow.StatusPending, 2, ""), nil},
		{"cancelled at version 1", orderflow.EventOrderCancelled, order(orderflow.StatusCancelled, 1, ""), nil},
		{"reason too long", orderflow.EventOrderCancelled, order(orderflow.StatusCancelled, 2, strings.Repeat("é", 501)), nil},
		{"fulfilled but cancelled", orderflow.EventOrderFulfilled, order(orderflow.StatusCancelled, 2, "x"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := mustCompile(t, tc.typ, 1)
			var m map[string]any
			b, _ := json.Marshal(tc.o)
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			if tc.edit != nil {
				tc.edit(m)
			}
			if err := validate(t, s, m); err == nil {
				t.Fatalf("%s accepts %v", tc.typ, m)
			}
		})
	}
}

// TestLaterVersionsOnlyAddOptionalFields holds every schema file to docs/SCHEMAS.md's rule, for
// the versions there are now and any added later: version n requires exactly what version n-1
// required, keeps every property and definition of it unchanged, and adds only new properties.
func TestLaterVersionsOnlyAddOptionalFields(t *testing.T) {
	t.Parallel()
	read := func(typ string, v int) map[string]json.RawMessage {
		b, _ := schemas.Schema(typ, v)
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	compact := func(raw json.RawMessage) string {
		var b bytes.Buffer
		_ = json.Compact(&b, raw)
		return b.String()
	}
	for _, et := range schemas.EventTypes() {
		for i := 1; i < len(et.Versions); i++ {
			prev, next := read(et.Type, et.Versions[i-1]), read(et.Type, et.Versions[i])
			for key := range prev {
				switch key {
				case "$id", "title", "description":
				case "properties":
					var pp, np map[string]json.RawMessage
					_ = json.Unmarshal(prev[key], &pp)
					_ = json.Unmarshal(next[key], &np)
					for name, def := range pp {
						if compact(np[name]) != compact(def) {
							t.Errorf("%s v%d changes property %s of v%d", et.Type, et.Versions[i], name, et.Versions[i-1])
						}
					}
				default:
					if compact(next[key]) != compact(prev[key]) {
						t.Errorf("%s v%d changes %s of v%d: %s -> %s", et.Type, et.Versions[i], key, et.Versions[i-1], prev[key], next[key])
					}
				}
			}
			for key := range next {
				if _, ok := prev[key]; !ok {
					t.Errorf("%s v%d adds the keyword %s, which may narrow what v%d accepted", et.Type, et.Versions[i], key, et.Versions[i-1])
				}
			}
		}
	}
}

// TestCustomerTierAcrossVersions: orders written today (version 2, with a tier) validate against
// version 1 as well, which is what lets a consumer that validates with version 1 keep working;
// an order of version 1 (no tier) validates against version 2; a tier added later needs no new
// version; version 2 refuses a tier that is not a tier at all.
func TestCustomerTierAcrossVersions(t *testing.T) {
	t.Parallel()
	withTier := func(status orderflow.Status, version int, tier string) map[string]any {
		var m map[string]any
		b, _ := json.Marshal(order(status, version, ""))
		_ = json.Unmarshal(b, &m)
		if tier != "" {
			m["customer_tier"] = tier
		}
		return m
	}
	for _, typ := range []string{orderflow.EventOrderCreated, orderflow.EventOrderCancelled, orderflow.EventOrderFulfilled} {
		status, version := orderflow.StatusPending, 1
		switch typ {
		case orderflow.EventOrderCancelled:
			status, version = orderflow.StatusCancelled, 2
		case orderflow.EventOrderFulfilled:
			status, version = orderflow.StatusFulfilled, 2
		}
		for _, tier := range []string{"", orderflow.TierStandard, orderflow.TierGold, orderflow.TierPlatinum, "silver"} {
			for _, v := range []int{1, 2} {
				if err := validate(t, mustCompile(t, typ, v), withTier(status, version, tier)); err != nil {
					t.Errorf("%s v%d refuses an order with tier %q: %v", typ, v, tier, err)
				}
			}
		}
		for _, bad := range []any{"", 5, strings.Repeat("t", 33)} {
			m := withTier(status, version, orderflow.TierGold)
			m["customer_tier"] = bad
			if err := validate(t, mustCompile(t, typ, 2), m); err == nil {
				t.Errorf("%s v2 accepts customer_tier %v", typ, bad)
			}
		}
	}
}

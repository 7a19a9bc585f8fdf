package orderflow_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"orderflow"
)

func TestDecodeCloudEvent(t *testing.T) {
	t.Parallel()
	good := `{"specversion":"1.0","id":"e1","source":"/orderflow/outbox","type":"order.created","subject":"o1",` +
		`"time":"2026-01-02T03:04:05.123456Z","datacontenttype":"application/json","schemaversion":1,"future":"ignored",` +
		`"data":{"id":"o1","status":"pending","version":3,"items":[],"unknown_field":true}}`
	ev, err := orderflow.DecodeCloudEvent([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	o, err := orderflow.OrderFromEvent(ev)
	if err != nil || o.ID != "o1" || o.Version != 3 || o.Status != orderflow.StatusPending {
		t.Fatalf("order %+v, err %v", o, err)
	}
	for name, bad := range map[string]string{
		"not json":       `{`,
		"old spec":       strings.Replace(good, `"1.0"`, `"0.3"`, 1),
		"no id":          strings.Replace(good, `"id":"e1",`, ``, 1),
		"no data":        strings.Split(good, `,"data"`)[0] + `}`,
		"string version": strings.Replace(good, `"schemaversion":1`, `"schemaversion":"1"`, 1),
	} {
		if _, err := orderflow.DecodeCloudEvent([]byte(bad)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	for _, v := range []string{"0", "-1"} {
		ev, _ := orderflow.DecodeCloudEvent([]byte(strings.Replace(good, `"schemaversion":1`, `"schemaversion":`+v, 1)))
		if _, err := orderflow.OrderFromEvent(ev); err == nil {
			t.Errorf("schema version %s was accepted", v)
		}
	}
}

// orderV1 is the order as a consumer written for schema version 1 declared it, before
// customer_tier: what a data engineer's or a partner's code holds.
type orderV1 struct {
	ID           string           `json:"id"`
	CustomerID   string           `json:"customer_id"`
	Currency     string           `json:"currency"`
	Status       orderflow.Status `json:"status"`
	Items        []orderflow.Item `json:"items"`
	TotalCents   int64            `json:"total_cents"`
	Version      int              `json:"version"`
	CancelReason string           `json:"cancel_reason,omitempty"`
	CreatedAt    time.Time        `json:"created_at"`
	UpdatedAt    time.Time        `json:"updated_at"`
}

// TestReadersOfEveryVersionReadEveryVersion: an event written today (schema version 2, with
// customer_tier) is read by a consumer written for version 1 with nothing lost that it knew;
// OrderFromEvent reads version 1 (tier standard, as the backfill says), version 2, and a later
// version's additions, ignoring them.
func TestReadersOfEveryVersionReadEveryVersion(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := orderflow.Order{ID: "0195f7e0-0000-7000-8000-000000000001", CustomerID: "c-1", Currency: "EUR", Status: orderflow.StatusPending,
		Items: []orderflow.Item{{SKU: "MUG", Quantity: 2, UnitPriceCents: 1450}}, TotalCents: 2900, Version: 1,
		CreatedAt: at, UpdatedAt: at, CustomerTier: orderflow.TierGold}
	data, err := json.Marshal(now)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"customer_tier":"gold"`) || orderflow.OrderSchemaVersion != 2 {
		t.Fatalf("new events are not version 2 with customer_tier: %s (version %d)", data, orderflow.OrderSchemaVersion)
	}
	event := func(version int, data []byte) *orderflow.CloudEvent {
		return &orderflow.CloudEvent{SpecVersion: "1.0", ID: "e-1", Type: orderflow.EventOrderCreated, Subject: now.ID,
			Time: at, SchemaVersion: version, DataSchema: orderflow.DataSchema(orderflow.EventOrderCreated, version), Data: data}
	}

	// A version 1 consumer: encoding/json, as a Go reader would write it, ignoring what it does not know.
	var old orderV1
	if err := json.Unmarshal(event(orderflow.OrderSchemaVersion, data).Data, &old); err != nil {
		t.Fatalf("a version 1 reader refused a version 2 event: %v", err)
	}
	if old.ID != now.ID || old.TotalCents != now.TotalCents || old.Status != now.Status || !old.UpdatedAt.Equal(now.UpdatedAt) ||
		len(old.Items) != 1 || old.Items[0] != now.Items[0] {
		t.Fatalf("a version 1 reader read %+v from %s", old, data)
	}

	v1Data, _ := json.Marshal(old)
	later := strings.Replace(string(data), `"customer_tier"`, `"channel":"web","customer_tier"`, 1)
	for _, tc := range []struct {
		name     string
		ev       *orderflow.CloudEvent
		wantTier string
	}{
		{"version 1", event(1, v1Data), orderflow.TierStandard},
		{"version 2", event(2, data), orderflow.TierGold},
		{"version 3 adds a field", event(3, []byte(later)), orderflow.TierGold},
	} {
		o, err := orderflow.OrderFromEvent(tc.ev)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if o.CustomerTier != tc.wantTier || o.ID != now.ID || o.TotalCents != now.TotalCents {
			t.Errorf("%s: read %+v, want tier %s", tc.name, o, tc.wantTier)
		}
	}
	if got := orderflow.DataSchema(orderflow.EventOrderCreated, 2); got != "https://orderflow.dev/v1/schemas/order.created/2.json" {
		t.Errorf("DataSchema(order.created, 2) = %q", got)
	}
}

// What the encoder writes is what every consumer decodes: encode, decode, same event.
func TestCloudEventRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ev   orderflow.CloudEvent
	}{
		{"plain", orderflow.CloudEvent{ID: "a1", Subject: "o1", Type: orderflow.EventOrderCreated, SchemaVersion: 1, Data: json.RawMessage(`{"a": 1}`)}},
		{"escapes", orderflow.CloudEvent{ID: "q\"\\\n\t\x01", Subject: "ü€😀", Type: "t</script>", SchemaVersion: -3, Data: json.RawMessage(`[1, "x"]`)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := tc.ev
			in.SpecVersion, in.Source, in.DataContentType = "1.0", orderflow.EventSource, "application/json"
			in.Time = time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.FixedZone("x", 3600))
			b := orderflow.AppendCloudEvent(nil, &in)
			out, err := orderflow.DecodeCloudEvent(b)
			if err != nil {
				t.Fatalf("decoding %s: %v", b, err)
			}
			if !out.Time.Equal(in.Time) || out.Time.Location() != time.UTC {
				t.Errorf("time %v, want %v in UTC", out.Time, in.Time)
			}
			out.Time = in.Time
			if !bytes.Equal(out.Data, in.Data) {
				t.Errorf("data %s, want the payload verbatim %s", out.Data, in.Data)
			}
			out.Data = in.Data
			if out.SpecVersion != in.SpecVersion || out.ID != in.ID || out.Source != in.Source || out.Type != in.Type ||
				out.Subject != in.Subject || out.DataContentType != in.DataContentType || out.SchemaVersion != in.SchemaVersion {
				t.Errorf("decoded %+v, want %+v", *out, in)
			}
		})
	}
}

// The wire format is a contract with readers outside this repository: attributes, their order
// and their formatting stay as they are.
func TestAppendCloudEventWireFormat(t *testing.T) {
	t.Parallel()
	ev := orderflow.CloudEvent{
		ID: "bad\xffbyte", Source: orderflow.EventSource, Type: "order.created", Subject: "o1",
		Time: time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.FixedZone("x", 3600)), DataContentType: "application/json",
		SchemaVersion: 1, Data: json.RawMessage(`{"id": "o1"}`),
	}
	want := `{"specversion":"1.0","id":"bad\ufffdbyte","source":"/orderflow/outbox","type":"order.created","subject":"o1",` +
		`"time":"2026-01-02T02:04:05.123456Z","datacontenttype":"application/json","schemaversion":1,"data":{"id": "o1"}}`
	if got := string(orderflow.AppendCloudEvent(nil, &ev)); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestTopic(t *testing.T) {
	t.Parallel()
	if got := orderflow.Topic(orderflow.AggregateOrder); got != "orderflow.order" {
		t.Errorf("Topic(order) = %q, want orderflow.order", got)
	}
	if got := orderflow.PrefixedTopic("test_1", "order"); got != "test_1.order" {
		t.Errorf("PrefixedTopic = %q, want test_1.order", got)
	}
}

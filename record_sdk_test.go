package orderflow_test

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"orderflow"
	"orderflow/internal/cetest"
	"orderflow/schemas"
)

// capturedOrder is the order in the state each event type announces, as the outbox stores it.
func capturedOrder(status orderflow.Status, version int, reason string) orderflow.Order {
	created := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	return orderflow.Order{
		ID: "01956f7e-5c2a-7b3e-9a41-0c2d4e6f8a10", CustomerID: "cust-42", Currency: "EUR",
		Status: status, Version: version, CancelReason: reason,
		Items:      []orderflow.Item{{SKU: "MUG", Quantity: 2, UnitPriceCents: 1450}, {SKU: "TEA", Quantity: 1, UnitPriceCents: 0}},
		TotalCents: 2900, CreatedAt: created, UpdatedAt: created.Add(time.Duration(version) * time.Minute),
	}
}

func encodeOrderEvent(t *testing.T, typ string, o orderflow.Order, seq int) (orderflow.CloudEvent, []orderflow.Header) {
	t.Helper()
	data, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	ev := orderflow.CloudEvent{
		ID: orderflow.StateEventID(o.ID, o.Version, typ), Source: orderflow.EventSource, Type: typ, Subject: o.ID,
		Time: o.UpdatedAt, DataContentType: orderflow.ContentTypeJSON, DataSchema: orderflow.DataSchema(typ, orderflow.OrderSchemaVersion),
		SchemaVersion: orderflow.OrderSchemaVersion, Data: data,
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
	headers := append(orderflow.AppendBinaryHeaders(nil, &ev),
		orderflow.Header{Key: orderflow.HeaderLSN, Value: []byte("0/16B3748")},
		orderflow.Header{Key: orderflow.HeaderSeq, Value: []byte(strconv.Itoa(seq))})
	return ev, headers
}

// A data engineer's CloudEvents SDK decodes every record the encoder writes, sees the same
// attributes orderflow's own decoder sees, and the data validates against the schema that
// dataschema names.
func TestSDKDecodesBinaryRecords(t *testing.T) {
	t.Parallel()
	for i, tc := range []struct {
		typ string
		o   orderflow.Order
	}{
		{orderflow.EventOrderCreated, capturedOrder(orderflow.StatusPending, 1, "")},
		{orderflow.EventOrderCancelled, capturedOrder(orderflow.StatusCancelled, 2, "customer changed their mind ✓")},
		{orderflow.EventOrderCancelled, capturedOrder(orderflow.StatusCancelled, 2, "")},
		{orderflow.EventOrderFulfilled, capturedOrder(orderflow.StatusFulfilled, 2, "")},
	} {
		t.Run(tc.typ+strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			want, headers := encodeOrderEvent(t, tc.typ, tc.o, i)
			got, err := cetest.Decode(headers, want.Data)
			if err != nil {
				t.Fatalf("the SDK refused the record: %v", err)
			}
			if got.SpecVersion() != "1.0" || got.ID() != want.ID || got.Source() != want.Source || got.Type() != want.Type ||
				got.Subject() != want.Subject || !got.Time().Equal(want.Time) || got.DataContentType() != orderflow.ContentTypeJSON ||
				got.DataSchema() != schemas.ID(tc.typ, orderflow.OrderSchemaVersion) {
				t.Errorf("the SDK read %s", got)
			}
			ext := got.Extensions()
			if ext["schemaversion"] != strconv.Itoa(orderflow.OrderSchemaVersion) || ext["traceparent"] != want.TraceParent {
				t.Errorf("extensions %v, want schemaversion %d and the traceparent", ext, orderflow.OrderSchemaVersion)
			}
			if _, ok := ext["lsn"]; ok {
				t.Error("pg_lsn leaked into the event")
			}
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(got.Data()))
			if err != nil {
				t.Fatal(err)
			}
			if err := cetest.Schema(t, tc.typ, orderflow.OrderSchemaVersion).Validate(doc); err != nil {
				t.Errorf("data does not validate against %s: %v", got.DataSchema(), err)
			}
			// The webhook body rendered from orderflow's decoding is a structured event the
			// SDK reads as the same event.
			ours, err := orderflow.DecodeRecord(headers, want.Data)
			if err != nil {
				t.Fatal(err)
			}
			body := orderflow.AppendCloudEvent(nil, ours)
			fromBody, err := cetest.Decode([]orderflow.Header{{Key: "content-type", Value: []byte("application/cloudevents+json")}}, body)
			if err != nil {
				t.Fatalf("the SDK refused the webhook body %s: %v", body, err)
			}
			if fromBody.ID() != got.ID() || fromBody.DataSchema() != got.DataSchema() || !bytes.Equal(fromBody.Data(), got.Data()) {
				t.Errorf("webhook body read as %s, want %s", fromBody, got)
			}
		})
	}
}

// Why the switch: the records capture wrote before it carry ce_id and ce_type but no
// ce_specversion or content-type, and the SDK's Kafka binding refuses them.
func TestSDKRefusesTheStructuredRecordsWithoutContentType(t *testing.T) {
	t.Parallel()
	ev, _ := encodeOrderEvent(t, orderflow.EventOrderCreated, capturedOrder(orderflow.StatusPending, 1, ""), 0)
	ev.DataSchema, ev.TraceParent = "", ""
	old := []orderflow.Header{
		{Key: orderflow.HeaderEventID, Value: []byte(ev.ID)}, {Key: orderflow.HeaderEventType, Value: []byte(ev.Type)},
		{Key: orderflow.HeaderLSN, Value: []byte("0/16B3748")}, {Key: orderflow.HeaderSeq, Value: []byte("0")},
	}
	value := orderflow.AppendCloudEvent(nil, &ev)
	if got, err := cetest.Decode(old, value); err == nil {
		t.Fatalf("the SDK decoded an old record: %s", got)
	}
	if _, err := orderflow.DecodeRecord(old, value); err != nil {
		t.Errorf("orderflow's decoder must still read old records during the switch: %v", err)
	}
}

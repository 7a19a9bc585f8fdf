package orderflow_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"orderflow"
	"orderflow/schemas"
)

// The CloudEvents Go SDK (sdk-go) has Kafka bindings for sarama and confluent-kafka-go but none
// for segmentio/kafka-go. sdkMessage is the SDK's binding.Message over orderflow's Header, a
// line-for-line port of the sarama binding's Message (protocol/kafka_sarama/v2/message.go):
// lower-cased header names, structured mode when content-type names a known event format,
// binary mode when ce_specversion names a known version, anything else unknown. The attribute
// parsing and validation are the SDK's own.
type sdkMessage struct {
	value       []byte
	headers     map[string][]byte
	contentType string
	format      format.Format
	version     spec.Version
}

var sdkSpecs = spec.WithPrefix("ce_")

var (
	_ binding.Message               = (*sdkMessage)(nil)
	_ binding.MessageMetadataReader = (*sdkMessage)(nil)
)

func newSDKMessage(headers []orderflow.Header, value []byte) *sdkMessage {
	m := &sdkMessage{value: value, headers: make(map[string][]byte, len(headers))}
	for _, h := range headers {
		k := strings.ToLower(h.Key)
		if k == "content-type" {
			m.contentType = string(h.Value)
		}
		m.headers[k] = h.Value
	}
	if ft := format.Lookup(m.contentType); ft != nil {
		m.format = ft
	} else if v := sdkSpecs.Version(string(m.headers[sdkSpecs.PrefixedSpecVersionName()])); v != nil {
		m.version = v
	}
	return m
}

func (m *sdkMessage) ReadEncoding() binding.Encoding {
	switch {
	case m.version != nil:
		return binding.EncodingBinary
	case m.format != nil:
		return binding.EncodingStructured
	}
	return binding.EncodingUnknown
}

func (m *sdkMessage) ReadStructured(ctx context.Context, w binding.StructuredWriter) error {
	if m.format == nil {
		return binding.ErrNotStructured
	}
	return w.SetStructuredEvent(ctx, m.format, bytes.NewReader(m.value))
}

func (m *sdkMessage) ReadBinary(_ context.Context, w binding.BinaryWriter) error {
	if m.version == nil {
		return binding.ErrNotBinary
	}
	for k, v := range m.headers {
		var err error
		switch {
		case strings.HasPrefix(k, "ce_"):
			if attr := m.version.Attribute(k); attr != nil {
				err = w.SetAttribute(attr, string(v))
			} else {
				err = w.SetExtension(strings.TrimPrefix(k, "ce_"), string(v))
			}
		case k == "content-type":
			err = w.SetAttribute(m.version.AttributeFromKind(spec.DataContentType), string(v))
		}
		if err != nil {
			return err
		}
	}
	if m.value != nil {
		return w.SetData(bytes.NewReader(m.value))
	}
	return nil
}

func (m *sdkMessage) GetAttribute(k spec.Kind) (spec.Attribute, any) {
	if attr := m.version.AttributeFromKind(k); attr != nil {
		return attr, string(m.headers[attr.PrefixedName()])
	}
	return nil, nil
}

func (m *sdkMessage) GetExtension(name string) any { return string(m.headers["ce_"+name]) }

func (m *sdkMessage) Finish(error) error { return nil }

// sdkDecode is what a data engineer's SDK reader does with a record: decode, then validate.
func sdkDecode(headers []orderflow.Header, value []byte) (*event.Event, error) {
	ev, err := binding.ToEvent(context.Background(), newSDKMessage(headers, value))
	if err != nil {
		return nil, err
	}
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	return ev, nil
}

// schemaFor compiles the schema an event names, asserting formats (date-time), which draft
// 2020-12 otherwise only annotates.
func schemaFor(tb testing.TB, eventType string, version int) *jsonschema.Schema {
	tb.Helper()
	b, ok := schemas.Schema(eventType, version)
	if !ok {
		tb.Fatalf("no schema for %s v%d", eventType, version)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	id := schemas.ID(eventType, version)
	if err := c.AddResource(id, doc); err != nil {
		tb.Fatal(err)
	}
	s, err := c.Compile(id)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

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
			got, err := sdkDecode(headers, want.Data)
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
			if err := schemaFor(t, tc.typ, orderflow.OrderSchemaVersion).Validate(doc); err != nil {
				t.Errorf("data does not validate against %s: %v", got.DataSchema(), err)
			}
			// The webhook body rendered from orderflow's decoding is a structured event the
			// SDK reads as the same event.
			ours, err := orderflow.DecodeRecord(headers, want.Data)
			if err != nil {
				t.Fatal(err)
			}
			body := orderflow.AppendCloudEvent(nil, ours)
			fromBody, err := sdkDecode([]orderflow.Header{{Key: "content-type", Value: []byte("application/cloudevents+json")}}, body)
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
	if got, err := sdkDecode(old, value); err == nil {
		t.Fatalf("the SDK decoded an old record: %s", got)
	}
	if _, err := orderflow.DecodeRecord(old, value); err != nil {
		t.Errorf("orderflow's decoder must still read old records during the switch: %v", err)
	}
}

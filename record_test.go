package orderflow_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"orderflow"
	"orderflow/schemas"
)

// sampleEvent is an event as capture publishes it after the switch to binary mode.
func sampleEvent() orderflow.CloudEvent {
	return orderflow.CloudEvent{
		SpecVersion: "1.0", ID: "01956f7e-5c2a-7b3e-9a41-0c2d4e6f8a11", Source: orderflow.EventSource,
		Type: orderflow.EventOrderCreated, Subject: "01956f7e-5c2a-7b3e-9a41-0c2d4e6f8a10",
		Time:            time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC),
		DataContentType: orderflow.ContentTypeJSON, DataSchema: orderflow.DataSchema(orderflow.EventOrderCreated, 1),
		SchemaVersion: 1, Data: json.RawMessage(`{"id": "01956f7e-5c2a-7b3e-9a41-0c2d4e6f8a10", "version": 1}`),
	}
}

// positionHeaders are what capture adds after the attributes.
var positionHeaders = []orderflow.Header{
	{Key: orderflow.HeaderLSN, Value: []byte("0/16B3748")},
	{Key: orderflow.HeaderSeq, Value: []byte("0")},
}

func binaryRecord(ev *orderflow.CloudEvent) []orderflow.Header {
	return append(orderflow.AppendBinaryHeaders(nil, ev), positionHeaders...)
}

// The binary-mode headers are a contract with readers outside this repository (SDKs, Kafka
// Connect, ksqlDB filters): their names and formatting stay as they are.
func TestAppendBinaryHeadersWireFormat(t *testing.T) {
	t.Parallel()
	ev := sampleEvent()
	ev.Time = time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.FixedZone("x", 3600))
	ev.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	var got []string
	for _, h := range orderflow.AppendBinaryHeaders(nil, &ev) {
		got = append(got, h.Key+"="+string(h.Value))
	}
	want := []string{
		"ce_specversion=1.0",
		"ce_id=01956f7e-5c2a-7b3e-9a41-0c2d4e6f8a11",
		"ce_source=/orderflow/outbox",
		"ce_type=order.created",
		"ce_subject=01956f7e-5c2a-7b3e-9a41-0c2d4e6f8a10",
		"ce_time=2026-01-02T02:04:05.123456Z",
		"content-type=application/json",
		"ce_dataschema=https://orderflow.dev/v1/schemas/order.created/1.json",
		"ce_schemaversion=1",
		"ce_traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("headers\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The header values share one buffer; appending to one must never change another.
func TestAppendBinaryHeadersValuesAreIndependent(t *testing.T) {
	t.Parallel()
	ev := sampleEvent()
	hs := orderflow.AppendBinaryHeaders(nil, &ev)
	_ = append(hs[1].Value, "XXXXXXXX"...)
	if got := string(hs[2].Value); got != orderflow.EventSource {
		t.Errorf("ce_source became %q after appending to ce_id", got)
	}
}

func TestDataSchema(t *testing.T) {
	t.Parallel()
	for _, et := range schemas.EventTypes() {
		if got := orderflow.DataSchema(et.Type, et.Latest()); got != schemas.ID(et.Type, et.Latest()) {
			t.Errorf("DataSchema(%s, %d) = %q, want %q", et.Type, et.Latest(), got, schemas.ID(et.Type, et.Latest()))
		}
	}
	if got := orderflow.DataSchema("order.shipped", 1); got != "" {
		t.Errorf("DataSchema of a type without schema = %q, want empty", got)
	}
	if got := orderflow.DataSchema(orderflow.EventOrderCreated, 99); got != "" {
		t.Errorf("DataSchema of an unpublished version = %q, want empty", got)
	}
}

// What the encoder writes is what every consumer decodes: encode, decode, same event, and the
// webhook body rendered from it is the same structured event.
func TestBinaryRecordRoundTrip(t *testing.T) {
	t.Parallel()
	full := sampleEvent()
	full.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	minimal := sampleEvent()
	minimal.Time, minimal.DataSchema, minimal.DataContentType = time.Time{}, "", ""
	unicodeText := sampleEvent()
	unicodeText.Subject, unicodeText.Type, unicodeText.SchemaVersion = "ü€😀 \"q\" \\", "t</script>", -3
	for name, in := range map[string]orderflow.CloudEvent{"full": full, "minimal": minimal, "unicode": unicodeText} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, err := orderflow.DecodeRecord(binaryRecord(&in), in.Data)
			if err != nil {
				t.Fatal(err)
			}
			want := in
			if want.DataContentType == "" {
				want.DataContentType = orderflow.ContentTypeJSON // what the encoder writes for empty
			}
			assertSameEvent(t, out, &want)
			body := orderflow.AppendCloudEvent(nil, out)
			fromBody, err := orderflow.DecodeCloudEvent(body)
			if err != nil {
				t.Fatalf("webhook body %s: %v", body, err)
			}
			assertSameEvent(t, fromBody, &want)
		})
	}
}

func assertSameEvent(t *testing.T, got, want *orderflow.CloudEvent) {
	t.Helper()
	if !got.Time.Equal(want.Time) {
		t.Errorf("time %v, want %v", got.Time, want.Time)
	}
	if !bytes.Equal(got.Data, want.Data) {
		t.Errorf("data %s, want the payload verbatim %s", got.Data, want.Data)
	}
	g, w := *got, *want
	g.Time, w.Time, g.Data, w.Data = time.Time{}, time.Time{}, nil, nil
	if !reflect.DeepEqual(g, w) {
		t.Errorf("decoded %+v\nwant    %+v", g, w)
	}
}

// A topic holds records of both modes while capture and consumers switch; one decoder reads
// them all, and the webhook body of an old record is byte for byte what was delivered before.
func TestDecodeRecordReadsEveryMode(t *testing.T) {
	t.Parallel()
	ev := sampleEvent()
	legacy := ev
	legacy.DataSchema = "" // structured records never carried dataschema
	legacyValue := orderflow.AppendCloudEvent(nil, &legacy)
	legacyHeaders := append([]orderflow.Header{
		{Key: orderflow.HeaderEventID, Value: []byte(ev.ID)},
		{Key: orderflow.HeaderEventType, Value: []byte(ev.Type)},
	}, positionHeaders...)
	structured := orderflow.AppendCloudEvent(nil, &ev)
	for _, tc := range []struct {
		name    string
		headers []orderflow.Header
		value   []byte
		want    orderflow.CloudEvent
		mode    orderflow.RecordMode
	}{
		{"binary", binaryRecord(&ev), ev.Data, ev, orderflow.ModeBinary},
		{"structured before the switch", legacyHeaders, legacyValue, legacy, orderflow.ModeLegacy},
		{"structured with content-type", []orderflow.Header{{Key: "content-type", Value: []byte("application/cloudevents+json; charset=utf-8")}}, structured, ev, orderflow.ModeStructured},
		{"header names in another case", upperKeys(binaryRecord(&ev)), ev.Data, ev, orderflow.ModeBinary},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if mode, _ := orderflow.RecordModeOf(tc.headers); mode != tc.mode {
				t.Errorf("mode %s, want %s", mode, tc.mode)
			}
			got, err := orderflow.DecodeRecord(tc.headers, tc.value)
			if err != nil {
				t.Fatal(err)
			}
			assertSameEvent(t, got, &tc.want)
		})
	}
	got, err := orderflow.DecodeRecord(legacyHeaders, legacyValue)
	if err != nil {
		t.Fatal(err)
	}
	if body := orderflow.AppendCloudEvent(nil, got); !bytes.Equal(body, legacyValue) {
		t.Errorf("webhook body of an old record changed:\n%s\nwas\n%s", body, legacyValue)
	}
}

func upperKeys(hs []orderflow.Header) []orderflow.Header {
	out := make([]orderflow.Header, len(hs))
	for i, h := range hs {
		out[i] = orderflow.Header{Key: strings.ToUpper(h.Key), Value: h.Value}
	}
	return out
}

// A record no reader could trust is refused with a reason, never half-decoded.
func TestDecodeRecordRefuses(t *testing.T) {
	t.Parallel()
	ev := sampleEvent()
	good := binaryRecord(&ev)
	const drop = "\x00drop"
	set := func(key, value string) []orderflow.Header {
		out := make([]orderflow.Header, 0, len(good))
		done := false
		for _, h := range good {
			if h.Key == key {
				done = true
				if value == drop {
					continue
				}
				h = orderflow.Header{Key: key, Value: []byte(value)}
			}
			out = append(out, h)
		}
		if !done {
			out = append(out, orderflow.Header{Key: key, Value: []byte(value)})
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		headers []orderflow.Header
		value   string
		want    string
	}{
		{"old specversion", set("ce_specversion", "0.3"), "", "specversion"},
		{"no id", set("ce_id", drop), "", "required"},
		{"blank id", set("ce_id", "  "), "", "blank"},
		{"no source", set("ce_source", drop), "", "source"},
		{"no type", set("ce_type", drop), "", "required"},
		{"no subject", set("ce_subject", drop), "", "required"},
		{"no content-type", set("content-type", drop), "", "content-type"},
		{"text data", set("content-type", "text/plain"), "", "content-type"},
		{"batch", set("content-type", "application/cloudevents-batch+json"), "[]", "cloudevents+json"},
		{"json without specversion", set("ce_specversion", drop), "", "not a CloudEvent"},
		{"no data", good, "-", "no data"},
		{"data not JSON", good, "{", "not JSON"},
		{"bad time", set("ce_time", "yesterday"), "", "RFC 3339"},
		{"string schema version", set("ce_schemaversion", "one"), "", "integer"},
		{"id twice", append(good, orderflow.Header{Key: "ce_id", Value: []byte("other")}), "", "more than once"},
		{"id twice in another case", append(good, orderflow.Header{Key: "CE_ID", Value: []byte("other")}), "", "more than once"},
		{"invalid UTF-8", set("ce_subject", "o\xff1"), "", "UTF-8"},
		{"NUL in the id", set("ce_id", "a\x00b"), "", "control character"},
		{"newline in the type", set("ce_type", "order\ncreated"), "", "control character"},
		{"noncharacter", set("ce_subject", "o\uFFFE"), "", "noncharacter"},
		{"extension with a dash", set("ce_schema-version", "1"), "", "attribute"},
		{"empty extension name", set("ce_", "1"), "", "attribute"},
		{"relative dataschema", set("ce_dataschema", "/v1/schemas/order.created/1.json"), "", "absolute URI"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			value := []byte(tc.value)
			switch tc.value {
			case "":
				value = ev.Data
			case "-":
				value = nil
			}
			got, err := orderflow.DecodeRecord(tc.headers, value)
			if err == nil {
				t.Fatalf("decoded %+v", got)
			}
			if got != nil {
				t.Error("a refused record returned an event")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
	// The old record format must still be held to the same attribute rules.
	legacy := ev
	legacy.ID = "a\u0085b"
	if _, err := orderflow.DecodeRecord(nil, orderflow.AppendCloudEvent(nil, &legacy)); err == nil {
		t.Error("a structured record with a C1 control character in its id was accepted")
	}
}

func ExampleDecodeRecord() {
	ev := orderflow.CloudEvent{
		ID: "01956f7e-5c2a-7b3e-9a41-0c2d4e6f8a11", Source: orderflow.EventSource, Type: orderflow.EventOrderCreated,
		Subject: "01956f7e-5c2a-7b3e-9a41-0c2d4e6f8a10", SchemaVersion: 1, Data: json.RawMessage(`{"id":"…"}`),
	}
	headers := orderflow.AppendBinaryHeaders(nil, &ev)
	got, err := orderflow.DecodeRecord(headers, ev.Data)
	fmt.Println(got.Type, got.Subject, string(got.Data), err)
	// Output: order.created 01956f7e-5c2a-7b3e-9a41-0c2d4e6f8a10 {"id":"…"} <nil>
}

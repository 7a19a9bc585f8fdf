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
	v2, _ := orderflow.DecodeCloudEvent([]byte(strings.Replace(good, `"schemaversion":1`, `"schemaversion":2`, 1)))
	if _, err := orderflow.OrderFromEvent(v2); err == nil {
		t.Error("schema version 2 was accepted")
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

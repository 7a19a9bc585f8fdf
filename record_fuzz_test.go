package orderflow_test

import (
	"bytes"
	"encoding/json"
	"orderflow/internal/cetest"
	"strings"
	"testing"

	"orderflow"
)

// fuzzHeaders turns fuzz bytes into headers: NUL separates headers, the first '=' separates a
// key from its value.
func fuzzHeaders(b []byte) []orderflow.Header {
	if len(b) == 0 {
		return nil
	}
	var hs []orderflow.Header
	for _, part := range bytes.Split(b, []byte{0}) {
		k, v, _ := bytes.Cut(part, []byte("="))
		hs = append(hs, orderflow.Header{Key: string(k), Value: v})
	}
	return hs
}

func joinHeaders(hs []orderflow.Header) []byte {
	var parts [][]byte
	for _, h := range hs {
		parts = append(parts, append([]byte(h.Key+"="), h.Value...))
	}
	return bytes.Join(parts, []byte{0})
}

// FuzzDecodeRecord feeds arbitrary headers and values to the one decoder every consumer uses. A
// poison record must be refused, never crash a consumer. Whatever it accepts must hold what
// consumers rely on, re-encode in binary mode and render as a webhook body to the same event,
// and be accepted by the CloudEvents SDK as well, so orderflow never reads a record that a
// data engineer's reader refuses.
func FuzzDecodeRecord(f *testing.F) {
	ev := sampleEvent()
	ev.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	f.Add(joinHeaders(binaryRecord(&ev)), []byte(ev.Data))
	legacy := ev
	legacy.DataSchema, legacy.TraceParent = "", ""
	f.Add(joinHeaders(positionHeaders), orderflow.AppendCloudEvent(nil, &legacy))
	f.Add([]byte("content-type=application/cloudevents+json"), orderflow.AppendCloudEvent(nil, &ev))
	f.Add([]byte("ce_specversion=1.0\x00ce_id=1\x00ce_source=s\x00ce_type=t\x00ce_subject=o\x00content-type=application/json\x00ce_x=\x00ce_time=2026-01-02T03:04:05+01:00"), []byte(`null`))
	f.Add([]byte("ce_specversion=1.0\x00ce_dataschema="), []byte(`{}`))
	f.Add([]byte(""), []byte(`{"specversion":"1.0","id":"e1","type":"t","subject":"s","data":null}`))
	f.Add([]byte("content-type=text/plain"), []byte(`{`))
	f.Fuzz(func(t *testing.T, headerBytes, value []byte) {
		headers := fuzzHeaders(headerBytes)
		got, err := orderflow.DecodeRecord(headers, value)
		if err != nil {
			if got != nil {
				t.Fatal("refused record returned an event")
			}
			return
		}
		if got.SpecVersion != "1.0" || strings.TrimSpace(got.ID) == "" || strings.TrimSpace(got.Source) == "" ||
			strings.TrimSpace(got.Type) == "" || strings.TrimSpace(got.Subject) == "" || !json.Valid(got.Data) {
			t.Fatalf("accepted incomplete event %+v", got)
		}
		if o, err := orderflow.OrderFromEvent(got); err == nil && (o.ID == "" || o.Version < 1) {
			t.Fatalf("accepted order without id or version: %+v", o)
		}

		body := orderflow.AppendCloudEvent(nil, got)
		fromBody, err := orderflow.DecodeRecord([]orderflow.Header{{Key: "content-type", Value: []byte("application/cloudevents+json")}}, body)
		if err != nil {
			t.Fatalf("webhook body %s of an accepted record refused: %v", body, err)
		}
		want := *got
		want.Data = bytes.TrimSpace(want.Data)
		assertSameEvent(t, fromBody, &want)

		reencoded := orderflow.AppendBinaryHeaders(nil, got)
		again, err := orderflow.DecodeRecord(reencoded, got.Data)
		if err != nil {
			t.Fatalf("re-encoded %+v refused: %v", got, err)
		}
		want = *got
		if want.DataContentType == "" {
			want.DataContentType = orderflow.ContentTypeJSON
		}
		assertSameEvent(t, again, &want)
		if _, err := cetest.Decode(reencoded, got.Data); err != nil {
			t.Fatalf("the SDK refused what orderflow encoded from an accepted record %+v: %v", got, err)
		}
		if isBinary(headers) {
			if _, err := cetest.Decode(headers, value); err != nil {
				t.Fatalf("orderflow accepted a binary record the SDK refuses: %v", err)
			}
		}
	})
}

func isBinary(hs []orderflow.Header) bool {
	for _, h := range hs {
		if strings.EqualFold(h.Key, orderflow.HeaderSpecVersion) {
			return true
		}
	}
	return false
}

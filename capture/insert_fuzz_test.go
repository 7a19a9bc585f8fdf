package capture

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"orderflow"
	"orderflow/internal/tracing"
)

// FuzzDecodeInsert feeds arbitrary pgoutput Insert messages to capture's own tuple decoder,
// which reads lengths from the wire: a malformed message must be an error, never a panic or
// a read past the buffer, and a row it accepts must become a CloudEvent the consumers decode
// back to the same identity.
func FuzzDecodeInsert(f *testing.F) {
	full := []*string{str("0190c4f6-1d2b-7c3a-9a1b-2f3e4d5c6b7a"), str("order"), str("agg-1"), str("order.created"), str("1"),
		str(`{"id": "agg-1", "version": 1}`), str("2026-01-02 03:04:05.123456+00")}
	f.Add(tuple(7, full...))
	f.Add(tuple(7, append([]*string{nil}, full[1:]...)...))
	f.Add(tuple(8, full...))
	f.Add(tuple(7, full...)[:20])
	f.Add(append(tuple(7, full[:6]...), 't', 0xff, 0xff, 0xff, 0xff))
	f.Add([]byte{0, 0, 0, 7, 'N', 0xff, 0xff})
	f.Add([]byte{})
	f.Add(tuple(9, append(full, str("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))...))
	f.Add(tuple(9, append(full, str("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"))...))
	// 9 is an outbox with the optional traceparent column (00012) as its eighth.
	rels := map[uint32]*relation{
		7: {name: "public.outbox", cols: [numCols]int{0, 1, 2, 3, 4, 5, 6}},
		9: {name: "public.outbox", cols: [numCols]int{0, 1, 2, 3, 4, 5, 6}, traceParent: 8},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev Event
		if err := decodeInsert(data, rels, &ev); err != nil {
			return
		}
		if len(ev.Payload) > len(data) {
			t.Fatalf("payload of %d bytes from a message of %d", len(ev.Payload), len(data))
		}
		if ev.ID == "" || ev.EventType == "" || ev.AggregateID == "" || !json.Valid(ev.Payload) ||
			!utf8.ValidString(ev.ID+ev.EventType+ev.AggregateID) {
			return // PostgreSQL never sends these for an outbox row (NOT NULL, jsonb, UTF8)
		}
		out := orderflow.AppendCloudEvent(nil, CloudEvent(&ev))
		got, err := orderflow.DecodeCloudEvent(out)
		if err != nil {
			t.Fatalf("the published event does not decode: %v\n%s", err, out)
		}
		if ev.TraceParent != "" {
			if _, err := tracing.Parse(ev.TraceParent); err != nil || got.TraceParent != ev.TraceParent {
				t.Fatalf("traceparent %q published as %q (%v)", ev.TraceParent, got.TraceParent, err)
			}
		}
		if got.ID != ev.ID || got.Type != ev.EventType || got.Subject != ev.AggregateID {
			t.Fatalf("decoded id %q type %q subject %q, published %q %q %q", got.ID, got.Type, got.Subject, ev.ID, ev.EventType, ev.AggregateID)
		}
	})
}

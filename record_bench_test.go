package orderflow_test

import (
	"encoding/json"
	"testing"

	"orderflow"
)

// What the switch costs per event on capture's hot path and in every consumer, beside the
// structured encoding it replaces.
func benchEvent(b *testing.B) orderflow.CloudEvent {
	data, err := json.Marshal(capturedOrder(orderflow.StatusFulfilled, 2, ""))
	if err != nil {
		b.Fatal(err)
	}
	ev := sampleEvent()
	ev.Data = data
	return ev
}

func BenchmarkAppendBinaryHeaders(b *testing.B) {
	ev := benchEvent(b)
	hs := make([]orderflow.Header, 0, 12)
	b.ReportAllocs()
	for b.Loop() {
		hs = orderflow.AppendBinaryHeaders(hs[:0], &ev)
	}
}

func BenchmarkAppendCloudEvent(b *testing.B) {
	ev := benchEvent(b)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = orderflow.AppendCloudEvent(buf[:0], &ev)
	}
}

func BenchmarkDecodeRecordBinary(b *testing.B) {
	ev := benchEvent(b)
	hs := binaryRecord(&ev)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := orderflow.DecodeRecord(hs, ev.Data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeRecordLegacy(b *testing.B) {
	ev := benchEvent(b)
	ev.DataSchema = ""
	value := orderflow.AppendCloudEvent(nil, &ev)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := orderflow.DecodeRecord(positionHeaders, value); err != nil {
			b.Fatal(err)
		}
	}
}

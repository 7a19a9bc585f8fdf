package capture

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
)

// The bound capture sizes requests with is never below what kafka-go really encodes for the
// same records, whatever the key, value and position sizes: so a request that fits the bound
// fits the broker's max.message.bytes.
func TestRecordBoundCoversTheEncodedBatch(t *testing.T) {
	t.Parallel()
	ev := func(valueLen int, lsn pglogrepl.LSN, seq uint32) *outEvent {
		// The record capture really writes: binary mode, a dozen headers.
		return newOutEvent(nil, Position{LSN: lsn, Seq: seq}, "orders.order", &Event{
			ID: "0b0a4c1e-8d6f-4b8e-9a51-0c4d8c6c1f2e", AggregateType: "order", AggregateID: "5f0e9c7a-3a43-4c0b-9b7e-2b1a7e0c9d11",
			EventType: "order.created", SchemaVersion: 2, Payload: []byte(strings.Repeat("x", valueLen)),
			CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC),
		})
	}
	for _, tc := range []struct {
		name   string
		events []*outEvent
	}{
		{"one empty event", []*outEvent{ev(0, 1, 0)}},
		{"one order-sized event", []*outEvent{ev(16_000, 0x16B3748, 0)}},
		{"varints at their longest", []*outEvent{ev(1<<20, ^pglogrepl.LSN(0), ^uint32(0))}},
		{"many small events", func() []*outEvent {
			var out []*outEvent
			for i := range 2000 {
				out = append(out, ev(i%300, pglogrepl.LSN(i)<<20, uint32(i%7)))
			}
			return out
		}()},
		{"mixed sizes", []*outEvent{ev(10, 1, 0), ev(70_000, 2, 1), ev(127, 3, 0), ev(128, 3, 1), ev(16_383, 4, 0), ev(16_384, 4, 1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Timestamps far apart make the per-record timestamp delta long.
			now := time.Unix(1_700_000_000, 0)
			records := make([]kafkago.Record, len(tc.events))
			bound := batchOverhead
			for i, e := range tc.events {
				records[i] = newRecord(e, now.Add(time.Duration(i)*time.Hour))
				bound += recordBound(&records[i])
			}
			rs := protocol.RecordSet{Version: 2, Records: protocol.NewRecordReader(records...)}
			var buf bytes.Buffer
			if _, err := rs.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			encoded := buf.Len() - 4 // WriteTo prefixes the batch with the record set's length
			if encoded > bound {
				t.Errorf("encoded batch %d bytes, bound %d: the bound is too small", encoded, bound)
			}
			if slack := bound - encoded; slack > 64*len(records)+batchOverhead {
				t.Errorf("encoded %d bytes, bound %d: the bound wastes %d bytes", encoded, bound, slack)
			}
		})
	}
}

package capture

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"

	"orderflow"
)

// The record batch capture encodes itself is what kafka-go (and so the broker) reads back:
// the checksum verifies, every record has its key, value, time and headers (the ce_ headers
// plus pg_lsn and pg_seq) in order; and its size is byte for byte what kafka-go encodes for
// the same records, so a batch capture finds within max.message.bytes is within it.
func TestRecordBatchIsWhatKafkaReads(t *testing.T) {
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
			now := time.UnixMilli(1_700_000_000_123)
			var rb recordBatch
			rb.reset(now)
			// A record taken back (it did not fit) leaves no trace.
			m := rb.mark()
			rb.add(ev(500, 9, 9))
			rb.undo(m)
			want := make([]kafkago.Record, len(tc.events))
			for i, e := range tc.events {
				rb.add(e)
				hs := make([]kafkago.Header, 0, len(e.headers)+2)
				for _, h := range e.headers {
					hs = append(hs, kafkago.Header(h))
				}
				hs = append(hs, kafkago.Header{Key: orderflow.HeaderLSN, Value: []byte(e.pos.LSN.String())},
					kafkago.Header{Key: orderflow.HeaderSeq, Value: []byte(strconv.FormatUint(uint64(e.pos.Seq), 10))})
				want[i] = kafkago.Record{Offset: int64(i), Time: now, Key: kafkago.NewBytes(e.key), Value: kafkago.NewBytes(e.value), Headers: hs}
			}
			raw := rb.raw()

			var kg bytes.Buffer
			if _, err := (&protocol.RecordSet{Version: 2, Records: protocol.NewRecordReader(want...)}).WriteTo(&kg); err != nil {
				t.Fatal(err)
			}
			if rb.size() != kg.Len()-4 || len(raw) != kg.Len() {
				t.Errorf("capture's batch is %d bytes (%d with the size field), kafka-go encodes the same records in %d", rb.size(), len(raw), kg.Len()-4)
			}

			var rs protocol.RecordSet
			if _, err := rs.ReadFrom(bytes.NewReader(raw)); err != nil {
				t.Fatalf("kafka-go cannot read capture's batch: %v", err)
			}
			for i := 0; ; i++ {
				r, err := rs.Records.ReadRecord()
				if errors.Is(err, io.EOF) {
					if i != len(want) {
						t.Fatalf("read %d records, wrote %d", i, len(want))
					}
					break
				}
				if err != nil {
					t.Fatalf("record %d: %v", i, err)
				}
				w, e := want[i], tc.events[i]
				if r.Offset != w.Offset || !r.Time.Equal(now) {
					t.Errorf("record %d: offset %d time %v, want %d %v", i, r.Offset, r.Time, w.Offset, now)
				}
				for _, c := range []struct {
					what string
					got  kafkago.Bytes
					want []byte
				}{{"key", r.Key, e.key}, {"value", r.Value, e.value}} {
					// Not w's: kafka-go's encoding above read those to their end.
					g, _ := kafkago.ReadAll(c.got)
					if !bytes.Equal(g, c.want) {
						t.Errorf("record %d: %s differs (%d bytes, want %d)", i, c.what, len(g), len(c.want))
					}
				}
				if len(r.Headers) != len(w.Headers) {
					t.Fatalf("record %d: %d headers, want %d", i, len(r.Headers), len(w.Headers))
				}
				for j := range r.Headers {
					if r.Headers[j].Key != w.Headers[j].Key || !bytes.Equal(r.Headers[j].Value, w.Headers[j].Value) {
						t.Errorf("record %d header %d: %s=%q, want %s=%q", i, j, r.Headers[j].Key, r.Headers[j].Value, w.Headers[j].Key, w.Headers[j].Value)
					}
				}
			}
		})
	}
}

func TestAppendLSNIsPostgresFormat(t *testing.T) {
	t.Parallel()
	for _, l := range []pglogrepl.LSN{0, 1, 0x16B3748, 0xAB_0000_00CD, ^pglogrepl.LSN(0)} {
		if got, want := string(appendLSN(nil, l)), l.String(); got != want {
			t.Errorf("appendLSN(%d) = %q, want %q", uint64(l), got, want)
		}
	}
}

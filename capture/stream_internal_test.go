package capture

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
)

// fakeSink records what the stream publishes and answers with publish.
type fakeSink struct {
	publishFn func(ev *outEvent) publishResult
	events    []*outEvent
}

func (f *fakeSink) open(context.Context, []string) error               { return nil }
func (f *fakeSink) hasRecords(context.Context, []string) (bool, error) { return false, nil }
func (f *fakeSink) failed() <-chan struct{}                            { return nil }
func (f *fakeSink) err() error                                         { return nil }
func (f *fakeSink) finish(bool) error                                  { return nil }
func (f *fakeSink) lastUnanswered() time.Time                          { return time.Time{} }
func (f *fakeSink) hadFailures() bool                                  { return false }
func (f *fakeSink) publish(_ context.Context, ev *outEvent, _ time.Duration) (publishResult, error) {
	f.events = append(f.events, ev)
	if f.publishFn != nil {
		return f.publishFn(ev), nil
	}
	return resQueued, nil
}

func beginMsg(commitLSN pglogrepl.LSN) []byte {
	b := []byte{'B'}
	b = binary.BigEndian.AppendUint64(b, uint64(commitLSN))
	b = binary.BigEndian.AppendUint64(b, 0)
	return binary.BigEndian.AppendUint32(b, 1)
}

func commitMsg(commitLSN, endLSN pglogrepl.LSN) []byte {
	b := []byte{'C', 0}
	b = binary.BigEndian.AppendUint64(b, uint64(commitLSN))
	b = binary.BigEndian.AppendUint64(b, uint64(endLSN))
	return binary.BigEndian.AppendUint64(b, 0)
}

func relationMsg(id uint32) []byte {
	b := []byte{'R'}
	b = binary.BigEndian.AppendUint32(b, id)
	b = append(b, "public\x00outbox\x00"...)
	b = append(b, 'd')
	b = binary.BigEndian.AppendUint16(b, numCols)
	for _, name := range outboxColumns {
		b = append(b, 0)
		b = append(b, name...)
		b = append(b, 0)
		b = binary.BigEndian.AppendUint32(b, 25)
		b = binary.BigEndian.AppendUint32(b, 0xffffffff)
	}
	return b
}

func insertMsg(id string) []byte {
	return append([]byte{'I'}, tuple(1, str(id), str("order"), str("k-"+id), str("order.created"), str("1"), str("{}"), str("2026-01-02 03:04:05+00"))...)
}

// step is one thing that happens to the stream: a message, an ack, or a keepalive.
type step struct {
	msg       []byte
	ack       int // ack the n-th published event (1-based)
	keepalive pglogrepl.LSN
}

// TestConfirmedPosition checks the invariant of the whole package: the confirmed position
// only passes a transaction once it is committed and every one of its events acknowledged,
// in commit order, and a keepalive moves it only when nothing is open or in flight.
func TestConfirmedPosition(t *testing.T) {
	t.Parallel()
	const start = pglogrepl.LSN(50)
	for _, tc := range []struct {
		name  string
		steps []step
		skip  map[string]bool // event ids the sink already holds
		want  pglogrepl.LSN
	}{
		{"nothing happened", nil, nil, start},
		{"received but not acked", []step{{msg: beginMsg(100)}, {msg: insertMsg("a")}, {msg: commitMsg(100, 110)}}, nil, start},
		{"acked", []step{{msg: beginMsg(100)}, {msg: insertMsg("a")}, {msg: commitMsg(100, 110)}, {ack: 1}}, nil, 110},
		{"acked before commit arrived", []step{{msg: beginMsg(100)}, {msg: insertMsg("a")}, {ack: 1}}, nil, start},
		{"acked, then commit", []step{{msg: beginMsg(100)}, {msg: insertMsg("a")}, {ack: 1}, {msg: commitMsg(100, 110)}}, nil, 110},
		{"one of two acked", []step{{msg: beginMsg(100)}, {msg: insertMsg("a")}, {msg: insertMsg("b")}, {msg: commitMsg(100, 110)}, {ack: 2}}, nil, start},
		{"later transaction acked first", []step{
			{msg: beginMsg(100)}, {msg: insertMsg("a")}, {msg: commitMsg(100, 110)},
			{msg: beginMsg(200)}, {msg: insertMsg("b")}, {msg: commitMsg(200, 210)}, {ack: 2},
		}, nil, start},
		{"both acked in reverse", []step{
			{msg: beginMsg(100)}, {msg: insertMsg("a")}, {msg: commitMsg(100, 110)},
			{msg: beginMsg(200)}, {msg: insertMsg("b")}, {msg: commitMsg(200, 210)}, {ack: 2}, {ack: 1},
		}, nil, 210},
		{"first acked, second not", []step{
			{msg: beginMsg(100)}, {msg: insertMsg("a")}, {msg: commitMsg(100, 110)},
			{msg: beginMsg(200)}, {msg: insertMsg("b")}, {msg: commitMsg(200, 210)}, {ack: 1},
		}, nil, 110},
		{"skipped events need no ack", []step{{msg: beginMsg(100)}, {msg: insertMsg("a")}, {msg: commitMsg(100, 110)}}, map[string]bool{"a": true}, 110},
		{"keepalive while idle", []step{{keepalive: 500}}, nil, 500},
		{"keepalive inside a transaction", []step{{msg: beginMsg(100)}, {keepalive: 500}}, nil, start},
		{"keepalive with unacked events", []step{{msg: beginMsg(100)}, {msg: insertMsg("a")}, {msg: commitMsg(100, 110)}, {keepalive: 500}}, nil, start},
		{"keepalive after everything acked", []step{{msg: beginMsg(100)}, {msg: insertMsg("a")}, {msg: commitMsg(100, 110)}, {ack: 1}, {keepalive: 500}}, nil, 500},
		{"keepalive never moves back", []step{{keepalive: 500}, {keepalive: 400}}, nil, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &Capture{cfg: Config{TopicPrefix: "p"}, metrics: newMetrics()}
			sink := &fakeSink{publishFn: func(ev *outEvent) publishResult {
				if tc.skip[ev.id] {
					return resSkipped
				}
				return resQueued
			}}
			s := &stream{c: c, sink: sink, rels: map[uint32]*relation{}, confirmed: start}
			if err := s.handleMessage(context.Background(), relationMsg(1)); err != nil {
				t.Fatal(err)
			}
			for _, st := range tc.steps {
				switch {
				case st.msg != nil:
					if err := s.handleMessage(context.Background(), st.msg); err != nil {
						t.Fatal(err)
					}
				case st.ack > 0:
					c.ack(sink.events[st.ack-1])
				case st.keepalive > 0:
					s.advance()
					s.idleAdvance(st.keepalive)
				}
				s.advance()
			}
			if s.confirmed != tc.want {
				t.Errorf("confirmed %s, want %s", s.confirmed, tc.want)
			}
		})
	}
}

// TestPositionsWithinATransaction: pg_seq counts every outbox row of the transaction, skipped
// or not, so a replay gives each event the same position.
func TestPositionsWithinATransaction(t *testing.T) {
	t.Parallel()
	c := &Capture{cfg: Config{TopicPrefix: "p"}, metrics: newMetrics()}
	sink := &fakeSink{publishFn: func(ev *outEvent) publishResult {
		if ev.id == "a" {
			return resSkipped
		}
		return resQueued
	}}
	s := &stream{c: c, sink: sink, rels: map[uint32]*relation{}}
	for _, m := range [][]byte{relationMsg(1), beginMsg(100), insertMsg("a"), insertMsg("b"), insertMsg("c"), commitMsg(100, 110), beginMsg(200), insertMsg("d")} {
		if err := s.handleMessage(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	want := []Position{{100, 0}, {100, 1}, {100, 2}, {200, 0}}
	for i, ev := range sink.events {
		if ev.pos != want[i] || ev.topic != "p.order" || string(ev.key) != "k-"+ev.id {
			t.Errorf("event %d: %+v, want position %v", i, ev, want[i])
		}
	}
}

package capture

import (
	"encoding/binary"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"orderflow"
)

// The pg_lsn header carries the LSN in PostgreSQL's own form, the one pglogrepl reads and writes.
func TestLSNRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s string
		l pglogrepl.LSN
	}{
		{"0/0", 0},
		{"0/16B3748", 0x16B3748},
		{"1/0", 1 << 32},
		{"FFFFFFFF/FFFFFFFF", ^pglogrepl.LSN(0)},
	} {
		if got := tc.l.String(); got != tc.s {
			t.Errorf("%d.String() = %q, want %q", uint64(tc.l), got, tc.s)
		}
		l, err := pglogrepl.ParseLSN(tc.s)
		if err != nil || l != tc.l {
			t.Errorf("pglogrepl.ParseLSN(%q) = %v, %v", tc.s, l, err)
		}
	}
	if _, err := pglogrepl.ParseLSN("nope"); err == nil {
		t.Error("ParseLSN accepted garbage")
	}
}

func TestPositionAfter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		p, q  Position
		after bool
	}{
		{Position{2, 0}, Position{1, 9}, true},
		{Position{1, 9}, Position{2, 0}, false},
		{Position{1, 1}, Position{1, 0}, true},
		{Position{1, 0}, Position{1, 0}, false},
		{Position{1, 0}, Position{1, 1}, false},
	} {
		if got := tc.p.After(tc.q); got != tc.after {
			t.Errorf("%v.After(%v) = %v", tc.p, tc.q, got)
		}
	}
}

func TestAppendCloudEvent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ev   Event
	}{
		{"plain", Event{ID: "a1", AggregateID: "o1", EventType: "order.created", SchemaVersion: 1, Payload: []byte(`{"a": 1}`)}},
		{"escapes", Event{ID: "q\"\\\n\t\x01", AggregateID: "ü€😀", EventType: "t</script>", SchemaVersion: -3, Payload: []byte(`[1, "x"]`)}},
		{"invalid utf8", Event{ID: "bad\xffbyte", AggregateID: "x", EventType: "t", Payload: []byte(`null`)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.ev.CreatedAt = time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.FixedZone("x", 3600))
			b := orderflow.AppendCloudEvent(nil, CloudEvent(&tc.ev))
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, b)
			}
			want := map[string]any{
				"specversion": "1.0", "source": orderflow.EventSource, "type": tc.ev.EventType, "subject": tc.ev.AggregateID,
				"time": "2026-01-02T02:04:05.123456Z", "datacontenttype": "application/json",
				"schemaversion": float64(tc.ev.SchemaVersion),
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %#v, want %#v", k, got[k], v)
				}
			}
			if tc.name != "invalid utf8" && got["id"] != tc.ev.ID {
				t.Errorf("id = %q, want %q", got["id"], tc.ev.ID)
			}
			var raw struct {
				Data json.RawMessage `json:"data"`
			}
			_ = json.Unmarshal(b, &raw)
			if string(raw.Data) != string(tc.ev.Payload) {
				t.Errorf("data %s, want the payload verbatim %s", raw.Data, tc.ev.Payload)
			}
		})
	}
}

func TestParseTimestamptz(t *testing.T) {
	t.Parallel()
	want := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)
	for _, s := range []string{"2026-01-02 03:04:05.123456+00", "2026-01-02 05:04:05.123456+02", "2026-01-02 08:34:05.123456+05:30"} {
		got, err := parseTimestamptz([]byte(s))
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTimestamptz(%q) = %v, %v", s, got, err)
		}
	}
	if got, err := parseTimestamptz([]byte("2026-01-02 03:04:05+00")); err != nil || !got.Equal(want.Truncate(time.Second)) {
		t.Errorf("without fraction: %v, %v", got, err)
	}
}

// tuple builds the body of an Insert message (after its type byte).
func tuple(relID uint32, cols ...*string) []byte {
	b := binary.BigEndian.AppendUint32(nil, relID)
	b = append(b, 'N')
	b = binary.BigEndian.AppendUint16(b, uint16(len(cols)))
	for _, c := range cols {
		if c == nil {
			b = append(b, 'n')
			continue
		}
		b = append(b, 't')
		b = binary.BigEndian.AppendUint32(b, uint32(len(*c)))
		b = append(b, *c...)
	}
	return b
}

func str(s string) *string { return &s }

func TestDecodeInsert(t *testing.T) {
	t.Parallel()
	// Columns in table order with an extra column in the middle, as after ALTER TABLE.
	rel := &relation{name: "public.outbox", cols: [numCols]int{0, 1, 2, 3, 4, 6, 7}}
	rels := map[uint32]*relation{7: rel}
	full := []*string{str("id-1"), str("order"), str("agg-1"), str("order.created"), str("3"), nil, str(`{"x": 1}`), str("2026-01-02 03:04:05.5+00")}
	var ev Event
	if err := decodeInsert(tuple(7, full...), rels, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.ID != "id-1" || ev.AggregateType != "order" || ev.AggregateID != "agg-1" || ev.EventType != "order.created" ||
		ev.SchemaVersion != 3 || string(ev.Payload) != `{"x": 1}` || !ev.CreatedAt.Equal(time.Date(2026, 1, 2, 3, 4, 5, 5e8, time.UTC)) {
		t.Errorf("decoded %+v", ev)
	}
	for name, data := range map[string][]byte{
		"unknown relation": tuple(8, full...),
		"null id":          tuple(7, append([]*string{nil}, full[1:]...)...),
		"bad version":      tuple(7, append(append([]*string{}, full[:4]...), append([]*string{str("x")}, full[5:]...)...)...),
		"truncated":        tuple(7, full...)[:20],
	} {
		if err := decodeInsert(data, rels, &ev); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// The optional traceparent column becomes the record's ce_traceparent: a valid one travels, an
// invalid or NULL one is dropped, and a relation without the column (before 00012) decodes as
// before.
func TestDecodeInsertTraceParent(t *testing.T) {
	t.Parallel()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	rels := map[uint32]*relation{
		7: {name: "public.outbox", cols: [numCols]int{0, 1, 2, 3, 4, 5, 6}, traceParent: 8},
		8: {name: "public.outbox", cols: [numCols]int{0, 1, 2, 3, 4, 5, 6}},
	}
	row := func(relID uint32, trace *string) []byte {
		return tuple(relID, str("id-1"), str("order"), str("agg-1"), str("order.created"), str("1"), str(`{}`),
			str("2026-01-02 03:04:05+00"), trace)
	}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"valid", row(7, str(tp)), tp},
		{"null", row(7, nil), ""},
		{"upper-case hex", row(7, str("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01")), ""},
		{"garbage", row(7, str("x")), ""},
		{"relation without the column", row(8, str(tp)), ""},
	} {
		var ev Event
		if err := decodeInsert(c.data, rels, &ev); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if ev.TraceParent != c.want {
			t.Errorf("%s: traceparent %q, want %q", c.name, ev.TraceParent, c.want)
		}
		var hdr string
		for _, h := range newOutEvent(nil, Position{}, "t", &ev).headers {
			if h.Key == orderflow.HeaderTraceParent {
				hdr = string(h.Value)
			}
		}
		if hdr != c.want {
			t.Errorf("%s: ce_traceparent header %q, want %q", c.name, hdr, c.want)
		}
	}
}

// A row without a trace costs nothing more to decode than a row of an outbox without the column:
// the traceparent is copied only when there is one.
func TestDecodeInsertWithoutTraceAllocatesNothingMore(t *testing.T) {
	rels := map[uint32]*relation{
		7: {name: "public.outbox", cols: [numCols]int{0, 1, 2, 3, 4, 5, 6}, traceParent: 8},
		8: {name: "public.outbox", cols: [numCols]int{0, 1, 2, 3, 4, 5, 6}},
	}
	cols := []*string{str("id-1"), str("order"), str("agg-1"), str("order.created"), str("1"), str(`{}`), str("2026-01-02 03:04:05+00")}
	withNull, without := tuple(7, append(cols, nil)...), tuple(8, cols...)
	var ev Event
	allocs := func(data []byte) float64 {
		return testing.AllocsPerRun(200, func() {
			if err := decodeInsert(data, rels, &ev); err != nil {
				t.Fatal(err)
			}
		})
	}
	if a, b := allocs(withNull), allocs(without); a != b {
		t.Errorf("decoding a row with a NULL traceparent allocates %.0f times, one of an outbox without the column %.0f", a, b)
	}
}

// The fast path for the session's own form gives what the layouts give, and leaves every
// other form (and impossible dates) to them.
func TestParseUTCTimestamptzAgreesWithTheLayouts(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"2026-01-02 03:04:05+00", "2026-01-02 03:04:05.1+00", "2026-01-02 03:04:05.123456+00",
		"2026-01-02 03:04:05.123456789+00", "2024-02-29 23:59:59.999999+00", "0001-01-01 00:00:00+00",
		"9999-12-31 23:59:59.5+00",
	} {
		fast, ok := parseUTCTimestamptz([]byte(s))
		slow, err := time.Parse(timestamptzLayouts[0], s)
		if !ok || err != nil || !fast.Equal(slow) || fast.Location() != time.UTC {
			t.Errorf("%q: fast %v (%v), layouts %v (%v)", s, fast, ok, slow, err)
		}
	}
	for _, s := range []string{
		"2026-01-02 05:04:05.123456+02", "2026-02-30 03:04:05+00", "2026-13-02 03:04:05+00",
		"2026-01-02 24:04:05+00", "2026-01-02 03:04:05.+00", "2026-01-02 03:04:05.1234567890+00",
		"12026-01-02 03:04:05+00", "2026-01-02 03:04:05+00 BC", "2026-01-02T03:04:05+00", "2026-0a-02 03:04:05+00",
	} {
		if got, ok := parseUTCTimestamptz([]byte(s)); ok {
			t.Errorf("%q: fast path took it as %v", s, got)
		}
	}
}

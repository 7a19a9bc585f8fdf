package projector

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"

	"orderflow"
	"orderflow/internal/testenv"
	"orderflow/postgres"
)

func TestDecodeSummary(t *testing.T) {
	t.Parallel()
	o := newOrder("cust-1")
	good := eventFor(o)
	unknownFields := good
	unknownFields.extra = map[string]any{"traceparent": "00-abc", "dataextra": 1}
	legacy := good
	legacy.legacy = true
	legacyUnknownFields := unknownFields
	legacyUnknownFields.legacy, legacyUnknownFields.extra = true, map[string]any{"traceparent": "00-abc", "data_extra": 1}
	cases := []struct {
		name    string
		ev      event
		wantErr bool
		unknown bool
	}{
		{name: "created", ev: good},
		{name: "unknown attributes are ignored", ev: unknownFields},
		// Records written before the switch to binary mode stay readable.
		{name: "structured record from before the switch", ev: legacy},
		{name: "old record with unknown fields", ev: legacyUnknownFields},
		{name: "fulfilled", ev: eventFor(next(o, orderflow.StatusFulfilled))},
		{name: "unknown type", ev: event{id: good.id, typ: "order.shipped", order: o, schema: 1}, wantErr: true, unknown: true},
		{name: "not json", ev: event{raw: []byte("{not json")}, wantErr: true},
		// Later versions of a type only add fields (docs/SCHEMAS.md): they are read.
		{name: "later schema version", ev: event{id: good.id, typ: good.typ, order: o, schema: 3}},
		{name: "no schema version", ev: event{id: good.id, typ: good.typ, order: o, schema: 0}, wantErr: true},
		{name: "no version", ev: event{id: good.id, typ: good.typ, order: func() orderflow.Order { x := o; x.Version = 0; return x }(), schema: 1}, wantErr: true},
		{name: "bad currency", ev: event{id: good.id, typ: good.typ, order: func() orderflow.Order { x := o; x.Currency = "EURO"; return x }(), schema: 1}, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := tc.ev.message(t, 1)
			s, _, err := decodeSummary(m.Headers, m.Value)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			var u *unknownTypeError
			if tc.unknown != (err != nil && errorAs(err, &u)) {
				t.Fatalf("err = %v, want unknown type %v", err, tc.unknown)
			}
			if err == nil && (s.ItemCount != 3 || s.Version != tc.ev.order.Version || s.LastEventID != tc.ev.id) {
				t.Fatalf("summary %+v", s)
			}
		})
	}
}

func TestDuplicatesAndOutOfOrderEventsLeaveTheSummaryRight(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3)
	a := newOrder("cust-a")
	aDone := next(a, orderflow.StatusFulfilled)
	b := newOrder("cust-b")
	bCancelled := next(b, orderflow.StatusCancelled)
	bCancelled.CancelReason = "out of stock"
	c := newOrder("cust-c")

	aCreated, aFulfilled := eventFor(a), eventFor(aDone)
	bCreated, bCancel := eventFor(b), eventFor(bCancelled)
	bCreated.legacy = true // a topic holding records from before and after the switch to binary mode
	cCreated := eventFor(c)
	cCreated.extra = map[string]any{"newattribute": "ignored"}
	unknown := event{id: "11111111-1111-1111-1111-111111111111", typ: "order.shipped", order: c, schema: 1}

	// a: newer first, then the older one, then both again (a replay). b: in order, twice.
	e.produce(t, aFulfilled, aCreated, aFulfilled, aCreated, bCreated, bCancel, bCreated, bCancel, cCreated, unknown)
	r := start(t, e.config(), mustOpenDB(t, e.dsn))
	e.waitCaughtUp(t, 60*time.Second)

	got := e.summaries(t)
	want := map[string]summaryRow{
		a.ID: {Status: "fulfilled", Version: 2, EventID: aFulfilled.id},
		b.ID: {Status: "cancelled", Version: 2, EventID: bCancel.id},
		c.ID: {Status: "pending", Version: 1, EventID: cCreated.id},
	}
	if len(got) != len(want) {
		t.Fatalf("summaries %v, want %v", got, want)
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("summary of %s = %+v, want %+v", id, got[id], w)
		}
	}
	var reason string
	testenv.Must(t, e.conn.QueryRow(context.Background(), `SELECT cancel_reason FROM order_summary WHERE order_id = $1`, b.ID).Scan(&reason), "reading reason")
	if reason != "out of stock" {
		t.Errorf("cancel_reason %q", reason)
	}
	m := r.p.metrics.events
	if n := counterValue(m.WithLabelValues(outcomeApplied)); n != 4 {
		t.Errorf("applied = %v, want 4 (a v2, b v1, b v2, c v1)", n)
	}
	if n := counterValue(m.WithLabelValues(outcomeStale)); n != 5 {
		t.Errorf("skipped_stale = %v, want 5", n)
	}
	if n := counterValue(m.WithLabelValues(outcomeUnknownType)); n != 1 {
		t.Errorf("skipped_unknown_type = %v, want 1", n)
	}
	if err := r.Stop(t); err != nil {
		t.Fatalf("Run returned %v after cancel, want nil", err)
	}
}

func TestPoisonEventsAreDeadLetteredAndThePartitionMovesOn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	o := newOrder("cust-p")
	garbage := event{id: "garbage-1", typ: orderflow.EventOrderCreated, raw: []byte("\x00not a cloudevent")}
	unversioned := eventFor(newOrder("cust-p"))
	unversioned.schema = 0
	good := eventFor(o)
	e.produce(t, garbage, unversioned, good)

	r := start(t, e.config(), mustOpenDB(t, e.dsn))
	e.waitCaughtUp(t, 60*time.Second)
	if got := e.summaries(t); len(got) != 1 || got[o.ID].Version != 1 {
		t.Fatalf("summaries %v, want only %s at version 1", got, o.ID)
	}
	dlq := e.readAll(t, DLQTopic(e.topic))
	if len(dlq) != 2 {
		t.Fatalf("%d records in the DLQ, want 2", len(dlq))
	}
	for i, m := range dlq {
		h := headerMap(m)
		if h[HeaderDLQError] == "" || atoi(t, h[HeaderDLQAttempts]) != DefaultMaxAttempts ||
			h[HeaderDLQTopic] != e.topic || atoi(t, h[HeaderDLQOffset]) != i || h[HeaderDLQGroup] != e.group {
			t.Errorf("DLQ record %d headers %v", i, h)
		}
		if h[orderflow.HeaderEventID] == "" {
			t.Errorf("DLQ record %d lost the original headers: %v", i, h)
		}
	}
	if string(dlq[0].Value) != string(garbage.message(t, 0).Value) {
		t.Errorf("DLQ record value %q, want the original", dlq[0].Value)
	}
	if n := testenv.Count(t, e.conn, `SELECT count(*) FROM projector_dead_letters WHERE topic = $1 AND attempts = $2`, e.topic, DefaultMaxAttempts); n != 2 {
		t.Errorf("%d projector_dead_letters rows, want 2", n)
	}
	if n := counterValue(r.p.metrics.events.WithLabelValues(outcomeDeadLettered)); n != 2 {
		t.Errorf("dead_lettered = %v, want 2", n)
	}
}

// failingStore fails its first calls, and checks on every call that the group has not
// committed past what the store holds.
type failingStore struct {
	noRetention
	t        *testing.T
	e        *env
	db       *postgres.DB
	failures atomic.Int32
	mu       sync.Mutex
	stored   int64 // events durably applied or skipped, all on partition 0
	violated atomic.Bool
}

func (s *failingStore) ApplySummaries(ctx context.Context, ss []orderflow.Summary, dead []orderflow.ProjectorDeadLetter) ([]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.e.committed(s.t)[0]; c > s.stored {
		s.violated.Store(true)
	}
	if s.failures.Add(-1) >= 0 {
		return nil, context.DeadlineExceeded
	}
	applied, err := s.db.ApplySummaries(ctx, ss, dead)
	if err == nil {
		s.stored += int64(len(ss) + len(dead))
	}
	return applied, err
}

func (s *failingStore) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

func TestOffsetsAreCommittedOnlyAfterTheDatabaseCommit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	store := &failingStore{t: t, e: e, db: mustOpenDB(t, e.dsn)}
	store.failures.Store(2)
	var evs []event
	for i := 0; i < 50; i++ {
		evs = append(evs, eventFor(newOrder("cust-o")))
	}
	cfg := e.config()
	cfg.BatchSize = 7
	start(t, cfg, store)
	e.produce(t, evs[:25]...)
	e.produce(t, evs[25:]...)
	e.waitCaughtUp(t, 60*time.Second)
	if store.violated.Load() {
		t.Fatal("the group committed offsets of events the database did not hold")
	}
	if got := len(e.summaries(t)); got != 50 {
		t.Fatalf("%d summaries, want 50", got)
	}
}

func errorAs(err error, target **unknownTypeError) bool {
	for err != nil {
		if u, ok := err.(*unknownTypeError); ok {
			*target = u
			return true
		}
		type unwrapper interface{ Unwrap() error }
		w, ok := err.(unwrapper)
		if !ok {
			return false
		}
		err = w.Unwrap()
	}
	return false
}

// gaugeValue reads the series of the gauge name with exactly these labels from reg, -1 if it
// has none yet.
func gaugeValue(reg prometheus.Gatherer, name string, labels map[string]string) (float64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			return m.GetGauge().GetValue(), nil
		}
	}
	return -1, nil
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// refusingStore refuses, like a constraint would, every batch that holds one order.
type refusingStore struct {
	noRetention
	db     *postgres.DB
	refuse string
}

func (s *refusingStore) ApplySummaries(ctx context.Context, ss []orderflow.Summary, dead []orderflow.ProjectorDeadLetter) ([]bool, error) {
	for _, x := range ss {
		if x.OrderID == s.refuse {
			return nil, fmt.Errorf("%w: ERROR: new row violates check constraint (SQLSTATE 23514)", orderflow.ErrRejectedData)
		}
	}
	return s.db.ApplySummaries(ctx, ss, dead)
}

func (s *refusingStore) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

func TestAnEventTheDatabaseRefusesIsDeadLetteredAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	var evs []event
	for i := 0; i < 10; i++ {
		evs = append(evs, eventFor(newOrder("cust-r")))
	}
	bad := evs[4]
	e.produce(t, evs...)
	r := start(t, e.config(), &refusingStore{db: mustOpenDB(t, e.dsn), refuse: bad.order.ID})
	e.waitCaughtUp(t, 60*time.Second)
	got := e.summaries(t)
	if _, ok := got[bad.order.ID]; ok || len(got) != 9 {
		t.Fatalf("%d summaries (refused one present: %v), want the 9 others", len(got), ok)
	}
	dlq := e.readAll(t, DLQTopic(e.topic))
	if len(dlq) != 1 || headerMap(dlq[0])[orderflow.HeaderEventID] != bad.id {
		t.Fatalf("DLQ holds %d records, want only the refused event %s", len(dlq), bad.id)
	}
	if n := counterValue(r.p.metrics.events.WithLabelValues(outcomeApplied)); n != 9 {
		t.Errorf("applied = %v, want 9", n)
	}
}

func TestStartsBeforeTheTopicExists(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	// A topic nobody created yet: the projector must wait for it, not fail or sit idle.
	e.topic = testenv.UniqueName("ofprojlate") + ".order"
	t.Cleanup(func() {
		_, _ = e.client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{e.topic, DLQTopic(e.topic)}})
	})
	r := start(t, e.config(), mustOpenDB(t, e.dsn))
	time.Sleep(1500 * time.Millisecond) // let it look for the topic at least once
	if r.p.Ready() {
		t.Error("ready without its topic")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	testenv.Must(t, ensureTopic(ctx, e.client, e.topic, 2), "creating the topic late")
	e.waitTopic(t, e.topic, 2)
	e.writer = &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: e.topic, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	t.Cleanup(func() { _ = e.writer.Close() })
	o := newOrder("cust-late")
	e.produce(t, eventFor(o))
	e.waitCaughtUp(t, 60*time.Second)
	if got := e.summaries(t); got[o.ID].Version != 1 {
		t.Fatalf("summaries %v", got)
	}
}

// downStore is a database that does not answer.
type downStore struct{ noRetention }

func (downStore) ApplySummaries(context.Context, []orderflow.Summary, []orderflow.ProjectorDeadLetter) ([]bool, error) {
	return nil, errors.New("connection refused")
}
func (downStore) Ping(context.Context) error { return errors.New("connection refused") }

func TestLagGrowsAndNothingIsDeadLetteredWhileTheDatabaseIsDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	var evs []event
	for i := 0; i < 5; i++ {
		evs = append(evs, eventFor(newOrder("cust-down")))
	}
	e.produce(t, evs...)
	r := start(t, e.config(), downStore{})
	waitFor(t, "lag of 5", 30*time.Second, func() (bool, error) {
		lag, err := gaugeValue(r.p.metrics.registry, "orderflow_projector_consumer_lag",
			map[string]string{"group": e.group, "topic": e.topic, "partition": "0"})
		return lag == 5, err
	})
	if r.p.Ready() {
		t.Error("ready while the database is down")
	}
	if n := counterValue(r.p.metrics.events.WithLabelValues(outcomeDeadLettered)); n != 0 {
		t.Errorf("dead-lettered %v events because the database was down", n)
	}
	if c := e.committed(t)[0]; c > 0 {
		t.Errorf("committed offset %d while nothing was applied", c)
	}
}

// noRetention is a store without retention, for fakes that test something else.
type noRetention struct{}

func (noRetention) PurgeProjectorDeadLetters(context.Context, time.Duration, int) (int64, error) {
	return 0, nil
}
func (noRetention) OldestProjectorDeadLetter(context.Context) (time.Duration, error) { return 0, nil }

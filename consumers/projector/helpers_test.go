package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"orderflow"
	ofkafka "orderflow/internal/kafka"
	"orderflow/internal/testenv"
	"orderflow/postgres"
)

// env is one test's world: a database, a topic (and its DLQ) and a consumer group.
type env struct {
	dsn, topic, group string
	partitions        int
	brokers           []string
	client            *kafka.Client
	conn              *pgx.Conn
	writer            *kafka.Writer
	lsn               int
}

// ensureTopic creates a test topic as capture would, with n partitions.
func ensureTopic(ctx context.Context, c *kafka.Client, topic string, n int) error {
	_, err := ofkafka.CreateTopic(ctx, c, ofkafka.TopicSpec{Name: topic, Partitions: n})
	return err
}

func newEnv(t *testing.T, partitions int) *env {
	t.Helper()
	brokers := testenv.KafkaBrokers(t)
	dsn := testenv.NewDatabase(t)
	e := &env{
		dsn: dsn, brokers: brokers, partitions: partitions,
		topic:  testenv.UniqueName("ofproj") + ".order",
		group:  testenv.UniqueName("ofprojgroup"),
		client: &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 15 * time.Second},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	testenv.Must(t, ensureTopic(ctx, e.client, e.topic, partitions), "creating topic")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = e.client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{e.topic, DLQTopic(e.topic)}})
	})
	e.waitTopic(t, e.topic, partitions)
	e.writer = &kafka.Writer{
		Addr: kafka.TCP(brokers...), Topic: e.topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, BatchSize: 1000,
	}
	t.Cleanup(func() { _ = e.writer.Close() })
	e.conn = testenv.Connect(t, dsn)
	return e
}

// waitTopic waits until every partition of a new topic has a leader.
func (e *env) waitTopic(t *testing.T, topic string, n int) {
	t.Helper()
	waitFor(t, "topic "+topic, 30*time.Second, func() (bool, error) {
		_, err := e.endOffsets(topic, n)
		return err == nil, nil
	})
}

func (e *env) endOffsets(topic string, n int) ([]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reqs := make([]kafka.OffsetRequest, n)
	for p := range reqs {
		reqs[p] = kafka.LastOffsetOf(p)
	}
	resp, err := e.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, err
	}
	out := make([]int64, n)
	if len(resp.Topics[topic]) != n {
		return nil, fmt.Errorf("got %d partitions", len(resp.Topics[topic]))
	}
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return nil, po.Error
		}
		out[po.Partition] = po.LastOffset
	}
	return out, nil
}

// committed returns the group's committed offsets (-1 where none).
func (e *env) committed(t *testing.T) []int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	parts := make([]int, e.partitions)
	for i := range parts {
		parts[i] = i
	}
	resp, err := e.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: e.group, Topics: map[string][]int{e.topic: parts}})
	testenv.Must(t, err, "fetching committed offsets")
	out := make([]int64, e.partitions)
	for _, p := range resp.Topics[e.topic] {
		out[p.Partition] = p.CommittedOffset
	}
	return out
}

// waitCaughtUp waits until the group has committed everything the topic holds.
func (e *env) waitCaughtUp(t *testing.T, timeout time.Duration) {
	t.Helper()
	waitFor(t, "group to commit every record", timeout, func() (bool, error) {
		ends, err := e.endOffsets(e.topic, e.partitions)
		if err != nil {
			return false, nil
		}
		got := e.committed(t)
		for p := range ends {
			if got[p] < ends[p] && ends[p] > 0 {
				return false, nil
			}
		}
		return true, nil
	})
}

// event is one record in the contract format, as capture writes it: binary mode, unless legacy.
type event struct {
	id, typ string
	order   orderflow.Order
	schema  int
	// raw, if set, is the value as is (poison), with only ce_id and ce_type headers.
	raw []byte
	// extra are attributes added to the CloudEvent (unknown extensions).
	extra map[string]any
	// legacy writes the structured record capture wrote before the switch to binary mode: the
	// whole CloudEvent as the value, ce_id and ce_type headers, no content-type.
	legacy bool
}

func (ev event) message(t *testing.T, lsn int) kafka.Message {
	t.Helper()
	key := ev.order.ID
	if key == "" {
		key = "poison"
	}
	position := []kafka.Header{
		{Key: orderflow.HeaderLSN, Value: []byte(fmt.Sprintf("0/%X", 0x1000000+lsn))},
		{Key: orderflow.HeaderSeq, Value: []byte("0")},
	}
	oldHeaders := []kafka.Header{
		{Key: orderflow.HeaderEventID, Value: []byte(ev.id)},
		{Key: orderflow.HeaderEventType, Value: []byte(ev.typ)},
	}
	if ev.raw != nil {
		return kafka.Message{Key: []byte(key), Value: ev.raw, Headers: append(oldHeaders, position...)}
	}
	data, err := json.Marshal(ev.order)
	testenv.Must(t, err, "encoding order")
	if ev.legacy {
		ce := map[string]any{
			"specversion": "1.0", "id": ev.id, "source": "/orderflow/outbox", "type": ev.typ,
			"subject": ev.order.ID, "time": ev.order.UpdatedAt, "datacontenttype": "application/json",
			"schemaversion": ev.schema, "data": json.RawMessage(data),
		}
		for k, v := range ev.extra {
			ce[k] = v
		}
		value, err := json.Marshal(ce)
		testenv.Must(t, err, "encoding event")
		return kafka.Message{Key: []byte(key), Value: value, Headers: append(oldHeaders, position...)}
	}
	var headers []kafka.Header
	for _, h := range orderflow.AppendBinaryHeaders(nil, &orderflow.CloudEvent{
		ID: ev.id, Source: orderflow.EventSource, Type: ev.typ, Subject: ev.order.ID, Time: ev.order.UpdatedAt,
		DataContentType: orderflow.ContentTypeJSON, DataSchema: orderflow.DataSchema(ev.typ, ev.schema), SchemaVersion: ev.schema,
	}) {
		headers = append(headers, kafka.Header(h))
	}
	for k, v := range ev.extra {
		headers = append(headers, kafka.Header{Key: "ce_" + k, Value: []byte(fmt.Sprint(v))})
	}
	return kafka.Message{Key: []byte(key), Value: data, Headers: append(headers, position...)}
}

func newOrder(customer string) orderflow.Order {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return orderflow.Order{
		ID: uuid.NewString(), CustomerID: customer, Currency: "EUR", Status: orderflow.StatusPending,
		Items:      []orderflow.Item{{SKU: "sku-1", Quantity: 2, UnitPriceCents: 250}, {SKU: "sku-2", Quantity: 1, UnitPriceCents: 100}},
		TotalCents: 600, Version: 1, CreatedAt: now, UpdatedAt: now,
	}
}

// next returns o after an action: status changed, version + 1.
func next(o orderflow.Order, s orderflow.Status) orderflow.Order {
	o.Status = s
	o.Version++
	o.UpdatedAt = o.UpdatedAt.Add(time.Millisecond)
	return o
}

func eventFor(o orderflow.Order) event {
	typ := orderflow.EventOrderCreated
	switch o.Status {
	case orderflow.StatusCancelled:
		typ = orderflow.EventOrderCancelled
	case orderflow.StatusFulfilled:
		typ = orderflow.EventOrderFulfilled
	}
	return event{id: uuid.NewString(), typ: typ, order: o, schema: orderflow.OrderSchemaVersion}
}

func (e *env) produce(t *testing.T, evs ...event) {
	t.Helper()
	msgs := make([]kafka.Message, len(evs))
	for i, ev := range evs {
		e.lsn++
		msgs[i] = ev.message(t, e.lsn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	testenv.Must(t, e.writer.WriteMessages(ctx, msgs...), "producing test events")
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (e *env) config() Config {
	return Config{
		Brokers: e.brokers, Topic: e.topic, GroupID: e.group, RetryBackoff: 10 * time.Millisecond,
		SessionTimeout: 6 * time.Second, Logger: quietLogger(),
	}
}

// running is a projector started in-process.
type running struct {
	p *Projector
	*testenv.Running
}

func start(t *testing.T, cfg Config, store summaryStore) *running {
	t.Helper()
	p, err := New(cfg, store)
	testenv.Must(t, err, "projector.New")
	return &running{p: p, Running: testenv.Start(t, "projector", p.Run)}
}

func mustOpenDB(t testing.TB, dsn string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), dsn, 4)
	testenv.Must(t, err, "opening database")
	t.Cleanup(db.Close)
	return db
}

func waitFor(t testing.TB, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return
		}
		if err != nil {
			lastErr = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within %s (last error: %v)", what, timeout, lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// summaryRow is what a test checks of a summary row.
type summaryRow struct {
	Status  string
	Version int
	EventID string
}

func (e *env) summaries(t *testing.T) map[string]summaryRow {
	t.Helper()
	rows, err := e.conn.Query(context.Background(), `SELECT order_id::text, status, version, last_event_id::text FROM order_summary`)
	testenv.Must(t, err, "reading summaries")
	out := map[string]summaryRow{}
	for rows.Next() {
		var id string
		var r summaryRow
		testenv.Must(t, rows.Scan(&id, &r.Status, &r.Version, &r.EventID), "scanning summary")
		out[id] = r
	}
	testenv.Must(t, rows.Err(), "reading summaries")
	return out
}

// readAll reads every record of a single-partition topic.
func (e *env) readAll(t *testing.T, topic string) []kafka.Message {
	t.Helper()
	ends, err := e.endOffsets(topic, 1)
	testenv.Must(t, err, "end offsets of "+topic)
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	var out []kafka.Message
	for int64(len(out)) < ends[0] {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		m, err := r.ReadMessage(ctx)
		cancel()
		if err != nil {
			t.Fatalf("reading %s: %v", topic, errors.Join(err))
		}
		out = append(out, m)
	}
	return out
}

func headerMap(m kafka.Message) map[string]string {
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSpace(s))
	testenv.Must(t, err, "parsing "+s)
	return n
}

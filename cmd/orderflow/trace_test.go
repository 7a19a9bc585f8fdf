package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	kafkago "github.com/segmentio/kafka-go"

	"orderflow"
	"orderflow/internal/eventtrace"
	"orderflow/internal/testenv"
	"orderflow/internal/tracing"
	"orderflow/postgres"
	"orderflow/webhook"
)

// recordOf is the record capture publishes for an outbox row, in binary mode or, with legacy,
// in the structured form from before the switch.
func recordOf(t *testing.T, ob orderflow.OutboxRow, seq int, legacy bool) kafkago.Message {
	t.Helper()
	ev := orderflow.CloudEvent{SpecVersion: "1.0", ID: ob.ID, Source: orderflow.EventSource, Type: ob.EventType, Subject: ob.AggregateID,
		Time: ob.CreatedAt, DataContentType: orderflow.ContentTypeJSON, SchemaVersion: ob.SchemaVersion, TraceParent: ob.TraceParent, Data: ob.Payload}
	pos := []kafkago.Header{{Key: orderflow.HeaderLSN, Value: []byte("0/1A2B3C4")}, {Key: orderflow.HeaderSeq, Value: []byte{byte('0' + seq)}}}
	if legacy {
		return kafkago.Message{Key: []byte(ob.AggregateID), Value: orderflow.AppendCloudEvent(nil, &ev), Headers: append([]kafkago.Header{
			{Key: orderflow.HeaderEventID, Value: []byte(ev.ID)}, {Key: orderflow.HeaderEventType, Value: []byte(ev.Type)}}, pos...)}
	}
	ev.DataSchema = orderflow.DataSchema(ev.Type, ev.SchemaVersion)
	var hs []kafkago.Header
	for _, h := range orderflow.AppendBinaryHeaders(nil, &ev) {
		hs = append(hs, kafkago.Header(h))
	}
	return kafkago.Message{Key: []byte(ob.AggregateID), Value: ob.Payload, Headers: append(hs, pos...)}
}

// orderflow trace finds one event in every stage: the outbox row, the record on the topic (by
// time from the outbox row, or searching backwards when the row is gone), the read model, each
// delivery with its attempts and the partner's receipt; and says where it looked when it cannot
// find the event.
func TestTraceFindsAnEventInEveryStage(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	dsn := testenv.NewDatabase(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, dsn, 2)
	testenv.Must(t, err, "opening database")
	defer db.Close()
	conn := testenv.Connect(t, dsn)
	topic := mustTopic(t, brokers, "oftrace", 3)

	// One order, created and fulfilled through the adapter: two outbox rows.
	_, err = db.SetStock(ctx, "sku-tr", 10)
	testenv.Must(t, err, "stocking")
	respond := func(o *orderflow.Order, err error) orderflow.Response {
		b, _ := json.Marshal(o)
		return orderflow.Response{Status: 201, Body: b}
	}
	r, err := db.CreateOrder(ctx, orderflow.IdempotencyKey{ClientID: "t", Key: uuid.NewString(), Fingerprint: []byte("f")},
		orderflow.NewOrder{CustomerID: "c", Currency: "EUR", Items: []orderflow.Item{{SKU: "sku-tr", Quantity: 1, UnitPriceCents: 5}}}, respond)
	testenv.Must(t, err, "creating order")
	var order orderflow.Order
	testenv.Must(t, json.Unmarshal(r.Body, &order), "decoding order")
	// The fulfill is made under a traceparent, as the API's request span: trace names its trace.
	tp := tracing.New()
	_, err = db.ChangeOrder(tracing.ContextWith(ctx, tp), orderflow.AnyClient, orderflow.IdempotencyKey{ClientID: "t", Key: uuid.NewString(), Fingerprint: []byte("g")}, order.ID, orderflow.ActionFulfill, "", respond)
	testenv.Must(t, err, "fulfilling")
	rows, err := conn.Query(ctx, `SELECT id::text, aggregate_type, aggregate_id, event_type, schema_version, payload::text, created_at,
		       coalesce(traceparent, '')
		FROM outbox WHERE aggregate_id = $1 ORDER BY created_at`, order.ID)
	testenv.Must(t, err, "reading outbox")
	var obs []orderflow.OutboxRow
	for rows.Next() {
		var ob orderflow.OutboxRow
		var payload string
		testenv.Must(t, rows.Scan(&ob.ID, &ob.AggregateType, &ob.AggregateID, &ob.EventType, &ob.SchemaVersion, &payload, &ob.CreatedAt, &ob.TraceParent), "scanning")
		ob.Payload = []byte(payload)
		obs = append(obs, ob)
	}
	if len(obs) != 2 {
		t.Fatalf("%d outbox rows, want created and fulfilled", len(obs))
	}
	created, fulfilled := obs[0], obs[1]
	if created.TraceParent != "" || fulfilled.TraceParent != tp.String() {
		t.Fatalf("outbox traceparents %q and %q, want none and %s", created.TraceParent, fulfilled.TraceParent, tp)
	}

	// The topic: the created event in the old structured form, the fulfilled one in binary
	// mode, other orders' records around and after them in every partition.
	filler := func(n int) []kafkago.Message {
		var ms []kafkago.Message
		for i := range n {
			data, _ := json.Marshal(orderflow.Order{ID: uuid.NewString(), Version: 1})
			ms = append(ms, recordOf(t, orderflow.OutboxRow{ID: uuid.NewString(), AggregateID: uuid.NewString(),
				EventType: orderflow.EventOrderCreated, SchemaVersion: 1, Payload: data, CreatedAt: time.Now()}, i%10, false))
		}
		return ms
	}
	produceLikeCapture(t, brokers, topic, filler(10)...)
	produceLikeCapture(t, brokers, topic, recordOf(t, created, 0, true))
	produceLikeCapture(t, brokers, topic, filler(10)...)
	produceLikeCapture(t, brokers, topic, recordOf(t, fulfilled, 0, false))
	produceLikeCapture(t, brokers, topic, filler(20)...)

	// The read model, a delivery with two attempts and the partner's receipt, written as the
	// projector, the deliverer and the partner write them.
	_, err = conn.Exec(ctx, `INSERT INTO order_summary (order_id, customer_id, status, total_cents, item_count, currency, version,
		created_at, updated_at, last_event_id, last_event_type, last_event_at, projected_at)
		SELECT id, customer_id, status, total_cents, 1, currency, version, created_at, updated_at, $2, 'order.fulfilled', updated_at, now()
		FROM orders WHERE id = $1`, order.ID, fulfilled.ID)
	testenv.Must(t, err, "writing the summary")
	secret, err := webhook.NewSecret()
	testenv.Must(t, err, "secret")
	ep, err := db.CreateEndpoint(ctx, "https://partner.example/hook", []string{orderflow.EventOrderFulfilled}, secret)
	testenv.Must(t, err, "endpoint")
	var deliveryID string
	err = conn.QueryRow(ctx, `INSERT INTO webhook_deliveries (event_id, endpoint_id, event_type, subject, payload, state, attempts, succeeded_at)
		VALUES ($1, $2, 'order.fulfilled', $3, '{}', 'succeeded', 2, now()) RETURNING id::text`, fulfilled.ID, ep.ID, order.ID).Scan(&deliveryID)
	testenv.Must(t, err, "delivery")
	_, err = conn.Exec(ctx, `INSERT INTO webhook_delivery_attempts (delivery_id, attempt, started_at, latency_ms, status, outcome, error) VALUES
		($1, 1, now() - interval '5 seconds', 120, 503, 'http_error', 'partner said 503'), ($1, 2, now(), 30, 200, 'success', NULL)`, deliveryID)
	testenv.Must(t, err, "attempts")
	_, err = conn.Exec(ctx, `INSERT INTO partner.receipts (webhook_id, event_type, subject) VALUES ($1, 'order.fulfilled', $2)`, fulfilled.ID, order.ID)
	testenv.Must(t, err, "receipt")
	_, err = conn.Exec(ctx, `INSERT INTO partner.callbacks (webhook_id, order_id, action, due_at, state, done_at)
		VALUES ($1, $2, 'fulfill', now(), 'done', now())`, fulfilled.ID, order.ID)
	testenv.Must(t, err, "callback")

	getenv := func(k string) string {
		switch k {
		case "DATABASE_URL":
			return dsn
		case "KAFKA_BROKERS":
			return strings.Join(brokers, ",")
		}
		return ""
	}
	trace := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, append([]string{"trace"}, append(args, "-topic", topic)...), getenv, &out, &bytes.Buffer{})
		return out.String(), err
	}

	text, err := trace(fulfilled.ID)
	testenv.Must(t, err, "trace "+text)
	for _, want := range []string{
		"event " + fulfilled.ID + ": order.fulfilled of order " + order.ID + " at version 2\n",
		"outbox      written ",
		", trace " + tp.TraceIDString() + "\nkafka ",
		"kafka       " + topic + " partition ",
		", binary record, pg_lsn 0/1A2B3C4 pg_seq 0, trace " + tp.TraceIDString() + ", produced ",
		"read model  version 2 fulfilled, projected ",
		": this event produced the row (orders: version 2 fulfilled)\n",
		"deliveries  endpoint " + ep.ID + " https://partner.example/hook: succeeded ",
		", 2 attempts\n",
		` 503 http_error 120ms "partner said 503"`,
		" 200 success 30ms\n",
		"partner     received ",
		", callback fulfill done ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("trace lacks %q:\n%s", want, text)
		}
	}

	// The created event's outbox row is gone (retention): the topic is searched backwards,
	// over every partition since no table names its order, and the record tells the order.
	_, err = conn.Exec(ctx, `DELETE FROM outbox WHERE id = $1`, created.ID)
	testenv.Must(t, err, "deleting the outbox row")
	out, err := trace(created.ID, "-json")
	testenv.Must(t, err, "trace -json "+out)
	var rep struct {
		OrderID   string `json:"order_id"`
		EventType string `json:"event_type"`
		Version   int
		Outbox    *json.RawMessage
		Kafka     *struct {
			Partition int
			Offset    int64
			Key       string
			Mode      string
			Headers   map[string]string
		}
		Search string `json:"kafka_search"`
		Order  struct {
			Summary struct{ Version int }
		}
	}
	testenv.Must(t, json.Unmarshal([]byte(out), &rep), "decoding "+out)
	if rep.Outbox != nil || rep.Kafka == nil || rep.OrderID != order.ID || rep.EventType != orderflow.EventOrderCreated || rep.Version != 1 ||
		rep.Kafka.Mode != "legacy" || rep.Kafka.Headers["ce_id"] != created.ID || rep.Kafka.Key != order.ID ||
		rep.Order.Summary.Version != 2 || !strings.Contains(rep.Search, "all 3 partitions") {
		t.Fatalf("trace of an event without outbox row:\n%s", out)
	}
	// The location is the record's real one.
	m := readAt(t, brokers, topic, rep.Kafka.Partition, rep.Kafka.Offset)
	if string(m.Key) != order.ID || !bytes.Contains(m.Value, []byte(created.ID)) {
		t.Errorf("partition %d offset %d holds %s %s", rep.Kafka.Partition, rep.Kafka.Offset, m.Key, m.Value)
	}
	text, err = trace(created.ID)
	testenv.Must(t, err, "trace")
	if !strings.Contains(text, "outbox      no row: deleted by capture's retention") ||
		!regexp.MustCompile(`read model  version 2 fulfilled, projected \S+: applied or superseded \(the event carries version 1\)`).MatchString(text) {
		t.Errorf("trace of the created event:\n%s", text)
	}

	// Bounded: reading one record per partition does not reach it, and the report says so.
	text, err = trace(created.ID, "-max-scan", "1")
	if !errors.Is(err, eventtrace.ErrNotFound) || !strings.Contains(text, "not found in all 3 partitions of "+topic+", reading at most 1 records per partition") {
		t.Errorf("bounded trace: %v\n%s", err, text)
	}
	// Knowing the order narrows the search to its partition.
	text, err = trace(created.ID, "-order", order.ID)
	testenv.Must(t, err, "trace -order")
	if !strings.Contains(text, "offset ") {
		t.Errorf("trace -order:\n%s", text)
	}

	unknown := uuid.NewString()
	if _, err := trace(unknown); !errors.Is(err, eventtrace.ErrNotFound) {
		t.Errorf("trace of an unknown event: %v, want not found", err)
	}
	if _, err := trace("not-a-uuid"); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "not a UUID") {
		t.Errorf("trace of a malformed id: %v", err)
	}
	if _, err := trace(); !errors.Is(err, errUsage) {
		t.Errorf("trace without an id: %v, want a usage error", err)
	}
}

func readAt(t *testing.T, brokers []string, topic string, partition int, offset int64) kafkago.Message {
	t.Helper()
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, Topic: topic, Partition: partition, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	testenv.Must(t, r.SetOffset(offset), "seeking")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := r.ReadMessage(ctx)
	testenv.Must(t, err, "reading")
	return m
}

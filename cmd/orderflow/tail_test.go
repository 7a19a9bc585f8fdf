package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	kafkago "github.com/segmentio/kafka-go"

	"orderflow"
	ofkafka "orderflow/internal/kafka"
	"orderflow/internal/testenv"
)

// syncBuffer is a bytes.Buffer a command may write while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// mustTopic creates a topic of the test's own with n partitions.
func mustTopic(t *testing.T, brokers []string, prefix string, n int) string {
	t.Helper()
	topic := testenv.UniqueName(prefix)
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 15 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := ofkafka.CreateTopic(ctx, client, ofkafka.TopicSpec{Name: topic, Partitions: n})
	testenv.Must(t, err, "creating topic")
	t.Cleanup(func() {
		_, _ = client.DeleteTopics(context.Background(), &kafkago.DeleteTopicsRequest{Topics: []string{topic}})
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := ofkafka.EndOffsets(ctx, client, topic, n); err == nil {
			return topic
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s has no leaders", topic)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// produceLikeCapture writes records keyed and partitioned as capture does.
func produceLikeCapture(t *testing.T, brokers []string, topic string, msgs ...kafkago.Message) {
	t.Helper()
	w := &kafkago.Writer{Addr: kafkago.TCP(brokers...), Topic: topic, Balancer: &kafkago.Murmur2Balancer{Consistent: true},
		RequiredAcks: kafkago.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	testenv.Must(t, w.WriteMessages(ctx, msgs...), "producing")
}

// orderRecord is a record of order id at version in the given mode, as capture writes it.
func orderRecord(t *testing.T, id string, version int, status orderflow.Status, typ string, legacy bool) kafkago.Message {
	t.Helper()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(version) * time.Minute)
	data, err := json.Marshal(orderflow.Order{ID: id, CustomerID: "c", Currency: "EUR", Status: status, Version: version,
		Items: []orderflow.Item{{SKU: "s", Quantity: 1, UnitPriceCents: 1}}, TotalCents: 1, CreatedAt: at, UpdatedAt: at})
	testenv.Must(t, err, "encoding order")
	ev := orderflow.CloudEvent{SpecVersion: "1.0", ID: uuid.NewString(), Source: orderflow.EventSource, Type: typ, Subject: id,
		Time: at, DataContentType: orderflow.ContentTypeJSON, SchemaVersion: 1, Data: data}
	pos := []kafkago.Header{{Key: orderflow.HeaderLSN, Value: []byte("0/16B3748")}, {Key: orderflow.HeaderSeq, Value: []byte("0")}}
	if legacy {
		return kafkago.Message{Key: []byte(id), Value: orderflow.AppendCloudEvent(nil, &ev), Headers: append([]kafkago.Header{
			{Key: orderflow.HeaderEventID, Value: []byte(ev.ID)}, {Key: orderflow.HeaderEventType, Value: []byte(typ)}}, pos...)}
	}
	ev.DataSchema = orderflow.DataSchema(typ, 1)
	var hs []kafkago.Header
	for _, h := range orderflow.AppendBinaryHeaders(nil, &ev) {
		hs = append(hs, kafkago.Header(h))
	}
	return kafkago.Message{Key: []byte(id), Value: data, Headers: append(hs, pos...)}
}

func TestTailDecodesBothModesAndFilters(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	topic := mustTopic(t, brokers, "oftail", 3)
	a, b := uuid.NewString(), uuid.NewString()
	produceLikeCapture(t, brokers, topic,
		orderRecord(t, a, 1, orderflow.StatusPending, orderflow.EventOrderCreated, false),
		orderRecord(t, a, 2, orderflow.StatusFulfilled, orderflow.EventOrderFulfilled, false),
		orderRecord(t, b, 1, orderflow.StatusPending, orderflow.EventOrderCreated, true),
		orderRecord(t, b, 2, orderflow.StatusCancelled, orderflow.EventOrderCancelled, false),
		kafkago.Message{Key: []byte("poison"), Value: []byte("not an event \x1b[2J")},
	)
	getenv := func(k string) string {
		if k == "KAFKA_BROKERS" {
			return strings.Join(brokers, ",")
		}
		return ""
	}
	tail := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := run(ctx, append([]string{"tail", "-topic", topic}, args...), getenv, &out, &errOut); err != nil {
			t.Fatalf("tail %v: %v\n%s", args, err, errOut.String())
		}
		return out.String()
	}

	all := tail()
	if n := strings.Count("\n"+all, "\n--- "); n != 5 {
		t.Fatalf("%d records printed, want 5:\n%s", n, all)
	}
	for _, want := range []string{
		"ce_type: order.fulfilled\n", "ce_dataschema: https://orderflow.dev/v1/schemas/order.created/1.json\n",
		"content-type: application/json\n", "pg_lsn: 0/16B3748\n", ", binary\n", ", legacy\n",
		`"specversion":"1.0"`,                   // the legacy value is a whole CloudEvent
		"undecodable", `"not an event \x1b[2J"`, // a poison record is shown, quoted so it cannot clear the screen
	} {
		if !strings.Contains(all, want) {
			t.Errorf("output lacks %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "\x1b") {
		t.Error("an escape character reached the terminal")
	}

	if got := tail("-type", "order.created"); strings.Count(got, "ce_type: order.created") != 2 || strings.Count(got, "--- ") != 2 ||
		strings.Contains(got, "undecodable") {
		t.Errorf("-type order.created printed:\n%s", got)
	}
	onlyA := tail("-subject", a)
	if strings.Count(onlyA, "--- ") != 2 || strings.Contains(onlyA, b) || !strings.Contains(onlyA, "key "+a) {
		t.Errorf("-subject %s printed:\n%s", a, onlyA)
	}
	if got := tail("-n", "2"); strings.Count(got, "--- ") != 2 {
		t.Errorf("-n 2 printed:\n%s", got)
	}

	var rec struct {
		Partition int
		Offset    int64
		Mode      string
		Headers   map[string]string
		Event     struct {
			ID   string
			Type string
			Data orderflow.Order
		}
	}
	got := tail("-json", "-subject", a, "-type", "order.fulfilled")
	testenv.Must(t, json.Unmarshal([]byte(got), &rec), "decoding "+got)
	if rec.Mode != "binary" || rec.Event.Type != orderflow.EventOrderFulfilled || rec.Event.Data.Status != orderflow.StatusFulfilled ||
		rec.Event.ID != rec.Headers["ce_id"] || rec.Headers["pg_seq"] != "0" || rec.Offset != 1 {
		t.Errorf("-json printed %s", got)
	}
	got = tail("-json", "-subject", b, "-type", "order.created")
	testenv.Must(t, json.Unmarshal([]byte(got), &rec), "decoding "+got)
	if rec.Mode != "legacy" || rec.Event.Data.ID != b || rec.Event.Data.Version != 1 {
		t.Errorf("-json of an old record printed %s", got)
	}
}

func TestTailFollowsNewRecordsUntilInterrupted(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	topic := mustTopic(t, brokers, "oftailf", 2)
	a := uuid.NewString()
	produceLikeCapture(t, brokers, topic, orderRecord(t, a, 1, orderflow.StatusPending, orderflow.EventOrderCreated, false))
	getenv := func(k string) string {
		if k == "KAFKA_BROKERS" {
			return strings.Join(brokers, ",")
		}
		return ""
	}
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"tail", "-topic", topic, "-f", "-json"}, getenv, &out, &bytes.Buffer{})
	}()
	waitOutput := func(what string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(out.String(), what) {
			select {
			case err := <-done:
				t.Fatalf("tail -f returned %v before printing %s", err, what)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("tail -f did not print %s:\n%s", what, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitOutput(`"type":"order.created"`)
	produceLikeCapture(t, brokers, topic, orderRecord(t, a, 2, orderflow.StatusFulfilled, orderflow.EventOrderFulfilled, false))
	waitOutput(`"type":"order.fulfilled"`)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("tail -f returned %v when interrupted, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tail -f did not stop when interrupted")
	}
}

func TestTailRefusesBadFlags(t *testing.T) {
	t.Parallel()
	env := func(k string) string {
		if k == "KAFKA_BROKERS" {
			return "127.0.0.1:1"
		}
		return ""
	}
	for _, args := range [][]string{{"-from", "middle"}, {"-n", "-1"}, {"-from", "end"}} {
		err := run(context.Background(), append([]string{"tail"}, args...), env, &bytes.Buffer{}, &bytes.Buffer{})
		if !errors.Is(err, errUsage) {
			t.Errorf("tail %v: %v, want a usage error", args, err)
		}
	}
	err := run(context.Background(), []string{"tail"}, func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{})
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "KAFKA_BROKERS") {
		t.Errorf("tail without brokers: %v", err)
	}
}

package partner_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"orderflow"
	"orderflow/internal/cetest"
	ofkafka "orderflow/internal/kafka"
	"orderflow/internal/testenv"
	"orderflow/internal/tracing"
)

// collector is a minimal OTLP/HTTP trace collector on 127.0.0.1: it keeps every span the
// services export to it.
type collector struct {
	mu    sync.Mutex
	spans []span
}

// span is what the test reads of an exported span.
type span struct {
	service, name         string
	traceID, id, parentID string // hex
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var req coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &req)
	}
	if err != nil || r.URL.Path != "/v1/traces" {
		http.Error(w, fmt.Sprintf("%s: %v", r.URL.Path, err), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	for _, rs := range req.ResourceSpans {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				c.spans = append(c.spans, span{service: service, name: s.Name, traceID: hex.EncodeToString(s.TraceId),
					id: hex.EncodeToString(s.SpanId), parentID: hex.EncodeToString(s.ParentSpanId)})
			}
		}
	}
	c.mu.Unlock()
	resp, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp)
}

// find returns the spans of trace named name by service.
func (c *collector) find(traceID, service, name string) []span {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []span
	for _, s := range c.spans {
		if s.traceID == traceID && s.service == service && s.name == name {
			out = append(out, s)
		}
	}
	return out
}

func (c *collector) dump(traceID string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, s := range c.spans {
		if s.traceID == traceID {
			fmt.Fprintf(&b, "  %s %q span %s parent %s\n", s.service, s.name, s.id, s.parentID)
		}
	}
	return b.String()
}

// TestOneOrderIsOneTrace runs api, capture, project, deliver and partner as processes exporting
// spans to a local OTLP collector, and sends one order with a traceparent. The order's trace id
// must be on its Kafka record (ce_traceparent), on the partner's received webhook (the partner's
// span is the child of the deliverer's attempt, whose traceparent it received as a header), on
// the callback the partner makes (the API's span for the fulfill call is the child of the
// partner's callback span) and on the order.fulfilled record that call wrote. The spans of the API
// handler, the produce, the projection and the delivery attempt are each the child of the span
// upstream of them, so a hop that drops or restarts the trace fails the test.
func TestOneOrderIsOneTrace(t *testing.T) {
	t.Parallel()
	e := newEnv(t) // database, seeded keys, and an endpoint registered for e.addr
	col := &collector{}
	otlp := httptest.NewServer(col) // 127.0.0.1
	t.Cleanup(otlp.Close)
	bin := testenv.Binary(t)
	prefix := testenv.UniqueName("oftrace")
	slot := testenv.UniqueName("oftrace_slot")
	topic := prefix + ".order"
	common := []string{"DATABASE_URL=" + e.dsn, "KAFKA_BROKERS=" + strings.Join(e.brokers, ","),
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + otlp.URL, "OTEL_BSP_SCHEDULE_DELAY=100"}
	apiAddr := freeAddr(t)
	startProc(t, bin, "api", apiAddr, append(common, "OPS_ADDR="+freeAddr(t))...)
	t.Cleanup(func() {
		client := &kafka.Client{Addr: kafka.TCP(e.brokers...), Timeout: 20 * time.Second}
		_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic, prefix + "_project.dlq"}})
	})
	startProc(t, bin, "capture", freeAddr(t), append(common, "CAPTURE_SLOT="+slot, "CAPTURE_PUBLICATION="+slot,
		"CAPTURE_TOPIC_PREFIX="+prefix, "CAPTURE_PARTITIONS=3", "CAPTURE_STATUS_INTERVAL=1s")...)
	startProc(t, bin, "project", freeAddr(t), append(common, "PROJECT_TOPIC="+topic, "PROJECT_GROUP="+prefix+"_project",
		"PROJECT_DLQ_TOPIC="+prefix+"_project.dlq")...)
	startProc(t, bin, "deliver", freeAddr(t), append(common, "DELIVER_TOPIC="+topic, "DELIVER_GROUP="+prefix+"_deliver",
		"DELIVER_POLL=50ms", "WEBHOOK_ALLOW=127.0.0.1")...)
	startProc(t, bin, "partner", e.addr, append(common, "WEBHOOK_SECRET="+e.secret, "API_URL=http://"+apiAddr,
		"PARTNER_API_KEY="+partnerKey, "PARTNER_FULFILL_DELAY=100ms")...)

	e.apiURL = "http://" + apiAddr
	e.stock("SKU-A", 10)
	sent := tracing.New()
	trace := sent.TraceIDString()
	b, _ := json.Marshal(map[string]any{"customer_id": "cust-trace", "currency": "EUR",
		"items": []orderflow.Item{{SKU: "SKU-A", Quantity: 1, UnitPriceCents: 700}}})
	status, m := e.call(http.MethodPost, "/v1/orders", clientKey, string(b), "Idempotency-Key", "trace-1", tracing.Header, sent.String())
	if status != http.StatusCreated {
		t.Fatalf("creating order: %d %v", status, m)
	}
	orderID := m["id"].(string)
	eventually(t, "the partner fulfilled the order", 90*time.Second, func() bool {
		s, _ := e.status(orderID)
		return s == orderflow.StatusFulfilled
	})

	// one waits for the single span of service and name in the trace (spans arrive in batches).
	one := func(service, name string) span {
		t.Helper()
		var got []span
		deadline := time.Now().Add(30 * time.Second)
		for len(got) == 0 && time.Now().Before(deadline) {
			if got = col.find(trace, service, name); len(got) == 0 {
				time.Sleep(100 * time.Millisecond)
			}
		}
		if len(got) != 1 {
			t.Fatalf("%d spans %q of %s in trace %s, want 1; the trace holds:\n%s", len(got), name, service, trace, col.dump(trace))
		}
		return got[0]
	}
	childOf := func(s span, parent string, what string) {
		t.Helper()
		if s.parentID != parent {
			t.Errorf("%s %q has parent %s, want %s (%s); the trace holds:\n%s", s.service, s.name, s.parentID, parent, what, col.dump(trace))
		}
	}
	create := one("orderflow-api", "POST /v1/orders")
	childOf(create, hex.EncodeToString(sent.SpanID[:]), "the client's traceparent")
	childOf(one("orderflow-capture", "produce "+topic), create.id, "the outbox row's traceparent")
	childOf(one("orderflow-project", "project order.created"), create.id, "the record's ce_traceparent")
	attempt := one("orderflow-deliver", "deliver order.created")
	childOf(attempt, create.id, "the delivery's traceparent")
	hook := one("orderflow-partner", "POST /partner-hook")
	childOf(hook, attempt.id, "the traceparent header of the webhook")
	callback := one("orderflow-partner", "callback fulfill")
	childOf(callback, hook.id, "the callback's stored traceparent")
	fulfill := one("orderflow-api", "POST /v1/orders/{id}/fulfill")
	childOf(fulfill, callback.id, "the traceparent header of the callback")
	childOf(one("orderflow-project", "project order.fulfilled"), fulfill.id, "the record's ce_traceparent")

	// On the wire and in the tables, the same trace: the records' ce_traceparent, the delivery
	// and the partner's callback.
	records := topicRecords(t, e.brokers, topic, 3)
	wantHeader := map[string]string{
		orderflow.EventOrderCreated:   "00-" + trace + "-" + create.id + "-01",
		orderflow.EventOrderFulfilled: "00-" + trace + "-" + fulfill.id + "-01",
	}
	for typ, want := range wantHeader {
		var got []string
		for _, r := range records {
			if header(r, orderflow.HeaderSubject) != orderID || header(r, orderflow.HeaderEventType) != typ {
				continue
			}
			// Read as a CloudEvents SDK reads it: the distributed tracing extension.
			ev, err := cetest.Decode(ofkafka.Headers(r.Headers), r.Value)
			testenv.Must(t, err, "decoding the record with the CloudEvents SDK")
			tp, _ := ev.Extensions()["traceparent"].(string)
			got = append(got, tp)
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s records of the order carry ce_traceparent %q, want one with %q", typ, got, want)
		}
	}
	var delivery, callbackTP string
	testenv.Must(t, e.sql.QueryRow(context.Background(), `SELECT coalesce(traceparent, '') FROM webhook_deliveries WHERE subject = $1`, orderID).Scan(&delivery), "reading the delivery")
	testenv.Must(t, e.sql.QueryRow(context.Background(), `SELECT coalesce(traceparent, '') FROM partner.callbacks WHERE order_id = $1`, orderID).Scan(&callbackTP), "reading the callback")
	if want := wantHeader[orderflow.EventOrderCreated]; delivery != want {
		t.Errorf("the delivery keeps traceparent %q, want the record's %q", delivery, want)
	}
	if want := "00-" + trace + "-" + hook.id + "-01"; callbackTP != want {
		t.Errorf("the partner's callback keeps traceparent %q, want its webhook span's %q", callbackTP, want)
	}
}

// topicRecords reads every record of topic's partitions, from the first to the last offset.
func topicRecords(t *testing.T, brokers []string, topic string, partitions int) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []kafka.Message
	for p := 0; p < partitions; p++ {
		conn, err := kafka.DialLeader(ctx, "tcp", brokers[0], topic, p)
		testenv.Must(t, err, "dialling the partition leader")
		first, last, err := conn.ReadOffsets()
		testenv.Must(t, err, "reading offsets")
		if _, err := conn.Seek(first, kafka.SeekAbsolute); err != nil {
			t.Fatalf("seeking: %v", err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		for off := first; off < last; off++ {
			m, err := conn.ReadMessage(10 << 20)
			if err != nil && !errors.Is(err, io.EOF) {
				t.Fatalf("reading %s[%d] at %d: %v", topic, p, off, err)
			}
			out = append(out, m)
		}
		_ = conn.Close()
	}
	return out
}

func header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

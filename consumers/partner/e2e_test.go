package partner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"orderflow"
	"orderflow/internal/testenv"
	"orderflow/internal/tracing"
)

// proc is one real orderflow process.
type proc struct {
	name string
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan error
}

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

func startProc(t *testing.T, bin, name, addr string, env ...string) *proc {
	t.Helper()
	p := &proc{name: name, logs: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, name)
	p.cmd.Env = append(os.Environ(), append([]string{"HTTP_ADDR=" + addr, "LOG_LEVEL=debug"}, env...)...)
	p.cmd.Stderr = p.logs
	p.cmd.Stdout = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("--- %s logs (last 3000 bytes):\n%s", name, tail(p.logs.String(), 3000))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-p.done:
			t.Fatalf("%s exited at start: %v\n%s", name, err, p.logs.String())
		default:
		}
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within 60 s:\n%s", name, p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proc) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill -9 %s: %v", p.name, err)
	}
	<-p.done
	p.done <- nil // let the cleanup's wait return
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// TestOrdersTravelToThePartnerAndBackThroughTheRealBinaries runs api, capture, deliver and
// partner as processes: orders written through the API reach the partner through the slot,
// Kafka and signed webhooks, and come back fulfilled (or cancelled, for an unknown SKU). The
// partner is killed with SIGKILL halfway and restarted; every event still ends with exactly
// one receipt and every order with exactly one final event.
func TestOrdersTravelToThePartnerAndBackThroughTheRealBinaries(t *testing.T) {
	t.Parallel()
	e := newEnv(t) // database, seeded keys, and an endpoint registered for e.addr
	bin := testenv.Binary(t)
	prefix := testenv.UniqueName("ofe2e")
	slot := testenv.UniqueName("ofe2e_slot")
	brokers := e.brokers[0]
	for _, b := range e.brokers[1:] {
		brokers += "," + b
	}
	common := []string{"DATABASE_URL=" + e.dsn, "KAFKA_BROKERS=" + brokers}
	apiAddr := freeAddr(t)
	startProc(t, bin, "api", apiAddr, append(common, "OPS_ADDR="+freeAddr(t))...)
	apiURL := "http://" + apiAddr
	t.Cleanup(func() {
		client := &kafka.Client{Addr: kafka.TCP(e.brokers...), Timeout: 20 * time.Second}
		_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{prefix + ".order"}})
	})
	startProc(t, bin, "capture", freeAddr(t), append(common, "CAPTURE_SLOT="+slot, "CAPTURE_PUBLICATION="+slot,
		"CAPTURE_TOPIC_PREFIX="+prefix, "CAPTURE_PARTITIONS=3", "CAPTURE_STATUS_INTERVAL=1s")...)
	startProc(t, bin, "deliver", freeAddr(t), append(common, "DELIVER_TOPIC="+prefix+".order",
		"DELIVER_GROUP="+prefix+"_deliver", "DELIVER_BASE_BACKOFF=50ms", "DELIVER_MAX_BACKOFF=500ms", "DELIVER_TIMEOUT=2s", "DELIVER_POLL=50ms",
		"WEBHOOK_ALLOW=127.0.0.1")...)
	partnerEnv := append(common, "WEBHOOK_SECRET="+e.secret, "API_URL="+apiURL, "PARTNER_API_KEY="+partnerKey,
		"PARTNER_FULFILL_DELAY=100ms", "PARTNER_UNKNOWN_SKU=^UNKNOWN-")
	partnerProc := startProc(t, bin, "partner", e.addr, partnerEnv...)

	e.apiURL = apiURL // create orders through the real process
	e.stock("SKU-A", 1000)
	e.stock("UNKNOWN-Z", 10)
	const n = 20
	ids := map[string]orderflow.Status{}
	// The first order is sent with a traceparent: with tracing export off (no OTEL_ variable
	// here) the traceparent still travels, unchanged, to every hop (docs/TRACING.md).
	sent := tracing.New()
	var traced string
	create := func(from, to int) {
		for i := from; i < to; i++ {
			want, items := orderflow.StatusFulfilled, []orderflow.Item{{SKU: "SKU-A", Quantity: 1, UnitPriceCents: 700}}
			if i%5 == 4 {
				want, items = orderflow.StatusCancelled, append(items, orderflow.Item{SKU: "UNKNOWN-Z", Quantity: 1, UnitPriceCents: 10})
			}
			if i == 0 {
				b, _ := json.Marshal(map[string]any{"customer_id": "cust-traced", "currency": "EUR", "items": items})
				status, m := e.call(http.MethodPost, "/v1/orders", clientKey, string(b), "Idempotency-Key", "e2e-0", tracing.Header, sent.String())
				if status != http.StatusCreated {
					t.Fatalf("creating order: %d %v", status, m)
				}
				traced = m["id"].(string)
				ids[traced] = want
				continue
			}
			ids[e.order(fmt.Sprint("e2e-", i), items...)] = want
		}
	}
	create(0, n/2)
	eventually(t, "the partner received something", 90*time.Second, func() bool { return e.count(`SELECT count(*) FROM partner.receipts`) > 0 })
	partnerProc.kill9(t)
	create(n/2, n)
	startProc(t, bin, "partner", e.addr, partnerEnv...)

	eventually(t, "every order final", 120*time.Second, func() bool {
		return e.count(`SELECT count(*) FROM orders WHERE status <> 'pending'`) == n
	})
	for id, want := range ids {
		if got, _ := e.status(id); got != want {
			t.Errorf("order %s is %s, want %s", id, got, want)
		}
	}
	eventually(t, "every delivery succeeded", 60*time.Second, func() bool {
		return e.count(`SELECT count(*) FROM webhook_deliveries WHERE state = 'succeeded'`) == n
	})
	if r := e.count(`SELECT count(*) FROM partner.receipts`); r != n {
		t.Fatalf("%d receipts, want exactly %d", r, n)
	}
	if f := e.count(`SELECT count(*) FROM outbox WHERE event_type IN ('order.fulfilled', 'order.cancelled')`); f != n {
		t.Fatalf("%d final events, want exactly one per order (%d)", f, n)
	}
	if r := e.count(`SELECT coalesce(sum(reserved), 0)::bigint FROM inventory`); r != 0 {
		t.Fatalf("%d units still reserved after every order ended", r)
	}
	// The traced order: its events, its record, its delivery and the partner's callback (hence
	// the fulfill call, whose event carries it again) all hold the client's traceparent.
	for _, q := range []string{
		`SELECT traceparent FROM outbox WHERE aggregate_id = $1 AND event_type = 'order.created'`,
		`SELECT traceparent FROM outbox WHERE aggregate_id = $1 AND event_type = 'order.fulfilled'`,
		`SELECT traceparent FROM webhook_deliveries WHERE subject = $1`,
		`SELECT traceparent FROM partner.callbacks WHERE order_id = $1`,
	} {
		var got *string
		testenv.Must(t, e.sql.QueryRow(context.Background(), q, traced).Scan(&got), q)
		if got == nil || *got != sent.String() {
			t.Errorf("%s: %v, want %s", q, got, sent)
		}
	}
	var onTopic []string
	for _, r := range topicRecords(t, e.brokers, prefix+".order", 3) {
		if header(r, orderflow.HeaderSubject) == traced {
			onTopic = append(onTopic, header(r, orderflow.HeaderEventType)+" "+header(r, orderflow.HeaderTraceParent))
		}
	}
	sort.Strings(onTopic)
	if want := []string{"order.created " + sent.String(), "order.fulfilled " + sent.String()}; fmt.Sprint(onTopic) != fmt.Sprint(want) {
		t.Errorf("the traced order's records carry %q, want %q", onTopic, want)
	}
	// Commit (event time) to partner receipt, reported for the record, not asserted.
	rows, err := e.sql.Query(context.Background(), `SELECT extract(epoch FROM received_at - event_time) * 1000 FROM partner.receipts`)
	testenv.Must(t, err, "reading receipt latencies")
	var ms []float64
	for rows.Next() {
		var v float64
		testenv.Must(t, rows.Scan(&v), "scanning")
		ms = append(ms, v)
	}
	sort.Float64s(ms)
	t.Logf("commit→partner receipt over %d events (partner killed once): p50 %.0f ms, max %.0f ms", len(ms), ms[len(ms)/2], ms[len(ms)-1])
}

package partner_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"orderflow/consumers/partner"
	"orderflow/internal/testenv"
	"orderflow/webhook"
)

// fakeAPI records the partner's callbacks: order id -> calls.
type fakeAPI struct {
	srv    *httptest.Server
	mu     sync.Mutex
	calls  map[string]int
	answer func(orderID string, n int) int
}

func newFakeAPI(t *testing.T, answer func(orderID string, n int) int) *fakeAPI {
	a := &fakeAPI{calls: map[string]int{}, answer: answer}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(r.URL.Path, "/") // /v1/orders/{id}/{action}
		id := ""
		if len(parts) == 5 {
			id = parts[3]
		}
		a.mu.Lock()
		a.calls[id]++
		n := a.calls[id]
		a.mu.Unlock()
		status := http.StatusOK
		if a.answer != nil {
			status = a.answer(id, n)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeAPI) callsFor(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[id]
}

// hookEvent is an order.created webhook body for a new order; it returns the event id, the
// order id and the body.
func hookEvent(orderID string) (string, []byte) {
	id := uuid.NewString()
	return id, []byte(`{"specversion":"1.0","id":"` + id + `","source":"/t","type":"order.created","subject":"` + orderID + `",` +
		`"time":"2026-01-01T00:00:00Z","datacontenttype":"application/json","schemaversion":1,` +
		`"data":{"id":"` + orderID + `","customer_id":"c","currency":"EUR","status":"pending","version":1,` +
		`"items":[{"sku":"A","quantity":1,"unit_price_cents":1}]}}`)
}

// postHook sends a signed webhook as the deliverer would and returns the status.
func postHook(t *testing.T, base, secret, id string, body []byte) int {
	t.Helper()
	now := time.Now()
	sig, err := webhook.Sign(secret, id, now, body)
	testenv.Must(t, err, "signing")
	req, _ := http.NewRequest(http.MethodPost, base+"/partner-hook", bytes.NewReader(body))
	req.Header.Set(webhook.HeaderID, id)
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(webhook.HeaderSignature, sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func getURL(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestPartnerRidesOutAPostgresOutage takes PostgreSQL away from a running partner for longer
// than any retry budget: it stays up, answers webhooks 503 (so the deliverer retries) and says
// so on /readyz and in its metrics; once the database is back it stores and calls back what
// arrives, without a restart.
func TestPartnerRidesOutAPostgresOutage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	api := newFakeAPI(t, nil)
	px, proxied := testenv.NewDatabaseProxy(t, e.dsn)
	cfg := e.partnerConfig()
	cfg.DatabaseURL, cfg.APIURL, cfg.FulfillDelay = proxied, api.srv.URL, 0
	p, err := partner.New(context.Background(), cfg)
	testenv.Must(t, err, "creating partner")
	t.Cleanup(p.Close)
	run := testenv.Start(t, "partner", p.Run)
	base := "http://" + e.addr
	eventually(t, "partner ready", 10*time.Second, func() bool { code, _ := getURL(base + "/readyz"); return code == http.StatusOK })

	before := uuid.NewString()
	id, body := hookEvent(before)
	if st := postHook(t, base, e.secret, id, body); st != http.StatusOK {
		t.Fatalf("webhook before the outage answered %d", st)
	}
	eventually(t, "callback before the outage", 30*time.Second, func() bool { return api.callsFor(before) == 1 })

	px.Cut()
	during := uuid.NewString()
	duringID, duringBody := hookEvent(during)
	if st := postHook(t, base, e.secret, duringID, duringBody); st != http.StatusServiceUnavailable {
		t.Fatalf("webhook during the outage answered %d, want 503 so the deliverer retries", st)
	}
	eventually(t, "the outage reported on /readyz and in the metrics", 30*time.Second, func() bool {
		code, _ := getURL(base + "/readyz")
		_, m := getURL(base + "/metrics")
		return code == http.StatusServiceUnavailable && strings.Contains(m, `orderflow_partner_dependency_up{dependency="postgres"} 0`)
	})
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		select {
		case <-run.Done():
			t.Fatalf("the partner stopped while PostgreSQL was away: %v", run.Err())
		default:
		}
	}
	px.Restore()

	// The deliverer's retry of the refused webhook, and a new one.
	after := uuid.NewString()
	afterID, afterBody := hookEvent(after)
	eventually(t, "webhooks stored after the outage", 30*time.Second, func() bool {
		return postHook(t, base, e.secret, duringID, duringBody) == http.StatusOK
	})
	if st := postHook(t, base, e.secret, afterID, afterBody); st != http.StatusOK {
		t.Fatalf("webhook after the outage answered %d", st)
	}
	eventually(t, "callbacks after the outage", 30*time.Second, func() bool {
		return api.callsFor(during) == 1 && api.callsFor(after) == 1
	})
	eventually(t, "ready again", 30*time.Second, func() bool {
		_, m := getURL(base + "/metrics")
		code, _ := getURL(base + "/readyz")
		return code == http.StatusOK && strings.Contains(m, `orderflow_partner_dependency_up{dependency="postgres"} 1`)
	})
	if n := e.count(`SELECT count(*) FROM partner.receipts`); n != 3 {
		t.Errorf("%d receipts, want 3", n)
	}
	select {
	case <-run.Done():
		t.Fatalf("the partner stopped: %v", run.Err())
	default:
	}
}

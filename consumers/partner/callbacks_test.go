package partner_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"orderflow/consumers/partner"
	"orderflow/internal/testenv"
	"orderflow/webhook"
)

// The callback is the partner's side of the saga: it must survive an API that is down or
// overloaded, and stop for good on answers that a retry cannot change.
func TestCallbacksRetryUntilTheAPIAnswers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		answers  []int // the fake API's answers in order; the last one repeats
		state    string
		attempts int64
	}{
		{"down, overloaded, then fine", []int{http.StatusBadGateway, http.StatusTooManyRequests, http.StatusOK}, "done", 3},
		{"already cancelled by the customer", []int{http.StatusConflict}, "done", 1},
		{"unknown order", []int{http.StatusNotFound}, "failed", 1},
		{"never recovers", []int{http.StatusServiceUnavailable}, "failed", 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			var mu sync.Mutex
			var keys []string
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				keys = append(keys, r.Header.Get("Idempotency-Key"))
				n := len(keys)
				mu.Unlock()
				w.WriteHeader(c.answers[min(n, len(c.answers))-1])
			}))
			t.Cleanup(api.Close)
			cfg := e.partnerConfig()
			cfg.APIURL, cfg.FulfillDelay, cfg.CallbackMaxAttempts = api.URL, 0, 4
			cfg.CallbackBackoff, cfg.CallbackMaxBackoff = 10*time.Millisecond, 20*time.Millisecond
			p, err := partner.New(context.Background(), cfg)
			testenv.Must(t, err, "creating partner")
			t.Cleanup(p.Close)
			hook := httptest.NewServer(p.Handler())
			t.Cleanup(hook.Close)
			e.run("callbacks", p.RunCallbacks)

			id, orderID := uuid.NewString(), uuid.NewString()
			body := []byte(`{"specversion":"1.0","id":"` + id + `","source":"/t","type":"order.created","subject":"` + orderID + `",` +
				`"time":"2026-01-01T00:00:00Z","datacontenttype":"application/json","schemaversion":1,` +
				`"data":{"id":"` + orderID + `","version":1,"items":[{"sku":"A","quantity":1,"unit_price_cents":1}]}}`)
			now := time.Now()
			sig, err := webhook.Sign(e.secret, id, now, body)
			testenv.Must(t, err, "signing")
			req, _ := http.NewRequest(http.MethodPost, hook.URL+"/partner-hook", bytes.NewReader(body))
			req.Header.Set(webhook.HeaderID, id)
			req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
			req.Header.Set(webhook.HeaderSignature, sig)
			resp, err := http.DefaultClient.Do(req)
			testenv.Must(t, err, "posting the webhook")
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("webhook answered %d", resp.StatusCode)
			}
			eventually(t, "callback settled", 30*time.Second, func() bool {
				return e.count(`SELECT count(*) FROM partner.callbacks WHERE state <> 'pending'`) == 1
			})
			var state string
			var attempts int64
			testenv.Must(t, e.sql.QueryRow(context.Background(), `SELECT state, attempts FROM partner.callbacks`).Scan(&state, &attempts), "reading callback")
			if state != c.state || attempts != c.attempts {
				t.Fatalf("callback %s after %d attempts, want %s after %d", state, attempts, c.state, c.attempts)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, k := range keys {
				if k != id {
					t.Fatalf("Idempotency-Key %q, want the event id %s on every call", k, id)
				}
			}
		})
	}
}

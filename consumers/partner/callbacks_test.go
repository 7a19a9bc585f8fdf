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
	down := make([]int, 60) // longer than the 50 attempts after which the partner used to give up
	for i := range down {
		down[i] = http.StatusServiceUnavailable
	}
	cases := []struct {
		name        string
		answers     []int // the fake API's answers in order; the last one repeats
		maxAttempts int
		state       string
		attempts    int64
	}{
		{"down, overloaded, then fine", []int{http.StatusBadGateway, http.StatusTooManyRequests, http.StatusOK}, 0, "done", 3},
		{"down longer than the old budget, then fine", append(down, http.StatusOK), 0, "done", 61},
		{"the partner's key refused until an operator fixes it", []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusOK}, 0, "done", 3},
		{"already cancelled by the customer", []int{http.StatusConflict}, 0, "done", 1},
		{"unknown order", []int{http.StatusNotFound}, 0, "failed", 1},
		{"never recovers within the attempts", []int{http.StatusServiceUnavailable}, 4, "failed", 4},
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
			cfg.APIURL, cfg.FulfillDelay, cfg.CallbackMaxAttempts = api.URL, 0, c.maxAttempts
			cfg.CallbackBackoff, cfg.CallbackMaxBackoff, cfg.CallbackPoll = time.Millisecond, 5*time.Millisecond, 10*time.Millisecond
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

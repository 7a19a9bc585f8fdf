package api_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/uuid"

	"orderflow/api"
)

// TestARateLimitedRequestWritesNothing: the 429 comes before the request runs, so a refused
// order takes no stock and stores no key; the retry after Retry-After runs normally.
func TestARateLimitedRequestWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stock("sku-s", 100)
	limited := httptest.NewServer(api.New(e.db, slog.New(slog.NewTextHandler(io.Discard, nil)), api.WithRateLimit(0.001, 2)))
	t.Cleanup(limited.Close)
	e.url = limited.URL
	for i := 0; i < 2; i++ {
		mustStatus(t, e.create(uuid.NewString(), orderBody("c", "sku-s", 1)), http.StatusCreated, "")
	}
	before := e.rows()
	r := e.create("over", orderBody("c", "sku-s", 1))
	mustStatus(t, r, http.StatusTooManyRequests, "rate-limited")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	if after := e.rows(); after["orders"] != before["orders"] || after["idempotency_keys"] != before["idempotency_keys"] || after["reserved"] != before["reserved"] {
		t.Fatalf("the limited request wrote: before %v after %v", before, after)
	}
	// Another client is not limited by this one.
	mustStatus(t, e.do(http.MethodPost, "/v1/orders", orderBody("c", "sku-s", 1), append(as(otherKey), "Idempotency-Key", "o-1")...), http.StatusCreated, "")
}

package httpserver

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestOpsHandler(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "ops_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Inc()
	var readyErr error
	h := OpsHandler(reg, func(context.Context) error { return readyErr }, func(m *http.ServeMux) {
		m.HandleFunc("GET /extra", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("x")) })
	})
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", code)
	}
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d, want 200 when ready", code)
	}
	readyErr = errors.New("kafka unreachable")
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "kafka unreachable") {
		t.Errorf("/readyz = %d %q, want 503 naming the reason", code, body)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "ops_test_total 1") {
		t.Errorf("/metrics = %d, missing the registry's counter", code)
	}
	if code, body := get("/extra"); code != http.StatusOK || body != "x" {
		t.Errorf("/extra = %d %q, want the service's own route", code, body)
	}
}

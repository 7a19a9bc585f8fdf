package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"orderflow/internal/testenv"
)

// TestAPIMetricsAreOnTheOpsListenerOnly: the public listener serves neither /metrics nor
// pprof; the ops listener serves /metrics. And no request, however odd its method or path,
// adds a series: an unauthenticated loop of made-up methods leaves /metrics as it was.
func TestAPIMetricsAreOnTheOpsListenerOnly(t *testing.T) {
	t.Parallel()
	dsn := testenv.NewDatabase(t)
	public, ops := freeAddr(t), freeAddr(t)
	env := map[string]string{"DATABASE_URL": dsn, "HTTP_ADDR": public, "OPS_ADDR": ops}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"api"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("api stopped with %v", err)
		}
	})
	waitReady(t, "http://"+public+"/readyz", done)
	waitReady(t, "http://"+ops+"/readyz", done)

	get := func(method, url string) (int, string) {
		req, err := http.NewRequest(method, url, nil)
		testenv.Must(t, err, "building a request")
		resp, err := http.DefaultClient.Do(req)
		testenv.Must(t, err, method+" "+url)
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/heap"} {
		if code, _ := get(http.MethodGet, "http://"+public+path); code != http.StatusNotFound {
			t.Errorf("public %s answers %d, want 404", path, code)
		}
	}
	series := func() int {
		code, body := get(http.MethodGet, "http://"+ops+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("ops /metrics answers %d", code)
		}
		return strings.Count(body, "orderflow_api_request_duration_seconds_count")
	}
	// Warm every label the loop can reach once, then count.
	for _, m := range []string{"M0", http.MethodGet, http.MethodPost} {
		get(m, "http://"+public+"/x0")
		get(m, "http://"+public+"/v1/orders/x0")
	}
	before := series()
	for i := 1; i <= 200; i++ {
		get(fmt.Sprintf("M%d", i), fmt.Sprintf("http://%s/x%d", public, i))
		get(fmt.Sprintf("M%d", i), fmt.Sprintf("http://%s/v1/orders/x%d", public, i))
	}
	if after := series(); after != before {
		t.Fatalf("200 made-up methods and paths grew the request histogram from %d to %d series", before, after)
	}
}

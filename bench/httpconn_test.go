package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHTTPConnReadsWhatNetHTTPWrites: the load generator's own HTTP/1.1 client gets the
// status, Retry-After and body of every shape of answer Go's server writes, and keeps or
// redials its connection as the server says.
func TestHTTPConnReadsWhatNetHTTPWrites(t *testing.T) {
	t.Parallel()
	var gotBodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotBodies = append(gotBodies, r.Header.Get("Idempotency-Key")+" "+string(b))
		switch r.Header.Get("Idempotency-Key") {
		case "created":
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"id":"x"}`))
		case "shed":
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"type":"overloaded"}`))
		case "chunked":
			w.WriteHeader(http.StatusConflict)
			for range 3 {
				_, _ = w.Write([]byte(strings.Repeat("c", 3000)))
				w.(http.Flusher).Flush()
			}
		case "close":
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusCreated)
		}
	}))
	defer srv.Close()
	c, err := newHTTPConn(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	for _, tc := range []struct {
		key         string
		status      int
		retryAfter  bool
		bodyLen     int
		connectedOK bool
	}{
		{"created", 201, false, 0, true},
		{"shed", 503, true, len(`{"type":"overloaded"}`), true},
		{"chunked", 409, false, 9000, true},
		{"created", 201, false, 0, true},
		{"close", 201, false, 0, false},
		{"created", 201, false, 0, true},
	} {
		resp, err := c.post(context.Background(), "/v1/orders", []string{"Idempotency-Key", tc.key}, []byte(`{"n":1}`))
		if err != nil {
			t.Fatalf("%s: %v", tc.key, err)
		}
		if resp.status != tc.status || resp.retryAfter != tc.retryAfter || len(resp.body) != tc.bodyLen || (c.c != nil) != tc.connectedOK {
			t.Fatalf("%s: status %d retry-after %v body %d bytes connected %v", tc.key, resp.status, resp.retryAfter, len(resp.body), c.c != nil)
		}
	}
	if len(gotBodies) != 6 || gotBodies[0] != `created {"n":1}` {
		t.Fatalf("server saw %q", gotBodies)
	}
}

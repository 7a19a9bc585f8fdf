package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"orderflow/internal/openapitest"
)

// document is openapi.json for the package's internal tests, loaded once.
var document = sync.OnceValues(func() (*openapitest.Document, error) {
	return openapitest.Load(context.Background(), OpenAPI())
})

// serve runs one request through h, in process, and fails t unless the exchange is one
// openapi.json describes: the internal tests' counterpart of api_test's send, so the answers
// of handlers driven with fake stores are held to the document too.
func serve(t testing.TB, h http.Handler, r *http.Request, body string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	d, err := document()
	if err != nil {
		t.Fatalf("loading openapi.json: %v", err)
	}
	if err := d.Check(context.Background(), r, []byte(body), w.Result(), w.Body.Bytes()); err != nil {
		t.Errorf("openapi.json disagrees with the server: %v\nbody: %s", err, w.Body.Bytes())
	}
	return w
}

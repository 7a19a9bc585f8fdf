package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/uuid"

	"orderflow/internal/testenv"
	"orderflow/schemas"
)

func TestAnswersMatchTheOpenAPIDocument(t *testing.T) {
	e := newEnv(t)
	e.stock("sku-s", 10)
	admin := []string{"Authorization", "Bearer " + adminKey}

	key := uuid.NewString()
	body := orderBody("cust-oa", "sku-s", 2)
	created := e.do(http.MethodPost, "/v1/orders", body, "Idempotency-Key", key)
	mustStatus(t, created, http.StatusCreated, "")
	id := created.json(t)["id"].(string)

	replay := e.do(http.MethodPost, "/v1/orders", body, "Idempotency-Key", key)
	mustStatus(t, replay, http.StatusCreated, "")
	if replay.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay without Idempotent-Replayed: %v", replay.header)
	}

	mustStatus(t, e.do(http.MethodPost, "/v1/orders", body), http.StatusBadRequest, "idempotency-key-missing")
	mustStatus(t, e.do(http.MethodPost, "/v1/orders",
		`{"customer_id": "cust-oa", "currency": "XXX", "items": [{"sku": "sku-s", "quantity": 0, "unit_price_cents": 1}]}`,
		"Idempotency-Key", uuid.NewString()), http.StatusUnprocessableEntity, "validation-failed")
	mustStatus(t, e.do(http.MethodPost, "/v1/orders", orderBody("cust-oa", "sku-none", 1),
		"Idempotency-Key", uuid.NewString()), http.StatusConflict, "insufficient-stock")
	mustStatus(t, e.do(http.MethodGet, "/v1/orders/"+uuid.NewString(), ""), http.StatusNotFound, "order-not-found")
	mustStatus(t, e.do(http.MethodGet, "/v1/orders/"+id, "", "Authorization", "Bearer nobody"), http.StatusUnauthorized, "unauthorized")
	mustStatus(t, e.do(http.MethodGet, "/v1/orders/"+id, ""), http.StatusOK, "")

	mustStatus(t, e.do(http.MethodGet, "/v1/orders/"+id+"/summary", ""), http.StatusNotFound, "summary-not-projected")
	e.project(id)
	mustStatus(t, e.do(http.MethodGet, "/v1/orders/"+id+"/summary", ""), http.StatusOK, "")
	mustStatus(t, e.do(http.MethodGet, "/v1/customers/cust-oa/orders?limit=1", ""), http.StatusOK, "")

	mustStatus(t, e.do(http.MethodPost, "/v1/orders/"+id+"/cancel", `{"reason": "changed my mind"}`,
		"Idempotency-Key", uuid.NewString()), http.StatusOK, "")
	mustStatus(t, e.do(http.MethodPost, "/v1/orders/"+id+"/fulfill", "",
		"Idempotency-Key", uuid.NewString()), http.StatusConflict, "invalid-transition")

	mustStatus(t, e.do(http.MethodPut, "/v1/inventory/sku-s", `{"stock": 20}`, admin...), http.StatusOK, "")
	mustStatus(t, e.do(http.MethodPut, "/v1/inventory/sku-s", `{"stock": 20}`), http.StatusForbidden, "forbidden")
	ep := e.do(http.MethodPost, "/v1/admin/endpoints", `{"url": "http://127.0.0.1:1/hook", "event_types": ["order.created"]}`, admin...)
	mustStatus(t, ep, http.StatusCreated, "")
	mustStatus(t, e.do(http.MethodGet, "/v1/admin/endpoints", "", admin...), http.StatusOK, "")
	mustStatus(t, e.do(http.MethodGet, "/v1/admin/dead-letters", "", admin...), http.StatusOK, "")

	for _, p := range []string{"/healthz", "/readyz", "/openapi.json", "/v1/event-types"} {
		mustStatus(t, e.do(http.MethodGet, p, "", "Authorization", ""), http.StatusOK, "")
	}
	mustStatus(t, e.do(http.MethodDelete, "/healthz", ""), http.StatusMethodNotAllowed, "method-not-allowed")
	mustStatus(t, e.do(http.MethodGet, "/v2/orders", ""), http.StatusNotFound, "not-found")
}

// TestEventTypesPointAtServedSchemas follows every schema URL /v1/event-types lists, without a
// key, and gets the schema the schemas package holds.
func TestEventTypesPointAtServedSchemas(t *testing.T) {
	e := newEnv(t)
	r := e.do(http.MethodGet, "/v1/event-types", "", "Authorization", "")
	mustStatus(t, r, http.StatusOK, "")
	var list struct {
		Data []struct {
			Type          string `json:"type"`
			LatestVersion int    `json:"latest_version"`
			Schemas       []struct {
				Version int    `json:"version"`
				ID      string `json:"id"`
				URL     string `json:"url"`
			} `json:"schemas"`
		} `json:"data"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Data) != len(schemas.EventTypes()) {
		t.Fatalf("%d event types listed, want %d: %s", len(list.Data), len(schemas.EventTypes()), r.body)
	}
	for _, et := range list.Data {
		for _, s := range et.Schemas {
			got := e.do(http.MethodGet, s.URL, "", "Authorization", "")
			mustStatus(t, got, http.StatusOK, "")
			want, _ := schemas.Schema(et.Type, s.Version)
			if ct := got.header.Get("Content-Type"); ct != "application/schema+json" || string(got.body) != string(want) {
				t.Errorf("%s: %s %q, want the %s v%d schema", s.URL, ct, got.body, et.Type, s.Version)
			}
			if s.ID != schemas.ID(et.Type, s.Version) {
				t.Errorf("%s v%d: id %q", et.Type, s.Version, s.ID)
			}
		}
	}
	mustStatus(t, e.do(http.MethodGet, "/v1/schemas/order.created/9.json", "", "Authorization", ""), http.StatusNotFound, "not-found")
	mustStatus(t, e.do(http.MethodGet, "/v1/schemas/order.shipped/1.json", "", "Authorization", ""), http.StatusNotFound, "not-found")
}

// recorder is a testing.TB that keeps what send reports instead of failing the test.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

// TestEveryExchangeIsCheckedAgainstTheDocument: the helper all API tests send through fails a
// test whose answer the document does not describe (a wrong body, an undocumented problem type),
// and passes one it does.
func TestEveryExchangeIsCheckedAgainstTheDocument(t *testing.T) {
	t.Parallel()
	answers := map[string]struct {
		status      int
		contentType string
		body        string
	}{
		"/v1/orders/wrong-body":    {200, "application/json", `{"id": 5}`},
		"/v1/orders/wrong-problem": {404, "application/problem+json", `{"type": "https://orderflow.dev/problems/no-such-type", "title": "x", "status": 404}`},
		"/v1/orders/documented":    {404, "application/problem+json", `{"type": "https://orderflow.dev/problems/order-not-found", "title": "Order not found", "status": 404}`},
	}
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := answers[r.URL.Path]
		w.Header().Set("Content-Type", a.contentType)
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}))
	t.Cleanup(fake.Close)
	for path, wantErrors := range map[string]bool{"/v1/orders/wrong-body": true, "/v1/orders/wrong-problem": true, "/v1/orders/documented": false} {
		req, err := http.NewRequest(http.MethodGet, fake.URL+path, nil)
		testenv.Must(t, err, "building the request")
		rec := &recorder{TB: t}
		send(rec, mustDocument(t), req, "")
		if got := len(rec.errors) > 0; got != wantErrors {
			t.Errorf("%s: reported %v, want errors: %v", path, rec.errors, wantErrors)
		}
	}
}

package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"orderflow/api"
	"orderflow/internal/openapitest"
	"orderflow/schemas"
)

// conform sends one request to the test API and fails unless the exchange is one openapi.json
// describes. headers are name, value pairs; the client key is sent unless overridden.
func (e *env) conform(d *openapitest.Document, method, path, body string, headers ...string) reply {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+clientKey)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := d.Check(context.Background(), req, []byte(body), resp, b); err != nil {
		e.t.Errorf("%v\nbody: %s", err, b)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func TestAnswersMatchTheOpenAPIDocument(t *testing.T) {
	d, err := openapitest.Load(context.Background(), api.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	e.stock("sku-s", 10)
	admin := []string{"Authorization", "Bearer " + adminKey}

	key := uuid.NewString()
	body := orderBody("cust-oa", "sku-s", 2)
	created := e.conform(d, http.MethodPost, "/v1/orders", body, "Idempotency-Key", key)
	mustStatus(t, created, http.StatusCreated, "")
	id := created.json(t)["id"].(string)

	replay := e.conform(d, http.MethodPost, "/v1/orders", body, "Idempotency-Key", key)
	mustStatus(t, replay, http.StatusCreated, "")
	if replay.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay without Idempotent-Replayed: %v", replay.header)
	}

	mustStatus(t, e.conform(d, http.MethodPost, "/v1/orders", body), http.StatusBadRequest, "idempotency-key-missing")
	mustStatus(t, e.conform(d, http.MethodPost, "/v1/orders",
		`{"customer_id": "cust-oa", "currency": "XXX", "items": [{"sku": "sku-s", "quantity": 0, "unit_price_cents": 1}]}`,
		"Idempotency-Key", uuid.NewString()), http.StatusUnprocessableEntity, "validation-failed")
	mustStatus(t, e.conform(d, http.MethodPost, "/v1/orders", orderBody("cust-oa", "sku-none", 1),
		"Idempotency-Key", uuid.NewString()), http.StatusConflict, "insufficient-stock")
	mustStatus(t, e.conform(d, http.MethodGet, "/v1/orders/"+uuid.NewString(), ""), http.StatusNotFound, "order-not-found")
	mustStatus(t, e.conform(d, http.MethodGet, "/v1/orders/"+id, "", "Authorization", "Bearer nobody"), http.StatusUnauthorized, "unauthorized")
	mustStatus(t, e.conform(d, http.MethodGet, "/v1/orders/"+id, ""), http.StatusOK, "")

	mustStatus(t, e.conform(d, http.MethodGet, "/v1/orders/"+id+"/summary", ""), http.StatusNotFound, "summary-not-projected")
	e.project(id)
	mustStatus(t, e.conform(d, http.MethodGet, "/v1/orders/"+id+"/summary", ""), http.StatusOK, "")
	mustStatus(t, e.conform(d, http.MethodGet, "/v1/customers/cust-oa/orders?limit=1", ""), http.StatusOK, "")

	mustStatus(t, e.conform(d, http.MethodPost, "/v1/orders/"+id+"/cancel", `{"reason": "changed my mind"}`,
		"Idempotency-Key", uuid.NewString()), http.StatusOK, "")
	mustStatus(t, e.conform(d, http.MethodPost, "/v1/orders/"+id+"/fulfill", "",
		"Idempotency-Key", uuid.NewString()), http.StatusConflict, "invalid-transition")

	mustStatus(t, e.conform(d, http.MethodPut, "/v1/inventory/sku-s", `{"stock": 20}`, admin...), http.StatusOK, "")
	mustStatus(t, e.conform(d, http.MethodPut, "/v1/inventory/sku-s", `{"stock": 20}`), http.StatusForbidden, "forbidden")
	ep := e.conform(d, http.MethodPost, "/v1/admin/endpoints", `{"url": "http://127.0.0.1:1/hook", "event_types": ["order.created"]}`, admin...)
	mustStatus(t, ep, http.StatusCreated, "")
	mustStatus(t, e.conform(d, http.MethodGet, "/v1/admin/endpoints", "", admin...), http.StatusOK, "")
	mustStatus(t, e.conform(d, http.MethodGet, "/v1/admin/dead-letters", "", admin...), http.StatusOK, "")

	for _, p := range []string{"/healthz", "/readyz", "/openapi.json", "/v1/event-types"} {
		mustStatus(t, e.conform(d, http.MethodGet, p, "", "Authorization", ""), http.StatusOK, "")
	}
	mustStatus(t, e.conform(d, http.MethodDelete, "/healthz", ""), http.StatusMethodNotAllowed, "method-not-allowed")
	mustStatus(t, e.conform(d, http.MethodGet, "/v2/orders", ""), http.StatusNotFound, "not-found")
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

package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"orderflow/internal/testenv"
)

func as(key string) []string { return []string{"Authorization", "Bearer " + key} }

// TestAnotherClientsOrderDoesNotExist: every read and change of another client's order
// answers exactly as for an order that does not exist, and changes nothing.
func TestAnotherClientsOrderDoesNotExist(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stock("sku-s", 100)
	id := e.createOrder("cust-shared")
	e.project(id)
	// The other client has a customer of the same name: the name is each client's own.
	otherID := func() string {
		r := e.do(http.MethodPost, "/v1/orders", orderBody("cust-shared", "sku-s", 1), append(as(otherKey), "Idempotency-Key", uuid.NewString())...)
		mustStatus(t, r, http.StatusCreated, "")
		return r.json(t)["id"].(string)
	}()
	e.project(otherID)

	var owner string
	testenv.Must(t, e.sql.QueryRow(context.Background(), `SELECT client_id FROM order_summary WHERE order_id = $1`, id).Scan(&owner), "reading summary owner")
	if owner != "client" {
		t.Fatalf("order_summary.client_id = %q, want the owning client", owner)
	}

	before := e.rows()
	var version, outbox int64
	readVersion := func() {
		version = testenv.Count(t, e.sql, `SELECT version FROM orders WHERE id = $1`, id)
		outbox = e.count("outbox")
	}
	readVersion()
	v0, o0 := version, outbox

	unknown := uuid.NewString()
	for _, c := range []struct {
		name, method, path, body string
	}{
		{"read", http.MethodGet, "/v1/orders/%s", ""},
		{"summary", http.MethodGet, "/v1/orders/%s/summary", ""},
		{"cancel", http.MethodPost, "/v1/orders/%s/cancel", `{"reason": "not yours"}`},
		{"fulfill", http.MethodPost, "/v1/orders/%s/fulfill", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			theirs := e.do(c.method, fmt.Sprintf(c.path, id), c.body, append(as(otherKey), "Idempotency-Key", uuid.NewString())...)
			missing := e.do(c.method, fmt.Sprintf(c.path, unknown), c.body, append(as(otherKey), "Idempotency-Key", uuid.NewString())...)
			mustStatus(t, theirs, http.StatusNotFound, "order-not-found")
			mustStatus(t, missing, http.StatusNotFound, "order-not-found")
			// Same answer apart from the id in the instance: existence does not leak.
			if got := strings.ReplaceAll(string(theirs.body), id, unknown); got != string(missing.body) {
				t.Errorf("another client's order answers %s, an unknown one %s", theirs.body, missing.body)
			}
		})
	}
	readVersion()
	if version != v0 || outbox != o0 {
		t.Fatalf("another client changed the order: version %d -> %d, outbox %d -> %d", v0, version, o0, outbox)
	}
	if after := e.rows(); after["orders"] != before["orders"] || after["reserved"] != before["reserved"] {
		t.Fatalf("rows changed: before %v after %v", before, after)
	}

	// The listing under a shared customer name shows each client only its own order.
	for key, want := range map[string]string{clientKey: id, otherKey: otherID} {
		r := e.do(http.MethodGet, "/v1/customers/cust-shared/orders", "", as(key)...)
		mustStatus(t, r, http.StatusOK, "")
		data := r.json(t)["data"].([]any)
		if len(data) != 1 || data[0].(map[string]any)["order_id"] != want {
			t.Errorf("listing for %s: %s, want only %s", key, r.body, want)
		}
	}
}

// TestRolesDoOnlyTheirOwnJob: the fulfiller fulfills and cancels any order and does nothing
// else; an admin key runs the admin routes and touches no order; a client key runs no admin
// route. Each refusal is 403 forbidden and writes nothing.
func TestRolesDoOnlyTheirOwnJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stock("sku-s", 100)
	a, b := e.createOrder("cust-r"), e.createOrder("cust-r")

	forbidden := []struct {
		name, key, method, path, body string
	}{
		{"fulfiller creates an order", fulfillerKey, http.MethodPost, "/v1/orders", orderBody("cust-r", "sku-s", 1)},
		{"fulfiller reads an order", fulfillerKey, http.MethodGet, "/v1/orders/" + a, ""},
		{"fulfiller reads a summary", fulfillerKey, http.MethodGet, "/v1/orders/" + a + "/summary", ""},
		{"fulfiller lists a customer", fulfillerKey, http.MethodGet, "/v1/customers/cust-r/orders", ""},
		{"fulfiller sets stock", fulfillerKey, http.MethodPut, "/v1/inventory/sku-s", `{"stock": 1}`},
		{"fulfiller registers an endpoint", fulfillerKey, http.MethodPost, "/v1/admin/endpoints", `{"url": "https://example.com/h", "event_types": ["*"]}`},
		{"admin creates an order", adminKey, http.MethodPost, "/v1/orders", orderBody("cust-r", "sku-s", 1)},
		{"admin reads an order", adminKey, http.MethodGet, "/v1/orders/" + a, ""},
		{"admin cancels an order", adminKey, http.MethodPost, "/v1/orders/" + a + "/cancel", ""},
		{"admin fulfills an order", adminKey, http.MethodPost, "/v1/orders/" + a + "/fulfill", ""},
		{"client registers an endpoint", clientKey, http.MethodPost, "/v1/admin/endpoints", `{"url": "https://example.com/h", "event_types": ["*"]}`},
		{"client lists endpoints", clientKey, http.MethodGet, "/v1/admin/endpoints", ""},
		{"client lists dead letters", clientKey, http.MethodGet, "/v1/admin/dead-letters", ""},
		{"client sets stock", clientKey, http.MethodPut, "/v1/inventory/sku-s", `{"stock": 1}`},
	}
	before := e.rows()
	endpoints := e.count("webhook_endpoints")
	for _, c := range forbidden {
		t.Run(c.name, func(t *testing.T) {
			mustStatus(t, e.do(c.method, c.path, c.body, append(as(c.key), "Idempotency-Key", uuid.NewString())...), http.StatusForbidden, "forbidden")
		})
	}
	if after := e.rows(); fmt.Sprint(after) != fmt.Sprint(before) || e.count("webhook_endpoints") != endpoints {
		t.Fatalf("a refused request wrote: before %v after %v", before, after)
	}
	if s, _ := e.inventory("sku-s"); s != 100 {
		t.Fatalf("stock %d after refused stock changes, want 100", s)
	}

	// The fulfiller's own job works on any client's order, with its own idempotency keys.
	mustStatus(t, e.do(http.MethodPost, "/v1/orders/"+a+"/fulfill", "", append(as(fulfillerKey), "Idempotency-Key", "f-1")...), http.StatusOK, "")
	mustStatus(t, e.do(http.MethodPost, "/v1/orders/"+b+"/cancel", `{"reason": "out of stock"}`, append(as(fulfillerKey), "Idempotency-Key", "f-2")...), http.StatusOK, "")
	if n := testenv.Count(t, e.sql, `SELECT count(*) FROM idempotency_keys WHERE client_id = 'partner'`); n != 2 {
		t.Fatalf("%d idempotency keys of the fulfiller, want 2", n)
	}
	// And the owner sees the result.
	r := e.do(http.MethodGet, "/v1/orders/"+a, "")
	mustStatus(t, r, http.StatusOK, "")
	if r.json(t)["status"] != "fulfilled" {
		t.Fatalf("order after the fulfiller's call: %s", r.body)
	}
}

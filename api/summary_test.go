package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"orderflow"
	"orderflow/internal/testenv"
)

// project writes the order's current state to order_summary the way the projector does.
func (e *env) project(id string) {
	e.t.Helper()
	o, err := e.db.Order(context.Background(), orderflow.AnyClient, id)
	testenv.Must(e.t, err, "reading order")
	var units int64
	for _, it := range o.Items {
		units += it.Quantity
	}
	_, err = e.db.ApplySummaries(context.Background(), []orderflow.Summary{{
		OrderID: o.ID, CustomerID: o.CustomerID, Status: o.Status, TotalCents: o.TotalCents,
		ItemCount: units, Currency: o.Currency, Version: o.Version, CreatedAt: o.CreatedAt,
		UpdatedAt: o.UpdatedAt, LastEventID: uuid.NewString(), LastEventType: orderflow.EventOrderCreated,
		LastEventAt: o.UpdatedAt,
	}}, nil)
	testenv.Must(e.t, err, "projecting")
}

func (e *env) createOrder(customer string) string {
	e.t.Helper()
	r := e.create(uuid.NewString(), orderBody(customer, "sku-s", 1))
	mustStatus(e.t, r, http.StatusCreated, "")
	return r.json(e.t)["id"].(string)
}

type summaryReply struct {
	Data      orderflow.Summary `json:"data"`
	Freshness struct {
		LastEventAt   time.Time `json:"last_event_at"`
		ProjectedAt   time.Time `json:"projected_at"`
		LagMS         int64     `json:"lag_ms"`
		MaxLagSeconds float64   `json:"max_lag_seconds"`
		SourceVersion int       `json:"source_version"`
		Stale         bool      `json:"stale"`
	} `json:"freshness"`
}

func TestSummaryNotProjectedIsDistinctFromOrderNotFound(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stock("sku-s", 100)
	id := e.createOrder("cust-s")

	r := e.do(http.MethodGet, "/v1/orders/"+id+"/summary", "")
	mustStatus(t, r, http.StatusNotFound, "summary-not-projected")
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q, want a positive number of seconds", r.header.Get("Retry-After"))
	}
	if n := testenv.Count(t, e.sql, `SELECT count(*) FROM orders WHERE id = $1`, id); n != 1 {
		t.Fatalf("order rows %d, want 1", n)
	}
	if n := testenv.Count(t, e.sql, `SELECT count(*) FROM order_summary WHERE order_id = $1`, id); n != 0 {
		t.Fatalf("summary rows %d, want 0", n)
	}
	for _, missing := range []string{uuid.NewString(), "not-a-uuid"} {
		r := e.do(http.MethodGet, "/v1/orders/"+missing+"/summary", "")
		mustStatus(t, r, http.StatusNotFound, "order-not-found")
		if r.header.Get("Retry-After") != "" {
			t.Errorf("order-not-found with Retry-After %q", r.header.Get("Retry-After"))
		}
	}

	e.project(id)
	r = e.do(http.MethodGet, "/v1/orders/"+id+"/summary", "")
	mustStatus(t, r, http.StatusOK, "")
	var s summaryReply
	testenv.Must(t, json.Unmarshal(r.body, &s), "decoding summary")
	if s.Data.OrderID != id || s.Data.Status != orderflow.StatusPending || s.Data.Version != 1 ||
		s.Data.ItemCount != 1 || s.Data.TotalCents != 1250 || s.Data.CustomerID != "cust-s" {
		t.Errorf("summary %+v", s.Data)
	}
	f := s.Freshness
	if f.Stale || f.SourceVersion != 1 || f.LagMS < 0 || f.MaxLagSeconds <= 0 ||
		!f.LastEventAt.Equal(s.Data.LastEventAt) || !f.ProjectedAt.Equal(s.Data.ProjectedAt) ||
		f.LagMS != f.ProjectedAt.Sub(f.LastEventAt).Milliseconds() {
		t.Errorf("freshness %+v", f)
	}

	// A change the projector has not seen yet makes the summary stale, visibly.
	mustStatus(t, e.do(http.MethodPost, "/v1/orders/"+id+"/fulfill", "", "Idempotency-Key", uuid.NewString()), http.StatusOK, "")
	r = e.do(http.MethodGet, "/v1/orders/"+id+"/summary", "")
	mustStatus(t, r, http.StatusOK, "")
	testenv.Must(t, json.Unmarshal(r.body, &s), "decoding summary")
	if !s.Freshness.Stale || s.Freshness.SourceVersion != 2 || s.Data.Version != 1 {
		t.Errorf("after an unprojected change: freshness %+v, version %d; want stale, source 2, summary 1", s.Freshness, s.Data.Version)
	}
}

func TestCustomerOrdersPagesAreStableAndComplete(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stock("sku-s", 100)
	var ids []string
	for i := 0; i < 7; i++ {
		ids = append(ids, e.createOrder("cust-p"))
	}
	other := e.createOrder("cust-q")
	for _, id := range append(ids, other) {
		e.project(id)
	}

	type page struct {
		Data       []orderflow.Summary `json:"data"`
		NextCursor string              `json:"next_cursor"`
	}
	var seen []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("more pages than orders")
		}
		path := "/v1/customers/cust-p/orders?limit=3"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := e.do(http.MethodGet, path, "")
		mustStatus(t, r, http.StatusOK, "")
		var p page
		testenv.Must(t, json.Unmarshal(r.body, &p), "decoding page")
		for _, s := range p.Data {
			seen = append(seen, s.OrderID)
		}
		if pages == 0 {
			// A change between pages must neither repeat nor hide an order.
			mustStatus(t, e.do(http.MethodPost, "/v1/orders/"+ids[0]+"/cancel", "", "Idempotency-Key", uuid.NewString()), http.StatusOK, "")
			e.project(ids[0])
		}
		if p.NextCursor == "" {
			if len(p.Data) != 1 {
				t.Errorf("last page has %d orders, want 1", len(p.Data))
			}
			break
		}
		if len(p.Data) != 3 {
			t.Fatalf("page %d has %d orders, want 3", pages, len(p.Data))
		}
		cursor = p.NextCursor
	}
	if len(seen) != len(ids) {
		t.Fatalf("listed %d orders, want %d: %v", len(seen), len(ids), seen)
	}
	// Newest first: ids were created in order, and uuid v7 ids sort by time too.
	for i, id := range seen {
		if want := ids[len(ids)-1-i]; id != want {
			t.Errorf("position %d: %s, want %s", i, id, want)
		}
	}

	r := e.do(http.MethodGet, "/v1/customers/nobody/orders", "")
	mustStatus(t, r, http.StatusOK, "")
	if string(r.body) != `{"data":[]}` {
		t.Errorf("empty listing %s, want {\"data\":[]}", r.body)
	}
	for _, q := range []string{"limit=0", "limit=201", "limit=x", "cursor=not*base64", "cursor=e30"} {
		mustStatus(t, e.do(http.MethodGet, "/v1/customers/cust-p/orders?"+q, ""), http.StatusUnprocessableEntity, "validation-failed")
	}
}

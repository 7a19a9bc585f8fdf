package api_test

import (
	"context"
	"net/http"
	"testing"

	"orderflow/api"
	"orderflow/internal/testenv"
	"orderflow/internal/tracing"
)

// A request's traceparent is continued: the order's outbox rows (create, then fulfill) keep a
// traceparent of the request's trace, and the response names it in traceresponse. A request
// without one, or with a malformed one, starts a new trace instead of failing.
func TestStateChangesKeepTheRequestsTrace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stock("SKU-T", 10)
	outboxTrace := func(orderID, eventType string) tracing.TraceParent {
		t.Helper()
		var s string
		testenv.Must(t, e.sql.QueryRow(context.Background(), `SELECT coalesce(traceparent, '') FROM outbox
			WHERE aggregate_id = $1 AND event_type = $2`, orderID, eventType).Scan(&s), "reading the outbox row")
		tp, err := tracing.Parse(s)
		if err != nil {
			t.Fatalf("outbox row of %s: %v", eventType, err)
		}
		return tp
	}
	responseTrace := func(r reply) tracing.TraceParent {
		t.Helper()
		tp, err := tracing.Parse(r.header.Get(api.HeaderTraceResponse))
		if err != nil {
			t.Fatalf("%s: %v", api.HeaderTraceResponse, err)
		}
		return tp
	}

	sent := tracing.New()
	r := e.do(http.MethodPost, "/v1/orders", orderBody("cust-t", "SKU-T", 1), "Idempotency-Key", "t1", tracing.Header, sent.String())
	mustStatus(t, r, http.StatusCreated, "")
	id := r.json(t)["id"].(string)
	if got := outboxTrace(id, "order.created"); got.TraceID != sent.TraceID {
		t.Errorf("order.created in trace %s, want the request's %s", got.TraceIDString(), sent.TraceIDString())
	}
	if got := responseTrace(r); got.TraceID != sent.TraceID {
		t.Errorf("traceresponse in trace %s, want %s", got.TraceIDString(), sent.TraceIDString())
	}

	callback := tracing.New()
	r = e.do(http.MethodPost, "/v1/orders/"+id+"/fulfill", "", "Authorization", "Bearer "+fulfillerKey,
		"Idempotency-Key", "t2", tracing.Header, callback.String())
	mustStatus(t, r, http.StatusOK, "")
	if got := outboxTrace(id, "order.fulfilled"); got.TraceID != callback.TraceID {
		t.Errorf("order.fulfilled in trace %s, want the fulfill request's %s", got.TraceIDString(), callback.TraceIDString())
	}

	for i, header := range []string{"", "00-not-a-traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"} {
		key := []string{"t3", "t4", "t5"}[i]
		r := e.do(http.MethodPost, "/v1/orders", orderBody("cust-t", "SKU-T", 1), "Idempotency-Key", key, tracing.Header, header)
		mustStatus(t, r, http.StatusCreated, "")
		got, resp := outboxTrace(r.json(t)["id"].(string), "order.created"), responseTrace(r)
		if got.TraceID != resp.TraceID || got.TraceID == sent.TraceID {
			t.Errorf("traceparent %q: order.created in trace %s, response names %s: want one new trace", header, got.TraceIDString(), resp.TraceIDString())
		}
	}
}

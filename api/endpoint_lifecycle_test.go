package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/segmentio/kafka-go"

	"orderflow"
	"orderflow/api"
	"orderflow/consumers/deliver"
	"orderflow/internal/testenv"
	"orderflow/postgres"
	"orderflow/schemas"
	"orderflow/webhook"
)

// asAPIRole points the env's requests at an API that connects as orderflow_api, as deployed, so
// a test of a route proves the role's grants as well.
func (e *env) asAPIRole() {
	e.t.Helper()
	db, err := postgres.Open(context.Background(), testenv.AsRole(e.t, e.dsn, "orderflow_api"), 10)
	testenv.Must(e.t, err, "opening the database as orderflow_api")
	e.t.Cleanup(db.Close)
	srv := httptest.NewServer(api.New(db, slog.New(slog.NewTextHandler(io.Discard, nil)), api.WithSecrets(e.ring), api.WithEgress(loopbackOnly(e.t))))
	e.t.Cleanup(srv.Close)
	e.url = srv.URL
}

// endpointRow is what the database holds of an endpoint, to check refusals left it alone.
func (e *env) endpointRow(id string) string {
	e.t.Helper()
	var row string
	testenv.Must(e.t, e.sql.QueryRow(context.Background(), `SELECT concat_ws('|', url, event_types::text, secret, rate_limit,
		disabled_at IS NOT NULL, deleted_at IS NOT NULL) FROM webhook_endpoints WHERE id = $1`, id).Scan(&row), "reading endpoint "+id)
	return row
}

func (e *env) newEndpoint(body string) map[string]any {
	e.t.Helper()
	r := e.admin(http.MethodPost, "/v1/admin/endpoints", body)
	mustStatus(e.t, r, http.StatusCreated, "")
	return r.json(e.t)
}

// TestEndpointUpdateAndDelete: an admin reads, changes and deletes an endpoint; every refusal
// is a problem of its type and leaves the row as it was.
func TestEndpointUpdateAndDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.asAPIRole()
	ep := e.newEndpoint(`{"url": "http://127.0.0.1:9/hook", "event_types": ["order.created"], "rate_limit": 5}`)
	id := ep["id"].(string)
	if ep["rate_limit"].(float64) != 5 {
		t.Fatalf("created %v, want rate_limit 5", ep)
	}
	got := e.admin(http.MethodGet, "/v1/admin/endpoints/"+id, "")
	mustStatus(t, got, http.StatusOK, "")
	if o := got.json(t); o["id"] != id || o["secret"] != nil || o["rate_limit"].(float64) != 5 {
		t.Fatalf("GET answered %v", o)
	}

	before := e.endpointRow(id)
	refusals := []struct {
		name, method, body string
		headers            []string
		status             int
		problem            string
	}{
		{"not an admin", http.MethodPatch, `{"rate_limit": 9}`, as(clientKey), 403, "forbidden"},
		{"plain http elsewhere", http.MethodPatch, `{"url": "http://partner.example/hook"}`, nil, 422, "endpoint-scheme-not-https"},
		{"private address", http.MethodPatch, `{"url": "https://10.1.2.3/hook"}`, nil, 422, "endpoint-private-address"},
		{"metadata address", http.MethodPatch, `{"url": "https://169.254.169.254/"}`, nil, 422, "endpoint-metadata-address"},
		{"url removed", http.MethodPatch, `{"url": null}`, nil, 422, "validation-failed"},
		{"url not text", http.MethodPatch, `{"url": 7}`, nil, 400, "malformed-request"},
		{"no event types", http.MethodPatch, `{"event_types": []}`, nil, 422, "validation-failed"},
		{"bad event type", http.MethodPatch, `{"event_types": ["order created"]}`, nil, 422, "validation-failed"},
		{"rate limit 0", http.MethodPatch, `{"rate_limit": 0}`, nil, 422, "validation-failed"},
		{"rate limit too high", http.MethodPatch, `{"rate_limit": 10001}`, nil, 422, "validation-failed"},
		{"rate limit as text", http.MethodPatch, `{"rate_limit": "5"}`, nil, 422, "validation-failed"},
		{"unknown member", http.MethodPatch, `{"secret": "whsec_x"}`, nil, 400, "malformed-request"},
		{"no body", http.MethodPatch, ``, []string{"Content-Type", "application/json"}, 400, "malformed-request"},
		{"not JSON", http.MethodPatch, `url=x`, []string{"Content-Type", "text/plain"}, 415, "unsupported-media-type"},
		{"delete as a client", http.MethodDelete, ``, as(clientKey), 403, "forbidden"},
		{"read as a client", http.MethodGet, ``, as(clientKey), 403, "forbidden"},
	}
	for _, c := range refusals {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, "/v1/admin/endpoints/"+id, c.body, append(as(adminKey), c.headers...)...)
			mustStatus(t, r, c.status, c.problem)
			if after := e.endpointRow(id); after != before {
				t.Fatalf("a refused %s changed the endpoint: %s -> %s", c.method, before, after)
			}
		})
	}

	// A merge patch changes what it names and nothing else; null removes the limit.
	p := e.do(http.MethodPatch, "/v1/admin/endpoints/"+id, `{"event_types": ["order.cancelled", "order.fulfilled"], "rate_limit": null}`,
		append(as(adminKey), "Content-Type", "application/merge-patch+json")...)
	mustStatus(t, p, http.StatusOK, "")
	if o := p.json(t); fmt.Sprint(o["event_types"]) != "[order.cancelled order.fulfilled]" || o["rate_limit"] != nil || o["url"] != "http://127.0.0.1:9/hook" {
		t.Fatalf("patched endpoint %v", o)
	}
	var secretBefore, secretAfter string
	testenv.Must(t, e.sql.QueryRow(context.Background(), `SELECT secret FROM webhook_endpoints WHERE id = $1`, id).Scan(&secretBefore), "reading secret")
	mustStatus(t, e.admin(http.MethodPatch, "/v1/admin/endpoints/"+id, `{"url": "http://127.0.0.1:10/new-hook", "rate_limit": 20}`), http.StatusOK, "")
	var url string
	var limit *int
	testenv.Must(t, e.sql.QueryRow(context.Background(), `SELECT url, rate_limit, secret FROM webhook_endpoints WHERE id = $1`, id).Scan(&url, &limit, &secretAfter), "reading endpoint")
	if url != "http://127.0.0.1:10/new-hook" || limit == nil || *limit != 20 || secretAfter != secretBefore {
		t.Fatalf("after the patch: url %s limit %v, secret kept %v", url, limit, secretAfter == secretBefore)
	}

	// A pending delivery of the endpoint dies with it; its dead letter is no longer listed.
	_, err := e.sql.Exec(context.Background(), `INSERT INTO webhook_deliveries (event_id, endpoint_id, event_type, subject, payload)
		VALUES ('ev-pending', $1, 'order.cancelled', 'o-1', '{}')`, id)
	testenv.Must(t, err, "seeding a pending delivery")
	mustStatus(t, e.admin(http.MethodDelete, "/v1/admin/endpoints/"+id, ""), http.StatusNoContent, "")
	var deleted, disabled bool
	var state string
	testenv.Must(t, e.sql.QueryRow(context.Background(), `SELECT e.deleted_at IS NOT NULL, e.disabled_at IS NOT NULL, d.state
		FROM webhook_endpoints e JOIN webhook_deliveries d ON d.endpoint_id = e.id WHERE e.id = $1`, id).Scan(&deleted, &disabled, &state), "reading the deleted endpoint")
	if !deleted || !disabled || state != "dead" {
		t.Fatalf("deleted endpoint: deleted %v disabled %v, its pending delivery %s", deleted, disabled, state)
	}
	stats, err := e.db.DeliveryStats(context.Background())
	testenv.Must(t, err, "counting deliveries")
	if stats.Dead != 0 || stats.Pending != 0 {
		t.Fatalf("a deleted endpoint's deliveries still count: %+v", stats)
	}
	if l := e.admin(http.MethodGet, "/v1/admin/dead-letters", ""); string(l.body) != `{"data":[]}` {
		t.Fatalf("a deleted endpoint's dead letter is listed: %s", l.body)
	}
	if l := e.admin(http.MethodGet, "/v1/admin/endpoints", ""); strings.Contains(string(l.body), id) {
		t.Fatalf("a deleted endpoint is listed: %s", l.body)
	}
	gone := e.endpointRow(id)
	for _, c := range []struct{ method, path, body string }{
		{http.MethodGet, "", ""},
		{http.MethodPatch, "", `{"rate_limit": 1}`},
		{http.MethodDelete, "", ""},
		{http.MethodPost, "/enable", ""},
		{http.MethodPost, "/disable", ""},
		{http.MethodPost, "/rotate-secret", ""},
		{http.MethodPost, "/test", ""},
		{http.MethodPost, "/recover", `{"since": "2020-01-01T00:00:00Z"}`},
		{http.MethodGet, "/attempts", ""},
	} {
		mustStatus(t, e.admin(c.method, "/v1/admin/endpoints/"+id+c.path, c.body), http.StatusNotFound, "endpoint-not-found")
	}
	if after := e.endpointRow(id); after != gone {
		t.Fatalf("a request to a deleted endpoint changed it: %s -> %s", gone, after)
	}
	for _, path := range []string{"/v1/admin/endpoints/" + uuid.NewString(), "/v1/admin/endpoints/not-a-uuid"} {
		mustStatus(t, e.admin(http.MethodGet, path, ""), http.StatusNotFound, "endpoint-not-found")
		mustStatus(t, e.admin(http.MethodDelete, path, ""), http.StatusNotFound, "endpoint-not-found")
	}
	// The path exists for these methods; others are 405 with the right Allow.
	r := e.admin(http.MethodPut, "/v1/admin/endpoints/"+id, `{}`)
	mustStatus(t, r, http.StatusMethodNotAllowed, "method-not-allowed")
	if allow := r.header.Get("Allow"); allow != "GET, PATCH, DELETE" {
		t.Fatalf("Allow %q", allow)
	}
}

// TestRecoverDeadLettersSince queues again exactly the dead letters of one endpoint that died at
// or after the time given, in one call, and refuses while the endpoint is disabled.
func TestRecoverDeadLettersSince(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.asAPIRole()
	a := e.newEndpoint(`{"url": "http://127.0.0.1:9/a", "event_types": ["*"]}`)["id"].(string)
	b := e.newEndpoint(`{"url": "http://127.0.0.1:9/b", "event_types": ["*"]}`)["id"].(string)
	ctx := context.Background()
	since := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	seed := func(endpoint, event, state string, deadAt time.Time) {
		_, err := e.sql.Exec(ctx, `INSERT INTO webhook_deliveries (event_id, endpoint_id, event_type, subject, payload, state, attempts, dead_at)
			VALUES ($1, $2, 'order.created', 'o', '{}', $3, 18, CASE WHEN $3 = 'dead' THEN $4::timestamptz END)`, event, endpoint, state, deadAt)
		testenv.Must(t, err, "seeding a delivery")
	}
	seed(a, "a-before", "dead", since.Add(-time.Second))
	seed(a, "a-at", "dead", since)
	seed(a, "a-after", "dead", since.Add(time.Hour))
	seed(a, "a-done", "succeeded", since.Add(time.Hour))
	seed(b, "b-after", "dead", since.Add(time.Hour))
	states := func() string {
		rows, err := e.sql.Query(ctx, `SELECT event_id || ':' || state || ':' || attempts || ':' || replays FROM webhook_deliveries ORDER BY event_id`)
		testenv.Must(t, err, "reading deliveries")
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			testenv.Must(t, rows.Scan(&s), "reading deliveries")
			out = append(out, s)
		}
		return strings.Join(out, " ")
	}
	before := states()
	body := `{"since": "` + since.Format(time.RFC3339) + `"}`
	for _, c := range []struct {
		name, body string
		headers    []string
		status     int
		problem    string
	}{
		{"not an admin", body, as(clientKey), 403, "forbidden"},
		{"no since", `{}`, nil, 422, "validation-failed"},
		{"since not a time", `{"since": "yesterday"}`, nil, 422, "validation-failed"},
		{"unknown member", `{"since": "2026-03-01T12:00:00Z", "all": true}`, nil, 400, "malformed-request"},
	} {
		mustStatus(t, e.do(http.MethodPost, "/v1/admin/endpoints/"+a+"/recover", c.body, append(as(adminKey), c.headers...)...), c.status, c.problem)
	}
	mustStatus(t, e.admin(http.MethodPost, "/v1/admin/endpoints/"+a+"/disable", ""), http.StatusOK, "")
	mustStatus(t, e.admin(http.MethodPost, "/v1/admin/endpoints/"+a+"/recover", body), http.StatusConflict, "endpoint-disabled")
	if after := states(); after != before {
		t.Fatalf("refused recoveries changed deliveries:\n%s\n%s", before, after)
	}
	mustStatus(t, e.admin(http.MethodPost, "/v1/admin/endpoints/"+a+"/enable", ""), http.StatusOK, "")

	r := e.admin(http.MethodPost, "/v1/admin/endpoints/"+a+"/recover", body)
	mustStatus(t, r, http.StatusAccepted, "")
	if o := r.json(t); o["recovered"].(float64) != 2 || o["endpoint_id"] != a {
		t.Fatalf("recover answered %v, want 2 recovered", o)
	}
	want := "a-after:pending:0:1 a-at:pending:0:1 a-before:dead:18:0 a-done:succeeded:18:0 b-after:dead:18:0"
	if got := states(); got != want {
		t.Fatalf("after recovering since %s:\n got %s\nwant %s", since, got, want)
	}
	// Recovering again finds nothing dead: it queues nothing twice.
	if o := e.admin(http.MethodPost, "/v1/admin/endpoints/"+a+"/recover", body).json(t); o["recovered"].(float64) != 0 {
		t.Fatalf("second recovery answered %v", o)
	}
}

// TestAttemptsPerEndpointAndPerEvent pages through recorded attempts, newest first.
func TestAttemptsPerEndpointAndPerEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.asAPIRole()
	a := e.newEndpoint(`{"url": "http://127.0.0.1:9/a", "event_types": ["*"]}`)["id"].(string)
	b := e.newEndpoint(`{"url": "http://127.0.0.1:9/b", "event_types": ["*"]}`)["id"].(string)
	ctx := context.Background()
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	// ev-1 goes to both endpoints, ev-2 to a only; three attempts each.
	for _, d := range []struct{ event, endpoint string }{{"ev-1", a}, {"ev-1", b}, {"ev-2", a}} {
		_, err := e.sql.Exec(ctx, `WITH d AS (INSERT INTO webhook_deliveries (event_id, endpoint_id, event_type, subject, payload)
				VALUES ($1, $2, 'order.created', 'o', '{}') RETURNING id)
			INSERT INTO webhook_delivery_attempts (delivery_id, attempt, started_at, latency_ms, status, outcome, error)
			SELECT d.id, n, $3::timestamptz + n * interval '1 minute', 12.5, CASE WHEN n < 3 THEN 503 ELSE 200 END,
			       CASE WHEN n < 3 THEN 'http_5xx' ELSE 'success' END, CASE WHEN n < 3 THEN 'HTTP 503' END
			FROM d, generate_series(1, 3) AS n`, d.event, d.endpoint, start)
		testenv.Must(t, err, "seeding attempts")
	}
	type page struct {
		Data []struct {
			ID         int64   `json:"id"`
			EventID    string  `json:"event_id"`
			EndpointID string  `json:"endpoint_id"`
			Attempt    int     `json:"attempt"`
			Status     int     `json:"status"`
			Outcome    string  `json:"outcome"`
			LatencyMS  float64 `json:"latency_ms"`
		} `json:"data"`
		NextBefore int64  `json:"next_before"`
		Next       string `json:"next"`
	}
	read := func(path string) page {
		t.Helper()
		r := e.admin(http.MethodGet, path, "")
		mustStatus(t, r, http.StatusOK, "")
		var p page
		testenv.Must(t, json.Unmarshal(r.body, &p), "decoding attempts")
		return p
	}
	first := read("/v1/admin/endpoints/" + a + "/attempts?limit=4")
	if len(first.Data) != 4 || first.Next == "" || first.NextBefore != first.Data[3].ID {
		t.Fatalf("first page %+v", first)
	}
	rest := read(first.Next)
	if len(rest.Data) != 2 || rest.Next != "" {
		t.Fatalf("second page %+v", rest)
	}
	all := append(first.Data, rest.Data...)
	for i, x := range all {
		if x.EndpointID != a || (i > 0 && x.ID >= all[i-1].ID) {
			t.Fatalf("attempt %d of endpoint a: %+v (not newest first, or another endpoint's)", i, x)
		}
	}
	if all[0].EventID != "ev-2" || all[0].Attempt != 3 || all[0].Status != 200 || all[0].Outcome != "success" || all[0].LatencyMS != 12.5 {
		t.Fatalf("newest attempt %+v", all[0])
	}
	ev := read("/v1/admin/events/ev-1/attempts")
	if len(ev.Data) != 6 || ev.Data[0].EndpointID != b || ev.Data[5].EndpointID != a {
		t.Fatalf("attempts of ev-1: %+v", ev)
	}
	if none := e.admin(http.MethodGet, "/v1/admin/events/no-such-event/attempts", ""); string(none.body) != `{"data":[]}` {
		t.Fatalf("attempts of an unknown event: %s", none.body)
	}
	for _, q := range []string{"?limit=0", "?limit=501", "?limit=x", "?before=0", "?before=x"} {
		mustStatus(t, e.admin(http.MethodGet, "/v1/admin/endpoints/"+a+"/attempts"+q, ""), http.StatusUnprocessableEntity, "validation-failed")
		mustStatus(t, e.admin(http.MethodGet, "/v1/admin/events/ev-1/attempts"+q, ""), http.StatusUnprocessableEntity, "validation-failed")
	}
	mustStatus(t, e.do(http.MethodGet, "/v1/admin/events/ev-1/attempts", ""), http.StatusForbidden, "forbidden")
	mustStatus(t, e.admin(http.MethodGet, "/v1/admin/endpoints/"+uuid.NewString()+"/attempts", ""), http.StatusNotFound, "endpoint-not-found")
}

// startDeliverer runs a deliverer on a topic of its own, connected as orderflow_deliver, until
// the test ends.
func (e *env) startDeliverer(cfg deliver.Config) *deliver.Service {
	e.t.Helper()
	brokers := testenv.KafkaBrokers(e.t)
	topic := testenv.UniqueName("oflife")
	ctx := context.Background()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 20 * time.Second}
	ct, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}}})
	if err != nil || ct.Errors[topic] != nil {
		e.t.Fatalf("creating topic: %v %v", err, ct)
	}
	e.t.Cleanup(func() {
		_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	})
	db, err := postgres.Open(ctx, testenv.AsRole(e.t, e.dsn, "orderflow_deliver"), 10)
	testenv.Must(e.t, err, "opening the database as orderflow_deliver")
	e.t.Cleanup(db.Close)
	cfg.Brokers, cfg.Topic, cfg.GroupID = brokers, topic, testenv.UniqueName("oflife_group")
	cfg.Poll, cfg.Egress, cfg.Secrets = 50*time.Millisecond, loopbackOnly(e.t), e.ring
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	svc, err := deliver.New(cfg, db)
	testenv.Must(e.t, err, "creating deliverer")
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	e.t.Cleanup(func() { cancel(); <-done })
	return svc
}

// TestTestEventReachesTheEndpointSigned: a test event is a signed CloudEvent of type
// webhook.test that the deliverer sends to that one endpoint; its attempts are listed per event
// and per endpoint; a retried request with its Idempotency-Key queues it once; a disabled
// endpoint is refused.
func TestTestEventReachesTheEndpointSigned(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.asAPIRole()
	type received struct {
		id   string
		body []byte
		err  error
	}
	got := make(chan received, 10)
	var secret atomic.Value
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s, _ := secret.Load().(string)
		err := webhook.Verify([]string{s}, r.Header.Get(webhook.HeaderID), r.Header.Get(webhook.HeaderTimestamp),
			r.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute)
		got <- received{id: r.Header.Get(webhook.HeaderID), body: body, err: err}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(receiver.Close)
	// Subscribed to order.cancelled only: a test goes to the endpoint anyway.
	ep := e.newEndpoint(`{"url": "` + receiver.URL + `/hook", "event_types": ["order.cancelled"]}`)
	id := ep["id"].(string)
	secret.Store(ep["secret"].(string))
	other := e.newEndpoint(`{"url": "` + receiver.URL + `/other", "event_types": ["*"]}`)["id"].(string)

	key := uuid.NewString()
	r := e.do(http.MethodPost, "/v1/admin/endpoints/"+id+"/test", "", append(as(adminKey), "Idempotency-Key", key)...)
	mustStatus(t, r, http.StatusAccepted, "")
	queued := r.json(t)
	eventID := queued["event_id"].(string)
	if queued["state"] != "pending" || queued["event_type"] != "webhook.test" || queued["endpoint_id"] != id ||
		r.header.Get("Location") != "/v1/admin/events/"+eventID+"/attempts" {
		t.Fatalf("test answered %v, Location %q", queued, r.header.Get("Location"))
	}
	again := e.do(http.MethodPost, "/v1/admin/endpoints/"+id+"/test", "", append(as(adminKey), "Idempotency-Key", key)...)
	mustStatus(t, again, http.StatusAccepted, "")
	if again.header.Get("Idempotent-Replayed") != "true" || string(again.body) != string(r.body) {
		t.Fatalf("retried test answered %s %v", again.body, again.header)
	}
	if n := testenv.Count(t, e.sql, `SELECT count(*) FROM webhook_deliveries WHERE event_type = 'webhook.test'`); n != 1 {
		t.Fatalf("%d test deliveries after a retried request, want 1", n)
	}

	e.startDeliverer(deliver.Config{})
	select {
	case rec := <-got:
		if rec.err != nil || rec.id != eventID {
			t.Fatalf("the endpoint got webhook-id %q (want %s), signature: %v", rec.id, eventID, rec.err)
		}
		ev, err := orderflow.DecodeCloudEvent(rec.body)
		testenv.Must(t, err, "decoding the test event")
		var data orderflow.WebhookTestData
		testenv.Must(t, json.Unmarshal(ev.Data, &data), "decoding the test event's data")
		if ev.Type != orderflow.EventWebhookTest || ev.Subject != id || data.EndpointID != id ||
			ev.DataSchema != schemas.ID(orderflow.EventWebhookTest, 1) {
			t.Fatalf("test event %+v, data %+v", ev, data)
		}
		mustValidate(t, orderflow.EventWebhookTest, 1, ev.Data)
	case <-time.After(60 * time.Second):
		t.Fatal("the test event did not arrive within 60 s")
	}
	var page struct {
		Data []map[string]any `json:"data"`
	}
	for deadline := time.Now().Add(30 * time.Second); len(page.Data) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the test event's attempt was not recorded within 30 s")
		}
		l := e.admin(http.MethodGet, "/v1/admin/events/"+eventID+"/attempts", "")
		mustStatus(t, l, http.StatusOK, "")
		testenv.Must(t, json.Unmarshal(l.body, &page), "decoding attempts")
	}
	if a := page.Data[0]; a["outcome"] != "success" || a["status"].(float64) != 204 || a["endpoint_id"] != id {
		t.Fatalf("the test event's attempt %v", a)
	}
	if l := e.admin(http.MethodGet, "/v1/admin/endpoints/"+id+"/attempts", ""); !strings.Contains(string(l.body), eventID) {
		t.Fatalf("the endpoint's attempts lack the test: %s", l.body)
	}
	if n := testenv.Count(t, e.sql, `SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1`, other); n != 0 {
		t.Fatalf("the test went to another endpoint too (%d deliveries)", n)
	}

	// Disabled, or not an admin: refused, and nothing is queued.
	mustStatus(t, e.admin(http.MethodPost, "/v1/admin/endpoints/"+other+"/disable", ""), http.StatusOK, "")
	mustStatus(t, e.admin(http.MethodPost, "/v1/admin/endpoints/"+other+"/test", ""), http.StatusConflict, "endpoint-disabled")
	mustStatus(t, e.do(http.MethodPost, "/v1/admin/endpoints/"+id+"/test", ""), http.StatusForbidden, "forbidden")
	// The key of the first test, for a test of another endpoint: another request.
	mustStatus(t, e.do(http.MethodPost, "/v1/admin/endpoints/"+other+"/test", "", append(as(adminKey), "Idempotency-Key", key)...),
		http.StatusUnprocessableEntity, "idempotency-key-reused")
	if n := testenv.Count(t, e.sql, `SELECT count(*) FROM webhook_deliveries`); n != 1 {
		t.Fatalf("%d deliveries after refused tests, want the one test", n)
	}
}

// mustValidate checks data against the schema of eventType at version, formats asserted.
func mustValidate(tb testing.TB, eventType string, version int, data []byte) {
	tb.Helper()
	b, ok := schemas.Schema(eventType, version)
	if !ok {
		tb.Fatalf("no schema for %s v%d", eventType, version)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	testenv.Must(tb, err, "reading the schema")
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	id := schemas.ID(eventType, version)
	testenv.Must(tb, c.AddResource(id, doc), "adding the schema")
	s, err := c.Compile(id)
	testenv.Must(tb, err, "compiling the schema")
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	testenv.Must(tb, err, "reading the data")
	if err := s.Validate(v); err != nil {
		tb.Fatalf("%s does not validate against %s: %v", data, id, err)
	}
}

// TestAdminKeysTellNumbersApart: an Idempotency-Key reused for the same admin request with another
// number (a rate limit, a grace period) is another request, refused, not a replay of the first.
func TestAdminKeysTellNumbersApart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key := uuid.NewString()
	create := func(limit int) reply {
		return e.do(http.MethodPost, "/v1/admin/endpoints", fmt.Sprintf(`{"url": "http://127.0.0.1:9/h", "event_types": ["*"], "rate_limit": %d}`, limit),
			append(as(adminKey), "Idempotency-Key", key)...)
	}
	first := create(5)
	mustStatus(t, first, http.StatusCreated, "")
	mustStatus(t, create(50), http.StatusUnprocessableEntity, "idempotency-key-reused")
	if r := create(5); r.header.Get("Idempotent-Replayed") != "true" || string(r.body) != string(first.body) {
		t.Fatalf("the same request again answered %d %s", r.status, r.body)
	}
	id := first.json(t)["id"].(string)
	rotate := func(grace int) reply {
		return e.do(http.MethodPost, "/v1/admin/endpoints/"+id+"/rotate-secret", fmt.Sprintf(`{"grace_seconds": %d}`, grace),
			append(as(adminKey), "Idempotency-Key", "rotate-"+key)...)
	}
	mustStatus(t, rotate(3600), http.StatusOK, "")
	var expires time.Time
	testenv.Must(t, e.sql.QueryRow(context.Background(), `SELECT previous_secret_expires_at FROM webhook_endpoints WHERE id = $1`, id).Scan(&expires), "reading the rotation")
	mustStatus(t, rotate(60), http.StatusUnprocessableEntity, "idempotency-key-reused")
	var after time.Time
	testenv.Must(t, e.sql.QueryRow(context.Background(), `SELECT previous_secret_expires_at FROM webhook_endpoints WHERE id = $1`, id).Scan(&after), "reading the rotation")
	if n := e.count("webhook_endpoints"); n != 1 || !after.Equal(expires) {
		t.Fatalf("%d endpoints, grace end %v -> %v", n, expires, after)
	}
}

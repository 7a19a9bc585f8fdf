package api_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"orderflow/api"
	"orderflow/consumers/partner"
	"orderflow/internal/testenv"
	"orderflow/webhook"
)

// hostile is one request an attacker (or a broken client) might send, and the answer it must
// get: a 4xx problem of a specific type, never a 500 and never a write.
type hostile struct {
	name     string
	partner  bool // sent to the mock partner's hook, signed with its secret unless sign is false
	method   string
	path     string
	body     string
	headers  []string // name, value pairs; a value "" removes the header
	status   int
	problem  string
	unsigned bool
	hookID   string
}

// TestHostileInputsAreRefusedWithTheirProblemAndWriteNothing sends each hostile request to the
// API, its admin routes and the partner's hook, and checks its status and problem type, and
// that no table changed.
func TestHostileInputsAreRefusedWithTheirProblemAndWriteNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stock("sku-s", 100)
	order := e.createOrder("cust-h")
	ctx := context.Background()

	secret, err := webhook.NewSecret()
	testenv.Must(t, err, "making the partner's secret")
	p, err := partner.New(ctx, partner.Config{DatabaseURL: e.dsn, Secrets: []string{secret}, APIURL: e.url,
		APIKey: fulfillerKey, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	testenv.Must(t, err, "starting the partner")
	t.Cleanup(p.Close)
	hook := httptest.NewServer(p.Handler())
	t.Cleanup(hook.Close)
	// The API as deployed: no loopback allowlisted for webhook endpoints.
	strict := httptest.NewServer(api.New(e.db, slog.New(slog.NewTextHandler(io.Discard, nil)), api.WithSecrets(e.ring)))
	t.Cleanup(strict.Close)
	e.url = strict.URL

	admin := func(h ...string) []string { return append(as(adminKey), h...) }
	key := func(h ...string) []string { return append([]string{"Idempotency-Key", uuid.NewString()}, h...) }
	good := orderBody("cust-h", "sku-s", 1)
	event := func(typ, subject string) string {
		return `{"specversion":"1.0","id":"ev-1","source":"/orderflow/outbox","type":` + jsonString(typ) +
			`,"subject":` + jsonString(subject) + `,"time":"2026-01-01T00:00:00Z","datacontenttype":"application/json",` +
			`"schemaversion":1,"data":{"id":"o-1","version":1}}`
	}
	endpoint := func(url string, types string) string {
		return `{"url": ` + jsonString(url) + `, "event_types": ` + types + `}`
	}
	cases := []hostile{
		// Orders: bodies.
		{name: "raw NUL in customer_id", method: "POST", path: "/v1/orders", body: strings.Replace(good, "cust-h", "c\x00d", 1), headers: key(), status: 400, problem: "malformed-request"},
		{name: "escaped NUL in customer_id", method: "POST", path: "/v1/orders", body: strings.Replace(good, "cust-h", `c\u0000d`, 1), headers: key(), status: 422, problem: "validation-failed"},
		{name: "invalid UTF-8 in customer_id", method: "POST", path: "/v1/orders", body: strings.Replace(good, "cust-h", "c\xffd", 1), headers: key(), status: 422, problem: "validation-failed"},
		{name: "lone surrogate in sku", method: "POST", path: "/v1/orders", body: strings.Replace(good, `"sku-s"`, `"s\ud800"`, 1), headers: key(), status: 422, problem: "validation-failed"},
		{name: "NUL in sku", method: "POST", path: "/v1/orders", body: strings.Replace(good, `"sku-s"`, `"s\u0000"`, 1), headers: key(), status: 422, problem: "validation-failed"},
		{name: "customer_id of 65 characters", method: "POST", path: "/v1/orders", body: orderBody(strings.Repeat("c", 65), "sku-s", 1), headers: key(), status: 422, problem: "validation-failed"},
		{name: "quantity beyond int64", method: "POST", path: "/v1/orders", body: strings.Replace(good, `"quantity": 1`, `"quantity": 9223372036854775808`, 1), headers: key(), status: 422, problem: "validation-failed"},
		{name: "quantity 1e309", method: "POST", path: "/v1/orders", body: strings.Replace(good, `"quantity": 1`, `"quantity": 1e309`, 1), headers: key(), status: 422, problem: "validation-failed"},
		{name: "negative price", method: "POST", path: "/v1/orders", body: strings.Replace(good, `"unit_price_cents": 1250`, `"unit_price_cents": -1`, 1), headers: key(), status: 422, problem: "validation-failed"},
		{name: "currency not ISO 4217", method: "POST", path: "/v1/orders", body: strings.Replace(good, `"EUR"`, `"€UR"`, 1), headers: key(), status: 422, problem: "validation-failed"},
		{name: "101 items", method: "POST", path: "/v1/orders", body: `{"customer_id":"c","currency":"EUR","items":[` + strings.Repeat(`{"sku":"sku-s","quantity":1,"unit_price_cents":1},`, 100) + `{"sku":"sku-s","quantity":1,"unit_price_cents":1}]}`, headers: key(), status: 422, problem: "validation-failed"},
		{name: "customer_id as an object", method: "POST", path: "/v1/orders", body: strings.Replace(good, `"cust-h"`, `{"$gt": ""}`, 1), headers: key(), status: 400, problem: "malformed-request"},
		{name: "unknown field", method: "POST", path: "/v1/orders", body: strings.Replace(good, `{`, `{"client_id": "other",`, 1), headers: key(), status: 400, problem: "malformed-request"},
		{name: "two JSON values", method: "POST", path: "/v1/orders", body: good + good, headers: key(), status: 400, problem: "malformed-request"},
		{name: "not JSON", method: "POST", path: "/v1/orders", body: "customer_id=c", headers: key(), status: 400, problem: "malformed-request"},
		{name: "form content type", method: "POST", path: "/v1/orders", body: good, headers: key("Content-Type", "application/x-www-form-urlencoded"), status: 415, problem: "unsupported-media-type"},
		{name: "body over 1 MiB", method: "POST", path: "/v1/orders", body: `{"customer_id":"` + strings.Repeat("c", 1<<20) + `"}`, headers: key(), status: 413, problem: "request-too-large"},
		// Orders: headers.
		{name: "no Idempotency-Key", method: "POST", path: "/v1/orders", body: good, status: 400, problem: "idempotency-key-missing"},
		{name: "Idempotency-Key of 256 characters", method: "POST", path: "/v1/orders", body: good, headers: []string{"Idempotency-Key", strings.Repeat("k", 256)}, status: 400, problem: "idempotency-key-invalid"},
		{name: "Idempotency-Key not UTF-8", method: "POST", path: "/v1/orders", body: good, headers: []string{"Idempotency-Key", "k\xff"}, status: 400, problem: "idempotency-key-invalid"},
		{name: "no Authorization", method: "POST", path: "/v1/orders", body: good, headers: key("Authorization", ""), status: 401, problem: "unauthorized"},
		{name: "unknown key", method: "POST", path: "/v1/orders", body: good, headers: key("Authorization", "Bearer of_guessed"), status: 401, problem: "unauthorized"},
		{name: "basic auth", method: "POST", path: "/v1/orders", body: good, headers: key("Authorization", "Basic YWRtaW46YWRtaW4="), status: 401, problem: "unauthorized"},
		{name: "key with invalid UTF-8", method: "GET", path: "/v1/orders/" + order, headers: []string{"Authorization", "Bearer \xff\xfe"}, status: 401, problem: "unauthorized"},
		{name: "made-up method", method: "M1", path: "/v1/orders", body: good, headers: key(), status: 405, problem: "method-not-allowed"},
		// Order changes and reads.
		{name: "NUL in cancel reason", method: "POST", path: "/v1/orders/" + order + "/cancel", body: `{"reason": "a\u0000b"}`, headers: key(), status: 422, problem: "validation-failed"},
		{name: "invalid UTF-8 in cancel reason", method: "POST", path: "/v1/orders/" + order + "/cancel", body: "{\"reason\": \"a\xc3\"}", headers: key(), status: 422, problem: "validation-failed"},
		{name: "cancel reason of 501 characters", method: "POST", path: "/v1/orders/" + order + "/cancel", body: `{"reason": "` + strings.Repeat("r", 501) + `"}`, headers: key(), status: 422, problem: "validation-failed"},
		{name: "fulfill with a reason", method: "POST", path: "/v1/orders/" + order + "/fulfill", body: `{"reason": "x"}`, headers: key(), status: 422, problem: "validation-failed"},
		{name: "NUL as the order id", method: "POST", path: "/v1/orders/%00/cancel", headers: key(), status: 404, problem: "order-not-found"},
		{name: "SQL in the order id", method: "GET", path: "/v1/orders/1'%20OR%20'1'='1", status: 404, problem: "order-not-found"},
		{name: "another client's order", method: "POST", path: "/v1/orders/" + order + "/cancel", headers: key(as(otherKey)...), status: 404, problem: "order-not-found"},
		{name: "NUL in the customer id", method: "GET", path: "/v1/customers/c%00/orders", status: 422, problem: "validation-failed"},
		{name: "invalid UTF-8 in the customer id", method: "GET", path: "/v1/customers/c%ff/orders", status: 422, problem: "validation-failed"},
		{name: "forged cursor", method: "GET", path: "/v1/customers/c/orders?cursor=eyJ0IjoxfQ", status: 422, problem: "validation-failed"},
		{name: "cursor with NUL", method: "GET", path: "/v1/customers/c/orders?cursor=%00", status: 422, problem: "validation-failed"},
		{name: "limit beyond int64", method: "GET", path: "/v1/customers/c/orders?limit=99999999999999999999", status: 422, problem: "validation-failed"},
		// Admin routes.
		{name: "client key on an admin route", method: "POST", path: "/v1/admin/endpoints", body: endpoint("https://partner.example/h", `["*"]`), status: 403, problem: "forbidden"},
		{name: "endpoint at the metadata service", method: "POST", path: "/v1/admin/endpoints", body: endpoint("https://169.254.169.254/latest/meta-data/", `["*"]`), headers: admin(), status: 422, problem: "endpoint-metadata-address"},
		{name: "endpoint at decimal loopback", method: "POST", path: "/v1/admin/endpoints", body: endpoint("https://2130706433:5432/", `["*"]`), headers: admin(), status: 422, problem: "endpoint-private-address"},
		{name: "endpoint at mapped loopback", method: "POST", path: "/v1/admin/endpoints", body: endpoint("https://[::ffff:7f00:1]/", `["*"]`), headers: admin(), status: 422, problem: "endpoint-private-address"},
		{name: "endpoint over plain http", method: "POST", path: "/v1/admin/endpoints", body: endpoint("http://partner.example/h", `["*"]`), headers: admin(), status: 422, problem: "endpoint-scheme-not-https"},
		{name: "endpoint with credentials", method: "POST", path: "/v1/admin/endpoints", body: endpoint("https://u:p@partner.example/h", `["*"]`), headers: admin(), status: 422, problem: "endpoint-credentials-in-url"},
		{name: "endpoint file URL", method: "POST", path: "/v1/admin/endpoints", body: endpoint("file:///etc/passwd", `["*"]`), headers: admin(), status: 422, problem: "endpoint-invalid-url"},
		{name: "NUL in the endpoint URL", method: "POST", path: "/v1/admin/endpoints", body: endpoint("https://partner.example/\x00", `["*"]`), headers: admin(), status: 422, problem: "validation-failed"},
		{name: "NUL in an event type", method: "POST", path: "/v1/admin/endpoints", body: endpoint("https://partner.example/h", `["order\u0000created"]`), headers: admin(), status: 422, problem: "validation-failed"},
		{name: "21 event types", method: "POST", path: "/v1/admin/endpoints", body: endpoint("https://partner.example/h", `["a"`+strings.Repeat(`,"a"`, 20)+`]`), headers: admin(), status: 422, problem: "validation-failed"},
		{name: "admin Idempotency-Key too long", method: "POST", path: "/v1/admin/endpoints", body: endpoint("https://partner.example/h", `["*"]`), headers: admin("Idempotency-Key", strings.Repeat("k", 300)), status: 400, problem: "idempotency-key-invalid"},
		{name: "NUL in a disable reason", method: "POST", path: "/v1/admin/endpoints/" + uuid.NewString() + "/disable", body: `{"reason": "\u0000"}`, headers: admin(), status: 422, problem: "validation-failed"},
		{name: "rotation grace below zero", method: "POST", path: "/v1/admin/endpoints/" + uuid.NewString() + "/rotate-secret", body: `{"grace_seconds": -1}`, headers: admin(), status: 422, problem: "validation-failed"},
		{name: "endpoint id with NUL", method: "POST", path: "/v1/admin/endpoints/%00/enable", headers: admin(), status: 404, problem: "endpoint-not-found"},
		{name: "dead letters after garbage", method: "GET", path: "/v1/admin/dead-letters?after=%00", headers: admin(), status: 422, problem: "validation-failed"},
		{name: "dead letters limit 0", method: "GET", path: "/v1/admin/dead-letters?limit=0", headers: admin(), status: 422, problem: "validation-failed"},
		{name: "replay of a non-id", method: "POST", path: "/v1/admin/dead-letters/x'--/replay", headers: admin(), status: 404, problem: "dead-letter-not-found"},
		{name: "path traversal in an id", method: "POST", path: "/v1/admin/dead-letters/..%2f..%2fadmin/replay", headers: admin(), status: 404, problem: "not-found"},
		{name: "NUL in a SKU path", method: "PUT", path: "/v1/inventory/s%00", body: `{"stock": 1}`, headers: admin(), status: 422, problem: "validation-failed"},
		{name: "stock beyond the limit", method: "PUT", path: "/v1/inventory/sku-s", body: `{"stock": 1e13}`, headers: admin(), status: 422, problem: "validation-failed"},
		// The partner's hook.
		{name: "hook without a signature", partner: true, unsigned: true, method: "POST", path: "/partner-hook", body: event("order.created", "o-1"), status: 401, problem: "webhook-unverified"},
		{name: "hook with a forged signature", partner: true, unsigned: true, method: "POST", path: "/partner-hook", body: event("order.created", "o-1"),
			headers: []string{webhook.HeaderID, "ev-1", webhook.HeaderTimestamp, fmt.Sprint(time.Now().Unix()), webhook.HeaderSignature, "v1,AAAA"}, status: 401, problem: "webhook-unverified"},
		{name: "hook with a stale timestamp", partner: true, unsigned: true, method: "POST", path: "/partner-hook", body: event("order.created", "o-1"), status: 401, problem: "webhook-unverified"},
		{name: "hook id not UTF-8", partner: true, hookID: "ev-\xff", method: "POST", path: "/partner-hook", body: event("order.created", "o-1"), status: 400, problem: "webhook-id-invalid"},
		{name: "hook id of 300 bytes", partner: true, hookID: strings.Repeat("i", 300), method: "POST", path: "/partner-hook", body: event("order.created", "o-1"), status: 400, problem: "webhook-id-invalid"},
		{name: "hook body not JSON", partner: true, method: "POST", path: "/partner-hook", body: "<xml/>", status: 400, problem: "webhook-body-invalid"},
		{name: "hook event type with NUL", partner: true, method: "POST", path: "/partner-hook", body: event("order\x00created", "o-1"), status: 400, problem: "webhook-body-invalid"},
		{name: "hook subject not UTF-8", partner: true, method: "POST", path: "/partner-hook", body: strings.Replace(event("order.created", "o-1"), "o-1", "o-\xff", 1), status: 400, problem: "webhook-body-invalid"},
		{name: "hook body over 1 MiB", partner: true, method: "POST", path: "/partner-hook", body: strings.Repeat(" ", 1<<20+1), status: 413, problem: "request-too-large"},
	}
	if len(cases) < 40 {
		t.Fatalf("only %d hostile cases", len(cases))
	}

	tables := []string{"orders", "order_items", "outbox", "idempotency_keys", "webhook_endpoints", "webhook_deliveries",
		"api_clients", "partner.receipts", "partner.callbacks", "partner.faults"}
	snapshot := func() string {
		var b strings.Builder
		for _, tb := range tables {
			fmt.Fprintf(&b, "%s=%d ", tb, testenv.Count(t, e.sql, "SELECT count(*) FROM "+tb))
		}
		fmt.Fprintf(&b, "inventory=%d", testenv.Count(t, e.sql, "SELECT coalesce(sum(stock * 1000 + reserved), 0)::bigint FROM inventory"))
		return b.String()
	}
	first := snapshot()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := snapshot()
			base := e.url
			if c.partner {
				base = hook.URL
			}
			req, err := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
			testenv.Must(t, err, "building the request")
			if c.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			if !c.partner {
				req.Header.Set("Authorization", "Bearer "+clientKey)
			}
			if c.partner && !c.unsigned {
				id := c.hookID
				if id == "" {
					id = "ev-" + uuid.NewString()
				}
				now := time.Now()
				sig, err := webhook.SignatureHeader([]string{secret}, id, now, []byte(c.body))
				testenv.Must(t, err, "signing")
				req.Header.Set(webhook.HeaderID, id)
				req.Header.Set(webhook.HeaderTimestamp, fmt.Sprint(now.Unix()))
				req.Header.Set(webhook.HeaderSignature, sig)
			}
			if c.name == "hook with a stale timestamp" {
				old := time.Now().Add(-time.Hour)
				sig, _ := webhook.SignatureHeader([]string{secret}, "ev-1", old, []byte(c.body))
				req.Header.Set(webhook.HeaderID, "ev-1")
				req.Header.Set(webhook.HeaderTimestamp, fmt.Sprint(old.Unix()))
				req.Header.Set(webhook.HeaderSignature, sig)
			}
			for i := 0; i+1 < len(c.headers); i += 2 {
				if c.headers[i+1] == "" {
					req.Header.Del(c.headers[i])
					continue
				}
				req.Header.Set(c.headers[i], c.headers[i+1])
			}
			doc := e.doc
			if c.partner {
				doc = nil // the partner's hook is not part of the API
			}
			r := send(t, doc, req, c.body)
			mustStatus(t, r, c.status, c.problem)
			if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q, want application/problem+json", ct)
			}
			if after := snapshot(); after != before {
				t.Fatalf("the refused request wrote:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
	if last := snapshot(); last != first {
		t.Fatalf("hostile requests wrote:\nbefore %s\nafter  %s", first, last)
	}
}

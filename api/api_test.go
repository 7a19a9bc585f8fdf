package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"orderflow/api"
	"orderflow/internal/egress"
	"orderflow/internal/openapitest"
	"orderflow/internal/secretbox"
	"orderflow/internal/testenv"
	"orderflow/postgres"
)

const (
	clientKey    = "test-client-key"
	otherKey     = "test-other-client-key"
	fulfillerKey = "test-fulfiller-key"
	adminKey     = "test-admin-key"
)

// env is one test's API on its own fresh database.
type env struct {
	t    *testing.T
	url  string
	db   *postgres.DB
	sql  *pgx.Conn
	ring *secretbox.Ring
	api  *api.Server
	dsn  string
	// doc checks every exchange do makes against api/openapi.json; nil while url points at
	// something the document does not describe (the ops listener).
	doc *openapitest.Document
}

// newEnv starts the API on a fresh database. Its admission limit is far above what any test
// sends at once, so a slow shared machine never sheds a test's burst (shed_test.go sets its
// own); opts come after the defaults and override them.
func newEnv(t *testing.T, opts ...api.Option) *env {
	t.Helper()
	dsn := testenv.NewDatabase(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, dsn, 60)
	testenv.Must(t, err, "opening database")
	t.Cleanup(db.Close)
	c := testenv.Connect(t, dsn)
	_, err = c.Exec(ctx, `INSERT INTO api_clients (id, client_id, role, name, key_sha256) VALUES
		('k-client', 'client', 'client', 'test client', sha256($1::bytea)),
		('k-other', 'other', 'client', 'another client', sha256($2::bytea)),
		('k-partner', 'partner', 'fulfiller', 'the partner', sha256($3::bytea)),
		('k-admin', 'admin', 'admin', 'test admin', sha256($4::bytea))`,
		[]byte(clientKey), []byte(otherKey), []byte(fulfillerKey), []byte(adminKey))
	testenv.Must(t, err, "seeding api clients")
	ring := newRing(t)
	opts = append([]api.Option{api.WithSecrets(ring), api.WithEgress(loopbackOnly(t)), api.WithAdmission(10_000, 0, 0)}, opts...)
	a := api.New(db, slog.New(slog.NewTextHandler(io.Discard, nil)), opts...)
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return &env{t: t, url: srv.URL, db: db, sql: c, ring: ring, api: a, dsn: dsn, doc: mustDocument(t)}
}

// document is api/openapi.json, loaded and validated once for the package's tests.
var document = sync.OnceValues(func() (*openapitest.Document, error) {
	return openapitest.Load(context.Background(), api.OpenAPI())
})

func mustDocument(t testing.TB) *openapitest.Document {
	t.Helper()
	d, err := document()
	testenv.Must(t, err, "loading api/openapi.json")
	return d
}

// send makes one request and, when doc is set, fails t unless the exchange (request, status,
// headers, body; every problem+json too) is one the OpenAPI document describes. Every request
// the package's tests make to the API goes through here, so the document cannot drift from what
// the server does. It reports with Errorf, so tests may call it from several goroutines.
func send(t testing.TB, doc *openapitest.Document, req *http.Request, body string) reply {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if doc != nil {
		if err := doc.Check(context.Background(), req, []byte(body), resp, b); err != nil {
			t.Errorf("openapi.json disagrees with the server: %v\nbody: %s", err, b)
		}
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// newRing is a key ring with one fresh key, as WEBHOOK_KEYRING would give.
func newRing(t testing.TB) *secretbox.Ring {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	r, err := secretbox.Parse("test:" + base64.StdEncoding.EncodeToString(key))
	testenv.Must(t, err, "making a key ring")
	return r
}

// loopbackOnly lets tests register receivers on 127.0.0.1, as the local stack allows its
// partner; everything else follows the default policy.
func loopbackOnly(t testing.TB) egress.Policy {
	t.Helper()
	p, err := egress.NewPolicy("127.0.0.0/8", "::1")
	testenv.Must(t, err, "making the egress policy")
	return p
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not JSON: %v: %s", err, r.body)
	}
	return m
}

func (r reply) problemType() string {
	var p struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(r.body, &p)
	return strings.TrimPrefix(p.Type, api.ProblemTypeBase)
}

// do sends a request; headers are name, value pairs.
func (e *env) do(method, path, body string, headers ...string) reply {
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
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	return send(e.t, e.doc, req, body)
}

func (e *env) stock(sku string, n int) {
	e.t.Helper()
	r := e.do(http.MethodPut, "/v1/inventory/"+sku, fmt.Sprintf(`{"stock": %d}`, n), "Authorization", "Bearer "+adminKey)
	if r.status != http.StatusOK {
		e.t.Fatalf("stocking %s: %d %s", sku, r.status, r.body)
	}
}

func (e *env) count(table string) int64 {
	e.t.Helper()
	return testenv.Count(e.t, e.sql, "SELECT count(*) FROM "+table)
}

// rows is what a refusal must leave untouched.
func (e *env) rows() map[string]int64 {
	e.t.Helper()
	m := map[string]int64{}
	for _, t := range []string{"orders", "order_items", "outbox", "idempotency_keys"} {
		m[t] = e.count(t)
	}
	m["reserved"] = testenv.Count(e.t, e.sql, "SELECT coalesce(sum(reserved), 0)::bigint FROM inventory")
	return m
}

func (e *env) inventory(sku string) (stock, reserved int64) {
	e.t.Helper()
	err := e.sql.QueryRow(context.Background(), "SELECT stock, reserved FROM inventory WHERE sku = $1", sku).Scan(&stock, &reserved)
	testenv.Must(e.t, err, "reading inventory")
	return stock, reserved
}

func orderBody(customer, sku string, qty int) string {
	return fmt.Sprintf(`{"customer_id": %q, "currency": "EUR", "items": [{"sku": %q, "quantity": %d, "unit_price_cents": 1250}]}`, customer, sku, qty)
}

func (e *env) create(key, body string) reply {
	e.t.Helper()
	return e.do(http.MethodPost, "/v1/orders", body, "Idempotency-Key", key)
}

func mustStatus(t *testing.T, r reply, want int, problemType string) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d: %s", r.status, want, r.body)
	}
	if problemType != "" {
		if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("Content-Type %q, want application/problem+json", ct)
		}
		if got := r.problemType(); got != problemType {
			t.Fatalf("problem type %q, want %q: %s", got, problemType, r.body)
		}
	}
}

func TestCreateOrderWritesOrderItemsOutboxAndReservation(t *testing.T) {
	e := newEnv(t)
	e.stock("SKU-A", 10)
	e.stock("SKU-B", 5)
	r := e.create("k1", `{"customer_id": "cust-1", "currency": "EUR", "items": [
		{"sku": "SKU-A", "quantity": 2, "unit_price_cents": 1000},
		{"sku": "SKU-B", "quantity": 1, "unit_price_cents": 499},
		{"sku": "SKU-A", "quantity": 1, "unit_price_cents": 1000}]}`)
	mustStatus(t, r, http.StatusCreated, "")
	o := r.json(t)
	id := o["id"].(string)
	if loc := r.header.Get("Location"); loc != "/v1/orders/"+id {
		t.Fatalf("Location %q", loc)
	}
	if o["total_cents"].(float64) != 3499 || o["status"] != "pending" || o["version"].(float64) != 1 {
		t.Fatalf("order %v", o)
	}
	if s, res := e.inventory("SKU-A"); s != 10 || res != 3 {
		t.Fatalf("SKU-A stock %d reserved %d, want 10 and 3", s, res)
	}
	if s, res := e.inventory("SKU-B"); s != 5 || res != 1 {
		t.Fatalf("SKU-B stock %d reserved %d, want 5 and 1", s, res)
	}
	if n := e.count("order_items"); n != 3 {
		t.Fatalf("%d order items, want 3", n)
	}
	// The outbox row carries the order exactly as the API returned it.
	var evType, aggID string
	var payload []byte
	err := e.sql.QueryRow(context.Background(), "SELECT event_type, aggregate_id, payload FROM outbox").Scan(&evType, &aggID, &payload)
	testenv.Must(t, err, "reading outbox")
	var p map[string]any
	testenv.Must(t, json.Unmarshal(payload, &p), "decoding payload")
	if evType != "order.created" || aggID != id || fmt.Sprint(p) != fmt.Sprint(o) {
		t.Fatalf("outbox row %s %s %v, want order.created for %v", evType, aggID, p, o)
	}
	g := e.do(http.MethodGet, "/v1/orders/"+id, "")
	mustStatus(t, g, http.StatusOK, "")
	if !bytes.Equal(g.body, r.body) {
		t.Fatalf("GET returned\n%s\nPOST returned\n%s", g.body, r.body)
	}
}

func TestIdempotencyReplayAndReuse(t *testing.T) {
	e := newEnv(t)
	e.stock("SKU-A", 10)
	first := e.create("key-1", orderBody("c1", "SKU-A", 2))
	mustStatus(t, first, http.StatusCreated, "")
	before := e.rows()

	// Same request, formatted differently: the stored answer, byte for byte.
	replay := e.create("key-1", `{"items":[{"unit_price_cents":1250,"quantity":2,"sku":"SKU-A"}],"currency":"EUR","customer_id":"c1"}`)
	mustStatus(t, replay, http.StatusCreated, "")
	if replay.header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(replay.body, first.body) ||
		replay.header.Get("Location") != first.header.Get("Location") {
		t.Fatalf("replay %d %v %s, want the first answer with Idempotent-Replayed", replay.status, replay.header, replay.body)
	}
	if first.header.Get("Idempotent-Replayed") != "" {
		t.Fatal("first answer marked as replayed")
	}

	// Same key, other body: refused, nothing written.
	reuse := e.create("key-1", orderBody("c1", "SKU-A", 3))
	mustStatus(t, reuse, http.StatusUnprocessableEntity, "idempotency-key-reused")
	// Same key, other route: also another request.
	id := first.json(t)["id"].(string)
	mustStatus(t, e.do(http.MethodPost, "/v1/orders/"+id+"/cancel", "", "Idempotency-Key", "key-1"),
		http.StatusUnprocessableEntity, "idempotency-key-reused")
	if after := e.rows(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("rows changed by replay or reuse: before %v after %v", before, after)
	}

	// Keys are per client: another client may use the same key for its own order.
	other := e.do(http.MethodPost, "/v1/orders", orderBody("c1", "SKU-A", 2), "Idempotency-Key", "key-1", "Authorization", "Bearer "+otherKey)
	mustStatus(t, other, http.StatusCreated, "")
	if other.header.Get("Idempotent-Replayed") != "" || e.count("orders") != 2 {
		t.Fatal("another client's key was treated as a replay")
	}
}

func TestInsufficientStockIsStoredAndReplayed(t *testing.T) {
	e := newEnv(t)
	e.stock("SKU-A", 3)
	e.stock("SKU-B", 100)
	body := `{"customer_id": "c", "currency": "EUR", "items": [
		{"sku": "SKU-B", "quantity": 5, "unit_price_cents": 1}, {"sku": "SKU-A", "quantity": 4, "unit_price_cents": 1}]}`
	r := e.create("k-short", body)
	mustStatus(t, r, http.StatusConflict, "insufficient-stock")
	if skus := r.json(t)["skus"]; fmt.Sprint(skus) != "[SKU-A]" {
		t.Fatalf("skus %v, want [SKU-A]", skus)
	}
	// Nothing reserved, no order, no event; the key holds the 409.
	for _, sku := range []string{"SKU-A", "SKU-B"} {
		if _, res := e.inventory(sku); res != 0 {
			t.Fatalf("%s reserved %d after a refused order", sku, res)
		}
	}
	if e.count("orders")+e.count("outbox")+e.count("order_items") != 0 {
		t.Fatal("a refused order left rows")
	}
	// Even once stock arrives, the key answers what it answered.
	e.stock("SKU-A", 50)
	replay := e.create("k-short", body)
	mustStatus(t, replay, http.StatusConflict, "insufficient-stock")
	if replay.header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(replay.body, r.body) {
		t.Fatalf("replay of the 409: %v %s", replay.header, replay.body)
	}
	if e.count("orders") != 0 {
		t.Fatal("replay of a 409 created an order")
	}
	// An unknown SKU is simply out of stock.
	mustStatus(t, e.create("k-unknown", orderBody("c", "NO-SUCH-SKU", 1)), http.StatusConflict, "insufficient-stock")
}

func TestValidationFailureIsNotStored(t *testing.T) {
	e := newEnv(t)
	e.stock("SKU-A", 10)
	bad := e.create("k-fix", `{"customer_id": "c", "currency": "EURO", "items": [{"sku": "SKU-A", "quantity": 1, "unit_price_cents": 5}]}`)
	mustStatus(t, bad, http.StatusUnprocessableEntity, "validation-failed")
	if e.count("idempotency_keys") != 0 {
		t.Fatal("a validation failure was stored under the key")
	}
	good := e.create("k-fix", orderBody("c", "SKU-A", 1))
	mustStatus(t, good, http.StatusCreated, "")
	if good.header.Get("Idempotent-Replayed") != "" || e.count("orders") != 1 {
		t.Fatal("the corrected retry did not run as new")
	}
}

func TestExpiredKeyIsPurgedThenNew(t *testing.T) {
	e := newEnv(t)
	e.stock("SKU-A", 10)
	mustStatus(t, e.create("k-old", orderBody("c", "SKU-A", 1)), http.StatusCreated, "")
	mustStatus(t, e.create("k-live", orderBody("c", "SKU-A", 1)), http.StatusCreated, "")
	ctx := context.Background()
	_, err := e.sql.Exec(ctx, "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'k-old'")
	testenv.Must(t, err, "ageing key")

	// Expired but not yet purged: taken over as new.
	again := e.create("k-old", orderBody("c", "SKU-A", 1))
	mustStatus(t, again, http.StatusCreated, "")
	if again.header.Get("Idempotent-Replayed") != "" || e.count("orders") != 3 {
		t.Fatal("an expired key was replayed")
	}

	_, err = e.sql.Exec(ctx, "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'k-old'")
	testenv.Must(t, err, "ageing key")
	n, err := e.db.PurgeExpiredKeys(ctx)
	testenv.Must(t, err, "purging")
	if n != 1 || testenv.Count(t, e.sql, "SELECT count(*) FROM idempotency_keys WHERE key = 'k-live'") != 1 {
		t.Fatalf("purged %d keys, want exactly the expired one", n)
	}
	third := e.create("k-old", orderBody("c", "SKU-A", 1))
	mustStatus(t, third, http.StatusCreated, "")
	if third.header.Get("Idempotent-Replayed") != "" || e.count("orders") != 4 {
		t.Fatal("a purged key was not treated as new")
	}
}

func TestConcurrentRequestsWithOneKeyCreateOneOrder(t *testing.T) {
	e := newEnv(t)
	e.stock("SKU-A", 1000)
	const n = 50
	replies := make([]reply, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			replies[i] = e.create("same-key", orderBody("c", "SKU-A", 3))
		}()
	}
	close(start)
	wg.Wait()
	replayed := 0
	for i, r := range replies {
		if r.status != http.StatusCreated || !bytes.Equal(r.body, replies[0].body) {
			t.Fatalf("reply %d: %d %s, want the same 201 as reply 0: %s", i, r.status, r.body, replies[0].body)
		}
		if r.header.Get("Idempotent-Replayed") == "true" {
			replayed++
		}
	}
	if replayed != n-1 {
		t.Fatalf("%d replays, want %d", replayed, n-1)
	}
	if o, ev := e.count("orders"), e.count("outbox"); o != 1 || ev != 1 {
		t.Fatalf("%d orders and %d outbox rows, want 1 and 1", o, ev)
	}
	if _, res := e.inventory("SKU-A"); res != 3 {
		t.Fatalf("reserved %d, want 3", res)
	}
}

func TestRaceForTheLastUnits(t *testing.T) {
	e := newEnv(t)
	e.stock("LAST", 10)
	const n = 50
	statuses := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			statuses[i] = e.create(fmt.Sprintf("race-%d", i), orderBody(fmt.Sprintf("c%d", i), "LAST", 1)).status
		}()
	}
	close(start)
	wg.Wait()
	created, refused := 0, 0
	for i, s := range statuses {
		switch s {
		case http.StatusCreated:
			created++
		case http.StatusConflict:
			refused++
		default:
			t.Fatalf("request %d answered %d", i, s)
		}
	}
	if created != 10 || refused != 40 {
		t.Fatalf("%d created and %d refused, want 10 and 40", created, refused)
	}
	stock, reserved := e.inventory("LAST")
	open := testenv.Count(t, e.sql, `SELECT coalesce(sum(i.quantity), 0)::bigint FROM order_items i
		JOIN orders o ON o.id = i.order_id WHERE o.status = 'pending' AND i.sku = 'LAST'`)
	if stock != 10 || reserved != 10 || open != 10 || e.count("orders") != 10 || e.count("outbox") != 10 {
		t.Fatalf("stock %d reserved %d open %d orders %d events %d", stock, reserved, open, e.count("orders"), e.count("outbox"))
	}
}

func TestRefusalsWriteNothing(t *testing.T) {
	e := newEnv(t)
	e.stock("SKU-A", 10)
	valid := orderBody("c", "SKU-A", 1)
	items := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = `{"sku": "SKU-A", "quantity": 1, "unit_price_cents": 1}`
		}
		return `{"customer_id": "c", "currency": "EUR", "items": [` + strings.Join(parts, ",") + `]}`
	}
	cases := []struct {
		name    string
		body    string
		headers []string
		status  int
		problem string
	}{
		{"no key", valid, []string{"Idempotency-Key", ""}, 400, "idempotency-key-missing"},
		{"blank key", valid, []string{"Idempotency-Key", "   "}, 400, "idempotency-key-missing"},
		{"key too long", valid, []string{"Idempotency-Key", strings.Repeat("k", 256)}, 400, "idempotency-key-invalid"},
		{"no credentials", valid, []string{"Authorization", ""}, 401, "unauthorized"},
		{"unknown key", valid, []string{"Authorization", "Bearer nope"}, 401, "unauthorized"},
		{"not json", valid, []string{"Content-Type", "text/plain"}, 415, "unsupported-media-type"},
		{"too large", `{"customer_id": "` + strings.Repeat("x", api.MaxBodyBytes) + `"}`, nil, 413, "request-too-large"},
		{"empty body", "", []string{"Content-Type", "application/json"}, 400, "malformed-request"},
		{"malformed", `{"customer_id": "c",`, nil, 400, "malformed-request"},
		{"trailing data", valid + ` {}`, nil, 400, "malformed-request"},
		{"unknown field", `{"customer_id": "c", "currency": "EUR", "items": [], "coupon": "X"}`, nil, 400, "malformed-request"},
		{"wrong type", `{"customer_id": 7, "currency": "EUR", "items": []}`, nil, 400, "malformed-request"},
		{"no items", `{"customer_id": "c", "currency": "EUR", "items": []}`, nil, 422, "validation-failed"},
		{"101 items", items(101), nil, 422, "validation-failed"},
		{"bad currency", `{"customer_id": "c", "currency": "eur", "items": [{"sku": "SKU-A", "quantity": 1, "unit_price_cents": 1}]}`, nil, 422, "validation-failed"},
		{"empty customer", `{"customer_id": "", "currency": "EUR", "items": [{"sku": "SKU-A", "quantity": 1, "unit_price_cents": 1}]}`, nil, 422, "validation-failed"},
		{"long sku", orderBody("c", strings.Repeat("S", 65), 1), nil, 422, "validation-failed"},
		{"zero quantity", orderBody("c", "SKU-A", 0), nil, 422, "validation-failed"},
		{"quantity too big", orderBody("c", "SKU-A", 10001), nil, 422, "validation-failed"},
		{"fractional quantity", `{"customer_id": "c", "currency": "EUR", "items": [{"sku": "SKU-A", "quantity": 1.5, "unit_price_cents": 1}]}`, nil, 422, "validation-failed"},
		{"quantity as string", `{"customer_id": "c", "currency": "EUR", "items": [{"sku": "SKU-A", "quantity": "1", "unit_price_cents": 1}]}`, nil, 422, "validation-failed"},
		{"price beyond int64", `{"customer_id": "c", "currency": "EUR", "items": [{"sku": "SKU-A", "quantity": 1, "unit_price_cents": 99999999999999999999}]}`, nil, 422, "validation-failed"},
		{"negative price", `{"customer_id": "c", "currency": "EUR", "items": [{"sku": "SKU-A", "quantity": 1, "unit_price_cents": -1}]}`, nil, 422, "validation-failed"},
		{"sku over 10000 units in total", `{"customer_id": "c", "currency": "EUR", "items": [{"sku": "SKU-A", "quantity": 6000, "unit_price_cents": 1}, {"sku": "SKU-A", "quantity": 6000, "unit_price_cents": 1}]}`, nil, 422, "validation-failed"},
	}
	before := e.rows()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hs := append([]string{"Idempotency-Key", "refusal-" + c.name}, c.headers...)
			r := e.do(http.MethodPost, "/v1/orders", c.body, hs...)
			mustStatus(t, r, c.status, c.problem)
			p := r.json(t)
			if p["status"].(float64) != float64(c.status) || p["title"] == "" {
				t.Fatalf("problem body %s", r.body)
			}
			if c.status == 422 && c.problem == "validation-failed" && len(p["errors"].([]any)) == 0 {
				t.Fatalf("422 without field errors: %s", r.body)
			}
			if after := e.rows(); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("rows changed: before %v after %v", before, after)
			}
		})
	}
}

func TestCancelAndFulfill(t *testing.T) {
	e := newEnv(t)
	e.stock("SKU-A", 10)
	a := e.create("a", orderBody("c", "SKU-A", 4)).json(t)["id"].(string)
	b := e.create("b", orderBody("c", "SKU-A", 3)).json(t)["id"].(string)
	if _, res := e.inventory("SKU-A"); res != 7 {
		t.Fatalf("reserved %d, want 7", res)
	}

	c1 := e.do(http.MethodPost, "/v1/orders/"+a+"/cancel", `{"reason": "customer changed mind"}`, "Idempotency-Key", "cancel-a")
	mustStatus(t, c1, http.StatusOK, "")
	if o := c1.json(t); o["status"] != "cancelled" || o["version"].(float64) != 2 || o["cancel_reason"] != "customer changed mind" {
		t.Fatalf("cancelled order %v", o)
	}
	if s, res := e.inventory("SKU-A"); s != 10 || res != 3 {
		t.Fatalf("after cancel stock %d reserved %d, want 10 and 3", s, res)
	}
	// Twice with the same key: a replay. With another key: the order is already cancelled.
	c2 := e.do(http.MethodPost, "/v1/orders/"+a+"/cancel", `{"reason": "customer changed mind"}`, "Idempotency-Key", "cancel-a")
	mustStatus(t, c2, http.StatusOK, "")
	if c2.header.Get("Idempotent-Replayed") != "true" {
		t.Fatal("second cancel was not a replay")
	}
	mustStatus(t, e.do(http.MethodPost, "/v1/orders/"+a+"/cancel", "", "Idempotency-Key", "cancel-a-again"), http.StatusOK, "")

	f1 := e.do(http.MethodPost, "/v1/orders/"+b+"/fulfill", "", "Idempotency-Key", "fulfill-b")
	mustStatus(t, f1, http.StatusOK, "")
	mustStatus(t, e.do(http.MethodPost, "/v1/orders/"+b+"/fulfill", "", "Idempotency-Key", "fulfill-b"), http.StatusOK, "")
	mustStatus(t, e.do(http.MethodPost, "/v1/orders/"+b+"/fulfill", "{}", "Idempotency-Key", "fulfill-b-again"), http.StatusOK, "")
	if s, res := e.inventory("SKU-A"); s != 7 || res != 0 {
		t.Fatalf("after fulfill stock %d reserved %d, want 7 and 0", s, res)
	}
	events := testenv.Count(t, e.sql, "SELECT count(*) FROM outbox WHERE event_type IN ('order.cancelled', 'order.fulfilled')")
	if events != 2 {
		t.Fatalf("%d cancel/fulfill events, want exactly 2", events)
	}

	// Illegal transitions are refused and change nothing.
	before := e.rows()
	mustStatus(t, e.do(http.MethodPost, "/v1/orders/"+b+"/cancel", "", "Idempotency-Key", "cancel-b"), http.StatusConflict, "invalid-transition")
	mustStatus(t, e.do(http.MethodPost, "/v1/orders/"+a+"/fulfill", "", "Idempotency-Key", "fulfill-a"), http.StatusConflict, "invalid-transition")
	after := e.rows()
	before["idempotency_keys"] += 2 // the two refusals are stored, so their replays answer the same
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("rows changed by refused transitions: %v -> %v", before, after)
	}
	var status string
	testenv.Must(t, e.sql.QueryRow(context.Background(), "SELECT status FROM orders WHERE id = $1", b).Scan(&status), "reading order")
	if status != "fulfilled" {
		t.Fatalf("order b is %s", status)
	}
	mustStatus(t, e.do(http.MethodPost, "/v1/orders/00000000-0000-0000-0000-000000000000/cancel", "", "Idempotency-Key", "x"), http.StatusNotFound, "order-not-found")
	mustStatus(t, e.do(http.MethodGet, "/v1/orders/not-a-uuid", ""), http.StatusNotFound, "order-not-found")
}

// TestConcurrentChangesOfOneOrderApplyOnce: cancels and fulfills of one order with keys of
// their own, all at once, change it once: the first to commit wins, the others find it
// changed (those that read it pending before that commit take the step-by-step way) and
// answer the no-op or the invalid transition. One event, and the stock moved once.
func TestConcurrentChangesOfOneOrderApplyOnce(t *testing.T) {
	e := newEnv(t)
	e.stock("SKU-A", 100)
	for round := range 5 {
		id := e.create(fmt.Sprintf("order-%d", round), orderBody("c", "SKU-A", 2)).json(t)["id"].(string)
		const n = 16
		replies := make([]reply, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			action := []string{"cancel", "fulfill"}[i%2]
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				replies[i] = e.do(http.MethodPost, "/v1/orders/"+id+"/"+action, "", "Idempotency-Key", fmt.Sprintf("%s-%d-%d", action, round, i))
			}()
		}
		close(start)
		wg.Wait()
		var status string
		testenv.Must(t, e.sql.QueryRow(context.Background(), "SELECT status FROM orders WHERE id = $1", id).Scan(&status), "reading order")
		for i, r := range replies {
			action := []string{"cancelled", "fulfilled"}[i%2]
			switch {
			case action == status && r.status == http.StatusOK && r.json(t)["status"] == status && r.json(t)["version"].(float64) == 2:
			case action != status && r.status == http.StatusConflict:
			default:
				t.Fatalf("round %d reply %d (%s): %d %s; the order is %s", round, i, action, r.status, r.body, status)
			}
		}
		events := testenv.Count(t, e.sql, "SELECT count(*) FROM outbox WHERE aggregate_id = '"+id+"' AND event_type <> 'order.created'")
		if events != 1 {
			t.Fatalf("round %d: %d change events for one order, want 1", round, events)
		}
		keys := testenv.Count(t, e.sql, fmt.Sprintf("SELECT count(*) FROM idempotency_keys WHERE key LIKE '%%-%d-%%' AND state = 'done'", round))
		if keys != n {
			t.Fatalf("round %d: %d answered keys, want %d", round, keys, n)
		}
	}
	// Five orders of 2 units: what was fulfilled left the stock, nothing stays reserved.
	fulfilled := testenv.Count(t, e.sql, "SELECT count(*) FROM orders WHERE status = 'fulfilled'")
	if s, res := e.inventory("SKU-A"); s != 100-2*fulfilled || res != 0 {
		t.Fatalf("stock %d reserved %d after %d fulfilled, want %d and 0", s, res, fulfilled, 100-2*fulfilled)
	}
}

func TestInventoryNeedsAdminAndRespectsReservations(t *testing.T) {
	e := newEnv(t)
	mustStatus(t, e.do(http.MethodPut, "/v1/inventory/SKU-A", `{"stock": 5}`), http.StatusForbidden, "forbidden")
	if e.count("inventory") != 0 {
		t.Fatal("a non-admin set stock")
	}
	e.stock("SKU-A", 5)
	mustStatus(t, e.create("k", orderBody("c", "SKU-A", 4)), http.StatusCreated, "")
	admin := []string{"Authorization", "Bearer " + adminKey}
	mustStatus(t, e.do(http.MethodPut, "/v1/inventory/SKU-A", `{"stock": 3}`, admin...), http.StatusConflict, "stock-below-reserved")
	mustStatus(t, e.do(http.MethodPut, "/v1/inventory/SKU-A", `{"stock": -1}`, admin...), http.StatusUnprocessableEntity, "validation-failed")
	if s, res := e.inventory("SKU-A"); s != 5 || res != 4 {
		t.Fatalf("stock %d reserved %d, want 5 and 4", s, res)
	}
}

func TestHealthReadinessAndMetrics(t *testing.T) {
	e := newEnv(t)
	e.stock("SKU-A", 5)
	mustStatus(t, e.create("m1", orderBody("c", "SKU-A", 1)), http.StatusCreated, "")
	mustStatus(t, e.create("m1", orderBody("c", "SKU-A", 1)), http.StatusCreated, "")
	mustStatus(t, e.do(http.MethodGet, "/healthz", ""), http.StatusOK, "")
	mustStatus(t, e.do(http.MethodGet, "/readyz", ""), http.StatusOK, "")
	mustStatus(t, e.do(http.MethodGet, "/nope", ""), http.StatusNotFound, "not-found")
	// Metrics are for operators, on the ops listener; the public one does not serve them.
	mustStatus(t, e.do(http.MethodGet, "/metrics", ""), http.StatusNotFound, "not-found")
	ops := httptest.NewServer(e.api.OpsHandler())
	t.Cleanup(ops.Close)
	// The ops listener is not the public API the document describes.
	e.url, e.doc = ops.URL, nil
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := e.do(http.MethodGet, p, ""); r.status != http.StatusOK {
			t.Errorf("ops %s: %d", p, r.status)
		}
	}
	m := e.do(http.MethodGet, "/metrics", "")
	if m.status != http.StatusOK {
		t.Fatalf("ops /metrics: %d", m.status)
	}
	for _, want := range []string{
		`orderflow_api_request_duration_seconds_count{method="POST",route="/v1/orders",status="201"} 2`,
		`orderflow_api_orders_created_total 1`,
		`orderflow_api_idempotent_replays_total 1`,
	} {
		if !bytes.Contains(m.body, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Raw paths never become labels.
	if bytes.Contains(m.body, []byte(`route="/v1/inventory/SKU-A"`)) {
		t.Error("a raw path is used as a metric label")
	}
}

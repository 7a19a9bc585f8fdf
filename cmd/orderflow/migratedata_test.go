package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"orderflow/api"
	"orderflow/internal/testenv"
	"orderflow/postgres"
)

// TestMigrateDataCustomerTierWhileOrdersAreWritten is the schema-evolution example done while
// the pipeline runs: orders written before customer_tier existed (NULL) are given the tier
// standard in batches, with a progress line per batch, while clients keep creating and
// cancelling orders through the API (as orderflow_api) without one refusal; then the column is
// NOT NULL and its check validated. A second run has nothing to do.
func TestMigrateDataCustomerTierWhileOrdersAreWritten(t *testing.T) {
	t.Parallel()
	dsn := testenv.NewDatabase(t)
	ctx := context.Background()
	owner := testenv.Connect(t, dsn)
	const old = 2000
	_, err := owner.Exec(ctx, `
		INSERT INTO inventory (sku, stock) VALUES ('sku-m', 1000000);
		INSERT INTO api_clients (id, client_id, role, name, key_sha256) VALUES ('k', 'client', 'client', 'c', sha256('migrate-key'::bytea));
		INSERT INTO orders (id, client_id, customer_id, currency, status, total_cents, version, created_at, updated_at, customer_tier)
		SELECT gen_random_uuid(), 'client', 'cust-' || n, 'EUR', 'pending', 100, 1, now(), now(), NULL
		FROM generate_series(1, 2000) AS n`)
	testenv.Must(t, err, "seeding orders from before tiers")

	apiDB, err := postgres.Open(ctx, testenv.AsRole(t, dsn, "orderflow_api"), 10)
	testenv.Must(t, err, "opening the database as orderflow_api")
	defer apiDB.Close()
	srv := httptest.NewServer(api.New(apiDB, slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer srv.Close()
	post := func(path, body string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer migrate-key")
		req.Header.Set("Idempotency-Key", uuid.NewString())
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}

	// Clients keep writing for the whole run: creates with and without a tier, and cancels.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var written, failed atomic.Int64
	var failures sync.Map
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				tier := ""
				if i%2 == 0 {
					tier = `"customer_tier": "gold", `
				}
				status, o := post("/v1/orders", fmt.Sprintf(`{%s"customer_id": "live-%d", "currency": "EUR", "items": [{"sku": "sku-m", "quantity": 1, "unit_price_cents": 5}]}`, tier, w))
				if status != http.StatusCreated {
					failed.Add(1)
					failures.Store(status, o)
					continue
				}
				written.Add(1)
				if i%3 == 0 {
					if status, o := post("/v1/orders/"+o["id"].(string)+"/cancel", ""); status != http.StatusOK {
						failed.Add(1)
						failures.Store(status, o)
					}
				}
			}
		}()
	}
	getenv := func(k string) string {
		if k == "DATABASE_URL" {
			return dsn
		}
		return ""
	}
	var stdout, stderr bytes.Buffer
	runErr := run(ctx, []string{"migrate-data", "-batch-size", "150", "-pause", "5ms", "customer-tier"}, getenv, &stdout, &stderr)
	close(stop)
	wg.Wait()
	if runErr != nil {
		t.Fatalf("migrate-data: %v\n%s", runErr, stderr.String())
	}
	if failed.Load() != 0 {
		failures.Range(func(k, v any) bool { t.Logf("%v: %v", k, v); return true })
		t.Fatalf("%d API requests failed during the migration", failed.Load())
	}
	if written.Load() == 0 {
		t.Fatal("no order was written during the migration: the test proved nothing")
	}
	t.Logf("%d orders created through the API during the migration, none refused; %s", written.Load(), strings.TrimSpace(stdout.String()))
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) < old/150 || !strings.HasPrefix(lines[len(lines)-1], fmt.Sprintf("customer-tier: %d/%d orders (100%%)", old, old)) {
		t.Fatalf("progress %q, want a line per batch ending at 100%%", stderr.String())
	}
	if !strings.Contains(stdout.String(), fmt.Sprintf("customer-tier: %d orders given the tier standard", old)) ||
		!strings.Contains(stdout.String(), "NOT NULL") {
		t.Fatalf("stdout %q", stdout.String())
	}
	var nulls, gold, standardLive int64
	var notNull, validated, helperGone bool
	testenv.Must(t, owner.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM orders WHERE customer_tier IS NULL),
			(SELECT count(*) FROM orders WHERE customer_tier = 'gold'),
			(SELECT count(*) FROM orders WHERE customer_id LIKE 'live-%' AND customer_tier = 'standard'),
			(SELECT attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'customer_tier'),
			(SELECT convalidated FROM pg_constraint WHERE conname = 'orders_customer_tier_known'),
			NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'orders_customer_tier_present')`).
		Scan(&nulls, &gold, &standardLive, &notNull, &validated, &helperGone), "reading the result")
	if nulls != 0 || !notNull || !validated || !helperGone {
		t.Fatalf("after the migration: %d NULL tiers, NOT NULL %v, check validated %v, helper dropped %v", nulls, notNull, validated, helperGone)
	}
	if gold+standardLive != written.Load() || gold == 0 {
		t.Fatalf("orders written during the migration: %d gold + %d standard, want %d in all", gold, standardLive, written.Load())
	}

	stdout.Reset()
	stderr.Reset()
	if err := run(ctx, []string{"migrate-data", "customer-tier"}, getenv, &stdout, &stderr); err != nil {
		t.Fatalf("second run: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "customer-tier: 0 orders given the tier standard") {
		t.Fatalf("second run printed %q", stdout.String())
	}
	if status, _ := post("/v1/orders", `{"customer_id": "after", "currency": "EUR", "items": [{"sku": "sku-m", "quantity": 1, "unit_price_cents": 5}]}`); status != http.StatusCreated {
		t.Fatalf("creating an order after the migration: %d", status)
	}
}

func TestMigrateDataNeedsADatabaseAndAKnownMigration(t *testing.T) {
	t.Parallel()
	empty := func(string) string { return "" }
	for _, args := range [][]string{{"customer-tier"}, {"-database-url", "postgres://x/y", "colour"}, {"-database-url", "postgres://x/y"}} {
		var stderr bytes.Buffer
		err := run(context.Background(), append([]string{"migrate-data"}, args...), empty, &bytes.Buffer{}, &stderr)
		if !errors.Is(err, errUsage) {
			t.Errorf("migrate-data %v: %v, want a usage error", args, err)
		}
	}
}

// TestMigrateDataGivesUpRatherThanQueueWrites: while a long transaction holds a lock on orders,
// the step that needs a brief exclusive lock gives up after -lock-timeout instead of queueing
// (which would queue every order write behind it), says so, and succeeds once it is gone.
func TestMigrateDataGivesUpRatherThanQueueWrites(t *testing.T) {
	t.Parallel()
	dsn := testenv.NewDatabase(t)
	ctx := context.Background()
	owner := testenv.Connect(t, dsn)
	_, err := owner.Exec(ctx, `INSERT INTO orders (id, client_id, customer_id, currency, status, total_cents, version, created_at, updated_at, customer_tier)
		VALUES (gen_random_uuid(), 'c', 'old', 'EUR', 'pending', 1, 1, now(), now(), NULL)`)
	testenv.Must(t, err, "seeding an order from before tiers")
	reader := testenv.Connect(t, dsn)
	tx, err := reader.Begin(ctx)
	testenv.Must(t, err, "beginning the long transaction")
	_, err = tx.Exec(ctx, `SELECT count(*) FROM orders`) // holds ACCESS SHARE until it ends
	testenv.Must(t, err, "reading orders")
	getenv := func(k string) string {
		if k == "DATABASE_URL" {
			return dsn
		}
		return ""
	}
	var stdout, stderr bytes.Buffer
	err = run(ctx, []string{"migrate-data", "-lock-timeout", "20ms", "-quiet", "customer-tier"}, getenv, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "lock timeout") || !strings.Contains(err.Error(), "not NOT NULL yet") {
		t.Fatalf("with a long transaction open: %v, want a lock timeout that leaves the column nullable", err)
	}
	var nulls int64
	testenv.Must(t, owner.QueryRow(ctx, `SELECT count(*) FROM orders WHERE customer_tier IS NULL`).Scan(&nulls), "counting")
	if nulls != 0 {
		t.Fatalf("%d orders without a tier: the backfill itself must not wait on the reader", nulls)
	}
	testenv.Must(t, tx.Rollback(ctx), "ending the long transaction")
	if err := run(ctx, []string{"migrate-data", "-quiet", "customer-tier"}, getenv, &stdout, &stderr); err != nil {
		t.Fatalf("once the transaction ended: %v", err)
	}
}

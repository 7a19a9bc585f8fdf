package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"orderflow"
	"orderflow/internal/testenv"
	"orderflow/postgres"
)

func TestBackfillRefusesBadConfiguration(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no database", nil, nil, "DATABASE_URL"},
		{"malformed rate", nil, map[string]string{"DATABASE_URL": "postgres://x", "BACKFILL_RATE": "fast"}, `BACKFILL_RATE="fast"`},
		{"malformed batch", nil, map[string]string{"DATABASE_URL": "postgres://x", "BACKFILL_BATCH_SIZE": "1k"}, `BACKFILL_BATCH_SIZE="1k"`},
		{"negative rate", []string{"-rate", "-1"}, map[string]string{"DATABASE_URL": "postgres://x"}, "-rate"},
		{"zero batch", []string{"-batch-size", "0"}, map[string]string{"DATABASE_URL": "postgres://x"}, "-batch-size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := run(context.Background(), append([]string{"backfill"}, tc.args...), func(k string) string { return tc.env[k] },
				&bytes.Buffer{}, &bytes.Buffer{})
			if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v, want a usage error naming %s", err, tc.want)
			}
		})
	}
}

// The command re-emits every order, shows progress on stderr and what it did on stdout, and a
// second run finds everything already in the outbox.
func TestBackfillCommand(t *testing.T) {
	t.Parallel()
	dsn := testenv.NewDatabase(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, dsn, 2)
	testenv.Must(t, err, "opening database")
	defer db.Close()
	_, err = db.SetStock(ctx, "sku-cmd", 100)
	testenv.Must(t, err, "stocking")
	for range 3 {
		_, err := db.CreateOrder(ctx, orderflow.IdempotencyKey{ClientID: "t", Key: uuid.NewString(), Fingerprint: []byte("f")},
			orderflow.NewOrder{CustomerID: "c", Currency: "EUR", Items: []orderflow.Item{{SKU: "sku-cmd", Quantity: 1, UnitPriceCents: 5}}},
			func(o *orderflow.Order, err error) orderflow.Response {
				b, _ := json.Marshal(o)
				return orderflow.Response{Status: 201, Body: b}
			})
		testenv.Must(t, err, "creating order")
	}
	getenv := func(k string) string {
		if k == "DATABASE_URL" {
			return dsn
		}
		return ""
	}
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"backfill", "-batch-size", "2", "-rate", "0"}, getenv, &stdout, &stderr); err != nil {
		t.Fatalf("backfill: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "3 orders re-emitted through the outbox (3 events written, 0 already there)") {
		t.Errorf("stdout %q", stdout.String())
	}
	if !strings.Contains(stderr.String(), "backfill: 2/3 orders (66%)") || !strings.Contains(stderr.String(), "backfill: 3/3 orders (100%)") {
		t.Errorf("stderr %q, want a progress line per batch", stderr.String())
	}
	stdout.Reset()
	if err := run(ctx, []string{"backfill", "-json", "-quiet"}, getenv, &stdout, &stderr); err != nil {
		t.Fatalf("second backfill: %v", err)
	}
	var res struct {
		Total, Scanned, Emitted int64
		Existing                int64 `json:"already_in_outbox"`
		Complete                bool
	}
	testenv.Must(t, json.Unmarshal(stdout.Bytes(), &res), "decoding "+stdout.String())
	if res.Total != 3 || res.Scanned != 3 || res.Emitted != 0 || res.Existing != 3 || !res.Complete {
		t.Errorf("second run %s, want all 3 already in the outbox", stdout.String())
	}
}

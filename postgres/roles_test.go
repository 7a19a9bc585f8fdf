package postgres_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"orderflow/internal/testenv"
)

// TestEachServiceRoleIsRefusedWhatIsNotItsJob connects as each service's role and checks what
// PostgreSQL lets it do: its own work is allowed, the rest is refused with
// insufficient_privilege. Every statement runs in a transaction that is rolled back.
func TestEachServiceRoleIsRefusedWhatIsNotItsJob(t *testing.T) {
	t.Parallel()
	_, dsn := mustDB(t)
	ctx := context.Background()
	owner := testenv.Connect(t, dsn)
	_, err := owner.Exec(ctx, `
		INSERT INTO orders (id, client_id, customer_id, currency, status, total_cents, version, created_at, updated_at)
		VALUES ('0190c4f6-1d2b-7c3a-9a1b-2f3e4d5c6b7a', 'c', 'cust', 'EUR', 'pending', 100, 1, now(), now());
		INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, schema_version, payload)
		VALUES ('0190c4f6-1d2b-7c3a-9a1b-2f3e4d5c6b7b', 'order', 'o', 'order.created', 1, '{}');
		INSERT INTO partner.receipts (webhook_id, event_type, subject) VALUES ('w', 'order.created', 'o')`)
	testenv.Must(t, err, "seeding")

	const newOrder = `INSERT INTO orders (id, client_id, customer_id, currency, status, total_cents, version, created_at, updated_at)
		VALUES (gen_random_uuid(), 'c', 'cust', 'EUR', 'pending', 1, 1, now(), now())`
	const newOutbox = `INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, schema_version, payload)
		VALUES (gen_random_uuid(), 'order', 'o', 'order.created', 1, '{}')`
	// Each writer of a traceparent column (00012, docs/TRACING.md) may write and read it.
	const tracedOutbox = `INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, schema_version, payload, traceparent)
		VALUES (gen_random_uuid(), 'order', 'o', 'order.created', 1, '{}', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')`
	type check struct {
		sql     string
		allowed bool
	}
	cases := map[string][]check{
		"orderflow_capture": {
			{`SELECT count(*) FROM outbox`, true},
			{`SELECT traceparent FROM outbox`, true},
			{`DELETE FROM outbox`, true},
			{tracedOutbox, false},
			{`SELECT pg_logical_emit_message(false, 'orderflow.test', '')`, true},
			{newOrder, false},
			{newOutbox, false},
			{`SELECT count(*) FROM orders`, false},
			{`SELECT count(*) FROM api_clients`, false},
			{`SELECT count(*) FROM webhook_endpoints`, false},
		},
		"orderflow_api": {
			{newOrder, true},
			{newOutbox, true},
			{tracedOutbox, true},
			{`UPDATE webhook_deliveries SET traceparent = NULL`, true},
			{`SELECT count(*) FROM order_summary`, true},
			{`DELETE FROM idempotency_keys`, true},
			{`SELECT count(*) FROM partner.receipts`, false},
			{`SELECT count(*) FROM outbox`, false},
			{`DELETE FROM orders`, false},
			{`DELETE FROM outbox`, false},
			{`INSERT INTO order_summary (order_id, customer_id, status, total_cents, item_count, currency, version, created_at, updated_at,
				last_event_id, last_event_type, last_event_at, projected_at)
				VALUES (gen_random_uuid(), 'c', 'pending', 1, 1, 'EUR', 1, now(), now(), gen_random_uuid(), 't', now(), now())`, false},
			{`INSERT INTO api_clients (id, name, key_sha256, role) VALUES ('k', 'k', '\x00', 'admin')`, false},
			{`SELECT count(*) FROM projector_dead_letters`, false},
			{`SELECT count(*) FROM reconcile_repairs`, false},
		},
		"orderflow_projector": {
			{`SELECT client_id FROM orders`, true},
			{`SELECT count(*) FROM order_summary`, true},
			{`SELECT customer_id FROM orders`, false},
			{newOrder, false},
			{`SELECT count(*) FROM outbox`, false},
			{`SELECT count(*) FROM webhook_endpoints`, false},
			// Its own retention purge (docs/RETENTION.md), and nothing else's.
			{`DELETE FROM projector_dead_letters`, true},
			{`DELETE FROM order_summary`, false},
		},
		"orderflow_deliver": {
			{`SELECT count(*) FROM webhook_endpoints`, true},
			{`UPDATE webhook_endpoints SET disabled_at = now()`, true},
			{`UPDATE webhook_endpoints SET url = 'https://attacker.example/'`, false},
			{`UPDATE webhook_endpoints SET secret = 'whsec_x'`, false},
			{`SELECT count(*) FROM orders`, false},
			{`SELECT count(*) FROM api_clients`, false},
			{`SELECT count(*) FROM partner.receipts`, false},
			{`DELETE FROM webhook_deliveries`, true},
			{`INSERT INTO webhook_deliveries (event_id, endpoint_id, event_type, subject, payload, traceparent)
				SELECT 'e', id, 'order.created', 'o', '{}', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' FROM webhook_endpoints`, true},
			{`SELECT traceparent FROM webhook_deliveries`, true},
			{tracedOutbox, false},
			{`DELETE FROM webhook_delivery_attempts`, true},
			{`DELETE FROM webhook_intake_dead_letters`, true},
			{`DELETE FROM webhook_endpoints`, false},
		},
		"orderflow_partner": {
			{`SELECT count(*) FROM partner.receipts`, true},
			{`INSERT INTO partner.faults (webhook_id, kind) VALUES ('w', 'k')`, true},
			{`INSERT INTO partner.callbacks (webhook_id, order_id, action, due_at, traceparent)
				VALUES ('w', 'o', 'fulfill', now(), '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')`, true},
			{`SELECT traceparent FROM partner.callbacks`, true},
			{`SELECT count(*) FROM orders`, false},
			{`SELECT count(*) FROM webhook_endpoints`, false},
			{`SELECT count(*) FROM outbox`, false},
		},
		"orderflow_reconcile": {
			{`SELECT count(*) FROM orders o JOIN order_summary s ON s.order_id = o.id`, true},
			{`SELECT id FROM orders FOR SHARE`, true},
			{newOutbox, true},
			{tracedOutbox, true},
			{`DELETE FROM orders`, false},
			{`UPDATE orders SET status = 'cancelled'`, false},
			{`SELECT count(*) FROM api_clients`, false},
			{`SELECT count(*) FROM partner.receipts`, false},
			// Its retention purge, and the partner's callbacks that failed for good, which it reports.
			{`DELETE FROM reconcile_repairs`, true},
			{`SELECT count(*) FROM partner.callbacks WHERE state = 'failed'`, true},
			{`DELETE FROM partner.callbacks`, false},
		},
	}
	for role, checks := range cases {
		t.Run(role, func(t *testing.T) {
			t.Parallel()
			c := testenv.Connect(t, testenv.AsRole(t, dsn, role))
			for _, ch := range checks {
				err := tryRolledBack(ctx, c, ch.sql)
				var pgErr *pgconn.PgError
				refused := errors.As(err, &pgErr) && pgErr.Code == "42501"
				switch {
				case ch.allowed && err != nil:
					t.Errorf("%s may not: %s: %v", role, ch.sql, err)
				case !ch.allowed && !refused:
					t.Errorf("%s was not refused (err %v): %s", role, err, ch.sql)
				}
			}
		})
	}
	var replication bool
	testenv.Must(t, owner.QueryRow(ctx, `SELECT rolreplication FROM pg_roles WHERE rolname = 'orderflow_capture'`).Scan(&replication), "reading the capture role")
	if !replication {
		t.Error("orderflow_capture lacks REPLICATION")
	}
}

func tryRolledBack(ctx context.Context, c *pgx.Conn, sql string) error {
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, sql)
	return err
}

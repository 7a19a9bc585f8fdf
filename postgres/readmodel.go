package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"orderflow"
)

// ApplySummaries writes a batch of summaries and dead-letter records in one transaction and
// reports, per summary, whether it changed the row. A batch PostgreSQL refuses for its values
// fails with orderflow.ErrRejectedData. A summary replaces the stored row only
// when its version is strictly newer: that single condition is what makes duplicate, replayed
// and out-of-order events harmless, so the caller may deliver any event any number of times.
// ProjectedAt is set here, from the database clock.
func (db *DB) ApplySummaries(ctx context.Context, ss []orderflow.Summary, dead []orderflow.ProjectorDeadLetter) ([]bool, error) {
	applied := make([]bool, len(ss))
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for i, s := range ss {
			var reason *string
			if s.CancelReason != "" {
				reason = &s.CancelReason
			}
			b.Queue(`
				INSERT INTO order_summary (order_id, customer_id, status, total_cents, item_count, currency,
				    version, cancel_reason, created_at, updated_at, last_event_id, last_event_type,
				    last_event_at, projected_at, client_id)
				VALUES ($1, $2, $3, $4, $5::bigint, $6, $7::bigint, $8, $9, $10, $11, $12, $13, clock_timestamp(),
				    (SELECT client_id FROM orders WHERE id = $1))
				ON CONFLICT (order_id) DO UPDATE SET
				    client_id = coalesce(EXCLUDED.client_id, order_summary.client_id),
				    customer_id = EXCLUDED.customer_id, status = EXCLUDED.status,
				    total_cents = EXCLUDED.total_cents, item_count = EXCLUDED.item_count,
				    currency = EXCLUDED.currency, version = EXCLUDED.version,
				    cancel_reason = EXCLUDED.cancel_reason, created_at = EXCLUDED.created_at,
				    updated_at = EXCLUDED.updated_at, last_event_id = EXCLUDED.last_event_id,
				    last_event_type = EXCLUDED.last_event_type, last_event_at = EXCLUDED.last_event_at,
				    projected_at = EXCLUDED.projected_at
				WHERE order_summary.version < EXCLUDED.version`,
				s.OrderID, s.CustomerID, s.Status, s.TotalCents, s.ItemCount, s.Currency, s.Version,
				reason, s.CreatedAt, s.UpdatedAt, s.LastEventID, s.LastEventType, s.LastEventAt,
			).Exec(func(tag pgconn.CommandTag) error {
				applied[i] = tag.RowsAffected() == 1
				return nil
			})
		}
		for _, d := range dead {
			b.Queue(`INSERT INTO projector_dead_letters (topic, kafka_partition, kafka_offset, event_id, order_id, error, attempts)
				VALUES ($1, $2, $3, nullif($4, ''), nullif($5, ''), $6, $7) ON CONFLICT DO NOTHING`,
				d.Topic, d.Partition, d.Offset, d.EventID, d.OrderID, d.Error, d.Attempts)
		}
		// item_count and version are sent as bigint so that a value too large for the integer
		// column is refused by PostgreSQL (22003, the data's fault, dead-lettered) instead of
		// failing in the driver with an error nobody can tell from an outage.
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("applying summaries: %w", rejected(err))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return applied, nil
}

const summaryColumns = `s.order_id::text, s.customer_id, s.status, s.total_cents, s.item_count, s.currency,
	s.version, coalesce(s.cancel_reason, ''), s.created_at, s.updated_at, s.last_event_id::text,
	s.last_event_type, s.last_event_at, s.projected_at`

func scanSummary(row pgx.Row, extra ...any) (orderflow.Summary, error) {
	var s orderflow.Summary
	var status string
	dest := append([]any{&s.OrderID, &s.CustomerID, &status, &s.TotalCents, &s.ItemCount, &s.Currency,
		&s.Version, &s.CancelReason, &s.CreatedAt, &s.UpdatedAt, &s.LastEventID, &s.LastEventType,
		&s.LastEventAt, &s.ProjectedAt}, extra...)
	if err := row.Scan(dest...); err != nil {
		return s, err
	}
	s.Status = orderflow.Status(status)
	for _, t := range []*time.Time{&s.CreatedAt, &s.UpdatedAt, &s.LastEventAt, &s.ProjectedAt} {
		*t = t.UTC()
	}
	return s, nil
}

// OrderSummary returns the summary of order id and the order's current version in the source
// of truth, read in one statement so the two are comparable. An unknown order, or one outside
// scope, is a not-found domain error; a known order without a summary is
// orderflow.ErrNotProjected.
func (db *DB) OrderSummary(ctx context.Context, scope orderflow.Scope, id string) (orderflow.Summary, int, error) {
	if _, err := uuid.Parse(id); err != nil {
		return orderflow.Summary{}, 0, orderflow.Errorf(orderflow.ECodeNotFound, "no such order")
	}
	var orderVersion int
	s, err := scanSummary(db.pool.QueryRow(ctx, `SELECT `+summaryColumns+`, o.version
		FROM order_summary s JOIN orders o ON o.id = s.order_id
		WHERE s.order_id = $1 AND ($2 OR o.client_id = $3)`, id, scope.All(), scope.Owner()), &orderVersion)
	if err == nil {
		return s, orderVersion, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return orderflow.Summary{}, 0, fmt.Errorf("reading order summary: %w", err)
	}
	// No summary: whether the order exists decides between the two kinds of 404.
	var exists bool
	if err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM orders WHERE id = $1 AND ($2 OR client_id = $3))`,
		id, scope.All(), scope.Owner()).Scan(&exists); err != nil {
		return orderflow.Summary{}, 0, fmt.Errorf("checking order: %w", err)
	}
	if !exists {
		return orderflow.Summary{}, 0, orderflow.Errorf(orderflow.ECodeNotFound, "no such order")
	}
	return orderflow.Summary{}, 0, orderflow.ErrNotProjected
}

// CustomerSummaries lists a customer's summaries that scope covers, newest first, after the
// cursor if given, at most limit of them. A customer id is a client's own name for its
// customer, so a client sees only its own orders under it. Keyset pagination on (created_at,
// order_id), both immutable, keeps pages stable while orders change and costs the same on
// every page.
func (db *DB) CustomerSummaries(ctx context.Context, scope orderflow.Scope, customerID string, after *orderflow.SummaryCursor, limit int) ([]orderflow.Summary, error) {
	var (
		rows pgx.Rows
		err  error
	)
	// The two owner conditions are spelled out rather than folded into one OR, so that the
	// scoped form is a plain equality the (client_id, customer_id, ...) index serves.
	owner, ownerArg := `s.client_id = $2`, any(scope.Owner())
	if scope.All() {
		owner, ownerArg = `$2::boolean`, any(true)
	}
	if after == nil {
		rows, err = db.pool.Query(ctx, `SELECT `+summaryColumns+` FROM order_summary s
			WHERE s.customer_id = $1 AND `+owner+`
			ORDER BY s.created_at DESC, s.order_id DESC LIMIT $3`, customerID, ownerArg, limit)
	} else {
		if _, perr := uuid.Parse(after.OrderID); perr != nil {
			return nil, orderflow.Errorf(orderflow.ECodeValidation, "the cursor is not valid")
		}
		rows, err = db.pool.Query(ctx, `SELECT `+summaryColumns+` FROM order_summary s
			WHERE s.customer_id = $1 AND `+owner+` AND (s.created_at, s.order_id) < ($3, $4::uuid)
			ORDER BY s.created_at DESC, s.order_id DESC LIMIT $5`, customerID, ownerArg, after.CreatedAt, after.OrderID, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("listing customer summaries: %w", err)
	}
	defer rows.Close()
	out := []orderflow.Summary{}
	for rows.Next() {
		s, err := scanSummary(rows)
		if err != nil {
			return nil, fmt.Errorf("reading customer summary: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing customer summaries: %w", err)
	}
	return out, nil
}

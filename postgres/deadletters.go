package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"orderflow"
)

const selectDeadLetter = `SELECT d.id::text, d.event_id, d.event_type, d.subject, d.endpoint_id::text, e.url, d.state,
	d.attempts, d.last_status, coalesce(d.last_error, ''), d.last_attempt_at, d.dead_at, d.replays, d.created_at
	FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id`

func scanDeadLetter(row pgx.Row) (orderflow.DeadLetter, error) {
	var l orderflow.DeadLetter
	err := row.Scan(&l.ID, &l.EventID, &l.EventType, &l.Subject, &l.EndpointID, &l.EndpointURL, &l.State,
		&l.Attempts, &l.LastStatus, &l.LastError, &l.LastAttemptAt, &l.DeadAt, &l.Replays, &l.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, orderflow.Errorf(orderflow.ECodeDeadLetterNotFound, "no such dead letter")
	}
	if err != nil {
		return l, fmt.Errorf("reading dead letter: %w", err)
	}
	return l, nil
}

// DeadLetters lists dead letters in the order they died, limit at a time, starting after the
// dead letter named by after (empty for the first page).
func (db *DB) DeadLetters(ctx context.Context, endpoint, after string, limit int) ([]orderflow.DeadLetter, error) {
	if endpoint != "" {
		if err := endpointID(endpoint); err != nil {
			return nil, err
		}
	}
	if after != "" {
		if _, err := uuid.Parse(after); err != nil {
			return nil, orderflow.Errorf(orderflow.ECodeValidation, "after must be a dead letter id")
		}
	}
	rows, err := db.pool.Query(ctx, selectDeadLetter+`
		WHERE d.state = 'dead' AND e.deleted_at IS NULL
		  AND ($1::uuid IS NULL OR d.endpoint_id = $1::uuid)
		  AND ($2::uuid IS NULL OR (d.dead_at, d.id) > (SELECT dead_at, id FROM webhook_deliveries WHERE id = $2::uuid))
		ORDER BY d.dead_at, d.id
		LIMIT $3`, nullIfEmpty(endpoint), nullIfEmpty(after), limit)
	if err != nil {
		return nil, fmt.Errorf("listing dead letters: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (orderflow.DeadLetter, error) { return scanDeadLetter(r) })
}

func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// ReplayDeadLetter starts a new delivery cycle for a dead letter: attempts from zero, due now,
// the same webhook-id, so a partner that did get an earlier attempt dedupes it. Replaying a
// delivery that is already pending again is a no-op.
func (db *DB) ReplayDeadLetter(ctx context.Context, id string) (orderflow.DeadLetter, error) {
	if _, err := uuid.Parse(id); err != nil {
		return orderflow.DeadLetter{}, orderflow.Errorf(orderflow.ECodeDeadLetterNotFound, "no such dead letter")
	}
	var l orderflow.DeadLetter
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		var (
			state    orderflow.DeliveryState
			disabled bool
		)
		err := tx.QueryRow(ctx, `SELECT d.state, e.disabled_at IS NOT NULL FROM webhook_deliveries d
			JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1 AND e.deleted_at IS NULL FOR UPDATE OF d`, id).Scan(&state, &disabled)
		if errors.Is(err, pgx.ErrNoRows) {
			return orderflow.Errorf(orderflow.ECodeDeadLetterNotFound, "no such dead letter")
		}
		if err != nil {
			return fmt.Errorf("reading delivery: %w", err)
		}
		switch {
		case state == orderflow.DeliverySucceeded:
			return orderflow.Errorf(orderflow.ECodeNotDeadLetter, "this delivery succeeded; there is nothing to replay")
		case disabled:
			return orderflow.Errorf(orderflow.ECodeEndpointDisabled, "the endpoint is disabled; enable it before replaying")
		case state == orderflow.DeliveryDead:
			if _, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET state = 'pending', attempts = 0, cycle_started_at = now(),
					next_attempt_at = now(), dead_at = NULL, claim_token = NULL, replays = replays + 1
				WHERE id = $1`, id); err != nil {
				return fmt.Errorf("replaying dead letter: %w", err)
			}
		}
		l, err = scanDeadLetter(tx.QueryRow(ctx, selectDeadLetter+` WHERE d.id = $1`, id))
		return err
	})
	return l, err
}

// RecoverDeadLetters replays, in one statement, every dead letter of an endpoint that died at or
// after since, as ReplayDeadLetter does one: a new cycle with the same webhook-id. It returns how
// many it queued. The endpoint must be enabled; its slots and rate limit pace the recovered
// deliveries like any others, so recovering a long outage does not flood the partner.
func (db *DB) RecoverDeadLetters(ctx context.Context, id string, since time.Time) (int64, error) {
	if err := endpointID(id); err != nil {
		return 0, err
	}
	var n int64
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		var disabled bool
		err := tx.QueryRow(ctx, `SELECT disabled_at IS NOT NULL FROM webhook_endpoints
			WHERE id = $1 AND deleted_at IS NULL FOR SHARE`, id).Scan(&disabled)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return orderflow.Errorf(orderflow.ECodeEndpointNotFound, "no such webhook endpoint")
		case err != nil:
			return fmt.Errorf("reading webhook endpoint: %w", err)
		case disabled:
			return orderflow.Errorf(orderflow.ECodeEndpointDisabled, "the endpoint is disabled; enable it before recovering its dead letters")
		}
		tag, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET state = 'pending', attempts = 0, cycle_started_at = now(),
				next_attempt_at = now(), dead_at = NULL, claim_token = NULL, replays = replays + 1
			WHERE endpoint_id = $1 AND state = 'dead' AND dead_at >= $2`, id, since)
		if err != nil {
			return fmt.Errorf("recovering dead letters: %w", err)
		}
		n = tag.RowsAffected()
		return nil
	})
	return n, err
}

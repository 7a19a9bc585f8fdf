package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"orderflow"
)

// selectAttempts reads attempts with their delivery; the caller adds the condition, $1 the
// endpoint id or the event id, $2 the cursor and $3 the limit.
const selectAttempts = `SELECT a.id, a.delivery_id::text, d.event_id, d.event_type, d.endpoint_id::text, a.attempt,
		a.started_at, a.latency_ms, a.status, a.outcome, coalesce(a.error, '')
	FROM webhook_delivery_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
	WHERE `

// Attempts pages through recorded attempts, newest first: every attempt at the deliveries of one
// endpoint (which must exist), or of one event (to any endpoint; none is an empty page).
func (db *DB) Attempts(ctx context.Context, q orderflow.AttemptQuery) ([]orderflow.DeliveryAttempt, error) {
	var (
		rows pgx.Rows
		err  error
	)
	const page = ` AND ($2 = 0 OR a.id < $2) ORDER BY a.id DESC LIMIT $3`
	if q.EndpointID != "" {
		if _, err := db.Endpoint(ctx, q.EndpointID); err != nil {
			return nil, err
		}
		rows, err = db.pool.Query(ctx, selectAttempts+`d.endpoint_id = $1`+page, q.EndpointID, q.Before, q.Limit)
	} else {
		rows, err = db.pool.Query(ctx, selectAttempts+`d.event_id = $1`+page, q.EventID, q.Before, q.Limit)
	}
	if err != nil {
		return nil, fmt.Errorf("listing delivery attempts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (orderflow.DeliveryAttempt, error) {
		var a orderflow.DeliveryAttempt
		err := r.Scan(&a.ID, &a.DeliveryID, &a.EventID, &a.EventType, &a.EndpointID, &a.Attempt,
			&a.StartedAt, &a.LatencyMS, &a.Status, &a.Outcome, &a.Error)
		a.StartedAt = a.StartedAt.UTC()
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing delivery attempts: %w", err)
	}
	return out, nil
}

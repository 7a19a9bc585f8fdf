package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"orderflow"
)

// Reconciliation reads. They compare the source of truth with the read model and the
// delivery tables; reconcile decides what is drift.

// ReconcileClock returns the database's clock and its count of orders, so a scan measures
// ages against one clock and can report progress against a total.
func (db *DB) ReconcileClock(ctx context.Context) (time.Time, int64, error) {
	var now time.Time
	var n int64
	if err := db.pool.QueryRow(ctx, `SELECT now(), (SELECT count(*) FROM orders)`).Scan(&now, &n); err != nil {
		return time.Time{}, 0, fmt.Errorf("reading clock and order count: %w", err)
	}
	return now.UTC(), n, nil
}

// OrderStates returns up to limit orders with ids after afterID, in id order, each with its
// summary: one page of a keyset scan over every order.
func (db *DB) OrderStates(ctx context.Context, afterID string, limit int) ([]orderflow.OrderState, error) {
	if afterID == "" {
		afterID = uuid.Nil.String()
	}
	rows, err := db.pool.Query(ctx, `
		SELECT o.id::text, o.status, o.version, o.created_at, o.updated_at,
		       s.order_id IS NOT NULL, coalesce(s.status, ''), coalesce(s.version, 0)
		FROM orders o LEFT JOIN order_summary s ON s.order_id = o.id
		WHERE o.id > $1::uuid ORDER BY o.id LIMIT $2`, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("scanning orders: %w", err)
	}
	defer rows.Close()
	var out []orderflow.OrderState
	for rows.Next() {
		var s orderflow.OrderState
		var status, sumStatus string
		if err := rows.Scan(&s.OrderID, &status, &s.Version, &s.CreatedAt, &s.UpdatedAt,
			&s.HasSummary, &sumStatus, &s.SummaryVersion); err != nil {
			return nil, fmt.Errorf("scanning orders: %w", err)
		}
		s.Status, s.SummaryStatus = orderflow.Status(status), orderflow.Status(sumStatus)
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("scanning orders: %w", err)
	}
	return out, nil
}

// HasDeliveryTables reports whether the webhook tables exist (migration 00003), so reconcile
// works on a database without them.
func (db *DB) HasDeliveryTables(ctx context.Context) (bool, error) {
	var ok bool
	err := db.pool.QueryRow(ctx, `SELECT to_regclass('webhook_deliveries') IS NOT NULL
		AND to_regclass('webhook_endpoints') IS NOT NULL`).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("checking for delivery tables: %w", err)
	}
	return ok, nil
}

// UndeliveredEvents lists order events written between from and to (outbox time) that an
// endpoint enabled at the time subscribed to, with neither a successful delivery nor a dead
// letter for that endpoint. A successful or dead delivery of a reconcile repair of the same
// order counts too: the repair stands in for the event it repaired. It only sees events still
// in the outbox (capture's retention deletes older rows).
func (db *DB) UndeliveredEvents(ctx context.Context, from, to time.Time, limit int) ([]orderflow.UndeliveredEvent, error) {
	rows, err := db.pool.Query(ctx, `
		SELECT ob.id::text, ob.event_type, ob.aggregate_id, ob.created_at, e.id::text,
		       EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = ob.id::text AND d.endpoint_id = e.id)
		FROM outbox ob
		JOIN webhook_endpoints e ON e.disabled_at IS NULL AND ob.event_type = ANY (e.event_types)
		     AND e.created_at <= ob.created_at
		WHERE ob.aggregate_type = $1 AND ob.created_at >= $2 AND ob.created_at < $3
		  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
		                  WHERE d.event_id = ob.id::text AND d.endpoint_id = e.id AND d.state IN ('succeeded', 'dead'))
		  AND NOT EXISTS (SELECT 1 FROM reconcile_repairs r
		                  JOIN webhook_deliveries d ON d.event_id = r.event_id::text AND d.endpoint_id = e.id
		                  WHERE r.order_id = ob.aggregate_id::uuid AND r.created_at >= ob.created_at
		                    AND d.state IN ('succeeded', 'dead'))
		ORDER BY ob.created_at, ob.id LIMIT $4`, orderflow.AggregateOrder, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("finding undelivered events: %w", err)
	}
	defer rows.Close()
	var out []orderflow.UndeliveredEvent
	for rows.Next() {
		var u orderflow.UndeliveredEvent
		if err := rows.Scan(&u.EventID, &u.EventType, &u.OrderID, &u.At, &u.EndpointID, &u.Pending); err != nil {
			return nil, fmt.Errorf("finding undelivered events: %w", err)
		}
		u.At = u.At.UTC()
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("finding undelivered events: %w", err)
	}
	return out, nil
}

// stateEventType is the event type that announces an order in status s.
func stateEventType(s orderflow.Status) string {
	switch s {
	case orderflow.StatusCancelled:
		return orderflow.EventOrderCancelled
	case orderflow.StatusFulfilled:
		return orderflow.EventOrderFulfilled
	default:
		return orderflow.EventOrderCreated
	}
}

// RepublishOrder repairs drift through the pipeline: it writes the order's current state to
// the outbox as a new event, so capture, the projector and the deliverer converge the normal
// way, and it never touches the read model. The event has a new id, the type of the order's
// current status and the order at its current version; a consumer that applies by version
// applies it only if it is behind.
//
// At most one repair per order version is in flight: reconcile_repairs is claimed in the same
// transaction as the outbox row, so a second --fix (or a concurrent one) finds the claim and
// writes nothing. A claim older than cooldown is taken over, because by then the first repair
// has evidently not done its job. The order row is read FOR SHARE, so a concurrent cancel or
// fulfill commits after the repair and its newer version reaches consumers last.
func (db *DB) RepublishOrder(ctx context.Context, orderID, kind string, cooldown time.Duration) (orderflow.Repair, error) {
	var rep orderflow.Repair
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		rep = orderflow.Repair{}
		o, err := scanOrder(tx.QueryRow(ctx, selectOrder+" FOR SHARE", orderID))
		if err != nil {
			return err
		}
		id, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("making event id: %w", err)
		}
		rep.Version = o.Version
		var claimed string
		err = tx.QueryRow(ctx, `
			INSERT INTO reconcile_repairs (order_id, version, kind, event_id) VALUES ($1, $2, $3, $4)
			ON CONFLICT (order_id, version) DO UPDATE
			    SET kind = EXCLUDED.kind, event_id = EXCLUDED.event_id, created_at = now()
			    WHERE reconcile_repairs.created_at < now() - make_interval(secs => $5)
			RETURNING event_id::text`, o.ID, o.Version, kind, id, cooldown.Seconds()).Scan(&claimed)
		if errors.Is(err, pgx.ErrNoRows) {
			if err := tx.QueryRow(ctx, `SELECT event_id::text FROM reconcile_repairs WHERE order_id = $1 AND version = $2`,
				o.ID, o.Version).Scan(&rep.EventID); err != nil {
				return fmt.Errorf("reading repair in flight: %w", err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("claiming repair: %w", err)
		}
		payload, err := json.Marshal(o)
		if err != nil {
			return fmt.Errorf("encoding repair payload: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, schema_version, payload, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, now())`,
			id, orderflow.AggregateOrder, o.ID, stateEventType(o.Status), orderflow.OrderSchemaVersion, payload); err != nil {
			return fmt.Errorf("writing repair event: %w", err)
		}
		rep.EventID, rep.Published = claimed, true
		return nil
	})
	return rep, err
}

package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"orderflow"
)

// Reads for `orderflow trace EVENT_ID`: where one event is in each table. All of them only read.

// TraceEvent returns what the database holds about event id: its outbox row, whether it is a
// reconcile repair, its webhook deliveries with every attempt, the projector's dead letters of
// it and the mock partner's receipt. Sections that have nothing are nil or empty; tables that
// do not exist in this database (the partner's) are skipped.
func (db *DB) TraceEvent(ctx context.Context, eventID string) (orderflow.EventTrace, error) {
	var tr orderflow.EventTrace
	id, err := uuid.Parse(eventID)
	if err != nil {
		return tr, fmt.Errorf("tracing event: %q is not a UUID", eventID)
	}
	eventID = id.String()

	var ob orderflow.OutboxRow
	var payload string
	err = db.pool.QueryRow(ctx, `SELECT id::text, aggregate_type, aggregate_id, event_type, schema_version, payload::text, created_at,
		       coalesce(traceparent, '')
		FROM outbox WHERE id = $1`, id).Scan(&ob.ID, &ob.AggregateType, &ob.AggregateID, &ob.EventType, &ob.SchemaVersion, &payload, &ob.CreatedAt,
		&ob.TraceParent)
	switch {
	case err == nil:
		ob.CreatedAt, ob.Payload = ob.CreatedAt.UTC(), []byte(payload)
		tr.Outbox = &ob
	case !errors.Is(err, pgx.ErrNoRows):
		return tr, fmt.Errorf("reading outbox row: %w", err)
	}

	var rep orderflow.RepairRow
	err = db.pool.QueryRow(ctx, `SELECT order_id::text, version, kind, created_at FROM reconcile_repairs WHERE event_id = $1`,
		id).Scan(&rep.OrderID, &rep.Version, &rep.Kind, &rep.CreatedAt)
	switch {
	case err == nil:
		rep.CreatedAt = rep.CreatedAt.UTC()
		tr.Repair = &rep
	case !errors.Is(err, pgx.ErrNoRows):
		return tr, fmt.Errorf("reading reconcile repair: %w", err)
	}

	if tr.Deliveries, err = db.traceDeliveries(ctx, eventID); err != nil {
		return tr, err
	}

	rows, err := db.pool.Query(ctx, `SELECT topic, kafka_partition, kafka_offset, coalesce(event_id, ''), coalesce(order_id, ''),
		error, attempts FROM projector_dead_letters WHERE event_id = $1 ORDER BY dead_at`, eventID)
	if err != nil {
		return tr, fmt.Errorf("reading projector dead letters: %w", err)
	}
	tr.ProjectorDeadLetters, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (orderflow.ProjectorDeadLetter, error) {
		var d orderflow.ProjectorDeadLetter
		err := r.Scan(&d.Topic, &d.Partition, &d.Offset, &d.EventID, &d.OrderID, &d.Error, &d.Attempts)
		return d, err
	})
	if err != nil {
		return tr, fmt.Errorf("reading projector dead letters: %w", err)
	}

	tr.Receipt, err = db.tracePartnerReceipt(ctx, eventID)
	return tr, err
}

// traceDeliveries reads the deliveries of an event and their attempts, in two statements.
func (db *DB) traceDeliveries(ctx context.Context, eventID string) ([]orderflow.DeliveryTrace, error) {
	rows, err := db.pool.Query(ctx, `SELECT d.id::text, d.event_type, d.subject, d.endpoint_id::text, e.url, d.state, d.replays, d.created_at,
		       d.succeeded_at, d.dead_at, CASE WHEN d.state = 'pending' THEN d.next_attempt_at END
		FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
		WHERE d.event_id = $1 ORDER BY d.created_at, d.id`, eventID)
	if err != nil {
		return nil, fmt.Errorf("reading deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (orderflow.DeliveryTrace, error) {
		var d orderflow.DeliveryTrace
		var state string
		err := r.Scan(&d.ID, &d.EventType, &d.Subject, &d.EndpointID, &d.EndpointURL, &state, &d.Replays, &d.CreatedAt, &d.SucceededAt, &d.DeadAt, &d.NextAttempt)
		d.State = orderflow.DeliveryState(state)
		d.CreatedAt = d.CreatedAt.UTC()
		d.Attempts = []orderflow.AttemptTrace{}
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading deliveries: %w", err)
	}
	if len(out) == 0 {
		return []orderflow.DeliveryTrace{}, nil
	}
	ids := make([]string, len(out))
	index := make(map[string]int, len(out))
	for i, d := range out {
		ids[i], index[d.ID] = d.ID, i
	}
	rows, err = db.pool.Query(ctx, `SELECT delivery_id::text, attempt, started_at, latency_ms, status, outcome, coalesce(error, '')
		FROM webhook_delivery_attempts WHERE delivery_id = ANY ($1::uuid[]) ORDER BY delivery_id, id`, ids)
	if err != nil {
		return nil, fmt.Errorf("reading delivery attempts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var deliveryID string
		var a orderflow.AttemptTrace
		if err := rows.Scan(&deliveryID, &a.Attempt, &a.StartedAt, &a.LatencyMS, &a.Status, &a.Outcome, &a.Error); err != nil {
			return nil, fmt.Errorf("reading delivery attempts: %w", err)
		}
		a.StartedAt = a.StartedAt.UTC()
		d := &out[index[deliveryID]]
		d.Attempts = append(d.Attempts, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading delivery attempts: %w", err)
	}
	return out, nil
}

// tracePartnerReceipt reads the mock partner's receipt of webhook id eventID, if the partner's
// tables exist here (a real partner keeps its own database).
func (db *DB) tracePartnerReceipt(ctx context.Context, eventID string) (*orderflow.PartnerReceipt, error) {
	var exists bool
	if err := db.pool.QueryRow(ctx, `SELECT to_regclass('partner.receipts') IS NOT NULL AND to_regclass('partner.callbacks') IS NOT NULL`).Scan(&exists); err != nil {
		return nil, fmt.Errorf("checking for the partner's tables: %w", err)
	}
	if !exists {
		return nil, nil
	}
	var r orderflow.PartnerReceipt
	var action, state *string
	err := db.pool.QueryRow(ctx, `SELECT r.received_at, c.action, c.state, c.done_at
		FROM partner.receipts r LEFT JOIN partner.callbacks c ON c.webhook_id = r.webhook_id
		WHERE r.webhook_id = $1`, eventID).Scan(&r.ReceivedAt, &action, &state, &r.CallbackDoneAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading partner receipt: %w", err)
	}
	r.ReceivedAt = r.ReceivedAt.UTC()
	if action != nil {
		r.CallbackAction, r.CallbackState = *action, *state
	}
	return &r, nil
}

// TraceOrder returns an order's status and version in the source of truth and its read-model
// row. An order id that is not a UUID, or that no order has, comes back with Exists false.
func (db *DB) TraceOrder(ctx context.Context, orderID string) (orderflow.OrderTrace, error) {
	tr := orderflow.OrderTrace{OrderID: orderID}
	id, err := uuid.Parse(orderID)
	if err != nil {
		return tr, nil
	}
	var status string
	err = db.pool.QueryRow(ctx, `SELECT status, version FROM orders WHERE id = $1`, id).Scan(&status, &tr.Version)
	switch {
	case err == nil:
		tr.Exists, tr.Status = true, orderflow.Status(status)
	case !errors.Is(err, pgx.ErrNoRows):
		return tr, fmt.Errorf("reading order: %w", err)
	}
	s, err := scanSummary(db.pool.QueryRow(ctx, `SELECT `+summaryColumns+` FROM order_summary s WHERE s.order_id = $1`, id))
	switch {
	case err == nil:
		tr.Summary = &s
	case !errors.Is(err, pgx.ErrNoRows):
		return tr, fmt.Errorf("reading order summary: %w", err)
	}
	return tr, nil
}

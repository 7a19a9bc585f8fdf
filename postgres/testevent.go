package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"orderflow"
)

// QueueTestEventOnce queues ev as a delivery to one endpoint, whatever types it subscribed to,
// under idempotency key k when not nil, so a retried request queues one test event, not two.
// The deliverer sends it like any other delivery (signed, retried, dead-lettered), so the test
// proves the whole path to the partner. A disabled endpoint is refused: nothing would send it.
func (db *DB) QueueTestEventOnce(ctx context.Context, k *orderflow.IdempotencyKey, id string, ev orderflow.WebhookEvent, respond orderflow.DeliveryResponder) (orderflow.Response, error) {
	return db.withKey(ctx, k, func(tx pgx.Tx) (orderflow.Response, error) {
		if err := endpointID(id); err != nil {
			return respondDelivery(respond, orderflow.DeadLetter{}, err)
		}
		var disabled bool
		err := tx.QueryRow(ctx, `SELECT disabled_at IS NOT NULL FROM webhook_endpoints
			WHERE id = $1 AND deleted_at IS NULL FOR SHARE`, id).Scan(&disabled)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return respondDelivery(respond, orderflow.DeadLetter{}, orderflow.Errorf(orderflow.ECodeEndpointNotFound, "no such webhook endpoint"))
		case err != nil:
			return orderflow.Response{}, fmt.Errorf("reading webhook endpoint: %w", err)
		case disabled:
			return respondDelivery(respond, orderflow.DeadLetter{}, orderflow.Errorf(orderflow.ECodeEndpointDisabled, "the endpoint is disabled; enable it before sending a test event"))
		}
		var delivery string
		// The admin's request is the test event's trace: its attempts continue it.
		if err := tx.QueryRow(ctx, `INSERT INTO webhook_deliveries (event_id, endpoint_id, event_type, subject, event_time, payload, traceparent)
			VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id::text`,
			ev.ID, id, ev.Type, ev.Subject, ev.Time, ev.Payload, traceParent(ctx)).Scan(&delivery); err != nil {
			return orderflow.Response{}, fmt.Errorf("queueing test event: %w", err)
		}
		d, err := scanDeadLetter(tx.QueryRow(ctx, selectDeadLetter+` WHERE d.id = $1`, delivery))
		return respondDelivery(respond, d, err)
	})
}

// respondDelivery hands a domain error to respond and passes any other error on.
func respondDelivery(respond orderflow.DeliveryResponder, d orderflow.DeadLetter, err error) (orderflow.Response, error) {
	var de *orderflow.Error
	if err != nil && !errors.As(err, &de) {
		return orderflow.Response{}, err
	}
	return respond(d, err), nil
}

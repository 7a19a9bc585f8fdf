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

const selectEndpoint = `SELECT id::text, url, event_types, previous_secret_expires_at, disabled_at,
	coalesce(disabled_reason, ''), created_at FROM webhook_endpoints`

func scanEndpoint(row pgx.Row) (orderflow.Endpoint, error) {
	var e orderflow.Endpoint
	err := row.Scan(&e.ID, &e.URL, &e.EventTypes, &e.PreviousSecretExpiresAt, &e.DisabledAt, &e.DisabledReason, &e.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return e, orderflow.Errorf(orderflow.ECodeEndpointNotFound, "no such webhook endpoint")
	}
	if err != nil {
		return e, fmt.Errorf("reading webhook endpoint: %w", err)
	}
	e.Disabled = e.DisabledAt != nil
	return e, nil
}

func endpointID(id string) error {
	if _, err := uuid.Parse(id); err != nil {
		return orderflow.Errorf(orderflow.ECodeEndpointNotFound, "no such webhook endpoint")
	}
	return nil
}

// CreateEndpoint registers an endpoint with its first secret.
func (db *DB) CreateEndpoint(ctx context.Context, url string, eventTypes []string, secret string) (orderflow.Endpoint, error) {
	e, err := scanEndpoint(db.pool.QueryRow(ctx, `INSERT INTO webhook_endpoints (url, event_types, secret) VALUES ($1, $2, $3)
		RETURNING id::text, url, event_types, previous_secret_expires_at, disabled_at, coalesce(disabled_reason, ''), created_at`,
		url, eventTypes, secret))
	if err != nil {
		return e, fmt.Errorf("creating webhook endpoint: %w", err)
	}
	e.Secret = secret
	return e, nil
}

// Endpoints lists every endpoint, oldest first, without secrets.
func (db *DB) Endpoints(ctx context.Context) ([]orderflow.Endpoint, error) {
	rows, err := db.pool.Query(ctx, selectEndpoint+` ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing webhook endpoints: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (orderflow.Endpoint, error) { return scanEndpoint(r) })
}

// DisableEndpoint stops deliveries to an endpoint; its pending deliveries become dead letters.
func (db *DB) DisableEndpoint(ctx context.Context, id, reason string) (orderflow.Endpoint, error) {
	if err := endpointID(id); err != nil {
		return orderflow.Endpoint{}, err
	}
	var e orderflow.Endpoint
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := scanEndpoint(tx.QueryRow(ctx, selectEndpoint+` WHERE id = $1 FOR UPDATE`, id)); err != nil {
			return err
		}
		if err := disableEndpoint(ctx, tx, id, reason); err != nil {
			return err
		}
		var err error
		e, err = scanEndpoint(tx.QueryRow(ctx, selectEndpoint+` WHERE id = $1`, id))
		return err
	})
	return e, err
}

// EnableEndpoint resumes deliveries to an endpoint. Dead letters stay dead until replayed.
func (db *DB) EnableEndpoint(ctx context.Context, id string) (orderflow.Endpoint, error) {
	if err := endpointID(id); err != nil {
		return orderflow.Endpoint{}, err
	}
	return scanEndpoint(db.pool.QueryRow(ctx, `UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL, updated_at = now()
		WHERE id = $1 RETURNING id::text, url, event_types, previous_secret_expires_at, disabled_at, coalesce(disabled_reason, ''), created_at`, id))
}

// RotateEndpointSecret makes secret the endpoint's current secret; the old one keeps signing
// alongside it for grace, so the partner can switch without failing a delivery.
func (db *DB) RotateEndpointSecret(ctx context.Context, id, secret string, grace time.Duration) (orderflow.Endpoint, error) {
	if err := endpointID(id); err != nil {
		return orderflow.Endpoint{}, err
	}
	e, err := scanEndpoint(db.pool.QueryRow(ctx, `UPDATE webhook_endpoints SET
			previous_secret = CASE WHEN $3 > 0 THEN secret END,
			previous_secret_expires_at = CASE WHEN $3 > 0 THEN now() + make_interval(secs => $3) END,
			secret = $2, updated_at = now()
		WHERE id = $1 RETURNING id::text, url, event_types, previous_secret_expires_at, disabled_at, coalesce(disabled_reason, ''), created_at`,
		id, secret, grace.Seconds()))
	if err != nil {
		return e, err
	}
	e.Secret = secret
	return e, nil
}

// disableEndpoint stops deliveries to an endpoint. Its pending deliveries become dead letters
// rather than waiting forever: they stay visible and can be replayed once it is enabled again.
func disableEndpoint(ctx context.Context, tx pgx.Tx, id, reason string) error {
	if _, err := tx.Exec(ctx, `UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = $2, updated_at = now()
		WHERE id = $1 AND disabled_at IS NULL`, id, reason); err != nil {
		return fmt.Errorf("disabling endpoint: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET state = 'dead', dead_at = now(), claim_token = NULL,
			last_error = coalesce(last_error || '; ', '') || 'endpoint disabled: ' || $2
		WHERE endpoint_id = $1 AND state = 'pending'`, id, reason); err != nil {
		return fmt.Errorf("dead-lettering deliveries of a disabled endpoint: %w", err)
	}
	return nil
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"orderflow"
)

// endpointColumns are what scanEndpoint reads, for SELECT and RETURNING alike.
const endpointColumns = `id::text, url, event_types, previous_secret_expires_at, disabled_at,
	coalesce(disabled_reason, ''), created_at, rate_limit, failing_since`

// selectEndpoint reads endpoints that are not deleted; a deleted one is not found anywhere.
const selectEndpoint = `SELECT ` + endpointColumns + ` FROM webhook_endpoints WHERE deleted_at IS NULL`

func scanEndpoint(row pgx.Row) (orderflow.Endpoint, error) {
	var e orderflow.Endpoint
	err := row.Scan(&e.ID, &e.URL, &e.EventTypes, &e.PreviousSecretExpiresAt, &e.DisabledAt, &e.DisabledReason, &e.CreatedAt,
		&e.RateLimit, &e.FailingSince)
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
	e, err := scanEndpoint(db.pool.QueryRow(ctx, insertEndpoint, url, eventTypes, secret, nil))
	if err != nil {
		return e, fmt.Errorf("creating webhook endpoint: %w", err)
	}
	e.Secret = secret
	return e, nil
}

const insertEndpoint = `INSERT INTO webhook_endpoints (url, event_types, secret, rate_limit) VALUES ($1, $2, $3, $4)
	RETURNING ` + endpointColumns

// Endpoints lists every endpoint, oldest first, without secrets.
func (db *DB) Endpoints(ctx context.Context) ([]orderflow.Endpoint, error) {
	rows, err := db.pool.Query(ctx, selectEndpoint+` ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing webhook endpoints: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (orderflow.Endpoint, error) { return scanEndpoint(r) })
}

// Endpoint returns one endpoint, without its secret.
func (db *DB) Endpoint(ctx context.Context, id string) (orderflow.Endpoint, error) {
	if err := endpointID(id); err != nil {
		return orderflow.Endpoint{}, err
	}
	return scanEndpoint(db.pool.QueryRow(ctx, selectEndpoint+` AND id = $1`, id))
}

// DisableEndpoint stops deliveries to an endpoint; its pending deliveries become dead letters.
func (db *DB) DisableEndpoint(ctx context.Context, id, reason string) (orderflow.Endpoint, error) {
	if err := endpointID(id); err != nil {
		return orderflow.Endpoint{}, err
	}
	var e orderflow.Endpoint
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := scanEndpoint(tx.QueryRow(ctx, selectEndpoint+` AND id = $1 FOR UPDATE`, id)); err != nil {
			return err
		}
		if err := disableEndpoint(ctx, tx, id, reason); err != nil {
			return err
		}
		var err error
		e, err = scanEndpoint(tx.QueryRow(ctx, selectEndpoint+` AND id = $1`, id))
		return err
	})
	return e, err
}

// EnableEndpoint resumes deliveries to an endpoint. Dead letters stay dead until replayed or
// recovered. Its run of failures starts again from nothing, or a deliverer would disable it again
// at once for failures from before it was disabled.
func (db *DB) EnableEndpoint(ctx context.Context, id string) (orderflow.Endpoint, error) {
	if err := endpointID(id); err != nil {
		return orderflow.Endpoint{}, err
	}
	return scanEndpoint(db.pool.QueryRow(ctx, `UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL,
			failing_since = NULL, updated_at = now()
		WHERE id = $1 AND deleted_at IS NULL RETURNING `+endpointColumns, id))
}

const rotateSecret = `UPDATE webhook_endpoints SET
		previous_secret = CASE WHEN $3 > 0 THEN secret END,
		previous_secret_expires_at = CASE WHEN $3 > 0 THEN now() + make_interval(secs => $3) END,
		secret = $2, updated_at = now()
	WHERE id = $1 AND deleted_at IS NULL RETURNING ` + endpointColumns

// RotateEndpointSecret makes secret the endpoint's current secret; the old one keeps signing
// alongside it for grace, so the partner can switch without failing a delivery.
func (db *DB) RotateEndpointSecret(ctx context.Context, id, secret string, grace time.Duration) (orderflow.Endpoint, error) {
	if err := endpointID(id); err != nil {
		return orderflow.Endpoint{}, err
	}
	e, err := scanEndpoint(db.pool.QueryRow(ctx, rotateSecret, id, secret, grace.Seconds()))
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
	return deadLetterPending(ctx, tx, []string{id}, reason)
}

// deadLetterPending turns the pending deliveries of disabled endpoints into dead letters.
func deadLetterPending(ctx context.Context, tx pgx.Tx, endpointIDs []string, reason string) error {
	if _, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET state = 'dead', dead_at = now(), claim_token = NULL,
			last_error = coalesce(last_error || '; ', '') || 'endpoint disabled: ' || $2
		WHERE endpoint_id = ANY ($1::uuid[]) AND state = 'pending'`, endpointIDs, reason); err != nil {
		return fmt.Errorf("dead-lettering deliveries of a disabled endpoint: %w", err)
	}
	return nil
}

// withKey runs fn in a transaction under idempotency key k, if there is one: a replay
// returns the stored response without running fn; otherwise fn's response is stored with
// the key and commits with fn's writes. fn renders domain errors into its response (they
// are outcomes, stored and replayed); any error it returns rolls everything back, the key
// included, so the client can retry.
func (db *DB) withKey(ctx context.Context, k *orderflow.IdempotencyKey, fn func(tx pgx.Tx) (orderflow.Response, error)) (orderflow.Response, error) {
	var out orderflow.Response
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		if k != nil {
			stored, err := db.claimKey(ctx, tx, *k)
			if err != nil {
				out = stored
				return err
			}
		}
		var err error
		if out, err = fn(tx); err != nil {
			return err
		}
		if k == nil {
			return nil
		}
		b := &pgx.Batch{}
		storeResponse(b, *k, out)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("storing the response: %w", err)
		}
		return nil
	})
	if errors.Is(err, errReplay) {
		return out, nil
	}
	if err != nil {
		return orderflow.Response{}, err
	}
	return out, nil
}

// respondDomain hands a domain error to respond and passes any other error on.
func respondDomain(respond orderflow.EndpointResponder, e orderflow.Endpoint, err error) (orderflow.Response, error) {
	var de *orderflow.Error
	if err != nil && !errors.As(err, &de) {
		return orderflow.Response{}, err
	}
	return respond(e, err), nil
}

// CreateEndpointOnce registers an endpoint with its first secret (stored as given: the API
// passes it sealed) under idempotency key k, when not nil, so a retried registration returns
// the first one's answer instead of registering a second endpoint. respond renders the answer
// that is stored with the key; it holds the secret, so the API seals it too.
func (db *DB) CreateEndpointOnce(ctx context.Context, k *orderflow.IdempotencyKey, n orderflow.NewEndpoint, secret string, respond orderflow.EndpointResponder) (orderflow.Response, error) {
	return db.withKey(ctx, k, func(tx pgx.Tx) (orderflow.Response, error) {
		e, err := scanEndpoint(tx.QueryRow(ctx, insertEndpoint, n.URL, n.EventTypes, secret, n.RateLimit))
		if err != nil {
			return orderflow.Response{}, fmt.Errorf("creating webhook endpoint: %w", err)
		}
		return respond(e, nil), nil
	})
}

// RotateEndpointSecretOnce is RotateEndpointSecret under idempotency key k, when not nil, so a
// retried rotation answers with the secret the first one issued instead of rotating twice
// (which would push out the secret the partner is still switching to).
func (db *DB) RotateEndpointSecretOnce(ctx context.Context, k *orderflow.IdempotencyKey, id, secret string, grace time.Duration, respond orderflow.EndpointResponder) (orderflow.Response, error) {
	return db.withKey(ctx, k, func(tx pgx.Tx) (orderflow.Response, error) {
		if err := endpointID(id); err != nil {
			return respondDomain(respond, orderflow.Endpoint{}, err)
		}
		e, err := scanEndpoint(tx.QueryRow(ctx, rotateSecret, id, secret, grace.Seconds()))
		return respondDomain(respond, e, err)
	})
}

// Sealer seals and opens secrets and says which sealed ones are under an old key;
// secretbox.Ring is one.
type Sealer interface {
	Seal(plaintext []byte) (string, error)
	Open(sealed string) ([]byte, error)
	Stale(sealed string) (bool, error)
}

// SealEndpointSecrets seals every secret still stored in plain text (rows written before
// secrets were encrypted) and re-seals those sealed under a key other than the active one, so
// after a key rotation the old key can leave the ring. It returns how many endpoints it
// rewrote and how many hold a secret the ring cannot open (sealed under a key it lacks):
// those are left as they are, for an operator to look at, rather than failing the rest.
// Every row is locked while the job runs, so a concurrent rotation is not lost.
func (db *DB) SealEndpointSecrets(ctx context.Context, s Sealer) (sealed, unreadable int, err error) {
	reseal := func(v *string) (bool, error) {
		if v == nil {
			return false, nil
		}
		plain := []byte(*v)
		if !strings.HasPrefix(*v, "whsec_") {
			stale, err := s.Stale(*v)
			if err != nil || !stale {
				return false, err
			}
			if plain, err = s.Open(*v); err != nil {
				return false, err
			}
		}
		sealed, err := s.Seal(plain)
		if err != nil {
			return false, err
		}
		*v = sealed
		return true, nil
	}
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		sealed, unreadable = 0, 0
		rows, err := tx.Query(ctx, `SELECT id::text, secret, previous_secret FROM webhook_endpoints FOR UPDATE`)
		if err != nil {
			return fmt.Errorf("reading webhook secrets: %w", err)
		}
		type row struct {
			id               string
			secret, previous *string
		}
		all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			return x, r.Scan(&x.id, &x.secret, &x.previous)
		})
		if err != nil {
			return fmt.Errorf("reading webhook secrets: %w", err)
		}
		for _, x := range all {
			a, errA := reseal(x.secret)
			b, errB := reseal(x.previous)
			if errA != nil || errB != nil {
				unreadable++
				continue
			}
			if !a && !b {
				continue
			}
			if _, err := tx.Exec(ctx, `UPDATE webhook_endpoints SET secret = $2, previous_secret = $3 WHERE id = $1`,
				x.id, x.secret, x.previous); err != nil {
				return fmt.Errorf("storing the sealed secret of endpoint %s: %w", x.id, err)
			}
			sealed++
		}
		return nil
	})
	return sealed, unreadable, err
}

// UpdateEndpoint changes an endpoint's URL, event types or rate limit. A changed limit applies
// from the next send: the schedule of the old one is dropped. Pending deliveries go to the new URL
// from their next attempt; new event types apply to events the intake reads from now on.
func (db *DB) UpdateEndpoint(ctx context.Context, id string, c orderflow.EndpointChange) (orderflow.Endpoint, error) {
	if err := endpointID(id); err != nil {
		return orderflow.Endpoint{}, err
	}
	return scanEndpoint(db.pool.QueryRow(ctx, `UPDATE webhook_endpoints SET
			url = coalesce($2, url),
			event_types = coalesce($3, event_types),
			rate_limit = CASE WHEN $4 THEN $5 ELSE rate_limit END,
			rate_next_at = CASE WHEN $4 THEN NULL ELSE rate_next_at END,
			updated_at = now()
		WHERE id = $1 AND deleted_at IS NULL RETURNING `+endpointColumns,
		id, c.URL, c.EventTypes, c.SetRateLimit, c.RateLimit))
}

// DeleteEndpoint removes an endpoint: it is disabled, its pending deliveries become dead letters,
// and from then on it is not found. The row stays, disabled, because its deliveries and their
// attempts (the audit trail, and `orderflow trace`) refer to it; its dead letters are no longer
// listed or counted.
func (db *DB) DeleteEndpoint(ctx context.Context, id string) error {
	if err := endpointID(id); err != nil {
		return err
	}
	return db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE webhook_endpoints SET deleted_at = now(), updated_at = now(),
				disabled_at = coalesce(disabled_at, now()), disabled_reason = coalesce(disabled_reason, 'deleted')
			WHERE id = $1 AND deleted_at IS NULL`, id)
		if err != nil {
			return fmt.Errorf("deleting webhook endpoint: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return orderflow.Errorf(orderflow.ECodeEndpointNotFound, "no such webhook endpoint")
		}
		return deadLetterPending(ctx, tx, []string{id}, "endpoint deleted")
	})
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"orderflow"
)

// What the deliverer does for an endpoint as a whole, beyond one delivery: pace its sends to its
// rate limit, and disable it after a long run of failures.

// ReserveSendSlot reserves the next send to an endpoint under its rate limit, if that slot starts
// within maxWait, and returns how long the sender must wait before starting the send (0: at once,
// or no limit). When the next free slot is later, nothing is reserved: ok is false and wait says
// when it frees, so the delivery can be deferred until then without using up a slot it does not
// send in (a slot reserved and not used would push every later send back).
//
// The schedule is the endpoint's row (rate_next_at moves on by 1/rate per send), so every
// deliverer draws from the same budget; the row lock serialises their reservations for that one
// endpoint only.
func (db *DB) ReserveSendSlot(ctx context.Context, endpointID string, maxWait time.Duration) (wait time.Duration, ok bool, err error) {
	var secs float64
	err = db.pool.QueryRow(ctx, `WITH cur AS (
			SELECT id, rate_limit, greatest(rate_next_at, clock_timestamp()) AS slot
			FROM webhook_endpoints WHERE id = $1 AND rate_limit IS NOT NULL FOR UPDATE
		), fits AS (
			SELECT cur.*, cur.slot <= clock_timestamp() + make_interval(secs => $2) AS ok FROM cur
		)
		UPDATE webhook_endpoints e
		SET rate_next_at = CASE WHEN fits.ok THEN fits.slot + make_interval(secs => 1.0 / fits.rate_limit) ELSE e.rate_next_at END
		FROM fits WHERE e.id = fits.id
		RETURNING greatest(extract(epoch FROM fits.slot - clock_timestamp()), 0)::float8, fits.ok`,
		endpointID, maxWait.Seconds()).Scan(&secs, &ok)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, true, nil // the limit was removed since the claim
	}
	if err != nil {
		return 0, false, fmt.Errorf("reserving a send slot: %w", err)
	}
	return time.Duration(secs * float64(time.Second)), ok, nil
}

// DeferDelivery gives a claimed delivery back, due after wait, without counting an attempt: its
// endpoint's rate limit has no slot for it within the claim's lease.
func (db *DB) DeferDelivery(ctx context.Context, d orderflow.Delivery, wait time.Duration) error {
	if _, err := db.pool.Exec(ctx, `UPDATE webhook_deliveries SET next_attempt_at = now() + make_interval(secs => $3), claim_token = NULL
		WHERE id = $1 AND claim_token = $2`, d.ID, d.ClaimToken, wait.Seconds()); err != nil {
		return fmt.Errorf("deferring delivery: %w", err)
	}
	return nil
}

// DisableFailingEndpoints disables every enabled endpoint whose attempts have all failed for at
// least failingFor (failing_since, kept by the webhook_endpoint_health trigger, is that old), and
// dead-letters its pending deliveries, as an administrator's disable would. It returns the
// endpoints it disabled; with several deliverers running it, each endpoint is returned once.
func (db *DB) DisableFailingEndpoints(ctx context.Context, failingFor time.Duration) ([]orderflow.Endpoint, error) {
	var out []orderflow.Endpoint
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE webhook_endpoints SET disabled_at = now(), updated_at = now(),
				disabled_reason = 'disabled automatically: every attempt failed since '
					|| to_char(failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
			WHERE disabled_at IS NULL AND failing_since <= now() - make_interval(secs => $1)
			RETURNING `+endpointColumns, failingFor.Seconds())
		if err != nil {
			return fmt.Errorf("disabling failing endpoints: %w", err)
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (orderflow.Endpoint, error) { return scanEndpoint(r) })
		if err != nil {
			return fmt.Errorf("disabling failing endpoints: %w", err)
		}
		for _, e := range out {
			if err := deadLetterPending(ctx, tx, []string{e.ID}, e.DisabledReason); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"orderflow"
	"orderflow/consumers/deliver"
)

// EnqueueDeliveries writes a pending delivery for every event and every enabled endpoint
// subscribed to its type ("*" subscribes to all), in one statement. The (event id, endpoint id)
// key turns a re-read Kafka record into a no-op, so the intake may commit offsets late.
func (db *DB) EnqueueDeliveries(ctx context.Context, evs []deliver.Event) (int64, error) {
	ids := make([]string, len(evs))
	types := make([]string, len(evs))
	subjects := make([]string, len(evs))
	times := make([]*time.Time, len(evs))
	payloads := make([][]byte, len(evs))
	for i, ev := range evs {
		ids[i], types[i], subjects[i], payloads[i] = ev.ID, ev.Type, ev.Subject, ev.Payload
		if !ev.Time.IsZero() {
			t := ev.Time
			times[i] = &t
		}
	}
	tag, err := db.pool.Exec(ctx, `
		INSERT INTO webhook_deliveries (event_id, endpoint_id, event_type, subject, event_time, payload)
		SELECT ev.id, e.id, ev.type, ev.subject, ev.time, ev.payload
		FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bytea[]) AS ev(id, type, subject, time, payload)
		JOIN webhook_endpoints e ON e.disabled_at IS NULL AND (ev.type = ANY (e.event_types) OR '*' = ANY (e.event_types))
		ON CONFLICT (event_id, endpoint_id) DO NOTHING`, ids, types, subjects, times, payloads)
	if err != nil {
		return 0, fmt.Errorf("enqueueing deliveries: %w", err)
	}
	return tag.RowsAffected(), nil
}

// ClaimDeliveries takes due deliveries for this process. SKIP LOCKED lets several deliverers
// claim side by side; the claim itself is a lease (next_attempt_at pushed past the attempt's
// timeout), so a deliverer that dies mid-attempt loses its claims to the others. The claim
// walks each enabled endpoint's due deliveries separately (an index range per endpoint), so
// each endpoint stays within its per-endpoint limit, counting what the deliverer already holds
// (in flight or queued for a slot), and a huge backlog on one endpoint costs the others nothing.
func (db *DB) ClaimDeliveries(ctx context.Context, c deliver.Claim) ([]deliver.Delivery, error) {
	busyIDs := make([]string, 0, len(c.InFlight))
	busyN := make([]int32, 0, len(c.InFlight))
	for id, n := range c.InFlight {
		busyIDs, busyN = append(busyIDs, id), append(busyN, int32(n))
	}
	rows, err := db.pool.Query(ctx, `
		WITH busy AS (
			SELECT * FROM unnest($1::uuid[], $2::int[]) AS b(endpoint_id, n)
		), claimed AS (
			SELECT c.id FROM webhook_endpoints e
			LEFT JOIN busy b ON b.endpoint_id = e.id
			CROSS JOIN LATERAL (
				SELECT d.id, d.next_attempt_at FROM webhook_deliveries d
				WHERE d.endpoint_id = e.id AND d.state = 'pending' AND d.next_attempt_at <= now()
				ORDER BY d.next_attempt_at
				LIMIT greatest($3 - coalesce(b.n, 0), 0)
				FOR UPDATE SKIP LOCKED
			) c
			WHERE e.disabled_at IS NULL
			ORDER BY c.next_attempt_at
			LIMIT $4
		)
		UPDATE webhook_deliveries d
		SET next_attempt_at = now() + make_interval(secs => $5), claim_token = gen_random_uuid()
		FROM claimed, webhook_endpoints e
		WHERE d.id = claimed.id AND e.id = d.endpoint_id
		RETURNING d.id::text, d.event_id, d.event_type, d.endpoint_id::text, e.url, e.secret,
		          CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret END,
		          d.payload, d.event_time, d.attempts, d.cycle_started_at, d.claim_token::text`,
		busyIDs, busyN, c.PerEndpoint, c.Limit, c.Lease.Seconds())
	if err != nil {
		return nil, fmt.Errorf("claiming deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (deliver.Delivery, error) {
		var (
			d        deliver.Delivery
			secret   string
			previous *string
			evTime   *time.Time
		)
		err := row.Scan(&d.ID, &d.EventID, &d.EventType, &d.EndpointID, &d.URL, &secret, &previous,
			&d.Payload, &evTime, &d.Attempts, &d.CycleStartedAt, &d.ClaimToken)
		d.Secrets = []string{secret}
		if previous != nil {
			d.Secrets = append(d.Secrets, *previous)
		}
		if evTime != nil {
			d.EventTime = *evTime
		}
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("claiming deliveries: %w", err)
	}
	return out, nil
}

// RecordAttempts logs a batch of attempts and moves each delivery to its next state, in one
// transaction. A delivery whose claim token no longer matches (the lease ran out and another
// deliverer owns it now) keeps its state: its attempt is still logged, because it happened,
// and owned reports false for it.
func (db *DB) RecordAttempts(ctx context.Context, rs []deliver.Report) ([]bool, error) {
	// Updating in id order keeps two batches from locking the same rows in opposite orders.
	order := make([]int, len(rs))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return rs[order[a]].Delivery.ID < rs[order[b]].Delivery.ID })
	n := len(rs)
	var (
		ids, tokens, outcomes, states = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		numbers                       = make([]int32, n)
		started                       = make([]time.Time, n)
		latencies                     = make([]float64, n)
		statuses                      = make([]*int32, n)
		errs                          = make([]*string, n)
		nexts                         = make([]*time.Time, n)
	)
	for k, i := range order {
		r := rs[i]
		ids[k], tokens[k], outcomes[k], states[k] = r.Delivery.ID, r.Delivery.ClaimToken, r.Attempt.Outcome, r.Result.State
		numbers[k], started[k] = int32(r.Attempt.Number), r.Attempt.StartedAt
		latencies[k] = float64(r.Attempt.Latency.Microseconds()) / 1000
		if r.Attempt.Status != 0 {
			st := int32(r.Attempt.Status)
			statuses[k] = &st
		}
		if r.Attempt.Error != "" {
			e := truncate(r.Attempt.Error, 1000)
			errs[k] = &e
		}
		if r.Result.State == deliver.StatePending {
			next := r.Result.NextAttemptAt
			nexts[k] = &next
		}
	}
	owned := make([]bool, n)
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO webhook_delivery_attempts (delivery_id, attempt, started_at, latency_ms, status, outcome, error)
			SELECT * FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::float8[], $5::int[], $6::text[], $7::text[])`,
			ids, numbers, started, latencies, statuses, outcomes, errs); err != nil {
			return fmt.Errorf("logging delivery attempts: %w", err)
		}
		rows, err := tx.Query(ctx, `UPDATE webhook_deliveries d SET
				attempts = d.attempts + 1, state = u.state, next_attempt_at = coalesce(u.next, d.next_attempt_at), claim_token = NULL,
				last_status = u.status, last_error = u.error, last_attempt_at = u.started,
				succeeded_at = CASE WHEN u.state = 'succeeded' THEN now() END,
				dead_at = CASE WHEN u.state = 'dead' THEN now() END
			FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::int[], $6::text[], $7::timestamptz[])
				AS u(id, token, state, next, status, error, started)
			WHERE d.id = u.id AND d.claim_token = u.token
			RETURNING d.id::text`, ids, tokens, states, nexts, statuses, errs, started)
		if err != nil {
			return fmt.Errorf("updating deliveries: %w", err)
		}
		done, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("updating deliveries: %w", err)
		}
		mine := make(map[string]bool, len(done))
		for _, id := range done {
			mine[id] = true
		}
		clear(owned)
		for i, r := range rs {
			owned[i] = mine[r.Delivery.ID]
			if owned[i] && r.Result.DisableReason != "" {
				if err := disableEndpoint(ctx, tx, r.Delivery.EndpointID, r.Result.DisableReason); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return owned, nil
}

// ReleaseClaim gives a claimed delivery back at once, for a deliverer that stops mid-attempt.
func (db *DB) ReleaseClaim(ctx context.Context, d deliver.Delivery) error {
	if _, err := db.pool.Exec(ctx, `UPDATE webhook_deliveries SET next_attempt_at = now(), claim_token = NULL
		WHERE id = $1 AND claim_token = $2`, d.ID, d.ClaimToken); err != nil {
		return fmt.Errorf("releasing delivery claim: %w", err)
	}
	return nil
}

// DeliveryStats counts deliveries by state for the gauges.
func (db *DB) DeliveryStats(ctx context.Context) (deliver.Stats, error) {
	var s deliver.Stats
	err := db.pool.QueryRow(ctx, `SELECT
			count(*) FILTER (WHERE state = 'pending'),
			count(*) FILTER (WHERE state = 'pending' AND attempts > 0),
			count(*) FILTER (WHERE state = 'dead')
		FROM webhook_deliveries WHERE state <> 'succeeded'`).Scan(&s.Pending, &s.Retrying, &s.Dead)
	if err != nil {
		return s, fmt.Errorf("counting deliveries: %w", err)
	}
	return s, nil
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

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

const selectEndpoint = `SELECT id::text, url, event_types, previous_secret_expires_at, disabled_at,
	coalesce(disabled_reason, ''), created_at FROM webhook_endpoints`

func scanEndpoint(row pgx.Row) (deliver.Endpoint, error) {
	var e deliver.Endpoint
	err := row.Scan(&e.ID, &e.URL, &e.EventTypes, &e.PreviousSecretExpiresAt, &e.DisabledAt, &e.DisabledReason, &e.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return e, orderflow.Errorf(deliver.ECodeEndpointNotFound, "no such webhook endpoint")
	}
	if err != nil {
		return e, fmt.Errorf("reading webhook endpoint: %w", err)
	}
	e.Disabled = e.DisabledAt != nil
	return e, nil
}

func endpointID(id string) error {
	if _, err := uuid.Parse(id); err != nil {
		return orderflow.Errorf(deliver.ECodeEndpointNotFound, "no such webhook endpoint")
	}
	return nil
}

// CreateEndpoint registers an endpoint with its first secret.
func (db *DB) CreateEndpoint(ctx context.Context, url string, eventTypes []string, secret string) (deliver.Endpoint, error) {
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
func (db *DB) Endpoints(ctx context.Context) ([]deliver.Endpoint, error) {
	rows, err := db.pool.Query(ctx, selectEndpoint+` ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing webhook endpoints: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (deliver.Endpoint, error) { return scanEndpoint(r) })
}

// DisableEndpoint stops deliveries to an endpoint; its pending deliveries become dead letters.
func (db *DB) DisableEndpoint(ctx context.Context, id, reason string) (deliver.Endpoint, error) {
	if err := endpointID(id); err != nil {
		return deliver.Endpoint{}, err
	}
	var e deliver.Endpoint
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
func (db *DB) EnableEndpoint(ctx context.Context, id string) (deliver.Endpoint, error) {
	if err := endpointID(id); err != nil {
		return deliver.Endpoint{}, err
	}
	return scanEndpoint(db.pool.QueryRow(ctx, `UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL, updated_at = now()
		WHERE id = $1 RETURNING id::text, url, event_types, previous_secret_expires_at, disabled_at, coalesce(disabled_reason, ''), created_at`, id))
}

// RotateEndpointSecret makes secret the endpoint's current secret; the old one keeps signing
// alongside it for grace, so the partner can switch without failing a delivery.
func (db *DB) RotateEndpointSecret(ctx context.Context, id, secret string, grace time.Duration) (deliver.Endpoint, error) {
	if err := endpointID(id); err != nil {
		return deliver.Endpoint{}, err
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

const selectDeadLetter = `SELECT d.id::text, d.event_id, d.event_type, d.subject, d.endpoint_id::text, e.url, d.state,
	d.attempts, d.last_status, coalesce(d.last_error, ''), d.last_attempt_at, d.dead_at, d.replays, d.created_at
	FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id`

func scanDeadLetter(row pgx.Row) (deliver.DeadLetter, error) {
	var l deliver.DeadLetter
	err := row.Scan(&l.ID, &l.EventID, &l.EventType, &l.Subject, &l.EndpointID, &l.EndpointURL, &l.State,
		&l.Attempts, &l.LastStatus, &l.LastError, &l.LastAttemptAt, &l.DeadAt, &l.Replays, &l.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, orderflow.Errorf(deliver.ECodeDeadLetterNotFound, "no such dead letter")
	}
	if err != nil {
		return l, fmt.Errorf("reading dead letter: %w", err)
	}
	return l, nil
}

// DeadLetters lists dead letters in the order they died, limit at a time, starting after the
// dead letter named by after (empty for the first page).
func (db *DB) DeadLetters(ctx context.Context, endpoint, after string, limit int) ([]deliver.DeadLetter, error) {
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
		WHERE d.state = 'dead'
		  AND ($1::uuid IS NULL OR d.endpoint_id = $1::uuid)
		  AND ($2::uuid IS NULL OR (d.dead_at, d.id) > (SELECT dead_at, id FROM webhook_deliveries WHERE id = $2::uuid))
		ORDER BY d.dead_at, d.id
		LIMIT $3`, nullIfEmpty(endpoint), nullIfEmpty(after), limit)
	if err != nil {
		return nil, fmt.Errorf("listing dead letters: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (deliver.DeadLetter, error) { return scanDeadLetter(r) })
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
func (db *DB) ReplayDeadLetter(ctx context.Context, id string) (deliver.DeadLetter, error) {
	if _, err := uuid.Parse(id); err != nil {
		return deliver.DeadLetter{}, orderflow.Errorf(deliver.ECodeDeadLetterNotFound, "no such dead letter")
	}
	var l deliver.DeadLetter
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		var (
			state    string
			disabled bool
		)
		err := tx.QueryRow(ctx, `SELECT d.state, e.disabled_at IS NOT NULL FROM webhook_deliveries d
			JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1 FOR UPDATE OF d`, id).Scan(&state, &disabled)
		if errors.Is(err, pgx.ErrNoRows) {
			return orderflow.Errorf(deliver.ECodeDeadLetterNotFound, "no such dead letter")
		}
		if err != nil {
			return fmt.Errorf("reading delivery: %w", err)
		}
		switch {
		case state == deliver.StateSucceeded:
			return orderflow.Errorf(deliver.ECodeNotDeadLetter, "this delivery succeeded; there is nothing to replay")
		case disabled:
			return orderflow.Errorf(deliver.ECodeEndpointDisabled, "the endpoint is disabled; enable it before replaying")
		case state == deliver.StateDead:
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

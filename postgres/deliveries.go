package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"orderflow"
)

// EnqueueAndClaimDeliveries writes a pending delivery for every event and every enabled
// endpoint subscribed to its type ("*" subscribes to all), in one statement. The (event id,
// endpoint id) key turns a re-read Kafka record into a no-op, so the intake may commit offsets
// late; the fact key (endpoint, subject, type, data.version) turns a repair of a fact the
// endpoint already has a delivery for into a no-op, so a partner never receives one fact under
// two webhook-ids. A batch refused for its values fails with orderflow.ErrRejectedData.
//
// The same statement claims the new deliveries the claiming process has room for (c as for
// ClaimDeliveries; a zero c claims none), and returns
// them ready to send with the number of rows written. A delivery inserted already claimed is
// written once and updated once (its outcome) instead of inserted, claimed and updated: the
// claim's UPDATE rewrote the whole row (payload included) and, not being a HOT update, added
// an entry to each of the table's indexes, and the claim query that found it walked them;
// that was a third of the deliverer's PostgreSQL time per order.
//
// The lease is the same as a claim's (next_attempt_at pushed past the attempt), so a
// deliverer that dies before sending loses these deliveries to the others exactly as it
// loses claimed ones. Due deliveries already waiting for an endpoint (retries, or new ones
// left unclaimed when it had no room) keep their right to its room: the new ones are claimed
// only in what room those leave, and otherwise wait behind them for the claim, which serves
// each endpoint oldest first. A re-read
// record inserts nothing and so claims nothing: it is never sent twice from here.
func (db *DB) EnqueueAndClaimDeliveries(ctx context.Context, evs []orderflow.WebhookEvent, c orderflow.DeliveryClaim) ([]orderflow.Delivery, int64, error) {
	ids := make([]string, len(evs))
	types := make([]string, len(evs))
	subjects := make([]string, len(evs))
	times := make([]*time.Time, len(evs))
	versions := make([]*int32, len(evs))
	payloads := make([][]byte, len(evs))
	traces := make([]*string, len(evs))
	for i, ev := range evs {
		ids[i], types[i], subjects[i], payloads[i] = ev.ID, ev.Type, ev.Subject, ev.Payload
		if ev.TraceParent != "" {
			traces[i] = &evs[i].TraceParent
		}
		if !ev.Time.IsZero() {
			t := ev.Time
			times[i] = &t
		}
		if ev.Version > 0 {
			v := int32(ev.Version)
			versions[i] = &v
		}
	}
	busyIDs, busyN := inFlightArrays(c)
	rows, err := db.pool.Query(ctx, `
		WITH ev AS (
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::int[], $6::bytea[], $7::text[])
			     WITH ORDINALITY AS ev(id, type, subject, time, version, payload, traceparent, ord)
		), pairs AS (
			SELECT ev.*, e.id AS endpoint_id FROM ev
			JOIN webhook_endpoints e ON e.disabled_at IS NULL AND (ev.type = ANY (e.event_types) OR '*' = ANY (e.event_types))
		), room AS (
			-- Per endpoint of the batch, once: the room the claim leaves, less what due
			-- deliveries already waiting have a right to.
			SELECT r.endpoint_id, r.room - (SELECT count(*) FROM (SELECT FROM webhook_deliveries d
			           WHERE d.endpoint_id = r.endpoint_id AND d.state = 'pending' AND d.next_attempt_at <= now() LIMIT r.room) due) AS room
			FROM (SELECT e.id AS endpoint_id, least($10, coalesce(e.rate_limit, $10)) - coalesce(b.n, 0) AS room
			      FROM webhook_endpoints e
			      LEFT JOIN unnest($8::uuid[], $9::int[]) AS b(endpoint_id, n) ON b.endpoint_id = e.id
			      WHERE $11::int > 0 AND e.id IN (SELECT endpoint_id FROM pairs)) r
			WHERE r.room > 0
		), ranked AS (
			SELECT p.*, coalesce(row_number() OVER (PARTITION BY p.endpoint_id ORDER BY p.ord) <= r.room, false) AS fits
			FROM pairs p LEFT JOIN room r ON r.endpoint_id = p.endpoint_id
		), claims AS (
			SELECT ranked.*, fits AND row_number() OVER (PARTITION BY fits ORDER BY ord) <= $11 AS claim FROM ranked
		), ins AS (
			INSERT INTO webhook_deliveries (event_id, endpoint_id, event_type, subject, event_time, fact_version, payload, traceparent,
			                                next_attempt_at, claim_token)
			SELECT id, endpoint_id, type, subject, time, version, payload, traceparent,
			       CASE WHEN claim THEN now() + make_interval(secs => $12) ELSE now() END,
			       CASE WHEN claim THEN gen_random_uuid() END
			FROM claims ORDER BY ord
			ON CONFLICT DO NOTHING
			RETURNING id, event_id, event_type, endpoint_id, payload, event_time, attempts, cycle_started_at, claim_token, traceparent
		)
		SELECT (SELECT count(*) FROM ins), i.id::text, i.event_id, i.event_type, i.endpoint_id::text, e.url, e.secret,
		       CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret END,
		       i.payload, i.event_time, i.attempts, i.cycle_started_at, i.claim_token::text, coalesce(e.rate_limit, 0),
		       coalesce(i.traceparent, '')
		FROM ins i JOIN webhook_endpoints e ON e.id = i.endpoint_id
		WHERE i.claim_token IS NOT NULL
		UNION ALL
		SELECT count(*), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
		FROM ins HAVING NOT bool_or(claim_token IS NOT NULL) OR count(*) = 0`,
		ids, types, subjects, times, versions, payloads, traces, busyIDs, busyN, c.PerEndpoint, c.Limit, c.Lease.Seconds())
	if err != nil {
		return nil, 0, fmt.Errorf("enqueueing deliveries: %w", rejected(err))
	}
	var inserted int64
	out := make([]orderflow.Delivery, 0)
	for rows.Next() {
		var (
			d                 orderflow.Delivery
			id                *string
			secret, previous  *string
			evTime            *time.Time
			url, evID, evType *string
			endpointID, token *string
			trace             *string
			attempts, rate    *int
			cycle             *time.Time
		)
		if err := rows.Scan(&inserted, &id, &evID, &evType, &endpointID, &url, &secret, &previous,
			&d.Payload, &evTime, &attempts, &cycle, &token, &rate, &trace); err != nil {
			rows.Close()
			return nil, 0, fmt.Errorf("enqueueing deliveries: %w", err)
		}
		if id == nil {
			continue // the count of a batch that claimed nothing
		}
		d.ID, d.EventID, d.EventType, d.EndpointID, d.URL, d.ClaimToken, d.TraceParent = *id, *evID, *evType, *endpointID, *url, *token, *trace
		d.Attempts, d.CycleStartedAt, d.RateLimit = *attempts, *cycle, *rate
		setSecretsAndTime(&d, *secret, previous, evTime)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("enqueueing deliveries: %w", rejected(err))
	}
	return out, inserted, nil
}

// RecordIntakeDeadLetters records records the intake gave up on; a record recorded before (a
// re-read after a crash) is left as it is. Text fields are made storable here, so a record
// malformed in any field can still be described.
func (db *DB) RecordIntakeDeadLetters(ctx context.Context, ls []orderflow.IntakeDeadLetter) error {
	b := &pgx.Batch{}
	for _, l := range ls {
		b.Queue(`INSERT INTO webhook_intake_dead_letters (topic, kafka_partition, kafka_offset, event_id, subject, error, attempts)
			VALUES ($1, $2, $3, nullif($4, ''), nullif($5, ''), $6, $7) ON CONFLICT DO NOTHING`,
			orderflow.StorableText(l.Topic, 255), l.Partition, l.Offset, orderflow.StorableText(l.EventID, 200),
			orderflow.StorableText(l.Subject, 200), orderflow.StorableText(l.Error, 2000), l.Attempts)
	}
	if err := db.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("recording intake dead letters: %w", rejected(err))
	}
	return nil
}

// setSecretsAndTime fills what a claimed delivery's row holds in nullable columns: the
// endpoint's secret and, during a rotation, the previous one; the event time when known.
func setSecretsAndTime(d *orderflow.Delivery, secret string, previous *string, evTime *time.Time) {
	d.Secrets = []string{secret}
	if previous != nil {
		d.Secrets = append(d.Secrets, *previous)
	}
	if evTime != nil {
		d.EventTime = *evTime
	}
}

// inFlightArrays is c.InFlight as two parallel arrays (endpoint ids, counts) for unnest.
func inFlightArrays(c orderflow.DeliveryClaim) ([]string, []int32) {
	ids := make([]string, 0, len(c.InFlight))
	ns := make([]int32, 0, len(c.InFlight))
	for id, n := range c.InFlight {
		ids, ns = append(ids, id), append(ns, int32(n))
	}
	return ids, ns
}

// ClaimDeliveries takes due deliveries for this process. SKIP LOCKED lets several deliverers
// claim side by side; the claim itself is a lease (next_attempt_at pushed past the attempt's
// timeout), so a deliverer that dies mid-attempt loses its claims to the others. The claim
// walks each enabled endpoint's due deliveries separately (an index range per endpoint), so
// each endpoint stays within its per-endpoint limit, counting what the deliverer already holds
// (in flight or queued for a slot), and a huge backlog on one endpoint costs the others nothing.
// A rate-limited endpoint is held at most one second's worth of its rate, so what is claimed
// gets its send slot well inside the lease.
func (db *DB) ClaimDeliveries(ctx context.Context, c orderflow.DeliveryClaim) ([]orderflow.Delivery, error) {
	busyIDs, busyN := inFlightArrays(c)
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
				LIMIT greatest(least($3, coalesce(e.rate_limit, $3)) - coalesce(b.n, 0), 0)
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
		          d.payload, d.event_time, d.attempts, d.cycle_started_at, d.claim_token::text, coalesce(e.rate_limit, 0),
		          coalesce(d.traceparent, '')`,
		busyIDs, busyN, c.PerEndpoint, c.Limit, c.Lease.Seconds())
	if err != nil {
		return nil, fmt.Errorf("claiming deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (orderflow.Delivery, error) {
		var (
			d        orderflow.Delivery
			secret   string
			previous *string
			evTime   *time.Time
		)
		err := row.Scan(&d.ID, &d.EventID, &d.EventType, &d.EndpointID, &d.URL, &secret, &previous,
			&d.Payload, &evTime, &d.Attempts, &d.CycleStartedAt, &d.ClaimToken, &d.RateLimit, &d.TraceParent)
		setSecretsAndTime(&d, secret, previous, evTime)
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
//
// One report PostgreSQL refuses for its values must not sink the batch: every other delivery
// of it would be sent again after its lease. So a refused batch is written report by report,
// and a report refused alone is recorded without its refused values, with the refusal as its
// error: a success stays a success (it happened), anything else becomes a dead letter, so the
// delivery is never retried forever on values that cannot be stored.
func (db *DB) RecordAttempts(ctx context.Context, rs []orderflow.DeliveryReport) ([]bool, error) {
	owned, err := db.recordAttempts(ctx, rs)
	if !errors.Is(err, orderflow.ErrRejectedData) {
		return owned, err
	}
	owned = make([]bool, len(rs))
	for i := range rs {
		one, err := db.recordAttempts(ctx, rs[i:i+1])
		if errors.Is(err, orderflow.ErrRejectedData) {
			owned[i], err = db.recordRefusedAttempt(ctx, rs[i], err)
		} else if err == nil {
			owned[i] = one[0]
		}
		if err != nil {
			return nil, err
		}
	}
	return owned, nil
}

// recordRefusedAttempt records an attempt whose report PostgreSQL refused, without the
// report's own values.
func (db *DB) recordRefusedAttempt(ctx context.Context, r orderflow.DeliveryReport, refusal error) (bool, error) {
	if _, err := uuid.Parse(r.Delivery.ID); err != nil {
		return false, nil // nothing to attach it to
	}
	state := orderflow.DeliveryDead
	if r.Result.State == orderflow.DeliverySucceeded {
		state = orderflow.DeliverySucceeded
	}
	reason := orderflow.StorableText("the attempt's report could not be stored: "+refusal.Error(), 1000)
	var owned bool
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO webhook_delivery_attempts (delivery_id, attempt, started_at, latency_ms, outcome, error)
			VALUES ($1, $2, now(), 0, $3, $4)`, r.Delivery.ID, int32(r.Attempt.Number), orderflow.StorableText(r.Attempt.Outcome, 64), reason); err != nil {
			return fmt.Errorf("logging a refused attempt: %w", rejected(err))
		}
		tag, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET attempts = attempts + 1, state = $3, claim_token = NULL,
				last_error = $4, last_attempt_at = now(),
				succeeded_at = CASE WHEN $3 = 'succeeded' THEN now() END, dead_at = CASE WHEN $3 = 'dead' THEN now() END
			WHERE id = $1 AND claim_token = $2`, r.Delivery.ID, r.Delivery.ClaimToken, string(state), reason)
		if err != nil {
			return fmt.Errorf("settling a refused attempt: %w", rejected(err))
		}
		owned = tag.RowsAffected() == 1
		return nil
	})
	return owned, err
}

func (db *DB) recordAttempts(ctx context.Context, rs []orderflow.DeliveryReport) ([]bool, error) {
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
		ids[k], tokens[k], outcomes[k], states[k] = r.Delivery.ID, r.Delivery.ClaimToken, r.Attempt.Outcome, string(r.Result.State)
		numbers[k], started[k] = int32(r.Attempt.Number), r.Attempt.StartedAt
		latencies[k] = float64(r.Attempt.Latency.Microseconds()) / 1000
		if r.Attempt.Status != 0 {
			st := int32(r.Attempt.Status)
			statuses[k] = &st
		}
		if r.Attempt.Error != "" {
			e := orderflow.StorableText(r.Attempt.Error, 1000)
			errs[k] = &e
		}
		if r.Result.State == orderflow.DeliveryPending {
			next := r.Result.NextAttemptAt
			nexts[k] = &next
		}
	}
	owned := make([]bool, n)
	queue := func() *pgx.Batch {
		b := &pgx.Batch{}
		// The UPDATE joins the deliveries to parameter arrays: its generic plan prices them at
		// 10 rows, dearer than a custom plan that sees the real two or three, so without this
		// it was planned on every call (0.3 ms each, measured with pg_stat_statements'
		// track_planning). The generic plan is the same nested loop over the array with the
		// primary key. Local: it ends with this transaction.
		b.Queue(`SELECT set_config('plan_cache_mode', 'force_generic_plan', true)`)
		b.Queue(`INSERT INTO webhook_delivery_attempts (delivery_id, attempt, started_at, latency_ms, status, outcome, error)
			SELECT * FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::float8[], $5::int[], $6::text[], $7::text[])`,
			ids, numbers, started, latencies, statuses, outcomes, errs)
		b.Queue(`UPDATE webhook_deliveries d SET
				attempts = d.attempts + 1, state = u.state, next_attempt_at = coalesce(u.next, d.next_attempt_at), claim_token = NULL,
				last_status = u.status, last_error = u.error, last_attempt_at = u.started,
				succeeded_at = CASE WHEN u.state = 'succeeded' THEN now() END,
				dead_at = CASE WHEN u.state = 'dead' THEN now() END
			FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::int[], $6::text[], $7::timestamptz[])
				AS u(id, token, state, next, status, error, started)
			WHERE d.id = u.id AND d.claim_token = u.token
			RETURNING d.id::text`, ids, tokens, states, nexts, statuses, errs, started)
		return b
	}
	// read takes the batch's results and sets owned[i] for every report: whether its claim was
	// still ours (so a retried transaction starts from a clean slate).
	read := func(br pgx.BatchResults) error {
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("choosing the plan of the delivery update: %w", err)
		}
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("logging delivery attempts: %w", rejected(err))
		}
		rows, err := br.Query()
		if err != nil {
			return fmt.Errorf("updating deliveries: %w", rejected(err))
		}
		done, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("updating deliveries: %w", rejected(err))
		}
		mine := make(map[string]bool, len(done))
		for _, id := range done {
			mine[id] = true
		}
		for i, r := range rs {
			owned[i] = mine[r.Delivery.ID]
		}
		return br.Close()
	}
	var err error
	if !slices.ContainsFunc(rs, func(r orderflow.DeliveryReport) bool { return r.Result.DisableReason != "" }) {
		// The usual case: the attempts and the updates are one pipeline that PostgreSQL runs
		// as one implicit transaction, one round trip instead of BEGIN, two statements, COMMIT.
		err = db.retrying(ctx, func() error { return read(db.pool.SendBatch(ctx, queue())) })
	} else {
		// An endpoint to disable: in the same transaction, once the update said the claim
		// was still ours.
		err = db.inTx(ctx, func(tx pgx.Tx) error {
			if err := read(tx.SendBatch(ctx, queue())); err != nil {
				return err
			}
			for i, r := range rs {
				if owned[i] && r.Result.DisableReason != "" {
					if err := disableEndpoint(ctx, tx, r.Delivery.EndpointID, r.Result.DisableReason); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	if err != nil {
		return nil, err
	}
	return owned, nil
}

// ReleaseClaim gives a claimed delivery back at once, for a deliverer that stops mid-attempt.
func (db *DB) ReleaseClaim(ctx context.Context, d orderflow.Delivery) error {
	if _, err := db.pool.Exec(ctx, `UPDATE webhook_deliveries SET next_attempt_at = now(), claim_token = NULL
		WHERE id = $1 AND claim_token = $2`, d.ID, d.ClaimToken); err != nil {
		return fmt.Errorf("releasing delivery claim: %w", err)
	}
	return nil
}

// DeliveryStats counts deliveries by state for the gauges. It runs every few seconds, so each
// count reads only its state's partial index (pending: the per-endpoint due index, dead: the dead-letter
// index) and never the succeeded deliveries, which are nearly all of the table; a filter of
// state <> 'succeeded' had no index to serve it and read every row. Deliveries of deleted
// endpoints are history, not work, and do not count.
func (db *DB) DeliveryStats(ctx context.Context) (orderflow.DeliveryStats, error) {
	var s orderflow.DeliveryStats
	err := db.pool.QueryRow(ctx, `SELECT p.pending, p.retrying,
			(SELECT count(*) FROM webhook_deliveries d WHERE state = 'dead'
			  AND NOT EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = d.endpoint_id AND e.deleted_at IS NOT NULL))
		FROM (SELECT count(*) AS pending, count(*) FILTER (WHERE attempts > 0) AS retrying
		      FROM webhook_deliveries d WHERE state = 'pending'
		        AND NOT EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = d.endpoint_id AND e.deleted_at IS NOT NULL)) p`).Scan(&s.Pending, &s.Retrying, &s.Dead)
	if err != nil {
		return s, fmt.Errorf("counting deliveries: %w", err)
	}
	return s, nil
}

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

// Reconciliation reads and repairs. They compare the source of truth with the read model and
// the delivery tables; reconcile decides what is drift.

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

// orderStateColumns reads an order, its summary and the repair of its current version. The
// summary and the repair are looked up per order (LATERAL with LIMIT 1, which the planner
// cannot flatten into a join: one primary-key probe each): with a plain join the planner merged the page of orders with order_summary read from
// its first row, which made every page of a full pass cost the pages before it (a full pass
// over a million orders took minutes instead of seconds).
const orderStateColumns = `o.id::text, o.status, o.version, o.created_at, o.updated_at,
	s.status IS NOT NULL, coalesce(s.status, ''), coalesce(s.version, 0),
	rr.event_id::text, rr.created_at, rr.state = 'refused', coalesce(rr.reason, ''), rr.reported_at IS NOT NULL
	FROM orders o
	LEFT JOIN LATERAL (SELECT status, version FROM order_summary WHERE order_id = o.id LIMIT 1) s ON true
	LEFT JOIN LATERAL (SELECT event_id, created_at, state, reason, reported_at FROM reconcile_repairs
	                   WHERE order_id = o.id AND version = o.version LIMIT 1) rr ON true`

func scanOrderStates(rows pgx.Rows) ([]orderflow.OrderState, error) {
	defer rows.Close()
	var out []orderflow.OrderState
	for rows.Next() {
		var (
			s                 orderflow.OrderState
			status, sumStatus string
			repairID          *string
			repairAt          *time.Time
			refused, reported *bool
			reason            string
		)
		if err := rows.Scan(&s.OrderID, &status, &s.Version, &s.CreatedAt, &s.UpdatedAt,
			&s.HasSummary, &sumStatus, &s.SummaryVersion, &repairID, &repairAt, &refused, &reason, &reported); err != nil {
			return nil, err
		}
		s.Status, s.SummaryStatus = orderflow.Status(status), orderflow.Status(sumStatus)
		s.CreatedAt, s.UpdatedAt = s.CreatedAt.UTC(), s.UpdatedAt.UTC()
		s.Repair = repairState(repairID, repairAt, refused, reason, reported)
		out = append(out, s)
	}
	return out, rows.Err()
}

func repairState(id *string, at *time.Time, refused *bool, reason string, reported *bool) *orderflow.RepairState {
	if id == nil {
		return nil
	}
	st := &orderflow.RepairState{EventID: *id, Reason: reason}
	if at != nil {
		st.PublishedAt = at.UTC()
	}
	st.Refused = refused != nil && *refused
	st.Reported = reported != nil && *reported
	return st
}

// OrderStates returns up to limit orders with ids after afterID, in id order, each with its
// summary: one page of a keyset scan over every order.
func (db *DB) OrderStates(ctx context.Context, afterID string, limit int) ([]orderflow.OrderState, error) {
	if afterID == "" {
		afterID = uuid.Nil.String()
	}
	rows, err := db.pool.Query(ctx, `SELECT `+orderStateColumns+`
		WHERE o.id > $1::uuid ORDER BY o.id LIMIT $2`, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("scanning orders: %w", err)
	}
	out, err := scanOrderStates(rows)
	if err != nil {
		return nil, fmt.Errorf("scanning orders: %w", err)
	}
	return out, nil
}

// DatabaseNow returns the database's clock: an incremental pass measures ages against it
// without counting the orders.
func (db *DB) DatabaseNow(ctx context.Context) (time.Time, error) {
	var now time.Time
	if err := db.pool.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
		return time.Time{}, fmt.Errorf("reading the database clock: %w", err)
	}
	return now.UTC(), nil
}

// OrderStatesChangedSince returns up to limit orders whose (updated_at, id) comes after
// (afterAt, afterID), in that order: one page of reconcile's incremental pass, which reads
// orders_updated_idx instead of every order. The first page of the orders changed at or after
// t is (t, "").
func (db *DB) OrderStatesChangedSince(ctx context.Context, afterAt time.Time, afterID string, limit int) ([]orderflow.OrderState, error) {
	if afterID == "" {
		afterID = uuid.Nil.String()
	}
	rows, err := db.pool.Query(ctx, `SELECT `+orderStateColumns+`
		WHERE (o.updated_at, o.id) > ($1, $2::uuid) ORDER BY o.updated_at, o.id LIMIT $3`, afterAt, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("reading changed orders: %w", err)
	}
	out, err := scanOrderStates(rows)
	if err != nil {
		return nil, fmt.Errorf("reading changed orders: %w", err)
	}
	return out, nil
}

// OrderStatesByID returns the orders named, for reconcile to recheck its open findings.
func (db *DB) OrderStatesByID(ctx context.Context, ids []string) ([]orderflow.OrderState, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT `+orderStateColumns+` WHERE o.id = ANY ($1::uuid[]) ORDER BY o.id`, ids)
	if err != nil {
		return nil, fmt.Errorf("rechecking orders: %w", err)
	}
	out, err := scanOrderStates(rows)
	if err != nil {
		return nil, fmt.Errorf("rechecking orders: %w", err)
	}
	return out, nil
}

// OpenOrdersCreatedBefore returns up to limit orders still pending that were created before
// before, oldest first: the candidates for the fulfillment SLA, read from the partial index of
// pending orders, so the check costs what is open, not what exists.
func (db *DB) OpenOrdersCreatedBefore(ctx context.Context, before time.Time, limit int) ([]orderflow.OrderState, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+orderStateColumns+`
		WHERE o.status = 'pending' AND o.created_at < $1 ORDER BY o.created_at LIMIT $2`, before, limit)
	if err != nil {
		return nil, fmt.Errorf("reading open orders: %w", err)
	}
	out, err := scanOrderStates(rows)
	if err != nil {
		return nil, fmt.Errorf("reading open orders: %w", err)
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

// undeliveredQuery finds, for outbox events matching its WHERE (appended by the caller), the
// endpoints subscribed to them (the event's type or "*", enabled, registered before the event)
// that have no delivery of the event's fact at all: neither of the event itself, nor of any
// event restating the same (subject, type, data.version), such as a repair. Each NOT EXISTS
// is one probe of its own index. Repair events are not checked themselves: their fact is,
// through the event they restate.
const undeliveredQuery = `
	SELECT ob.id::text, ob.event_type, ob.aggregate_id, coalesce((ob.payload->>'version')::int, 0), ob.created_at, e.id::text,
	       rr.event_id::text, rr.created_at, rr.state = 'refused', coalesce(rr.reason, ''), rr.reported_at IS NOT NULL
	FROM outbox ob
	JOIN webhook_endpoints e ON e.disabled_at IS NULL AND (ob.event_type = ANY (e.event_types) OR '*' = ANY (e.event_types))
	     AND e.created_at <= ob.created_at
	LEFT JOIN reconcile_repairs rr ON rr.order_id = ob.aggregate_id::uuid AND rr.version = (ob.payload->>'version')::int
	WHERE ob.aggregate_type = 'order' AND rr.event_id IS DISTINCT FROM ob.id
	  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = ob.id::text AND d.endpoint_id = e.id)
	  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.subject = ob.aggregate_id
	                  AND d.event_type = ob.event_type AND d.fact_version = (ob.payload->>'version')::int)`

func scanUndelivered(rows pgx.Rows) ([]orderflow.UndeliveredEvent, error) {
	defer rows.Close()
	var out []orderflow.UndeliveredEvent
	for rows.Next() {
		var (
			u                 orderflow.UndeliveredEvent
			repairID          *string
			repairAt          *time.Time
			refused, reported *bool
			reason            string
		)
		if err := rows.Scan(&u.EventID, &u.EventType, &u.OrderID, &u.Version, &u.At, &u.EndpointID,
			&repairID, &repairAt, &refused, &reason, &reported); err != nil {
			return nil, err
		}
		u.At = u.At.UTC()
		u.Repair = repairState(repairID, repairAt, refused, reason, reported)
		out = append(out, u)
	}
	return out, rows.Err()
}

// UndeliveredEvents lists order events written between from and to (outbox time) of which a
// subscribed endpoint has no delivery (see undeliveredQuery). It only sees events still in the
// outbox (capture's retention deletes older rows).
func (db *DB) UndeliveredEvents(ctx context.Context, from, to time.Time, limit int) ([]orderflow.UndeliveredEvent, error) {
	rows, err := db.pool.Query(ctx, undeliveredQuery+`
		  AND ob.created_at >= $1 AND ob.created_at < $2
		ORDER BY ob.created_at, ob.id LIMIT $3`, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("finding undelivered events: %w", err)
	}
	out, err := scanUndelivered(rows)
	if err != nil {
		return nil, fmt.Errorf("finding undelivered events: %w", err)
	}
	return out, nil
}

// UndeliveredEventsByID is UndeliveredEvents for the events named, wherever they are in time:
// reconcile rechecks its open findings with it.
func (db *DB) UndeliveredEventsByID(ctx context.Context, ids []string) ([]orderflow.UndeliveredEvent, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, undeliveredQuery+` AND ob.id = ANY ($1::uuid[]) ORDER BY ob.created_at, ob.id`, ids)
	if err != nil {
		return nil, fmt.Errorf("rechecking undelivered events: %w", err)
	}
	out, err := scanUndelivered(rows)
	if err != nil {
		return nil, fmt.Errorf("rechecking undelivered events: %w", err)
	}
	return out, nil
}

// StuckDeliveries lists deliveries to enabled endpoints still pending although their cycle
// began before horizon: the deliverer is not settling them. It reads the pending deliveries
// only (their partial index), never the settled ones.
func (db *DB) StuckDeliveries(ctx context.Context, horizon time.Time, limit int) ([]orderflow.UndeliveredEvent, error) {
	rows, err := db.pool.Query(ctx, `
		SELECT d.event_id, d.event_type, d.subject, coalesce(d.fact_version, 0), coalesce(d.event_time, d.created_at),
		       d.endpoint_id::text, d.cycle_started_at
		FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.disabled_at IS NULL
		WHERE d.state = 'pending' AND d.cycle_started_at < $1
		ORDER BY d.cycle_started_at LIMIT $2`, horizon, limit)
	if err != nil {
		return nil, fmt.Errorf("finding stuck deliveries: %w", err)
	}
	defer rows.Close()
	var out []orderflow.UndeliveredEvent
	for rows.Next() {
		u := orderflow.UndeliveredEvent{Stuck: true}
		if err := rows.Scan(&u.EventID, &u.EventType, &u.OrderID, &u.Version, &u.At, &u.EndpointID, &u.CycleStartedAt); err != nil {
			return nil, fmt.Errorf("finding stuck deliveries: %w", err)
		}
		u.At, u.CycleStartedAt = u.At.UTC(), u.CycleStartedAt.UTC()
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("finding stuck deliveries: %w", err)
	}
	return out, nil
}

// FailedCallbacks lists up to limit callbacks the mock partner gave up on (its replayable
// list), oldest failure first, through the partial index of failed callbacks; none when the
// partner's tables are not there.
func (db *DB) FailedCallbacks(ctx context.Context, limit int) ([]orderflow.FailedCallback, error) {
	var ok bool
	if err := db.pool.QueryRow(ctx, `SELECT to_regclass('partner.callbacks') IS NOT NULL`).Scan(&ok); err != nil || !ok {
		if err != nil {
			return nil, fmt.Errorf("checking for the partner's tables: %w", err)
		}
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT webhook_id, order_id, action, attempts, coalesce(last_error, ''), done_at
		FROM partner.callbacks WHERE state = 'failed' ORDER BY done_at LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("reading failed callbacks: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (orderflow.FailedCallback, error) {
		var c orderflow.FailedCallback
		var at *time.Time
		err := row.Scan(&c.WebhookID, &c.OrderID, &c.Action, &c.Attempts, &c.Error, &at)
		if at != nil {
			c.FailedAt = at.UTC()
		}
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading failed callbacks: %w", err)
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

// fact is what a repair restates: order orderID reached version with an event of eventType,
// whose data is payload.
type fact struct {
	orderID   string
	version   int
	eventType string
	schema    int
	payload   []byte
}

// RepairOrder repairs read-model drift through the pipeline: it restates the order's current
// state (its version, the event type of its status, the order as the API returns it) as a
// repair event in the outbox, so capture, the projector and the deliverer converge the normal
// way; it never touches the read model. The order row is read FOR SHARE, so a concurrent
// cancel or fulfill commits after the repair and its newer version reaches consumers last.
func (db *DB) RepairOrder(ctx context.Context, orderID, kind string) (orderflow.Repair, error) {
	return db.repair(ctx, kind, func(tx pgx.Tx) (fact, error) {
		o, err := scanOrder(tx.QueryRow(ctx, selectOrder+" FOR SHARE", orderID))
		if err != nil {
			return fact{}, err
		}
		payload, err := json.Marshal(o)
		if err != nil {
			return fact{}, fmt.Errorf("encoding repair payload: %w", err)
		}
		return fact{orderID: o.ID, version: o.Version, eventType: stateEventType(o.Status),
			schema: orderflow.OrderSchemaVersion, payload: payload}, nil
	})
}

// RepairEvent repairs an event an endpoint never got: it restates that event's fact (its
// order, type and data, at its version, not the order's current state) as a repair event, so
// the endpoints subscribed to its type receive it even if the order has moved on.
func (db *DB) RepairEvent(ctx context.Context, eventID, kind string) (orderflow.Repair, error) {
	return db.repair(ctx, kind, func(tx pgx.Tx) (fact, error) {
		var f fact
		err := tx.QueryRow(ctx, `SELECT aggregate_id, coalesce((payload->>'version')::int, 0), event_type, schema_version, payload::text
			FROM outbox WHERE id = $1 AND aggregate_type = $2`, eventID, orderflow.AggregateOrder).
			Scan(&f.orderID, &f.version, &f.eventType, &f.schema, &f.payload)
		if errors.Is(err, pgx.ErrNoRows) {
			return f, fmt.Errorf("event %s is no longer in the outbox", eventID)
		}
		if err != nil {
			return f, fmt.Errorf("reading event %s: %w", eventID, err)
		}
		return f, nil
	})
}

// repair publishes the fact read by read, at most once ever: reconcile_repairs is claimed in
// the same transaction as the outbox row, and a fact found there is not published again,
// whatever became of it (its state is returned instead). The repair's event id is
// orderflow.RepairEventID of the fact, so even a second publication (the row purged by
// retention) is one event to every receiver. A repair PostgreSQL refuses for its values is
// recorded as refused with the reason, so it is reported and never tried again.
func (db *DB) repair(ctx context.Context, kind string, read func(pgx.Tx) (fact, error)) (orderflow.Repair, error) {
	var (
		rep orderflow.Repair
		f   fact
	)
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		rep = orderflow.Repair{}
		var err error
		if f, err = read(tx); err != nil {
			return err
		}
		rep.EventID, rep.Version = orderflow.RepairEventID(f.orderID, f.version, f.eventType), f.version
		var at time.Time
		err = tx.QueryRow(ctx, `INSERT INTO reconcile_repairs (order_id, version, kind, event_id, event_type)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (order_id, version) DO NOTHING RETURNING created_at`,
			f.orderID, f.version, kind, rep.EventID, f.eventType).Scan(&at)
		if errors.Is(err, pgx.ErrNoRows) {
			st, err := readRepair(ctx, tx, f.orderID, f.version)
			rep.State = st
			return err
		}
		if err != nil {
			return fmt.Errorf("claiming repair: %w", rejected(err))
		}
		if _, err := tx.Exec(ctx, `INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, schema_version, payload, created_at, traceparent)
			VALUES ($1, $2, $3, $4, $5, $6::jsonb, now(), $7) ON CONFLICT (id) DO NOTHING`,
			rep.EventID, orderflow.AggregateOrder, f.orderID, f.eventType, f.schema, string(f.payload), traceParent(ctx)); err != nil {
			return fmt.Errorf("writing repair event: %w", rejected(err))
		}
		rep.Published, rep.State = true, orderflow.RepairState{EventID: rep.EventID, PublishedAt: at.UTC()}
		return nil
	})
	if !errors.Is(err, orderflow.ErrRejectedData) || f.orderID == "" {
		return rep, err
	}
	reason := orderflow.StorableText(err.Error(), 2000)
	rerr := db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO reconcile_repairs (order_id, version, kind, event_id, event_type, state, reason)
			VALUES ($1, $2, $3, $4, $5, 'refused', $6) ON CONFLICT (order_id, version) DO NOTHING`,
			f.orderID, f.version, kind, rep.EventID, f.eventType, reason)
		if err != nil {
			return fmt.Errorf("recording a refused repair: %w", err)
		}
		rep.Refused = tag.RowsAffected() == 1
		st, err := readRepair(ctx, tx, f.orderID, f.version)
		rep.State = st
		return err
	})
	return rep, rerr
}

func readRepair(ctx context.Context, tx pgx.Tx, orderID string, version int) (orderflow.RepairState, error) {
	var (
		st  orderflow.RepairState
		at  time.Time
		ref string
	)
	err := tx.QueryRow(ctx, `SELECT event_id::text, created_at, state, coalesce(reason, ''), reported_at IS NOT NULL
		FROM reconcile_repairs WHERE order_id = $1 AND version = $2`, orderID, version).
		Scan(&st.EventID, &at, &ref, &st.Reason, &st.Reported)
	if err != nil {
		return st, fmt.Errorf("reading repair: %w", err)
	}
	st.PublishedAt, st.Refused = at.UTC(), ref == "refused"
	return st, nil
}

// MarkRepairReported records that the repair of (orderID, version) was reported as not
// clearing its finding, and reports whether this call did it: the report happens once, however
// many runs (or reconcilers) see the finding.
func (db *DB) MarkRepairReported(ctx context.Context, orderID string, version int) (bool, error) {
	tag, err := db.pool.Exec(ctx, `UPDATE reconcile_repairs SET reported_at = now()
		WHERE order_id = $1 AND version = $2 AND reported_at IS NULL`, orderID, version)
	if err != nil {
		return false, fmt.Errorf("marking repair reported: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

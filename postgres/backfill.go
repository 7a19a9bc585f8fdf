package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"orderflow"
)

// Backfill: re-emitting every order's current state through the outbox, for a consumer or a
// webhook endpoint that starts after the topic's retention deleted the events it needs.

// selectOrderPage reads a page of orders in id order with the same columns as selectOrder, so a
// column added to orders reaches a re-emitted event exactly as it reaches the API's own.
var selectOrderPage = func() string {
	const where = "WHERE o.id = $1"
	if !strings.HasSuffix(selectOrder, where) {
		panic("postgres: selectOrder no longer ends in " + where + "; update selectOrderPage")
	}
	return strings.TrimSuffix(selectOrder, where) + "WHERE o.id > $1::uuid ORDER BY o.id LIMIT $2 FOR SHARE OF o"
}()

// CountOrdersAfter counts the orders whose id sorts after afterID ("" for all of them), the
// total a backfill reports its progress against.
func (db *DB) CountOrdersAfter(ctx context.Context, afterID string) (int64, error) {
	if afterID == "" {
		afterID = uuid.Nil.String()
	}
	var n int64
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE id > $1::uuid`, afterID).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting orders: %w", err)
	}
	return n, nil
}

// EmitOrderStates writes the current state of up to limit orders with ids after afterID, in id
// order, to the outbox: one event per order, of the type its status announces, carrying the
// order at its current version, with the id orderflow.StateEventID(order, version, type). It
// returns what it did; LastOrderID is where the next page starts (empty when there are no more
// orders).
//
// A state already in the outbox (an earlier backfill of the same version whose row retention
// has not deleted yet) is not written again: the id is deterministic and the outbox's primary key
// refuses the copy. Consumers absorb what gets through anyway: the read model applies a version
// once, and deliveries are unique per (event id, endpoint).
//
// The page is read FOR SHARE in the transaction that writes its events, so a concurrent cancel
// or fulfill commits after it and its newer version reaches consumers last, as in
// RepublishOrder. The event's time is the transaction's (now()): the time of the occurrence is
// the order's updated_at, in the data; keeping the outbox time current keeps capture's retention
// and the pipeline's latency measures meaningful. The page's events carry ctx's traceparent, if
// any (the backfill's span for the page).
func (db *DB) EmitOrderStates(ctx context.Context, afterID string, limit int) (orderflow.StatePage, error) {
	if afterID == "" {
		afterID = uuid.Nil.String()
	} else if _, err := uuid.Parse(afterID); err != nil {
		return orderflow.StatePage{}, fmt.Errorf("emitting order states: order id %q to start after is not a UUID", afterID)
	}
	var page orderflow.StatePage
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		page = orderflow.StatePage{}
		rows, err := tx.Query(ctx, selectOrderPage, afterID, limit)
		if err != nil {
			return fmt.Errorf("reading orders: %w", err)
		}
		var orders []*orderflow.Order
		for rows.Next() {
			o, err := scanOrder(rows)
			if err != nil {
				rows.Close()
				return err
			}
			orders = append(orders, o)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("reading orders: %w", err)
		}
		if len(orders) == 0 {
			return nil
		}
		ids := make([]string, len(orders))
		orderIDs := make([]string, len(orders))
		types := make([]string, len(orders))
		payloads := make([]string, len(orders))
		for i, o := range orders {
			typ := stateEventType(o.Status)
			b, err := json.Marshal(o)
			if err != nil {
				return fmt.Errorf("encoding order %s: %w", o.ID, err)
			}
			ids[i], orderIDs[i], types[i], payloads[i] = orderflow.StateEventID(o.ID, o.Version, typ), o.ID, typ, string(b)
		}
		// One statement for the page; the rows go in in id order, so capture publishes them in
		// the order the page was read.
		tag, err := tx.Exec(ctx, `
			INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, schema_version, payload, created_at, traceparent)
			SELECT e.id, $1, e.order_id, e.type, $2, e.payload::jsonb, now(), $7
			FROM unnest($3::uuid[], $4::text[], $5::text[], $6::text[]) WITH ORDINALITY AS e(id, order_id, type, payload, n)
			ORDER BY e.n
			ON CONFLICT (id) DO NOTHING`,
			orderflow.AggregateOrder, orderflow.OrderSchemaVersion, ids, orderIDs, types, payloads, traceParent(ctx))
		if err != nil {
			return fmt.Errorf("writing state events: %w", err)
		}
		page.Scanned = len(orders)
		page.Emitted = int(tag.RowsAffected())
		page.LastOrderID = orders[len(orders)-1].ID
		return nil
	})
	return page, err
}

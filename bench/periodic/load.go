package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// The load: orders' worth of rows in every table a periodic query or a purge reads, written
// straight with COPY, spread evenly over the last `days` days like weeks of steady traffic
// would leave them. Each order is fulfilled (90%) or cancelled (5%) shortly after creation,
// except the last minute's, which are open; each order.created has one delivery (one partner
// endpoint), succeeded except 0.2% dead and the last five minutes' pending; the partner holds a
// receipt and a callback per delivered event. The outbox holds the last 7 days (capture's
// retention). Small tables (dead letters, repairs, faults) get 2,000 rows each.
type load struct {
	orders int
	span   time.Duration
	now    time.Time
	ep     string
}

// order is order i of the load.
type order struct {
	id, customer      string
	created, updated  time.Time
	status            string
	version           int
	createdEv, lastEv string
}

func (l *load) order(i int) order {
	created := l.now.Add(-l.span + time.Duration(float64(l.span)*float64(i)/float64(l.orders)))
	o := order{id: uuidFor(i, 0), customer: fmt.Sprintf("cust-%d", i%50000), created: created,
		updated: created.Add(2 * time.Second), status: "fulfilled", version: 2,
		createdEv: uuidFor(i, 1), lastEv: uuidFor(i, 2)}
	switch {
	case l.now.Sub(created) < time.Minute:
		o.status, o.version, o.updated, o.lastEv = "pending", 1, created, o.createdEv
	case i%20 == 1:
		o.status = "cancelled"
	}
	return o
}

// uuidFor is a deterministic UUID per order and role, so rows that refer to each other
// (order, events, delivery, receipt) agree without keeping a million ids in memory.
func uuidFor(i, role int) string {
	var b [16]byte
	b[0], b[1], b[2], b[3] = byte(role), byte(i>>24), byte(i>>16), byte(i>>8)
	b[4] = byte(i)
	u := uuid.NewSHA1(uuid.NameSpaceOID, b[:])
	return u.String()
}

func payload(o order, status string, version int) []byte {
	b, _ := json.Marshal(map[string]any{"id": o.id, "customer_id": o.customer, "currency": "EUR", "status": status,
		"items": []map[string]any{{"sku": "SKU-1", "quantity": 1, "unit_price_cents": 1250}}, "total_cents": 1250,
		"version": version, "created_at": o.created, "updated_at": o.updated})
	return b
}

func (l *load) copy(ctx context.Context, c *pgx.Conn, table string, cols []string, n int, row func(i int) ([]any, bool)) (int64, error) {
	i := 0
	var next []any
	src := pgx.CopyFromFunc(func() ([]any, error) {
		for i < n {
			r, ok := row(i)
			i++
			if ok {
				next = r
				return next, nil
			}
		}
		return nil, nil
	})
	tn := pgx.Identifier{table}
	if len(table) > 8 && table[:8] == "partner." {
		tn = pgx.Identifier{"partner", table[8:]}
	}
	got, err := c.CopyFrom(ctx, tn, cols, src)
	if err != nil {
		return got, fmt.Errorf("copying %s: %w", table, err)
	}
	return got, nil
}

// run writes the load and returns the rows per table.
func (l *load) run(ctx context.Context, c *pgx.Conn, logf func(string, ...any)) (map[string]int64, error) {
	out := map[string]int64{}
	if err := c.QueryRow(ctx, `INSERT INTO webhook_endpoints (url, event_types, secret, created_at)
		VALUES ('http://127.0.0.1:1/partner-hook', '{order.created}', 'whsec_dGVzdA==', now() - interval '30 days') RETURNING id::text`).Scan(&l.ep); err != nil {
		return nil, fmt.Errorf("registering the endpoint: %w", err)
	}
	outboxFrom := l.now.Add(-7 * 24 * time.Hour)
	steps := []struct {
		table string
		cols  []string
		n     int
		row   func(i int) ([]any, bool)
	}{
		{"orders", []string{"id", "client_id", "customer_id", "currency", "status", "total_cents", "version", "created_at", "updated_at"}, l.orders,
			func(i int) ([]any, bool) {
				o := l.order(i)
				return []any{o.id, "bench", o.customer, "EUR", o.status, int64(1250), int32(o.version), o.created, o.updated}, true
			}},
		{"order_items", []string{"order_id", "line", "sku", "quantity", "unit_price_cents"}, l.orders,
			func(i int) ([]any, bool) { return []any{l.order(i).id, int32(1), "SKU-1", int32(1), int64(1250)}, true }},
		{"order_summary", []string{"order_id", "customer_id", "status", "total_cents", "item_count", "currency", "version",
			"created_at", "updated_at", "last_event_id", "last_event_type", "last_event_at", "projected_at"}, l.orders,
			func(i int) ([]any, bool) {
				o := l.order(i)
				typ := "order." + o.status
				if o.status == "pending" {
					typ = "order.created"
				}
				return []any{o.id, o.customer, o.status, int64(1250), int32(1), "EUR", int32(o.version), o.created, o.updated,
					o.lastEv, typ, o.updated, o.updated.Add(20 * time.Millisecond)}, true
			}},
		{"outbox", []string{"id", "aggregate_type", "aggregate_id", "event_type", "schema_version", "payload", "created_at"}, 2 * l.orders,
			func(j int) ([]any, bool) {
				o := l.order(j / 2)
				if j%2 == 0 {
					return []any{o.createdEv, "order", o.id, "order.created", int32(1), string(payload(o, "pending", 1)), o.created}, !o.created.Before(outboxFrom)
				}
				return []any{o.lastEv, "order", o.id, "order." + o.status, int32(1), string(payload(o, o.status, 2)), o.updated},
					o.version == 2 && !o.updated.Before(outboxFrom)
			}},
		{"webhook_deliveries", []string{"id", "event_id", "endpoint_id", "event_type", "subject", "event_time", "fact_version", "payload",
			"state", "attempts", "cycle_started_at", "next_attempt_at", "last_status", "last_attempt_at", "succeeded_at", "dead_at", "created_at"}, l.orders,
			func(i int) ([]any, bool) {
				o := l.order(i)
				state, attempts, next := l.deliveryState(i, o)
				var status *int32
				var succeeded, dead *time.Time
				at := o.created.Add(50 * time.Millisecond)
				switch state {
				case "succeeded":
					s := int32(200)
					status, succeeded = &s, &at
				case "dead":
					s := int32(500)
					d := o.created.Add(8 * time.Hour)
					status, dead = &s, &d
				}
				return []any{uuidFor(i, 3), o.createdEv, l.ep, "order.created", o.id, o.created, int32(1), payload(o, "pending", 1),
					state, int32(attempts), o.created, next, status, at, succeeded, dead, o.created}, true
			}},
		{"webhook_delivery_attempts", []string{"delivery_id", "attempt", "started_at", "latency_ms", "status", "outcome"}, l.orders,
			func(i int) ([]any, bool) {
				o := l.order(i)
				return []any{uuidFor(i, 3), int32(1), o.created.Add(10 * time.Millisecond), 12.5, int32(200), "success"}, true
			}},
		{"partner.receipts", []string{"webhook_id", "event_type", "subject", "event_time", "received_at", "fact_version"}, l.orders,
			func(i int) ([]any, bool) {
				o := l.order(i)
				state, _, _ := l.deliveryState(i, o)
				return []any{o.createdEv, "order.created", o.id, o.created, o.created.Add(40 * time.Millisecond), int32(1)}, state == "succeeded"
			}},
		{"partner.callbacks", []string{"webhook_id", "order_id", "action", "due_at", "attempts", "state", "last_status", "done_at"}, l.orders,
			func(i int) ([]any, bool) {
				o := l.order(i)
				state, _, _ := l.deliveryState(i, o)
				cb, done := "done", o.created.Add(time.Second)
				if o.status == "pending" {
					cb = "pending"
				} else if i%1000 == 7 {
					cb = "failed"
				}
				var doneAt *time.Time
				if cb != "pending" {
					doneAt = &done
				}
				return []any{o.createdEv, o.id, "fulfill", o.created.Add(time.Second), int32(1), cb, int32(200), doneAt}, state == "succeeded"
			}},
	}
	small := func(table string, cols []string, row func(i int, at time.Time) []any) {
		steps = append(steps, struct {
			table string
			cols  []string
			n     int
			row   func(i int) ([]any, bool)
		}{table, cols, 2000, func(i int) ([]any, bool) {
			return row(i, l.now.Add(-l.span+time.Duration(float64(l.span)*float64(i)/2000))), true
		}})
	}
	small("projector_dead_letters", []string{"topic", "kafka_partition", "kafka_offset", "event_id", "order_id", "error", "attempts", "dead_at"},
		func(i int, at time.Time) []any {
			return []any{"orderflow.order", int32(0), int64(i), uuidFor(i, 9), uuidFor(i, 0), "bench", int32(3), at}
		})
	small("webhook_intake_dead_letters", []string{"topic", "kafka_partition", "kafka_offset", "error", "attempts", "dead_at"},
		func(i int, at time.Time) []any {
			return []any{"orderflow.order", int32(0), int64(i), "bench", int32(2), at}
		})
	small("reconcile_repairs", []string{"order_id", "version", "kind", "event_id", "event_type", "created_at"},
		func(i int, at time.Time) []any {
			return []any{uuidFor(i, 0), int32(2), "stale_summary", uuidFor(i, 8), "order.fulfilled", at}
		})
	small("partner.faults", []string{"webhook_id", "kind", "at"},
		func(i int, at time.Time) []any { return []any{uuidFor(i, 1), "error", at} })
	small("partner.dead_letters", []string{"webhook_id", "reason", "received_at"},
		func(i int, at time.Time) []any { return []any{uuidFor(i, 7), "bench", at} })

	for _, s := range steps {
		t0 := time.Now()
		n, err := l.copy(ctx, c, s.table, s.cols, s.n, s.row)
		if err != nil {
			return nil, err
		}
		out[s.table] = n
		logf("loaded %-28s %9d rows in %s", s.table, n, time.Since(t0).Round(time.Millisecond))
	}
	return out, nil
}

// deliveryState is delivery i's state: the last five minutes pending (half of them retrying),
// 0.2% dead, the rest succeeded.
func (l *load) deliveryState(i int, o order) (state string, attempts int, next time.Time) {
	switch {
	case l.now.Sub(o.created) < 5*time.Minute:
		if i%2 == 0 {
			return "pending", 1, l.now.Add(30 * time.Second)
		}
		return "pending", 0, o.created
	case i%500 == 3:
		return "dead", 18, o.created
	}
	return "succeeded", 1, o.created
}

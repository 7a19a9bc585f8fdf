package main

import (
	"context"
	"fmt"
	"time"
)

// The soak (make soak): orders at a steady rate while Kafka is stopped for a long time, then
// started again. Capture cannot confirm anything meanwhile, so the slot's retained WAL grows
// and the outbox piles up; once Kafka is back, capture must drain that backlog by itself while
// the load goes on. The usual invariants are checked afterwards, and the soak reports how long
// the catch-up took.

// soakWarmup and soakCooldown frame the outage with normal load.
const soakWarmup, soakCooldown = 60 * time.Second, 90 * time.Second

// soakLength is how long a soak's load runs.
func soakLength(outage time.Duration) time.Duration { return soakWarmup + outage + soakCooldown }

// soakKafkaOutage stops every Kafka node soakWarmup into the load, starts them again after
// the outage, and measures how long capture and the projector take to catch up.
func (d *drill) soakKafkaOutage(ctx context.Context) {
	if !sleepCtx(ctx, soakWarmup) {
		return
	}
	c, err := d.connect(ctx)
	if err != nil {
		d.logf("soak: %v", err)
		return
	}
	defer c.Close(context.Background())
	d.logf("soak: stopping kafka for %s at %d orders", d.cfg.soak, d.created.Load())
	d.stack(ctx, "stop", "kafka")
	d.mu.Lock()
	d.injected = append(d.injected, "kafka stopped "+d.cfg.soak.String())
	d.mu.Unlock()
	stopped := time.Now()
	if !sleepCtx(ctx, d.cfg.soak) {
		return
	}
	var walAtRestart string
	var backlog int64
	_ = c.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&walAtRestart)
	_ = c.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE created_at >= $1`, stopped).Scan(&backlog)
	var lag, retained int64
	_ = c.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint, (pg_current_wal_lsn() - restart_lsn)::bigint
		FROM pg_replication_slots WHERE slot_name = $1`, slotName).Scan(&lag, &retained)
	d.stack(ctx, "start", "kafka")
	// stack.sh returns once every node listens: from here on capture's catch-up is capture's.
	restarted := time.Now()
	d.logf("soak: kafka answers again after %s; %d outbox rows written meanwhile, slot %d MB behind, %d MB of WAL retained",
		time.Since(stopped).Round(time.Second), backlog, lag>>20, retained>>20)

	// Capture caught up once the slot confirmed the WAL written up to the restart; the
	// projector once every order created before the restart has its summary.
	var captureDone, projectorDone time.Duration
	for (captureDone == 0 || (projectorDone == 0 && d.hasService("project"))) && time.Since(restarted) < 15*time.Minute {
		if !sleepCtx(ctx, 500*time.Millisecond) {
			break
		}
		if captureDone == 0 {
			var ok bool
			if c.QueryRow(ctx, `SELECT coalesce(confirmed_flush_lsn >= $1::pg_lsn, false) FROM pg_replication_slots WHERE slot_name = $2`,
				walAtRestart, slotName).Scan(&ok) == nil && ok {
				captureDone = time.Since(restarted)
				d.logf("soak: capture caught up %s after kafka answered again", captureDone.Round(100*time.Millisecond))
			}
		}
		if projectorDone == 0 && d.hasService("project") {
			if n := d.count(ctx, c, `SELECT count(*) FROM orders o LEFT JOIN order_summary s ON s.order_id = o.id
				WHERE o.created_at < $1 AND o.created_at >= $2 AND s.order_id IS NULL`, restarted, d.started); n == 0 {
				projectorDone = time.Since(restarted)
				d.logf("soak: the projector caught up %s after kafka answered again", projectorDone.Round(100*time.Millisecond))
			}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.notes = append(d.notes,
		fmt.Sprintf("soak: kafka down\t%s at %.0f orders/s", d.cfg.soak, d.cfg.rate),
		fmt.Sprintf("soak: outbox rows written while kafka was down\t%d", backlog),
		fmt.Sprintf("soak: slot behind / WAL retained at the restart\t%d MB / %d MB", lag>>20, retained>>20),
		fmt.Sprintf("soak: capture caught up after kafka answered again\t%s", orNever(captureDone)),
		fmt.Sprintf("soak: projector caught up after kafka answered again\t%s", orNever(projectorDone)),
	)
}

func orNever(d time.Duration) string {
	if d == 0 {
		return "not within the load (see the settle below)"
	}
	return d.Round(100 * time.Millisecond).String()
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

package postgres

import (
	"context"
	"fmt"
	"time"
)

// Retention: batched purges, one short statement per batch, each walking the index on its age
// column (migration 00004), and the age of the oldest row each rule keeps. Which rows and how
// long is decided by the service that writes the table; see docs/RETENTION.md.

// purge runs one batch of a purge statement whose $1 is the window in seconds and $2 the
// batch size, and returns the rows it deleted.
func (db *DB) purge(ctx context.Context, what, sql string, keep time.Duration, limit int) (int64, error) {
	tag, err := db.pool.Exec(ctx, sql, keep.Seconds(), limit)
	if err != nil {
		return 0, fmt.Errorf("purging %s: %w", what, err)
	}
	return tag.RowsAffected(), nil
}

// oldestAge runs a query returning the oldest kept row's timestamp (NULL: none) and returns
// its age.
func (db *DB) oldestAge(ctx context.Context, what, sql string) (time.Duration, error) {
	var secs float64
	if err := db.pool.QueryRow(ctx, `SELECT coalesce(extract(epoch FROM now() - (`+sql+`)), 0)::float8`).Scan(&secs); err != nil {
		return 0, fmt.Errorf("reading the oldest %s: %w", what, err)
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// deliveriesPurge deletes a batch of deliveries in one state older than the window, with their
// attempts, in one statement. The batch's ids travel as one array so that both deletes are
// index probes (a join against the batch let the planner read both tables whole once a batch
// was large). SKIP LOCKED leaves a delivery being replayed to its replay.
const deliveriesPurge = `
	WITH doomed AS (
		SELECT ARRAY(SELECT id FROM webhook_deliveries
		             WHERE state = '%[1]s' AND %[2]s < now() - make_interval(secs => $1)
		             ORDER BY %[2]s LIMIT $2 FOR UPDATE SKIP LOCKED) AS ids
	), attempts AS (
		DELETE FROM webhook_delivery_attempts WHERE delivery_id = ANY ((SELECT ids FROM doomed)::uuid[])
	)
	DELETE FROM webhook_deliveries WHERE id = ANY ((SELECT ids FROM doomed)::uuid[])`

// agePurge deletes a batch of rows of an insert-only table older than the window: the rows
// are picked through the index on column and deleted by their ctid (a TID scan, no second
// lookup).
func agePurge(table, column string) string {
	return `DELETE FROM ` + table + ` WHERE ctid = ANY (ARRAY(SELECT ctid FROM ` + table + `
		WHERE ` + column + ` < now() - make_interval(secs => $1) ORDER BY ` + column + ` LIMIT $2))`
}

// PurgeSucceededDeliveries deletes up to limit deliveries that succeeded longer than keep ago,
// with their attempts.
func (db *DB) PurgeSucceededDeliveries(ctx context.Context, keep time.Duration, limit int) (int64, error) {
	return db.purge(ctx, "succeeded deliveries", fmt.Sprintf(deliveriesPurge, "succeeded", "succeeded_at"), keep, limit)
}

// OldestSucceededDelivery is the age of the oldest succeeded delivery kept.
func (db *DB) OldestSucceededDelivery(ctx context.Context) (time.Duration, error) {
	return db.oldestAge(ctx, "succeeded delivery", `SELECT min(succeeded_at) FROM webhook_deliveries WHERE state = 'succeeded'`)
}

// PurgeDeadDeliveries deletes up to limit dead letters that died longer than keep ago, with
// their attempts.
func (db *DB) PurgeDeadDeliveries(ctx context.Context, keep time.Duration, limit int) (int64, error) {
	return db.purge(ctx, "dead letters", fmt.Sprintf(deliveriesPurge, "dead", "dead_at"), keep, limit)
}

// OldestDeadDelivery is the age of the oldest dead letter kept.
func (db *DB) OldestDeadDelivery(ctx context.Context) (time.Duration, error) {
	return db.oldestAge(ctx, "dead letter", `SELECT min(dead_at) FROM webhook_deliveries WHERE state = 'dead'`)
}

// PurgeIntakeDeadLetters deletes up to limit intake dead letters older than keep.
func (db *DB) PurgeIntakeDeadLetters(ctx context.Context, keep time.Duration, limit int) (int64, error) {
	return db.purge(ctx, "intake dead letters", agePurge("webhook_intake_dead_letters", "dead_at"), keep, limit)
}

// OldestIntakeDeadLetter is the age of the oldest intake dead letter kept.
func (db *DB) OldestIntakeDeadLetter(ctx context.Context) (time.Duration, error) {
	return db.oldestAge(ctx, "intake dead letter", `SELECT min(dead_at) FROM webhook_intake_dead_letters`)
}

// PurgeProjectorDeadLetters deletes up to limit projector dead-letter rows older than keep.
func (db *DB) PurgeProjectorDeadLetters(ctx context.Context, keep time.Duration, limit int) (int64, error) {
	return db.purge(ctx, "projector dead letters", agePurge("projector_dead_letters", "dead_at"), keep, limit)
}

// OldestProjectorDeadLetter is the age of the oldest projector dead-letter row kept.
func (db *DB) OldestProjectorDeadLetter(ctx context.Context) (time.Duration, error) {
	return db.oldestAge(ctx, "projector dead letter", `SELECT min(dead_at) FROM projector_dead_letters`)
}

// PurgeRepairs deletes up to limit reconcile_repairs rows older than keep.
func (db *DB) PurgeRepairs(ctx context.Context, keep time.Duration, limit int) (int64, error) {
	return db.purge(ctx, "reconcile repairs", agePurge("reconcile_repairs", "created_at"), keep, limit)
}

// OldestRepair is the age of the oldest reconcile_repairs row kept.
func (db *DB) OldestRepair(ctx context.Context) (time.Duration, error) {
	return db.oldestAge(ctx, "reconcile repair", `SELECT min(created_at) FROM reconcile_repairs`)
}

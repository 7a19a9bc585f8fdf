package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The data half of the customer_tier migration (sql/migrations/00010_customer_tier.sql and
// docs/SCHEMAS.md): fill the column in the orders written before it existed, in batches small
// enough that no order waits long on a row lock, then make it NOT NULL without holding a lock
// that stops writes for longer than a catalog change.

// TierProgress is where a customer-tier backfill is.
type TierProgress struct {
	Done  int64 // orders given a tier so far
	Total int64 // orders that had none when the backfill started
	// LastID is the order id the next batch starts after; "" before the first batch.
	LastID string
}

// CountOrdersWithoutTier counts the orders whose customer_tier is still NULL.
func (db *DB) CountOrdersWithoutTier(ctx context.Context) (int64, error) {
	var n int64
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE customer_tier IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting orders without a tier: %w", err)
	}
	return n, nil
}

// FillCustomerTierBatch gives 'standard' to the orders without a tier among the next batch
// orders after afterID, in id order, in one short transaction, and returns how many it changed
// and the last id it looked at ("" once no orders are left). Walking the primary key keeps each
// batch an index range scan however much is done, where "WHERE customer_tier IS NULL LIMIT n"
// would rescan every finished row on every batch.
func (db *DB) FillCustomerTierBatch(ctx context.Context, afterID string, batch int) (changed int64, lastID string, err error) {
	if afterID == "" {
		afterID = uuid.Nil.String()
	}
	err = db.pool.QueryRow(ctx, `WITH page AS (
			SELECT id FROM orders WHERE id > $1::uuid ORDER BY id LIMIT $2
		), filled AS (
			UPDATE orders o SET customer_tier = 'standard'
			FROM page WHERE o.id = page.id AND o.customer_tier IS NULL
			RETURNING 1
		)
		SELECT (SELECT count(*) FROM filled), coalesce((SELECT id::text FROM page ORDER BY id DESC LIMIT 1), '')`,
		afterID, batch).Scan(&changed, &lastID)
	if err != nil {
		return 0, "", fmt.Errorf("filling customer tiers after %s: %w", afterID, err)
	}
	return changed, lastID, nil
}

// BackfillCustomerTier fills every order without a tier, batch orders per transaction, pausing
// between batches so the backfill yields to the orders the API is writing. progress is called
// after each batch. It can be stopped and run again at any time: a second run finds only what
// the first left.
func (db *DB) BackfillCustomerTier(ctx context.Context, batch int, pause time.Duration, progress func(TierProgress)) (TierProgress, error) {
	var p TierProgress
	if batch < 1 {
		return p, errors.New("filling customer tiers: batch size must be at least 1")
	}
	total, err := db.CountOrdersWithoutTier(ctx)
	if err != nil {
		return p, err
	}
	p.Total = total
	if total == 0 {
		return p, nil
	}
	for {
		changed, last, err := db.FillCustomerTierBatch(ctx, p.LastID, batch)
		if err != nil {
			return p, err
		}
		if last == "" {
			return p, nil
		}
		p.Done += changed
		p.LastID = last
		if progress != nil {
			progress(p)
		}
		if pause > 0 {
			select {
			case <-ctx.Done():
				return p, ctx.Err()
			case <-time.After(pause):
			}
		}
	}
}

// RequireCustomerTier is the last step: once every order has a tier, customer_tier becomes NOT
// NULL and its check of known tiers is validated for the old rows. Each step takes a lock that
// lets reads and writes through while it scans (VALIDATE CONSTRAINT takes SHARE UPDATE
// EXCLUSIVE), except SET NOT NULL, which takes ACCESS EXCLUSIVE only for a catalog change: a
// valid CHECK (customer_tier IS NOT NULL) proves it without a scan. Every step gives up after
// lockTimeout rather than queue writes behind a long transaction, and is retried up to
// attempts times; the whole is safe to run again.
func (db *DB) RequireCustomerTier(ctx context.Context, lockTimeout time.Duration, attempts int) error {
	var notNull bool
	if err := db.pool.QueryRow(ctx, `SELECT attnotnull FROM pg_attribute
		WHERE attrelid = 'orders'::regclass AND attname = 'customer_tier' AND NOT attisdropped`).Scan(&notNull); err != nil {
		return fmt.Errorf("reading customer_tier: %w", err)
	}
	steps := []string{`ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_tier_known`}
	if !notNull {
		steps = append(steps,
			`ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_customer_tier_present`,
			`ALTER TABLE orders ADD CONSTRAINT orders_customer_tier_present CHECK (customer_tier IS NOT NULL) NOT VALID`,
			`ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_tier_present`,
			`ALTER TABLE orders ALTER COLUMN customer_tier SET NOT NULL`,
			`ALTER TABLE orders DROP CONSTRAINT orders_customer_tier_present`)
	}
	for _, step := range steps {
		if err := db.ddlWithLockTimeout(ctx, step, lockTimeout, attempts); err != nil {
			return err
		}
	}
	return nil
}

// ddlWithLockTimeout runs one DDL statement in a transaction of its own with lock_timeout,
// retrying when the lock was not granted in time.
func (db *DB) ddlWithLockTimeout(ctx context.Context, stmt string, lockTimeout time.Duration, attempts int) error {
	for i := 1; ; i++ {
		err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, fmt.Sprintf(`SET LOCAL lock_timeout = '%dms'`, lockTimeout.Milliseconds())); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, stmt)
			return err
		})
		var pgErr *pgconn.PgError
		if err == nil {
			return nil
		}
		if !errors.As(err, &pgErr) || pgErr.Code != "55P03" || i >= attempts { // lock_not_available
			return fmt.Errorf("%s: %w", stmt, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(i) * lockTimeout):
		}
	}
}

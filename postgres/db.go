// Package postgres is orderflow's PostgreSQL adapter: orders, inventory, idempotency keys and
// the outbox, each business change in one transaction with the event it emits.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"orderflow"
	"orderflow/internal/pgconfig"
)

// DB is a pool of connections to the orderflow database.
type DB struct {
	pool *pgxpool.Pool
	// KeyTTL is how long an idempotency key is remembered.
	KeyTTL time.Duration
	now    func() time.Time
}

// Open connects to the database at url. maxConns 0 keeps pgxpool's default.
func Open(ctx context.Context, url string, maxConns int32) (*DB, error) {
	return OpenTraced(ctx, url, maxConns, nil)
}

// OpenTraced is Open with tracer, if not nil, seeing every query the adapter runs: the
// periodic-query benchmark records the statements to EXPLAIN them as they are.
func OpenTraced(ctx context.Context, url string, maxConns int32, tracer pgx.QueryTracer) (*DB, error) {
	// A connect timeout, TCP keepalive and a TCP user timeout: a database that goes silent
	// fails connections in seconds (internal/pgconfig).
	cfg, err := pgconfig.Pool(url)
	if err != nil {
		return nil, err
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	if tracer != nil {
		cfg.ConnConfig.Tracer = tracer
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening database pool: %w", err)
	}
	return &DB{pool: pool, KeyTTL: 24 * time.Hour, now: time.Now}, nil
}

// Close closes every connection.
func (db *DB) Close() { db.pool.Close() }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return fmt.Errorf("pinging database: %w", err)
	}
	return nil
}

// timestamp is the current time at PostgreSQL's precision, so what the API answers before the
// commit equals what a later read returns.
func (db *DB) timestamp() time.Time { return db.now().UTC().Truncate(time.Microsecond) }

// inTx runs fn in a transaction and commits it. Deadlocks and serialization failures are
// retried from the start: the transaction saw nothing durable, so running it again is safe.
func (db *DB) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return db.retrying(ctx, func() error { return db.tryTx(ctx, fn) })
}

// retrying runs fn, a whole transaction, again while it fails with a deadlock or a
// serialization failure, at most four times in all.
func (db *DB) retrying(ctx context.Context, fn func() error) error {
	const attempts = 4
	var err error
	for i := 0; i < attempts; i++ {
		err = fn()
		if !retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(i+1) * 5 * time.Millisecond):
		}
	}
	return err
}

func (db *DB) tryTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// rejected marks err with orderflow.ErrRejectedData when PostgreSQL refused the values
// themselves (see its doc), so consumers can tell a poison record from an outage.
func rejected(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch {
	case strings.HasPrefix(pgErr.Code, "22"), strings.HasPrefix(pgErr.Code, "23"), pgErr.Code == "54000":
		return fmt.Errorf("%w: %w", orderflow.ErrRejectedData, err)
	}
	return err
}

func isCheckViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23514" && pgErr.ConstraintName == constraint
}

// PurgeExpiredKeys deletes idempotency keys past their expiry, in batches so it never holds
// many locks at once, and returns how many it deleted.
func (db *DB) PurgeExpiredKeys(ctx context.Context) (int64, error) {
	var total int64
	for {
		tag, err := db.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE ctid IN (
			SELECT ctid FROM idempotency_keys WHERE expires_at < now() LIMIT 5000)`)
		if err != nil {
			return total, fmt.Errorf("purging expired idempotency keys: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 5000 {
			return total, nil
		}
	}
}

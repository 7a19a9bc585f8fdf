package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"orderflow/postgres"
)

// runMigrateData runs a data migration: the half of a schema change that rewrites rows, kept out
// of `migrate` because it runs in many short transactions, alongside the services, with progress.
func runMigrateData(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate-data", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: orderflow migrate-data [flags] customer-tier\n\n"+
			"customer-tier  give every order written before tiers existed the tier standard, in batches,\n"+
			"               then make orders.customer_tier NOT NULL (docs/SCHEMAS.md)\n\nflags:\n")
		fs.PrintDefaults()
	}
	env := newEnvDefaults(getenv)
	dbURL := fs.String("database-url", getenv("DATABASE_URL"), "PostgreSQL URL of the database owner (env DATABASE_URL)")
	batch := fs.Int("batch-size", env.Int("MIGRATE_DATA_BATCH_SIZE", 1000), "rows per transaction (env MIGRATE_DATA_BATCH_SIZE)")
	pause := fs.Duration("pause", env.Duration("MIGRATE_DATA_PAUSE", 10*time.Millisecond), "pause between batches, to yield to the services (env MIGRATE_DATA_PAUSE)")
	lockTimeout := fs.Duration("lock-timeout", env.Duration("MIGRATE_DATA_LOCK_TIMEOUT", 2*time.Second), "longest wait for a table lock before a step gives up and retries (env MIGRATE_DATA_LOCK_TIMEOUT)")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	if err := env.err(); err != nil {
		return err
	}
	names, err := parseWithArgs(fs, args)
	if err != nil {
		return err
	}
	if len(names) != 1 || names[0] != "customer-tier" {
		fs.Usage()
		return fmt.Errorf("%w: name one data migration: customer-tier", errUsage)
	}
	if err := requireFlag("database-url", *dbURL, "DATABASE_URL"); err != nil {
		return err
	}
	if *batch < 1 || *pause < 0 || *lockTimeout < time.Millisecond {
		return fmt.Errorf("%w: -batch-size must be at least 1, -pause at least 0, -lock-timeout at least 1ms", errUsage)
	}
	db, err := postgres.Open(ctx, *dbURL, 2)
	if err != nil {
		return err
	}
	defer db.Close()
	start := time.Now()
	progress := func(p postgres.TierProgress) {
		if *quiet {
			return
		}
		fmt.Fprintf(stderr, "customer-tier: %d/%d orders (%d%%), %.0f orders/s, last order %s\n",
			p.Done, p.Total, 100*p.Done/max(p.Total, 1), float64(p.Done)/max(time.Since(start).Seconds(), 1e-3), p.LastID)
	}
	p, err := db.BackfillCustomerTier(ctx, *batch, *pause, progress)
	if err != nil {
		return fmt.Errorf("customer-tier: stopped after %d of %d orders (running it again goes on): %w", p.Done, p.Total, err)
	}
	fmt.Fprintf(stdout, "customer-tier: %d orders given the tier standard in %s\n", p.Done, time.Since(start).Round(time.Millisecond))
	if err := db.RequireCustomerTier(ctx, *lockTimeout, 10); err != nil {
		return fmt.Errorf("customer-tier: every order has a tier, but the column is not NOT NULL yet (running it again retries): %w", err)
	}
	fmt.Fprintln(stdout, "customer-tier: orders.customer_tier is NOT NULL and every tier is checked")
	return nil
}

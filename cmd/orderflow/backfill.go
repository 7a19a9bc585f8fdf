package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"orderflow/consumers/backfill"
	"orderflow/postgres"
)

func runBackfill(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("backfill", stderr)
	env := newEnvDefaults(getenv)
	dbURL := fs.String("database-url", getenv("DATABASE_URL"), "PostgreSQL URL (env DATABASE_URL)")
	batch := fs.Int("batch-size", env.Int("BACKFILL_BATCH_SIZE", backfill.DefaultBatchSize), "orders re-emitted per transaction (env BACKFILL_BATCH_SIZE)")
	rate := fs.Float64("rate", env.Float("BACKFILL_RATE", backfill.DefaultRate), "orders re-emitted per second at most, 0 for no limit (env BACKFILL_RATE)")
	after := fs.String("after", "", "resume after this order id (the last one a previous run printed)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	if err := env.err(); err != nil {
		return err
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireFlag("database-url", *dbURL, "DATABASE_URL"); err != nil {
		return err
	}
	if *batch < 1 || *rate < 0 {
		return fmt.Errorf("%w: -batch-size must be at least 1 and -rate at least 0", errUsage)
	}
	db, err := postgres.Open(ctx, *dbURL, 2)
	if err != nil {
		return err
	}
	defer db.Close()
	cfg := backfill.Config{BatchSize: *batch, Rate: *rate, After: *after, Logger: newLogger(getenv, stderr, "backfill")}
	stopTracing, err := startTracing(ctx, "backfill", getenv, cfg.Logger)
	if err != nil {
		return err
	}
	defer stopTracing()
	if !*quiet {
		cfg.Progress = backfill.ProgressPrinter(stderr)
	}
	b, err := backfill.New(cfg, db)
	if err != nil {
		return err
	}
	p, runErr := b.Run(ctx)
	// What was done is printed even when the run stopped early: it says where to resume.
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(struct {
			Total       int64   `json:"total"`
			Scanned     int64   `json:"scanned"`
			Emitted     int64   `json:"emitted"`
			Existing    int64   `json:"already_in_outbox"`
			LastOrderID string  `json:"last_order_id"`
			Seconds     float64 `json:"seconds"`
			Complete    bool    `json:"complete"`
		}{p.Total, p.Scanned, p.Emitted, p.Existing, p.LastOrderID, p.Elapsed.Seconds(), runErr == nil}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "backfill: %d orders re-emitted through the outbox (%d events written, %d already there) in %s\n",
			p.Scanned, p.Emitted, p.Existing, p.Elapsed.Round(1e6))
		if runErr != nil && p.LastOrderID != "" {
			fmt.Fprintf(stdout, "backfill: stopped early; resume with -after %s\n", p.LastOrderID)
		}
	}
	return runErr
}

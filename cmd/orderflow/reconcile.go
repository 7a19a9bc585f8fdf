package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"golang.org/x/sync/errgroup"

	"orderflow/consumers/reconcile"
	"orderflow/internal/httpserver"
	"orderflow/internal/retention"
	"orderflow/postgres"
)

func runReconcile(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("reconcile", stderr)
	env := newEnvDefaults(getenv)
	dbURL := fs.String("database-url", getenv("DATABASE_URL"), "PostgreSQL URL (env DATABASE_URL)")
	httpAddr := fs.String("http-addr", envOr(getenv, "HTTP_ADDR", "127.0.0.1:18085"), "address for /healthz, /readyz and /metrics with --every (env HTTP_ADDR)")
	every := fs.Duration("every", env.Duration("RECONCILE_EVERY", 0), "run as a daemon, reconciling at this interval; 0: once, then exit (env RECONCILE_EVERY)")
	fix := fs.Bool("fix", env.Bool("RECONCILE_FIX", false), "repair drift by re-publishing the orders through the outbox (env RECONCILE_FIX=true)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	freshness := fs.Duration("freshness-sla", env.Duration("RECONCILE_FRESHNESS_SLA", reconcile.DefaultFreshnessSLA), "a summary may lag an order change this long (env RECONCILE_FRESHNESS_SLA)")
	fulfillment := fs.Duration("fulfillment-sla", env.Duration("RECONCILE_FULFILLMENT_SLA", reconcile.DefaultFulfillmentSLA), "an order may stay pending this long (env RECONCILE_FULFILLMENT_SLA)")
	delivery := fs.Duration("delivery-sla", env.Duration("RECONCILE_DELIVERY_SLA", reconcile.DefaultDeliverySLA), "a subscribed endpoint may have no delivery of an event this long after it (env RECONCILE_DELIVERY_SLA)")
	horizon := fs.Duration("delivery-horizon", env.Duration("RECONCILE_DELIVERY_HORIZON", reconcile.DefaultDeliveryHorizon), "a delivery may stay pending this long after its cycle began: the deliverer's -max-age plus its last attempt (env RECONCILE_DELIVERY_HORIZON)")
	lookback := fs.Duration("lookback", env.Duration("RECONCILE_LOOKBACK", reconcile.DefaultLookback), "the delivery check looks at events this recent (env RECONCILE_LOOKBACK)")
	grace := fs.Duration("repair-grace", env.Duration("RECONCILE_REPAIR_GRACE", reconcile.DefaultRepairGrace), "a published repair has this long to clear its finding; then it is reported as not cleared, once, and never repeated (env RECONCILE_REPAIR_GRACE)")
	maxRepairs := fs.Int("max-repairs", env.Int("RECONCILE_MAX_REPAIRS", 1000), "repair events one run writes at most; replay the topic for mass drift (env RECONCILE_MAX_REPAIRS)")
	maxReport := fs.Int("max-report", 1000, "findings listed in the report (counts are always complete)")
	fullEvery := fs.Duration("full-scan-every", env.Duration("RECONCILE_FULL_SCAN_EVERY", reconcile.DefaultFullScanEvery), "with -every: how often a pass reads every order; the others read what changed since the last pass (env RECONCILE_FULL_SCAN_EVERY)")
	retainRepairs := fs.Duration("retain-repairs", env.Duration("RECONCILE_RETAIN_REPAIRS", reconcile.DefaultRetainRepairs), "with -every: keep reconcile_repairs rows this long (env RECONCILE_RETAIN_REPAIRS)")
	purgeEvery := fs.Duration("purge-every", env.Duration("RECONCILE_PURGE_EVERY", time.Minute), "with -every: how often the retention purge runs (env RECONCILE_PURGE_EVERY)")
	purgeBatch := fs.Int("purge-batch", env.Int("RECONCILE_PURGE_BATCH", retention.DefaultBatch), "rows one purge statement deletes at most (env RECONCILE_PURGE_BATCH)")
	if err := env.err(); err != nil {
		return err
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireFlag("database-url", *dbURL, "DATABASE_URL"); err != nil {
		return err
	}
	log := newLogger(getenv, stderr, "reconcile")
	stopTracing, err := startTracing(ctx, "reconcile", getenv, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	db, err := postgres.Open(ctx, *dbURL, 2)
	if err != nil {
		return err
	}
	defer db.Close()
	cfg := reconcile.Config{
		FreshnessSLA: *freshness, FulfillmentSLA: *fulfillment, DeliverySLA: *delivery, DeliveryHorizon: *horizon,
		Lookback: *lookback, Fix: *fix, RepairGrace: *grace, MaxRepairs: *maxRepairs, MaxReport: *maxReport, Logger: log,
		FullScanEvery: *fullEvery, RetainRepairs: *retainRepairs, PurgeEvery: *purgeEvery, PurgeBatch: *purgeBatch,
	}
	if !*quiet && *every == 0 {
		cfg.Progress = reconcile.ProgressPrinter(stderr)
	}
	r := reconcile.New(cfg, db)
	writeReport := func(rep *reconcile.Report) error {
		if *asJSON {
			return reconcile.WriteJSON(stdout, rep)
		}
		return reconcile.WriteTable(stdout, rep)
	}
	if *every == 0 {
		rep, err := r.Run(ctx)
		if err != nil {
			return fmt.Errorf("reconciling: %w", err)
		}
		return writeReport(rep)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return r.RunEvery(gctx, *every, func(rep *reconcile.Report) {
			args := []any{"mode", rep.Mode, "orders_scanned", rep.OrdersScanned, "fix", *fix}
			for k, n := range rep.Counts {
				args = append(args, string(k), n)
			}
			log.Info("reconciled", args...)
			if *asJSON {
				_ = reconcile.WriteJSON(stdout, rep)
			}
		})
	})
	g.Go(func() error { return httpserver.Serve(gctx, *httpAddr, r.Handler(), log, nil) })
	err = g.Wait()
	log.Info("stopped", "err", err)
	return err
}

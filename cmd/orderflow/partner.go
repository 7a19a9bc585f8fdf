package main

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"time"

	"orderflow/consumers/partner"
	"orderflow/internal/retention"

	"golang.org/x/sync/errgroup"
)

func runPartner(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("partner", stderr)
	env := newEnvDefaults(getenv)
	dbURL := fs.String("database-url", getenv("DATABASE_URL"), "PostgreSQL URL; the partner keeps its tables in schema partner (env DATABASE_URL)")
	pprofAddr := pprofFlag(fs, getenv)
	addr := fs.String("http-addr", envOr(getenv, "HTTP_ADDR", "127.0.0.1:18084"), "listen address for /partner-hook, /healthz, /readyz, /metrics (env HTTP_ADDR)")
	secrets := fs.String("webhook-secret", getenv("WEBHOOK_SECRET"), "the endpoint's whsec_ secret; during a rotation both, comma-separated (env WEBHOOK_SECRET)")
	apiURL := fs.String("api-url", getenv("API_URL"), "orderflow API for the callbacks (env API_URL)")
	apiKey := fs.String("api-key", envOr(getenv, "PARTNER_API_KEY", getenv("API_KEY")), "API key for the callbacks (env PARTNER_API_KEY, else API_KEY)")
	delay := fs.Duration("fulfill-delay", env.Duration("PARTNER_FULFILL_DELAY", time.Second), "time from receipt to the callback (env PARTNER_FULFILL_DELAY)")
	reject := fs.Float64("reject-ratio", env.Float("PARTNER_REJECT_RATIO", 0), "share of orders the partner cancels (env PARTNER_REJECT_RATIO)")
	unknown := fs.String("unknown-sku", envOr(getenv, "PARTNER_UNKNOWN_SKU", "^UNKNOWN-"), "regexp of SKUs the partner does not carry; such orders are cancelled, empty for none (env PARTNER_UNKNOWN_SKU)")
	tolerance := fs.Duration("tolerance", env.Duration("PARTNER_TOLERANCE", 5*time.Minute), "accepted webhook-timestamp skew (env PARTNER_TOLERANCE)")
	errorRate := fs.Float64("error-rate", env.Float("PARTNER_ERROR_RATE", 0), "fault: share of webhooks answered 500 before any work (env PARTNER_ERROR_RATE)")
	latency := fs.Duration("latency", env.Duration("PARTNER_LATENCY", 0), "fault: added to every webhook request (env PARTNER_LATENCY)")
	timeoutRate := fs.Float64("timeout-rate", env.Float("PARTNER_TIMEOUT_RATE", 0), "fault: share of webhooks that hang until the sender gives up (env PARTNER_TIMEOUT_RATE)")
	hang := fs.Duration("hang", env.Duration("PARTNER_HANG", time.Minute), "fault: longest hang of a timed-out webhook (env PARTNER_HANG)")
	commit500 := fs.Float64("commit-then-500-rate", env.Float("PARTNER_COMMIT_THEN_500_RATE", 0), "fault: share of webhooks stored and committed, then answered 500 (env PARTNER_COMMIT_THEN_500_RATE)")
	retainReceipts := fs.Duration("retain-receipts", env.Duration("PARTNER_RETAIN_RECEIPTS", partner.DefaultRetainReceipts), "keep receipts (the webhook-id dedupe) this long: above the deliverer's -retain-dead plus -max-age (env PARTNER_RETAIN_RECEIPTS)")
	retainFailed := fs.Duration("retain-failed", env.Duration("PARTNER_RETAIN_FAILED", partner.DefaultRetainFailed), "keep callbacks that failed for good and dead-lettered webhooks this long (env PARTNER_RETAIN_FAILED)")
	retainFaults := fs.Duration("retain-faults", env.Duration("PARTNER_RETAIN_FAULTS", partner.DefaultRetainFaults), "keep the injected-fault log this long (env PARTNER_RETAIN_FAULTS)")
	purgeEvery := fs.Duration("purge-every", env.Duration("PARTNER_PURGE_EVERY", time.Minute), "how often the retention purge runs (env PARTNER_PURGE_EVERY)")
	purgeBatch := fs.Int("purge-batch", env.Int("PARTNER_PURGE_BATCH", retention.DefaultBatch), "rows one purge statement deletes at most (env PARTNER_PURGE_BATCH)")
	adminToken := fs.String("admin-token", getenv("PARTNER_ADMIN_TOKEN"), "bearer token of the admin routes (list and replay failed callbacks); empty disables them (env PARTNER_ADMIN_TOKEN)")
	cbMaxAge := fs.Duration("callback-max-age", env.Duration("PARTNER_CALLBACK_MAX_AGE", partner.DefaultCallbackMaxAge), "retry a callback this long before it fails for good (env PARTNER_CALLBACK_MAX_AGE)")
	cbMaxBackoff := fs.Duration("callback-max-backoff", env.Duration("PARTNER_CALLBACK_MAX_BACKOFF", partner.DefaultCallbackMaxBackoff), "longest pause between two tries of a callback (env PARTNER_CALLBACK_MAX_BACKOFF)")
	if err := env.err(); err != nil {
		return err
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	for _, f := range []struct{ name, value, env string }{
		{"database-url", *dbURL, "DATABASE_URL"}, {"webhook-secret", *secrets, "WEBHOOK_SECRET"},
		{"api-url", *apiURL, "API_URL"}, {"api-key", *apiKey, "PARTNER_API_KEY"},
	} {
		if err := requireFlag(f.name, f.value, f.env); err != nil {
			return err
		}
	}
	var unknownRE *regexp.Regexp
	if *unknown != "" {
		re, err := regexp.Compile(*unknown)
		if err != nil {
			return fmt.Errorf("%w: -unknown-sku: %v", errUsage, err)
		}
		unknownRE = re
	}
	log := newLogger(getenv, stderr, "partner")
	stopTracing, err := startTracing(ctx, "partner", getenv, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	p, err := partner.New(ctx, partner.Config{
		DatabaseURL:  *dbURL,
		Secrets:      splitList(*secrets),
		Tolerance:    *tolerance,
		APIURL:       *apiURL,
		APIKey:       *apiKey,
		FulfillDelay: *delay,
		RejectRatio:  *reject,
		UnknownSKU:   unknownRE,
		Faults: partner.Faults{ErrorRate: *errorRate, Latency: *latency, TimeoutRate: *timeoutRate,
			Hang: *hang, CommitThen500Rate: *commit500},
		Addr:   *addr,
		Logger: log,

		AdminToken: *adminToken, CallbackMaxAge: *cbMaxAge, CallbackMaxBackoff: *cbMaxBackoff,
		RetainReceipts: *retainReceipts, RetainFailed: *retainFailed, RetainFaults: *retainFaults,
		PurgeEvery: *purgeEvery, PurgeBatch: *purgeBatch,
	})
	if err != nil {
		return err
	}
	defer p.Close()
	if *pprofAddr == "" {
		err = p.Run(ctx)
	} else {
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return p.Run(gctx) })
		g.Go(func() error { return servePprof(gctx, *pprofAddr, log) })
		err = g.Wait()
	}
	log.Info("stopped", "err", err)
	return err
}

package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
	"time"

	"golang.org/x/sync/errgroup"

	"orderflow/api"
	"orderflow/internal/httpserver"
	"orderflow/postgres"
)

// apiGCPercent is the API's garbage collection target when GOGC is not set (see runAPI).
const apiGCPercent = 400

func runAPI(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("api", stderr)
	dbURL := fs.String("database-url", getenv("DATABASE_URL"), "PostgreSQL URL (env DATABASE_URL)")
	addr := fs.String("http-addr", envOr(getenv, "HTTP_ADDR", "127.0.0.1:8080"), "public listen address: the API, /healthz and /readyz (env HTTP_ADDR)")
	maxConns := fs.Int("db-max-conns", 20, "largest number of database connections")
	keyTTL := fs.Duration("idempotency-ttl", 24*time.Hour, "how long an Idempotency-Key is remembered")
	purgeEvery := fs.Duration("idempotency-purge-every", time.Minute, "how often expired keys are deleted")
	opsAddr := fs.String("ops-addr", envOr(getenv, "OPS_ADDR", "127.0.0.1:18086"), "listen address for /metrics, /healthz and /readyz, kept off the public listener; empty serves no metrics (env OPS_ADDR)")
	pprofAddr := pprofFlag(fs, getenv)
	hooks := addWebhookFlags(fs, getenv)
	env := newEnvDefaults(getenv)
	rate := fs.Float64("rate-limit", env.Float("API_RATE_LIMIT", api.DefaultRateLimit), "requests per second one client may make, all its keys together; 0 for no limit (env API_RATE_LIMIT)")
	burst := fs.Int("rate-burst", env.Int("API_RATE_BURST", api.DefaultRateBurst), "requests a client may make at once after a pause (env API_RATE_BURST)")
	lookupRate := fs.Float64("key-lookup-rate", env.Float("API_KEY_LOOKUP_RATE", api.DefaultKeyLookupRate), "unknown API keys one address may have looked up per second; 0 for no limit (env API_KEY_LOOKUP_RATE)")
	lookupBurst := fs.Int("key-lookup-burst", env.Int("API_KEY_LOOKUP_BURST", api.DefaultKeyLookupBurst), "unknown API keys one address may have looked up at once (env API_KEY_LOOKUP_BURST)")
	maxInFlight := fs.Int("max-in-flight", env.Int("API_MAX_IN_FLIGHT", 0), "requests that may work against the database at once; 0 for as many as -db-max-conns, negative for no limit (env API_MAX_IN_FLIGHT)")
	maxQueued := fs.Int("max-queued", env.Int("API_MAX_QUEUED", api.DefaultMaxQueued), "requests that may wait for one of those slots; beyond it they are answered 503 at once (env API_MAX_QUEUED)")
	queueTimeout := fs.Duration("queue-timeout", env.Duration("API_QUEUE_TIMEOUT", api.DefaultQueueTimeout), "how long a request may wait for a slot before it is answered 503 (env API_QUEUE_TIMEOUT)")
	if err := env.err(); err != nil {
		return err
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *rate < 0 || *burst < 1 || *lookupRate < 0 || *lookupBurst < 1 {
		return fmt.Errorf("%w: rate limits must not be negative and bursts must be at least 1", errUsage)
	}
	if *maxQueued < 0 || *queueTimeout < 0 {
		return fmt.Errorf("%w: -max-queued and -queue-timeout must not be negative", errUsage)
	}
	if *maxInFlight == 0 {
		// One request holds one connection at a time: more in flight than connections would
		// only queue in the pool, where no timeout sheds them.
		*maxInFlight = *maxConns
	}
	if err := requireFlag("database-url", *dbURL, "DATABASE_URL"); err != nil {
		return err
	}
	policy, err := hooks.policy()
	if err != nil {
		return err
	}
	ring, err := hooks.ring()
	if err != nil {
		return err
	}
	if getenv("GOGC") == "" {
		// The API allocates about 17 kB per order (pgx's batch buffers, net/http, JSON) over
		// a live heap of a few MB, so at Go's default of 100 the collector runs every few
		// hundred orders. At 400, measured on bench/api.sh's closed loop (issue 13), the
		// process used 13 % less CPU per order (median 0.222 against 0.256 ms) for 46 MB of
		// RSS instead of 34. GOGC in the environment still decides.
		debug.SetGCPercent(apiGCPercent)
	}
	log := newLogger(getenv, stderr, "api")
	stopTracing, err := startTracing(ctx, "api", getenv, log)
	if err != nil {
		return err
	}
	defer stopTracing()

	db, err := postgres.Open(ctx, *dbURL, int32(*maxConns))
	if err != nil {
		return err
	}
	defer db.Close()
	db.KeyTTL = *keyTTL
	opts := []api.Option{api.WithEgress(policy), api.WithRateLimit(*rate, *burst), api.WithKeyLookupLimit(*lookupRate, *lookupBurst),
		api.WithAdmission(*maxInFlight, *maxQueued, *queueTimeout)}
	if ring == nil {
		log.Warn("no webhook key ring (WEBHOOK_KEYRING or WEBHOOK_KEYRING_FILE): endpoints cannot be registered nor secrets rotated")
	} else {
		opts = append(opts, api.WithSecrets(ring))
		// Secrets stored before encryption at rest, or under a key that is no longer the
		// active one, are sealed under the active key now.
		sealed, unreadable, err := db.SealEndpointSecrets(ctx, ring)
		if err != nil {
			return err
		}
		if sealed > 0 || unreadable > 0 {
			log.Info("sealed webhook secrets under the active key", "endpoints", sealed, "unreadable", unreadable, "key_id", ring.Active())
		}
	}
	srv := api.New(db, log, opts...)

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return httpserver.Serve(ctx, *addr, srv, log, nil) })
	g.Go(func() error { return api.RunKeyPurger(ctx, db.PurgeExpiredKeys, *purgeEvery, log) })
	if *opsAddr != "" {
		g.Go(func() error { return httpserver.Serve(ctx, *opsAddr, srv.OpsHandler(), log.With("server", "ops"), nil) })
	} else {
		log.Warn("no ops listener (-ops-addr): /metrics is not served")
	}
	g.Go(func() error { return servePprof(ctx, *pprofAddr, log) })
	err = g.Wait()
	log.Info("stopped", "err", err)
	return err
}

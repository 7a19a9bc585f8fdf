package main

import (
	"context"
	"io"

	"golang.org/x/sync/errgroup"

	"orderflow"
	"orderflow/consumers/deliver"
	"orderflow/internal/httpserver"
	"orderflow/internal/retention"
	"orderflow/postgres"
)

func runDeliver(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	def := deliver.DefaultPolicy()
	fs := newFlagSet("deliver", stderr)
	env := newEnvDefaults(getenv)
	dbURL := fs.String("database-url", getenv("DATABASE_URL"), "PostgreSQL URL (env DATABASE_URL)")
	brokers := fs.String("kafka-brokers", getenv("KAFKA_BROKERS"), "comma-separated Kafka brokers (env KAFKA_BROKERS)")
	pprofAddr := pprofFlag(fs, getenv)
	httpAddr := fs.String("http-addr", envOr(getenv, "HTTP_ADDR", "127.0.0.1:18083"), "address for /healthz, /readyz and /metrics (env HTTP_ADDR)")
	topic := fs.String("topic", envOr(getenv, "DELIVER_TOPIC", orderflow.Topic(orderflow.AggregateOrder)), "topic to deliver from (env DELIVER_TOPIC)")
	group := fs.String("group", envOr(getenv, "DELIVER_GROUP", "orderflow-deliver"), "Kafka consumer group (env DELIVER_GROUP)")
	timeout := fs.Duration("timeout", env.Duration("DELIVER_TIMEOUT", def.Timeout), "one attempt's timeout: no 2xx within it is a failure (env DELIVER_TIMEOUT)")
	maxAttempts := fs.Int("max-attempts", env.Int("DELIVER_MAX_ATTEMPTS", def.MaxAttempts), "attempts before a dead letter (env DELIVER_MAX_ATTEMPTS)")
	maxAge := fs.Duration("max-age", env.Duration("DELIVER_MAX_AGE", def.MaxAge), "no retry starts later than this after the first attempt was due (env DELIVER_MAX_AGE)")
	baseBackoff := fs.Duration("base-backoff", env.Duration("DELIVER_BASE_BACKOFF", def.BaseBackoff), "backoff ceiling of the first retry, doubling per retry (env DELIVER_BASE_BACKOFF)")
	maxBackoff := fs.Duration("max-backoff", env.Duration("DELIVER_MAX_BACKOFF", def.MaxBackoff), "largest backoff ceiling (env DELIVER_MAX_BACKOFF)")
	maxRetryAfter := fs.Duration("max-retry-after", env.Duration("DELIVER_MAX_RETRY_AFTER", def.MaxRetryAfter), "cap on a receiver's Retry-After (env DELIVER_MAX_RETRY_AFTER)")
	workers := fs.Int("workers", env.Int("DELIVER_WORKERS", deliver.DefaultWorkers), "POSTs in flight in this process (env DELIVER_WORKERS)")
	perEndpoint := fs.Int("per-endpoint", env.Int("DELIVER_PER_ENDPOINT", deliver.DefaultPerEndpoint), "POSTs in flight per endpoint (env DELIVER_PER_ENDPOINT)")
	poll := fs.Duration("poll", env.Duration("DELIVER_POLL", 0), "how often to look for due retries, 0 for the default 250ms (env DELIVER_POLL)")
	retainSucceeded := fs.Duration("retain-succeeded", env.Duration("DELIVER_RETAIN_SUCCEEDED", deliver.DefaultRetainSucceeded), "keep succeeded deliveries and their attempts this long; above reconcile's -lookback (env DELIVER_RETAIN_SUCCEEDED)")
	retainDead := fs.Duration("retain-dead", env.Duration("DELIVER_RETAIN_DEAD", deliver.DefaultRetainDead), "keep dead letters and intake dead letters this long (env DELIVER_RETAIN_DEAD)")
	purgeEvery := fs.Duration("purge-every", env.Duration("DELIVER_PURGE_EVERY", deliver.DefaultPurgeEvery), "how often the retention purge runs (env DELIVER_PURGE_EVERY)")
	purgeBatch := fs.Int("purge-batch", env.Int("DELIVER_PURGE_BATCH", retention.DefaultBatch), "rows one purge statement deletes at most (env DELIVER_PURGE_BATCH)")
	autoDisable := fs.Duration("auto-disable-after", env.Duration("DELIVER_AUTO_DISABLE_AFTER", deliver.DefaultAutoDisableAfter),
		"disable an endpoint whose attempts have all failed for this long, 0 never (env DELIVER_AUTO_DISABLE_AFTER)")
	maxConns := fs.Int("db-max-conns", 10, "largest number of database connections")
	hooks := addWebhookFlags(fs, getenv)
	kafkaSec := addKafkaFlags(fs, env, getenv)
	if err := env.err(); err != nil {
		return err
	}
	if err := parseFlags(fs, args); err != nil {
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
	security, err := kafkaSec.security()
	if err != nil {
		return err
	}
	if err := requireFlag("database-url", *dbURL, "DATABASE_URL"); err != nil {
		return err
	}
	if err := requireFlag("kafka-brokers", *brokers, "KAFKA_BROKERS"); err != nil {
		return err
	}
	log := newLogger(getenv, stderr, "deliver")
	stopTracing, err := startTracing(ctx, "deliver", getenv, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	cfg := deliver.Config{Egress: policy, Kafka: security}
	if ring == nil {
		log.Warn("no webhook key ring (WEBHOOK_KEYRING or WEBHOOK_KEYRING_FILE): only secrets stored in clear can sign")
	} else {
		cfg.Secrets = ring
	}
	db, err := postgres.Open(ctx, *dbURL, int32(*maxConns))
	if err != nil {
		return err
	}
	defer db.Close()
	cfg.Brokers, cfg.Topic, cfg.GroupID = splitList(*brokers), *topic, *group
	cfg.Policy = deliver.Policy{Timeout: *timeout, MaxAttempts: *maxAttempts, MaxAge: *maxAge,
		BaseBackoff: *baseBackoff, MaxBackoff: *maxBackoff, MaxRetryAfter: *maxRetryAfter}
	cfg.Workers, cfg.PerEndpoint, cfg.Poll, cfg.Logger = *workers, *perEndpoint, *poll, log
	cfg.RetainSucceeded, cfg.RetainDead, cfg.PurgeEvery, cfg.PurgeBatch = *retainSucceeded, *retainDead, *purgeEvery, *purgeBatch
	cfg.AutoDisableAfter = *autoDisable
	svc, err := deliver.New(cfg, db)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return svc.Run(gctx) })
	g.Go(func() error { return httpserver.Serve(gctx, *httpAddr, svc.Handler(), log, nil) })
	g.Go(func() error { return servePprof(gctx, *pprofAddr, log) })
	err = g.Wait()
	log.Info("stopped", "err", err)
	return err
}

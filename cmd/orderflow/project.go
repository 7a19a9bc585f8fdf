package main

import (
	"context"
	"io"
	"time"

	"golang.org/x/sync/errgroup"

	"orderflow"
	"orderflow/consumers/projector"
	"orderflow/internal/httpserver"
	"orderflow/internal/retention"
	"orderflow/postgres"
)

func runProject(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("project", stderr)
	env := newEnvDefaults(getenv)
	dbURL := fs.String("database-url", getenv("DATABASE_URL"), "PostgreSQL URL (env DATABASE_URL)")
	brokers := fs.String("kafka-brokers", getenv("KAFKA_BROKERS"), "comma-separated Kafka brokers (env KAFKA_BROKERS)")
	pprofAddr := pprofFlag(fs, getenv)
	httpAddr := fs.String("http-addr", envOr(getenv, "HTTP_ADDR", "127.0.0.1:18082"), "address for /healthz, /readyz and /metrics (env HTTP_ADDR)")
	topic := fs.String("topic", envOr(getenv, "PROJECT_TOPIC", orderflow.Topic(orderflow.AggregateOrder)), "topic to consume (env PROJECT_TOPIC)")
	group := fs.String("group", envOr(getenv, "PROJECT_GROUP", projector.DefaultGroupID), "Kafka consumer group (env PROJECT_GROUP)")
	dlq := fs.String("dlq-topic", getenv("PROJECT_DLQ_TOPIC"), "dead-letter topic, created if missing (default <topic>.dlq; env PROJECT_DLQ_TOPIC)")
	attempts := fs.Int("max-attempts", env.Int("PROJECT_MAX_ATTEMPTS", projector.DefaultMaxAttempts), "attempts at a poison event before it is dead-lettered (env PROJECT_MAX_ATTEMPTS)")
	batch := fs.Int("batch-size", env.Int("PROJECT_BATCH_SIZE", projector.DefaultBatchSize), "largest batch applied in one transaction (env PROJECT_BATCH_SIZE)")
	commitEvery := fs.Duration("commit-interval", env.Duration("PROJECT_COMMIT_INTERVAL", projector.DefaultCommitInterval), "how often offsets of applied batches are committed (env PROJECT_COMMIT_INTERVAL)")
	session := fs.Duration("session-timeout", env.Duration("PROJECT_SESSION_TIMEOUT", 10*time.Second), "consumer group session timeout, at least 6s (env PROJECT_SESSION_TIMEOUT)")
	kafkaSec := addKafkaFlags(fs, env, getenv)
	retainDead := fs.Duration("retain-dead-letters", env.Duration("PROJECT_RETAIN_DEAD_LETTERS", projector.DefaultRetainDeadLetters), "keep projector_dead_letters rows this long (env PROJECT_RETAIN_DEAD_LETTERS)")
	purgeEvery := fs.Duration("purge-every", env.Duration("PROJECT_PURGE_EVERY", time.Minute), "how often the retention purge runs (env PROJECT_PURGE_EVERY)")
	purgeBatch := fs.Int("purge-batch", env.Int("PROJECT_PURGE_BATCH", retention.DefaultBatch), "rows one purge statement deletes at most (env PROJECT_PURGE_BATCH)")
	if err := env.err(); err != nil {
		return err
	}
	if err := parseFlags(fs, args); err != nil {
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
	log := newLogger(getenv, stderr, "project")
	stopTracing, err := startTracing(ctx, "project", getenv, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	db, err := postgres.Open(ctx, *dbURL, 4)
	if err != nil {
		return err
	}
	defer db.Close()
	p, err := projector.New(projector.Config{
		Brokers: splitList(*brokers), Topic: *topic, GroupID: *group, DLQTopic: *dlq,
		MaxAttempts: *attempts, BatchSize: *batch, CommitInterval: *commitEvery, SessionTimeout: *session, Logger: log,
		Kafka:             security,
		RetainDeadLetters: *retainDead, PurgeEvery: *purgeEvery, PurgeBatch: *purgeBatch,
	}, db)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.Run(gctx) })
	g.Go(func() error { return httpserver.Serve(gctx, *httpAddr, p.Handler(), log, nil) })
	g.Go(func() error { return servePprof(gctx, *pprofAddr, log) })
	err = g.Wait()
	log.Info("stopped", "err", err)
	return err
}

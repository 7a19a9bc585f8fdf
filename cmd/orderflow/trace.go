package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/google/uuid"

	"orderflow"
	"orderflow/internal/eventtrace"
	"orderflow/postgres"
)

func runTrace(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("trace", stderr)
	env := newEnvDefaults(getenv)
	dbURL := fs.String("database-url", getenv("DATABASE_URL"), "PostgreSQL URL (env DATABASE_URL)")
	brokers := fs.String("kafka-brokers", getenv("KAFKA_BROKERS"), "comma-separated Kafka brokers (env KAFKA_BROKERS)")
	topic := fs.String("topic", envOr(getenv, "TRACE_TOPIC", orderflow.Topic(orderflow.AggregateOrder)), "topic the event was published to (env TRACE_TOPIC)")
	maxScan := fs.Int("max-scan", env.Int("TRACE_MAX_SCAN", eventtrace.DefaultMaxScan), "records read per partition at most while searching the topic (env TRACE_MAX_SCAN)")
	order := fs.String("order", "", "the event's order id, if known: searches only its partition when no table remembers the event")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := env.err(); err != nil {
		return err
	}
	// The event id may stand before or after the flags: the first parse stops at it, the
	// second parses what follows it.
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errUsage
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: usage: orderflow trace EVENT_ID [flags]", errUsage)
	}
	eventID := fs.Arg(0)
	if _, err := uuid.Parse(eventID); err != nil {
		return fmt.Errorf("%w: event id %q is not a UUID", errUsage, eventID)
	}
	if err := parseFlags(fs, fs.Args()[1:]); err != nil {
		return err
	}
	if err := requireFlag("database-url", *dbURL, "DATABASE_URL"); err != nil {
		return err
	}
	if err := requireFlag("kafka-brokers", *brokers, "KAFKA_BROKERS"); err != nil {
		return err
	}
	if *maxScan < 1 {
		return fmt.Errorf("%w: -max-scan must be at least 1", errUsage)
	}
	db, err := postgres.Open(ctx, *dbURL, 2)
	if err != nil {
		return err
	}
	defer db.Close()
	rep, err := eventtrace.Trace(ctx, eventtrace.Config{Brokers: splitList(*brokers), Topic: *topic, MaxScan: *maxScan, OrderID: *order}, db, eventID)
	if err != nil && !errors.Is(err, eventtrace.ErrNotFound) {
		return err
	}
	notFound := err
	if *asJSON {
		err = eventtrace.WriteJSON(stdout, rep)
	} else {
		err = eventtrace.WriteText(stdout, rep)
	}
	if err != nil {
		return err
	}
	if notFound != nil {
		return fmt.Errorf("event %s: %w", rep.EventID, notFound)
	}
	return nil
}

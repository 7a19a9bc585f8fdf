package main

import (
	"context"
	"fmt"
	"io"

	"orderflow"
	"orderflow/internal/tail"
)

func runTail(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("tail", stderr)
	brokers := fs.String("kafka-brokers", getenv("KAFKA_BROKERS"), "comma-separated Kafka brokers (env KAFKA_BROKERS)")
	topic := fs.String("topic", envOr(getenv, "TAIL_TOPIC", orderflow.Topic(orderflow.AggregateOrder)), "topic to decode (env TAIL_TOPIC)")
	follow := fs.Bool("f", false, "follow: keep printing new records until interrupted")
	from := fs.String("from", "beginning", "where each partition starts: beginning (its first retained record) or end")
	types := fs.String("type", "", "only these event types (comma-separated), such as order.created")
	subject := fs.String("subject", "", "only events about this order id (reads only its partition)")
	limit := fs.Int("n", 0, "stop after this many records; 0 for no limit")
	asJSON := fs.Bool("json", false, "one JSON object per record instead of human lines")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireFlag("kafka-brokers", *brokers, "KAFKA_BROKERS"); err != nil {
		return err
	}
	if *from != "beginning" && *from != "end" {
		return fmt.Errorf("%w: -from %q: want beginning or end", errUsage, *from)
	}
	if *limit < 0 {
		return fmt.Errorf("%w: -n must not be negative", errUsage)
	}
	if *from == "end" && !*follow {
		return fmt.Errorf("%w: -from end prints nothing without -f", errUsage)
	}
	return tail.Run(ctx, tail.Config{
		Brokers: splitList(*brokers), Topic: *topic, Follow: *follow, FromEnd: *from == "end",
		Types: splitList(*types), Subject: *subject, Limit: *limit, JSON: *asJSON,
	}, stdout)
}

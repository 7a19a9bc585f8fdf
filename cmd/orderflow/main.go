// Command orderflow is the one binary of the project: each subcommand is one component.
// This file only parses the subcommand and wires packages; the work lives in the packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// errUsage marks a command-line mistake: exit status 2, like flag's own errors.
var errUsage = errors.New("usage")

const usage = `usage: orderflow <command> [flags]

commands:
  migrate    apply the database migrations
  migrate-data  run a data migration in batches with progress: migrate-data customer-tier
  api        serve the HTTP API
  capture    stream outbox inserts from the replication slot to Kafka
  project    build the order_summary read model
  deliver    deliver webhooks to partners
  partner    run the mock fulfillment partner
  reconcile  report and repair drift
  bench      run a load generator (make bench runs them all)
  backfill   re-emit every order's current state through the outbox (rebuild from scratch)
  tail       decode a topic: headers and value of each record, filtered, or following
  trace      where one event is: trace EVENT_ID (outbox, topic, read model, deliveries, partner)
  apikey     create, list and revoke API keys

Run 'orderflow <command> -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		// A bare errUsage means the usage text was printed already; a wrapped one carries
		// the reason (a missing flag), which must reach the user.
		if err != errUsage {
			fmt.Fprintf(os.Stderr, "orderflow: %v\n", err)
		}
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "migrate":
		return runMigrate(ctx, rest, getenv, stdout, stderr)
	case "migrate-data":
		return runMigrateData(ctx, rest, getenv, stdout, stderr)
	case "api":
		return runAPI(ctx, rest, getenv, stdout, stderr)
	case "capture":
		return runCapture(ctx, rest, getenv, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, getenv, stdout, stderr)
	case "project":
		return runProject(ctx, rest, getenv, stdout, stderr)
	case "deliver":
		return runDeliver(ctx, rest, getenv, stdout, stderr)
	case "partner":
		return runPartner(ctx, rest, getenv, stdout, stderr)
	case "reconcile":
		return runReconcile(ctx, rest, getenv, stdout, stderr)
	case "backfill":
		return runBackfill(ctx, rest, getenv, stdout, stderr)
	case "tail":
		return runTail(ctx, rest, getenv, stdout, stderr)
	case "trace":
		return runTrace(ctx, rest, getenv, stdout, stderr)
	case "apikey":
		return runAPIKey(ctx, rest, getenv, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "orderflow: unknown command %q\n\n%s", cmd, usage)
		return errUsage
	}
}

// Command capture-bench measures orderflow capture against pg_recvlogical on the same machine,
// in the same run: slots created together before one backlog of single-event transactions,
// drained -rounds times each by `orderflow capture` (acks=all, LSN confirmed) and by
// pg_recvlogical (pgoutput to /dev/null), alternating, with the load average before each side
// and the CPU per event of capture, the broker and the walsender; medians and min-max. It also
// measures decode-only mode (no Kafka), peak RSS for a backlog and for one big transaction,
// and commit-to-Kafka-ack latency at a steady rate. -baseline-bin drains a second binary in
// every round too, for a before/after in one run.
//
// It prints "RESULT key value" lines on stdout for bench/run.sh and a table on stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "capture-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("capture-bench", flag.ContinueOnError)
	backlog := fs.Int("backlog", 200_000, "single-event transactions in the backlog that both readers drain (0 to skip)")
	bigTxn := fs.Int("big-txn", 1_000_000, "rows in the one-transaction RSS case (0 to skip)")
	small := fs.Int("backlog-100k", 100_000, "a backlog drained by capture alone, for RSS at 100,000 (0 to skip)")
	big := fs.Int("backlog-2m", 2_000_000, "a larger backlog drained by capture alone: RSS must stay flat (0 to skip)")
	rate := fs.Int("rate", 2000, "events/s for the latency run")
	latencyFor := fs.Duration("latency-duration", 20*time.Second, "length of one latency run (0 to skip)")
	latencyRuns := fs.Int("latency-runs", 3, "latency runs, one after the other against the same capture; the median p99 is reported")
	var lopt latencyOptions
	fs.BoolVar(&lopt.timeline, "latency-timeline", false, "print every second of the latency runs, not only the slow ones")
	fs.IntVar(&lopt.prefill, "latency-prefill", 0, "write this many backlog transactions before the latency runs (to measure them alone on a table as large as after the backlogs)")
	fs.StringVar(&lopt.ab, "latency-ab", "", "name=value,... PostgreSQL settings (reloadable) applied with ALTER SYSTEM on every second latency run, reset after")
	fs.DurationVar(&lopt.warmup, "latency-warmup", 0, "a run of this length at the rate before the counted latency runs, reported alone (commit_to_kafka_p99_ms_warmup)")
	fs.BoolVar(&lopt.freshCapture, "latency-fresh-capture", false, "start a new capture process (new replication session) before every latency run")
	fs.BoolVar(&lopt.checkpointFirst, "latency-checkpoint-first", false, "CHECKPOINT before each latency run, so the full-page images after a checkpoint fall inside it")
	maxItems := fs.Int("max-items", 20, "backlog events carry 1 to this many line items")
	itemBytes := fs.Int("item-bytes", 100, "approximate size of one line item in a backlog event (a real line item is about 80 bytes of JSON)")
	rounds := fs.Int("rounds", 3, "drains of the compared backlog by each of capture and pg_recvlogical, alternating")
	recvAll := fs.Bool("recvlogical-all", false, "drain the 100k and 2m backlogs with pg_recvlogical too (once), to tell a slowdown of capture from one of the walsender")
	bin := fs.String("bin", "bin/orderflow", "orderflow binary")
	baseBin := fs.String("baseline-bin", "", "another orderflow binary (e.g. built from main) drained in every round too, for a before/after in one run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b := &bench{
		bin: *bin, adminURL: os.Getenv("DATABASE_URL"), brokers: os.Getenv("KAFKA_BROKERS"), log: stderr,
		prefix: "ofbench_" + randHex(4), maxItems: *maxItems, itemBytes: *itemBytes, rounds: *rounds, baseBin: *baseBin, runID: randHex(3), recvAll: *recvAll,
	}
	if b.adminURL == "" || b.brokers == "" {
		return errors.New("DATABASE_URL and KAFKA_BROKERS must be set (eval \"$(deploy/local/stack.sh env)\")")
	}
	if err := b.createDatabase(ctx); err != nil {
		return err
	}
	defer b.cleanup()

	b.say("capture bench: %s, %d cores, load average %s; backlog %d single-event transactions of 1-%d line items of ~%d bytes", cpuModel(), numCPU(), loadavg(), *backlog, *maxItems, *itemBytes)
	defer func() {
		b.say("  load average at the end: %s (other work on the machine skews every number)", loadavg())
	}()
	if *backlog > 0 {
		if err := b.backlogRun(ctx, *backlog, "backlog", true); err != nil {
			return err
		}
	}
	if *small > 0 {
		if err := b.backlogRun(ctx, *small, "backlog_small", false); err != nil {
			return err
		}
	}
	if *big > 0 {
		if err := b.backlogRun(ctx, *big, "backlog_2m", false); err != nil {
			return err
		}
	}
	if *bigTxn > 0 {
		if err := b.bigTxnRun(ctx, *bigTxn); err != nil {
			return err
		}
	}
	if *latencyFor > 0 {
		if err := b.latencyRun(ctx, *rate, *latencyFor, max(*latencyRuns, 1), lopt); err != nil {
			return err
		}
	}
	for _, r := range b.results {
		fmt.Fprintf(stdout, "RESULT %s %s\n", r[0], r[1])
	}
	return nil
}

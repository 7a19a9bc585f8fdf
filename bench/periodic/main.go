// Command periodic is the periodic-query benchmark of make bench (bench/periodic.sh): it loads
// a million orders' worth of rows with COPY into a database of its own, then measures every
// query a service runs periodically — the deliverer's stats and claim, the partner's callback
// claim and pending count, reconcile's incremental pass, each retention rule's purge batch and
// oldest-row gauge — as the services run them (a pgx tracer records their statements, which are
// EXPLAINed as sent: time and plan), and one full purge cycle with the tables' sizes before
// and after. It prints a table on stderr and RESULT lines on stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"orderflow"
	"orderflow/consumers/deliver"
	"orderflow/consumers/partner"
	"orderflow/consumers/projector"
	"orderflow/consumers/reconcile"
	"orderflow/internal/retention"
	"orderflow/postgres"
	ofsql "orderflow/sql"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "periodic: %v\n", err)
		os.Exit(1)
	}
}

// large are the tables whose sequential scan in a periodic query is a finding.
var large = []string{"orders", "order_items", "order_summary", "outbox", "webhook_deliveries", "webhook_delivery_attempts",
	"receipts", "callbacks"}

// purged are the tables retention rules purge, for the sizes before and after.
var purged = []string{"webhook_deliveries", "webhook_delivery_attempts", "webhook_intake_dead_letters", "partner.receipts",
	"partner.callbacks", "partner.dead_letters", "partner.faults", "projector_dead_letters", "reconcile_repairs"}

type bench struct {
	dsn  string
	conn *pgx.Conn
	rec  *recorder
	db   *postgres.DB
	runs int
	rows []row
	log  io.Writer
}

// row is one line of the report.
type row struct {
	name, key string
	ms        float64
	plan      plan
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("periodic", flag.ContinueOnError)
	fs.SetOutput(stderr)
	base := fs.String("database-url", getenv("DATABASE_URL"), "the server to create the benchmark's own database on (env DATABASE_URL)")
	orders := fs.Int("orders", envInt(getenv, "PERIODIC_ORDERS", 1_000_000), "orders' worth of rows to load (env PERIODIC_ORDERS)")
	days := fs.Int("days", 8, "days of traffic the rows are spread over")
	runs := fs.Int("runs", 20, "timed runs per query (the median is reported)")
	keep := fs.Bool("keep", false, "keep the database afterwards")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *base == "" {
		return errors.New("-database-url (or DATABASE_URL) is required")
	}
	logf := func(f string, a ...any) { fmt.Fprintf(stderr, "periodic: "+f+"\n", a...) }
	dsn, drop, err := createDatabase(ctx, *base, "ofbench_periodic")
	if err != nil {
		return err
	}
	if !*keep {
		defer drop()
	}
	if err := ofsql.Migrate(ctx, dsn, io.Discard); err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())

	t0 := time.Now()
	l := &load{orders: *orders, span: time.Duration(*days) * 24 * time.Hour, now: time.Now().UTC()}
	if _, err := l.run(ctx, conn, logf); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "VACUUM (ANALYZE)"); err != nil {
		return fmt.Errorf("vacuuming: %w", err)
	}
	logf("loaded %d orders' worth of rows in %s", *orders, time.Since(t0).Round(time.Second))

	b := &bench{dsn: dsn, conn: conn, rec: &recorder{}, runs: *runs, log: stderr}
	if b.db, err = postgres.OpenTraced(ctx, dsn, 4, b.rec); err != nil {
		return err
	}
	defer b.db.Close()
	before, err := b.sizes(ctx)
	if err != nil {
		return err
	}
	if err := b.measureQueries(ctx); err != nil {
		return err
	}
	cycle, batchMS, err := b.purgeCycle(ctx)
	if err != nil {
		return err
	}
	after, err := b.sizes(ctx)
	if err != nil {
		return err
	}
	past, err := b.pastWindow(ctx, cycle.start)
	if err != nil {
		return err
	}

	tw := tabwriter.NewWriter(stderr, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "periodic query (%d orders)\tms\tplan\n", *orders)
	seq, worst := 0, 0.0
	for _, r := range b.rows {
		verdict := r.plan.summary
		if len(r.plan.seqScans) > 0 {
			seq++
			verdict = "SEQ SCAN " + strings.Join(r.plan.seqScans, ", ") + ": " + verdict
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%s\n", r.name, r.ms, verdict)
		if r.key != "" {
			worst = max(worst, r.ms)
		}
	}
	fmt.Fprintf(tw, "purge cycle (every rule to its window)\t%.0f\t%d batches of up to 1,000 rows: median %.1f ms, slowest %.1f ms\n",
		float64(cycle.dur.Milliseconds()), cycle.batches, cycle.p50MS, batchMS)
	tw.Flush()
	tw = tabwriter.NewWriter(stderr, 0, 0, 2, ' ', 0)
	// DELETE frees pages for new rows (after VACUUM) rather than shrinking files: the sizes
	// show that the table stops growing at its window's worth, not that it shrinks.
	fmt.Fprintln(tw, "table\trows before\tMB before\trows after\tMB after")
	var rb, ra int64
	var mb, ma float64
	for _, t := range purged {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%d\t%.1f\n", t, before[t].rows, before[t].mb, after[t].rows, after[t].mb)
		rb, ra, mb, ma = rb+before[t].rows, ra+after[t].rows, mb+before[t].mb, ma+after[t].mb
	}
	tw.Flush()
	logf("rows older than their window after the purge cycle: %d; statements reading a large table whole: %d", past, seq)

	results := map[string]float64{"periodic_orders": float64(*orders), "periodic_query_max_ms": worst,
		"periodic_seq_scans": float64(seq), "periodic_purge_cycle_s": cycle.dur.Seconds(), "periodic_purge_batch_max_ms": batchMS, "periodic_purge_batch_p50_ms": cycle.p50MS,
		"periodic_rows_purged_tables_before": float64(rb), "periodic_rows_purged_tables_after": float64(ra),
		"periodic_mb_purged_tables_before": mb, "periodic_mb_purged_tables_after": ma, "periodic_rows_past_window_after": float64(past)}
	for _, r := range b.rows {
		if r.key != "" {
			results[r.key] = max(results[r.key], r.ms)
		}
	}
	keys := make([]string, 0, len(results))
	for k := range results {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(stdout, "RESULT %s %s\n", k, strconv.FormatFloat(results[k], 'f', 2, 64))
	}
	return nil
}

// measureQueries times each periodic query the way its service runs it and EXPLAINs the
// statements it sends.
func (b *bench) measureQueries(ctx context.Context) error {
	claim := orderflow.DeliveryClaim{Limit: 128, PerEndpoint: 16, Lease: 30 * time.Second}
	if err := b.op(ctx, "deliver: stats (every 5 s)", "periodic_deliver_stats_ms", func() error {
		_, err := b.db.DeliveryStats(ctx)
		return err
	}); err != nil {
		return err
	}
	if err := b.explained(ctx, "deliver: claim 128 due (every 250 ms)", "periodic_deliver_claim_ms", func() error {
		_, err := b.db.ClaimDeliveries(ctx, claim)
		return err
	}); err != nil {
		return err
	}
	// Reconcile: the daemon's first pass is full, the others incremental.
	r := reconcile.New(reconcile.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, b.db)
	t0 := time.Now()
	if _, err := r.RunIncremental(ctx); err != nil {
		return err
	}
	b.rows = append(b.rows, row{name: "reconcile: full pass (once a day)", ms: float64(time.Since(t0).Microseconds()) / 1000})
	if err := b.op(ctx, "reconcile: incremental pass (every minute)", "periodic_reconcile_pass_ms", func() error {
		_, err := r.RunIncremental(ctx)
		return err
	}); err != nil {
		return err
	}
	for _, o := range []struct {
		name string
		fn   func(context.Context) (time.Duration, error)
	}{{"deliver: oldest succeeded", b.db.OldestSucceededDelivery}, {"deliver: oldest dead letter", b.db.OldestDeadDelivery},
		{"deliver: oldest intake dead letter", b.db.OldestIntakeDeadLetter}, {"project: oldest dead letter", b.db.OldestProjectorDeadLetter},
		{"reconcile: oldest repair", b.db.OldestRepair}} {
		if err := b.op(ctx, o.name+" (every minute)", "periodic_oldest_ms", func() error { _, err := o.fn(ctx); return err }); err != nil {
			return err
		}
	}
	return b.partnerQueries(ctx)
}

// op times fn (median of runs) and EXPLAINs the statements its first run sent.
func (b *bench) op(ctx context.Context, name, key string, fn func() error) error {
	var first error
	stmts := b.rec.record(func() { first = fn() })
	if first != nil {
		return fmt.Errorf("%s: %w", name, first)
	}
	times := make([]float64, 0, b.runs)
	for range b.runs {
		t0 := time.Now()
		if err := fn(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		times = append(times, float64(time.Since(t0).Microseconds())/1000)
	}
	p, err := b.plans(ctx, stmts)
	if err != nil {
		return err
	}
	b.rows = append(b.rows, row{name: name, key: key, ms: median(times), plan: p})
	return nil
}

// explained measures fn, which writes, by EXPLAIN ANALYZE of its statements in rolled-back
// transactions (median of runs), so every run sees the same rows.
func (b *bench) explained(ctx context.Context, name, key string, fn func() error) error {
	var first error
	stmts := b.rec.record(func() { first = fn() })
	if first != nil {
		return fmt.Errorf("%s: %w", name, first)
	}
	return b.explainedStatements(ctx, name, key, stmts)
}

func (b *bench) explainedStatements(ctx context.Context, name, key string, stmts []statement) error {
	times := make([]float64, 0, b.runs)
	var last plan
	for range b.runs {
		p, err := b.plans(ctx, stmts)
		if err != nil {
			return err
		}
		times, last = append(times, p.execMS), p
	}
	b.rows = append(b.rows, row{name: name, key: key, ms: median(times), plan: last})
	return nil
}

// plans EXPLAINs statements and sums them into one plan.
func (b *bench) plans(ctx context.Context, stmts []statement) (plan, error) {
	var sum plan
	var parts []string
	for _, s := range stmts {
		p, err := explain(ctx, b.conn, s, large)
		if err != nil {
			return plan{}, err
		}
		sum.execMS += p.execMS
		sum.seqScans = append(sum.seqScans, p.seqScans...)
		parts = append(parts, p.summary)
	}
	sum.summary = strings.Join(parts, " | ")
	return sum, nil
}

// partnerQueries runs the partner's callback loop for a moment against an API that answers
// 200, records what it sends, and EXPLAINs its claim and its pending count.
func (b *bench) partnerQueries(ctx context.Context) error {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer api.Close()
	p, err := partner.New(ctx, partner.Config{DatabaseURL: b.dsn, Secrets: []string{"whsec_dGVzdA=="}, APIURL: api.URL,
		APIKey: "bench", Tracer: b.rec, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	defer p.Close()
	// The loop claims until nothing is due, then counts: run it until it has done both.
	var claim, pending []statement
	for deadline := time.Now().Add(time.Minute); len(claim) == 0 || len(pending) == 0; {
		if time.Now().After(deadline) {
			return errors.New("the partner's callback loop never claimed and counted within a minute")
		}
		stmts := b.rec.record(func() {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_ = p.RunCallbacks(cctx)
		})
		for _, s := range stmts {
			switch {
			case strings.Contains(s.sql, "WITH due AS") && len(claim) == 0:
				claim = append(claim, s)
			case strings.Contains(s.sql, "count(*) FROM partner.callbacks") && len(pending) == 0:
				pending = append(pending, s)
			}
		}
	}
	if err := b.explainedStatements(ctx, "partner: callback claim (every 200 ms)", "periodic_partner_claim_ms", claim); err != nil {
		return err
	}
	return b.explainedStatements(ctx, "partner: pending callbacks (every 200 ms)", "periodic_partner_pending_ms", pending)
}

// cycle is one purge of every rule down to its window.
type cycle struct {
	start   time.Time
	dur     time.Duration
	batches int
	p50MS   float64
}

// purgeCycle runs every retention rule of every service, with its default window, until
// nothing is past its window; the first batch of each is EXPLAINed before (one batch of the
// default size, rolled back) and every batch is timed.
func (b *bench) purgeCycle(ctx context.Context) (cycle, float64, error) {
	p, err := partner.New(ctx, partner.Config{DatabaseURL: b.dsn, Secrets: []string{"whsec_dGVzdA=="}, APIURL: "http://127.0.0.1:1",
		Tracer: b.rec, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return cycle{}, 0, err
	}
	defer p.Close()
	rules := []retention.Rule{
		{Name: "webhook_deliveries_succeeded", Keep: deliver.DefaultRetainSucceeded, Purge: b.db.PurgeSucceededDeliveries},
		{Name: "webhook_deliveries_dead", Keep: deliver.DefaultRetainDead, Purge: b.db.PurgeDeadDeliveries},
		{Name: "webhook_intake_dead_letters", Keep: deliver.DefaultRetainDead, Purge: b.db.PurgeIntakeDeadLetters},
		{Name: "projector_dead_letters", Keep: projector.DefaultRetainDeadLetters, Purge: b.db.PurgeProjectorDeadLetters},
		{Name: "reconcile_repairs", Keep: reconcile.DefaultRetainRepairs, Purge: b.db.PurgeRepairs},
	}
	rules = append(rules, p.RetentionRules()...)
	const batch = retention.DefaultBatch
	for _, r := range rules {
		stmts := b.rec.record(func() { _, err = r.Purge(ctx, r.Keep, 0) }) // the statement, deleting nothing
		if err != nil {
			return cycle{}, 0, err
		}
		for i := range stmts {
			stmts[i].args = slices.Clone(stmts[i].args)
			stmts[i].args[1] = batch
		}
		if err := b.explainedStatements(ctx, "purge batch of 1,000: "+r.Name+" (every minute)", "periodic_purge_batch_explain_ms", stmts); err != nil {
			return cycle{}, 0, err
		}
	}
	var batchTimes []float64
	var c cycle
	for i := range rules {
		purge := rules[i].Purge
		rules[i].Purge = func(ctx context.Context, keep time.Duration, limit int) (int64, error) {
			t0 := time.Now()
			n, err := purge(ctx, keep, limit)
			batchTimes = append(batchTimes, float64(time.Since(t0).Microseconds())/1000)
			c.batches++
			return n, err
		}
	}
	pr, err := retention.New("bench", prometheus.NewRegistry(), retention.Config{Batch: batch, MaxBatches: 1 << 30, Pause: time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, rules...)
	if err != nil {
		return cycle{}, 0, err
	}
	var dbStart time.Time
	if err := b.conn.QueryRow(ctx, "SELECT now()").Scan(&dbStart); err != nil {
		return c, 0, err
	}
	t0 := time.Now()
	n, err := pr.Once(ctx)
	c.start, c.dur = dbStart, time.Since(t0)
	c.p50MS = median(batchTimes)
	if err != nil {
		return c, 0, err
	}
	var total int64
	for _, v := range n {
		total += v
	}
	fmt.Fprintf(b.log, "periodic: purge cycle deleted %d rows in %d batches in %s\n", total, c.batches, c.dur.Round(time.Millisecond))
	return c, slices.Max(append(batchTimes, 0)), nil
}

type size struct {
	rows int64
	mb   float64
}

func (b *bench) sizes(ctx context.Context) (map[string]size, error) {
	out := map[string]size{}
	for _, t := range purged {
		var s size
		if err := b.conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM `+t+`), pg_total_relation_size($1::regclass) / 1048576.0`, t).Scan(&s.rows, &s.mb); err != nil {
			return nil, fmt.Errorf("sizing %s: %w", t, err)
		}
		out[t] = s
	}
	return out, nil
}

// pastWindow counts rows a rule should have purged, by the windows as they stood when the
// cycle began, that are still there.
func (b *bench) pastWindow(ctx context.Context, at time.Time) (int64, error) {
	var n int64
	err := b.conn.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM webhook_deliveries WHERE state = 'succeeded' AND succeeded_at < $4::timestamptz - make_interval(secs => $1)) +
		(SELECT count(*) FROM webhook_deliveries WHERE state = 'dead' AND dead_at < $4::timestamptz - make_interval(secs => $2)) +
		(SELECT count(*) FROM partner.receipts r WHERE received_at < $4::timestamptz - make_interval(secs => $3)
		    AND NOT EXISTS (SELECT 1 FROM partner.callbacks c WHERE c.webhook_id = r.webhook_id AND c.state <> 'done'))`,
		deliver.DefaultRetainSucceeded.Seconds(), deliver.DefaultRetainDead.Seconds(), partner.DefaultRetainReceipts.Seconds(), at).Scan(&n)
	return n, err
}

func createDatabase(ctx context.Context, base, name string) (string, func(), error) {
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		return "", nil, fmt.Errorf("connecting to %s: %w", redact(base), err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return "", nil, err
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, err
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	drop := func() {
		c, err := pgx.Connect(context.Background(), base)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	}
	return u.String(), drop, nil
}

func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil {
		return u.Redacted()
	}
	return "the database"
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func envInt(getenv func(string) string, name string, def int) int {
	if n, err := strconv.Atoi(getenv(name)); err == nil {
		return n
	}
	return def
}

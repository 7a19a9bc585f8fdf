package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// backlogRun writes one backlog of n single-event transactions and drains it. With compare,
// capture and pg_recvlogical each drain it b.rounds times, alternating which side goes first
// (ABBA), every drain from its own slot created before the backlog was written: both sides
// read exactly the same WAL, and a load that comes and goes on the shared machine hits both.
// The figures are medians with the spread (min-max); the ratio is the median of each round's
// ratio, whose two drains ran back to back.
func (b *bench) backlogRun(ctx context.Context, n int, name string, compare bool) error {
	rounds := 1
	if compare {
		rounds = max(b.rounds, 1)
	}
	var capSlots, recvSlots, baseSlots []string
	for r := 1; r <= rounds; r++ {
		capSlots = append(capSlots, b.slotName(roundSlot("cap_"+name, r, rounds)))
		if compare || b.recvAll {
			recvSlots = append(recvSlots, b.slotName(roundSlot("recv_"+name, r, rounds)))
		}
		// The baseline drains every backlog, so that its peak RSS is compared at each size.
		if b.baseBin != "" {
			baseSlots = append(baseSlots, b.slotName(roundSlot("base_"+name, r, rounds)))
		}
	}
	slots := append(append(append([]string{}, capSlots...), recvSlots...), baseSlots...)
	if compare {
		slots = append(slots, b.slotName("discard_"+name))
	}
	if err := b.createSlots(ctx, slots...); err != nil {
		return err
	}
	t0 := time.Now()
	if err := b.writeBacklog(ctx, n); err != nil {
		return err
	}
	target, err := b.lsn(ctx)
	if err != nil {
		return err
	}
	avg, err := b.avgEventBytes(ctx)
	if err != nil {
		return err
	}
	b.say("  wrote %d transactions (payload %.0f bytes on average) in %.1fs; draining to %s, %d round(s)", n, avg, time.Since(t0).Seconds(), target, rounds)

	var capRates, recvRates, ratios []float64
	var capRSS float64
	var capRSSs, baseRSSs []float64
	var capCPU, recvCPU []cpuUse
	drainCapture := func(r int) error {
		b.say("  [round %d/%d] load average before capture: %s", r+1, rounds, loadavg())
		secs, rss, cp, caddr, err := b.drainWithCapture(ctx, capSlots[r], target, false, true)
		if err != nil {
			return err
		}
		rate := float64(n) / secs
		extra := ""
		if _, rc, err := histogram(caddr, "orderflow_capture_produce_request_seconds"); err == nil {
			extra = fmt.Sprintf("; %.0f produce requests (%.0f events each), streaming %.2fs after start", rc, float64(n)/max(rc, 1), startupSecs(caddr))
		}
		if w, err := gauge(caddr, "orderflow_capture_queue_wait_seconds_total"); err == nil {
			// How long the walsender waited on capture's byte budget (or a full queue).
			extra += fmt.Sprintf("; stream waited for room %.2fs", w)
		}
		cp.stop()
		b.say("  %-44s %8.0f events/s  %6.2fs  peak RSS %5.1f MB", "orderflow capture (Kafka acks=all, confirmed)", rate, secs, rss)
		b.say("      %s%s", cp.cpu.per(n), extra)
		capRates, capCPU = append(capRates, rate), append(capCPU, cp.cpu)
		capRSS = max(capRSS, rss)
		capRSSs = append(capRSSs, rss)
		return nil
	}
	drainRecv := func(r int) error {
		b.say("  [round %d/%d] load average before pg_recvlogical: %s", r+1, rounds, loadavg())
		secs, use, err := b.drainWithRecvlogical(ctx, recvSlots[r], target)
		if err != nil {
			return err
		}
		rate := float64(n) / secs
		b.say("  %-44s %8.0f events/s  %6.2fs", "pg_recvlogical (pgoutput to /dev/null)", rate, secs)
		b.say("      %s", use.per(n))
		recvRates, recvCPU = append(recvRates, rate), append(recvCPU, use)
		return nil
	}
	var baseRates []float64
	drainBase := func(r int) error {
		b.say("  [round %d/%d] load average before the baseline binary: %s", r+1, rounds, loadavg())
		b.useBase = true
		secs, rss, cp, caddr, err := b.drainWithCapture(ctx, baseSlots[r], target, false, true)
		b.useBase = false
		if err != nil {
			return err
		}
		rate := float64(n) / secs
		extra := ""
		if _, rc, err := histogram(caddr, "orderflow_capture_produce_request_seconds"); err == nil {
			extra = fmt.Sprintf("; %.0f produce requests (%.0f events each)", rc, float64(n)/max(rc, 1))
		}
		cp.stop()
		b.say("  %-44s %8.0f events/s  %6.2fs  peak RSS %5.1f MB", "baseline capture ("+b.baseBin+")", rate, secs, rss)
		b.say("      %s%s", cp.cpu.per(n), extra)
		baseRates, baseRSSs = append(baseRates, rate), append(baseRSSs, rss)
		return nil
	}
	for r := 0; r < rounds; r++ {
		// The baseline goes first in even rounds and last in odd ones, so that neither binary
		// always drains right after the backlog was written (or after the other).
		if b.baseBin != "" && r%2 == 0 {
			if err := drainBase(r); err != nil {
				return err
			}
		}
		first, second := drainCapture, drainRecv
		if r%2 == 1 {
			first, second = drainRecv, drainCapture
		}
		if !compare {
			first, second = drainCapture, nil
			if b.recvAll {
				second = drainRecv
			}
		}
		if err := first(r); err != nil {
			return err
		}
		if second != nil {
			if err := second(r); err != nil {
				return err
			}
		}
		if b.baseBin != "" && r%2 == 1 {
			if err := drainBase(r); err != nil {
				return err
			}
		}
		if len(recvRates) > r {
			ratios = append(ratios, capRates[r]/recvRates[r])
		}
	}
	capRate := median(capRates)
	if !compare {
		if len(ratios) > 0 {
			b.say("  ratio capture / pg_recvlogical on this backlog: %.2f", ratios[0])
			b.result("capture_vs_recvlogical_ratio_"+sizeKey(n), ratios[0], "%.2f")
			b.result("recvlogical_events_per_s_"+sizeKey(n), recvRates[0], "%.0f")
		}
		b.result("capture_events_per_s_"+sizeKey(n), capRate, "%.0f")
		b.result("capture_rss_mb_"+sizeKey(n), capRSS, "%.1f")
		if len(baseRates) > 0 {
			b.say("  baseline %.0f events/s, peak RSS %.1f MB; capture / baseline %.2f", baseRates[0], baseRSSs[0], capRate/baseRates[0])
			b.result("capture_baseline_events_per_s_"+sizeKey(n), baseRates[0], "%.0f")
			b.result("capture_baseline_rss_mb_"+sizeKey(n), baseRSSs[0], "%.1f")
		}
		return nil
	}
	b.say("  [discard] load average before decode-only: %s", loadavg())
	dSecs, dRSS, _, _, err := b.drainWithCapture(ctx, b.slotName("discard_"+name), target, true, false)
	if err != nil {
		return err
	}
	dRate := float64(n) / dSecs
	recvRate := median(recvRates)
	b.say("  %-44s %8.0f events/s  %6.2fs  peak RSS %5.1f MB", "orderflow capture -discard (decode only)", dRate, dSecs, dRSS)
	b.say("  capture        median %8.0f events/s (min-max %.0f-%.0f) over %d rounds", capRate, minOf(capRates), maxOf(capRates), rounds)
	b.say("  pg_recvlogical median %8.0f events/s (min-max %.0f-%.0f)", recvRate, minOf(recvRates), maxOf(recvRates))
	if len(baseRates) > 0 {
		b.say("  baseline       median %8.0f events/s (min-max %.0f-%.0f); median ratio baseline / pg_recvlogical %.2f",
			median(baseRates), minOf(baseRates), maxOf(baseRates), median(baseRates)/recvRate)
		b.say("  peak RSS per round: capture %s MB, baseline %s MB", fmtMBs(capRSSs), fmtMBs(baseRSSs))
		b.result("capture_baseline_rss_mb_"+sizeKey(n), maxOf(baseRSSs), "%.1f")
		b.result("capture_baseline_events_per_s", median(baseRates), "%.0f")
	}
	b.say("  ratio capture / pg_recvlogical: median %.2f (min-max %.2f-%.2f; goal >= 1.0); decode-only / pg_recvlogical median: %.2f",
		median(ratios), minOf(ratios), maxOf(ratios), dRate/recvRate)
	cu, ru := medianUse(capCPU), medianUse(recvCPU)
	b.say("  median CPU per event: capture %.1f us + broker %.1f us + walsender %.1f us; pg_recvlogical %.1f us + walsender %.1f us",
		cu.reader*1e6/float64(n), cu.kafka*1e6/float64(n), cu.walsender*1e6/float64(n), ru.reader*1e6/float64(n), ru.walsender*1e6/float64(n))
	b.result("capture_events_per_s", capRate, "%.0f")
	b.result("capture_events_per_s_min", minOf(capRates), "%.0f")
	b.result("capture_events_per_s_max", maxOf(capRates), "%.0f")
	b.result("recvlogical_events_per_s", recvRate, "%.0f")
	b.result("recvlogical_events_per_s_min", minOf(recvRates), "%.0f")
	b.result("recvlogical_events_per_s_max", maxOf(recvRates), "%.0f")
	b.result("capture_discard_events_per_s", dRate, "%.0f")
	b.result("capture_vs_recvlogical_ratio", median(ratios), "%.2f")
	b.result("capture_vs_recvlogical_ratio_min", minOf(ratios), "%.2f")
	b.result("capture_vs_recvlogical_ratio_max", maxOf(ratios), "%.2f")
	b.result("capture_vs_recvlogical_rounds", float64(rounds), "%.0f")
	b.result("capture_cpu_us_per_event", cu.reader*1e6/float64(n), "%.1f")
	b.result("capture_broker_cpu_us_per_event", cu.kafka*1e6/float64(n), "%.1f")
	b.result("capture_walsender_cpu_us_per_event", cu.walsender*1e6/float64(n), "%.1f")
	b.result("recvlogical_walsender_cpu_us_per_event", ru.walsender*1e6/float64(n), "%.1f")
	b.result("capture_rss_mb_"+sizeKey(n), capRSS, "%.1f")
	if n != 100_000 {
		b.result("capture_backlog_events", float64(n), "%.0f")
	}
	return nil
}

// fmtMBs lists megabyte figures for a one-line summary.
func fmtMBs(xs []float64) string {
	s := ""
	for i, x := range xs {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%.1f", x)
	}
	return s
}

// roundSlot names round r's slot; a single round keeps the plain name.
func roundSlot(base string, r, rounds int) string {
	if rounds == 1 {
		return base
	}
	return fmt.Sprintf("%s_%d", base, r)
}

// slotName makes a slot name unique to this run: slots are per cluster, not per database,
// and two runs on one stack must not collide.
func (b *bench) slotName(base string) string { return base + "_" + b.runID }

func minOf(xs []float64) float64 {
	m := math.Inf(1)
	for _, x := range xs {
		m = math.Min(m, x)
	}
	return m
}

func maxOf(xs []float64) float64 {
	m := math.Inf(-1)
	for _, x := range xs {
		m = math.Max(m, x)
	}
	return m
}

// medianUse is the median of each part's CPU over the rounds.
func medianUse(us []cpuUse) cpuUse {
	pick := func(f func(cpuUse) float64) float64 {
		xs := make([]float64, len(us))
		for i, u := range us {
			xs[i] = f(u)
		}
		return median(xs)
	}
	return cpuUse{
		walsender: pick(func(u cpuUse) float64 { return u.walsender }),
		kafka:     pick(func(u cpuUse) float64 { return u.kafka }),
		reader:    pick(func(u cpuUse) float64 { return u.reader }),
	}
}

func (b *bench) bigTxnRun(ctx context.Context, n int) error {
	slot := "cap_bigtxn"
	slots := []string{slot}
	if b.baseBin != "" {
		slots = append(slots, "base_bigtxn")
	}
	if err := b.createSlots(ctx, slots...); err != nil {
		return err
	}
	t0 := time.Now()
	if _, err := b.exec(ctx, `INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, schema_version, payload)
		SELECT gen_random_uuid(), 'order', 'key-' || (i % 10000), 'order.created', 1,
		       jsonb_build_object('seq', i, 'currency', 'EUR', 'total_cents', i)
		FROM generate_series(1, $1) AS i`, n); err != nil {
		return err
	}
	target, err := b.lsn(ctx)
	if err != nil {
		return err
	}
	b.say("  wrote one transaction of %d rows in %.1fs", n, time.Since(t0).Seconds())
	secs, rss, _, _, err := b.drainWithCapture(ctx, slot, target, false, false)
	if err != nil {
		return err
	}
	b.say("  %-44s %8.0f events/s  %6.2fs  peak RSS %5.1f MB (goal <= 100)", fmt.Sprintf("capture, one %d-row transaction", n), float64(n)/secs, secs, rss)
	b.result("capture_rss_mb_big_txn", rss, "%.1f")
	b.result("capture_big_txn_events_per_s", float64(n)/secs, "%.0f")
	if b.baseBin != "" {
		b.say("  load average before the baseline binary: %s", loadavg())
		b.useBase = true
		secs, rss, _, _, err := b.drainWithCapture(ctx, "base_bigtxn", target, false, false)
		b.useBase = false
		if err != nil {
			return err
		}
		b.say("  %-44s %8.0f events/s  %6.2fs  peak RSS %5.1f MB", "baseline capture ("+b.baseBin+")", float64(n)/secs, secs, rss)
		b.result("capture_baseline_rss_mb_big_txn", rss, "%.1f")
	}
	return nil
}

// latencyRun writes single-event transactions at a steady rate while capture runs, runs times
// for d each against the same capture process, and reads capture's commit-to-ack histogram
// before and after each run. Besides capture's figure it measures the two halves separately,
// so that a tail can be placed: the PostgreSQL side (commit timestamp -> Commit message
// received, and the writers' own commit round trip, which waits for the WAL flush) and the
// checkpoints and full-page images PostgreSQL wrote meanwhile.
func (b *bench) latencyRun(ctx context.Context, rate int, d time.Duration, runs int, opt latencyOptions) error {
	if opt.prefill > 0 {
		t0 := time.Now()
		if err := b.writeBacklog(ctx, opt.prefill); err != nil {
			return err
		}
		b.say("  prefilled the outbox with %d transactions in %.1fs (the table and its random-id index as large as after the backlog runs)", opt.prefill, time.Since(t0).Seconds())
	}
	slot := "cap_latency"
	if err := b.createSlots(ctx, slot); err != nil {
		return err
	}
	target, err := b.lsn(ctx)
	if err != nil {
		return err
	}
	_, _, p, addr, err := b.drainWithCapture(ctx, slot, target, false, true)
	if err != nil {
		return err
	}
	defer func() { p.stop() }()
	if err := waitStreaming(addr, p); err != nil {
		return err
	}
	if opt.warmup > 0 {
		// Not counted: for measuring the steady state apart from the first seconds of a
		// fresh database, slot and topic (docs/CAPTURE.md, "The first run").
		b.say("  warm-up: load average %s", loadavg())
		lr, err := b.latencyOnce(ctx, slot, p, addr, rate, opt.warmup, opt.timeline)
		if err != nil {
			return err
		}
		b.say("    warm-up (%s, not counted): commit -> Kafka ack p50 %.1f ms, p99 %.1f ms; PostgreSQL side p99 %.1f ms; %.0f produce requests",
			opt.warmup, lr.ack50, lr.ack99, lr.recv99, lr.reqs)
		b.result("commit_to_kafka_p99_ms_warmup", lr.ack99, "%.1f")
	}
	if opt.ab != "" {
		defer func() {
			if err := b.alterSystem(context.Background(), opt.ab, false); err != nil {
				b.say("  FAILED to reset %s: %v", opt.ab, err)
			}
		}()
	}
	var p50s, p99s, recv99s, client99s, rates []float64
	var abP99 [2][]float64
	checkpoints := 0.0
	for r := 1; r <= runs; r++ {
		side := 0
		if opt.ab != "" {
			// Alternate: odd runs with the server's own settings, even runs with opt.ab.
			side = 1 - r%2
			if err := b.alterSystem(ctx, opt.ab, side == 1); err != nil {
				return err
			}
		}
		if opt.checkpointFirst {
			if _, err := b.exec(ctx, `CHECKPOINT`); err != nil {
				return err
			}
		}
		settings, err := b.pgSettings(ctx)
		if err != nil {
			return err
		}
		if opt.freshCapture && r > 1 {
			// A new capture process, hence a new replication session and walsender, on the
			// same slot, database and topic: tells a start-up tail of capture's session
			// from one of the fresh database.
			p.stop()
			if err := produceErrors(p.log); err != nil {
				return err
			}
			target, err := b.lsn(ctx)
			if err != nil {
				return err
			}
			if _, _, p, addr, err = b.drainWithCapture(ctx, slot, target, false, true); err != nil {
				return err
			}
			if err := waitStreaming(addr, p); err != nil {
				return err
			}
		}
		b.say("  latency run %d/%d: load average %s; %s", r, runs, loadavg(), settings)
		lr, err := b.latencyOnce(ctx, slot, p, addr, rate, d, opt.timeline)
		if err != nil {
			return err
		}
		abP99[side] = append(abP99[side], lr.ack99)
		b.say("    commit -> Kafka ack: p50 %.1f ms, p99 %.1f ms, max bucket %s (%.0f events; the writers committed %d of the %d offered)",
			lr.ack50, lr.ack99, lr.ackMax, lr.n, lr.written, int(float64(rate)*d.Seconds()))
		b.say("    PostgreSQL side, commit -> Commit message received: p50 %.1f ms, p99 %.1f ms; writers' commit round trip p50 %.1f ms, p99 %.1f ms, max %.1f ms",
			lr.recv50, lr.recv99, lr.client50, lr.client99, lr.clientMax)
		b.say("    capture side: %.0f produce requests, p50 %.1f ms, p99 %.1f ms; writers fell at most %.1f ms behind their schedule",
			lr.reqs, lr.req50, lr.req99, lr.behindMax)
		b.say("    CPU while writing: %s; capture's longest GC pause of its last ones %.2f ms", lr.cpu, lr.gcMax)
		b.say("    per event written: %s", lr.perEvent)
		b.say("    WAL: %.1f MB (%.0f%% of it full-page images by count: %.0f FPIs / %.0f records), %.0f flushes of %.2f ms on average (0 without track_wal_io_timing), %.0f checkpoints finished during the run%s",
			lr.walMB, 100*lr.fpi/max(lr.records, 1), lr.fpi, lr.records, lr.syncs, lr.syncMs, lr.checkpoints, lr.cpLines)
		p50s, p99s = append(p50s, lr.ack50), append(p99s, lr.ack99)
		recv99s, client99s = append(recv99s, lr.recv99), append(client99s, lr.client99)
		rates = append(rates, float64(lr.written)/d.Seconds())
		checkpoints += lr.checkpoints
	}
	if err := produceErrors(p.log); err != nil {
		return err
	}
	b.say("  commit -> Kafka ack at %d events/s, %d runs of %s: p99 median %.1f ms (min %.1f, max %.1f), p50 median %.1f ms (goal p99 <= 25 ms); PostgreSQL side p99 median %.1f ms",
		rate, runs, d, median(p99s), slices.Min(p99s), slices.Max(p99s), median(p50s), median(recv99s))
	b.result("commit_to_kafka_p50_ms", median(p50s), "%.1f")
	b.result("commit_to_kafka_p99_ms", median(p99s), "%.1f")
	b.result("commit_to_kafka_p99_ms_min", slices.Min(p99s), "%.1f")
	b.result("commit_to_kafka_p99_ms_max", slices.Max(p99s), "%.1f")
	b.result("commit_to_receive_p99_ms", median(recv99s), "%.1f")
	b.result("latency_client_commit_p99_ms", median(client99s), "%.1f")
	b.result("latency_checkpoints", checkpoints, "%.0f")
	// Below the offered rate, the writers could not keep up and the figure is not at rate.
	b.result("latency_written_events_per_s", median(rates), "%.0f")
	if opt.ab != "" {
		ms := func(xs []float64) string {
			var s []string
			for _, x := range xs {
				s = append(s, fmt.Sprintf("%.1f", x))
			}
			return strings.Join(s, ", ")
		}
		b.say("  A/B: p99 with the server's settings %s ms (median %.1f); with %s %s ms (median %.1f)",
			ms(abP99[0]), median(abP99[0]), opt.ab, ms(abP99[1]), median(abP99[1]))
	}
	return nil
}

// latencyOptions are for measuring one cause at a time (docs/CAPTURE.md, "Latency").
type latencyOptions struct {
	timeline bool
	// prefill writes this many backlog transactions first, when the backlog runs are skipped.
	prefill int
	// ab is "name=value,..." applied with ALTER SYSTEM on every second run.
	ab string
	// checkpointFirst runs CHECKPOINT before each run: the full-page images that follow
	// every checkpoint then fall inside the run instead of wherever the schedule puts them.
	checkpointFirst bool
	// warmup, if positive, is a run of this length at the rate before the counted runs,
	// reported on its own.
	warmup time.Duration
	// freshCapture starts a new capture process before every run after the first.
	freshCapture bool
}

// alterSystem sets (or resets) the settings of spec and reloads the configuration. Only
// settings that a reload changes are accepted by the server without a restart.
func (b *bench) alterSystem(ctx context.Context, spec string, set bool) error {
	for _, kv := range strings.Split(spec, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || name == "" {
			return fmt.Errorf("-latency-ab: %q is not name=value", kv)
		}
		stmt := "ALTER SYSTEM RESET " + pgx.Identifier{name}.Sanitize()
		if set {
			stmt = "ALTER SYSTEM SET " + pgx.Identifier{name}.Sanitize() + " = '" + strings.ReplaceAll(value, "'", "''") + "'"
		}
		if _, err := b.exec(ctx, stmt); err != nil {
			return err
		}
	}
	_, err := b.exec(ctx, `SELECT pg_reload_conf()`)
	time.Sleep(200 * time.Millisecond) // the reload reaches every process asynchronously
	return err
}

type latencyResult struct {
	n, ack50, ack99, recv50, recv99, reqs, req50, req99 float64
	ackMax                                              string
	client50, client99, clientMax, behindMax            float64
	walMB, fpi, records, checkpoints                    float64
	cpLines, cpu, perEvent                              string
	gcMax, syncs, syncMs                                float64
	written                                             int
}

func (b *bench) latencyOnce(ctx context.Context, slot string, p *proc, addr string, rate int, d time.Duration, timeline bool) (latencyResult, error) {
	var lr latencyResult
	conn, err := pgx.Connect(ctx, b.dsn)
	if err != nil {
		return lr, err
	}
	defer conn.Close(ctx)
	s0, err := snapshot(ctx, conn, addr)
	if err != nil {
		return lr, err
	}
	started := time.Now()
	cpu0 := sampleCPU(p.cmd.Process.Pid)
	stopTimeline := make(chan struct{})
	timelineDone := make(chan struct{})
	recent := &commitLog{}
	go func() {
		defer close(timelineDone)
		b.timeline(ctx, addr, s0, recent, stopTimeline, timeline)
	}()

	// Four writers, each committing one row every 4/rate seconds on a fixed schedule, offset
	// from each other by a quarter interval so that the commits are evenly spaced instead of
	// arriving four at a time. A writer that falls behind (its commit waited) catches up
	// without sleeping: the offered rate stays the same (open loop), and since the latency is
	// counted from each transaction's commit time, a late start does not hide a stall.
	const writers = 4
	interval := time.Duration(float64(time.Second) * writers / float64(rate))
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	commits := make([][]time.Duration, writers)
	behind := make([]time.Duration, writers)
	t0 := time.Now()
	end := t0.Add(d)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgx.Connect(ctx, b.dsn)
			if err != nil {
				errc <- err
				return
			}
			defer c.Close(ctx)
			next := t0.Add(interval * time.Duration(w) / writers)
			time.Sleep(time.Until(next))
			for time.Now().Before(end) {
				if late := time.Since(next); late > behind[w] {
					behind[w] = late
				}
				ts := time.Now()
				if _, err := c.Exec(ctx, `INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, schema_version, payload)
					VALUES (gen_random_uuid(), 'order', gen_random_uuid()::text, 'order.created', 1, '{"bench": true}')`); err != nil {
					errc <- err
					return
				}
				took := time.Since(ts)
				commits[w] = append(commits[w], took)
				recent.add(took)
				next = next.Add(interval)
				time.Sleep(time.Until(next))
			}
		}()
	}
	wg.Wait()
	cpu1 := sampleCPU(p.cmd.Process.Pid)
	lr.cpu = cpu1.since(cpu0, time.Since(started).Seconds())
	close(errc)
	if err := <-errc; err != nil {
		close(stopTimeline)
		<-timelineDone
		return lr, err
	}
	target, err := b.lsn(ctx)
	if err == nil {
		_, err = b.waitConfirmed(ctx, slot, target, p.alive)
	}
	close(stopTimeline)
	<-timelineDone
	if err != nil {
		return lr, err
	}
	s1, err := snapshot(ctx, conn, addr)
	if err != nil {
		return lr, err
	}
	ack := histDiff(s1.ack, s0.ack)
	recv := histDiff(s1.recv, s0.recv)
	req := histDiff(s1.req, s0.req)
	lr.n = ack.count
	if lr.n == 0 {
		return lr, errors.New("no commit-to-ack observations during the run")
	}
	lr.ack50, lr.ack99 = ack.q(0.5)*1000, ack.q(0.99)*1000
	lr.ackMax = ack.maxBucket()
	lr.recv50, lr.recv99 = recv.q(0.5)*1000, recv.q(0.99)*1000
	lr.reqs, lr.req50, lr.req99 = req.count, req.q(0.5)*1000, req.q(0.99)*1000
	var all []time.Duration
	for _, c := range commits {
		all = append(all, c...)
	}
	slices.Sort(all)
	lr.written = len(all)
	lr.perEvent = cpu1.perEvent(cpu0, lr.written)
	if len(all) > 0 {
		ms := func(q float64) float64 { return float64(all[int(q*float64(len(all)-1))]) / 1e6 }
		lr.client50, lr.client99, lr.clientMax = ms(0.5), ms(0.99), ms(1)
	}
	lr.behindMax = float64(slices.Max(behind)) / 1e6
	gc, _ := gauge(addr, `go_gc_duration_seconds{quantile="1"}`)
	lr.gcMax = gc * 1000
	lr.walMB = (s1.walBytes - s0.walBytes) / 1e6
	lr.fpi, lr.records = s1.walFPI-s0.walFPI, s1.walRecords-s0.walRecords
	lr.checkpoints = s1.checkpoints - s0.checkpoints
	lr.syncs = s1.walSyncs - s0.walSyncs
	if lr.syncs > 0 {
		lr.syncMs = (s1.walSyncMs - s0.walSyncMs) / lr.syncs
	}
	if lines := checkpointLines(started, time.Now()); len(lines) > 0 {
		lr.cpLines = "; server log:\n      " + strings.Join(lines, "\n      ")
	}
	return lr, nil
}

// pgSettings prints the settings that decide how a commit reaches a walsender.
func (b *bench) pgSettings(ctx context.Context) (string, error) {
	c, err := pgx.Connect(ctx, b.dsn)
	if err != nil {
		return "", err
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `SELECT name || '=' || setting || coalesce(unit, '') FROM pg_settings
		WHERE name IN ('synchronous_commit', 'max_wal_size', 'checkpoint_timeout', 'checkpoint_completion_target',
		               'wal_compression', 'wal_writer_delay', 'wal_writer_flush_after', 'full_page_writes',
		               'wal_sync_method', 'shared_buffers', 'wal_buffers', 'commit_delay')
		ORDER BY name`)
	if err != nil {
		return "", err
	}
	s, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return strings.Join(s, " "), err
}

// commitLog collects the writers' commit round trips for the timeline's current second.
type commitLog struct {
	mu sync.Mutex
	ds []time.Duration
}

func (l *commitLog) add(d time.Duration) {
	l.mu.Lock()
	l.ds = append(l.ds, d)
	l.mu.Unlock()
}

// take returns the p99 and the maximum in ms since the last take.
func (l *commitLog) take() (p99, maxMs float64) {
	l.mu.Lock()
	ds := l.ds
	l.ds = nil
	l.mu.Unlock()
	if len(ds) == 0 {
		return 0, 0
	}
	slices.Sort(ds)
	return float64(ds[int(0.99*float64(len(ds)-1))]) / 1e6, float64(ds[len(ds)-1]) / 1e6
}

// waitStreaming waits until the capture at addr serves its metrics and streams. A slot that
// confirmed the drain's target already when it was created (nothing written in between)
// lets drainWithCapture return before capture even listens.
func waitStreaming(addr string, p *proc) error {
	deadline := time.Now().Add(time.Minute)
	for {
		if v, err := gauge(addr, "orderflow_capture_active"); err == nil && v == 1 {
			return nil
		}
		if err := p.alive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("capture at %s did not start streaming within a minute (log %s)", addr, p.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

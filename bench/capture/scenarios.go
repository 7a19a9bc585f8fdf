package main

import (
	"context"
	"fmt"
	"math"
	"sort"
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
			if b.baseBin != "" {
				baseSlots = append(baseSlots, b.slotName(roundSlot("base_"+name, r, rounds)))
			}
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
		cp.stop()
		b.say("  %-44s %8.0f events/s  %6.2fs  peak RSS %5.1f MB", "orderflow capture (Kafka acks=all, confirmed)", rate, secs, rss)
		b.say("      %s%s", cp.cpu.per(n), extra)
		capRates, capCPU = append(capRates, rate), append(capCPU, cp.cpu)
		capRSS = max(capRSS, rss)
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
		secs, _, cp, caddr, err := b.drainWithCapture(ctx, baseSlots[r], target, false, true)
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
		b.say("  %-44s %8.0f events/s  %6.2fs", "baseline capture ("+b.baseBin+")", rate, secs)
		b.say("      %s%s", cp.cpu.per(n), extra)
		baseRates = append(baseRates, rate)
		return nil
	}
	for r := 0; r < rounds; r++ {
		if b.baseBin != "" {
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

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

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
	if err := b.createSlots(ctx, slot); err != nil {
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
	b.say("  %-44s %8.0f events/s  %6.2fs  peak RSS %5.1f MB (goal <= 150)", fmt.Sprintf("capture, one %d-row transaction", n), float64(n)/secs, secs, rss)
	b.result("capture_rss_mb_big_txn", rss, "%.1f")
	b.result("capture_big_txn_events_per_s", float64(n)/secs, "%.0f")
	return nil
}

// latencyRun writes single-event transactions at a steady rate while capture runs and reads
// capture's commit-to-ack histogram afterwards.
func (b *bench) latencyRun(ctx context.Context, rate int, d time.Duration) error {
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
	defer p.stop()
	// Four writers, each committing one row every 4/rate seconds on a fixed schedule.
	const writers = 4
	interval := time.Duration(float64(time.Second) * writers / float64(rate))
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	end := time.Now().Add(d)
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
			next := time.Now()
			for i := 0; time.Now().Before(end); i++ {
				if _, err := c.Exec(ctx, `INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, schema_version, payload)
					VALUES (gen_random_uuid(), 'order', gen_random_uuid()::text, 'order.created', 1, '{"bench": true}')`); err != nil {
					errc <- err
					return
				}
				next = next.Add(interval)
				time.Sleep(time.Until(next))
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	target, err = b.lsn(ctx)
	if err != nil {
		return err
	}
	if _, err := b.waitConfirmed(ctx, slot, target, p.alive); err != nil {
		return err
	}
	if err := produceErrors(p.log); err != nil {
		return err
	}
	buckets, count, err := histogram(addr, "orderflow_capture_commit_to_ack_seconds")
	if err != nil {
		return err
	}
	p50, p99 := quantile(buckets, count, 0.50)*1000, quantile(buckets, count, 0.99)*1000
	if rb, rc, err := histogram(addr, "orderflow_capture_commit_to_receive_seconds"); err == nil {
		b.say("  of which commit -> Commit message received: p50 %.1f ms, p99 %.1f ms", quantile(rb, rc, 0.5)*1000, quantile(rb, rc, 0.99)*1000)
	}
	if rb, rc, err := histogram(addr, "orderflow_capture_produce_request_seconds"); err == nil {
		b.say("  produce requests: %.0f, p50 %.1f ms, p99 %.1f ms", rc, quantile(rb, rc, 0.5)*1000, quantile(rb, rc, 0.99)*1000)
	}
	b.say("  commit -> Kafka ack at %d events/s for %s (%0.f events): p50 %.1f ms, p99 %.1f ms (goal p99 <= 25 ms)", rate, d, count, p50, p99)
	b.result("commit_to_kafka_p50_ms", p50, "%.1f")
	b.result("commit_to_kafka_p99_ms", p99, "%.1f")
	return nil
}

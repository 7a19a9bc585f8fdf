package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

func (b *bench) backlogRun(ctx context.Context, n int, name string, compare bool) error {
	slots := []string{"cap_" + name}
	if compare {
		slots = append(slots, "recv_"+name, "discard_"+name)
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
	b.say("  wrote %d transactions (payload %.0f bytes on average) in %.1fs; draining to %s", n, avg, time.Since(t0).Seconds(), target)

	capSecs, capRSS, cp, caddr, err := b.drainWithCapture(ctx, slots[0], target, false, true)
	if err != nil {
		return err
	}
	if _, rc, err := histogram(caddr, "orderflow_capture_produce_request_seconds"); err == nil {
		b.say("  (%d events in %.0f produce requests; streaming began %.2fs after start)", n, rc, startupSecs(caddr))
	}
	cp.stop()
	capRate := float64(n) / capSecs
	b.say("  %-44s %8.0f events/s  %6.2fs  peak RSS %5.1f MB", "orderflow capture (Kafka acks=all, confirmed)", capRate, capSecs, capRSS)
	if !compare {
		b.result("capture_events_per_s_"+sizeKey(n), capRate, "%.0f")
		b.result("capture_rss_mb_"+sizeKey(n), capRSS, "%.1f")
		return nil
	}
	recvSecs, err := b.drainWithRecvlogical(ctx, slots[1], target)
	if err != nil {
		return err
	}
	recvRate := float64(n) / recvSecs
	b.say("  %-44s %8.0f events/s  %6.2fs", "pg_recvlogical (pgoutput to /dev/null)", recvRate, recvSecs)
	dSecs, dRSS, _, _, err := b.drainWithCapture(ctx, slots[2], target, true, false)
	if err != nil {
		return err
	}
	dRate := float64(n) / dSecs
	b.say("  %-44s %8.0f events/s  %6.2fs  peak RSS %5.1f MB", "orderflow capture -discard (decode only)", dRate, dSecs, dRSS)
	b.say("  ratio capture / pg_recvlogical: %.2f   (goal >= 1.0); decode-only / pg_recvlogical: %.2f", capRate/recvRate, dRate/recvRate)
	b.result("capture_events_per_s", capRate, "%.0f")
	b.result("recvlogical_events_per_s", recvRate, "%.0f")
	b.result("capture_discard_events_per_s", dRate, "%.0f")
	b.result("capture_vs_recvlogical_ratio", capRate/recvRate, "%.2f")
	b.result("capture_rss_mb_"+sizeKey(n), capRSS, "%.1f")
	if n != 100_000 {
		b.result("capture_backlog_events", float64(n), "%.0f")
	}
	return nil
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

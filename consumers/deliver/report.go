package deliver

import (
	"context"
	"time"

	"orderflow"
	"orderflow/internal/backoff"
)

// record writes reports in batches: one transaction per batch instead of one per attempt is
// what lets a single deliverer keep up with thousands of deliveries a second. A write that
// fails is retried with backoff for as long as the batch's claims last: a successful attempt
// that is not recorded is sent again once its lease runs out (at least once, never lost, but
// a second POST the partner must dedupe), so a short database outage must not cost that.
func (s *sender) record(ctx context.Context, reports <-chan orderflow.DeliveryReport) {
	const maxBatch = 256
	batch := make([]orderflow.DeliveryReport, 0, maxBatch)
	for first := range reports {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-reports:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		owned, err := s.recordBatch(ctx, batch)
		if err != nil {
			s.log.Error("recording delivery attempts failed; their deliveries are retried after the lease", "attempts", len(batch), "err", err)
			continue
		}
		for i, rep := range batch {
			s.logReport(rep, owned[i])
		}
	}
}

func (s *sender) logReport(rep orderflow.DeliveryReport, owned bool) {
	d, a, res := rep.Delivery, rep.Attempt, rep.Result
	if !owned {
		s.log.Warn("delivery claim expired before the attempt was recorded", "delivery_id", d.ID, "event_id", d.EventID)
		return
	}
	log := s.log.With("delivery_id", d.ID, "event_id", d.EventID, "endpoint_id", d.EndpointID, "attempt", a.Number, "status", a.Status, "outcome", a.Outcome)
	switch res.State {
	case orderflow.DeliverySucceeded:
		if !d.EventTime.IsZero() {
			s.m.eventToSuccess.Observe(s.now().Sub(d.EventTime).Seconds())
		}
		log.Debug("delivered", "latency_ms", a.Latency.Milliseconds())
	case orderflow.DeliveryDead:
		s.m.deadLettered.Inc()
		if res.DisableReason != "" {
			s.m.disabled.Inc()
			log.Warn("endpoint disabled", "reason", res.DisableReason)
		}
		log.Warn("delivery dead-lettered", "err", a.Error)
	default:
		log.Info("delivery failed, will retry", "err", a.Error, "next_attempt_at", res.NextAttemptAt)
	}
}

// recordBatch writes one batch, retrying until it is written or the claims it holds have run
// out, when another deliverer may own the deliveries and the write could only log attempts.
func (s *sender) recordBatch(ctx context.Context, batch []orderflow.DeliveryReport) ([]bool, error) {
	giveUp := s.now().Add(s.lease)
	wait := backoff.New(50*time.Millisecond, 2*time.Second)
	for {
		owned, err := s.store.RecordAttempts(ctx, batch)
		if err == nil || !s.now().Before(giveUp) {
			return owned, err
		}
		pause := wait.Next()
		s.log.Warn("recording delivery attempts failed; retrying", "attempts", len(batch), "err", err, "backoff", pause)
		if !backoff.Sleep(ctx, pause) {
			return nil, err
		}
	}
}

package deliver

import (
	"context"

	"orderflow"
)

// record writes reports in batches: one transaction per batch instead of one per attempt is
// what lets a single deliverer keep up with thousands of deliveries a second. If a write
// fails, the claims run out and the deliveries are retried: at least once, never lost.
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
		owned, err := s.store.RecordAttempts(ctx, batch)
		if err != nil {
			s.log.Error("recording delivery attempts", "attempts", len(batch), "err", err)
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

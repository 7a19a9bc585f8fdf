package deliver

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"orderflow"
	"orderflow/internal/periodic"
)

// What the deliverer does for an endpoint as a whole rather than for one delivery: it paces the
// sends to a rate-limited endpoint, and disables an endpoint whose attempts have all failed for
// too long.

// endpointStore is what that needs from the database.
type endpointStore interface {
	// ReserveSendSlot reserves the endpoint's next send under its rate limit, shared by every
	// deliverer, if it starts within maxWait, and says how long to wait before starting it; ok
	// false reserves nothing and says when the next slot frees.
	ReserveSendSlot(ctx context.Context, endpointID string, maxWait time.Duration) (wait time.Duration, ok bool, err error)
	// DeferDelivery gives a claimed delivery back, due after wait, without counting an attempt.
	DeferDelivery(ctx context.Context, d orderflow.Delivery, wait time.Duration) error
	// DisableFailingEndpoints disables the enabled endpoints failing for at least failingFor.
	DisableFailingEndpoints(ctx context.Context, failingFor time.Duration) ([]orderflow.Endpoint, error)
}

type endpointMetrics struct {
	autoDisabled prometheus.Counter
	rateWaited   prometheus.Counter
	rateDeferred prometheus.Counter
}

func newEndpointMetrics(reg prometheus.Registerer) *endpointMetrics {
	m := &endpointMetrics{
		autoDisabled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_deliver_endpoint_auto_disabled_total",
			Help: "Endpoints disabled automatically because every attempt failed for -auto-disable-after.",
		}),
		rateWaited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_deliver_rate_limit_wait_seconds_total",
			Help: "Time attempts waited for a send slot of their endpoint's rate limit.",
		}),
		rateDeferred: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_deliver_rate_limit_deferred_total",
			Help: "Claimed deliveries given back because their endpoint's rate limit had no slot within the lease.",
		}),
	}
	reg.MustRegister(m.autoDisabled, m.rateWaited, m.rateDeferred)
	return m
}

// awaitSlot waits for the next send slot of a rate-limited endpoint before an attempt. It reports
// false when the delivery must not be sent now: no slot is free within what the claim's lease
// allows (the delivery is given back, due when one frees), the deliverer is stopping (the claim
// is released), or no slot could be reserved (the lease brings the delivery back).
func (s *sender) awaitSlot(ctx context.Context, d orderflow.Delivery) bool {
	if d.RateLimit <= 0 || s.slots == nil {
		return true
	}
	// The wait is bounded so that the attempt still starts within the claim's hold time and ends
	// well inside the lease.
	wait, ok, err := s.slots.ReserveSendSlot(ctx, d.EndpointID, s.maxHold()/2)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("reserving a send slot", "endpoint_id", d.EndpointID, "delivery_id", d.ID, "err", err)
		}
		return false
	}
	if !ok {
		s.em.rateDeferred.Inc()
		if err := s.slots.DeferDelivery(context.WithoutCancel(ctx), d, wait); err != nil {
			s.log.Warn("deferring a rate-limited delivery", "delivery_id", d.ID, "err", err)
		}
		return false
	}
	if wait <= 0 {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		s.em.rateWaited.Add(wait.Seconds())
		return true
	case <-ctx.Done():
		if err := s.store.ReleaseClaim(context.WithoutCancel(ctx), d); err != nil {
			s.log.Warn("releasing delivery claim", "delivery_id", d.ID, "err", err)
		}
		return false
	}
}

// DefaultAutoDisableAfter is the command's -auto-disable-after: five days of nothing but failed
// attempts, long enough to outlast a partner's weekend outage and its recovery.
const DefaultAutoDisableAfter = 5 * 24 * time.Hour

// autoDisabler disables endpoints whose attempts have all failed for `after`: a partner that is
// gone for good stops costing retries, and an operator hears of it (the metric, its alert and a
// log line) instead of finding days of dead letters. Its pending deliveries become dead letters,
// which POST /v1/admin/endpoints/{id}/recover queues again once the endpoint is fixed and enabled.
type autoDisabler struct {
	store endpointStore
	after time.Duration
	every time.Duration
	log   *slog.Logger
	m     *endpointMetrics
}

func (a *autoDisabler) run(ctx context.Context) error {
	if a.after <= 0 {
		return nil
	}
	return periodic.Run(ctx, a.every, a.check, func(err error) { a.log.Warn("disabling failing endpoints", "err", err) })
}

func (a *autoDisabler) check(ctx context.Context) error {
	eps, err := a.store.DisableFailingEndpoints(ctx, a.after)
	for _, e := range eps {
		a.m.autoDisabled.Inc()
		a.log.Warn("webhook endpoint disabled automatically", "endpoint_id", e.ID, "failing_since", e.FailingSince,
			"auto_disable_after", a.after, "reason", e.DisabledReason)
	}
	return err
}

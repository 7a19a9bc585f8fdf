package deliver

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"orderflow"
	"orderflow/internal/backoff"
	"orderflow/internal/egress"
)

// senderStore is what the sender needs from the database.
type senderStore interface {
	ClaimDeliveries(ctx context.Context, c orderflow.DeliveryClaim) ([]orderflow.Delivery, error)
	// RecordAttempts logs attempts and applies their results in one transaction, and
	// reports per report whether this process still owned the delivery.
	RecordAttempts(ctx context.Context, rs []orderflow.DeliveryReport) ([]bool, error)
	ReleaseClaim(ctx context.Context, d orderflow.Delivery) error
}

// sender claims due deliveries and POSTs them. Its jobs are one file each: the claim loop
// (run, here), the per-endpoint slots and queue of claimed deliveries (queue.go), one attempt
// (attempt.go) and writing the results back (report.go).
type sender struct {
	store       senderStore
	client      *http.Client
	egress      egress.Policy
	secrets     SecretOpener
	policy      Policy
	workers     int
	perEndpoint int
	// prefetch is how many claimed deliveries per endpoint may wait for one of its slots, so a
	// finished attempt starts the next one at once instead of after a claim's round trip.
	// Twice perEndpoint: the queue is topped up when half of it is left, and that half must
	// last longer than a claim takes on a busy database (tens of milliseconds), or the slots
	// run dry while deliveries wait in PostgreSQL.
	prefetch int
	poll     time.Duration
	lease    time.Duration
	log      *slog.Logger
	m        *metrics
	wake     <-chan struct{}
	// handoff brings the intake's batches to this loop (intake.go): written here, the claim
	// in the same statement counts exactly what this process holds.
	handoff <-chan handoffRequest
	now     func() time.Time
	rnd     func(int64) int64

	mu       sync.Mutex
	inFlight map[string]int // attempts running, per endpoint
	running  int
	queued   map[string][]held // claimed, waiting for a slot, oldest first
	nQueued  int

	// slots paces rate-limited endpoints (endpoints.go); nil sends without pacing.
	slots endpointStore
	em    *endpointMetrics
}

// run claims and sends until ctx ends, then releases what it still holds.
func (s *sender) run(ctx context.Context) error {
	freed := make(chan struct{}, 1)
	reports := make(chan orderflow.DeliveryReport, s.workers)
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		s.record(context.WithoutCancel(ctx), reports)
	}()
	var wg sync.WaitGroup
	defer func() {
		// Attempts finish (or are released) first, then every report is written.
		wg.Wait()
		close(reports)
		<-recorded
	}()
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()
	t := time.NewTicker(s.poll)
	defer t.Stop()
	// Claiming costs a query, and the claim is not on an attempt's critical path: a finished
	// attempt takes the next queued delivery of its endpoint itself. So after an attempt
	// the loop claims only when a busy endpoint's queue is half empty, or when a quarter of
	// the pool is free and the last claim was cut short by the pool (more may be due).
	threshold := max(1, s.workers/4)
	// more: the last claim filled an endpoint's whole allowance, so more deliveries are
	// probably due (a backlog); once an endpoint's held deliveries fall below perEndpoint +
	// prefetch/2 the loop claims again without waiting for the intake or the poll. Without a
	// backlog claims stay driven by the intake's wake-ups, not by every finished attempt.
	force, capped, more := true, false, false
	// While the database is away claims fail; they are retried with a capped backoff instead
	// of at every tick.
	claimWait := backoff.New(s.poll, 5*time.Second)
	var claimAfter time.Time
	for {
		s.startQueued(ctx, sendCtx, &wg, freed, reports)
		holding, running, nQueued, low, short := s.claimState()
		// Held deliveries (running or queued) stay within twice the pool; per endpoint the
		// claim keeps them within perEndpoint + prefetch.
		free := 2*s.workers - running - nQueued
		if free > 0 && (force || running == 0 || low || (more && short) || (capped && s.workers-running >= threshold)) && !s.now().Before(claimAfter) {
			startBy := s.now().Add(s.maxHold())
			ds, err := s.store.ClaimDeliveries(ctx, orderflow.DeliveryClaim{Limit: free, PerEndpoint: s.perEndpoint + s.prefetch, InFlight: holding, Lease: s.lease})
			switch {
			case err != nil && ctx.Err() == nil:
				pause := claimWait.Next()
				claimAfter = s.now().Add(pause)
				s.log.Warn("claiming due deliveries failed; retrying", "err", err, "failures", claimWait.Failures(), "backoff", pause)
			case err == nil:
				claimWait.Reset()
			}
			s.m.claimed.WithLabelValues("claim").Add(float64(len(ds)))
			capped, more = len(ds) == free, filled(holding, ds, s.perEndpoint+s.prefetch)
			for _, d := range ds {
				s.startOrQueue(ctx, sendCtx, &wg, held{d: d, startBy: startBy}, freed, reports)
			}
		}
		force = false
		select {
		case <-ctx.Done():
			cancelSends()
			s.releaseQueued(context.WithoutCancel(ctx))
			return nil
		case <-s.wake:
			force = true
		case req := <-s.handoff:
			force = s.takeHandoff(ctx, sendCtx, &wg, req, freed, reports)
		case <-freed:
		case <-t.C:
			force = true
		}
	}
}

// takeHandoff writes one intake batch, claiming for this process what it has room for under
// the same limits as a claim (held deliveries within twice the pool, perEndpoint + prefetch per
// endpoint), and starts or queues what it claimed. It reports whether rows were left unclaimed
// for the claim loop to take.
func (s *sender) takeHandoff(ctx, sendCtx context.Context, wg *sync.WaitGroup, req handoffRequest, freed chan<- struct{}, reports chan<- orderflow.DeliveryReport) bool {
	holding, running, nQueued, _, _ := s.claimState()
	free := max(0, 2*s.workers-running-nQueued)
	startBy := s.now().Add(s.maxHold())
	ds, n, err := req.write(orderflow.DeliveryClaim{Limit: free, PerEndpoint: s.perEndpoint + s.prefetch, InFlight: holding, Lease: s.lease})
	s.m.claimed.WithLabelValues("intake").Add(float64(len(ds)))
	for _, d := range ds {
		s.startOrQueue(ctx, sendCtx, wg, held{d: d, startBy: startBy}, freed, reports)
	}
	req.done <- handoffResult{written: n, claimed: len(ds), err: err}
	return err == nil && n > int64(len(ds))
}

// filled reports whether a claim gave some endpoint all it may hold (limit, counting what was
// held before the claim).
func filled(before map[string]int, got []orderflow.Delivery, limit int) bool {
	n := make(map[string]int, len(before))
	for _, d := range got {
		n[d.EndpointID]++
	}
	for ep, k := range n {
		if before[ep]+k >= limit {
			return true
		}
	}
	return false
}

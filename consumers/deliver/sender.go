package deliver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// senderStore is what the sender needs from the database.
type senderStore interface {
	ClaimDeliveries(ctx context.Context, c Claim) ([]Delivery, error)
	// RecordAttempts logs attempts and applies their results in one transaction, and
	// reports per report whether this process still owned the delivery.
	RecordAttempts(ctx context.Context, rs []Report) ([]bool, error)
	ReleaseClaim(ctx context.Context, d Delivery) error
}

// Claim asks for due deliveries. InFlight counts what this process holds per endpoint
// (attempts running and claimed deliveries queued for a slot), so a claim never takes more for
// one endpoint than PerEndpoint allows: a slow endpoint fills its own slots and queue and
// leaves the pool to the others.
type Claim struct {
	Limit       int
	PerEndpoint int
	InFlight    map[string]int
	Lease       time.Duration
}

type sender struct {
	store       senderStore
	client      *http.Client
	policy      Policy
	workers     int
	perEndpoint int
	// prefetch is how many claimed deliveries per endpoint may wait for one of its slots, so a
	// finished attempt starts the next one at once instead of after a claim's round trip.
	prefetch int
	poll     time.Duration
	lease    time.Duration
	log      *slog.Logger
	m        *metrics
	wake     <-chan struct{}
	now      func() time.Time
	rnd      func(int64) int64

	mu       sync.Mutex
	inFlight map[string]int // attempts running, per endpoint
	running  int
	queued   map[string][]held // claimed, waiting for a slot, oldest first
	nQueued  int
}

// held is a claimed delivery waiting for a slot. It must start by startBy, so that its attempt
// still ends well inside the lease.
type held struct {
	d       Delivery
	startBy time.Time
}

// maxHold is how long a claimed delivery may wait for a slot: half the lease's margin beyond
// the attempt timeout, so the write-back keeps at least the other half.
func (s *sender) maxHold() time.Duration { return (s.lease - s.policy.Timeout) / 2 }

// claimState is what the next claim needs: per endpoint, what this process holds (running
// and queued), and whether a busy endpoint's queue has run low.
func (s *sender) claimState() (holding map[string]int, running, nQueued int, low bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	holding = make(map[string]int, len(s.inFlight)+len(s.queued))
	for k, v := range s.inFlight {
		holding[k] = v
		if v >= s.perEndpoint && len(s.queued[k]) <= s.prefetch/2 {
			low = true
		}
	}
	for k, q := range s.queued {
		holding[k] += len(q)
	}
	return holding, s.running, s.nQueued, low
}

// run claims and sends until ctx ends, then releases what it still holds.
func (s *sender) run(ctx context.Context) error {
	freed := make(chan struct{}, 1)
	reports := make(chan Report, s.workers)
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
	force, capped := true, false
	for {
		s.startQueued(ctx, sendCtx, &wg, freed, reports)
		holding, running, nQueued, low := s.claimState()
		// Held deliveries (running or queued) stay within twice the pool; per endpoint the
		// claim keeps them within perEndpoint + prefetch.
		free := 2*s.workers - running - nQueued
		if free > 0 && (force || running == 0 || low || (capped && s.workers-running >= threshold)) {
			startBy := s.now().Add(s.maxHold())
			ds, err := s.store.ClaimDeliveries(ctx, Claim{Limit: free, PerEndpoint: s.perEndpoint + s.prefetch, InFlight: holding, Lease: s.lease})
			if err != nil && ctx.Err() == nil {
				s.log.Warn("claiming due deliveries", "err", err)
			}
			capped = len(ds) == free
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
		case <-freed:
		case <-t.C:
			force = true
		}
	}
}

// startOrQueue starts a claimed delivery if its endpoint and the pool have a free slot, and
// queues it for the next free slot of its endpoint otherwise.
func (s *sender) startOrQueue(ctx, sendCtx context.Context, wg *sync.WaitGroup, h held, freed chan<- struct{}, reports chan<- Report) {
	s.mu.Lock()
	ep := h.d.EndpointID
	if s.inFlight[ep] >= s.perEndpoint || s.running >= s.workers {
		s.queued[ep] = append(s.queued[ep], h)
		s.nQueued++
		s.mu.Unlock()
		return
	}
	s.inFlight[ep]++
	s.running++
	s.mu.Unlock()
	s.start(ctx, sendCtx, wg, h.d, freed, reports)
}

// startQueued starts queued deliveries whose endpoint has a free slot while the pool has one
// too (a slot freed by another endpoint), and gives back those that waited too long.
func (s *sender) startQueued(ctx, sendCtx context.Context, wg *sync.WaitGroup, freed chan<- struct{}, reports chan<- Report) {
	var starts []Delivery
	var stale []held
	now := s.now()
	s.mu.Lock()
	for ep, q := range s.queued {
		for len(q) > 0 && (q[0].startBy.Before(now) || (s.inFlight[ep] < s.perEndpoint && s.running < s.workers)) {
			if q[0].startBy.Before(now) {
				stale = append(stale, q[0])
			} else {
				s.inFlight[ep]++
				s.running++
				starts = append(starts, q[0].d)
			}
			q = q[1:]
			s.nQueued--
		}
		if len(q) == 0 {
			delete(s.queued, ep)
		} else {
			s.queued[ep] = q
		}
	}
	s.mu.Unlock()
	for _, d := range starts {
		s.start(ctx, sendCtx, wg, d, freed, reports)
	}
	s.release(context.WithoutCancel(ctx), stale)
}

// next takes (if take) the next queued delivery of an endpoint whose attempt just finished;
// the slot passes to it. Otherwise the slot is given back. Queued deliveries past their
// startBy are returned as stale, to be released.
func (s *sender) next(ep string, take bool) (d Delivery, ok bool, stale []held) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queued[ep]
	for take && len(q) > 0 && !ok {
		if q[0].startBy.Before(now) {
			stale = append(stale, q[0])
		} else {
			d, ok = q[0].d, true
		}
		q = q[1:]
		s.nQueued--
	}
	if len(q) == 0 {
		delete(s.queued, ep)
	} else {
		s.queued[ep] = q
	}
	if !ok {
		if s.inFlight[ep]--; s.inFlight[ep] <= 0 {
			delete(s.inFlight, ep)
		}
		s.running--
	}
	return d, ok, stale
}

// releaseQueued gives back every queued delivery at shutdown, so the next deliverer takes
// them at once instead of after the lease.
func (s *sender) releaseQueued(ctx context.Context) {
	var all []held
	s.mu.Lock()
	for _, q := range s.queued {
		all = append(all, q...)
	}
	clear(s.queued)
	s.nQueued = 0
	s.mu.Unlock()
	s.release(ctx, all)
}

func (s *sender) release(ctx context.Context, hs []held) {
	for _, h := range hs {
		if err := s.store.ReleaseClaim(ctx, h.d); err != nil {
			s.log.Warn("releasing delivery claim", "delivery_id", h.d.ID, "err", err)
		}
	}
}

// start runs attempts in one goroutine, which holds one of the endpoint's slots (counted by
// the caller): after each attempt it goes on with the endpoint's next queued delivery, if
// any, and hands the slot back otherwise.
func (s *sender) start(ctx, sendCtx context.Context, wg *sync.WaitGroup, d Delivery, freed chan<- struct{}, reports chan<- Report) {
	s.m.inFlight.Inc()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer s.m.inFlight.Dec()
		for {
			if rep, ok := s.attempt(ctx, sendCtx, d); ok {
				reports <- rep
			}
			var (
				ok    bool
				stale []held
			)
			// Once ctx ends nothing new starts; run releases what is still queued.
			d, ok, stale = s.next(d.EndpointID, ctx.Err() == nil)
			s.release(context.WithoutCancel(ctx), stale)
			// Either way the loop may want to claim: a slot or a queue place is free.
			select {
			case freed <- struct{}{}:
			default:
			}
			if !ok {
				return
			}
		}
	}()
}

// attempt makes one POST and decides what follows. On shutdown (ctx done) a failed attempt
// is abandoned and its claim released, so the next deliverer retries it at once instead of
// after the lease.
func (s *sender) attempt(ctx, sendCtx context.Context, d Delivery) (Report, bool) {
	start := s.now()
	r := s.post(sendCtx, d, start)
	latency := s.now().Sub(start)
	if ctx.Err() != nil && r.err != nil {
		if err := s.store.ReleaseClaim(context.WithoutCancel(ctx), d); err != nil {
			s.log.Warn("releasing delivery claim", "delivery_id", d.ID, "err", err)
		}
		return Report{}, false
	}
	outcome := r.outcome()
	s.m.attempts.WithLabelValues(outcome).Inc()
	s.m.attemptTime.Observe(latency.Seconds())
	a := Attempt{Number: d.Attempts + 1, StartedAt: start, Latency: latency, Status: r.status, Outcome: outcome}
	switch {
	case r.err != nil:
		a.Error = r.err.Error()
	case outcome != OutcomeSuccess:
		a.Error = "HTTP " + strconv.Itoa(r.status)
	}
	return Report{Delivery: d, Attempt: a, Result: s.policy.decide(d, r, s.now(), s.rnd)}, true
}

// record writes reports in batches: one transaction per batch instead of one per attempt is
// what lets a single deliverer keep up with thousands of deliveries a second. If a write
// fails, the claims run out and the deliveries are retried: at least once, never lost.
func (s *sender) record(ctx context.Context, reports <-chan Report) {
	const maxBatch = 256
	batch := make([]Report, 0, maxBatch)
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

func (s *sender) logReport(rep Report, owned bool) {
	d, a, res := rep.Delivery, rep.Attempt, rep.Result
	if !owned {
		s.log.Warn("delivery claim expired before the attempt was recorded", "delivery_id", d.ID, "event_id", d.EventID)
		return
	}
	log := s.log.With("delivery_id", d.ID, "event_id", d.EventID, "endpoint_id", d.EndpointID, "attempt", a.Number, "status", a.Status, "outcome", a.Outcome)
	switch res.State {
	case StateSucceeded:
		if !d.EventTime.IsZero() {
			s.m.eventToSucess.Observe(s.now().Sub(d.EventTime).Seconds())
		}
		log.Debug("delivered", "latency_ms", a.Latency.Milliseconds())
	case StateDead:
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

func (s *sender) post(ctx context.Context, d Delivery, now time.Time) response {
	ctx, cancel := context.WithTimeout(ctx, s.policy.Timeout)
	defer cancel()
	sig, err := SignatureHeader(d.Secrets, d.EventID, now, d.Payload)
	if err != nil {
		return response{err: fmt.Errorf("signing: %w", err)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(d.Payload))
	if err != nil {
		return response{err: fmt.Errorf("building request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "orderflow-deliver/1")
	req.Header.Set(HeaderID, d.EventID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderSignature, sig)
	resp, err := s.client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return response{err: fmt.Errorf("no answer within %s: %w", s.policy.Timeout, context.DeadlineExceeded)}
		}
		return response{err: err}
	}
	defer resp.Body.Close()
	// Drain a little so the connection can be reused; the body itself is never kept or logged.
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)); err != nil && isTimeout(err) {
		return response{status: resp.StatusCode, err: fmt.Errorf("reading the answer: %w", err)}
	}
	return response{status: resp.StatusCode, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), s.now())}
}

// newHTTPClient never follows redirects: a 3xx is a failure, the endpoint's URL should be
// updated instead (Standard Webhooks, "Delivery success and failure").
func newHTTPClient(perEndpoint int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = perEndpoint
	tr.MaxIdleConns = 1000
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

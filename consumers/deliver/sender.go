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

// Claim asks for due deliveries. InFlight counts this process's attempts per endpoint, so a
// claim never takes more for one endpoint than PerEndpoint allows: a slow endpoint fills its
// own slots and leaves the pool to the others.
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
	poll        time.Duration
	lease       time.Duration
	log         *slog.Logger
	m           *metrics
	wake        <-chan struct{}
	now         func() time.Time
	rnd         func(int64) int64

	mu       sync.Mutex
	inFlight map[string]int
	running  int
}

func (s *sender) snapshot() (map[string]int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]int, len(s.inFlight))
	for k, v := range s.inFlight {
		m[k] = v
	}
	return m, s.running
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
	// Claiming costs a query; when the pool is busy, wait until a quarter of it is free (or
	// the poll ticks) so claims come in batches instead of one per finished attempt.
	threshold := max(1, s.workers/4)
	force := true
	for {
		inFlight, running := s.snapshot()
		free := s.workers - running
		if free > 0 && (force || free >= threshold || running == 0) {
			ds, err := s.store.ClaimDeliveries(ctx, Claim{Limit: free, PerEndpoint: s.perEndpoint, InFlight: inFlight, Lease: s.lease})
			if err != nil && ctx.Err() == nil {
				s.log.Warn("claiming due deliveries", "err", err)
			}
			for _, d := range ds {
				s.start(ctx, sendCtx, &wg, d, freed, reports)
			}
		}
		force = false
		select {
		case <-ctx.Done():
			cancelSends()
			return nil
		case <-s.wake:
			force = true
		case <-freed:
		case <-t.C:
			force = true
		}
	}
}

func (s *sender) start(ctx, sendCtx context.Context, wg *sync.WaitGroup, d Delivery, freed chan<- struct{}, reports chan<- Report) {
	s.mu.Lock()
	s.inFlight[d.EndpointID]++
	s.running++
	s.mu.Unlock()
	s.m.inFlight.Inc()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if rep, ok := s.attempt(ctx, sendCtx, d); ok {
			reports <- rep
		}
		s.mu.Lock()
		if s.inFlight[d.EndpointID]--; s.inFlight[d.EndpointID] <= 0 {
			delete(s.inFlight, d.EndpointID)
		}
		s.running--
		s.mu.Unlock()
		s.m.inFlight.Dec()
		select {
		case freed <- struct{}{}:
		default:
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

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
	RecordAttempt(ctx context.Context, d Delivery, a Attempt, r Result) (bool, error)
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
	var wg sync.WaitGroup
	defer wg.Wait()
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		inFlight, running := s.snapshot()
		free := s.workers - running
		claimed := 0
		if free > 0 {
			ds, err := s.store.ClaimDeliveries(ctx, Claim{Limit: free, PerEndpoint: s.perEndpoint, InFlight: inFlight, Lease: s.lease})
			if err != nil && ctx.Err() == nil {
				s.log.Warn("claiming due deliveries", "err", err)
			}
			claimed = len(ds)
			for _, d := range ds {
				s.mu.Lock()
				s.inFlight[d.EndpointID]++
				s.running++
				s.mu.Unlock()
				s.m.inFlight.Inc()
				wg.Add(1)
				go func() {
					defer wg.Done()
					s.deliver(ctx, sendCtx, d)
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
		}
		if claimed > 0 && claimed == free {
			// The pool is full: wait for a slot rather than polling.
			select {
			case <-ctx.Done():
				cancelSends()
				return nil
			case <-freed:
			}
			continue
		}
		if claimed > 0 {
			continue // there may be more due right now
		}
		select {
		case <-ctx.Done():
			cancelSends()
			return nil
		case <-s.wake:
		case <-freed:
		case <-t.C:
		}
	}
}

// deliver makes one attempt and records it. On shutdown (ctx done) the attempt is abandoned
// and its claim released, so the next deliverer retries it at once instead of after the lease.
func (s *sender) deliver(ctx, sendCtx context.Context, d Delivery) {
	start := s.now()
	r := s.post(sendCtx, d, start)
	latency := s.now().Sub(start)
	if ctx.Err() != nil && r.err != nil {
		if err := s.store.ReleaseClaim(context.WithoutCancel(ctx), d); err != nil {
			s.log.Warn("releasing delivery claim", "delivery_id", d.ID, "err", err)
		}
		return
	}
	outcome := r.outcome()
	s.m.attempts.WithLabelValues(outcome).Inc()
	s.m.attemptTime.Observe(latency.Seconds())
	res := s.policy.decide(d, r, s.now(), s.rnd)
	a := Attempt{Number: d.Attempts + 1, StartedAt: start, Latency: latency, Status: r.status, Outcome: outcome}
	switch {
	case r.err != nil:
		a.Error = r.err.Error()
	case outcome != OutcomeSuccess:
		a.Error = "HTTP " + strconv.Itoa(r.status)
	}
	ok, err := s.store.RecordAttempt(context.WithoutCancel(ctx), d, a, res)
	if err != nil {
		// The claim runs out and the delivery is retried: at-least-once, never lost.
		s.log.Error("recording delivery attempt", "delivery_id", d.ID, "event_id", d.EventID, "err", err)
		return
	}
	if !ok {
		s.log.Warn("delivery claim expired before the attempt was recorded", "delivery_id", d.ID, "event_id", d.EventID)
		return
	}
	log := s.log.With("delivery_id", d.ID, "event_id", d.EventID, "endpoint_id", d.EndpointID, "attempt", a.Number, "status", r.status, "outcome", outcome)
	switch res.State {
	case StateSucceeded:
		if !d.EventTime.IsZero() {
			s.m.eventToSucess.Observe(s.now().Sub(d.EventTime).Seconds())
		}
		log.Debug("delivered", "latency_ms", latency.Milliseconds())
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

package deliver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"orderflow"
	"orderflow/internal/egress"
	"orderflow/internal/tracing"
	"orderflow/webhook"
)

var tracer = tracing.Tracer("orderflow/deliver")

// endAttemptSpan ends an attempt's span with what came back.
func endAttemptSpan(span trace.Span, r response) {
	if span.IsRecording() {
		if r.status != 0 {
			span.SetAttributes(attribute.Int("http.response.status_code", r.status))
		}
		span.SetAttributes(attribute.String("orderflow.outcome", r.outcome()))
		if r.err != nil {
			span.SetStatus(codes.Error, r.err.Error())
		} else if r.status >= 300 {
			span.SetStatus(codes.Error, "HTTP "+strconv.Itoa(r.status))
		}
	}
	span.End()
}

// validTraceParent is s when it is a valid traceparent, else "": a delivery never keeps a value
// it would refuse to send.
func validTraceParent(s string) string {
	if _, err := tracing.Parse(s); err != nil {
		return ""
	}
	return s
}

// start runs attempts in one goroutine, which holds one of the endpoint's slots (counted by
// the caller): after each attempt it goes on with the endpoint's next queued delivery, if
// any, and hands the slot back otherwise.
func (s *sender) start(ctx, sendCtx context.Context, wg *sync.WaitGroup, d orderflow.Delivery, freed chan<- struct{}, reports chan<- orderflow.DeliveryReport) {
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
func (s *sender) attempt(ctx, sendCtx context.Context, d orderflow.Delivery) (orderflow.DeliveryReport, bool) {
	if !s.awaitSlot(ctx, d) {
		return orderflow.DeliveryReport{}, false
	}
	start := s.now()
	// Each attempt is a client span of the event's trace (a new trace when the event carries
	// none), and the partner receives it as the request's traceparent.
	parent, _ := tracing.Parse(d.TraceParent)
	spanCtx, span := tracing.Start(sendCtx, tracer, "deliver "+d.EventType, parent,
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
			attribute.String("orderflow.webhook_id", d.EventID),
			attribute.String("orderflow.endpoint_id", d.EndpointID),
			attribute.String("orderflow.delivery_id", d.ID),
			attribute.Int("orderflow.attempt", d.Attempts+1)))
	r := s.post(spanCtx, d, start)
	latency := s.now().Sub(start)
	endAttemptSpan(span, r)
	if ctx.Err() != nil && r.err != nil {
		if err := s.store.ReleaseClaim(context.WithoutCancel(ctx), d); err != nil {
			s.log.Warn("releasing delivery claim", "delivery_id", d.ID, "err", err)
		}
		return orderflow.DeliveryReport{}, false
	}
	outcome := r.outcome()
	s.m.attempts.WithLabelValues(outcome).Inc()
	s.m.attemptTime.Observe(latency.Seconds())
	a := orderflow.Attempt{Number: d.Attempts + 1, StartedAt: start, Latency: latency, Status: r.status, Outcome: outcome}
	switch {
	case r.err != nil:
		a.Error = r.err.Error()
	case outcome != OutcomeSuccess:
		a.Error = "HTTP " + strconv.Itoa(r.status)
	}
	return orderflow.DeliveryReport{Delivery: d, Attempt: a, Result: s.policy.decide(d, r, s.now(), s.rnd)}, true
}

func (s *sender) post(ctx context.Context, d orderflow.Delivery, now time.Time) response {
	ctx, cancel := context.WithTimeout(ctx, s.policy.Timeout)
	defer cancel()
	// Checked before each send too: rows registered before the egress policy existed, or
	// under a looser allowlist, must not be sent where registration would now refuse.
	if _, err := egress.CheckURL(d.URL, s.egress); err != nil {
		return response{err: sendError(err)}
	}
	secrets, err := s.openSecrets(d.Secrets)
	if err != nil {
		return response{err: err}
	}
	sig, err := webhook.SignatureHeader(secrets, d.EventID, now, d.Payload)
	if err != nil {
		return response{err: fmt.Errorf("signing: %w", err)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(d.Payload))
	if err != nil {
		return response{err: fmt.Errorf("building request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "orderflow-deliver/1")
	req.Header.Set(webhook.HeaderID, d.EventID)
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(webhook.HeaderSignature, sig)
	// Not signed, like every header but the three above: a trace id decides nothing.
	if tp, ok := tracing.FromContext(ctx); ok {
		req.Header.Set(tracing.Header, tp.String())
	}
	resp, err := s.client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return response{err: fmt.Errorf("no answer within %s: %w", s.policy.Timeout, context.DeadlineExceeded)}
		}
		return response{err: sendError(err)}
	}
	defer resp.Body.Close()
	// Drain a little so the connection can be reused; the body itself is never kept or logged.
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)); err != nil && isTimeout(err) {
		return response{status: resp.StatusCode, err: fmt.Errorf("reading the answer: %w", err)}
	}
	return response{status: resp.StatusCode, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), s.now())}
}

// newHTTPClient dials only through the egress guard, which resolves each host itself and
// connects to the address it checked, so DNS rebinding cannot reach a private address. It
// never follows redirects: a 3xx is a failure, the endpoint's URL should be updated instead
// (Standard Webhooks, "Delivery success and failure"); that also keeps a redirect from
// pointing the request anywhere the registration check did not see.
func newHTTPClient(perEndpoint int, p egress.Policy, r egress.Resolver) *http.Client {
	tr := egress.Transport(p)
	tr.DialContext = egress.Dialer(p, r, (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext)
	tr.MaxIdleConnsPerHost = perEndpoint
	tr.MaxIdleConns = 1000
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// openSecrets returns the endpoint's secrets in clear, for signing only: a sealed secret is
// opened here, just before it is used, and never leaves this attempt.
func (s *sender) openSecrets(stored []string) ([]string, error) {
	out := make([]string, len(stored))
	for i, v := range stored {
		if strings.HasPrefix(v, "whsec_") {
			out[i] = v // stored before secrets were encrypted
			continue
		}
		if s.secrets == nil {
			return nil, errors.New("the endpoint's secret is encrypted and this deliverer has no key ring (WEBHOOK_KEYRING)")
		}
		b, err := s.secrets.Open(v)
		if err != nil {
			return nil, fmt.Errorf("opening the endpoint's secret: %w", err)
		}
		out[i] = string(b)
	}
	return out, nil
}

// sendError is what an attempt records of a failed send: a refusal by the egress policy says
// so and names its reason; other errors lose the request URL and any address, so dead letters
// cannot be used to map the network behind an endpoint.
func sendError(err error) error {
	var refused egress.ErrRefused
	if errors.As(err, &refused) {
		return fmt.Errorf("refused by the egress policy (%s): %w", refused.Reason, refused)
	}
	var dial *egress.DialError
	if errors.As(err, &dial) {
		return dial
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return &sanitizedError{msg: op.Op + ": " + op.Err.Error(), err: err}
	}
	return err
}

// sanitizedError keeps the cause for errors.Is (timeouts) and hides its message.
type sanitizedError struct {
	msg string
	err error
}

func (e *sanitizedError) Error() string { return e.msg }
func (e *sanitizedError) Unwrap() error { return e.err }

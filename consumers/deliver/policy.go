package deliver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"

	"orderflow"
)

// Policy bounds retries. The defaults spread 18 attempts over at most about 8.5 hours, as the
// Standard Webhooks spec recommends, and never past a day.
type Policy struct {
	// Timeout bounds one attempt: no 2xx within it is a failure.
	Timeout time.Duration
	// MaxAttempts per cycle (a replay starts a new cycle).
	MaxAttempts int
	// MaxAge bounds a cycle: a retry that would start later than this after the cycle began
	// is not made, the delivery becomes a dead letter instead.
	MaxAge time.Duration
	// BaseBackoff and MaxBackoff shape the full-jitter backoff: the n-th retry waits a random
	// time in [0, min(MaxBackoff, BaseBackoff·2^(n-1))).
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// MaxRetryAfter caps what a receiver may ask for with Retry-After.
	MaxRetryAfter time.Duration
}

// DefaultPolicy is documented in docs/WEBHOOKS.md.
func DefaultPolicy() Policy {
	return Policy{
		Timeout:       10 * time.Second,
		MaxAttempts:   18,
		MaxAge:        orderflow.DefaultDeliveryMaxAge,
		BaseBackoff:   5 * time.Second,
		MaxBackoff:    time.Hour,
		MaxRetryAfter: time.Hour,
	}
}

func (p Policy) validate() error {
	if p.Timeout <= 0 || p.MaxAttempts < 1 || p.MaxAge <= 0 || p.BaseBackoff <= 0 || p.MaxBackoff < p.BaseBackoff || p.MaxRetryAfter <= 0 {
		return fmt.Errorf("invalid retry policy %+v", p)
	}
	return nil
}

// backoff is the full-jitter delay before retry n (n ≥ 1). Full jitter spreads the retries of
// many deliveries that failed together (an endpoint outage) instead of bunching them.
func (p Policy) backoff(n int, rnd func(int64) int64) time.Duration {
	ceiling := p.MaxBackoff
	if n-1 < 40 {
		if c := p.BaseBackoff << (n - 1); c > 0 && c < ceiling {
			ceiling = c
		}
	}
	return time.Duration(rnd(int64(ceiling)))
}

func jitter(n int64) int64 {
	if n <= 0 {
		return 0
	}
	return rand.Int64N(n)
}

// response is what came back from one POST.
type response struct {
	status     int
	retryAfter time.Duration // 0 when absent or unparseable
	err        error
}

// Outcome labels, also the metric's label values.
const (
	OutcomeSuccess   = "success"
	OutcomeRedirect  = "http_3xx"
	OutcomeClientErr = "http_4xx"
	OutcomeServerErr = "http_5xx"
	OutcomeTimeout   = "timeout"
	OutcomeNetwork   = "network"
)

func (r response) outcome() string {
	switch {
	case r.err != nil && isTimeout(r.err):
		return OutcomeTimeout
	case r.err != nil:
		return OutcomeNetwork
	case r.status >= 200 && r.status < 300:
		return OutcomeSuccess
	case r.status >= 300 && r.status < 400:
		return OutcomeRedirect
	case r.status >= 400 && r.status < 500:
		return OutcomeClientErr
	default:
		return OutcomeServerErr
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// decide turns an attempt's response into the delivery's next state.
func (p Policy) decide(d orderflow.Delivery, r response, now time.Time, rnd func(int64) int64) orderflow.DeliveryResult {
	if r.err == nil && r.status >= 200 && r.status < 300 {
		return orderflow.DeliveryResult{State: orderflow.DeliverySucceeded}
	}
	if r.err == nil && r.status == http.StatusGone {
		// The receiver says it wants nothing more from us: stop sending to it at all.
		return orderflow.DeliveryResult{State: orderflow.DeliveryDead, DisableReason: "endpoint answered 410 Gone"}
	}
	attempts := d.Attempts + 1
	if attempts >= p.MaxAttempts {
		return orderflow.DeliveryResult{State: orderflow.DeliveryDead}
	}
	delay := p.backoff(attempts, rnd)
	if r.err == nil && (r.status == http.StatusTooManyRequests || r.status == http.StatusServiceUnavailable) && r.retryAfter > 0 {
		delay = min(r.retryAfter, p.MaxRetryAfter)
	}
	next := now.Add(delay)
	if next.Sub(d.CycleStartedAt) > p.MaxAge {
		return orderflow.DeliveryResult{State: orderflow.DeliveryDead}
	}
	return orderflow.DeliveryResult{State: orderflow.DeliveryPending, NextAttemptAt: next}
}

// parseRetryAfter reads delay-seconds or an HTTP date (RFC 9110 §10.2.3).
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

package deliver

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"orderflow"
)

func TestBackoffIsFullJitterUnderAGrowingCeiling(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	highest := func(n int64) int64 { return n - 1 }
	cases := []struct {
		retry int
		max   time.Duration
	}{
		{1, 5 * time.Second},
		{2, 10 * time.Second},
		{3, 20 * time.Second},
		{10, 2560 * time.Second}, // 5s·2^9
		{11, time.Hour},          // capped
		{200, time.Hour},
	}
	for _, c := range cases {
		if got := p.backoff(c.retry, highest); got != c.max-1 {
			t.Errorf("retry %d: highest delay %s, want just under %s", c.retry, got, c.max)
		}
		if got := p.backoff(c.retry, func(int64) int64 { return 0 }); got != 0 {
			t.Errorf("retry %d: lowest delay %s, want 0 (full jitter)", c.retry, got)
		}
	}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	p := Policy{Timeout: time.Second, MaxAttempts: 5, MaxAge: time.Hour, BaseBackoff: time.Second, MaxBackoff: time.Minute, MaxRetryAfter: 10 * time.Minute}
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	half := func(n int64) int64 { return n / 2 }
	fresh := orderflow.Delivery{Attempts: 0, CycleStartedAt: now}
	cases := []struct {
		name    string
		d       orderflow.Delivery
		r       response
		state   orderflow.DeliveryState
		next    time.Duration
		disable bool
	}{
		{"200", fresh, response{status: 200}, orderflow.DeliverySucceeded, 0, false},
		{"204", fresh, response{status: 204}, orderflow.DeliverySucceeded, 0, false},
		{"redirect is a failure", fresh, response{status: 302}, orderflow.DeliveryPending, 500 * time.Millisecond, false},
		{"500 retries with backoff", fresh, response{status: 500}, orderflow.DeliveryPending, 500 * time.Millisecond, false},
		{"third failure", orderflow.Delivery{Attempts: 2, CycleStartedAt: now}, response{status: 500}, orderflow.DeliveryPending, 2 * time.Second, false},
		{"timeout", fresh, response{err: errors.New("deadline")}, orderflow.DeliveryPending, 500 * time.Millisecond, false},
		{"429 Retry-After", fresh, response{status: 429, retryAfter: 7 * time.Second}, orderflow.DeliveryPending, 7 * time.Second, false},
		{"503 Retry-After", fresh, response{status: 503, retryAfter: 30 * time.Second}, orderflow.DeliveryPending, 30 * time.Second, false},
		{"Retry-After capped", fresh, response{status: 503, retryAfter: 5 * time.Hour}, orderflow.DeliveryDead, 0, false}, // 10 min cap, but still within age? see below
		{"Retry-After on 500 ignored", fresh, response{status: 500, retryAfter: 30 * time.Second}, orderflow.DeliveryPending, 500 * time.Millisecond, false},
		{"410 disables", fresh, response{status: 410}, orderflow.DeliveryDead, 0, true},
		{"last attempt", orderflow.Delivery{Attempts: 4, CycleStartedAt: now}, response{status: 500}, orderflow.DeliveryDead, 0, false},
		{"too old", orderflow.Delivery{Attempts: 1, CycleStartedAt: now.Add(-time.Hour + 500*time.Millisecond)}, response{status: 500}, orderflow.DeliveryDead, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			pp := p
			if c.name == "Retry-After capped" {
				// The cap applies, then the age bound decides: a cycle of 5 minutes cannot wait 10.
				pp.MaxAge = 5 * time.Minute
			}
			res := pp.decide(c.d, c.r, now, half)
			if res.State != c.state || (res.DisableReason != "") != c.disable {
				t.Fatalf("state %s disable %q, want %s disable=%v", res.State, res.DisableReason, c.state, c.disable)
			}
			if c.state == orderflow.DeliveryPending && res.NextAttemptAt.Sub(now) != c.next {
				t.Fatalf("next attempt in %s, want %s", res.NextAttemptAt.Sub(now), c.next)
			}
		})
	}
}

func TestOutcome(t *testing.T) {
	t.Parallel()
	cases := map[string]response{
		OutcomeSuccess:   {status: http.StatusAccepted},
		OutcomeRedirect:  {status: http.StatusMovedPermanently},
		OutcomeClientErr: {status: http.StatusTooManyRequests},
		OutcomeServerErr: {status: http.StatusBadGateway},
		OutcomeNetwork:   {err: errors.New("connection refused")},
	}
	for want, r := range cases {
		if got := r.outcome(); got != want {
			t.Errorf("%+v: outcome %s, want %s", r, got, want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{
		"":                              0,
		"120":                           2 * time.Minute,
		"0":                             0,
		"-3":                            0,
		"soon":                          0,
		"Thu, 01 Jan 2026 12:00:30 GMT": 30 * time.Second,
		"Thu, 01 Jan 2026 11:00:00 GMT": 0,
	}
	for v, want := range cases {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("Retry-After %q: %s, want %s", v, got, want)
		}
	}
}

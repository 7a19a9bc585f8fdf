package partner

import (
	"errors"
	"testing"
	"time"
)

// The retry policy of one callback, decided from the answer, the attempts and the horizon.
func TestNextStep(t *testing.T) {
	t.Parallel()
	p := &Partner{cfg: Config{CallbackBackoff: time.Second, CallbackMaxBackoff: time.Minute, CallbackMaxAge: time.Hour}}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	refused := errors.New("connection refused")
	cases := []struct {
		name     string
		attempts int
		at       time.Duration // since the cycle started
		a        answer
		state    string
		delay    time.Duration
	}{
		{"2xx", 1, 0, answer{status: 204}, callbackDone, 0},
		{"409: ended the other way", 1, 0, answer{status: 409}, callbackDone, 0},
		{"404: the order does not exist", 1, 0, answer{status: 404}, callbackFailed, 0},
		{"422: invalid", 1, 0, answer{status: 422}, callbackFailed, 0},
		{"401: retried", 1, 0, answer{status: 401}, callbackPending, time.Second},
		{"5xx backs off, doubling", 3, 0, answer{status: 502}, callbackPending, 4 * time.Second},
		{"network: capped", 20, 0, answer{err: refused}, callbackPending, time.Minute},
		{"Retry-After is honoured", 1, 0, answer{status: 503, retryAfter: 30 * time.Second}, callbackPending, 30 * time.Second},
		{"past the horizon: failed for good", 40, 59*time.Minute + 30*time.Second, answer{status: 503}, callbackFailed, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			state, delay, reason := p.nextStep(callback{attempts: tc.attempts, cycleStarted: start}, tc.a, start.Add(tc.at))
			if state != tc.state || delay != tc.delay {
				t.Fatalf("%s after %s (%s), want %s after %s", state, delay, reason, tc.state, tc.delay)
			}
			if state == callbackFailed && reason == "" {
				t.Error("failed without a reason")
			}
		})
	}
}

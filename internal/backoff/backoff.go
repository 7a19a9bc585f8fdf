// Package backoff is the capped exponential backoff every orderflow loop uses while a
// dependency is away: the pause doubles from Min up to Max and stays there, for as long as
// the failure lasts. A loop that gives up after a budget dies with its dependency, which is
// the failure this package exists to prevent (issue 12, part 0): the caller decides when to
// stop, normally only when its context ends.
package backoff

import (
	"context"
	"time"
)

// Backoff is the state of one retry loop. The zero value is not usable; use New.
type Backoff struct {
	min, max time.Duration
	next     time.Duration
	failures int
}

// New returns a backoff that waits min first and never more than max.
func New(min, max time.Duration) *Backoff {
	if min <= 0 {
		min = time.Millisecond
	}
	if max < min {
		max = min
	}
	return &Backoff{min: min, max: max, next: min}
}

// Next returns the pause before the next try and doubles the one after it, up to the cap.
func (b *Backoff) Next() time.Duration {
	d := b.next
	b.next = min(2*b.next, b.max)
	b.failures++
	return d
}

// Failures counts the calls to Next since the last Reset: the failures in a row.
func (b *Backoff) Failures() int { return b.failures }

// Reset starts over from Min after a success.
func (b *Backoff) Reset() {
	b.next = b.min
	b.failures = 0
}

// Wait sleeps for the next pause and reports false if ctx ended first.
func (b *Backoff) Wait(ctx context.Context) bool {
	return Sleep(ctx, b.Next())
}

// Sleep waits d and reports false if ctx ended first.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

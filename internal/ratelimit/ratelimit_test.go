package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func mustNew(tb testing.TB, c Config) *Limiter {
	tb.Helper()
	l, err := New(c)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return l
}

func TestAllowBurstThenRate(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(1000, 0)}
	l := mustNew(t, Config{Rate: 2, Burst: 3, MaxKeys: 10, Now: clk.now})
	for i := range 3 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	ok, retry := l.Allow("a")
	if ok || retry != 500*time.Millisecond {
		t.Fatalf("after the burst: ok=%v retry=%v, want refused with 500ms", ok, retry)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("another key shares a's bucket")
	}
	clk.advance(250 * time.Millisecond)
	if ok, retry := l.Allow("a"); ok || retry != 250*time.Millisecond {
		t.Fatalf("half a token later: ok=%v retry=%v", ok, retry)
	}
	clk.advance(250 * time.Millisecond)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("refused after a token refilled")
	}
	clk.advance(time.Hour)
	for i := range 3 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("after idling, request %d refused: the bucket refills only up to burst", i)
		}
	}
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("idle time accumulated beyond the burst")
	}
}

func TestClockGoingBackwardsGrantsNothing(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(1000, 0)}
	l := mustNew(t, Config{Rate: 1, Burst: 1, MaxKeys: 10, Now: clk.now})
	l.Allow("a")
	clk.advance(-time.Hour)
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("a clock step backwards refilled the bucket")
	}
}

func TestMemoryIsBounded(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(1000, 0)}
	l := mustNew(t, Config{Rate: 1, Burst: 5, MaxKeys: 100, Now: clk.now})
	for i := range 10_000 {
		l.Allow(fmt.Sprintf("spray-%d", i))
	}
	if n := l.Len(); n != 100 {
		t.Fatalf("%d buckets after spraying keys, want the cap of 100", n)
	}
	clk.advance(5 * time.Second) // every bucket has refilled
	l.Allow("x")
	if n := l.Len(); n != 1 {
		t.Fatalf("%d buckets after all went idle, want 1", n)
	}
}

func TestCapEvictsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(1000, 0)}
	l := mustNew(t, Config{Rate: 0.001, Burst: 1, MaxKeys: 2, Now: clk.now})
	l.Allow("busy")
	l.Allow("other")
	if ok, _ := l.Allow("busy"); ok {
		t.Fatal("busy got a second token")
	}
	l.Allow("new") // evicts "other", the least recently used
	if ok, _ := l.Allow("busy"); ok {
		t.Fatal("busy's empty bucket was evicted instead of the least recently used one")
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{{Rate: 0, Burst: 1, MaxKeys: 1}, {Rate: 1, Burst: 0, MaxKeys: 1}, {Rate: 1, Burst: 1, MaxKeys: 0}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

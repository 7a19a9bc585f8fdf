package backfill

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"orderflow"
)

// fakeStore pages through ids "o01".."oNN"; exists marks the states already in the outbox.
type fakeStore struct {
	ids    []string
	exists map[string]bool
	err    error
	calls  []string
}

func newFakeStore(n int) *fakeStore {
	s := &fakeStore{exists: map[string]bool{}}
	for i := 1; i <= n; i++ {
		s.ids = append(s.ids, fmt.Sprintf("o%02d", i))
	}
	return s
}

func (s *fakeStore) CountOrdersAfter(_ context.Context, after string) (int64, error) {
	n := 0
	for _, id := range s.ids {
		if id > after {
			n++
		}
	}
	return int64(n), nil
}

func (s *fakeStore) EmitOrderStates(_ context.Context, after string, limit int) (orderflow.StatePage, error) {
	s.calls = append(s.calls, after)
	if s.err != nil {
		return orderflow.StatePage{}, s.err
	}
	var p orderflow.StatePage
	for _, id := range s.ids {
		if id <= after || p.Scanned == limit {
			continue
		}
		p.Scanned++
		if !s.exists[id] {
			p.Emitted++
			s.exists[id] = true
		}
		p.LastOrderID = id
	}
	return p, nil
}

// fakeClock moves only when the backfill sleeps, so pacing is checked without waiting.
type fakeClock struct {
	now    time.Time
	sleeps []time.Duration
}

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return ctx.Err()
}

func newBackfill(t *testing.T, cfg Config, s store) (*Backfill, *fakeClock) {
	t.Helper()
	c := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg.sleep, cfg.now = c.sleep, func() time.Time { return c.now }
	b, err := New(cfg, s)
	if err != nil {
		t.Fatal(err)
	}
	return b, c
}

func TestRunPagesThroughEveryOrderAndReportsProgress(t *testing.T) {
	t.Parallel()
	s := newFakeStore(23)
	s.exists["o05"], s.exists["o17"] = true, true
	var seen []Progress
	b, _ := newBackfill(t, Config{BatchSize: 10, Progress: func(p Progress) { seen = append(seen, p) }}, s)
	p, err := b.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p.Total != 23 || p.Scanned != 23 || p.Emitted != 21 || p.Existing != 2 || p.LastOrderID != "o23" {
		t.Errorf("progress %+v, want all 23 scanned, 21 written, 2 already there, last o23", p)
	}
	if want := []string{"", "o10", "o20"}; !slices.Equal(s.calls, want) {
		t.Errorf("pages started after %q, want %q", s.calls, want)
	}
	if len(seen) != 3 || seen[0].Scanned != 10 || seen[1].Scanned != 20 || seen[2].LastOrderID != "o23" {
		t.Errorf("progress reports %+v, want one per batch", seen)
	}
}

// A full last page is followed by one empty page; a short one ends the run at once.
func TestRunStopsAtTheEnd(t *testing.T) {
	t.Parallel()
	s := newFakeStore(20)
	b, _ := newBackfill(t, Config{BatchSize: 10}, s)
	if _, err := b.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := []string{"", "o10", "o20"}; !slices.Equal(s.calls, want) {
		t.Errorf("pages started after %q, want %q", s.calls, want)
	}
	empty := newFakeStore(0)
	b, _ = newBackfill(t, Config{BatchSize: 10}, empty)
	p, err := b.Run(context.Background())
	if err != nil || p.Scanned != 0 || len(empty.calls) != 1 {
		t.Errorf("no orders: %+v %v after %d pages", p, err, len(empty.calls))
	}
}

func TestRunResumesAfterAnOrder(t *testing.T) {
	t.Parallel()
	s := newFakeStore(23)
	b, _ := newBackfill(t, Config{BatchSize: 10, After: "o15"}, s)
	p, err := b.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p.Total != 8 || p.Scanned != 8 || s.calls[0] != "o15" || s.exists["o15"] || !s.exists["o16"] {
		t.Errorf("resumed run %+v after %q; want o16..o23 only", p, s.calls)
	}
}

// The rate is an average since the start: 25 orders/s in batches of 10 means a batch every 0.4 s.
func TestRunKeepsToTheRate(t *testing.T) {
	t.Parallel()
	s := newFakeStore(35)
	b, c := newBackfill(t, Config{BatchSize: 10, Rate: 25}, s)
	if _, err := b.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond}
	if !slices.Equal(c.sleeps, want) {
		t.Errorf("paused %v, want %v", c.sleeps, want)
	}
	unlimited := newFakeStore(35)
	b, c = newBackfill(t, Config{BatchSize: 10}, unlimited)
	if _, err := b.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, d := range c.sleeps {
		if d != 0 {
			t.Errorf("no rate limit, yet paused %v", c.sleeps)
		}
	}
}

func TestRunStopsWhenCancelledAndSaysWhereToResume(t *testing.T) {
	t.Parallel()
	s := newFakeStore(35)
	ctx, cancel := context.WithCancel(context.Background())
	b, _ := newBackfill(t, Config{BatchSize: 10, Progress: func(p Progress) {
		if p.Scanned == 20 {
			cancel()
		}
	}}, s)
	p, err := b.Run(ctx)
	if !errors.Is(err, context.Canceled) || p.LastOrderID != "o20" || s.exists["o21"] {
		t.Errorf("cancelled run: %+v %v, want to stop after o20", p, err)
	}
}

func TestRunReportsTheStoreError(t *testing.T) {
	t.Parallel()
	s := newFakeStore(5)
	s.err = errors.New("connection refused")
	b, _ := newBackfill(t, Config{After: "o02"}, s)
	_, err := b.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), `after order "o02"`) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %v, want the store's error and where it happened", err)
	}
	if _, err := New(Config{Rate: -1}, s); err == nil {
		t.Error("a negative rate was accepted")
	}
}

func TestProgressPrinter(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	ProgressPrinter(&b)(Progress{Total: 200, Scanned: 50, Emitted: 45, Existing: 5, LastOrderID: "o50", Elapsed: 2 * time.Second})
	want := "backfill: 50/200 orders (25%), 45 events written, 5 already in the outbox, 25 orders/s, last order o50\n"
	if b.String() != want {
		t.Errorf("printed %q, want %q", b.String(), want)
	}
}

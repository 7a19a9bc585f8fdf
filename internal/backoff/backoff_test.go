package backoff

import (
	"context"
	"testing"
	"time"
)

func TestNextDoublesUpToTheCapAndResets(t *testing.T) {
	t.Parallel()
	b := New(10*time.Millisecond, 50*time.Millisecond)
	var got []time.Duration
	for range 5 {
		got = append(got, b.Next())
	}
	want := []time.Duration{10, 20, 40, 50, 50}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("pauses %v, want %v ms", got, want)
		}
	}
	if b.Failures() != 5 {
		t.Errorf("Failures = %d, want 5", b.Failures())
	}
	b.Reset()
	if d := b.Next(); d != 10*time.Millisecond || b.Failures() != 1 {
		t.Errorf("after Reset: %v and %d failures, want 10ms and 1", d, b.Failures())
	}
}

func TestWaitStopsWithTheContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if New(time.Hour, time.Hour).Wait(ctx) {
		t.Fatal("Wait returned true on a cancelled context")
	}
}

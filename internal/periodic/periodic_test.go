package periodic

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRunCallsAtOnceKeepsGoingAfterErrorsAndStops(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	calls, errs := 0, 0
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, time.Millisecond, func(context.Context) error {
			calls++
			if calls == 3 {
				cancel()
			}
			return errors.New("boom")
		}, func(error) { errs++ })
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop after its context was cancelled")
	}
	if calls != 3 {
		t.Errorf("calls = %d, want 3 (errors must not stop the loop)", calls)
	}
	if errs != 2 {
		t.Errorf("onErr calls = %d, want 2 (the error of the call that cancelled is not reported)", errs)
	}
}

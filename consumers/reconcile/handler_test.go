package reconcile

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// countingStore tells, through runs, each time a reconciliation starts.
type countingStore struct {
	*fakeStore
	runs chan struct{}
}

func (s countingStore) ReconcileClock(ctx context.Context) (time.Time, int64, error) {
	select {
	case s.runs <- struct{}{}:
	default:
	}
	return s.fakeStore.ReconcileClock(ctx)
}

func TestReadyzAnswersOKOnlyAfterASuccessfulRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		store *fakeStore
		want  int
	}{
		{"the run failed", &fakeStore{clockErr: errors.New("database down")}, http.StatusServiceUnavailable},
		{"the run succeeded", &fakeStore{}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := countingStore{fakeStore: tt.store, runs: make(chan struct{})}
			r := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st)
			h := r.Handler()
			if got := get(h, "/readyz"); got != http.StatusServiceUnavailable {
				t.Fatalf("readyz before any run: %d, want 503", got)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.RunEvery(ctx, time.Millisecond, func(*Report) {}) }()
			// Runs are sequential: once the second starts, the first one's outcome is recorded.
			for range 2 {
				select {
				case <-st.runs:
				case <-time.After(10 * time.Second):
					t.Fatal("no reconciliation within 10 s")
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("RunEvery: %v", err)
			}
			if got := get(h, "/readyz"); got != tt.want {
				t.Errorf("readyz after the run: %d, want %d", got, tt.want)
			}
			if got := get(h, "/healthz"); got != http.StatusOK {
				t.Errorf("healthz: %d, want 200", got)
			}
		})
	}
}

func get(h http.Handler, path string) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code
}

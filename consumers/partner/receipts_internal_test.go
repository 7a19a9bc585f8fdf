package partner

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The receipt queue writes every request exactly once, answers each after the write that
// held it, never runs more than receiptWriters writes at once, and groups requests that
// arrive while all writers are busy.
func TestReceiptQueueWritesEachRequestOnceWithBoundedWriters(t *testing.T) {
	t.Parallel()
	var (
		q                  receiptQueue
		mu                 sync.Mutex
		written            = map[string]int{}
		running, maxRun    atomic.Int32
		writes, maxBatchSz atomic.Int32
	)
	write := func(_ context.Context, batch []*receiptReq) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			m := maxRun.Load()
			if n <= m || maxRun.CompareAndSwap(m, n) {
				break
			}
		}
		writes.Add(1)
		if int32(len(batch)) > maxBatchSz.Load() {
			maxBatchSz.Store(int32(len(batch)))
		}
		time.Sleep(2 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		for _, b := range batch {
			written[b.r.id]++
			b.ans = hookAnswer{WebhookID: b.r.id}
		}
	}
	const n = 500
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprint("w", i%250) // every id twice: never in one batch together
			ans, err := q.store(context.Background(), receiptRow{id: id}, write)
			if err != nil || ans.WebhookID != id {
				t.Errorf("request %s answered %+v, %v", id, ans, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if written[id] == 0 {
				t.Errorf("request %s answered before it was written", id)
			}
		}()
	}
	// A lost lead leaves requests waiting forever: fail instead of hanging the suite.
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(time.Minute):
		q.mu.Lock()
		t.Fatalf("requests still waiting after a minute: %d leaders, %d pending", q.leaders, len(q.pending))
	}
	for i := range 250 {
		if c := written[fmt.Sprint("w", i)]; c != 2 {
			t.Errorf("w%d written %d times, want 2 (once per request)", i, c)
		}
	}
	if m := maxRun.Load(); m > receiptWriters {
		t.Errorf("%d writes ran at once, want at most %d", m, receiptWriters)
	}
	if writes.Load() >= n {
		t.Errorf("%d writes for %d concurrent requests: nothing was grouped", writes.Load(), n)
	}
	if q.leaders != 0 || len(q.pending) != 0 {
		t.Errorf("after the requests: %d leaders, %d pending; want none", q.leaders, len(q.pending))
	}
}

package capture

import (
	"context"
	"sync/atomic"
	"time"
)

// eventOverhead is what an event holds besides its variable-length bytes: the outEvent (176
// bytes as the allocator rounds it) and its slice of ten headers (416), plus the size-class
// rounding of the key, value and header buffers.
const eventOverhead = 640

// footprint is the heap an event holds from the moment the stream builds it until Kafka
// acknowledges it: what the byte budget counts. The header keys are constants; the values
// share one buffer.
func (e *outEvent) footprint() int64 {
	n := eventOverhead + len(e.key) + len(e.value) + len(e.id) + len(e.traceParent)
	for _, h := range e.headers {
		n += len(h.Value)
	}
	return int64(n)
}

// byteBudget bounds the bytes of the events a sink holds: queued on a topic's writer, in the
// request being built, or in flight until Kafka acknowledges them. The stream takes from it
// before it queues an event and the writers give back after the ack (or when they drop
// events after a failure).
//
// Why bytes and not events: an order event is 0.3 to 16 KB, so a queue bounded in events held
// anywhere from 3 to 130 MB, and capture's peak RSS moved with the order sizes of the
// backlog (docs/CAPTURE.md, "Memory").
//
// Why blocking the stream is safe: the stream is the replication connection's only reader,
// and while it waits the walsender simply stops sending (the slot keeps the WAL); the stream
// keeps sending status updates meanwhile (stream.handleInsert). Nothing that holds budget
// waits for the stream: bytes come back on Kafka's acknowledgement, never on a Commit, so a
// transaction larger than the whole budget drains a budget's worth at a time.
type byteBudget struct {
	limit int64
	used  atomic.Int64
	// freed wakes the one goroutine waiting in take (the stream) after a give.
	freed chan struct{}
	// onChange reports every change of used (the queued-bytes gauge).
	onChange func(delta int64)
}

func newByteBudget(limit int64, onChange func(int64)) *byteBudget {
	if limit <= 0 {
		limit = DefaultQueueBytes
	}
	if onChange == nil {
		onChange = func(int64) {}
	}
	return &byteBudget{limit: limit, freed: make(chan struct{}, 1), onChange: onChange}
}

// tryTake takes n bytes if they fit. An event larger than the whole budget fits once nothing
// else is held, so it passes alone rather than never.
func (b *byteBudget) tryTake(n int64) bool {
	// Only the stream takes, so used can only shrink between the load and the add.
	used := b.used.Load()
	if used > 0 && used+n > b.limit {
		return false
	}
	b.used.Add(n)
	b.onChange(n)
	return true
}

// take waits up to wait for n bytes. It reports false when they did not free up in time, so
// the caller can keep the replication connection alive and call again; failed or ctx ending
// return early with false too (the caller checks them).
func (b *byteBudget) take(ctx context.Context, n int64, wait time.Duration, failed <-chan struct{}) bool {
	if b.tryTake(n) {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-b.freed:
			if b.tryTake(n) {
				return true
			}
		case <-t.C:
			return false
		case <-failed:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// give returns n bytes.
func (b *byteBudget) give(n int64) {
	b.used.Add(-n)
	b.onChange(-n)
	select {
	case b.freed <- struct{}{}:
	default:
	}
}

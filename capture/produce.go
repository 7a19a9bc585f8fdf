package capture

import (
	"context"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// publish routes ev to its partition and queues it, unless the partition already holds it.
// It waits at most wait for room, so the caller can keep the replication connection alive.
func (s *kafkaSink) publish(ctx context.Context, ev *outEvent, wait time.Duration) (publishResult, error) {
	ts, err := s.topic(ctx, ev.topic)
	if err != nil {
		return 0, err
	}
	p := partitionFor(ev.key, ts.partitions)
	if ts.hasLast[p] && !ev.pos.After(ts.last[p]) {
		return resSkipped, nil
	}
	ev.partition = p
	ev.held = ev.footprint()
	w := ts.writer
	if s.budget.tryTake(ev.held) {
		select {
		case w.queue <- ev:
			return resQueued, nil
		default:
		}
		s.budget.give(ev.held)
	}
	// No room: the stream, and with it the walsender, waits here (see byteBudget).
	t0 := time.Now()
	defer func() { s.metrics.queueWait.Add(time.Since(t0).Seconds()) }()
	if !s.budget.take(ctx, ev.held, wait, s.failC) {
		return s.full(ctx)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case w.queue <- ev:
		return resQueued, nil
	case <-s.failC:
	case <-ctx.Done():
	case <-t.C:
	}
	s.budget.give(ev.held)
	return s.full(ctx)
}

// full is publish's answer when the event found no room in time: the sink's failure or the
// context's end if either happened, else resFull (call again).
func (s *kafkaSink) full(ctx context.Context) (publishResult, error) {
	if err := s.err(); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return resFull, nil
}

var murmur = kafkago.Murmur2Balancer{Consistent: true}

// partitionFor is the Java client's default partitioner (murmur2), so producers in other
// languages that key by order id agree with capture on where an order lives.
func partitionFor(key []byte, n int) int {
	return murmur.Balance(kafkago.Message{Key: key}, seq(n)...)
}

var seqCache = map[int][]int{}
var seqMu sync.Mutex

func seq(n int) []int {
	seqMu.Lock()
	defer seqMu.Unlock()
	s := seqCache[n]
	if s == nil {
		s = make([]int, n)
		for i := range s {
			s[i] = i
		}
		seqCache[n] = s
	}
	return s
}

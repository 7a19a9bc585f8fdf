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
	w := ts.writer
	select {
	case w.queue <- ev:
		return resQueued, nil
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case w.queue <- ev:
		return resQueued, nil
	case <-s.failC:
		return 0, s.failErr
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-t.C:
		return resFull, nil
	}
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

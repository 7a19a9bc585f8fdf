package capture

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"
)

// budgetSink is a sink whose one topic "t" has a single partition and no writer goroutine:
// what publish queued stays in the queue, and the test plays the writer's acks.
func budgetSink(limit int) (*kafkaSink, *topicWriter) {
	s := newKafkaSink(KafkaConfig{QueueBytes: limit}, nil, slog.New(slog.DiscardHandler), newMetrics(), nil)
	w := &topicWriter{topic: "t", partitions: 1, queue: make(chan *outEvent, 1000)}
	s.topics["t"] = &topicState{name: "t", partitions: 1, last: make([]Position, 1), hasLast: make([]bool, 1), writer: w}
	return s, w
}

func budgetEvent(seq, valueBytes int) *outEvent {
	return &outEvent{topic: "t", key: []byte("k"), value: make([]byte, valueBytes), pos: Position{LSN: 100, Seq: uint32(seq)}}
}

// TestQueueBytesBoundTheQueue: the stream may queue events only while the bytes held (queued
// or in flight, until acknowledged) stay within QueueBytes; an ack makes room again.
func TestQueueBytesBoundTheQueue(t *testing.T) {
	t.Parallel()
	const limit = 10_000
	s, w := budgetSink(limit)
	ctx := context.Background()
	size := budgetEvent(0, 2000).footprint()
	var queued []*outEvent
	for i := range 10 {
		ev := budgetEvent(i, 2000)
		res, err := s.publish(ctx, ev, time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if res == resFull {
			break
		}
		queued = append(queued, ev)
	}
	if want := int(limit / size); len(queued) != want || len(w.queue) != want {
		t.Fatalf("queued %d events of %d bytes (queue holds %d) under a budget of %d, want %d", len(queued), size, len(w.queue), limit, want)
	}
	if got, want := s.metrics.queuedBytes.Load(), int64(len(queued))*size; got != want {
		t.Errorf("queued bytes %d, want %d (a refused event must give back what it took)", got, want)
	}
	// The writer's ack of the first event makes room for exactly one more.
	s.budget.give(queued[0].held)
	if res, err := s.publish(ctx, budgetEvent(20, 2000), time.Millisecond); err != nil || res != resQueued {
		t.Fatalf("after an ack: publish = %v, %v; want queued", res, err)
	}
	if res, _ := s.publish(ctx, budgetEvent(21, 2000), time.Millisecond); res != resFull {
		t.Fatalf("publish = %v with the budget used again, want full", res)
	}
}

// TestEventLargerThanQueueBytesPassesAlone: an event larger than the whole budget must not
// wait forever (a 1 MB event under a smaller budget would stop capture for good); it is
// queued once nothing else is held, and nothing joins it until it is acknowledged.
func TestEventLargerThanQueueBytesPassesAlone(t *testing.T) {
	t.Parallel()
	s, w := budgetSink(10_000)
	ctx := context.Background()
	small := budgetEvent(0, 100)
	if res, err := s.publish(ctx, small, time.Millisecond); err != nil || res != resQueued {
		t.Fatalf("publish small = %v, %v", res, err)
	}
	big := budgetEvent(1, 50_000)
	if res, _ := s.publish(ctx, big, time.Millisecond); res != resFull {
		t.Fatalf("the big event was queued beside another (%v); it must wait until it is alone", res)
	}
	// The small one's ack arrives while the stream waits: the wait must end with the event
	// queued, not time out.
	go func() {
		time.Sleep(10 * time.Millisecond)
		s.budget.give((<-w.queue).held)
	}()
	if res, err := s.publish(ctx, big, time.Minute); err != nil || res != resQueued {
		t.Fatalf("publish big once alone = %v, %v; want queued", res, err)
	}
	if res, _ := s.publish(ctx, budgetEvent(2, 100), time.Millisecond); res != resFull {
		t.Fatalf("an event joined the oversized one (%v)", res)
	}
	s.budget.give((<-w.queue).held)
	if got := s.metrics.queuedBytes.Load(); got != 0 {
		t.Errorf("queued bytes %d after every ack, want 0", got)
	}
}

// TestPublishWaitingForBytesEndsOnFailure: a stream blocked on the budget must see the sink
// fail (a produce error), or the session would never end.
func TestPublishWaitingForBytesEndsOnFailure(t *testing.T) {
	t.Parallel()
	s, _ := budgetSink(1000)
	ctx := context.Background()
	if res, err := s.publish(ctx, budgetEvent(0, 2000), time.Millisecond); err != nil || res != resQueued {
		t.Fatalf("publish = %v, %v", res, err)
	}
	boom := errors.New("producing to t: broker gone")
	go func() {
		time.Sleep(10 * time.Millisecond)
		s.fail(boom)
	}()
	if _, err := s.publish(ctx, budgetEvent(1, 10), time.Minute); !errors.Is(err, boom) {
		t.Fatalf("publish while the sink failed = %v, want %v", err, boom)
	}
	// finish gives back what the dropped events held (no writer runs here to drop them).
	if err := s.finish(true); !errors.Is(err, boom) {
		t.Fatalf("finish = %v", err)
	}
	if got := s.metrics.queuedBytes.Load(); got != 0 {
		t.Errorf("queued bytes %d after finish, want 0", got)
	}
}

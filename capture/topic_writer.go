package capture

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"orderflow/internal/tracing"
)

// topicWriter is a topic's only producer. Its goroutine (write) takes the topic's events in
// stream order from one queue and sends them in produce requests that carry a record batch
// for every partition that has events, one request at a time.
//
// Why one writer per topic, not per partition: at the rates a live outbox sees (hundreds to a
// few thousand events a second over six partitions), a partition rarely has more than one
// event per linger window, so a writer per partition sent about one request per event, and
// both capture's CPU (each request is several goroutine hand-offs and system calls) and the
// broker's (per request, not per byte) went to requests rather than events. One request per
// window for the whole topic carries every partition's events (measured in docs/CAPTURE.md).
type topicWriter struct {
	topic      string
	partitions int
	queue      chan *outEvent
	// maxBytes is the largest record batch the broker takes for this topic (see messageLimit):
	// each partition's batch in a request stays within it.
	maxBytes int
}

// partBatch is one partition's record batch in the request being built.
type partBatch struct {
	rb     recordBatch
	events []*outEvent
}

// catchUpAge is how old an event's commit must be for its request to count as catching up
// on a backlog (see write). Far above the commit-to-receive time of a capture that keeps up
// (milliseconds, a few hundred under heavy load), so a live stream never lingers for it.
const catchUpAge = time.Second

func catchingUp(ev *outEvent, now time.Time) bool {
	return ev.txn != nil && now.Sub(ev.txn.commitTime) > catchUpAge
}

// addResult says what became of an event offered to the request being built.
type addResult int

const (
	added     addResult = iota
	full                // its partition's batch is full: it heads the next request
	oversized           // alone it is larger than the topic accepts
)

// write is a topic's only producer: one request in flight, events in queue order within each
// partition, and nothing more after a failure. A request is one record batch per partition,
// and the broker appends each batch whole or not at all, so whatever a partition holds of this
// session's events is still a prefix of the events routed to it (the dedupe's premise, see the
// kafkaSink type comment), also when a request's batches succeed on some partitions and fail
// on others.
func (s *kafkaSink) write(w *topicWriter) {
	parts := make([]partBatch, w.partitions)
	// touched lists the partitions with events in the request being built.
	touched := make([]int, 0, w.partitions)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	req := &multiProduce{}
	var now time.Time
	// add takes e into the request when its partition's batch stays within the broker's
	// limit and MaxBatch. The batch's size is exact (the encoder is capture's own), so
	// batches fill up to the limit.
	add := func(e *outEvent) addResult {
		b := &parts[e.partition]
		if len(b.events) == 0 {
			b.rb.reset(now)
			b.rb.add(e)
			if b.rb.size() > w.maxBytes {
				return oversized
			}
			touched = append(touched, e.partition)
		} else {
			if len(b.events) >= s.cfg.MaxBatch {
				return full
			}
			m := b.rb.mark()
			b.rb.add(e)
			if b.rb.size() > w.maxBytes {
				b.rb.undo(m)
				return full
			}
		}
		b.events = append(b.events, e)
		return added
	}
	// next is an event taken from the queue that did not fit the previous request: it heads
	// the next one, and nothing queued after it joins a request before it, so the order of
	// every partition holds.
	var next *outEvent
	for {
		ev := next
		next = nil
		if ev == nil {
			var ok bool
			if ev, ok = <-w.queue; !ok {
				break
			}
		}
		now = time.Now()
		for _, p := range touched {
			parts[p].events = parts[p].events[:0]
		}
		touched = touched[:0]
		if add(ev) == oversized {
			size := parts[ev.partition].rb.size()
			s.metrics.oversized.Inc()
			s.log.Error("event is larger than the topic accepts; capture stops before it and retries (docs/CAPTURE.md)",
				"event_id", ev.id, "topic", w.topic, "partition", ev.partition, "lsn", ev.pos.LSN.String(),
				"record_bytes", size, "max_message_bytes", w.maxBytes)
			s.fail(fmt.Errorf("%w: event %s on %s[%d] needs %d bytes, the topic accepts %d: raise the topic's max.message.bytes",
				ErrEventTooLarge, ev.id, w.topic, ev.partition, size, w.maxBytes))
			break
		}
		lingered := false
	fill:
		for {
			select {
			case e, ok := <-w.queue:
				if !ok {
					break fill
				}
				switch add(e) {
				case added:
					continue
				}
				// Its batch is full, or it is too large even alone: send what came before
				// it; it heads the next request (which fails when it is too large).
				next = e
				break fill
			default:
			}
			// The queue is empty. Wait up to Linger for more before sending, as Kafka's own
			// producer does (linger.ms): at 2,000 events/s a request otherwise completes
			// before the next event arrives, so each event went out alone, and the broker's
			// and our CPU per request, not the wait, made the latency tail on two cores.
			// Measured with bench/capture's latency run, alternating: a 3 ms linger on every
			// request halved the requests and the broker's CPU and took the p99 of the
			// steady runs from 29-69 ms to 12-38 ms, for about 3 ms more at the median.
			//
			// A request whose first event committed more than catchUpAge ago is catching
			// up on a backlog: its latency is lost already, and what matters is that the
			// backlog drains at the walsender's speed. Then the writer lingers longer
			// (CatchUpLinger), whatever the queue held: with one request in flight, a
			// request per produce round trip is otherwise what a backlog becomes (measured:
			// 2 to 8 events per request, the broker spending 57 us of CPU per event, the
			// walsender starved), and the broker's CPU per request, not per byte, is what a
			// two-core machine runs out of.
			if lingered {
				break
			}
			lingered = true
			var d time.Duration
			if s.cfg.CatchUpLinger > 0 && catchingUp(ev, now) {
				d = s.cfg.CatchUpLinger
			} else if s.cfg.Linger > 0 {
				d = s.cfg.Linger
			}
			if d <= 0 {
				break
			}
			// Sleep, then take what queued up meanwhile (the loop goes on), rather than
			// wait on the queue: that woke this goroutine once per event, and the profile
			// of a drain showed the hand-offs (futex, netpoll) costing more CPU than
			// encoding. The queue holds seconds' worth of events at the walsender's speed,
			// so the reader does not block on it meanwhile.
			linger.Reset(d)
			select {
			case <-linger.C:
			case <-s.failC:
				// Since Go 1.23 a stopped or reset timer never delivers a stale tick.
				linger.Stop()
			}
		}
		if s.aborted.Load() || s.err() != nil {
			break
		}
		req.set(w.topic, s.cfg.RequestTimeout, touched, parts)
		// The request holds the events' bytes now: let the copies go while it is in flight
		// (the budget still counts them until the ack; the batch buffers are reused).
		var held int64
		for _, p := range touched {
			for _, e := range parts[p].events {
				e.value, e.headers = nil, nil
				held += e.held
			}
		}
		// Not the session's context: a request already on the wire is waited for, never
		// abandoned, so that the next session's read of the last record sees its outcome.
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		t0 := time.Now()
		err := req.send(ctx, s.client)
		cancel()
		s.metrics.produceSeconds.Observe(time.Since(t0).Seconds())
		events := 0
		for _, p := range touched {
			events += len(parts[p].events)
		}
		s.metrics.batchSize.Observe(float64(events))
		if err != nil {
			s.metrics.produceErrors.Inc()
			s.produceFailed.Store(true)
			if timedOut(err) {
				s.noteUnanswered(t0)
			}
			s.fail(fmt.Errorf("producing to %s: %w", w.topic, err))
			break
		}
		if tracing.Enabled() {
			for _, p := range touched {
				traceProduce(parts[p].events, w.topic, p, t0, time.Now())
			}
		}
		for _, p := range touched {
			for _, e := range parts[p].events {
				s.onAck(e)
			}
		}
		s.budget.give(held)
	}
	// Drop whatever is left: after a failure nothing more may reach this topic.
	for range w.queue {
	}
}

// timedOut reports whether err left a request's outcome unknown because no answer came in
// time: the request may still be on its way to the broker. A broker's own REQUEST_TIMED_OUT
// is an answer (the records reached it; settleEnds covers their later commit).
func timedOut(err error) bool {
	var ke kafkago.Error
	if errors.As(err, &ke) {
		return false
	}
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

var tracer = tracing.Tracer("orderflow/capture")

// traceProduce records, for each event of an acknowledged request that carries a trace, the
// producer span of that request (sent at start, acknowledged by every replica at end), as a child
// of the event's traceparent, the span that wrote its outbox row. The record's ce_traceparent is
// that same outbox span, not this one: the headers were written before the request was, so the
// consumers' spans are this one's siblings in the trace.
func traceProduce(batch []*outEvent, topic string, partition int, start, end time.Time) {
	for _, e := range batch {
		tp, err := tracing.Parse(e.traceParent)
		if err != nil {
			continue
		}
		_, span := tracing.Start(context.Background(), tracer, "produce "+topic, tp,
			trace.WithSpanKind(trace.SpanKindProducer), trace.WithTimestamp(start),
			trace.WithAttributes(
				attribute.String("messaging.system", "kafka"),
				attribute.String("messaging.destination.name", topic),
				attribute.Int("messaging.destination.partition.id", partition),
				attribute.String("messaging.message.id", e.id),
				attribute.Int("messaging.batch.message_count", len(batch)),
				attribute.String("orderflow.pg_lsn", e.pos.LSN.String())))
		span.End(trace.WithTimestamp(end))
	}
}

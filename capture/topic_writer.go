package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"orderflow/internal/tracing"
)

type partitionWriter struct {
	topic     string
	partition int
	queue     chan *outEvent
	// maxBytes is the largest record batch the broker takes for this topic (see messageLimit).
	maxBytes int
}

// catchUpAge is how old an event's commit must be for its request to count as catching up
// on a backlog (see write). Far above the commit-to-receive time of a capture that keeps up
// (milliseconds, a few hundred under heavy load), so a live stream never lingers for it.
const catchUpAge = time.Second

func catchingUp(ev *outEvent, now time.Time) bool {
	return ev.txn != nil && now.Sub(ev.txn.commitTime) > catchUpAge
}

// write is a partition's only producer: one request in flight, in queue order, and nothing
// more after a failure (see the type comment for why that makes the dedupe exact).
func (s *kafkaSink) write(w *partitionWriter) {
	batch := make([]*outEvent, 0, s.cfg.MaxBatch)
	var rb recordBatch
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	// next is an event taken from the queue that did not fit the previous request: it heads
	// the next one, so queue order holds.
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
		now := time.Now()
		rb.reset(now)
		rb.add(ev)
		if size := rb.size(); size > w.maxBytes {
			s.metrics.oversized.Inc()
			s.log.Error("event is larger than the topic accepts; capture stops before it and retries (docs/CAPTURE.md)",
				"event_id", ev.id, "topic", w.topic, "partition", w.partition, "lsn", ev.pos.LSN.String(),
				"record_bytes", size, "max_message_bytes", w.maxBytes)
			s.fail(fmt.Errorf("%w: event %s on %s[%d] needs %d bytes, the topic accepts %d: raise the topic's max.message.bytes",
				ErrEventTooLarge, ev.id, w.topic, w.partition, size, w.maxBytes))
			break
		}
		batch = append(batch[:0], ev)
		// add takes e into the request when the request stays within the broker's limit,
		// and otherwise keeps it for the next request. The batch's size is exact (the
		// encoder is capture's own), so requests fill up to the limit.
		add := func(e *outEvent) bool {
			m := rb.mark()
			rb.add(e)
			if rb.size() > w.maxBytes {
				rb.undo(m)
				next = e
				return false
			}
			batch = append(batch, e)
			return true
		}
		lingered := false
	fill:
		for len(batch) < s.cfg.MaxBatch {
			select {
			case e, ok := <-w.queue:
				if !ok || !add(e) {
					break fill
				}
				continue
			default:
			}
			// The queue is empty. Wait up to Linger for more before sending, as Kafka's own
			// producer does (linger.ms): at 2,000 events/s over three partitions a request
			// otherwise completes before the next event arrives, so each event went out
			// alone (35,000 requests for 40,000 events), and the broker's and our CPU per
			// request, not the wait, made the latency tail on two cores. Measured with
			// bench/capture's latency run, alternating: a 3 ms linger on every request
			// halved the requests and the broker's CPU and took the p99 of the steady runs
			// from 29-69 ms to 12-38 ms, for about 3 ms more at the median.
			//
			// A request whose first event committed more than catchUpAge ago is catching
			// up on a backlog: its latency is lost already, and what matters is that the
			// backlog drains at the walsender's speed. Then the writer lingers longer
			// (CatchUpLinger), whatever the queue held: with one request in flight per
			// partition, a request per partition per produce round trip is otherwise what a
			// backlog becomes (measured: 2 to 8 events per request, the broker spending
			// 57 us of CPU per event, the walsender starved), and the broker's CPU per
			// request, not per byte, is what a two-core machine runs out of.
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
		// Not the session's context: a request already on the wire is waited for, never
		// abandoned, so that the next session's read of the last record sees its outcome.
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		t0 := time.Now()
		raw := bytes.NewReader(rb.raw())
		resp, err := s.client.RawProduce(ctx, &kafkago.RawProduceRequest{
			Topic: w.topic, Partition: w.partition, RequiredAcks: kafkago.RequireAll,
			RawRecords: protocol.RawRecordSet{Reader: raw},
		})
		cancel()
		s.metrics.produceSeconds.Observe(time.Since(t0).Seconds())
		s.metrics.batchSize.Observe(float64(len(batch)))
		if err == nil {
			err = resp.Error
		}
		if err == nil {
			for _, re := range resp.RecordErrors {
				err = re
				break
			}
		}
		if err != nil {
			s.metrics.produceErrors.Inc()
			s.produceFailed.Store(true)
			if timedOut(err) {
				s.noteUnanswered(t0)
			}
			s.fail(fmt.Errorf("producing to %s[%d]: %w", w.topic, w.partition, err))
			break
		}
		if tracing.Enabled() {
			traceProduce(batch, w.topic, w.partition, t0, time.Now())
		}
		for _, e := range batch {
			s.onAck(e)
		}
	}
	// Drop whatever is left: after a failure nothing more may reach this partition.
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

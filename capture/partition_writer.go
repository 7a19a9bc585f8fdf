package capture

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"orderflow"
)

type partitionWriter struct {
	topic     string
	partition int
	queue     chan *outEvent
}

// lingerMin is how many queued events make a writer linger (see write).
const lingerMin = 4

// maxBatchBytes bounds the estimated size of one produce request's record batch. The broker
// refuses a batch above message.max.bytes (1 MiB by default) with MESSAGE_TOO_LARGE, and a
// backlog (a rebuilt slot's rows, a long Kafka outage) fills batches to the bound. What a
// batch holds beyond key and value (headers, varints, per-record overhead) is estimated by
// recordSize, and the bound leaves room for the batch header.
const maxBatchBytes = 900 << 10

// recordSize estimates the bytes one event takes in a record batch: key, value, the four
// headers and about 40 bytes of lengths, offsets and timestamps.
func recordSize(e *outEvent) int {
	return len(e.key) + len(e.value) + len(e.id) + len(e.eventType) + 64 + 40
}

// write is a partition's only producer: one request in flight, in queue order, and nothing
// more after a failure (see the type comment for why that makes the dedupe exact).
func (s *kafkaSink) write(w *partitionWriter) {
	batch := make([]*outEvent, 0, s.cfg.MaxBatch)
	records := make([]kafkago.Record, 0, s.cfg.MaxBatch)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for ev := range w.queue {
		batch = append(batch[:0], ev)
		size := recordSize(ev)
		lingering, decided := false, false
	fill:
		for len(batch) < s.cfg.MaxBatch && size < maxBatchBytes {
			select {
			case e, ok := <-w.queue:
				if !ok {
					break fill
				}
				batch = append(batch, e)
				size += recordSize(e)
				continue
			default:
			}
			// The queue is empty. Wait up to Linger for more only when it held several
			// events, i.e. events arrive faster than requests complete: a backlog of
			// single-event transactions otherwise becomes thousands of tiny requests a
			// second, and on a small machine the broker's per-request work starves the
			// walsender we read from. A trickle of events still goes out at once.
			if !decided {
				decided = true
				if s.cfg.Linger > 0 && len(batch) >= lingerMin {
					linger.Reset(s.cfg.Linger)
					lingering = true
				}
			}
			if !lingering {
				break
			}
			select {
			case e, ok := <-w.queue:
				if !ok {
					break fill
				}
				batch = append(batch, e)
				size += recordSize(e)
			case <-linger.C:
				lingering = false
			}
		}
		if lingering && !linger.Stop() {
			<-linger.C
		}
		if s.aborted.Load() || s.err() != nil {
			break
		}
		records = records[:0]
		now := time.Now()
		for _, e := range batch {
			records = append(records, kafkago.Record{
				Time:  now,
				Key:   kafkago.NewBytes(e.key),
				Value: kafkago.NewBytes(e.value),
				Headers: []kafkago.Header{
					{Key: orderflow.HeaderEventID, Value: []byte(e.id)},
					{Key: orderflow.HeaderEventType, Value: []byte(e.eventType)},
					{Key: orderflow.HeaderLSN, Value: []byte(e.pos.LSN.String())},
					{Key: orderflow.HeaderSeq, Value: strconv.AppendUint(nil, uint64(e.pos.Seq), 10)},
				},
			})
		}
		// Not the session's context: a request already on the wire is waited for, never
		// abandoned, so that the next session's read of the last record sees its outcome.
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		t0 := time.Now()
		resp, err := s.client.Produce(ctx, &kafkago.ProduceRequest{
			Topic: w.topic, Partition: w.partition, RequiredAcks: kafkago.RequireAll,
			Records: kafkago.NewRecordReader(records...),
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

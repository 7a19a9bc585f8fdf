package deliver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"orderflow"
	"orderflow/internal/backoff"
	"orderflow/internal/kafka"
)

// intakeStore is what the intake needs from the database.
type intakeStore interface {
	// EnqueueAndClaimDeliveries writes, in one transaction, a pending delivery for every
	// event and every enabled endpoint subscribed to its type, skipping pairs that already
	// exist, and claims those of the new ones the claim has room for; it returns the claimed
	// ones and how many rows it wrote. A batch refused for its values fails with
	// orderflow.ErrRejectedData.
	EnqueueAndClaimDeliveries(ctx context.Context, evs []orderflow.WebhookEvent, c orderflow.DeliveryClaim) ([]orderflow.Delivery, int64, error)
	// RecordIntakeDeadLetters records records the intake gave up on.
	RecordIntakeDeadLetters(ctx context.Context, ls []orderflow.IntakeDeadLetter) error
}

// intake turns Kafka records into pending deliveries. Offsets are committed only after the
// database commit, so a crash in between re-reads records whose deliveries already exist;
// the (event id, endpoint id) key absorbs them.
type intake struct {
	reader   *kafkago.Reader
	store    intakeStore
	maxBatch int
	linger   time.Duration
	log      *slog.Logger
	m        *metrics
	wake     chan<- struct{}
	// handoff, when set, is the sender's: each batch is written by the sender's loop, which
	// claims the new deliveries it has room for in the same statement and starts them, so a
	// new delivery costs no claim query and no claim UPDATE. Nil writes unclaimed deliveries
	// and wakes the sender to claim them.
	handoff chan<- handoffRequest
	kafkaOK *atomic.Bool
	dbOK    *atomic.Bool
}

// record is one Kafka record on its way to becoming deliveries.
type record struct {
	msg kafkago.Message
	ev  orderflow.WebhookEvent
}

// run reads until ctx ends. Kafka being away is an outage to wait out, never a reason to
// exit: the reader rejoins its group by itself once the broker answers, the loop only keeps
// asking (with a capped backoff), and the sender goes on meanwhile with what PostgreSQL holds.
func (in *intake) run(ctx context.Context) error {
	wait := backoff.New(100*time.Millisecond, 5*time.Second)
	for {
		batch, err := kafka.FetchBatch(ctx, in.reader, in.maxBatch, in.linger)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			in.kafkaOK.Store(false)
			in.m.kafkaErrors.Inc()
			pause := wait.Next()
			in.log.Warn("reading from kafka failed; retrying", "err", err, "failures", wait.Failures(), "backoff", pause)
			if !backoff.Sleep(ctx, pause) {
				return nil
			}
			continue
		}
		wait.Reset()
		in.kafkaOK.Store(true)
		recs := make([]record, 0, len(batch))
		var dead []orderflow.IntakeDeadLetter
		for _, m := range batch {
			// Binary mode (what capture writes) or a structured record from before the switch.
			ev, err := kafka.DecodeMessage(&m)
			if err != nil {
				// Nothing can be delivered from a record we cannot read. Recording it and
				// moving on keeps the partition moving; the record stays on the topic.
				in.m.skipped.WithLabelValues("undecodable").Inc()
				in.log.Warn("dead-lettering undecodable record", "partition", m.Partition, "offset", m.Offset, "err", err)
				dead = append(dead, intakeDead(m, nil, err, 1))
				continue
			}
			// The webhook body is the whole event in structured JSON, as partners expect,
			// whichever mode the record used: for an old structured record these are the
			// record's own bytes.
			// It carries the record's traceparent as its extension attribute, and the delivery
			// keeps it so that every attempt continues the event's trace (docs/TRACING.md).
			recs = append(recs, record{msg: m, ev: orderflow.WebhookEvent{ID: ev.ID, Type: ev.Type, Subject: ev.Subject,
				Time: ev.Time, Version: orderflow.FactVersion(ev), Payload: orderflow.AppendCloudEvent(nil, ev),
				TraceParent: validTraceParent(ev.TraceParent)}})
		}
		refused, err := in.enqueue(ctx, recs)
		if err != nil {
			return nil // ctx ended while the database was unavailable; nothing was committed
		}
		if err := in.recordDead(ctx, append(dead, refused...)); err != nil {
			return nil
		}
		if err := in.reader.CommitMessages(ctx, batch...); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// A rebalance took the partition away: its new owner re-reads these records and
			// the unique key makes that harmless.
			in.log.Warn("committing offsets", "err", err)
		}
	}
}

// enqueue writes the deliveries of recs and returns the records the database refused for
// their values, as dead letters. A batch refused for its values holds a bad record: it is
// written record by record, so the good ones get their deliveries and only the bad one is
// given up. A failure that is not the data's (the database away, a timeout) is retried with
// backoff until the database takes the batch: the records stay uncommitted meanwhile, which
// is exactly the back-pressure we want when there is nowhere to write. The error is ctx's.
func (in *intake) enqueue(ctx context.Context, recs []record) ([]orderflow.IntakeDeadLetter, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	evs := make([]orderflow.WebhookEvent, len(recs))
	for i, r := range recs {
		evs[i] = r.ev
	}
	err := in.write(ctx, evs)
	if !errors.Is(err, orderflow.ErrRejectedData) {
		return nil, err
	}
	in.log.Warn("the database refuses a batch of records; writing them one by one", "records", len(recs), "err", err)
	var dead []orderflow.IntakeDeadLetter
	for _, r := range recs {
		err := in.write(ctx, []orderflow.WebhookEvent{r.ev})
		switch {
		case errors.Is(err, orderflow.ErrRejectedData):
			in.m.skipped.WithLabelValues("refused").Inc()
			in.log.Warn("dead-lettering a record the database refuses", "partition", r.msg.Partition, "offset", r.msg.Offset, "err", err)
			dead = append(dead, intakeDead(r.msg, &r.ev, err, 2))
		case err != nil:
			return nil, err
		}
	}
	return dead, nil
}

// write writes one batch, retrying every failure except a refusal of its values.
func (in *intake) write(ctx context.Context, evs []orderflow.WebhookEvent) error {
	wait := backoff.New(100*time.Millisecond, 5*time.Second)
	for {
		n, claimed, err := in.insert(ctx, evs)
		if err == nil {
			in.dbOK.Store(true)
			in.m.enqueued.Add(float64(n))
			if n > int64(claimed) {
				select {
				case in.wake <- struct{}{}:
				default:
				}
			}
			return nil
		}
		if errors.Is(err, orderflow.ErrRejectedData) {
			in.dbOK.Store(true) // it answered
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		in.dbOK.Store(false)
		pause := wait.Next()
		in.log.Warn("writing deliveries, will retry", "events", len(evs), "err", err, "backoff", pause)
		if !backoff.Sleep(ctx, pause) {
			return ctx.Err()
		}
	}
}

// handoffRequest asks the sender's loop to write a batch: write gets the claim the sender has
// room for and returns the deliveries it claimed (the sender starts them) and the rows written.
type handoffRequest struct {
	write func(orderflow.DeliveryClaim) ([]orderflow.Delivery, int64, error)
	done  chan<- handoffResult
}

type handoffResult struct {
	written int64
	claimed int
	err     error
}

// insert writes one batch once: through the sender's loop when there is one, so the claim
// counts exactly what the sender holds, and alone otherwise.
func (in *intake) insert(ctx context.Context, evs []orderflow.WebhookEvent) (int64, int, error) {
	if in.handoff == nil {
		_, n, err := in.store.EnqueueAndClaimDeliveries(ctx, evs, orderflow.DeliveryClaim{})
		return n, 0, err
	}
	done := make(chan handoffResult, 1)
	req := handoffRequest{done: done, write: func(c orderflow.DeliveryClaim) ([]orderflow.Delivery, int64, error) {
		return in.store.EnqueueAndClaimDeliveries(ctx, evs, c)
	}}
	select {
	case in.handoff <- req:
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	select {
	case r := <-done:
		return r.written, r.claimed, r.err
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
}

// recordDead writes the dead letters of a batch before its offsets are committed, retrying
// while the database is away. Their text is made storable by the store; if the database
// refuses them anyway they are logged and given up: the records are still on the topic, and a
// bookkeeping row must never stall the partition.
func (in *intake) recordDead(ctx context.Context, dead []orderflow.IntakeDeadLetter) error {
	if len(dead) == 0 {
		return nil
	}
	wait := backoff.New(100*time.Millisecond, 5*time.Second)
	for {
		err := in.store.RecordIntakeDeadLetters(ctx, dead)
		switch {
		case err == nil:
			in.m.intakeDeadLettered.Add(float64(len(dead)))
			return nil
		case errors.Is(err, orderflow.ErrRejectedData):
			in.log.Error("the database refuses intake dead letters; giving them up", "records", len(dead), "err", err)
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		}
		pause := wait.Next()
		in.log.Warn("recording intake dead letters, will retry", "records", len(dead), "err", err, "backoff", pause)
		if !backoff.Sleep(ctx, pause) {
			return ctx.Err()
		}
	}
}

func intakeDead(m kafkago.Message, ev *orderflow.WebhookEvent, cause error, attempts int) orderflow.IntakeDeadLetter {
	l := orderflow.IntakeDeadLetter{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset,
		Error: fmt.Sprint(cause), Attempts: attempts}
	if ev != nil {
		l.EventID, l.Subject = ev.ID, ev.Subject
	}
	return l
}

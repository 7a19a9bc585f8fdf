package projector

import (
	"context"
	"errors"
	"fmt"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"orderflow"
	"orderflow/internal/backoff"
	"orderflow/internal/kafka"
	"orderflow/internal/tracing"
)

// decoded is one message after decoding: a summary to apply, or nothing (skipped), or dead.
type decoded struct {
	msg     kafkago.Message
	summary *orderflow.Summary
	evTime  time.Time
	// trace and decodedAt are set only with tracing on (traceApplied).
	trace     tracing.TraceParent
	decodedAt time.Time
}

// process decodes and applies one batch. Poison events are dead-lettered before the batch's
// transaction, and recorded in it, so offsets are committed only once every event of the
// batch is either in order_summary, skipped on purpose, or in the dead-letter topic.
// A failure that is not the data's (the database away, a timeout) is retried until it stops or
// ctx (not work) is cancelled. A batch the database refuses for its values
// (orderflow.ErrRejectedData) holds a bad event; it is then applied event by event and the bad
// one dead-lettered after MaxAttempts refusals.
func (p *Projector) process(work, ctx context.Context, batch []kafkago.Message) error {
	var (
		items []decoded
		ss    []orderflow.Summary
		dead  []orderflow.ProjectorDeadLetter
	)
	for _, m := range batch {
		d, err := p.decodeWithRetries(work, m)
		switch {
		case errors.Is(err, errSkip):
			continue
		case err != nil:
			if err := p.sendDead(work, ctx, m, err); err != nil {
				return err
			}
			dead = append(dead, deadRecord(m, err, p.cfg.MaxAttempts))
			continue
		}
		items = append(items, d)
		ss = append(ss, *d.summary)
	}
	if len(ss) == 0 && len(dead) == 0 {
		return nil
	}
	applied, err := p.apply(work, ctx, ss, dead, 1)
	if errors.Is(err, errPoison) {
		return p.applyOneByOne(work, ctx, items, dead)
	}
	if err != nil {
		return err
	}
	p.observe(items, applied)
	return nil
}

// errPoison ends apply when the data, not the database, is the problem.
var errPoison = errors.New("the database refuses the data")

// apply writes ss and dead in one transaction, retrying while it fails. A failure that is
// not the data's (the database away, a timeout, a deadlock) is retried, with a capped backoff,
// until it ends or ctx is cancelled: waiting out an outage is the only right answer to it.
// After maxRefusals refusals of the data itself (orderflow.ErrRejectedData) apply returns
// errPoison: the same values would be refused forever.
func (p *Projector) apply(work, ctx context.Context, ss []orderflow.Summary, dead []orderflow.ProjectorDeadLetter,
	maxRefusals int) ([]bool, error) {
	wait := backoff.New(p.cfg.RetryBackoff, 5*time.Second)
	refusals := 0
	for {
		applied, err := p.store.ApplySummaries(work, ss, dead)
		if err == nil {
			p.dbOK.Store(true)
			return applied, nil
		}
		p.metrics.dbErrors.Inc()
		if errors.Is(err, orderflow.ErrRejectedData) {
			p.dbOK.Store(true) // it answered
			if refusals++; refusals >= maxRefusals {
				return nil, fmt.Errorf("%w: %w", errPoison, err)
			}
		} else {
			p.dbOK.Store(false)
		}
		pause := wait.Next()
		p.log.Warn("applying events failed; retrying", "err", err, "events", len(ss), "dead_letters", len(dead), "backoff", pause)
		if !backoff.Sleep(ctx, pause) {
			// Stopping with the batch unapplied: its offsets stay uncommitted, so the next
			// run gets it again.
			return nil, fmt.Errorf("stopped while the database was failing: %w", err)
		}
	}
}

// applyOneByOne applies a batch the database refused, one event per transaction; an event the
// database refuses MaxAttempts times is dead-lettered, so one bad event cannot stall its
// partition forever.
func (p *Projector) applyOneByOne(work, ctx context.Context, items []decoded, dead []orderflow.ProjectorDeadLetter) error {
	p.log.Warn("the database refuses a batch; applying its events one by one", "events", len(items))
	for _, d := range dead {
		if err := p.recordDead(work, ctx, d); err != nil {
			return err
		}
	}
	for _, it := range items {
		applied, err := p.apply(work, ctx, []orderflow.Summary{*it.summary}, nil, p.cfg.MaxAttempts)
		if errors.Is(err, errPoison) {
			cause := fmt.Errorf("the database refused the event %d times: %w", p.cfg.MaxAttempts, err)
			if err := p.sendDead(work, ctx, it.msg, cause); err != nil {
				return err
			}
			if err := p.recordDead(work, ctx, deadRecord(it.msg, cause, p.cfg.MaxAttempts)); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		p.observe([]decoded{it}, applied)
	}
	return nil
}

// recordDead writes one dead-letter row. Its text fields are made storable already; should the
// database refuse the row anyway, it is written once more without the event id and order id,
// and if even that is refused the row is given up (logged): the record is on the dead-letter
// topic, which is what keeps it, and a bookkeeping row must never stall the partition.
func (p *Projector) recordDead(work, ctx context.Context, d orderflow.ProjectorDeadLetter) error {
	for _, row := range []orderflow.ProjectorDeadLetter{d, {Topic: d.Topic, Partition: d.Partition, Offset: d.Offset,
		Error: d.Error, Attempts: d.Attempts}} {
		_, err := p.apply(work, ctx, nil, []orderflow.ProjectorDeadLetter{row}, 1)
		if !errors.Is(err, errPoison) {
			return err
		}
		p.log.Error("the database refuses a dead-letter row", "err", err, "partition", d.Partition, "offset", d.Offset)
	}
	return nil
}

func (p *Projector) observe(items []decoded, applied []bool) {
	now := time.Now()
	if tracing.Enabled() {
		traceApplied(items, applied, now)
	}
	for i, ok := range applied {
		if ok {
			p.metrics.events.WithLabelValues(outcomeApplied).Inc()
			p.metrics.applyLatency.Observe(now.Sub(items[i].evTime).Seconds())
		} else {
			p.metrics.events.WithLabelValues(outcomeStale).Inc()
		}
	}
}

// errSkip marks an event that is deliberately not applied (an unknown type).
var errSkip = errors.New("skipped")

// decodeWithRetries decodes m, trying a failing event MaxAttempts times before giving up on
// it. Decoding is deterministic today; the attempts bound the cost if it ever is not (a
// decoder that depends on a lookup), and they are what the dead letter's attempts header
// counts.
func (p *Projector) decodeWithRetries(ctx context.Context, m kafkago.Message) (decoded, error) {
	backoff := p.cfg.RetryBackoff
	var err error
	for attempt := 1; attempt <= p.cfg.MaxAttempts; attempt++ {
		var s *orderflow.Summary
		var evTime time.Time
		s, evTime, err = decodeSummary(m.Headers, m.Value)
		if err == nil {
			d := decoded{msg: m, summary: s, evTime: evTime}
			if tracing.Enabled() {
				d.trace, _ = tracing.Parse(kafka.Header(m.Headers, orderflow.HeaderTraceParent))
				d.decodedAt = time.Now()
			}
			return d, nil
		}
		var unknown *unknownTypeError
		if errors.As(err, &unknown) {
			p.metrics.events.WithLabelValues(outcomeUnknownType).Inc()
			p.log.Info("skipping event of unknown type", "type", unknown.typ, "event_id", unknown.id,
				"partition", m.Partition, "offset", m.Offset)
			return decoded{}, errSkip
		}
		if attempt < p.cfg.MaxAttempts {
			select {
			case <-ctx.Done():
				return decoded{}, err
			case <-time.After(backoff):
			}
			backoff *= 2
		}
	}
	return decoded{}, err
}

var tracer = tracing.Tracer("orderflow/projector")

// traceApplied records the projection of each event that carries a trace: a consumer span from
// its decoding to the commit of its batch, a child of the record's ce_traceparent, saying whether
// the read model took it or already had a newer version.
func traceApplied(items []decoded, applied []bool, end time.Time) {
	for i, ok := range applied {
		it := items[i]
		if !it.trace.IsValid() {
			continue
		}
		outcome := outcomeApplied
		if !ok {
			outcome = outcomeStale
		}
		s := it.summary
		_, span := tracing.Start(context.Background(), tracer, "project "+s.LastEventType, it.trace,
			trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(it.decodedAt),
			trace.WithAttributes(
				attribute.String("messaging.system", "kafka"),
				attribute.String("messaging.destination.name", it.msg.Topic),
				attribute.Int("messaging.destination.partition.id", it.msg.Partition),
				attribute.Int64("messaging.kafka.offset", it.msg.Offset),
				attribute.String("messaging.message.id", s.LastEventID),
				attribute.String("orderflow.order_id", s.OrderID),
				attribute.Int("orderflow.order_version", s.Version),
				attribute.String("orderflow.outcome", outcome)))
		span.End(trace.WithTimestamp(end))
	}
}

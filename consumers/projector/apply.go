package projector

import (
	"context"
	"errors"
	"fmt"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"orderflow"
)

// decoded is one message after decoding: a summary to apply, or nothing (skipped), or dead.
type decoded struct {
	msg     kafkago.Message
	summary *orderflow.Summary
	evTime  time.Time
}

// process decodes and applies one batch. Poison events are dead-lettered before the batch's
// transaction, and recorded in it, so offsets are committed only once every event of the
// batch is either in order_summary, skipped on purpose, or in the dead-letter topic.
// Database errors are retried until they stop or ctx (not work) is cancelled: a database that
// is down is not the events' fault. A batch the database keeps refusing while it answers pings
// holds a bad event; it is then applied event by event and the bad one dead-lettered.
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
	// poison is set when the database answers pings but keeps refusing the batch: then one
	// of its events is bad, and the batch is applied event by event to find it.
	poison := func(failures int) bool { return failures >= p.cfg.MaxAttempts && len(ss) > 0 }
	applied, err := p.apply(work, ctx, ss, dead, poison)
	if errors.Is(err, errPoison) {
		return p.applyOneByOne(work, ctx, items, dead)
	}
	if err != nil {
		return err
	}
	p.observe(items, applied)
	return nil
}

// errPoison ends apply when the batch, not the database, is the problem.
var errPoison = errors.New("the database answers but refuses the batch")

// apply writes ss and dead in one transaction, retrying while it fails. A failure while the
// database does not even answer a ping is an outage: it is retried until it ends or ctx is
// cancelled, because it is not the events' fault. When the database answers and giveUp says
// so, apply returns errPoison.
func (p *Projector) apply(work, ctx context.Context, ss []orderflow.Summary, dead []orderflow.ProjectorDeadLetter,
	giveUp func(failures int) bool) ([]bool, error) {
	backoff := p.cfg.RetryBackoff
	failures := 0
	for {
		applied, err := p.store.ApplySummaries(work, ss, dead)
		if err == nil {
			p.dbOK.Store(true)
			return applied, nil
		}
		p.metrics.dbErrors.Inc()
		pctx, cancel := context.WithTimeout(work, 5*time.Second)
		up := p.store.Ping(pctx) == nil
		cancel()
		p.dbOK.Store(up)
		if up {
			failures++
			if giveUp(failures) {
				return nil, errPoison
			}
		}
		p.log.Warn("applying events failed; retrying", "err", err, "events", len(ss), "database_up", up, "backoff", backoff)
		select {
		case <-ctx.Done():
			// Stopping with the batch unapplied: its offsets stay uncommitted, so the next
			// run gets it again.
			return nil, fmt.Errorf("stopped while the database was failing: %w", err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// applyOneByOne applies a batch the database refused, one event per transaction; an event the
// database refuses MaxAttempts times while it answers pings is dead-lettered, so one bad event
// cannot stall its partition forever.
func (p *Projector) applyOneByOne(work, ctx context.Context, items []decoded, dead []orderflow.ProjectorDeadLetter) error {
	p.log.Warn("the database refuses a batch; applying its events one by one", "events", len(items))
	never := func(int) bool { return false }
	if len(dead) > 0 {
		if _, err := p.apply(work, ctx, nil, dead, never); err != nil {
			return err
		}
	}
	for _, it := range items {
		applied, err := p.apply(work, ctx, []orderflow.Summary{*it.summary}, nil,
			func(failures int) bool { return failures >= p.cfg.MaxAttempts })
		if errors.Is(err, errPoison) {
			cause := fmt.Errorf("the database refused the event %d times", p.cfg.MaxAttempts)
			if err := p.sendDead(work, ctx, it.msg, cause); err != nil {
				return err
			}
			if _, err := p.apply(work, ctx, nil, []orderflow.ProjectorDeadLetter{deadRecord(it.msg, cause, p.cfg.MaxAttempts)}, never); err != nil {
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

func (p *Projector) observe(items []decoded, applied []bool) {
	now := time.Now()
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
		s, evTime, err = decodeSummary(m.Value)
		if err == nil {
			return decoded{msg: m, summary: s, evTime: evTime}, nil
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

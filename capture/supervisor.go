package capture

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"

	"orderflow"
	"orderflow/internal/netdial"
)

// fatalError marks a session error that reconnecting cannot fix.
type fatalError struct{ err error }

func (e fatalError) Error() string { return e.err.Error() }
func (e fatalError) Unwrap() error { return e.err }

// streamLoop runs replication sessions one after another: a standby retries until the slot is
// free, a session that failed reconnects with jittered backoff, and only errors no restart can
// fix (a misconfiguration) end it. A lost slot is rebuilt by the next session.
func (c *Capture) streamLoop(ctx context.Context) error {
	const minBackoff, maxBackoff = 200 * time.Millisecond, 10 * time.Second
	backoff := minBackoff
	standbyLogged := false
	for {
		started := time.Now()
		err := c.session(ctx)
		c.ready.Store(false)
		c.metrics.active.Set(0)
		if ctx.Err() != nil {
			if err != nil && !errors.Is(err, context.Canceled) {
				c.log.Warn("stopped with error", "err", err)
			}
			return nil
		}
		var fatal fatalError
		if errors.As(err, &fatal) {
			return err
		}
		if errors.Is(err, errSlotBusy) {
			if !standbyLogged {
				c.log.Info("standby: the slot is held by another capture; retrying", "slot", c.cfg.Slot, "every", c.cfg.StandbyRetry)
				standbyLogged = true
			}
			if !sleep(ctx, c.cfg.StandbyRetry) {
				return nil
			}
			continue
		}
		standbyLogged = false
		c.metrics.reconnects.Inc()
		if time.Since(started) > time.Minute {
			backoff = minBackoff
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		c.log.Warn("replication session ended; reconnecting", "err", err, "backoff", wait)
		if !sleep(ctx, wait) {
			return nil
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// noteUnanswered remembers the latest send time of a produce request that timed out.
func (c *Capture) noteUnanswered(t time.Time) {
	if t.After(c.unanswered) {
		c.unanswered = t
	}
}

// awaitUnanswered waits, before a session reads the partitions' last positions, until a
// produce request that timed out can no longer reach a broker. Such a request may only be
// stuck on a silent network: if it landed after the read, the dedupe would not know it and
// its events would be produced twice. The connections capture opens give unacknowledged data
// up after netdial.UserTimeout (TCP_USER_TIMEOUT), so by then the request either arrived
// before the read or never will.
func (c *Capture) awaitUnanswered(ctx context.Context) error {
	if c.unanswered.IsZero() {
		return nil
	}
	wait := time.Until(c.unanswered.Add(netdial.UserTimeout + 5*time.Second))
	if wait <= 0 {
		return nil
	}
	c.log.Info("waiting before reading the partitions: a produce request that timed out may still reach the broker", "wait", wait.Round(time.Millisecond))
	if !sleep(ctx, wait) {
		return ctx.Err()
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (c *Capture) topicsOf(types []string) []string {
	out := make([]string, len(types))
	for i, t := range types {
		out[i] = orderflow.PrefixedTopic(c.cfg.TopicPrefix, t)
	}
	return out
}

func (c *Capture) newSink() eventSink {
	if c.cfg.Discard {
		return &discardSink{onAck: c.ack}
	}
	s := newKafkaSink(c.cfg.Kafka, c.kafka, c.log, c.metrics, c.ack)
	if c.produceFailed {
		s.settle = settleInterval
	}
	return s
}

// settleInterval is how long the partitions' ends must stay put after a failed produce
// before a session reads its dedupe positions (kafkaSink.settleEnds).
const settleInterval = 2 * time.Second

// session is one replication connection's life: set up, take the slot, stream, stop.
func (c *Capture) session(ctx context.Context) error {
	db, err := connect(ctx, c.cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer closeConn(db)
	if err := ensurePublication(ctx, db, c.cfg.Publication); err != nil {
		return err
	}
	topics := c.topicsOf(c.cfg.AggregateTypes)
	sink := c.newSink()
	defer func() {
		c.noteUnanswered(sink.lastUnanswered())
		if sink.hadFailures() {
			c.produceFailed = true
		}
	}()
	opened := false
	defer func() {
		if !opened {
			_ = sink.finish(true)
		}
	}()
	if err := c.ensureSlot(ctx, db, sink, topics); err != nil {
		return err
	}

	conn, err := connectReplication(ctx, c.cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	if err := startReplication(ctx, conn, c.cfg.Slot, c.cfg.Publication); err != nil {
		return err
	}
	// From here on this process holds the slot, so nobody else moves its position and no
	// other capture produces: this is the moment to read where the slot and the partitions
	// stand. Reading the partitions earlier could miss records a previous holder wrote after.
	si, err := readSlot(ctx, db, c.cfg.Slot)
	if err != nil {
		return err
	}
	if err := c.awaitUnanswered(ctx); err != nil {
		return err
	}
	if err := sink.open(ctx, topics); err != nil {
		return err
	}
	c.produceFailed = false // the positions just read include whatever the failure left
	opened = true
	s := &stream{
		c: c, conn: conn, sink: sink, rels: map[uint32]*relation{},
		confirmed: si.confirmedFlush, sentConfirmed: si.confirmedFlush,
	}
	c.metrics.confirmedLSN.Set(float64(si.confirmedFlush))
	c.ready.Store(true)
	c.metrics.active.Set(1)
	c.metrics.streamingSince.SetToCurrentTime()
	c.log.Info("streaming", "slot", c.cfg.Slot, "lsn", si.confirmedFlush.String())
	return s.run(ctx)
}

// ensureSlot creates the slot when it does not exist and no topic holds events yet. A missing
// slot next to a non-empty topic means the slot was dropped, and a new one would start at the
// current WAL position and silently skip every event in between; an invalidated slot (wal_status
// lost) has lost that WAL too. Both are rebuilt from the outbox table (rebuild.go).
func (c *Capture) ensureSlot(ctx context.Context, db *pgx.Conn, sink eventSink, topics []string) error {
	si, err := readSlot(ctx, db, c.cfg.Slot)
	if err != nil {
		return err
	}
	if si.exists {
		if si.walStatus == "lost" {
			return c.rebuildSlot(ctx, db, topics, "invalidated by the server (wal_status lost, likely max_slot_wal_keep_size)")
		}
		if si.plugin != "pgoutput" {
			return fatalError{fmt.Errorf("slot %s uses plugin %q, capture needs pgoutput", c.cfg.Slot, si.plugin)}
		}
		var dbName string
		if err := db.QueryRow(ctx, "SELECT current_database()").Scan(&dbName); err != nil {
			return fmt.Errorf("reading database name: %w", err)
		}
		if si.database != dbName {
			return fatalError{fmt.Errorf("slot %s belongs to database %q, not %q", c.cfg.Slot, si.database, dbName)}
		}
		return nil
	}
	has, err := sink.hasRecords(ctx, topics)
	if err != nil {
		return fmt.Errorf("checking for a checkpoint before creating slot %s: %w", c.cfg.Slot, err)
	}
	if has {
		if c.cfg.Discard {
			return fatalError{fmt.Errorf("%w: slot %s is missing and -discard cannot rebuild it", ErrSlotLost, c.cfg.Slot)}
		}
		return c.rebuildSlot(ctx, db, topics, fmt.Sprintf("missing while topics %v hold events: it was dropped", topics))
	}
	if err := createSlot(ctx, db, c.cfg.Slot); err != nil {
		return err
	}
	c.log.Info("created replication slot", "slot", c.cfg.Slot)
	return nil
}

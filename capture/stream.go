package capture

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"orderflow"
)

// ack is called by the sink, from its writer goroutines, once Kafka acknowledged ev.
func (c *Capture) ack(ev *outEvent) {
	c.metrics.producedOf(ev.eventType).Inc()
	c.metrics.commitToAck.Observe(time.Since(ev.txn.commitTime).Seconds())
	ev.txn.pending.Add(-1)
}

// txn is a transaction on its way to Kafka. pending counts its events not yet acknowledged,
// plus one until its Commit message arrived; at zero, its end LSN may be confirmed.
type txn struct {
	commitLSN  pglogrepl.LSN
	endLSN     pglogrepl.LSN
	commitTime time.Time
	pending    atomic.Int64
}

// outEvent is one event ready for the sink.
type outEvent struct {
	txn       *txn
	pos       Position
	topic     string
	partition int // set by the sink when it routes the event
	id        string
	eventType string
	key       []byte
	value     []byte
	// headers are the event's ce_ headers (binary mode), without the position headers.
	headers []orderflow.Header
	// traceParent is the event's trace, for the produce span (traceProduce).
	traceParent string
	// held is what the event took from its sink's byte budget, given back on its ack.
	held int64
}

// stream owns the replication connection: only its goroutine reads from or writes to conn.
type stream struct {
	c    *Capture
	conn *pgconn.PgConn
	sink eventSink
	rels map[uint32]*relation
	// topicNames caches topicOf.
	topicNames map[string]string

	cur *txn // between Begin and Commit
	seq uint32
	// inflight holds, in commit order, the transactions not yet confirmed.
	inflight []*txn

	confirmed     pglogrepl.LSN
	sentConfirmed pglogrepl.LSN
	lastStatus    time.Time
	readDeadline  time.Time
	ev            Event
	// lastHeard is when the server last sent something, or when the stream last went back to
	// reading after handling a message (which can wait on Kafka); pinged is when a reply was
	// last asked for.
	lastHeard time.Time
	pinged    time.Time
	// now is when the message being handled arrived; waited says handling it waited on a
	// full queue (so the clock must be read again).
	now    time.Time
	waited bool
}

// errServerSilent ends a session whose replication connection stayed silent, although a
// reply was asked for, for the ReplicationTimeout: the network or the server is gone, even if
// the connection is not closed.
var errServerSilent = errors.New("the server sent nothing on the replication connection")

func (s *stream) run(ctx context.Context) error {
	done := ctx.Done()
	// One clock reading per message: the profile of a backlog drain had time.Now at 8% of
	// capture's CPU when every message read the clock three times or more.
	now := time.Now()
	s.lastHeard = now
	for {
		select {
		case <-done:
			return s.stop(false, nil)
		case <-s.sink.failed():
			return s.stop(true, s.sink.err())
		default:
		}
		s.advance()
		if err := s.checkSilence(now); err != nil {
			return s.stop(true, err)
		}
		if err := s.maybeSendStatus(now, false); err != nil {
			return s.stop(true, err)
		}
		if s.readDeadline.Sub(now) < 100*time.Millisecond {
			s.readDeadline = now.Add(250 * time.Millisecond)
			if err := s.conn.Conn().SetReadDeadline(s.readDeadline); err != nil {
				return s.stop(true, fmt.Errorf("setting read deadline: %w", err))
			}
		}
		msg, err := s.conn.ReceiveMessage(context.Background())
		now = time.Now()
		s.now = now
		if err != nil {
			if pgconn.Timeout(err) {
				continue
			}
			return s.stop(true, fmt.Errorf("receiving from replication connection: %w", err))
		}
		s.lastHeard = now
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			if err := s.handleCopyData(ctx, msg.Data); err != nil {
				if ctx.Err() != nil {
					return s.stop(false, nil)
				}
				return s.stop(true, err)
			}
		case *pgproto3.ErrorResponse:
			return s.stop(true, fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(msg)))
		case *pgproto3.CopyDone:
			return s.stop(true, errors.New("replication stream ended by the server"))
		}
		// Handling a message can wait on Kafka; that is not the server's silence.
		if s.waited {
			s.waited = false
			now = time.Now()
			s.lastHeard = now
		}
	}
}

// checkSilence fails the session once the server has been silent for the ReplicationTimeout,
// and before that asks it for a reply: a walsender with nothing to send stays quiet as long as
// capture's status updates arrive, so silence alone says nothing until a reply is due.
func (s *stream) checkSilence(now time.Time) error {
	silent := now.Sub(s.lastHeard)
	timeout := s.c.cfg.ReplicationTimeout
	if silent >= timeout {
		return fmt.Errorf("%w for %s (replication timeout %s)", errServerSilent, silent.Round(time.Second), timeout)
	}
	if silent >= timeout/4 && s.pinged.Before(s.lastHeard) {
		if err := s.sendStatusWith(now, true); err != nil {
			return err
		}
		s.pinged = now
	}
	return nil
}

// idleAdvance moves the confirmed position to the server's WAL end if nothing is open or in
// flight (see the keepalive case of handleCopyData).
func (s *stream) idleAdvance(walEnd pglogrepl.LSN) {
	if s.cur == nil && len(s.inflight) == 0 && walEnd > s.confirmed {
		s.confirmed = walEnd
	}
}

func (s *stream) handleCopyData(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("parsing keepalive: %w", err)
		}
		// With nothing received and unacknowledged, everything up to the server's WAL end
		// is either not for us or already in Kafka, so the slot may move there: a quiet
		// outbox on a busy database must not pin WAL. Never while a transaction is open or
		// in flight: that is how a connector skips events (confirming WAL end on receipt).
		s.advance()
		s.idleAdvance(pkm.ServerWALEnd)
		return s.maybeSendStatus(time.Now(), pkm.ReplyRequested)
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("parsing xlogdata: %w", err)
		}
		return s.handleMessage(ctx, xld.WALData)
	}
	return nil
}

func (s *stream) handleMessage(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch pglogrepl.MessageType(data[0]) {
	case pglogrepl.MessageTypeBegin:
		var m pglogrepl.BeginMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decoding begin: %w", err)
		}
		t := &txn{commitLSN: m.FinalLSN, commitTime: m.CommitTime}
		t.pending.Store(1)
		s.cur, s.seq = t, 0
		s.inflight = append(s.inflight, t)
		s.c.metrics.inflightTxns.Set(float64(len(s.inflight)))
	case pglogrepl.MessageTypeCommit:
		var m pglogrepl.CommitMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decoding commit: %w", err)
		}
		if s.cur == nil {
			return errors.New("commit without begin")
		}
		// The end of the commit record, not its start: the server resumes after the
		// confirmed position, and confirming the start would replay this transaction.
		s.cur.endLSN = m.TransactionEndLSN
		s.c.metrics.commitToRecv.Observe(s.now.Sub(m.CommitTime).Seconds())
		s.cur.pending.Add(-1)
		s.cur = nil
	case pglogrepl.MessageTypeRelation:
		r, id, err := decodeRelation(data)
		if err != nil {
			return err
		}
		s.rels[id] = r
	case pglogrepl.MessageTypeInsert:
		if s.cur == nil {
			return errors.New("insert outside a transaction")
		}
		return s.handleInsert(ctx, data[1:])
	}
	return nil
}

func (s *stream) handleInsert(ctx context.Context, data []byte) error {
	ev := &s.ev
	if err := decodeInsert(data, s.rels, ev); err != nil {
		return err
	}
	pos := Position{LSN: s.cur.commitLSN, Seq: s.seq}
	s.seq++
	oe := newOutEvent(s.cur, pos, s.topicOf(ev.AggregateType), ev)
	// Count the event before the sink sees it: its ack may come before publish returns.
	s.cur.pending.Add(1)
	for {
		res, err := s.sink.publish(ctx, oe, 200*time.Millisecond)
		if err != nil {
			s.cur.pending.Add(-1)
			return err
		}
		switch res {
		case resSkipped:
			s.cur.pending.Add(-1)
			s.c.metrics.skipped.Inc()
			return nil
		case resQueued:
			return nil
		}
		// The partition's queue is full (Kafka is slow or down). Keep the connection alive
		// while waiting; the confirmed position cannot move past this event anyway.
		s.waited = true
		s.advance()
		if err := s.maybeSendStatus(time.Now(), false); err != nil {
			s.cur.pending.Add(-1)
			return err
		}
		if ctx.Err() != nil {
			s.cur.pending.Add(-1)
			return ctx.Err()
		}
	}
}

// topicOf is the topic of an aggregate type, remembered: the name is built once, not per event.
func (s *stream) topicOf(aggregateType string) string {
	t, ok := s.topicNames[aggregateType]
	if !ok {
		if s.topicNames == nil {
			s.topicNames = map[string]string{}
		}
		t = orderflow.PrefixedTopic(s.c.cfg.TopicPrefix, aggregateType)
		s.topicNames[aggregateType] = t
	}
	return t
}

// advance moves the confirmable position over the leading transactions that are committed and
// fully acknowledged. Transactions are confirmed strictly in commit order: a later one being
// done says nothing about an earlier one.
func (s *stream) advance() {
	i := 0
	for i < len(s.inflight) && s.inflight[i].pending.Load() == 0 {
		if end := s.inflight[i].endLSN; end > s.confirmed {
			s.confirmed = end
		}
		s.inflight[i] = nil
		i++
	}
	if i > 0 {
		s.inflight = s.inflight[i:]
		s.c.metrics.inflightTxns.Set(float64(len(s.inflight)))
	}
}

func (s *stream) maybeSendStatus(now time.Time, force bool) error {
	due := now.Sub(s.lastStatus) >= s.c.cfg.StatusInterval ||
		(s.confirmed > s.sentConfirmed && now.Sub(s.lastStatus) >= s.c.cfg.ConfirmInterval)
	if !force && !due {
		return nil
	}
	return s.sendStatus(now)
}

// sendStatus reports the confirmed position as written, flushed and applied. The flush
// position is what PostgreSQL stores as the slot's confirmed_flush_lsn, so it is always the
// acknowledged position, never what was merely received.
func (s *stream) sendStatus(now time.Time) error { return s.sendStatusWith(now, false) }

// sendStatusWith sends the status update, asking the server to answer at once if reply.
func (s *stream) sendStatusWith(now time.Time, reply bool) error {
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: s.confirmed,
		WALFlushPosition: s.confirmed,
		WALApplyPosition: s.confirmed,
		ClientTime:       now,
		ReplyRequested:   reply,
	})
	if err != nil {
		return fmt.Errorf("sending standby status: %w", err)
	}
	s.lastStatus = now
	if s.confirmed != s.sentConfirmed {
		s.sentConfirmed = s.confirmed
		s.c.metrics.confirmedLSN.Set(float64(s.confirmed))
	}
	return nil
}

// stop ends the session. Graceful (abort false): let the sink produce what it holds and wait
// for the acks. Abort: the sink sends nothing new but waits for requests on the wire. Either
// way, confirm what is fully acknowledged before closing.
func (s *stream) stop(abort bool, cause error) error {
	s.c.ready.Store(false)
	s.c.metrics.active.Set(0)
	ferr := s.sink.finish(abort)
	s.advance()
	if !s.conn.IsClosed() {
		if err := s.sendStatus(time.Now()); err != nil && cause == nil {
			cause = err
		}
	}
	s.c.log.Info("replication session stopped", "lsn", s.confirmed.String(), "abort", abort)
	if cause == nil {
		cause = ferr
	}
	return cause
}

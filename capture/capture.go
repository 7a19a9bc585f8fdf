// Package capture streams outbox inserts from a PostgreSQL logical replication slot to Kafka.
//
// The slot's confirmed LSN is the checkpoint: it is only ever moved past a transaction once
// Kafka acknowledged every event of that transaction, so a crash at any moment replays from a
// point at or before the first unacknowledged event. Replays are made duplicate-free by
// reading the last record of every partition before producing (see kafkaSink). docs/CAPTURE.md
// has the whole argument.
package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"
)

// Config configures a capture daemon.
type Config struct {
	DatabaseURL string
	Slot        string
	Publication string
	// TopicPrefix names the topics: <prefix>.<aggregate_type>.
	TopicPrefix string
	// AggregateTypes are created as topics at start; others are created on their first event.
	AggregateTypes []string
	Kafka          KafkaConfig
	// Discard acknowledges every event without Kafka: decode-only mode for benchmarks.
	Discard bool
	// StatusInterval is the longest time between two standby status updates (at most 10 s,
	// well inside the server's wal_sender_timeout).
	StatusInterval time.Duration
	// ConfirmInterval is how soon a newly acknowledged position is confirmed to the slot.
	ConfirmInterval time.Duration
	// Heartbeat, if positive, writes a pg_logical_emit_message this often so the slot sees WAL
	// from its own database even when nothing else there writes.
	Heartbeat time.Duration
	// StandbyRetry is how often a standby tries to take the slot over.
	StandbyRetry time.Duration
	// SlotStatsInterval is how often the lag gauges are refreshed.
	SlotStatsInterval time.Duration
	Logger            *slog.Logger
}

func (c *Config) defaults() error {
	if c.DatabaseURL == "" {
		return errors.New("capture: database url is required")
	}
	if !c.Discard && len(c.Kafka.Brokers) == 0 {
		return errors.New("capture: kafka brokers are required")
	}
	if c.Slot == "" {
		c.Slot = "orderflow_capture"
	}
	if c.Publication == "" {
		c.Publication = "orderflow_outbox"
	}
	if c.TopicPrefix == "" {
		c.TopicPrefix = "orderflow"
	}
	if c.AggregateTypes == nil {
		c.AggregateTypes = []string{"order"}
	}
	if c.Kafka.Partitions <= 0 {
		c.Kafka.Partitions = 6
	}
	if c.Kafka.ReplicationFactor <= 0 {
		c.Kafka.ReplicationFactor = 1
	}
	if c.Kafka.RequestTimeout <= 0 {
		c.Kafka.RequestTimeout = 15 * time.Second
	}
	if c.Kafka.MaxBatch <= 0 {
		c.Kafka.MaxBatch = 2000
	}
	if c.Kafka.QueueSize <= 0 {
		c.Kafka.QueueSize = 4096
	}
	if c.Kafka.Linger == 0 {
		// Kafka 4's producer default (linger.ms=5). Measured here: without it a backlog of
		// single-event transactions went out in ~10 records per request at ~10k events/s;
		// with 10 ms, ~85 per request at ~27k/s, on par with pg_recvlogical.
		c.Kafka.Linger = 5 * time.Millisecond
	}
	if c.StatusInterval <= 0 || c.StatusInterval > 10*time.Second {
		c.StatusInterval = 10 * time.Second
	}
	if c.ConfirmInterval <= 0 {
		c.ConfirmInterval = 200 * time.Millisecond
	}
	if c.StandbyRetry <= 0 {
		c.StandbyRetry = time.Second
	}
	if c.SlotStatsInterval <= 0 {
		c.SlotStatsInterval = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Capture is the daemon. Create it with New and run it with Run.
type Capture struct {
	cfg     Config
	kafka   *kafka.Client
	log     *slog.Logger
	metrics *metrics
	ready   atomic.Bool
}

// New checks cfg and returns a daemon ready to Run.
func New(cfg Config) (*Capture, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	c := &Capture{cfg: cfg, log: cfg.Logger, metrics: newMetrics()}
	if !cfg.Discard {
		c.kafka = cfg.Kafka.client()
	}
	return c, nil
}

// Registerer lets components that run beside capture (retention) add their metrics to
// capture's /metrics.
func (c *Capture) Registerer() prometheus.Registerer { return c.metrics.registry }

// Streaming reports whether this instance holds the slot and streams.
func (c *Capture) Streaming() bool { return c.ready.Load() }

// Run streams until ctx is cancelled, then lets in-flight events be acknowledged, confirms
// them and returns nil. It returns an error only for conditions a restart cannot fix, such as
// a lost slot.
func (c *Capture) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.streamLoop(ctx) })
	g.Go(func() error { c.pollSlot(ctx); return nil })
	if c.cfg.Heartbeat > 0 {
		g.Go(func() error { c.heartbeat(ctx); return nil })
	}
	return g.Wait()
}

// fatalError marks a session error that reconnecting cannot fix.
type fatalError struct{ err error }

func (e fatalError) Error() string { return e.err.Error() }
func (e fatalError) Unwrap() error { return e.err }

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
		if errors.As(err, &fatal) || errors.Is(err, ErrSlotLost) {
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
		out[i] = c.cfg.TopicPrefix + "." + t
	}
	return out
}

func (c *Capture) newSink() eventSink {
	if c.cfg.Discard {
		return &discardSink{onAck: c.ack}
	}
	return newKafkaSink(c.cfg.Kafka, c.kafka, c.log, c.metrics, c.ack)
}

// session is one replication connection's life: set up, take the slot, stream, stop.
func (c *Capture) session(ctx context.Context) error {
	db, err := pgx.Connect(ctx, c.cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("connecting to postgres: %w", err)
	}
	defer db.Close(context.Background())
	if err := ensurePublication(ctx, db, c.cfg.Publication); err != nil {
		return err
	}
	topics := c.topicsOf(c.cfg.AggregateTypes)
	sink := c.newSink()
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
	defer conn.Close(context.Background())
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
	if err := sink.open(ctx, topics); err != nil {
		return err
	}
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

// ensureSlot creates the slot when it does not exist, but only when no topic holds events
// yet: a missing slot next to a non-empty topic means the slot was dropped, and a new one
// would start at the current WAL position and silently skip every event in between.
func (c *Capture) ensureSlot(ctx context.Context, db *pgx.Conn, sink eventSink, topics []string) error {
	si, err := readSlot(ctx, db, c.cfg.Slot)
	if err != nil {
		return err
	}
	if si.exists {
		if si.walStatus == "lost" {
			return fmt.Errorf("%w: slot %s was invalidated (wal_status lost, likely max_slot_wal_keep_size): "+
				"events between its position and now are gone; see docs/CAPTURE.md before recreating it", ErrSlotLost, c.cfg.Slot)
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
		return fmt.Errorf("%w: slot %s does not exist but topics %v already hold events, so it existed and was dropped: "+
			"events committed since are not in the WAL any more; see docs/CAPTURE.md before recreating it", ErrSlotLost, c.cfg.Slot, topics)
	}
	if err := createSlot(ctx, db, c.cfg.Slot); err != nil {
		return err
	}
	c.log.Info("created replication slot", "slot", c.cfg.Slot)
	return nil
}

// ack is called by the sink, from its writer goroutines, once Kafka acknowledged ev.
func (c *Capture) ack(ev *outEvent) {
	c.metrics.produced.WithLabelValues(ev.eventType).Inc()
	c.metrics.commitToAck.Observe(time.Since(ev.txn.commitTime).Seconds())
	ev.txn.pending.Add(-1)
}

// txn is a transaction on its way to Kafka. pending counts its events not yet acknowledged,
// plus one until its Commit message arrived; at zero, its end LSN may be confirmed.
type txn struct {
	commitLSN  LSN
	endLSN     LSN
	commitTime time.Time
	pending    atomic.Int64
}

// outEvent is one event ready for the sink.
type outEvent struct {
	txn       *txn
	pos       Position
	topic     string
	id        string
	eventType string
	key       []byte
	value     []byte
}

type publishResult int

const (
	resQueued publishResult = iota + 1
	resSkipped
	resFull
)

// eventSink is what the stream needs from the place events go.
type eventSink interface {
	// open prepares the topics and reads their dedupe positions.
	open(ctx context.Context, topics []string) error
	hasRecords(ctx context.Context, topics []string) (bool, error)
	publish(ctx context.Context, ev *outEvent, wait time.Duration) (publishResult, error)
	failed() <-chan struct{}
	err() error
	finish(abort bool) error
}

// stream owns the replication connection: only its goroutine reads from or writes to conn.
type stream struct {
	c    *Capture
	conn *pgconn.PgConn
	sink eventSink
	rels map[uint32]*relation

	cur *txn // between Begin and Commit
	seq uint32
	// inflight holds, in commit order, the transactions not yet confirmed.
	inflight []*txn

	confirmed     LSN
	sentConfirmed LSN
	lastStatus    time.Time
	readDeadline  time.Time
	ev            Event
}

func (s *stream) run(ctx context.Context) error {
	done := ctx.Done()
	for {
		select {
		case <-done:
			return s.stop(false, nil)
		case <-s.sink.failed():
			return s.stop(true, s.sink.err())
		default:
		}
		now := time.Now()
		s.advance()
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
		if err != nil {
			if pgconn.Timeout(err) {
				continue
			}
			return s.stop(true, fmt.Errorf("receiving from replication connection: %w", err))
		}
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
	}
}

// idleAdvance moves the confirmed position to the server's WAL end if nothing is open or in
// flight (see the keepalive case of handleCopyData).
func (s *stream) idleAdvance(walEnd LSN) {
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
		s.idleAdvance(LSN(pkm.ServerWALEnd))
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
		t := &txn{commitLSN: LSN(m.FinalLSN), commitTime: m.CommitTime}
		t.pending.Store(1)
		s.cur, s.seq = t, 0
		s.inflight = append(s.inflight, t)
		s.c.metrics.inflightEvents.Set(float64(len(s.inflight)))
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
		s.cur.endLSN = LSN(m.TransactionEndLSN)
		s.c.metrics.commitToRecv.Observe(time.Since(m.CommitTime).Seconds())
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
	oe := &outEvent{
		txn:       s.cur,
		pos:       pos,
		topic:     s.c.cfg.TopicPrefix + "." + ev.AggregateType,
		id:        ev.ID,
		eventType: ev.EventType,
		key:       []byte(ev.AggregateID),
		value:     AppendCloudEvent(make([]byte, 0, 256+len(ev.Payload)), ev),
	}
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
		s.c.metrics.inflightEvents.Set(float64(len(s.inflight)))
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
func (s *stream) sendStatus(now time.Time) error {
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(s.confirmed),
		WALFlushPosition: pglogrepl.LSN(s.confirmed),
		WALApplyPosition: pglogrepl.LSN(s.confirmed),
		ClientTime:       now,
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

// discardSink acknowledges everything at once: decode-only mode.
type discardSink struct{ onAck func(*outEvent) }

func (d *discardSink) open(context.Context, []string) error { return nil }
func (d *discardSink) hasRecords(context.Context, []string) (bool, error) {
	return false, nil
}
func (d *discardSink) publish(_ context.Context, ev *outEvent, _ time.Duration) (publishResult, error) {
	d.onAck(ev)
	return resQueued, nil
}
func (d *discardSink) failed() <-chan struct{} { return nil }
func (d *discardSink) err() error              { return nil }
func (d *discardSink) finish(bool) error       { return nil }

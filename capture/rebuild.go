package capture

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	kafkago "github.com/segmentio/kafka-go"

	"orderflow"
)

// A slot rebuild replaces a replication slot that was dropped or invalidated (wal_status lost)
// after capture had published from it. The WAL between the old slot's position and now is
// gone, but the outbox rows are still in the table (retention keeps them for days), so:
//
//  1. A temporary slot is created on a replication connection, exporting its snapshot. The
//     snapshot sees exactly the transactions committed before the slot's consistent point;
//     the slot decodes exactly those committed after it. Nothing falls in between.
//  2. In that snapshot, every outbox row that is not already on the topic is published, in
//     insertion order (outbox.seq), before anything the slot streams: per key that is commit
//     order, and the partitions receive these rows after everything the old slot wrote.
//  3. Only once Kafka acknowledged all of them is the temporary slot copied to the permanent
//     slot (same consistent point). The session then streams from it as usual.
//
// A crash anywhere before step 3 leaves no permanent slot behind (the temporary one dies with
// its connection), so the next session rebuilds again and finds the rows already published;
// the rebuild is idempotent. The temporary slot's name is also the lock: a second capture that
// tries to rebuild at the same time gets "already exists" and waits as a standby.
//
// Which rows are already on the topic. For each partition p, the last record's outbox
// created_at, T_p, bounds what p can lack: an event missing from p committed after p's last
// record, so its transaction was still open at T_p; it was created after T_p - lookback unless
// a transaction wrote the outbox and stayed open longer than the lookback. So the rows routed to
// p with created_at >= T_p - lookback are compared by event id with p's records from that
// time on (found by timestamp), and only the ones p does not hold are published.
//
// Rows already deleted by retention cannot be published. If the oldest row left in the table
// is newer than a partition's last record, the rows created in between may be lost: the range
// is logged and exported (orderflow_capture_lost_events_*_timestamp_seconds) and capture goes
// on; reconcile can repair the orders concerned.

// rebuildLookbackSkew is added to the lookback when a partition's records are looked up by
// their Kafka timestamp, which capture's clock set, while created_at came from the writer's.
const rebuildLookbackSkew = time.Minute

// rebuildSlotName is the temporary slot of a rebuild of slot (slot names have at most 63 bytes).
func rebuildSlotName(slot string) string {
	const suffix = "_rebuild"
	if len(slot) > 63-len(suffix) {
		slot = slot[:63-len(suffix)]
	}
	return slot + suffix
}

// partitionWindow is what a rebuild knows about one partition: rows created before from are on
// it, and of the later ones it holds those in ids.
type partitionWindow struct {
	last time.Time // created_at of the partition's last record; zero for an empty partition
	from time.Time // zero: every row routed to the partition is compared
	ids  map[string]struct{}
}

// rebuildStats is what one rebuild did, for the log, the metrics and the tests.
type rebuildStats struct {
	start       pglogrepl.LSN
	compared    int
	onTopic     int
	republished int
	lostFrom    time.Time // zero when nothing can be lost
	lostTo      time.Time
}

// rebuildSlot runs the rebuild described above. db is the session's connection; why names what
// happened to the old slot, for the log.
func (c *Capture) rebuildSlot(ctx context.Context, db *pgx.Conn, topics []string, why string) error {
	c.log.Warn("replication slot lost; rebuilding it from the outbox table", "slot", c.cfg.Slot, "why", why)
	began := time.Now()
	conn, err := connectReplication(ctx, c.cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	tmp := rebuildSlotName(c.cfg.Slot)
	start, snapshot, err := createSnapshotSlot(ctx, conn, tmp)
	if err != nil {
		return err
	}
	// Another capture may have finished a rebuild between our look at the slot and taking the
	// temporary slot: then there is nothing to do.
	si, err := readSlot(ctx, db, c.cfg.Slot)
	if err != nil {
		return err
	}
	if si.exists && si.walStatus != "lost" {
		return nil
	}
	st, err := c.republish(ctx, db, topics, start, snapshot)
	if err != nil {
		return err
	}
	// The invalidated slot goes only now: until the rows are published it shows on
	// pg_replication_slots (and on /metrics) what happened.
	if si.exists {
		if err := dropSlot(ctx, db, c.cfg.Slot); err != nil {
			return err
		}
	}
	if err := copySlot(ctx, db, tmp, c.cfg.Slot); err != nil {
		return err
	}
	outcome := "complete"
	if !st.lostTo.IsZero() {
		outcome = "gap"
		c.metrics.lostFrom.Set(float64(st.lostFrom.UnixNano()) / 1e9)
		c.metrics.lostTo.Set(float64(st.lostTo.UnixNano()) / 1e9)
		c.log.Error("events may be lost: outbox rows created in this range were deleted before the slot was rebuilt; "+
			"run 'orderflow reconcile -fix' to repair the orders concerned",
			"slot", c.cfg.Slot, "created_from", st.lostFrom, "created_to", st.lostTo)
	}
	c.metrics.rebuilds.WithLabelValues(outcome).Inc()
	c.log.Warn("replication slot rebuilt", "slot", c.cfg.Slot, "lsn", st.start.String(), "outcome", outcome,
		"rows_compared", st.compared, "already_on_topic", st.onTopic, "republished", st.republished,
		"took", time.Since(began).Round(time.Millisecond))
	return nil
}

// republish publishes, from the snapshot, every outbox row the topics lack, waits until Kafka
// acknowledged all of them, and reports what it did.
func (c *Capture) republish(ctx context.Context, db *pgx.Conn, topics []string, start pglogrepl.LSN, snapshot string) (rebuildStats, error) {
	st := rebuildStats{start: start}
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return st, fmt.Errorf("beginning the rebuild's snapshot transaction: %w", err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+quoteLiteral(snapshot)); err != nil {
		return st, fmt.Errorf("importing the slot's snapshot: %w", err)
	}
	// Every aggregate type in the table has a topic to compare with, not only the configured ones.
	rows, err := tx.Query(ctx, `SELECT DISTINCT aggregate_type FROM outbox`)
	if err != nil {
		return st, fmt.Errorf("listing aggregate types in the outbox: %w", err)
	}
	types, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return st, fmt.Errorf("listing aggregate types in the outbox: %w", err)
	}
	topics = append([]string(nil), topics...)
	for _, t := range types {
		topics = append(topics, orderflow.PrefixedTopic(c.cfg.TopicPrefix, t))
	}

	// The sink is opened now, while this capture holds the temporary slot and no permanent slot
	// exists: no other capture writes to the topics.
	batch := &txn{commitTime: time.Now()}
	batch.pending.Store(1)
	sink := newKafkaSink(c.cfg.Kafka, c.kafka, c.log, c.metrics, func(ev *outEvent) {
		c.metrics.produced.WithLabelValues(ev.eventType).Inc()
		c.metrics.republished.Inc()
		ev.txn.pending.Add(-1)
	})
	if c.produceFailed {
		sink.settle = settleInterval
	}
	finished := false
	defer func() {
		if !finished {
			_ = sink.finish(true)
		}
		c.noteUnanswered(sink.lastUnanswered())
		if sink.hadFailures() {
			c.produceFailed = true
		}
	}()
	if err := c.awaitUnanswered(ctx); err != nil {
		return st, err
	}
	windows := map[string][]partitionWindow{}
	var from time.Time
	first := true
	for _, name := range topics {
		if _, ok := windows[name]; ok {
			continue
		}
		ts, err := sink.topic(ctx, name)
		if err != nil {
			return st, err
		}
		w, err := c.windows(ctx, sink, ts)
		if err != nil {
			return st, err
		}
		windows[name] = w
		c.produceFailed = false
		for _, pw := range w {
			if first || pw.from.Before(from) {
				from, first = pw.from, false
			}
		}
	}

	rows, err = tx.Query(ctx, `SELECT id::text, aggregate_type, aggregate_id, event_type, schema_version, payload::text, created_at,
		       coalesce(traceparent, '')
		FROM outbox WHERE created_at >= $1 ORDER BY seq NULLS FIRST, created_at, id`, from)
	if err != nil {
		return st, fmt.Errorf("reading outbox rows to re-publish: %w", err)
	}
	defer rows.Close()
	// Positions just below the new slot's first commit and above everything the old slot wrote
	// (those committed before start): the dedupe of later sessions stays exact, and a record's
	// position still grows along its partition. LSNs of records are 8-byte aligned, so no
	// commit starts at start-1.
	pos := Position{LSN: start - 1}
	for rows.Next() {
		var ev Event
		var payload, traceParent string
		if err := rows.Scan(&ev.ID, &ev.AggregateType, &ev.AggregateID, &ev.EventType, &ev.SchemaVersion, &payload, &ev.CreatedAt, &traceParent); err != nil {
			return st, fmt.Errorf("reading outbox row: %w", err)
		}
		ev.Payload = []byte(payload)
		ev.TraceParent = validTraceParent([]byte(traceParent))
		ev.CreatedAt = ev.CreatedAt.UTC()
		topic := orderflow.PrefixedTopic(c.cfg.TopicPrefix, ev.AggregateType)
		w := windows[topic]
		pw := w[partitionFor([]byte(ev.AggregateID), len(w))]
		if ev.CreatedAt.Before(pw.from) {
			continue
		}
		st.compared++
		if _, ok := pw.ids[ev.ID]; ok {
			st.onTopic++
			continue
		}
		oe := newOutEvent(batch, pos, topic, &ev)
		pos.Seq++
		batch.pending.Add(1)
		if err := publishWaiting(ctx, sink, oe); err != nil {
			return st, err
		}
		st.republished++
	}
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("reading outbox rows to re-publish: %w", err)
	}
	finished = true
	if err := sink.finish(false); err != nil {
		return st, fmt.Errorf("re-publishing outbox rows: %w", err)
	}
	if n := batch.pending.Load(); n != 1 {
		return st, fmt.Errorf("re-publishing outbox rows: %d not acknowledged", n-1)
	}

	var oldest *time.Time
	if err := tx.QueryRow(ctx, `SELECT min(created_at) FROM outbox`).Scan(&oldest); err != nil {
		return st, fmt.Errorf("reading the oldest outbox row: %w", err)
	}
	var now time.Time
	if err := tx.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
		return st, fmt.Errorf("reading the snapshot's time: %w", err)
	}
	st.lostFrom, st.lostTo = lostRange(windows, oldest, now)
	return st, tx.Commit(ctx)
}

// publishWaiting hands oe to the sink, waiting as long as its partition's queue is full.
func publishWaiting(ctx context.Context, sink *kafkaSink, oe *outEvent) error {
	for {
		res, err := sink.publish(ctx, oe, 200*time.Millisecond)
		if err != nil {
			return err
		}
		switch res {
		case resQueued:
			return nil
		case resSkipped:
			// Its position is below the partition's last one: impossible for a position
			// made just below the new slot's start, and a sign the argument above broke.
			return fatalError{fmt.Errorf("re-published event %s at %s was taken for one already on %s", oe.id, oe.pos, oe.topic)}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// windows reads, for each partition of ts, the event ids it holds from its last record's
// created_at minus the lookback on (see the comment at the top of this file).
func (c *Capture) windows(ctx context.Context, sink *kafkaSink, ts *topicState) ([]partitionWindow, error) {
	out := make([]partitionWindow, ts.partitions)
	var reqs []kafkago.OffsetRequest
	for p := range out {
		out[p].ids = map[string]struct{}{}
		if ts.hasLast[p] {
			out[p].last = ts.lastTime[p]
			out[p].from = ts.lastTime[p].Add(-c.cfg.RebuildLookback)
			reqs = append(reqs, kafkago.TimeOffsetOf(p, out[p].from.Add(-rebuildLookbackSkew)))
		}
	}
	if len(reqs) == 0 {
		return out, nil
	}
	resp, err := c.kafka.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{ts.name: reqs}})
	if err != nil {
		return nil, fmt.Errorf("finding offsets by time in %s: %w", ts.name, err)
	}
	starts := map[int]int64{}
	for _, po := range resp.Topics[ts.name] {
		if po.Error != nil {
			return nil, fmt.Errorf("finding offsets by time in %s[%d]: %w", ts.name, po.Partition, po.Error)
		}
		for off := range po.Offsets {
			starts[po.Partition] = off
		}
	}
	for p := range out {
		if !ts.hasLast[p] {
			continue
		}
		end := ts.ends[p].LastOffset
		begin, ok := starts[p]
		if !ok || begin < 0 {
			begin = end // no record at or after that time
		}
		begin = max(begin, ts.ends[p].FirstOffset)
		ids := out[p].ids
		err := sink.scan(ctx, ts.name, p, begin, end, func(r *kafkago.Record) error {
			for _, h := range r.Headers {
				if h.Key == orderflow.HeaderEventID {
					ids[string(h.Value)] = struct{}{}
					return nil
				}
			}
			return fmt.Errorf("record %s[%d]@%d has no %s header", ts.name, p, r.Offset, orderflow.HeaderEventID)
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// lostRange is the created_at range of outbox rows that may have been deleted before a rebuild
// could publish them: from the earliest last record of a partition that the oldest remaining
// row (or, in an empty table, the snapshot's time) is newer than, to that oldest row. Both are
// zero when no partition can lack a deleted row.
func lostRange(windows map[string][]partitionWindow, oldest *time.Time, now time.Time) (from, to time.Time) {
	to = now
	if oldest != nil {
		to = *oldest
	}
	for _, w := range windows {
		for _, pw := range w {
			if pw.last.IsZero() || !pw.last.Before(to) {
				continue
			}
			if from.IsZero() || pw.last.Before(from) {
				from = pw.last
			}
		}
	}
	if from.IsZero() {
		return time.Time{}, time.Time{}
	}
	return from.UTC(), to.UTC()
}

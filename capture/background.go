package capture

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// pollTimeout bounds one query of the background tasks.
const pollTimeout = 10 * time.Second

// pollSlot refreshes the lag gauges. It reads pg_replication_slots, not the stream, so the lag
// keeps growing on /metrics while the stream is stuck (Kafka down).
func (c *Capture) pollSlot(ctx context.Context) {
	var db *pgx.Conn
	defer func() {
		if db != nil {
			closeConn(db)
		}
	}()
	for {
		if db == nil {
			var err error
			if db, err = connect(ctx, c.cfg.DatabaseURL); err != nil {
				db = nil
				c.log.Debug("slot stats: connecting", "err", err)
			}
		}
		if db != nil {
			// A deadline, so a database that stops answering shows as a failed poll (and a
			// new connection) rather than gauges that silently stop moving.
			qctx, cancel := context.WithTimeout(ctx, pollTimeout)
			st, err := readSlotStats(qctx, db, c.cfg.Slot)
			cancel()
			if err != nil {
				c.log.Debug("slot stats", "err", err)
				closeConn(db)
				db = nil
			} else {
				c.setSlotStats(st)
			}
		}
		if !sleep(ctx, c.cfg.SlotStatsInterval) {
			return
		}
	}
}

// setSlotStats sets the gauges from one look at the slot.
func (c *Capture) setSlotStats(st slotStats) {
	m := c.metrics
	m.slotLag.Set(st.lagBytes)
	m.retainedWAL.Set(st.retainedBytes)
	m.walKeepLimit.Set(st.limitBytes)
	m.walWritten.Set(st.walLSN)
	switch {
	case st.hasSafe:
		m.safeWAL.Set(st.safeBytes)
	case st.limitBytes < 0:
		m.safeWAL.Set(-1) // unlimited: no budget to run out of
	case st.walStatus == "lost":
		m.safeWAL.Set(0)
	}
	for _, s := range walStatuses {
		v := 0.0
		if s == st.walStatus {
			v = 1
		}
		m.walStatus.WithLabelValues(s).Set(v)
	}
}

// heartbeat writes a non-transactional logical message while this instance streams. It gives
// the walsender of this database something to decode, so keepalives keep advancing the slot
// even when this database is otherwise idle.
func (c *Capture) heartbeat(ctx context.Context) {
	var db *pgx.Conn
	defer func() {
		if db != nil {
			closeConn(db)
		}
	}()
	for sleep(ctx, c.cfg.Heartbeat) {
		if !c.ready.Load() {
			continue
		}
		if db == nil {
			var err error
			if db, err = connect(ctx, c.cfg.DatabaseURL); err != nil {
				db = nil
				continue
			}
		}
		qctx, cancel := context.WithTimeout(ctx, pollTimeout)
		_, err := db.Exec(qctx, `SELECT pg_logical_emit_message(false, 'orderflow.capture.heartbeat', '')`)
		cancel()
		if err != nil {
			c.log.Debug("heartbeat", "err", err)
			closeConn(db)
			db = nil
		}
	}
}

// Retention deletes outbox rows older than Age. Capture reads events from the WAL, never from
// the table, and the slot keeps the WAL of every insert it has not confirmed, so a committed
// row can be deleted at any time without losing its event; the publication ignores deletes.
// Age is only how long the rows stay around for people and for reconciliation.
type Retention struct {
	DatabaseURL string
	Age         time.Duration
	Interval    time.Duration
	// BatchSize bounds one DELETE so it never holds many locks or a long transaction.
	BatchSize int
	Logger    *slog.Logger

	deleted prometheus.Counter
}

// NewRetention returns the task with its metric registered on reg.
func NewRetention(r Retention, reg prometheus.Registerer) (*Retention, error) {
	if r.Age <= 0 {
		return nil, fmt.Errorf("retention age must be positive, got %s", r.Age)
	}
	if r.Interval <= 0 {
		r.Interval = time.Minute
	}
	if r.BatchSize <= 0 {
		r.BatchSize = 5000
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	r.deleted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "orderflow_capture_outbox_rows_deleted_total",
		Help: "Outbox rows deleted by the retention task.",
	})
	if err := reg.Register(r.deleted); err != nil {
		return nil, fmt.Errorf("registering retention metric: %w", err)
	}
	return &r, nil
}

// Run deletes old rows every Interval until ctx is cancelled.
func (r *Retention) Run(ctx context.Context) error {
	for {
		n, err := r.Once(ctx)
		if err != nil && ctx.Err() == nil {
			r.Logger.Warn("outbox retention", "err", err)
		} else if n > 0 {
			r.Logger.Info("outbox retention deleted rows", "rows", n, "older_than", r.Age)
		}
		if !sleep(ctx, r.Interval) {
			return nil
		}
	}
}

// Once deletes every row older than Age, in batches, and returns how many it deleted.
func (r *Retention) Once(ctx context.Context) (int64, error) {
	db, err := connect(ctx, r.DatabaseURL)
	if err != nil {
		return 0, fmt.Errorf("connecting for outbox retention: %w", err)
	}
	defer closeConn(db)
	var total int64
	for {
		bctx, cancel := context.WithTimeout(ctx, 6*pollTimeout)
		tag, err := db.Exec(bctx, `DELETE FROM outbox WHERE id IN (
			SELECT id FROM outbox WHERE created_at < now() - make_interval(secs => $1) LIMIT $2)`,
			r.Age.Seconds(), r.BatchSize)
		cancel()
		if err != nil {
			return total, fmt.Errorf("deleting old outbox rows: %w", err)
		}
		total += tag.RowsAffected()
		r.deleted.Add(float64(tag.RowsAffected()))
		if tag.RowsAffected() < int64(r.BatchSize) {
			return total, nil
		}
	}
}

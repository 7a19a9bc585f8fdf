package deliver

import (
	"context"
	"log/slog"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"orderflow"
	"orderflow/internal/kafka"
)

// intakeStore is what the intake needs from the database.
type intakeStore interface {
	// EnqueueDeliveries writes, in one transaction, a pending delivery for every event and
	// every enabled endpoint subscribed to its type, skipping pairs that already exist.
	EnqueueDeliveries(ctx context.Context, evs []orderflow.WebhookEvent) (int64, error)
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
}

func (in *intake) run(ctx context.Context) error {
	for {
		batch, err := kafka.FetchBatch(ctx, in.reader, in.maxBatch, in.linger)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			// Kafka away or silent is an outage to ride out, not a reason to exit: the reader
			// reconnects by itself, and /readyz says so meanwhile (the probe).
			in.log.Warn("reading from kafka", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		evs := make([]orderflow.WebhookEvent, 0, len(batch))
		for _, m := range batch {
			ev, err := orderflow.DecodeCloudEvent(m.Value)
			if err != nil {
				// Nothing can be delivered from a record we cannot read; the projector's
				// dead-letter topic keeps such records for humans. Skipping keeps the
				// partition moving.
				in.m.skipped.WithLabelValues("undecodable").Inc()
				in.log.Warn("skipping undecodable record", "partition", m.Partition, "offset", m.Offset, "err", err)
				continue
			}
			evs = append(evs, orderflow.WebhookEvent{ID: ev.ID, Type: ev.Type, Subject: ev.Subject, Time: ev.Time, Payload: m.Value})
		}
		if err := in.enqueue(ctx, evs); err != nil {
			return nil // ctx ended while the database was unavailable; nothing was committed
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

// enqueue retries until the database takes the batch: the records stay uncommitted meanwhile,
// which is exactly the back-pressure we want when there is nowhere to write.
func (in *intake) enqueue(ctx context.Context, evs []orderflow.WebhookEvent) error {
	if len(evs) == 0 {
		return nil
	}
	wait := 100 * time.Millisecond
	for {
		n, err := in.store.EnqueueDeliveries(ctx, evs)
		if err == nil {
			in.m.enqueued.Add(float64(n))
			if n > 0 {
				select {
				case in.wake <- struct{}{}:
				default:
				}
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		in.log.Warn("writing deliveries, will retry", "events", len(evs), "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

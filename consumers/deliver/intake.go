package deliver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"

	"orderflow"
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
	reader   *kafka.Reader
	store    intakeStore
	maxBatch int
	linger   time.Duration
	log      *slog.Logger
	m        *metrics
	wake     chan<- struct{}
}

func (in *intake) run(ctx context.Context) error {
	for {
		batch, err := in.fetch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading from kafka: %w", err)
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

// fetch blocks for one record, then takes whatever else arrives within linger, up to
// maxBatch, so a burst costs one transaction and one offset commit.
func (in *intake) fetch(ctx context.Context) ([]kafka.Message, error) {
	m, err := in.reader.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	batch := []kafka.Message{m}
	for len(batch) < in.maxBatch {
		lctx, cancel := context.WithTimeout(ctx, in.linger)
		m, err := in.reader.FetchMessage(lctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
				return batch, nil // hand over what we have; the error will show again
			}
			break
		}
		batch = append(batch, m)
	}
	return batch, nil
}

// lagReader measures the group's lag as the broker sees it: end offsets minus committed
// offsets, summed over partitions. Unlike the reader's own statistics this counts partitions
// the process is not assigned to, so it is right with several deliverers too.
type lagReader struct {
	client *kafka.Client
	group  string
	topic  string
}

func (l *lagReader) lag(ctx context.Context) (int64, error) {
	md, err := l.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{l.topic}})
	if err != nil {
		return 0, fmt.Errorf("reading topic metadata: %w", err)
	}
	var parts []int
	for _, t := range md.Topics {
		if t.Name == l.topic {
			for _, p := range t.Partitions {
				parts = append(parts, p.ID)
			}
		}
	}
	if len(parts) == 0 {
		return 0, nil
	}
	reqs := make([]kafka.OffsetRequest, 0, 2*len(parts))
	for _, p := range parts {
		reqs = append(reqs, kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	lo, err := l.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{l.topic: reqs}})
	if err != nil {
		return 0, fmt.Errorf("listing offsets: %w", err)
	}
	of, err := l.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: l.group, Topics: map[string][]int{l.topic: parts}})
	if err != nil {
		return 0, fmt.Errorf("fetching group offsets: %w", err)
	}
	committed := map[int]int64{}
	for _, p := range of.Topics[l.topic] {
		committed[p.Partition] = p.CommittedOffset
	}
	var lag int64
	for _, p := range lo.Topics[l.topic] {
		c, ok := committed[p.Partition]
		if !ok || c < p.FirstOffset {
			c = p.FirstOffset // nothing committed yet: everything retained is lag
		}
		if d := p.LastOffset - c; d > 0 {
			lag += d
		}
	}
	return lag, nil
}

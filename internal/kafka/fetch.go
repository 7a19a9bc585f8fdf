package kafka

import (
	"context"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// Fetcher is what FetchBatch needs from a reader; *kafkago.Reader is one.
type Fetcher interface {
	FetchMessage(ctx context.Context) (kafkago.Message, error)
}

// FetchBatch blocks for one record, then takes whatever else arrives within linger of it, up
// to maxBatch records, so a burst costs one transaction and one offset commit while a single
// record waits at most linger. The linger is one deadline from the first record, not restarted
// by each one: under a steady trickle a restarting linger would hold the first record until
// the batch is full.
//
// A linger of zero or a maxBatch of one returns the first record alone.
//
// Only the wait for the first record returns an error. A failure after it ends the batch
// early and the batch is returned: the records are in hand, and a lasting error shows again
// on the next call.
func FetchBatch(ctx context.Context, r Fetcher, maxBatch int, linger time.Duration) ([]kafkago.Message, error) {
	m, err := r.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	batch := []kafkago.Message{m}
	if maxBatch <= 1 || linger <= 0 {
		return batch, nil
	}
	lctx, cancel := context.WithTimeout(ctx, linger)
	defer cancel()
	for len(batch) < maxBatch {
		m, err := r.FetchMessage(lctx)
		if err != nil {
			break
		}
		batch = append(batch, m)
	}
	return batch, nil
}

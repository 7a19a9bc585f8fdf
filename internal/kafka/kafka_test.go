package kafka

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// fakeFetcher hands out a record every gap until it has given n, then fails with err (or
// blocks until ctx ends when err is nil).
type fakeFetcher struct {
	gap   time.Duration
	n     int
	err   error
	given int
}

func (f *fakeFetcher) FetchMessage(ctx context.Context) (kafkago.Message, error) {
	if f.given >= f.n {
		if f.err != nil {
			return kafkago.Message{}, f.err
		}
		<-ctx.Done()
		return kafkago.Message{}, ctx.Err()
	}
	select {
	case <-ctx.Done():
		return kafkago.Message{}, ctx.Err()
	case <-time.After(f.gap):
	}
	f.given++
	return kafkago.Message{Offset: int64(f.given)}, nil
}

func TestFetchBatch(t *testing.T) {
	t.Parallel()
	broken := errors.New("broken")
	for _, tc := range []struct {
		name     string
		f        *fakeFetcher
		maxBatch int
		linger   time.Duration
		want     int // records in the batch
		wantErr  error
	}{
		{"takes what is there up to the max", &fakeFetcher{n: 10}, 4, time.Minute, 4, nil},
		{"returns at the linger with what arrived", &fakeFetcher{n: 3}, 100, 50 * time.Millisecond, 3, nil},
		{"no linger: the first record alone", &fakeFetcher{n: 3}, 100, 0, 1, nil},
		{"max one: the first record alone", &fakeFetcher{n: 3}, 1, time.Minute, 1, nil},
		{"an error before the first record is returned", &fakeFetcher{err: broken}, 10, time.Minute, 0, broken},
		{"an error after the first record ends the batch", &fakeFetcher{n: 2, err: broken}, 10, time.Minute, 2, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			batch, err := FetchBatch(context.Background(), tc.f, tc.maxBatch, tc.linger)
			if len(batch) != tc.want || !errors.Is(err, tc.wantErr) {
				t.Errorf("got %d records, err %v; want %d, err %v", len(batch), err, tc.want, tc.wantErr)
			}
		})
	}
}

// A steady trickle faster than the linger must not keep the batch open until it is full: the
// linger counts from the first record.
func TestFetchBatchLingerDoesNotRestart(t *testing.T) {
	t.Parallel()
	f := &fakeFetcher{gap: 2 * time.Millisecond, n: 1 << 30}
	const maxBatch = 100_000 // 200 s of trickle: only a restarting linger gets there
	batch, err := FetchBatch(context.Background(), f, maxBatch, 50*time.Millisecond)
	if err != nil || len(batch) == 0 || len(batch) >= maxBatch {
		t.Fatalf("got %d records, err %v; want a batch cut by the linger", len(batch), err)
	}
}

func TestPartitionLag(t *testing.T) {
	t.Parallel()
	ends := []kafkago.PartitionOffsets{
		{Partition: 0, FirstOffset: 0, LastOffset: 10},
		{Partition: 1, FirstOffset: 5, LastOffset: 9},
		{Partition: 2, FirstOffset: 20, LastOffset: 30},
		{Partition: 3, FirstOffset: 0, LastOffset: 4},
		{Partition: 4, Error: kafkago.LeaderNotAvailable},
	}
	committed := map[int]int64{
		0: 7,  // behind by 3
		2: 12, // below the log start: retention deleted what it pointed at
		3: 6,  // ahead of the end as seen a moment earlier
		4: 1,
	}
	got := partitionLag(ends, committed)
	want := map[int]int64{0: 3, 1: 4, 2: 10, 3: 0}
	if !maps.Equal(got, want) {
		t.Errorf("partitionLag = %v, want %v", got, want)
	}
}

func TestValidTopicName(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"orderflow.order": true, "a-b_c.D9": true, "": false, ".": false, "..": false,
		"orderflow.order item": false, "orderflow.ordér": false, strings.Repeat("x", 250): false,
	} {
		if got := ValidTopicName(name); got != want {
			t.Errorf("ValidTopicName(%q) = %v, want %v", name, got, want)
		}
	}
}

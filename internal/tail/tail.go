// Package tail decodes a topic for people at a terminal (orderflow tail): every record's
// position, headers and value, in either record mode, filtered by event type and subject,
// once to the end or following new records. It reads partitions directly, without a consumer
// group, so it never moves anyone's offsets.
package tail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"orderflow"
	"orderflow/internal/kafka"
)

// Config says what to read and how to print it.
type Config struct {
	Brokers []string
	Topic   string
	// Follow keeps reading new records until ctx ends; otherwise Run stops at the end the topic
	// had when it started.
	Follow bool
	// FromEnd starts at the end of each partition instead of its first retained record.
	FromEnd bool
	// Types keeps only events of these types; empty keeps all.
	Types []string
	// Subject keeps only events about this aggregate (the order id). Since the key is the
	// subject and capture partitions keys with murmur2, only that key's partition is read.
	Subject string
	// Limit stops after this many printed records; 0 is no limit.
	Limit int
	// JSON prints one JSON object per record instead of human lines.
	JSON bool
}

// errLimit ends the reading once Limit records were printed.
var errLimit = errors.New("limit reached")

// Run prints the records cfg asks for to w.
func Run(ctx context.Context, cfg Config, w io.Writer) error {
	if cfg.Topic == "" || len(cfg.Brokers) == 0 {
		return errors.New("tail: a topic and brokers are required")
	}
	client := &kafkago.Client{Addr: kafkago.TCP(cfg.Brokers...), Timeout: 10 * time.Second}
	n, err := kafka.PartitionCount(ctx, client, cfg.Topic)
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("tail: topic %s does not exist", cfg.Topic)
	}
	ends, err := kafka.EndOffsets(ctx, client, cfg.Topic, n)
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	partitions := make([]int, n)
	for p := range partitions {
		partitions[p] = p
	}
	if cfg.Subject != "" {
		partitions = []int{PartitionOf([]byte(cfg.Subject), n)}
	}
	pr := &printer{cfg: cfg, w: w}
	read := func(ctx context.Context, p int) error {
		start := ends[p].FirstOffset
		if cfg.FromEnd {
			start = ends[p].LastOffset
		}
		return readPartition(ctx, cfg, p, start, ends[p].LastOffset, pr.print)
	}
	if !cfg.Follow {
		// Partition after partition, so the output does not depend on timing; within a
		// partition, records are in commit order.
		for _, p := range partitions {
			if err := read(ctx, p); err != nil {
				return ignoreLimit(err)
			}
		}
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range partitions {
		g.Go(func() error { return read(gctx, p) })
	}
	err = g.Wait()
	if ctx.Err() != nil {
		return nil // the user stopped following
	}
	return ignoreLimit(err)
}

func ignoreLimit(err error) error {
	if errors.Is(err, errLimit) {
		return nil
	}
	return err
}

// PartitionOf is the partition capture writes key to: murmur2, as the Java client does.
func PartitionOf(key []byte, n int) int {
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	return (&kafkago.Murmur2Balancer{Consistent: true}).Balance(kafkago.Message{Key: key}, parts...)
}

// readPartition hands every record of partition p from start to emit; without Follow it stops
// before end (the partition's end when Run started).
func readPartition(ctx context.Context, cfg Config, p int, start, end int64, emit func(kafkago.Message) error) error {
	if !cfg.Follow && start >= end {
		return nil
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers: cfg.Brokers, Topic: cfg.Topic, Partition: p,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 250 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(start); err != nil {
		return fmt.Errorf("tail: seeking %s[%d] to %d: %w", cfg.Topic, p, start, err)
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("tail: reading %s[%d]: %w", cfg.Topic, p, err)
		}
		if err := emit(m); err != nil {
			return err
		}
		if !cfg.Follow && m.Offset+1 >= end {
			return nil
		}
	}
}

// printer filters and prints records; partitions read in parallel share it.
type printer struct {
	cfg     Config
	w       io.Writer
	mu      sync.Mutex
	printed int
}

func (pr *printer) print(m kafkago.Message) error {
	rec := decode(m)
	if !pr.keep(rec) {
		return nil
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.cfg.Limit > 0 && pr.printed >= pr.cfg.Limit {
		return errLimit
	}
	var err error
	if pr.cfg.JSON {
		err = writeJSON(pr.w, rec)
	} else {
		err = writeHuman(pr.w, rec)
	}
	if err != nil {
		return fmt.Errorf("tail: writing: %w", err)
	}
	pr.printed++
	if pr.cfg.Limit > 0 && pr.printed >= pr.cfg.Limit {
		return errLimit
	}
	return nil
}

// keep applies the filters. A record that cannot be decoded is shown only without filters:
// its type and subject are unknown, and seeing it is the point of looking at a topic.
func (pr *printer) keep(rec record) bool {
	if len(pr.cfg.Types) == 0 && pr.cfg.Subject == "" {
		return true
	}
	if rec.event == nil {
		return false
	}
	if len(pr.cfg.Types) > 0 && !slices.Contains(pr.cfg.Types, rec.event.Type) {
		return false
	}
	return pr.cfg.Subject == "" || rec.event.Subject == pr.cfg.Subject
}

// record is one Kafka record and what DecodeRecord made of it.
type record struct {
	msg     kafkago.Message
	headers []orderflow.Header
	mode    orderflow.RecordMode
	event   *orderflow.CloudEvent
	err     error
}

func decode(m kafkago.Message) record {
	hs := make([]orderflow.Header, len(m.Headers))
	for i, h := range m.Headers {
		hs[i] = orderflow.Header(h)
	}
	mode, _ := orderflow.RecordModeOf(hs)
	ev, err := orderflow.DecodeRecord(hs, m.Value)
	return record{msg: m, headers: hs, mode: mode, event: ev, err: err}
}

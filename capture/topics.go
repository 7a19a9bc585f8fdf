package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	kafkago "github.com/segmentio/kafka-go"

	"orderflow"
	"orderflow/internal/kafka"
)

// topicState is one topic as this session sees it: the last position of every partition at
// the start (the dedupe) and the partitions' writers.
type topicState struct {
	name    string
	last    []Position
	hasLast []bool
	writers []*partitionWriter
}

// open makes sure the topics exist and reads their last positions.
func (s *kafkaSink) open(ctx context.Context, topics []string) error {
	for _, t := range topics {
		if _, err := s.topic(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// hasRecords reports whether any of the topics holds a record: that is capture's evidence
// that a slot existed and confirmed events.
func (s *kafkaSink) hasRecords(ctx context.Context, topics []string) (bool, error) {
	for _, t := range topics {
		n, err := kafka.PartitionCount(ctx, s.client, t)
		if err != nil {
			return false, err
		}
		if n == 0 {
			continue
		}
		ends, err := kafka.EndOffsets(ctx, s.client, t, n)
		if err != nil {
			return false, err
		}
		for _, o := range ends {
			if o.LastOffset > 0 { // even if retention deleted them since
				return true, nil
			}
		}
	}
	return false, nil
}

// topic returns the state of a topic, creating the topic and reading its last positions the
// first time this session sees it. Topics are created by capture because broker-side
// auto-creation is off (and would pick the broker's partition count, not ours).
func (s *kafkaSink) topic(ctx context.Context, name string) (*topicState, error) {
	if ts := s.topics[name]; ts != nil {
		return ts, nil
	}
	if !kafka.ValidTopicName(name) {
		// Retrying cannot help and skipping would lose the event: stop and say why.
		return nil, fatalError{fmt.Errorf("topic name %q is not a valid Kafka topic name (from an outbox aggregate_type)", name)}
	}
	n, err := kafka.PartitionCount(ctx, s.client, name)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		if err := s.createTopic(ctx, name); err != nil {
			return nil, err
		}
	}
	// A new topic's partitions get leaders a moment after creation; until then the broker
	// answers with retriable errors.
	var ends []kafkago.PartitionOffsets
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n, err = kafka.PartitionCount(ctx, s.client, name); err == nil && n > 0 {
			if ends, err = kafka.EndOffsets(ctx, s.client, name, n); err == nil {
				break
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("waiting for topic %s: %w", name, errors.Join(err, ctx.Err()))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n != s.cfg.Partitions {
		// The dedupe assumes each key maps to the partition it mapped to when the last
		// session wrote. A changed partition count moves keys between partitions, and an
		// event compared against the wrong partition's last record could be skipped without
		// ever having been written. The operator must drain capture first (docs/CAPTURE.md).
		return nil, fatalError{fmt.Errorf("topic %s has %d partitions but capture is configured for %d: "+
			"changing the partition count needs a drained capture (see docs/CAPTURE.md), then set -partitions", name, n, s.cfg.Partitions)}
	}
	ts := &topicState{name: name, last: make([]Position, n), hasLast: make([]bool, n)}
	for p, o := range ends {
		if o.LastOffset <= o.FirstOffset {
			continue
		}
		pos, err := s.lastPosition(ctx, name, p, o.LastOffset-1)
		if err != nil {
			return nil, err
		}
		ts.last[p], ts.hasLast[p] = pos, true
	}
	maxBytes := s.messageLimit(ctx, name)
	for p := 0; p < n; p++ {
		w := &partitionWriter{topic: name, partition: p, queue: make(chan *outEvent, s.cfg.QueueSize), maxBytes: maxBytes}
		ts.writers = append(ts.writers, w)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.write(w)
		}()
	}
	s.topics[name] = ts
	s.log.Info("topic ready", "topic", name, "partitions", n, "last_positions", fmt.Sprint(ts.last))
	return ts, nil
}

func (s *kafkaSink) createTopic(ctx context.Context, topic string) error {
	created, err := kafka.CreateTopic(ctx, s.client, kafka.TopicSpec{
		Name: topic, Partitions: s.cfg.Partitions, ReplicationFactor: s.cfg.ReplicationFactor,
		Configs: s.topicConfigs(),
	})
	if err != nil {
		return err
	}
	if created {
		s.log.Info("created topic", "topic", topic, "partitions", s.cfg.Partitions)
	}
	return nil
}

// lastPosition reads the record at offset and returns its (pg_lsn, pg_seq) headers.
func (s *kafkaSink) lastPosition(ctx context.Context, topic string, partition int, offset int64) (Position, error) {
	resp, err := s.client.Fetch(ctx, &kafkago.FetchRequest{
		Topic: topic, Partition: partition, Offset: offset,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 2 * time.Second,
	})
	if err != nil {
		return Position{}, fmt.Errorf("fetching last record of %s[%d]: %w", topic, partition, err)
	}
	if resp.Error != nil {
		return Position{}, fmt.Errorf("fetching last record of %s[%d]: %w", topic, partition, resp.Error)
	}
	for {
		r, err := resp.Records.ReadRecord()
		if errors.Is(err, io.EOF) {
			return Position{}, fmt.Errorf("fetching last record of %s[%d]: offset %d not returned", topic, partition, offset)
		}
		if err != nil {
			return Position{}, fmt.Errorf("reading last record of %s[%d]: %w", topic, partition, err)
		}
		if r.Offset != offset {
			continue
		}
		pos, err := recordPosition(r.Headers)
		if err != nil {
			return Position{}, fmt.Errorf("record %s[%d]@%d: %w", topic, partition, offset, err)
		}
		return pos, nil
	}
}

func recordPosition(headers []kafkago.Header) (Position, error) {
	var pos Position
	var haveLSN, haveSeq bool
	for _, h := range headers {
		switch h.Key {
		case orderflow.HeaderLSN:
			l, err := pglogrepl.ParseLSN(string(h.Value))
			if err != nil {
				return pos, fmt.Errorf("parsing %s %q: %w", orderflow.HeaderLSN, h.Value, err)
			}
			pos.LSN, haveLSN = l, true
		case orderflow.HeaderSeq:
			n, err := strconv.ParseUint(string(h.Value), 10, 32)
			if err != nil {
				return pos, fmt.Errorf("parsing %s %q: %w", orderflow.HeaderSeq, h.Value, err)
			}
			pos.Seq, haveSeq = uint32(n), true
		}
	}
	if !haveLSN || !haveSeq {
		return pos, errors.New("record has no pg_lsn/pg_seq headers: something other than capture writes to this topic")
	}
	return pos, nil
}

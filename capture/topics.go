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
	// lastTime is the CloudEvent time (the outbox row's created_at) of each partition's last
	// record: where a slot rebuild starts looking for rows the partition may lack.
	lastTime []time.Time
	// ends are the partitions' offsets as read at the start.
	ends       []kafkago.PartitionOffsets
	partitions int
	writer     *topicWriter
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
	} else {
		s.checkReplication(ctx, name)
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
	if s.settle > 0 {
		if ends, err = s.settleEnds(ctx, name, n, ends); err != nil {
			return nil, err
		}
	}
	if n != s.cfg.Partitions {
		// The dedupe assumes each key maps to the partition it mapped to when the last
		// session wrote. A changed partition count moves keys between partitions, and an
		// event compared against the wrong partition's last record could be skipped without
		// ever having been written. The operator must drain capture first (docs/CAPTURE.md).
		return nil, fatalError{fmt.Errorf("topic %s has %d partitions but capture is configured for %d: "+
			"changing the partition count needs a drained capture (see docs/CAPTURE.md), then set -partitions", name, n, s.cfg.Partitions)}
	}
	ts := &topicState{name: name, last: make([]Position, n), hasLast: make([]bool, n), lastTime: make([]time.Time, n), ends: ends, partitions: n}
	for p, o := range ends {
		if o.LastOffset <= o.FirstOffset {
			continue
		}
		pos, at, err := s.lastPosition(ctx, name, p, o.LastOffset-1)
		if err != nil {
			return nil, err
		}
		ts.last[p], ts.lastTime[p], ts.hasLast[p] = pos, at, true
	}
	// The queue holds QueueSize events for the whole topic. QueueSize per partition, as the
	// partitions' own queues had held, kept 24,576 order-sized events waiting behind the one
	// writer while a 2 M backlog drained (peak RSS 156 MB against the 100 MB goal); the writer
	// takes at most a request's worth (a few thousand events) at a time, so a few requests'
	// worth keeps it busy.
	ts.writer = &topicWriter{topic: name, partitions: n, queue: make(chan *outEvent, s.cfg.QueueSize), maxBytes: s.messageLimit(ctx, name)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.write(ts.writer)
	}()
	s.topics[name] = ts
	s.log.Info("topic ready", "topic", name, "partitions", n, "last_positions", fmt.Sprint(ts.last))
	return ts, nil
}

// settleEnds waits until the end offsets of topic's n partitions stay the same for the settle
// interval, and returns them. After a produce request failed, records it carried can still
// become visible: a broker that took over leadership commits what the old leader had
// replicated to it, a moment after it starts answering. Only this capture writes to the
// topic, so ends that stopped moving mean nothing more is coming, and the last records read
// after that are final: the dedupe then knows every record the failed session left behind.
func (s *kafkaSink) settleEnds(ctx context.Context, topic string, n int, ends []kafkago.PartitionOffsets) ([]kafkago.PartitionOffsets, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		t := time.NewTimer(s.settle)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		again, err := kafka.EndOffsets(ctx, s.client, topic, n)
		if err != nil {
			return nil, err
		}
		moved := false
		for p := range again {
			if again[p].LastOffset != ends[p].LastOffset {
				moved = true
			}
		}
		if !moved {
			return again, nil
		}
		s.log.Info("partition ends still moving after a failed produce; waiting", "topic", topic)
		ends = again
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the ends of %s kept moving for a minute although capture is its only writer", topic)
		}
	}
}

func (s *kafkaSink) createTopic(ctx context.Context, topic string) error {
	created, err := kafka.CreateTopic(ctx, s.client, s.cfg.topicSpec(topic))
	if err != nil {
		return err
	}
	if created {
		s.log.Info("created topic", "topic", topic, "partitions", s.cfg.Partitions,
			"replication_factor", s.cfg.ReplicationFactor, "min_insync_replicas", s.cfg.MinInsyncReplicas)
	}
	return nil
}

// topicSpec is how capture creates topic.
func (k *KafkaConfig) topicSpec(topic string) kafka.TopicSpec {
	spec := kafka.TopicSpec{Name: topic, Partitions: k.Partitions, ReplicationFactor: k.ReplicationFactor, Configs: map[string]string{}}
	if k.MinInsyncReplicas > 0 {
		spec.Configs["min.insync.replicas"] = strconv.Itoa(k.MinInsyncReplicas)
	}
	if k.Retention > 0 {
		spec.Configs["retention.ms"] = strconv.FormatInt(k.Retention.Milliseconds(), 10)
	}
	if k.TopicMaxMessageBytes > 0 {
		spec.Configs["max.message.bytes"] = strconv.Itoa(k.TopicMaxMessageBytes)
	}
	return spec
}

// checkReplication warns when an existing topic has fewer replicas than capture would give it:
// a topic made on a one-node stack keeps one replica, and acks=all then means one disk.
func (s *kafkaSink) checkReplication(ctx context.Context, topic string) {
	md, err := s.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 {
		return
	}
	for _, p := range md.Topics[0].Partitions {
		if len(p.Replicas) < s.cfg.ReplicationFactor {
			s.log.Warn("topic has fewer replicas than configured; capture does not change existing topics",
				"topic", topic, "partition", p.ID, "replicas", len(p.Replicas), "replication_factor", s.cfg.ReplicationFactor)
			return
		}
	}
}

// lastPosition reads the record at offset and returns its (pg_lsn, pg_seq) headers and its
// CloudEvent time.
func (s *kafkaSink) lastPosition(ctx context.Context, topic string, partition int, offset int64) (Position, time.Time, error) {
	var (
		pos Position
		at  time.Time
	)
	found := false
	err := s.scan(ctx, topic, partition, offset, offset+1, func(r *kafkago.Record) error {
		var err error
		if pos, err = recordPosition(r.Headers); err != nil {
			return fmt.Errorf("record %s[%d]@%d: %w", topic, partition, offset, err)
		}
		b, err := io.ReadAll(r.Value)
		if err != nil {
			return fmt.Errorf("reading record %s[%d]@%d: %w", topic, partition, offset, err)
		}
		// Either mode: the partition may end with a record written before the switch to
		// binary mode.
		ce, err := orderflow.DecodeRecord(kafka.Headers(r.Headers), b)
		if err != nil {
			return fmt.Errorf("record %s[%d]@%d: %w", topic, partition, offset, err)
		}
		at, found = ce.Time, true
		return nil
	})
	if err != nil {
		return Position{}, time.Time{}, err
	}
	if !found {
		return Position{}, time.Time{}, fmt.Errorf("fetching last record of %s[%d]: offset %d not returned", topic, partition, offset)
	}
	return pos, at, nil
}

// scan calls fn with every record of topic[partition] from offset from up to (not including)
// offset to, in offset order.
func (s *kafkaSink) scan(ctx context.Context, topic string, partition int, from, to int64, fn func(*kafkago.Record) error) error {
	for off := from; off < to; {
		resp, err := s.client.Fetch(ctx, &kafkago.FetchRequest{
			Topic: topic, Partition: partition, Offset: off,
			MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 2 * time.Second,
		})
		if err != nil {
			return fmt.Errorf("fetching %s[%d]@%d: %w", topic, partition, off, err)
		}
		if resp.Error != nil {
			return fmt.Errorf("fetching %s[%d]@%d: %w", topic, partition, off, resp.Error)
		}
		next := off
		for {
			r, err := resp.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("reading %s[%d]@%d: %w", topic, partition, off, err)
			}
			if r.Offset < off {
				continue // a fetch returns whole batches, which may start before off
			}
			if r.Offset >= to {
				return nil
			}
			if err := fn(r); err != nil {
				return err
			}
			next = r.Offset + 1
		}
		if next == off {
			// Nothing at or after off below to: only control records or compacted gaps
			// remain, which a capture topic never has. Stop rather than spin.
			return fmt.Errorf("fetching %s[%d]@%d: no record returned before offset %d", topic, partition, off, to)
		}
		off = next
	}
	return nil
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

// Package kafka is the Kafka plumbing every orderflow service shares: topic creation,
// partition counts and end offsets, consumer-group lag as one metric shape, and
// fetch-with-linger. It wraps segmentio/kafka-go; what a service does with records stays in
// the service.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	kafkago "github.com/segmentio/kafka-go"
)

// TopicSpec is a topic to create.
type TopicSpec struct {
	Name       string
	Partitions int
	// ReplicationFactor of 0 or less takes the broker's default.
	ReplicationFactor int
	// Configs are topic-level settings such as retention.ms; nil keeps the broker's.
	Configs map[string]string
}

// CreateTopic creates the topic unless it exists, and reports whether this call created it.
// Services create their topics themselves because broker-side auto-creation is off (and would
// pick the broker's partition count, not theirs). An existing topic is left as it is, even if
// its partitions or configs differ from spec.
func CreateTopic(ctx context.Context, c *kafkago.Client, spec TopicSpec) (bool, error) {
	rf := spec.ReplicationFactor
	if rf <= 0 {
		rf = -1
	}
	tc := kafkago.TopicConfig{Topic: spec.Name, NumPartitions: spec.Partitions, ReplicationFactor: rf}
	for _, k := range slices.Sorted(maps.Keys(spec.Configs)) {
		tc.ConfigEntries = append(tc.ConfigEntries, kafkago.ConfigEntry{ConfigName: k, ConfigValue: spec.Configs[k]})
	}
	resp, err := c.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{tc}})
	if err != nil {
		return false, fmt.Errorf("creating topic %s: %w", spec.Name, err)
	}
	if err := resp.Errors[spec.Name]; err != nil {
		if errors.Is(err, kafkago.TopicAlreadyExists) {
			return false, nil
		}
		return false, fmt.Errorf("creating topic %s: %w", spec.Name, err)
	}
	return true, nil
}

// PartitionCount returns the topic's partition count, 0 when the topic does not exist.
func PartitionCount(ctx context.Context, c *kafkago.Client, topic string) (int, error) {
	resp, err := c.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("reading metadata of topic %s: %w", topic, err)
	}
	for _, t := range resp.Topics {
		if t.Name != topic {
			continue
		}
		if errors.Is(t.Error, kafkago.UnknownTopicOrPartition) {
			return 0, nil
		}
		if t.Error != nil {
			return 0, fmt.Errorf("reading metadata of topic %s: %w", topic, t.Error)
		}
		return len(t.Partitions), nil
	}
	return 0, nil
}

// EndOffsets returns the first and last offset of each of the topic's n partitions, indexed
// by partition. It fails unless every partition answered: a caller that decides from the
// offsets (is the topic empty? what did the last record say?) must not decide from part of
// them.
func EndOffsets(ctx context.Context, c *kafkago.Client, topic string, n int) ([]kafkago.PartitionOffsets, error) {
	got, err := listOffsets(ctx, c, topic, n)
	if err != nil {
		return nil, err
	}
	out := make([]kafkago.PartitionOffsets, n)
	seen := 0
	for _, po := range got {
		if po.Error != nil {
			return nil, fmt.Errorf("listing offsets of %s[%d]: %w", topic, po.Partition, po.Error)
		}
		if po.Partition >= 0 && po.Partition < n {
			out[po.Partition] = po
			seen++
		}
	}
	if seen != n {
		return nil, fmt.Errorf("listing offsets of %s: got %d of %d partitions", topic, seen, n)
	}
	return out, nil
}

// listOffsets asks for the first and last offsets of partitions 0..n-1 and returns the
// broker's answer as is, per-partition errors included.
func listOffsets(ctx context.Context, c *kafkago.Client, topic string, n int) ([]kafkago.PartitionOffsets, error) {
	reqs := make([]kafkago.OffsetRequest, 0, 2*n)
	for p := range n {
		reqs = append(reqs, kafkago.FirstOffsetOf(p), kafkago.LastOffsetOf(p))
	}
	resp, err := c.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	return resp.Topics[topic], nil
}

// ValidTopicName follows Kafka's rule: 1-249 characters of [a-zA-Z0-9._-], not "." or "..".
func ValidTopicName(name string) bool {
	if name == "" || len(name) > 249 || name == "." || name == ".." {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

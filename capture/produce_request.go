package capture

import (
	"bytes"
	"context"
	"fmt"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/produce"
	"github.com/segmentio/kafka-go/protocol/rawproduce"
)

// multiProduce is one produce request (acks=all) carrying a record batch for each of several
// partitions of a topic. kafka-go's Client.RawProduce takes one partition; its transport
// sends a request to the leader of its partitions, and refuses one whose partitions have
// different leaders. multiProduce therefore splits itself by leader (protocol.Splitter) with
// the transport's own view of the cluster, so the routing always agrees with it: one request
// with a single broker, one per leader in a cluster, sent together and merged back.
type multiProduce struct {
	req   rawproduce.Request
	parts []rawproduce.RequestPartition
	raws  []bytes.Reader
}

// set makes the request carry the batches of the touched partitions.
func (m *multiProduce) set(topic string, timeout time.Duration, touched []int, parts []partBatch) {
	m.parts = m.parts[:0]
	if len(m.raws) < len(parts) {
		m.raws = make([]bytes.Reader, len(parts))
	}
	for i, p := range touched {
		m.raws[i].Reset(parts[p].rb.raw())
		m.parts = append(m.parts, rawproduce.RequestPartition{
			Partition: int32(p), RecordSet: protocol.RawRecordSet{Reader: &m.raws[i]},
		})
	}
	m.req = rawproduce.Request{
		Acks:    int16(kafkago.RequireAll),
		Timeout: int32(timeout.Milliseconds()),
		Topics:  []rawproduce.RequestTopic{{Topic: topic, Partitions: m.parts}},
	}
}

// send sends the request and returns the first error of any partition: a partition that
// failed, or a broker that did not answer.
func (m *multiProduce) send(ctx context.Context, client *kafkago.Client) error {
	transport := client.Transport
	if transport == nil {
		transport = kafkago.DefaultTransport
	}
	res, err := transport.RoundTrip(ctx, client.Addr, m)
	if err != nil {
		return err
	}
	resp, ok := res.(*produce.Response)
	if !ok {
		return fmt.Errorf("unexpected produce response %T", res)
	}
	topic := m.req.Topics[0].Topic
	answered := make(map[int32]bool, len(m.parts))
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			answered[p.Partition] = true
			if p.ErrorCode != 0 {
				return fmt.Errorf("partition %s[%d]: %w", topic, p.Partition, kafkago.Error(p.ErrorCode))
			}
			for _, re := range p.RecordErrors {
				return fmt.Errorf("partition %s[%d]: record %d: %s", topic, p.Partition, re.BatchIndex, re.BatchIndexErrorMessage)
			}
		}
	}
	for _, p := range m.parts {
		if !answered[p.Partition] {
			return fmt.Errorf("partition %s[%d]: no answer in the produce response", topic, p.Partition)
		}
	}
	return nil
}

// ApiKey makes multiProduce a protocol message.
func (m *multiProduce) ApiKey() protocol.ApiKey { return protocol.Produce }

// Split groups the partitions by leader, as the transport's cluster metadata has them.
func (m *multiProduce) Split(cluster protocol.Cluster) ([]protocol.Message, protocol.Merger, error) {
	t := m.req.Topics[0]
	topic, ok := cluster.Topics[t.Topic]
	if !ok {
		return nil, nil, fmt.Errorf("topic %s is not in the cluster metadata", t.Topic)
	}
	var leaders []int32
	byLeader := map[int32][]rawproduce.RequestPartition{}
	for _, p := range t.Partitions {
		part, ok := topic.Partitions[p.Partition]
		if !ok {
			return nil, nil, fmt.Errorf("partition %s[%d] is not in the cluster metadata", t.Topic, p.Partition)
		}
		if _, seen := byLeader[part.Leader]; !seen {
			leaders = append(leaders, part.Leader)
		}
		byLeader[part.Leader] = append(byLeader[part.Leader], p)
	}
	if len(leaders) == 1 {
		return []protocol.Message{&m.req}, m, nil
	}
	msgs := make([]protocol.Message, len(leaders))
	for i, l := range leaders {
		r := m.req
		r.Topics = []rawproduce.RequestTopic{{Topic: t.Topic, Partitions: byLeader[l]}}
		msgs[i] = &r
	}
	return msgs, m, nil
}

// Merge joins the leaders' answers into one response; a leader that did not answer fails the
// whole request (the partitions that others acknowledged are found again by the dedupe).
func (m *multiProduce) Merge(_ []protocol.Message, results []interface{}) (protocol.Message, error) {
	merged := &produce.Response{}
	for _, r := range results {
		switch v := r.(type) {
		case error:
			return nil, v
		case *produce.Response:
			merged.Topics = append(merged.Topics, v.Topics...)
			merged.ThrottleTimeMs = max(merged.ThrottleTimeMs, v.ThrottleTimeMs)
		default:
			return nil, fmt.Errorf("unexpected produce response %T", r)
		}
	}
	return merged, nil
}

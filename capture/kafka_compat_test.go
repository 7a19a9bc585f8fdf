package capture_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"orderflow/internal/testenv"
)

// TestKafkaGoAgainstBroker proves that the pinned kafka-go speaks the protocol versions the
// pinned broker still accepts (Kafka 4 removed the old ones, KIP-896): create a topic, produce
// with acks=all through the Writer and the Client, consume in a consumer group with committed
// offsets, list offsets and fetch the committed group offsets.
func TestKafkaGoAgainstBroker(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.UniqueName("ofcompat")
	group := testenv.UniqueName("ofcompat_group")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second}

	ct, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 3, ReplicationFactor: 1}}})
	if err != nil || ct.Errors[topic] != nil {
		t.Fatalf("CreateTopics: %v %v", err, ct)
	}
	t.Cleanup(func() {
		_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	})

	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{}, BatchTimeout: 10 * time.Millisecond}
	msgs := make([]kafka.Message, 30)
	for i := range msgs {
		msgs[i] = kafka.Message{Key: []byte(fmt.Sprint("k", i%7)), Value: []byte(fmt.Sprint(i)), Headers: []kafka.Header{{Key: "h", Value: []byte("v")}}}
	}
	// A new topic's partitions get leaders a moment after creation.
	waitFor(t, "Writer.WriteMessages with acks=all", time.Minute, func() (bool, error) {
		err := w.WriteMessages(ctx, msgs...)
		return err == nil, err
	})
	mustOK(t, w.Close())
	pr, err := client.Produce(ctx, &kafka.ProduceRequest{Topic: topic, Partition: 0, RequiredAcks: kafka.RequireAll,
		Records: kafka.NewRecordReader(kafka.Record{Key: kafka.NewBytes([]byte("c")), Value: kafka.NewBytes([]byte("client"))})})
	if err != nil || pr.Error != nil {
		t.Fatalf("Client.Produce acks=all: %v %v", err, pr)
	}

	lo, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		topic: {kafka.FirstOffsetOf(0), kafka.LastOffsetOf(0), kafka.FirstOffsetOf(1), kafka.LastOffsetOf(1), kafka.FirstOffsetOf(2), kafka.LastOffsetOf(2)}}})
	mustOK(t, err)
	var total int64
	for _, po := range lo.Topics[topic] {
		mustOK(t, po.Error)
		total += po.LastOffset - po.FirstOffset
	}
	if total != 31 {
		t.Fatalf("ListOffsets counts %d records, want 31", total)
	}

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, GroupID: group, Topic: topic, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 200 * time.Millisecond, StartOffset: kafka.FirstOffset})
	defer r.Close()
	seen := 0
	for seen < 31 {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("consumer group FetchMessage after %d messages: %v", seen, err)
		}
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Fatalf("CommitMessages: %v", err)
		}
		seen++
	}
	of, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0, 1, 2}}})
	mustOK(t, err)
	var committed int64
	for _, p := range of.Topics[topic] {
		mustOK(t, p.Error)
		committed += p.CommittedOffset
	}
	if committed != total {
		t.Errorf("group committed offsets sum to %d, want %d", committed, total)
	}
}

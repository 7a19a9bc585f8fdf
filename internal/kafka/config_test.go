package kafka_test

import (
	"context"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"orderflow/internal/kafka"
	"orderflow/internal/testenv"
)

// Against the real broker: a topic created with its own max.message.bytes reports it, a topic
// without one reports the broker's message.max.bytes, and a missing topic is an error (the
// caller falls back), never a made-up limit.
func TestMaxMessageBytesAgainstBroker(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 20 * time.Second}
	small, plain := testenv.UniqueName("ofkafka_small"), testenv.UniqueName("ofkafka_plain")
	for name, configs := range map[string]map[string]string{small: {"max.message.bytes": "65536"}, plain: nil} {
		_, err := kafka.CreateTopic(ctx, client, kafka.TopicSpec{Name: name, Partitions: 1, ReplicationFactor: 1, Configs: configs})
		testenv.Must(t, err, "creating topic "+name)
	}
	t.Cleanup(func() {
		_, _ = client.DeleteTopics(context.Background(), &kafkago.DeleteTopicsRequest{Topics: []string{small, plain}})
	})

	if n, err := kafka.MaxMessageBytes(ctx, client, small); err != nil || n != 65536 {
		t.Errorf("MaxMessageBytes(topic with 64 KiB) = %d, %v; want 65536", n, err)
	}
	// The local broker keeps Kafka's default message.max.bytes (1 MiB + 12).
	if n, err := kafka.MaxMessageBytes(ctx, client, plain); err != nil || n != 1048588 {
		t.Errorf("MaxMessageBytes(topic without an override) = %d, %v; want the broker's 1048588", n, err)
	}
	if _, err := kafka.MaxMessageBytes(ctx, client, testenv.UniqueName("ofkafka_missing")); err == nil {
		t.Errorf("MaxMessageBytes of a missing topic: no error")
	}
}

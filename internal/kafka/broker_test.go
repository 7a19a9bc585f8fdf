package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"orderflow/internal/kafka"
	"orderflow/internal/testenv"
)

// Against the real broker: a topic is created once with its partitions and configs, its end
// offsets count what was produced, and the group's lag counts what the group has not
// committed, on every partition.
func TestTopicOffsetsAndLagAgainstBroker(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	topic, group := testenv.UniqueName("ofkafka"), testenv.UniqueName("ofkafka_group")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 20 * time.Second}

	if n, err := kafka.PartitionCount(ctx, client, topic); err != nil || n != 0 {
		t.Fatalf("PartitionCount of a missing topic = %d, %v; want 0", n, err)
	}
	spec := kafka.TopicSpec{Name: topic, Partitions: 3, ReplicationFactor: 1, Configs: map[string]string{"retention.ms": "3600000"}}
	created, err := kafka.CreateTopic(ctx, client, spec)
	if err != nil || !created {
		t.Fatalf("CreateTopic = %v, %v; want created", created, err)
	}
	t.Cleanup(func() {
		_, _ = client.DeleteTopics(context.Background(), &kafkago.DeleteTopicsRequest{Topics: []string{topic}})
	})
	if created, err := kafka.CreateTopic(ctx, client, spec); err != nil || created {
		t.Fatalf("CreateTopic again = %v, %v; want an existing topic left alone", created, err)
	}
	if n, err := kafka.PartitionCount(ctx, client, topic); err != nil || n != 3 {
		t.Fatalf("PartitionCount = %d, %v; want 3", n, err)
	}
	dc, err := client.DescribeConfigs(ctx, &kafkago.DescribeConfigsRequest{Resources: []kafkago.DescribeConfigRequestResource{{
		ResourceType: kafkago.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"retention.ms"}}}})
	testenv.Must(t, err, "describing the topic's configs")
	if got := dc.Resources[0].ConfigEntries; len(got) != 1 || got[0].ConfigValue != "3600000" {
		t.Errorf("retention.ms = %+v, want 3600000", got)
	}

	w := &kafkago.Writer{Addr: kafkago.TCP(brokers...), Topic: topic, Balancer: &kafkago.RoundRobin{}, RequiredAcks: kafkago.RequireAll}
	defer w.Close()
	msgs := make([]kafkago.Message, 7)
	for i := range msgs {
		msgs[i] = kafkago.Message{Value: []byte{byte(i)}}
	}
	// A new topic's partitions get leaders a moment after creation.
	for {
		if err = w.WriteMessages(ctx, msgs...); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("producing: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ends, err := kafka.EndOffsets(ctx, client, topic, 3)
	testenv.Must(t, err, "EndOffsets")
	var records int64
	for p, o := range ends {
		if o.Partition != p {
			t.Errorf("EndOffsets[%d] is partition %d", p, o.Partition)
		}
		records += o.LastOffset - o.FirstOffset
	}
	if records != 7 {
		t.Errorf("end offsets count %d records, want 7", records)
	}

	lag := kafka.NewLag("test_consumer_lag", client, group, topic)
	reg := prometheus.NewRegistry()
	reg.MustRegister(lag)
	if n, err := lag.Refresh(ctx); err != nil || n != 7 {
		t.Fatalf("lag before any commit: %d %v, want 7", n, err)
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, GroupID: group, Topic: topic, StartOffset: kafkago.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	batch, err := kafka.FetchBatch(ctx, r, 3, 10*time.Second)
	testenv.Must(t, err, "fetching")
	if len(batch) != 3 {
		t.Fatalf("FetchBatch returned %d records, want 3", len(batch))
	}
	testenv.Must(t, r.CommitMessages(ctx, batch...), "committing")
	if n, err := lag.Refresh(ctx); err != nil || n != 4 {
		t.Fatalf("lag after committing 3 of 7: %d %v, want 4", n, err)
	}
	var sum float64
	mfs, err := reg.Gather()
	testenv.Must(t, err, "gathering")
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			sum += m.GetGauge().GetValue()
		}
	}
	if sum != 4 {
		t.Errorf("the gauge sums to %v, want 4", sum)
	}
}

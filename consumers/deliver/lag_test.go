package deliver

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"orderflow/internal/testenv"
)

// The lag gauge is the broker's view: end offsets minus the group's committed offsets over all
// partitions, counting everything retained when the group has committed nothing yet.
func TestLagCountsUncommittedRecordsOnEveryPartition(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	topic, group := testenv.UniqueName("oflag"), testenv.UniqueName("oflag_group")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 20 * time.Second}
	ct, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 3, ReplicationFactor: 1}}})
	if err != nil || ct.Errors[topic] != nil {
		t.Fatalf("creating topic: %v %v", err, ct)
	}
	t.Cleanup(func() {
		_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	})
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.RoundRobin{}, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	msgs := make([]kafka.Message, 7)
	for i := range msgs {
		msgs[i] = kafka.Message{Value: []byte{byte(i)}}
	}
	for ctx.Err() == nil {
		if err = w.WriteMessages(ctx, msgs...); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	l := &lagReader{client: client, group: group, topic: topic}
	if n, err := l.lag(ctx); err != nil || n != 7 {
		t.Fatalf("lag before any commit: %d %v, want 7", n, err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, GroupID: group, Topic: topic, StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	for range 3 {
		m, err := r.FetchMessage(ctx)
		testenv.Must(t, err, "fetching")
		testenv.Must(t, r.CommitMessages(ctx, m), "committing")
	}
	if n, err := l.lag(ctx); err != nil || n != 4 {
		t.Fatalf("lag after committing 3 of 7: %d %v, want 4", n, err)
	}
}

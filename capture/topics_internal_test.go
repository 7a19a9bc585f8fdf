package capture

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

func TestTopicSpec(t *testing.T) {
	t.Parallel()
	k := KafkaConfig{Partitions: 6, ReplicationFactor: 3, MinInsyncReplicas: 2, Retention: 48 * time.Hour}
	got := k.topicSpec("orderflow.order")
	want := map[string]string{"min.insync.replicas": "2", "retention.ms": "172800000"}
	if got.Name != "orderflow.order" || got.Partitions != 6 || got.ReplicationFactor != 3 || !reflect.DeepEqual(got.Configs, want) {
		t.Errorf("topicSpec = %+v", got)
	}
	if got := (&KafkaConfig{Partitions: 6, ReplicationFactor: 1}).topicSpec("t"); len(got.Configs) != 0 {
		t.Errorf("unset settings must keep the broker's defaults, got %v", got.Configs)
	}
}

// timedOut decides whether a failed request may still reach a broker later: only when the
// client gave up waiting, never when the broker answered.
func TestTimedOut(t *testing.T) {
	t.Parallel()
	for err, want := range map[error]bool{
		context.DeadlineExceeded: true,
		fmt.Errorf("kafka.(*Client).Produce: %w", os.ErrDeadlineExceeded): true,
		kafkago.RequestTimedOut: false,
		fmt.Errorf("producing: %w", kafkago.NotLeaderForPartition): false,
		errors.New("unexpected EOF"):                               false,
	} {
		if got := timedOut(err); got != want {
			t.Errorf("timedOut(%v) = %v, want %v", err, got, want)
		}
	}
}

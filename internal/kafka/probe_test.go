package kafka_test

import (
	"context"
	"testing"
	"time"

	"orderflow/internal/kafka"
	"orderflow/internal/tcpproxy"
	"orderflow/internal/testenv"
)

// The probe is a round trip: a broker whose connection goes silent fails it, although
// kafka-go would still answer metadata requests from its cache; the path's return heals it.
func TestProbeNoticesASilentBroker(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	px := tcpproxy.Start(t, brokers[0])
	client := kafka.NewClient(brokers, "probe-test", px.Dial, 0)
	probe := kafka.NewProbe("test_kafka_reachable", client, time.Second, time.Second)
	ctx := context.Background()
	if err := probe.Err(); err == nil {
		t.Fatal("a probe that never ran reports the cluster reachable")
	}
	probe.Once(ctx)
	if err := probe.Err(); err != nil {
		t.Fatalf("probe of a healthy broker: %v", err)
	}
	px.Blackhole()
	probe.Once(ctx)
	if probe.Err() == nil {
		t.Fatal("probe through a silent path reports the cluster reachable")
	}
	if _, err := kafka.PartitionCount(ctx, client, "anything"); err != nil {
		t.Logf("(the metadata cache did not answer either: %v)", err)
	}
	px.Restore()
	testenv.WaitFor(t, "the probe to answer again", 30*time.Second, func() (bool, error) {
		probe.Once(ctx)
		return probe.Err() == nil, probe.Err()
	})
}

package deliver_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	ikafka "orderflow/internal/kafka"
	"orderflow/internal/testenv"
)

// A deliverer whose intake holds no partition reads no new event: /readyz must not say ready
// until the group gives it partitions ('make up' waits for /readyz before its first order).
func TestNotReadyUntilTheIntakeHoldsPartitions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := &kafka.Client{Addr: kafka.TCP(e.brokers...), Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A silent member holds the group: the deliverer's join starts a rebalance that cannot
	// complete while the member neither rejoins nor leaves.
	hold, err := ikafka.HoldGroup(ctx, client, e.group, e.topic, 2*time.Minute)
	testenv.Must(t, err, "holding the group")

	svc := e.start(nil)
	// Cleanups run last first: the hold goes before the consumer is stopped, whose Close would
	// otherwise wait for the held rebalance if the test fails before releasing it.
	t.Cleanup(func() { _ = hold.Release(context.Background()) })
	ops := httptest.NewServer(svc.Handler())
	t.Cleanup(ops.Close)
	eventually(t, "the deliverer joining, and reaching Kafka and PostgreSQL", 60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{e.group}})
		if err != nil || len(resp.Groups) != 1 || resp.Groups[0].GroupState != "PreparingRebalance" {
			return false
		}
		_, metrics := get(ops.URL + "/metrics")
		return strings.Contains(metrics, `orderflow_deliver_dependency_up{dependency="kafka"} 1`) &&
			strings.Contains(metrics, `orderflow_deliver_dependency_up{dependency="postgres"} 1`)
	})
	if code, body := get(ops.URL + "/readyz"); code == http.StatusOK || !strings.Contains(body, "no partitions assigned") {
		t.Fatalf("/readyz answered %d %q while the intake holds no partition", code, body)
	}

	// The silent member leaves: the rebalance completes, the partitions go to the deliverer.
	testenv.Must(t, hold.Release(ctx), "releasing the group")
	eventually(t, "/readyz once the intake holds partitions", 60*time.Second, func() bool {
		code, _ := get(ops.URL + "/readyz")
		return code == http.StatusOK
	})
}

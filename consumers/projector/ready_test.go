package projector

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	ikafka "orderflow/internal/kafka"
	"orderflow/internal/testenv"
)

// A projector that reaches PostgreSQL and Kafka but holds no partition is not consuming: an
// order committed now would wait for the group's join. /readyz must say so until the group
// gives it partitions ('make up' waits for /readyz before its first order).
func TestNotReadyUntilPartitionsAreAssigned(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A silent member holds the group: the projector's join starts a rebalance that cannot
	// complete while the member neither rejoins nor leaves.
	hold, err := ikafka.HoldGroup(ctx, e.client, e.group, e.topic, 2*time.Minute)
	testenv.Must(t, err, "holding the group")

	r := start(t, e.config(), mustOpenDB(t, e.dsn))
	// Cleanups run last first: the hold goes before the consumer is stopped, whose Close would
	// otherwise wait for the held rebalance if the test fails before releasing it.
	t.Cleanup(func() { _ = hold.Release(context.Background()) })
	srv := httptest.NewServer(r.p.Handler())
	t.Cleanup(srv.Close)
	ready := func() (bool, error) {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	}
	waitFor(t, "the projector joining, and reaching Kafka and PostgreSQL", 60*time.Second, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := e.client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{e.group}})
		if err != nil || len(resp.Groups) != 1 {
			return false, err
		}
		return resp.Groups[0].GroupState == "PreparingRebalance" && r.p.dbOK.Load() && r.p.kafkaOK.Load(), nil
	})
	if ok, err := ready(); err != nil || ok {
		t.Fatalf("/readyz answered ready (err %v) while the projector holds no partition", err)
	}

	// The silent member leaves: the rebalance completes, the partitions go to the projector.
	testenv.Must(t, hold.Release(ctx), "releasing the group")
	waitFor(t, "/readyz once the projector holds partitions", 60*time.Second, ready)
	if n := r.p.assigned.Partitions(); n != 2 {
		t.Errorf("the projector holds %d partitions, want 2", n)
	}
}

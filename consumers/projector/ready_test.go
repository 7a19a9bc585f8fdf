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

// greedy is a group balancer that gives every partition to the member that announced itself
// with the user data "blocker". It registers under the name of kafka-go's default ("range"),
// so the projector's reader agrees to the protocol, and as the group's leader it decides the
// assignment of both.
type greedy struct{}

func (greedy) ProtocolName() string      { return "range" }
func (greedy) UserData() ([]byte, error) { return []byte("blocker"), nil }
func (greedy) AssignGroups(members []kafka.GroupMember, partitions []kafka.Partition) kafka.GroupMemberAssignments {
	out := kafka.GroupMemberAssignments{}
	for _, m := range members {
		out[m.ID] = map[string][]int{}
		if string(m.UserData) != "blocker" {
			continue
		}
		for _, p := range partitions {
			out[m.ID][p.Topic] = append(out[m.ID][p.Topic], p.ID)
		}
	}
	return out
}

// A projector that reaches PostgreSQL and Kafka but holds no partition is not consuming: an
// order committed now would wait for a rebalance. /readyz must say so until the group gives
// it partitions ('make up' waits for /readyz before its first order).
func TestNotReadyUntilPartitionsAreAssigned(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	// Another member of the group joins first, leads it, and keeps the only partition.
	var held ikafka.Assignment
	blocker := kafka.NewReader(kafka.ReaderConfig{
		Brokers: e.brokers, GroupID: e.group, Topic: e.topic, GroupBalancers: []kafka.GroupBalancer{greedy{}},
		HeartbeatInterval: 500 * time.Millisecond, SessionTimeout: 6 * time.Second, RebalanceTimeout: 6 * time.Second,
		JoinGroupBackoff: ikafka.JoinGroupBackoff, Logger: held.Logger(nil),
	})
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = blocker.Close()
		}
	})
	waitFor(t, "the blocker to hold the partition", 60*time.Second, func() (bool, error) { return held.Partitions() == 1, nil })

	r := start(t, e.config(), mustOpenDB(t, e.dsn))
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
	// The projector is in the group (a second member, the group stable again) and reaches
	// both dependencies, but the leader gave it nothing.
	waitFor(t, "the projector to join the group with nothing assigned", 60*time.Second, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := e.client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{e.group}})
		if err != nil || len(resp.Groups) != 1 {
			return false, err
		}
		g := resp.Groups[0]
		return g.GroupState == "Stable" && len(g.Members) == 2 && r.p.dbOK.Load() && r.p.kafkaOK.Load(), nil
	})
	if held.Partitions() != 1 {
		t.Fatalf("the blocker holds %d partitions, want 1: the test did not set up what it means to", held.Partitions())
	}
	if ok, err := ready(); err != nil || ok {
		t.Fatalf("/readyz answered ready (err %v) while the projector holds no partition", err)
	}

	// The blocker leaves: the group gives the partition to the projector, which is then ready.
	closed = true
	testenv.Must(t, blocker.Close(), "closing the blocker")
	waitFor(t, "/readyz once the projector holds the partition", 60*time.Second, ready)
	if n := r.p.assigned.Partitions(); n != 1 {
		t.Errorf("the projector holds %d partitions, want 1", n)
	}
}

package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// GroupHold is a consumer-group member that joins a group and then goes silent: no heartbeat,
// no rejoin. A member that joins after it starts a rebalance the coordinator cannot finish
// until the silent member rejoins, leaves (Release) or passes its rebalance timeout, so the
// newcomer gets no partition meanwhile. Tests use it to hold a consumer before its first
// assignment, deterministically (no race for the group's leadership).
type GroupHold struct {
	client   *kafkago.Client
	group    string
	memberID string
}

// HoldGroup joins group as the only member (the group must be empty), syncs an empty
// assignment, and returns; the hold lasts until Release or for timeout (its session and
// rebalance timeout; the broker caps it at group.max.session.timeout.ms, 30 min by default).
func HoldGroup(ctx context.Context, c *kafkago.Client, group, topic string, timeout time.Duration) (*GroupHold, error) {
	req := &kafkago.JoinGroupRequest{
		GroupID: group, SessionTimeout: timeout, RebalanceTimeout: timeout, ProtocolType: "consumer",
		Protocols: []kafkago.GroupProtocol{{Name: "range", Metadata: kafkago.GroupProtocolSubscription{Topics: []string{topic}}}},
	}
	resp, err := c.JoinGroup(ctx, req)
	if err == nil && errors.Is(resp.Error, kafkago.MemberIDRequired) {
		// Since Kafka 2.2 a new member first gets its id, then joins with it.
		req.MemberID = resp.MemberID
		resp, err = c.JoinGroup(ctx, req)
	}
	if err == nil {
		err = resp.Error
	}
	if err != nil {
		return nil, fmt.Errorf("joining group %s: %w", group, err)
	}
	h := &GroupHold{client: c, group: group, memberID: resp.MemberID}
	sync, err := c.SyncGroup(ctx, &kafkago.SyncGroupRequest{
		GroupID: group, GenerationID: resp.GenerationID, MemberID: resp.MemberID, ProtocolType: "consumer",
		ProtocolName: resp.ProtocolName,
		Assignments: []kafkago.SyncGroupRequestAssignment{{MemberID: resp.MemberID,
			Assignment: kafkago.GroupProtocolAssignment{AssignedPartitions: map[string][]int{}}}},
	})
	if err == nil {
		err = sync.Error
	}
	if err != nil {
		return nil, fmt.Errorf("syncing group %s: %w", group, err)
	}
	return h, nil
}

// Release leaves the group, so a pending rebalance completes without the hold.
func (h *GroupHold) Release(ctx context.Context) error {
	resp, err := h.client.LeaveGroup(ctx, &kafkago.LeaveGroupRequest{GroupID: h.group,
		Members: []kafkago.LeaveGroupRequestMember{{ID: h.memberID}}})
	if err == nil {
		err = resp.Error
	}
	if err != nil {
		return fmt.Errorf("leaving group %s: %w", h.group, err)
	}
	return nil
}

package capture

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/produce"
	"github.com/segmentio/kafka-go/protocol/rawproduce"
)

// TestMultiProduceSplitsByLeader: a request for several partitions goes to each partition's
// leader as the transport's metadata has it, keeping each leader's partitions in request
// order; a partition the metadata does not know fails the request rather than guessing.
func TestMultiProduceSplitsByLeader(t *testing.T) {
	t.Parallel()
	cluster := protocol.Cluster{Topics: map[string]protocol.Topic{"t": {Name: "t", Partitions: map[int32]protocol.Partition{
		0: {ID: 0, Leader: 1}, 1: {ID: 1, Leader: 2}, 2: {ID: 2, Leader: 1}, 3: {ID: 3, Leader: 3},
	}}}}
	tests := []struct {
		name    string
		touched []int
		want    [][]int32 // partitions of each message, in order
		wantErr bool
	}{
		{name: "one leader", touched: []int{2, 0}, want: [][]int32{{2, 0}}},
		{name: "three leaders", touched: []int{3, 0, 1, 2}, want: [][]int32{{3}, {0, 2}, {1}}},
		{name: "unknown partition", touched: []int{0, 5}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			parts := make([]partBatch, 6)
			for _, p := range tt.touched {
				parts[p].rb.reset(time.Now())
			}
			var m multiProduce
			m.set("t", time.Second, tt.touched, parts)
			msgs, merger, err := m.Split(cluster)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Split: got %d messages, want an error", len(msgs))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if merger == nil {
				t.Fatal("no merger")
			}
			var got [][]int32
			for _, msg := range msgs {
				r := msg.(*rawproduce.Request)
				if r.Acks != -1 {
					t.Errorf("acks %d, want -1 (all)", r.Acks)
				}
				var ps []int32
				for _, p := range r.Topics[0].Partitions {
					ps = append(ps, p.Partition)
				}
				got = append(got, ps)
			}
			if !slices.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("split into %v, want %v", got, tt.want)
			}
		})
	}
}

// TestMultiProduceMerge: the leaders' answers become one response, and one leader that did
// not answer fails the whole request.
func TestMultiProduceMerge(t *testing.T) {
	t.Parallel()
	var m multiProduce
	a := &produce.Response{Topics: []produce.ResponseTopic{{Topic: "t", Partitions: []produce.ResponsePartition{{Partition: 0}}}}}
	b := &produce.Response{Topics: []produce.ResponseTopic{{Topic: "t", Partitions: []produce.ResponsePartition{{Partition: 1, ErrorCode: 6}}}}, ThrottleTimeMs: 5}
	got, err := m.Merge(nil, []interface{}{a, b})
	if err != nil {
		t.Fatal(err)
	}
	r := got.(*produce.Response)
	if len(r.Topics) != 2 || r.Topics[1].Partitions[0].ErrorCode != 6 || r.ThrottleTimeMs != 5 {
		t.Errorf("merged %+v", r)
	}
	down := errors.New("broker 2 did not answer")
	if _, err := m.Merge(nil, []interface{}{a, down}); !errors.Is(err, down) {
		t.Errorf("Merge with a failed leader: %v, want %v", err, down)
	}
}

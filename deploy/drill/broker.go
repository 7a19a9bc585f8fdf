package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// brokerDowntime is how long a killed broker stays down: long enough for the cluster to move
// its partitions' leadership to the other two and for the load to go on without it.
const brokerDowntime = 15 * time.Second

// kafkaNodes is the number of brokers of the stack.
func (d *drill) kafkaNodes() int { return len(strings.Split(d.cfg.env["KAFKA_BROKERS"], ",")) }

// killPartitionLeader is the fault of a three-node stack: kill -9 of the broker that leads the
// most partitions of orderflow.order, while the load goes on, and a restart of it later.
func (d *drill) killPartitionLeader() fault {
	return fault{"kill -9 kafka partition leader", func(ctx context.Context) {
		node, led, err := d.busiestLeader(ctx)
		if err != nil {
			d.logf("fault: finding the partition leaders: %v", err)
			return
		}
		name := "kafka"
		if node != 1 {
			name = fmt.Sprintf("kafka-%d", node)
		}
		d.logf("fault: %s leads %d partitions of orderflow.order: kill -9", name, led)
		d.kill9(name)
		time.Sleep(brokerDowntime)
		d.stack(ctx, "start", name)
	}}
}

// busiestLeader is the node id leading the most partitions of orderflow.order (node ids are
// 1, 2, 3 in the local stack, as its nodes kafka, kafka-2, kafka-3).
func (d *drill) busiestLeader(ctx context.Context) (node, led int, err error) {
	brokers := strings.Split(d.cfg.env["KAFKA_BROKERS"], ",")
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: tr}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{"orderflow.order"}})
	if err != nil {
		return 0, 0, err
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return 0, 0, fmt.Errorf("no metadata for orderflow.order: %+v", md.Topics)
	}
	count := map[int]int{}
	for _, p := range md.Topics[0].Partitions {
		count[p.Leader.ID]++
		if n := count[p.Leader.ID]; n > led {
			node, led = p.Leader.ID, n
		}
	}
	return node, led, nil
}

package kafka

import (
	"context"
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"
)

// Lag is a consumer group's lag on one topic as the broker sees it: per partition, the log end
// offset minus the group's committed offset, or minus the log start offset before the group
// committed anything (the definition kafka-consumer-groups.sh shows). Unlike a reader's own
// statistics it counts the partitions this process is not assigned to, so it is right with
// several consumers in the group, and it keeps growing while the consumer is stuck as long as
// something calls Refresh.
//
// Lag is a prometheus.Collector: register it in the service's registry. Its one gauge has the
// labels group, topic and partition; dashboards sum it.
type Lag struct {
	client *kafkago.Client
	group  string
	topic  string
	gauge  *prometheus.GaugeVec
}

// NewLag returns the lag of group on topic, exported as the gauge called metricName.
func NewLag(metricName string, c *kafkago.Client, group, topic string) *Lag {
	return &Lag{
		client: c, group: group, topic: topic,
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: metricName,
			Help: "Records in the partition the group has not committed: log end offset - committed offset (log start offset before the first commit).",
		}, []string{"group", "topic", "partition"}),
	}
}

// Describe implements prometheus.Collector.
func (l *Lag) Describe(ch chan<- *prometheus.Desc) { l.gauge.Describe(ch) }

// Collect implements prometheus.Collector.
func (l *Lag) Collect(ch chan<- prometheus.Metric) { l.gauge.Collect(ch) }

// Refresh asks the broker for the group's lag, sets the gauge of every partition that answered
// and returns the total over them. A missing topic has no lag.
func (l *Lag) Refresh(ctx context.Context) (int64, error) {
	n, err := PartitionCount(ctx, l.client, l.topic)
	if err != nil || n == 0 {
		return 0, err
	}
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	// Committed offsets before end offsets: the ends can only have grown in between, so the
	// lag may be over-reported by what arrived meanwhile but is never under-reported.
	of, err := l.client.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: l.group, Topics: map[string][]int{l.topic: parts}})
	if err != nil {
		return 0, fmt.Errorf("fetching committed offsets of group %s: %w", l.group, err)
	}
	ends, err := listOffsets(ctx, l.client, l.topic, n)
	if err != nil {
		return 0, err
	}
	committed := map[int]int64{}
	for _, c := range of.Topics[l.topic] {
		if c.Error == nil {
			committed[c.Partition] = c.CommittedOffset
		}
	}
	var total int64
	for p, lag := range partitionLag(ends, committed) {
		l.gauge.WithLabelValues(l.group, l.topic, strconv.Itoa(p)).Set(float64(lag))
		total += lag
	}
	return total, nil
}

// partitionLag is the lag of every partition whose offsets are known. A partition without a
// committed offset, or with one below the log start (retention deleted what it pointed at),
// counts everything retained.
func partitionLag(ends []kafkago.PartitionOffsets, committed map[int]int64) map[int]int64 {
	out := make(map[int]int64, len(ends))
	for _, po := range ends {
		if po.Error != nil {
			continue
		}
		from, ok := committed[po.Partition]
		if !ok || from < po.FirstOffset {
			from = po.FirstOffset
		}
		out[po.Partition] = max(po.LastOffset-from, 0)
	}
	return out
}

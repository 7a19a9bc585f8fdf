package kafka

import (
	"context"
	"fmt"
	"strconv"

	kafkago "github.com/segmentio/kafka-go"
)

// MaxMessageBytes returns the largest record batch the broker accepts for topic: the topic's
// max.message.bytes, which the broker reports as the broker-wide message.max.bytes when the
// topic does not override it. A producer that sends a larger batch gets MESSAGE_TOO_LARGE for
// the whole request.
func MaxMessageBytes(ctx context.Context, c *kafkago.Client, topic string) (int, error) {
	resp, err := c.DescribeConfigs(ctx, &kafkago.DescribeConfigsRequest{
		Resources: []kafkago.DescribeConfigRequestResource{{
			ResourceType: kafkago.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"max.message.bytes"},
		}},
	})
	if err != nil {
		return 0, fmt.Errorf("describing configs of topic %s: %w", topic, err)
	}
	for _, r := range resp.Resources {
		if r.Error != nil {
			return 0, fmt.Errorf("describing configs of topic %s: %w", topic, r.Error)
		}
		for _, e := range r.ConfigEntries {
			if e.ConfigName != "max.message.bytes" {
				continue
			}
			n, err := strconv.Atoi(e.ConfigValue)
			if err != nil || n <= 0 {
				return 0, fmt.Errorf("topic %s: max.message.bytes %q is not a positive number", topic, e.ConfigValue)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("describing configs of topic %s: max.message.bytes not returned", topic)
}

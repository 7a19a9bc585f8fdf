package capture

import (
	"context"
	"errors"

	"orderflow/internal/kafka"
)

// ErrEventTooLarge is a session's end on an event whose record alone is larger than its
// topic's max.message.bytes. The session stops before producing it (nothing after it on its
// partition is produced either, so the dedupe stays exact) and capture reconnects and tries
// again: it re-reads the limit every session, so raising the topic's max.message.bytes is
// enough to get past it (docs/CAPTURE.md). Skipping the event instead would break the topic's
// promise of one record per outbox row.
var ErrEventTooLarge = errors.New("event larger than the topic's max.message.bytes")

// fallbackMaxMessageBytes is the limit assumed when the broker does not tell (an ACL without
// DescribeConfigs, an old broker): the Java producer's max.request.size default, a little
// below the broker's default message.max.bytes of 1 MiB + 12.
const fallbackMaxMessageBytes = 1_000_000

// messageLimit is the largest record batch capture may send to topic: what the broker says
// it enforces, or, when it cannot be read, the configured topic limit or the fallback.
func (s *kafkaSink) messageLimit(ctx context.Context, topic string) int {
	n, err := kafka.MaxMessageBytes(ctx, s.client, topic)
	if err == nil {
		s.log.Info("produce request limit read from the broker", "topic", topic, "max_message_bytes", n)
		return n
	}
	n = fallbackMaxMessageBytes
	if s.cfg.TopicMaxMessageBytes > 0 {
		n = s.cfg.TopicMaxMessageBytes
	}
	s.log.Warn("cannot read the topic's max.message.bytes; assuming a limit", "topic", topic, "max_message_bytes", n, "err", err)
	return n
}

package capture

import (
	"context"
	"errors"
	"strconv"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"orderflow"
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

// batchOverhead is a v2 record batch's header, counting the offset and length fields the
// broker includes when it compares a batch with max.message.bytes.
const batchOverhead = 61

// maxVarint is the longest zig-zag varint Kafka writes for a 32-bit length; timestamps take
// up to 10.
const maxVarint = 5

// recordBound is an upper bound of the bytes rec takes in an uncompressed v2 record batch:
// its length, attributes, timestamp and offset deltas, key, value and each header, every
// varint at its longest. A batch whose bounds sum (plus batchOverhead) stays under the limit
// is accepted whatever the real deltas turn out to be.
func recordBound(rec *kafkago.Record) int {
	n := maxVarint + 1 + 10 + maxVarint // length, attributes, timestamp delta, offset delta
	n += maxVarint + bytesLen(rec.Key)
	n += maxVarint + bytesLen(rec.Value)
	n += maxVarint // header count
	for _, h := range rec.Headers {
		n += maxVarint + len(h.Key) + maxVarint + len(h.Value)
	}
	return n
}

func bytesLen(b kafkago.Bytes) int {
	if b == nil {
		return 0
	}
	return b.Len()
}

// newRecord is the record capture writes for e: the key, the CloudEvent and the headers the
// topic contract names (docs/design.md).
func newRecord(e *outEvent, now time.Time) kafkago.Record {
	return kafkago.Record{
		Time:  now,
		Key:   kafkago.NewBytes(e.key),
		Value: kafkago.NewBytes(e.value),
		Headers: []kafkago.Header{
			{Key: orderflow.HeaderEventID, Value: []byte(e.id)},
			{Key: orderflow.HeaderEventType, Value: []byte(e.eventType)},
			{Key: orderflow.HeaderLSN, Value: []byte(e.pos.LSN.String())},
			{Key: orderflow.HeaderSeq, Value: strconv.AppendUint(nil, uint64(e.pos.Seq), 10)},
		},
	}
}

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

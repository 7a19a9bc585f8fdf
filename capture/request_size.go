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
	n += varintLen(bytesLen(rec.Key)) + bytesLen(rec.Key)
	n += varintLen(bytesLen(rec.Value)) + bytesLen(rec.Value)
	n += maxVarint // header count
	// Lengths are known, so their varints are exact: a binary-mode record has a dozen
	// headers, and counting each length at its longest would waste about 100 bytes a record.
	for _, h := range rec.Headers {
		n += varintLen(len(h.Key)) + len(h.Key) + varintLen(len(h.Value)) + len(h.Value)
	}
	return n
}

// varintLen is the length of n as a zig-zag varint, the way Kafka writes lengths.
func varintLen(n int) int {
	l := 1
	for v := uint64(n) << 1; v >= 0x80; v >>= 7 {
		l++
	}
	return l
}

func bytesLen(b kafkago.Bytes) int {
	if b == nil {
		return 0
	}
	return b.Len()
}

// newRecord is the record capture writes for e: the key, the data, the ce_ headers of binary
// mode and the position headers pg_lsn and pg_seq (docs/DATA.md).
func newRecord(e *outEvent, now time.Time) kafkago.Record {
	// A new slice each time: the same event may be turned into a record again on a retry
	// while the earlier one is still being written.
	headers := make([]kafkago.Header, 0, len(e.headers)+2)
	headers = append(headers, e.headers...)
	headers = append(headers,
		kafkago.Header{Key: orderflow.HeaderLSN, Value: []byte(e.pos.LSN.String())},
		kafkago.Header{Key: orderflow.HeaderSeq, Value: strconv.AppendUint(nil, uint64(e.pos.Seq), 10)},
	)
	return kafkago.Record{Time: now, Key: kafkago.NewBytes(e.key), Value: kafkago.NewBytes(e.value), Headers: headers}
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

package projector

import (
	"context"
	"fmt"
	"strconv"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"orderflow"
	"orderflow/internal/backoff"
)

// DefaultRetainDeadLetters keeps a projector_dead_letters row fourteen days: the row is how
// operators (and reconcile's reports) find a dead letter without reading the DLQ topic, and a
// dead letter is work someone still has to do; the record itself lives on the DLQ topic under
// that topic's own retention.
const DefaultRetainDeadLetters = 14 * 24 * time.Hour

// retentionStore is what the projector's retention needs from the database.
type retentionStore interface {
	PurgeProjectorDeadLetters(ctx context.Context, keep time.Duration, limit int) (int64, error)
	OldestProjectorDeadLetter(ctx context.Context) (time.Duration, error)
}

// DLQTopic is where events the projector cannot apply go: the source topic plus ".dlq".
func DLQTopic(topic string) string { return topic + ".dlq" }

// sendDead produces m to the dead-letter topic, retrying until Kafka takes it: skipping the
// event without a dead letter would lose it.
func (p *Projector) sendDead(work, ctx context.Context, m kafkago.Message, cause error) error {
	wait := backoff.New(p.cfg.RetryBackoff, 5*time.Second)
	for {
		err := p.dlq.deadLetter(work, m, cause, p.cfg.MaxAttempts)
		if err == nil {
			p.metrics.events.WithLabelValues(outcomeDeadLettered).Inc()
			p.log.Warn("dead-lettered poison event", "err", cause, "partition", m.Partition,
				"offset", m.Offset, "event_id", header(m, orderflow.HeaderEventID), "dlq", p.cfg.DLQTopic)
			return nil
		}
		pause := wait.Next()
		p.log.Warn("producing to dead-letter topic failed; retrying", "err", err, "backoff", pause)
		if !backoff.Sleep(ctx, pause) {
			return fmt.Errorf("stopped while the dead-letter topic was failing: %w", err)
		}
	}
}

// maxErrorBytes bounds the error text kept with a dead letter, in its header and in the
// database.
const maxErrorBytes = 2000

// maxIDBytes bounds the event id and order id kept with a dead letter: they come from the
// record as is, and a poison record may carry anything there.
const maxIDBytes = 200

// deadRecord is the row that records m as dead. Every text field is made storable (valid
// UTF-8, no NUL, bounded): the row describes a record that may be malformed in any field, and
// the database refusing the description would stall the partition just like the record.
func deadRecord(m kafkago.Message, cause error, attempts int) orderflow.ProjectorDeadLetter {
	return orderflow.ProjectorDeadLetter{
		Topic: m.Topic, Partition: m.Partition, Offset: m.Offset,
		EventID: orderflow.StorableText(header(m, orderflow.HeaderEventID), maxIDBytes),
		OrderID: orderflow.StorableText(string(m.Key), maxIDBytes),
		Error:   orderflow.StorableText(cause.Error(), maxErrorBytes), Attempts: attempts,
	}
}

func header(m kafkago.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// kafkaDLQ produces dead letters: the original key, value and headers, plus headers saying
// where the event came from and why it died, so it can be inspected and replayed as is.
type kafkaDLQ struct {
	topic, group string
	writer       *kafkago.Writer
}

// Headers added to a dead-lettered record.
const (
	HeaderDLQError     = "dlq_error"
	HeaderDLQAttempts  = "dlq_attempts"
	HeaderDLQTopic     = "dlq_original_topic"
	HeaderDLQPartition = "dlq_original_partition"
	HeaderDLQOffset    = "dlq_original_offset"
	HeaderDLQGroup     = "dlq_consumer_group"
	HeaderDLQTime      = "dlq_time"
)

func (d *kafkaDLQ) deadLetter(ctx context.Context, m kafkago.Message, cause error, attempts int) error {
	headers := append([]kafkago.Header{}, m.Headers...)
	headers = append(headers,
		kafkago.Header{Key: HeaderDLQError, Value: []byte(orderflow.StorableText(cause.Error(), maxErrorBytes))},
		kafkago.Header{Key: HeaderDLQAttempts, Value: []byte(strconv.Itoa(attempts))},
		kafkago.Header{Key: HeaderDLQTopic, Value: []byte(m.Topic)},
		kafkago.Header{Key: HeaderDLQPartition, Value: []byte(strconv.Itoa(m.Partition))},
		kafkago.Header{Key: HeaderDLQOffset, Value: []byte(strconv.FormatInt(m.Offset, 10))},
		kafkago.Header{Key: HeaderDLQGroup, Value: []byte(d.group)},
		kafkago.Header{Key: HeaderDLQTime, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
	)
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := d.writer.WriteMessages(wctx, kafkago.Message{Key: m.Key, Value: m.Value, Headers: headers}); err != nil {
		return fmt.Errorf("producing to %s: %w", d.topic, err)
	}
	return nil
}

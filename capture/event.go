package capture

import (
	"bytes"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"

	"orderflow"
)

// Position is where an event sits in the totally ordered stream the slot replays: the commit
// LSN of its transaction and its index among the outbox rows of that transaction. Commit LSNs
// are unique per transaction and logical decoding replays transactions in commit order, so
// positions grow strictly along the stream, on every replay. That is what lets the last record
// of a partition say exactly which events that partition already holds.
type Position struct {
	LSN pglogrepl.LSN
	Seq uint32
}

// After reports whether p comes later in the stream than q.
func (p Position) After(q Position) bool {
	if p.LSN != q.LSN {
		return p.LSN > q.LSN
	}
	return p.Seq > q.Seq
}

func (p Position) String() string {
	return p.LSN.String() + "#" + strconv.FormatUint(uint64(p.Seq), 10)
}

// Event is one committed outbox row.
type Event struct {
	ID            string
	AggregateType string
	AggregateID   string
	EventType     string
	SchemaVersion int64
	// Payload is the row's jsonb as PostgreSQL printed it; it becomes the CloudEvent's data
	// verbatim.
	Payload   []byte
	CreatedAt time.Time
	// TraceParent is the row's W3C traceparent (docs/TRACING.md), "" when it has none or an
	// invalid one: it becomes the record's ce_traceparent header.
	TraceParent string
}

// CloudEvent is the CloudEvent capture publishes for ev: id = the outbox id, subject = the
// aggregate id, dataschema = the JSON Schema of its type and version (orderflow.DataSchema),
// data = the payload itself, not a copy.
func CloudEvent(ev *Event) *orderflow.CloudEvent {
	return &orderflow.CloudEvent{
		ID:              ev.ID,
		Source:          orderflow.EventSource,
		Type:            ev.EventType,
		Subject:         ev.AggregateID,
		Time:            ev.CreatedAt,
		DataContentType: orderflow.ContentTypeJSON,
		DataSchema:      orderflow.DataSchema(ev.EventType, int(ev.SchemaVersion)),
		SchemaVersion:   int(ev.SchemaVersion),
		TraceParent:     ev.TraceParent,
		Data:            ev.Payload,
	}
}

// newOutEvent is ev ready for the sink, in the CloudEvents Kafka binding's binary mode
// (docs/DATA.md): the key is the aggregate id, the value the payload, the attributes ce_
// headers; recordBatch.add adds pg_lsn and pg_seq.
func newOutEvent(t *txn, pos Position, topic string, ev *Event) *outEvent {
	headers := orderflow.AppendBinaryHeaders(make([]orderflow.Header, 0, 10), CloudEvent(ev))
	return &outEvent{
		txn: t, pos: pos, topic: topic, id: ev.ID, eventType: ev.EventType,
		key: []byte(ev.AggregateID),
		// A copy: the replication decoder reuses the payload's buffer for the next message.
		value:       bytes.Clone(ev.Payload),
		headers:     headers,
		traceParent: ev.TraceParent,
	}
}

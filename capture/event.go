package capture

import (
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
}

// AppendCloudEvent appends ev as the CloudEvent capture publishes (see
// orderflow.AppendCloudEvent for the wire format): id = the outbox id, subject = the aggregate
// id, data = the payload verbatim.
func AppendCloudEvent(b []byte, ev *Event) []byte {
	return orderflow.AppendCloudEvent(b, &orderflow.CloudEvent{
		ID:              ev.ID,
		Source:          orderflow.EventSource,
		Type:            ev.EventType,
		Subject:         ev.AggregateID,
		Time:            ev.CreatedAt,
		DataContentType: "application/json",
		SchemaVersion:   int(ev.SchemaVersion),
		Data:            ev.Payload,
	})
}

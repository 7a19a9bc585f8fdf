package orderflow

import (
	"encoding/json"
	"fmt"
	"time"
)

// Topic names the Kafka topic of an aggregate type: one topic per aggregate, keyed by the
// aggregate id so one order's events stay in order.
func Topic(aggregateType string) string { return "orderflow." + aggregateType }

// Kafka record headers that repeat the event's identity and give its position in the WAL, so
// readers can filter and order without parsing the value.
const (
	HeaderEventID   = "ce_id"
	HeaderEventType = "ce_type"
	HeaderLSN       = "pg_lsn"
	HeaderSeq       = "pg_seq"
)

// CloudEvent is an event as it travels on Kafka and to partners: CloudEvents 1.0 in
// structured JSON mode, id = the outbox row's id, subject = the aggregate id, data = the
// outbox payload, and the extension schemaversion.
type CloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	SchemaVersion   int             `json:"schemaversion"`
	Data            json.RawMessage `json:"data"`
}

// DecodeCloudEvent parses a record value and checks what every consumer relies on. Unknown
// attributes are ignored, as CloudEvents asks of consumers.
func DecodeCloudEvent(b []byte) (*CloudEvent, error) {
	var ev CloudEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		return nil, fmt.Errorf("decoding cloudevent: %w", err)
	}
	switch {
	case ev.SpecVersion != "1.0":
		return nil, fmt.Errorf("decoding cloudevent: specversion %q, want 1.0", ev.SpecVersion)
	case ev.ID == "" || ev.Type == "" || ev.Subject == "":
		return nil, fmt.Errorf("decoding cloudevent: id, type and subject are required")
	case len(ev.Data) == 0:
		return nil, fmt.Errorf("decoding cloudevent %s: no data", ev.ID)
	}
	return &ev, nil
}

// OrderFromEvent decodes the order an order event carries. Only schema version 1 is known;
// a newer one is refused rather than misread.
func OrderFromEvent(ev *CloudEvent) (*Order, error) {
	if ev.SchemaVersion != OrderSchemaVersion {
		return nil, fmt.Errorf("event %s: order schema version %d is not supported (want %d)", ev.ID, ev.SchemaVersion, OrderSchemaVersion)
	}
	var o Order
	if err := json.Unmarshal(ev.Data, &o); err != nil {
		return nil, fmt.Errorf("event %s: decoding order: %w", ev.ID, err)
	}
	if o.ID == "" || o.Version < 1 {
		return nil, fmt.Errorf("event %s: order without id or version", ev.ID)
	}
	return &o, nil
}

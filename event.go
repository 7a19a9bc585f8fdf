package orderflow

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// TopicPrefix is the first part of every topic name orderflow publishes to.
const TopicPrefix = "orderflow"

// Topic names the Kafka topic of an aggregate type: one topic per aggregate, keyed by the
// aggregate id so one order's events stay in order.
func Topic(aggregateType string) string { return PrefixedTopic(TopicPrefix, aggregateType) }

// PrefixedTopic is Topic under another prefix, for a deployment (or a test) that keeps its
// topics apart from the default ones.
func PrefixedTopic(prefix, aggregateType string) string { return prefix + "." + aggregateType }

// Kafka record headers that repeat the event's identity and give its position in the WAL, so
// readers can filter and order without parsing the value.
const (
	HeaderEventID   = "ce_id"
	HeaderEventType = "ce_type"
	HeaderLSN       = "pg_lsn"
	HeaderSeq       = "pg_seq"
)

// EventSource is the CloudEvents source attribute of every event orderflow publishes.
const EventSource = "/orderflow/outbox"

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

// AppendCloudEvent appends ev as a CloudEvents 1.0 structured-mode JSON object, the record
// value on Kafka and the webhook body: specversion (always "1.0"), id, source, type, subject,
// time (UTC, RFC 3339 with nanoseconds), datacontenttype, schemaversion, data, in that order.
// Data is copied verbatim and must be JSON (empty becomes null). It is written by hand because
// capture runs it once per event on its hot path and must not re-encode the payload.
func AppendCloudEvent(b []byte, ev *CloudEvent) []byte {
	b = append(b, `{"specversion":"1.0","id":`...)
	b = appendJSONString(b, ev.ID)
	b = append(b, `,"source":`...)
	b = appendJSONString(b, ev.Source)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, ev.Type)
	b = append(b, `,"subject":`...)
	b = appendJSONString(b, ev.Subject)
	b = append(b, `,"time":"`...)
	b = ev.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","datacontenttype":`...)
	b = appendJSONString(b, ev.DataContentType)
	b = append(b, `,"schemaversion":`...)
	b = strconv.AppendInt(b, int64(ev.SchemaVersion), 10)
	b = append(b, `,"data":`...)
	if len(ev.Data) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, ev.Data...)
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string literal (RFC 8259), replacing invalid UTF-8.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
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

// FactVersion returns the version an event's data states (data.version), or 0 when it states
// none that fits an int32 column. (subject, type, version) is the fact an event announces: its
// original event and any repair of it share it.
func FactVersion(ev *CloudEvent) int {
	var d struct {
		Version int64 `json:"version"`
	}
	if json.Unmarshal(ev.Data, &d) != nil || d.Version < 1 || d.Version > 1<<31-1 {
		return 0
	}
	return int(d.Version)
}

package orderflow

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"orderflow/schemas"
)

// TopicPrefix is the first part of every topic name orderflow publishes to.
const TopicPrefix = "orderflow"

// Topic names the Kafka topic of an aggregate type: one topic per aggregate, keyed by the
// aggregate id so one order's events stay in order.
func Topic(aggregateType string) string { return PrefixedTopic(TopicPrefix, aggregateType) }

// PrefixedTopic is Topic under another prefix, for a deployment (or a test) that keeps its
// topics apart from the default ones.
func PrefixedTopic(prefix, aggregateType string) string { return prefix + "." + aggregateType }

// EventSource is the CloudEvents source attribute of every event orderflow publishes.
const EventSource = "/orderflow/outbox"

// DataSchema is the dataschema attribute of an event of eventType written against schema
// version: the $id of that JSON Schema (schemas.ID), or "" when the repository has no such
// schema, because naming a schema that does not exist would send readers to a 404.
func DataSchema(eventType string, version int) string {
	if !knownSchemas[schemaKey{eventType, version}] {
		return ""
	}
	return schemas.ID(eventType, version)
}

type schemaKey struct {
	eventType string
	version   int
}

// knownSchemas is computed once: DataSchema runs per event on capture's hot path.
var knownSchemas = func() map[schemaKey]bool {
	m := map[schemaKey]bool{}
	for _, et := range schemas.EventTypes() {
		for _, v := range et.Versions {
			m[schemaKey{et.Type, v}] = true
		}
	}
	return m
}()

// ContentTypeJSON is the datacontenttype of every event orderflow writes: its data is JSON.
const ContentTypeJSON = "application/json"

// CloudEvent is an event as it travels on Kafka and to partners: CloudEvents 1.0, id = the
// outbox row's id, subject = the aggregate id, data = the outbox payload, dataschema = the $id
// of the JSON Schema the data was written against, and the extension attributes schemaversion
// (the outbox row's schema_version) and traceparent (W3C Trace Context, the CloudEvents
// distributed tracing extension; empty when the event carries no trace).
//
// On Kafka it travels in binary mode (record.go): the attributes are ce_ headers and the value is
// the data. To partners, and on Kafka records written before the switch, it is one structured
// JSON object (AppendCloudEvent).
type CloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	DataSchema      string          `json:"dataschema,omitempty"`
	SchemaVersion   int             `json:"schemaversion"`
	TraceParent     string          `json:"traceparent,omitempty"`
	Data            json.RawMessage `json:"data"`
}

// AppendCloudEvent appends ev as a CloudEvents 1.0 structured-mode JSON object, the webhook
// body (and the Kafka record value before the switch to binary mode): specversion (always
// "1.0"), id, source, type, subject, time (UTC, RFC 3339 with nanoseconds), datacontenttype,
// dataschema (only when set), schemaversion, traceparent (only when set), data, in that order.
// Data is copied verbatim and must be JSON (empty becomes null). It is written by hand because
// it runs once per event on hot paths and must not re-encode the payload.
//
// An event decoded from a structured record written by this function renders to the same bytes,
// so a webhook body rendered from a decoded record equals the record value of the old format.
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
	if ev.DataSchema != "" {
		b = append(b, `,"dataschema":`...)
		b = appendJSONString(b, ev.DataSchema)
	}
	b = append(b, `,"schemaversion":`...)
	b = strconv.AppendInt(b, int64(ev.SchemaVersion), 10)
	if ev.TraceParent != "" {
		b = append(b, `,"traceparent":`...)
		b = appendJSONString(b, ev.TraceParent)
	}
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

// OrderFromEvent decodes the order an order event carries, whatever schema version of its type
// the event was written against. Versions of one type only add optional fields (docs/SCHEMAS.md),
// so this decoder, written for version 2, reads version 1 (without customer_tier: standard) and any later
// version (ignoring the fields it does not know). A breaking change comes as a new event type,
// which the callers refuse by its type; a version below 1 is no version at all and is refused.
func OrderFromEvent(ev *CloudEvent) (*Order, error) {
	if ev.SchemaVersion < 1 {
		return nil, fmt.Errorf("event %s: order schema version %d is not a version (want 1 or later)", ev.ID, ev.SchemaVersion)
	}
	var o Order
	if err := json.Unmarshal(ev.Data, &o); err != nil {
		return nil, fmt.Errorf("event %s: decoding order: %w", ev.ID, err)
	}
	if o.ID == "" || o.Version < 1 {
		return nil, fmt.Errorf("event %s: order without id or version", ev.ID)
	}
	if o.CustomerTier == "" {
		// Version 1 predates tiers; every order placed before them is standard (the backfill
		// of orders.customer_tier says the same).
		o.CustomerTier = TierStandard
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

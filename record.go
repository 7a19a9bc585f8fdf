package orderflow

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The CloudEvents Kafka protocol binding, binary mode: each attribute of the event is a record
// header named ce_<attribute>, datacontenttype is the content-type header, and the record value
// is the event's data itself (the order JSON). Binary mode suits the people who read the topic:
// Kafka Connect sinks, ksqlDB and Flink read the order without unwrapping an envelope, and every
// attribute can be filtered on without parsing the value.
//
// Records written before the switch are structured mode without a content-type header (the
// value is a whole CloudEvent JSON object). DecodeRecord reads both, so a topic that holds old
// and new records stays readable while consumers and capture switch in any order.

// Header is one Kafka record header. It has the same fields as kafka-go's Header, so an adapter
// converts one with a plain type conversion while the domain imports no Kafka client.
type Header struct {
	Key   string
	Value []byte
}

// Kafka record headers. The ce_ headers are the CloudEvents attributes in binary mode; pg_lsn
// (the transaction's commit LSN, 0/16B3748 form) and pg_seq (the row's index among the outbox
// rows of its transaction) give each record its position in the WAL, so readers can filter and
// order without parsing the value, and capture finds where it left off.
const (
	HeaderSpecVersion   = "ce_specversion"
	HeaderEventID       = "ce_id"
	HeaderSource        = "ce_source"
	HeaderEventType     = "ce_type"
	HeaderSubject       = "ce_subject"
	HeaderTime          = "ce_time"
	HeaderDataSchema    = "ce_dataschema"
	HeaderSchemaVersion = "ce_schemaversion"
	HeaderTraceParent   = "ce_traceparent"
	HeaderContentType   = "content-type"
	HeaderLSN           = "pg_lsn"
	HeaderSeq           = "pg_seq"
)

// headerPrefix marks a CloudEvents attribute header in the Kafka binding.
const headerPrefix = "ce_"

// attributeHeaders are the ce_ headers of the attributes orderflow knows.
var attributeHeaders = map[string]bool{
	HeaderSpecVersion: true, HeaderEventID: true, HeaderSource: true, HeaderEventType: true, HeaderSubject: true,
	HeaderTime: true, HeaderDataSchema: true, HeaderSchemaVersion: true, HeaderTraceParent: true,
}

// AppendBinaryHeaders appends the binary-mode attribute headers of ev to hs and returns the
// extended slice; the record's value is ev.Data and its key the aggregate id. Written:
// ce_specversion (always "1.0"), ce_id, ce_source, ce_type, content-type (ev.DataContentType,
// application/json when empty), and when set ce_subject, ce_time (UTC, RFC 3339 with
// nanoseconds), ce_dataschema, ce_traceparent; ce_schemaversion always. Capture appends its
// pg_lsn and pg_seq after these.
//
// The header values share one buffer: capture calls this once per event on its hot path.
func AppendBinaryHeaders(hs []Header, ev *CloudEvent) []Header {
	contentType := ev.DataContentType
	if contentType == "" {
		contentType = ContentTypeJSON
	}
	size := len("1.0") + len(ev.ID) + len(ev.Source) + len(ev.Type) + len(ev.Subject) + len(contentType) +
		len(ev.DataSchema) + len(ev.TraceParent) + len(time.RFC3339Nano) + 10 + 20
	buf := make([]byte, 0, size)
	add := func(key string, appendValue func([]byte) []byte) {
		start := len(buf)
		buf = appendValue(buf)
		// A full slice expression, so that appending to one header's value can never
		// overwrite the next one's bytes in the shared buffer.
		hs = append(hs, Header{Key: key, Value: buf[start:len(buf):len(buf)]})
	}
	str := func(s string) func([]byte) []byte { return func(b []byte) []byte { return append(b, s...) } }
	add(HeaderSpecVersion, str("1.0"))
	add(HeaderEventID, str(ev.ID))
	add(HeaderSource, str(ev.Source))
	add(HeaderEventType, str(ev.Type))
	if ev.Subject != "" {
		add(HeaderSubject, str(ev.Subject))
	}
	if !ev.Time.IsZero() {
		add(HeaderTime, func(b []byte) []byte { return ev.Time.UTC().AppendFormat(b, time.RFC3339Nano) })
	}
	add(HeaderContentType, str(contentType))
	if ev.DataSchema != "" {
		add(HeaderDataSchema, str(ev.DataSchema))
	}
	add(HeaderSchemaVersion, func(b []byte) []byte { return strconv.AppendInt(b, int64(ev.SchemaVersion), 10) })
	if ev.TraceParent != "" {
		add(HeaderTraceParent, str(ev.TraceParent))
	}
	return hs
}

// DecodeRecord decodes a Kafka record as a CloudEvent, in whichever mode it was written, the way
// the CloudEvents Kafka binding tells them apart:
//   - a content-type header starting with application/cloudevents is structured mode (only
//     the JSON format, application/cloudevents+json, is read);
//   - otherwise a ce_specversion header is binary mode;
//   - a record with neither is orderflow's structured record from before the switch.
//
// On top of what CloudEvents requires (specversion 1.0, id, source, type, attribute values that
// are valid strings), orderflow's consumers need a subject and JSON data; a record without them is
// refused. In binary mode the event's Data is value itself, not a copy. Unknown extension
// attributes are ignored, as CloudEvents asks of consumers; headers that are not attributes
// (pg_lsn, pg_seq) are not part of the event.
func DecodeRecord(headers []Header, value []byte) (*CloudEvent, error) {
	var ev *CloudEvent
	var err error
	switch mode, contentType := RecordModeOf(headers); mode {
	case ModeStructured:
		mt, _, perr := mime.ParseMediaType(contentType)
		if perr != nil || mt != "application/cloudevents+json" {
			return nil, fmt.Errorf("decoding structured record: content-type %q, want application/cloudevents+json", contentType)
		}
		ev, err = DecodeCloudEvent(value)
	case ModeBinary:
		ev, err = decodeBinary(headers, value)
	case ModeLegacy:
		ev, err = DecodeCloudEvent(value)
	default:
		return nil, fmt.Errorf("decoding record: content-type %q without %s is not a CloudEvent", contentType, HeaderSpecVersion)
	}
	if err != nil {
		return nil, err
	}
	if err := checkAttributes(ev); err != nil {
		return nil, fmt.Errorf("decoding record %q: %w", ev.ID, err)
	}
	return ev, nil
}

// RecordMode is how a Kafka record carries its CloudEvent.
type RecordMode string

const (
	// ModeBinary: attributes in ce_ headers, the data as the value.
	ModeBinary RecordMode = "binary"
	// ModeStructured: the whole event as the value, announced by content-type.
	ModeStructured RecordMode = "structured"
	// ModeLegacy: orderflow's records from before the switch to binary mode, a structured
	// event as the value without the content-type header that would announce it.
	ModeLegacy RecordMode = "legacy"
	// ModeUnknown: a content-type that is no event format, and no ce_specversion.
	ModeUnknown RecordMode = "unknown"
)

// RecordModeOf tells the modes apart the way the CloudEvents Kafka binding does, and returns
// the content-type header too. See DecodeRecord.
func RecordModeOf(headers []Header) (mode RecordMode, contentType string) {
	var hasContentType, hasSpecVersion bool
	for _, h := range headers {
		switch strings.ToLower(h.Key) {
		case HeaderContentType:
			contentType, hasContentType = string(h.Value), true
		case HeaderSpecVersion:
			hasSpecVersion = true
		}
	}
	switch {
	case hasContentType && strings.HasPrefix(strings.ToLower(contentType), "application/cloudevents"):
		return ModeStructured, contentType
	case hasSpecVersion:
		return ModeBinary, contentType
	case hasContentType:
		return ModeUnknown, contentType
	}
	return ModeLegacy, ""
}

// decodeBinary reads a binary-mode record: attributes from the ce_ headers, data from the value.
func decodeBinary(headers []Header, value []byte) (*CloudEvent, error) {
	ev := &CloudEvent{}
	seen := make(map[string]bool, 12)
	for _, h := range headers {
		key := strings.ToLower(h.Key)
		if key != HeaderContentType && !strings.HasPrefix(key, headerPrefix) {
			continue
		}
		if seen[key] {
			// Two values for one attribute: whichever a reader picked, another reader could
			// pick the other one.
			return nil, fmt.Errorf("decoding binary record: header %s appears more than once", key)
		}
		seen[key] = true
		if !utf8.Valid(h.Value) {
			return nil, fmt.Errorf("decoding binary record: header %s is not valid UTF-8", key)
		}
		v := string(h.Value)
		if v == "" && (key == HeaderContentType || attributeHeaders[key]) {
			// CloudEvents has no empty attribute: an absent one has no header.
			return nil, fmt.Errorf("decoding binary record: header %s is empty", key)
		}
		switch key {
		case HeaderSpecVersion:
			ev.SpecVersion = v
		case HeaderEventID:
			ev.ID = v
		case HeaderSource:
			ev.Source = v
		case HeaderEventType:
			ev.Type = v
		case HeaderSubject:
			ev.Subject = v
		case HeaderContentType:
			ev.DataContentType = v
		case HeaderDataSchema:
			ev.DataSchema = v
		case HeaderTraceParent:
			ev.TraceParent = v
		case HeaderTime:
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return nil, fmt.Errorf("decoding binary record: %s %q is not an RFC 3339 time", key, v)
			}
			ev.Time = t
		case HeaderSchemaVersion:
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("decoding binary record: %s %q is not an integer", key, v)
			}
			ev.SchemaVersion = n
		default:
			if !validAttributeName(strings.TrimPrefix(key, headerPrefix)) {
				return nil, fmt.Errorf("decoding binary record: header %s does not name a CloudEvents attribute", key)
			}
		}
	}
	switch {
	case ev.SpecVersion != "1.0":
		return nil, fmt.Errorf("decoding binary record: specversion %q, want 1.0", ev.SpecVersion)
	case ev.ID == "" || ev.Type == "" || ev.Subject == "":
		return nil, errors.New("decoding binary record: id, type and subject are required")
	case !isJSONMediaType(ev.DataContentType):
		return nil, fmt.Errorf("decoding binary record %s: content-type %q, want application/json", ev.ID, ev.DataContentType)
	case len(value) == 0:
		return nil, fmt.Errorf("decoding binary record %s: no data", ev.ID)
	case !json.Valid(value):
		// The data is rendered verbatim into the webhook body, which must stay JSON.
		return nil, fmt.Errorf("decoding binary record %s: data is not JSON", ev.ID)
	}
	ev.Data = value
	return ev, nil
}

// checkAttributes holds a decoded event, from either mode, to the CloudEvents type system, so
// that anything DecodeRecord accepts an SDK reader accepts too, and a webhook body rendered from
// it is valid JSON.
func checkAttributes(ev *CloudEvent) error {
	for _, a := range []struct{ name, value string }{
		{"id", ev.ID}, {"source", ev.Source}, {"type", ev.Type}, {"subject", ev.Subject},
	} {
		if strings.TrimSpace(a.value) == "" {
			return fmt.Errorf("%s is required and must not be blank", a.name)
		}
	}
	for _, a := range []struct{ name, value string }{
		{"id", ev.ID}, {"source", ev.Source}, {"type", ev.Type}, {"subject", ev.Subject},
		{"datacontenttype", ev.DataContentType}, {"dataschema", ev.DataSchema}, {"traceparent", ev.TraceParent},
	} {
		if err := checkString(a.value); err != nil {
			return fmt.Errorf("%s: %w", a.name, err)
		}
	}
	if _, err := url.Parse(ev.Source); err != nil {
		return fmt.Errorf("source %q is not a URI reference", ev.Source)
	}
	if ev.DataSchema != "" {
		if u, err := url.Parse(ev.DataSchema); err != nil || !u.IsAbs() {
			return fmt.Errorf("dataschema %q is not an absolute URI", ev.DataSchema)
		}
	}
	if ev.DataContentType != "" && !isJSONMediaType(ev.DataContentType) {
		// Consumers decode the data as JSON, and the webhook body embeds it as JSON.
		return fmt.Errorf("datacontenttype %q, want application/json", ev.DataContentType)
	}
	return nil
}

// checkString applies the CloudEvents String type: valid Unicode without control characters
// (U+0000-U+001F, U+007F-U+009F) or noncharacters. PostgreSQL, where consumers store ids and
// subjects, would refuse a NUL anyway.
func checkString(s string) error {
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			return errors.New("not valid UTF-8")
		case unicode.IsControl(r):
			return fmt.Errorf("control character %U", r)
		case isNoncharacter(r):
			return fmt.Errorf("noncharacter %U", r)
		}
	}
	return nil
}

// isNoncharacter reports the 66 code points Unicode reserves as noncharacters.
func isNoncharacter(r rune) bool {
	return r >= 0xFDD0 && r <= 0xFDEF || r&0xFFFE == 0xFFFE
}

// validAttributeName follows CloudEvents: attribute names are lower-case ASCII letters and
// digits. The Kafka binding lowercases header names, so upper-case ones arrive lowered.
func validAttributeName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// isJSONMediaType accepts application/json and any +json type, with parameters.
func isJSONMediaType(s string) bool {
	mt, _, err := mime.ParseMediaType(s)
	return err == nil && (mt == ContentTypeJSON || strings.HasSuffix(mt, "+json"))
}

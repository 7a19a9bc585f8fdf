package capture

import (
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// LSN is a PostgreSQL write-ahead log position.
type LSN uint64

// String formats the LSN the way PostgreSQL does ("0/16B3748").
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l)) }

// ParseLSN parses the "0/16B3748" form.
func ParseLSN(s string) (LSN, error) {
	var hi, lo uint32
	if _, err := fmt.Sscanf(s, "%X/%X", &hi, &lo); err != nil {
		return 0, fmt.Errorf("parsing lsn %q: %w", s, err)
	}
	return LSN(uint64(hi)<<32 | uint64(lo)), nil
}

// Position is where an event sits in the totally ordered stream the slot replays: the commit
// LSN of its transaction and its index among the outbox rows of that transaction. Commit LSNs
// are unique per transaction and logical decoding replays transactions in commit order, so
// positions grow strictly along the stream, on every replay. That is what lets the last record
// of a partition say exactly which events that partition already holds.
type Position struct {
	LSN LSN
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

// Source is the CloudEvents source attribute of every event capture publishes.
const Source = "/orderflow/outbox"

// AppendCloudEvent appends ev as a CloudEvents 1.0 structured-mode JSON object. It is written
// by hand because it runs once per event on the hot path and must not re-encode the payload.
func AppendCloudEvent(b []byte, ev *Event) []byte {
	b = append(b, `{"specversion":"1.0","id":`...)
	b = appendJSONString(b, ev.ID)
	b = append(b, `,"source":`...)
	b = appendJSONString(b, Source)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, ev.EventType)
	b = append(b, `,"subject":`...)
	b = appendJSONString(b, ev.AggregateID)
	b = append(b, `,"time":"`...)
	b = ev.CreatedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","datacontenttype":"application/json","schemaversion":`...)
	b = strconv.AppendInt(b, ev.SchemaVersion, 10)
	b = append(b, `,"data":`...)
	b = append(b, ev.Payload...)
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

package tail

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"orderflow"
)

// writeHuman prints a record as a position line, its headers one per line, and its value:
//
//	--- orderflow.order partition 2 offset 15, 2026-01-02T03:04:05.123Z, key 0195…, binary
//	ce_specversion: 1.0
//	…
//	pg_seq: 0
//	{"id":"0195…", …}
func writeHuman(w io.Writer, rec record) error {
	var b strings.Builder
	m := rec.msg
	fmt.Fprintf(&b, "--- %s partition %d offset %d, %s, key %s, %s", m.Topic, m.Partition, m.Offset,
		m.Time.UTC().Format(time.RFC3339Nano), printable(m.Key), rec.mode)
	if rec.err != nil {
		fmt.Fprintf(&b, ", undecodable: %v", rec.err)
	}
	b.WriteByte('\n')
	for _, h := range rec.headers {
		fmt.Fprintf(&b, "%s: %s\n", printable([]byte(h.Key)), printable(h.Value))
	}
	b.WriteString(printable(m.Value))
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}

// printable is b as text when it is valid UTF-8 without control characters other than
// newlines and tabs, and Go-quoted otherwise, so a hostile record cannot drive the terminal.
func printable(b []byte) string {
	if utf8.Valid(b) && !strings.ContainsFunc(string(b), func(r rune) bool {
		return r != '\n' && r != '\t' && (r < 0x20 || r >= 0x7f && r < 0xa0)
	}) {
		return string(b)
	}
	return fmt.Sprintf("%q", b)
}

// jsonRecord is one record in -json output. Event is the decoded event as a structured
// CloudEvent (the webhook body), so `jq .event.data.status` works for either record mode;
// Value is the raw value, only when the record could not be decoded.
type jsonRecord struct {
	Topic     string            `json:"topic"`
	Partition int               `json:"partition"`
	Offset    int64             `json:"offset"`
	Timestamp time.Time         `json:"timestamp"`
	Key       string            `json:"key"`
	Headers   map[string]string `json:"headers"`
	Mode      string            `json:"mode"`
	Event     json.RawMessage   `json:"event,omitempty"`
	Error     string            `json:"error,omitempty"`
	Value     *string           `json:"value,omitempty"`
}

func writeJSON(w io.Writer, rec record) error {
	m := rec.msg
	out := jsonRecord{
		Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Timestamp: m.Time.UTC(),
		Key: string(m.Key), Headers: make(map[string]string, len(rec.headers)), Mode: string(rec.mode),
	}
	for _, h := range rec.headers {
		out.Headers[h.Key] = string(h.Value)
	}
	if rec.event != nil {
		out.Event = orderflow.AppendCloudEvent(nil, rec.event)
	} else {
		out.Error = rec.err.Error()
		v := string(m.Value)
		out.Value = &v
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

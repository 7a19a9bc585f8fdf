package eventtrace

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"orderflow"
	"orderflow/internal/tracing"
)

// WriteJSON writes the report as one JSON object.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for a person: one section per stage, in pipeline order.
func WriteText(w io.Writer, r *Report) error {
	var b strings.Builder
	line := func(section, format string, args ...any) {
		fmt.Fprintf(&b, "%-11s %s\n", section, fmt.Sprintf(format, args...))
	}
	more := func(format string, args ...any) { fmt.Fprintf(&b, "%-11s %s\n", "", fmt.Sprintf(format, args...)) }

	head := "event " + r.EventID
	if r.EventType != "" {
		head += ": " + r.EventType
	}
	if r.OrderID != "" {
		head += " of order " + r.OrderID
	}
	if r.Version > 0 {
		head += fmt.Sprintf(" at version %d", r.Version)
	}
	b.WriteString(head + "\n")

	if ob := r.Outbox; ob != nil {
		line("outbox", "written %s, schema version %d%s", stamp(ob.CreatedAt), ob.SchemaVersion, traceOf(ob.TraceParent))
	} else {
		line("outbox", "no row: deleted by capture's retention (-retention, 7 days by default), or never written to this database")
	}
	if rp := r.Repair; rp != nil {
		line("repair", "a reconcile repair (%s) of version %d, claimed %s", rp.Kind, rp.Version, stamp(rp.CreatedAt))
	}

	if k := r.Kafka; k != nil {
		pos := ""
		if lsn, ok := k.Headers[orderflow.HeaderLSN]; ok {
			pos = fmt.Sprintf(", pg_lsn %s pg_seq %s", lsn, k.Headers[orderflow.HeaderSeq])
		}
		pos += traceOf(k.Headers[orderflow.HeaderTraceParent])
		line("kafka", "%s partition %d offset %d, %s record%s, produced %s", k.Topic, k.Partition, k.Offset, k.Mode, pos, stamp(k.Timestamp))
	} else {
		line("kafka", "%s", r.Search)
	}

	writeReadModel(line, r)
	for _, dl := range r.ProjectorDeadLetters {
		line("projector", "dead-lettered from %s[%d]@%d after %d attempts: %s", dl.Topic, dl.Partition, dl.Offset, dl.Attempts, dl.Error)
	}

	if len(r.Deliveries) == 0 {
		line("deliveries", "none (no enabled endpoint subscribed to the type when the deliverer read the record, or it has not read it yet)")
	}
	for i, d := range r.Deliveries {
		section := ""
		if i == 0 {
			section = "deliveries"
		}
		line(section, "endpoint %s %s: %s", d.EndpointID, d.EndpointURL, deliveryState(d))
		for _, a := range d.Attempts {
			status := "-"
			if a.Status != nil {
				status = fmt.Sprint(*a.Status)
			}
			s := fmt.Sprintf("  #%d %s %s %s %.0fms", a.Attempt, stamp(a.StartedAt), status, a.Outcome, a.LatencyMS)
			if a.Error != "" {
				s += " " + fmt.Sprintf("%q", a.Error)
			}
			more("%s", s)
		}
	}

	if rc := r.Receipt; rc != nil {
		s := "received " + stamp(rc.ReceivedAt)
		if rc.CallbackAction != "" {
			s += fmt.Sprintf(", callback %s %s", rc.CallbackAction, rc.CallbackState)
			if rc.CallbackDoneAt != nil {
				s += " " + stamp(*rc.CallbackDoneAt)
			}
		}
		line("partner", "%s", s)
	} else {
		line("partner", "no receipt of webhook-id %s in this database", r.EventID)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeReadModel(line func(section, format string, args ...any), r *Report) {
	o := r.Order
	switch {
	case o == nil:
		line("read model", "unknown: no stage names the event's order")
		return
	case !o.Exists:
		line("read model", "order %s is not in the orders table", o.OrderID)
	}
	s := o.Summary
	if s == nil {
		line("read model", "no summary of order %s%s", o.OrderID, truth(o))
		return
	}
	var verdict string
	switch {
	case strings.EqualFold(s.LastEventID, r.EventID):
		verdict = "this event produced the row"
	case r.Version > 0 && s.Version >= r.Version:
		verdict = fmt.Sprintf("applied or superseded (the event carries version %d); the row came from event %s", r.Version, s.LastEventID)
	case r.Version > 0:
		verdict = fmt.Sprintf("not applied yet: the event carries version %d", r.Version)
	default:
		verdict = "the row came from event " + s.LastEventID
	}
	line("read model", "version %d %s, projected %s: %s%s", s.Version, s.Status, stamp(s.ProjectedAt), verdict, truth(o))
}

// truth is the order's state in the source of truth, for comparison with the read model.
func truth(o *orderflow.OrderTrace) string {
	if !o.Exists {
		return ""
	}
	return fmt.Sprintf(" (orders: version %d %s)", o.Version, o.Status)
}

func deliveryState(d orderflow.DeliveryTrace) string {
	n := len(d.Attempts)
	s := string(d.State)
	switch {
	case d.State == orderflow.DeliverySucceeded && d.SucceededAt != nil:
		s = fmt.Sprintf("succeeded %s", stamp(*d.SucceededAt))
	case d.State == orderflow.DeliveryDead && d.DeadAt != nil:
		s = fmt.Sprintf("dead since %s (a dead letter: replay with POST /v1/admin/dead-letters/%s/replay)", stamp(*d.DeadAt), d.ID)
	case d.State == orderflow.DeliveryPending && d.NextAttempt != nil:
		s = fmt.Sprintf("pending, next attempt %s", stamp(*d.NextAttempt))
	}
	s += fmt.Sprintf(", %d attempt%s", n, plural(n))
	if d.Replays > 0 {
		s += fmt.Sprintf(", replayed %d time%s", d.Replays, plural(d.Replays))
	}
	return s
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// traceOf names the trace of a traceparent, the id to search a tracing backend for
// (docs/TRACING.md), or is empty when there is none.
func traceOf(traceparent string) string {
	tp, err := tracing.Parse(traceparent)
	if err != nil {
		return ""
	}
	return ", trace " + tp.TraceIDString()
}

package projector

import (
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	kafkago "github.com/segmentio/kafka-go"

	"orderflow"
	"orderflow/internal/kafka"
)

// unknownTypeError is an event the projector does not know; it is counted and skipped, not
// dead-lettered, because new event types are a normal way for the topic to grow.
type unknownTypeError struct{ id, typ string }

func (e *unknownTypeError) Error() string {
	return fmt.Sprintf("event %s: unknown type %q", e.id, e.typ)
}

// stateEvents are the event types that carry the whole order at its new version. Reconcile's
// repair events use the same types (see docs/RECONCILE.md), so they need no special case.
var stateEvents = map[string]bool{
	orderflow.EventOrderCreated:   true,
	orderflow.EventOrderCancelled: true,
	orderflow.EventOrderFulfilled: true,
}

// decodeSummary turns a record into the summary row it asks for, and the event's time. The
// record may be binary mode (what capture writes) or a structured one from before the switch.
// Anything that could not become a valid row is an error here, before the database sees it,
// so that a bad event is dead-lettered instead of failing its whole batch.
func decodeSummary(headers []kafkago.Header, value []byte) (*orderflow.Summary, time.Time, error) {
	ev, err := orderflow.DecodeRecord(kafka.Headers(headers), value)
	if err != nil {
		return nil, time.Time{}, err
	}
	if !stateEvents[ev.Type] {
		return nil, time.Time{}, &unknownTypeError{id: ev.ID, typ: ev.Type}
	}
	if _, err := uuid.Parse(ev.ID); err != nil {
		return nil, time.Time{}, fmt.Errorf("event %q: id is not a uuid", ev.ID)
	}
	o, err := orderflow.OrderFromEvent(ev)
	if err != nil {
		return nil, time.Time{}, err
	}
	switch {
	case o.ID != ev.Subject:
		return nil, time.Time{}, fmt.Errorf("event %s: subject %q is not the order id %q", ev.ID, ev.Subject, o.ID)
	case uuid.Validate(o.ID) != nil:
		return nil, time.Time{}, fmt.Errorf("event %s: order id %q is not a uuid", ev.ID, o.ID)
	case o.CustomerID == "" || len(o.Currency) != 3:
		return nil, time.Time{}, fmt.Errorf("event %s: order without customer or with currency %q", ev.ID, o.Currency)
	case o.Status != orderflow.StatusPending && o.Status != orderflow.StatusCancelled && o.Status != orderflow.StatusFulfilled:
		return nil, time.Time{}, fmt.Errorf("event %s: unknown order status %q", ev.ID, o.Status)
	case strings.ContainsRune(o.CustomerID+o.Currency+o.CancelReason, 0):
		// PostgreSQL text cannot hold NUL; the row would be refused forever.
		return nil, time.Time{}, fmt.Errorf("event %s: NUL character in a text field", ev.ID)
	case ev.Time.IsZero():
		return nil, time.Time{}, fmt.Errorf("event %s: no time", ev.ID)
	}
	var units int64
	for _, it := range o.Items {
		units += it.Quantity
	}
	return &orderflow.Summary{
		OrderID: o.ID, CustomerID: o.CustomerID, Status: o.Status, TotalCents: o.TotalCents,
		ItemCount: units, Currency: o.Currency, Version: o.Version, CancelReason: o.CancelReason,
		CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt,
		LastEventID: ev.ID, LastEventType: ev.Type, LastEventAt: ev.Time,
	}, ev.Time, nil
}

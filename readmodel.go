package orderflow

import "time"

// Types the projector, reconcile and the PostgreSQL adapter exchange. They live in the
// domain so neither side imports the other to borrow them.

// ProjectorDeadLetter records an event the projector sent to its dead-letter topic.
type ProjectorDeadLetter struct {
	Topic     string
	Partition int
	Offset    int64
	EventID   string
	OrderID   string
	Error     string
	Attempts  int
}

// OrderState is one order as reconcile compares it: the source of truth and its summary, if
// any.
type OrderState struct {
	OrderID        string
	Status         Status
	Version        int
	CreatedAt      time.Time
	UpdatedAt      time.Time
	HasSummary     bool
	SummaryStatus  Status
	SummaryVersion int
}

// UndeliveredEvent is an order event that an enabled endpoint subscribed to, with neither a
// successful delivery nor a dead letter for it.
type UndeliveredEvent struct {
	EventID    string
	EventType  string
	OrderID    string
	At         time.Time
	EndpointID string
	// Pending is true when a delivery exists and is still being retried; false when none
	// exists at all (the event never reached the deliverer's intake).
	Pending bool
}

// Repair is the outcome of RepublishOrder.
type Repair struct {
	EventID string
	Version int
	// Published is true when this call wrote the outbox row; false when a repair of the same
	// order version is still in flight (written less than the cooldown ago) and this call
	// wrote nothing.
	Published bool
}

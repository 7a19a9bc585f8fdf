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
// any, and the repair of its current version, if one was made.
type OrderState struct {
	OrderID        string
	Status         Status
	Version        int
	CreatedAt      time.Time
	UpdatedAt      time.Time
	HasSummary     bool
	SummaryStatus  Status
	SummaryVersion int
	Repair         *RepairState
}

// UndeliveredEvent is an order event that an enabled endpoint subscribed to (its type or "*")
// and that has no delivery of its fact for that endpoint (Missing), or only one still pending
// past the deliverer's retry horizon (Stuck).
type UndeliveredEvent struct {
	EventID    string
	EventType  string
	OrderID    string
	Version    int
	At         time.Time
	EndpointID string
	// Stuck is true when a delivery exists but is still pending although its cycle began
	// before the horizon: the deliverer is not settling it. False: no delivery at all (the event
	// never reached the deliverer's intake).
	Stuck          bool
	CycleStartedAt time.Time
	// Repair is the repair of the event's fact, if one was made.
	Repair *RepairState
}

// RepairState is what reconcile_repairs holds about the repair of one fact.
type RepairState struct {
	EventID     string
	PublishedAt time.Time
	// Refused is true when PostgreSQL refused the repair for its values; Reason says why. Such
	// a fact is never tried again.
	Refused bool
	Reason  string
	// Reported is true once the repair has been reported as not clearing its finding.
	Reported bool
}

// Repair is the outcome of publishing a repair.
type Repair struct {
	EventID string
	Version int
	// Published is true when this call wrote the outbox row. Refused is true when this call's
	// repair was refused by the database for its values (and recorded as such). Neither: the
	// fact was repaired before (State says how), and this call wrote nothing.
	Published bool
	Refused   bool
	State     RepairState
}

// FailedCallback is a callback the mock partner gave up on: it failed for good and waits in
// the partner's replayable list. Reconcile reports it.
type FailedCallback struct {
	WebhookID string
	OrderID   string
	Action    string
	Attempts  int
	Error     string
	FailedAt  time.Time
}

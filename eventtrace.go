package orderflow

import (
	"encoding/json"
	"time"
)

// Types `orderflow trace EVENT_ID` exchanges with the PostgreSQL adapter: where one event is in
// each table of the pipeline. Kafka's part is found by the trace itself.

// EventTrace is what the database knows about one event id.
type EventTrace struct {
	// Outbox is the event's outbox row; nil when there is none (capture's retention deleted
	// it, or the id was never written to this database's outbox).
	Outbox *OutboxRow `json:"outbox"`
	// Repair is set when the event is a reconcile repair.
	Repair *RepairRow `json:"repair,omitempty"`
	// Deliveries are the webhook deliveries of the event, one per endpoint, oldest first.
	Deliveries []DeliveryTrace `json:"deliveries"`
	// ProjectorDeadLetters are the times the projector gave up on the event.
	ProjectorDeadLetters []ProjectorDeadLetter `json:"projector_dead_letters"`
	// Receipt is the mock partner's receipt of the webhook; nil when it has none (or the
	// partner's tables do not exist in this database).
	Receipt *PartnerReceipt `json:"partner_receipt"`
}

// OutboxRow is one row of the outbox.
type OutboxRow struct {
	ID            string          `json:"id"`
	AggregateType string          `json:"aggregate_type"`
	AggregateID   string          `json:"aggregate_id"`
	EventType     string          `json:"event_type"`
	SchemaVersion int             `json:"schema_version"`
	Payload       json.RawMessage `json:"payload"`
	CreatedAt     time.Time       `json:"created_at"`
	// TraceParent is the W3C traceparent of the request that wrote the row, "" for none.
	TraceParent string `json:"traceparent,omitempty"`
}

// RepairRow is a reconcile repair claim.
type RepairRow struct {
	OrderID   string    `json:"order_id"`
	Version   int       `json:"version"`
	Kind      string    `json:"kind"`
	CreatedAt time.Time `json:"created_at"`
}

// DeliveryTrace is one webhook delivery of an event and every attempt made at it.
type DeliveryTrace struct {
	ID          string         `json:"id"`
	EventType   string         `json:"event_type"`
	Subject     string         `json:"subject"`
	EndpointID  string         `json:"endpoint_id"`
	EndpointURL string         `json:"endpoint_url"`
	State       DeliveryState  `json:"state"`
	Replays     int            `json:"replays"`
	CreatedAt   time.Time      `json:"created_at"`
	SucceededAt *time.Time     `json:"succeeded_at,omitempty"`
	DeadAt      *time.Time     `json:"dead_at,omitempty"`
	NextAttempt *time.Time     `json:"next_attempt_at,omitempty"`
	Attempts    []AttemptTrace `json:"attempts"`
}

// AttemptTrace is one attempt at a delivery, as webhook_delivery_attempts records it.
type AttemptTrace struct {
	Attempt   int       `json:"attempt"`
	StartedAt time.Time `json:"started_at"`
	LatencyMS float64   `json:"latency_ms"`
	Status    *int      `json:"status,omitempty"`
	Outcome   string    `json:"outcome"`
	Error     string    `json:"error,omitempty"`
}

// PartnerReceipt is the mock partner's record of a webhook and the callback it scheduled.
type PartnerReceipt struct {
	ReceivedAt     time.Time  `json:"received_at"`
	CallbackAction string     `json:"callback_action,omitempty"`
	CallbackState  string     `json:"callback_state,omitempty"`
	CallbackDoneAt *time.Time `json:"callback_done_at,omitempty"`
}

// OrderTrace is an order as the source of truth and the read model hold it.
type OrderTrace struct {
	OrderID string `json:"order_id"`
	// Exists is false when the orders table has no such order.
	Exists  bool   `json:"exists"`
	Status  Status `json:"status,omitempty"`
	Version int    `json:"version,omitempty"`
	// Summary is the read model's row; nil when the projector has none.
	Summary *Summary `json:"summary"`
}

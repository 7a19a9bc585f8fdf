package orderflow

import "time"

// Webhook delivery types. They live at the root because three packages speak them: the
// deliverer sends them, the PostgreSQL adapter stores them and the API shows them; none of
// those may import another to borrow a type.

// Error codes of the webhook admin surface, rendered by the API as problem types.
const (
	ECodeEndpointNotFound   = "endpoint-not-found"
	ECodeDeadLetterNotFound = "dead-letter-not-found"
	ECodeEndpointDisabled   = "endpoint-disabled"
	ECodeNotDeadLetter      = "delivery-not-dead"
)

// DefaultDeliveryMaxAge is the deliverer's default retry horizon: no retry of a delivery
// cycle starts later than this after the cycle began. Reconcile's delivery horizon and the
// partner's receipt retention are measured against it.
const DefaultDeliveryMaxAge = 24 * time.Hour

// DeliveryState is where a delivery is. A delivery is pending until it succeeds or runs out
// of attempts or age; a dead delivery is a dead letter until it is replayed, which makes it
// pending again. The values are stored in webhook_deliveries.state and shown by the API.
type DeliveryState string

const (
	DeliveryPending   DeliveryState = "pending"
	DeliverySucceeded DeliveryState = "succeeded"
	DeliveryDead      DeliveryState = "dead"
)

// Endpoint is a partner's URL and what it subscribed to. Secret is only filled when it is
// shown once: at creation and at rotation.
type Endpoint struct {
	ID                      string     `json:"id"`
	URL                     string     `json:"url"`
	EventTypes              []string   `json:"event_types"`
	Secret                  string     `json:"secret,omitempty"`
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
	Disabled                bool       `json:"disabled"`
	DisabledAt              *time.Time `json:"disabled_at,omitempty"`
	DisabledReason          string     `json:"disabled_reason,omitempty"`
	// RateLimit is the most deliveries per second sent to the endpoint, by all deliverers
	// together; nil for no limit.
	RateLimit *int `json:"rate_limit,omitempty"`
	// FailingSince is when the endpoint's current run of failed attempts began; nil while its
	// last attempt succeeded. A deliverer disables an endpoint failing for too long.
	FailingSince *time.Time `json:"failing_since,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
}

// NewEndpoint is an endpoint an administrator registers.
type NewEndpoint struct {
	URL        string
	EventTypes []string
	RateLimit  *int // nil: no limit
}

// EndpointChange is an administrator's update of an endpoint; what it leaves nil stays as it is.
type EndpointChange struct {
	URL        *string
	EventTypes []string
	// SetRateLimit says RateLimit is to be stored: a number, or nil to remove the limit.
	SetRateLimit bool
	RateLimit    *int
}

// EventWebhookTest is the type of the event an administrator sends to try an endpoint. It goes
// to that endpoint only, whatever it subscribed to, and never through Kafka.
const EventWebhookTest = "webhook.test"

// WebhookTestData is the data of a webhook.test event (schemas/webhook.test/v1.json).
type WebhookTestData struct {
	EndpointID string `json:"endpoint_id"`
	Message    string `json:"message"`
}

// EndpointResponder renders the outcome of an admin change to an endpoint, the endpoint or a
// domain error, into the response stored with its idempotency key, in the same transaction as
// the change.
type EndpointResponder func(e Endpoint, err error) Response

// DeliveryResponder renders the outcome of an admin request that queues a delivery (a test event),
// the delivery or a domain error, into the response stored with its idempotency key.
type DeliveryResponder func(d DeadLetter, err error) Response

// DeadLetter is a delivery that gave up: which event, to which endpoint, after how many
// attempts, and the last answer.
type DeadLetter struct {
	ID            string        `json:"id"`
	EventID       string        `json:"event_id"`
	EventType     string        `json:"event_type"`
	Subject       string        `json:"subject"`
	EndpointID    string        `json:"endpoint_id"`
	EndpointURL   string        `json:"endpoint_url"`
	State         DeliveryState `json:"state"`
	Attempts      int           `json:"attempts"`
	LastStatus    *int          `json:"last_status,omitempty"`
	LastError     string        `json:"last_error,omitempty"`
	LastAttemptAt *time.Time    `json:"last_attempt_at,omitempty"`
	DeadAt        *time.Time    `json:"dead_at,omitempty"`
	Replays       int           `json:"replays"`
	CreatedAt     time.Time     `json:"created_at"`
}

// DeliveryAttempt is one recorded attempt with the delivery it belongs to, as the admin API lists
// attempts per endpoint and per event. ID orders attempts: a later attempt has a larger id.
type DeliveryAttempt struct {
	ID         int64     `json:"id"`
	DeliveryID string    `json:"delivery_id"`
	EventID    string    `json:"event_id"`
	EventType  string    `json:"event_type"`
	EndpointID string    `json:"endpoint_id"`
	Attempt    int       `json:"attempt"`
	StartedAt  time.Time `json:"started_at"`
	LatencyMS  float64   `json:"latency_ms"`
	Status     *int      `json:"status,omitempty"`
	Outcome    string    `json:"outcome"`
	Error      string    `json:"error,omitempty"`
}

// AttemptQuery pages through attempts, newest first: those of one endpoint or of one event.
type AttemptQuery struct {
	EndpointID string
	EventID    string
	// Before is the id of the last attempt of the previous page; 0 for the first page.
	Before int64
	Limit  int
}

// WebhookEvent is what the deliverer's intake persists for one record: the CloudEvent's
// identity and its exact bytes, because the signature covers the body byte for byte.
type WebhookEvent struct {
	ID      string
	Type    string
	Subject string
	Time    time.Time
	// Version is the version the event's data states (data.version), 0 when it states none:
	// with Subject and Type it names the fact, so a repair of a fact an endpoint already has a
	// delivery for gets no second one.
	Version int
	Payload []byte
	// TraceParent is the event's W3C traceparent (its record's ce_traceparent), "" for none:
	// every attempt to deliver it is a span of that trace.
	TraceParent string
}

// IntakeDeadLetter is a record the deliverer's intake gave up on: not a CloudEvent, or refused
// by the database for its values. The record stays on the topic at Topic/Partition/Offset.
type IntakeDeadLetter struct {
	Topic     string
	Partition int
	Offset    int64
	EventID   string
	Subject   string
	Error     string
	Attempts  int
}

// DeliveryClaim asks for due deliveries. InFlight counts what the claiming process holds per
// endpoint (attempts running and claimed deliveries queued for a slot), so a claim never takes
// more for one endpoint than PerEndpoint allows: a slow endpoint fills its own slots and queue
// and leaves the pool to the others.
type DeliveryClaim struct {
	Limit       int
	PerEndpoint int
	InFlight    map[string]int
	Lease       time.Duration
}

// Delivery is one claimed delivery, ready to send.
type Delivery struct {
	ID         string
	EventID    string
	EventType  string
	EndpointID string
	URL        string
	// Secrets are the endpoint's current secret and, during a rotation, the previous one.
	Secrets        []string
	Payload        []byte
	EventTime      time.Time
	Attempts       int // before this attempt
	CycleStartedAt time.Time
	ClaimToken     string
	// RateLimit is the endpoint's deliveries per second; 0 for no limit.
	RateLimit int
	// TraceParent is the event's traceparent, "" for none: each attempt is a child span of it
	// and sends its own as the traceparent header.
	TraceParent string
}

// Attempt is the audit record of one POST.
type Attempt struct {
	Number    int
	StartedAt time.Time
	Latency   time.Duration
	Status    int // 0 when no response came back
	Outcome   string
	Error     string
}

// DeliveryResult is what an attempt leads to.
type DeliveryResult struct {
	State         DeliveryState
	NextAttemptAt time.Time
	// DisableReason, when set, disables the endpoint (it answered 410 Gone).
	DisableReason string
}

// DeliveryReport is one attempt and what it leads to, as the sender hands it to the store.
type DeliveryReport struct {
	Delivery Delivery
	Attempt  Attempt
	Result   DeliveryResult
}

// DeliveryStats is the state of the delivery tables, for the gauges.
type DeliveryStats struct {
	Pending     int64
	Retrying    int64 // pending with at least one failed attempt
	Dead        int64
	OldestDueMS float64
}

// Package deliver sends orderflow's events to partners as signed Standard Webhooks.
//
// Delivery is two loops that never wait on each other. The intake reads the order topic in
// its own consumer group and, per event, writes one pending delivery for every enabled
// endpoint subscribed to the event's type, then commits the Kafka offsets: a slow or dead
// endpoint can never hold up a partition. The sender claims due deliveries from PostgreSQL,
// POSTs them with a bounded number of attempts in flight per endpoint and overall, and
// schedules retries with exponential backoff and full jitter until the delivery succeeds or
// becomes a dead letter that an operator can replay.
package deliver

import (
	"net/url"
	"time"
)

// Error codes of the webhook admin surface, rendered by the API as problem types.
const (
	ECodeEndpointNotFound   = "endpoint-not-found"
	ECodeDeadLetterNotFound = "dead-letter-not-found"
	ECodeEndpointDisabled   = "endpoint-disabled"
	ECodeNotDeadLetter      = "delivery-not-dead"
)

// Delivery states. A delivery is pending until it succeeds or runs out of attempts or age;
// a dead delivery is a dead letter until it is replayed, which makes it pending again.
const (
	StatePending   = "pending"
	StateSucceeded = "succeeded"
	StateDead      = "dead"
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
	CreatedAt               time.Time  `json:"created_at"`
}

// ValidEndpointURL reports whether u can be a webhook target: an absolute http(s) URL.
func ValidEndpointURL(u string) bool {
	p, err := url.Parse(u)
	return err == nil && (p.Scheme == "http" || p.Scheme == "https") && p.Host != "" && len(u) <= 2048
}

// DeadLetter is a delivery that gave up: which event, to which endpoint, after how many
// attempts, and the last answer.
type DeadLetter struct {
	ID            string     `json:"id"`
	EventID       string     `json:"event_id"`
	EventType     string     `json:"event_type"`
	Subject       string     `json:"subject"`
	EndpointID    string     `json:"endpoint_id"`
	EndpointURL   string     `json:"endpoint_url"`
	State         string     `json:"state"`
	Attempts      int        `json:"attempts"`
	LastStatus    *int       `json:"last_status,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	LastAttemptAt *time.Time `json:"last_attempt_at,omitempty"`
	DeadAt        *time.Time `json:"dead_at,omitempty"`
	Replays       int        `json:"replays"`
	CreatedAt     time.Time  `json:"created_at"`
}

// Event is what the intake persists for one record: the CloudEvent's identity and its exact
// bytes, because the signature covers the body byte for byte.
type Event struct {
	ID      string
	Type    string
	Subject string
	Time    time.Time
	Payload []byte
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

// Result is what an attempt leads to.
type Result struct {
	State         string
	NextAttemptAt time.Time
	// DisableReason, when set, disables the endpoint (it answered 410 Gone).
	DisableReason string
}

// Report is one attempt and what it leads to, as the sender hands it to the store.
type Report struct {
	Delivery Delivery
	Attempt  Attempt
	Result   Result
}

// Stats is the state of the delivery tables, for the gauges.
type Stats struct {
	Pending     int64
	Retrying    int64 // pending with at least one failed attempt
	Dead        int64
	OldestDueMS float64
}

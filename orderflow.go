// Package orderflow is the domain: orders, their items, the events they emit and the errors
// the rest of the system speaks in. It imports no database or broker; adapters live in
// sub-packages named after their technology (postgres, capture's kafka-go sink, api's HTTP).
package orderflow

import (
	"errors"
	"fmt"
	"time"
)

// Status is where an order is in its life: pending until the partner fulfills it or someone
// cancels it; both ends are final.
type Status string

const (
	StatusPending   Status = "pending"
	StatusCancelled Status = "cancelled"
	StatusFulfilled Status = "fulfilled"
)

// Event types written to the outbox; they become the CloudEvents `type` on the topic.
const (
	EventOrderCreated   = "order.created"
	EventOrderCancelled = "order.cancelled"
	EventOrderFulfilled = "order.fulfilled"
)

// AggregateOrder is the outbox aggregate type of orders; its topic is orderflow.order.
const AggregateOrder = "order"

// OrderSchemaVersion is the version of the order payload that new events carry: the schema
// version of schemas/<type>/v<n>.json their data is written against, in the outbox's
// schema_version and the events' schemaversion and dataschema. Version 2 added customer_tier.
//
// The rule (docs/SCHEMAS.md): a new version of a type only adds optional fields, so a reader
// written for any earlier version reads it; a breaking change is a new event type instead.
// Bump it with a new schema file for every order event type.
const OrderSchemaVersion = 2

// Customer tiers. A tier is what the API accepts today; events and readers treat the set as
// open (docs/SCHEMAS.md), so a tier added later is not a breaking change.
const (
	TierStandard = "standard"
	TierGold     = "gold"
	TierPlatinum = "platinum"
)

// CustomerTiers lists the tiers the API accepts, the default first.
var CustomerTiers = []string{TierStandard, TierGold, TierPlatinum}

// Order is an order as the API returns it and as its events carry it.
type Order struct {
	ID           string    `json:"id"`
	CustomerID   string    `json:"customer_id"`
	Currency     string    `json:"currency"`
	Status       Status    `json:"status"`
	Items        []Item    `json:"items"`
	TotalCents   int64     `json:"total_cents"`
	Version      int       `json:"version"`
	CancelReason string    `json:"cancel_reason,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	// CustomerTier is the customer's tier when the order was placed: standard unless the client
	// named another, and standard for every order placed before tiers existed (events of
	// schema version 1 lack the field; OrderFromEvent fills it in).
	CustomerTier string `json:"customer_tier,omitempty"`
}

// Item is one line of an order.
type Item struct {
	SKU            string `json:"sku"`
	Quantity       int64  `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// Limits on what an order may hold. They keep every total far inside int64:
// 100 items × 10,000 units × 10^9 cents = 10^15.
const (
	MaxItems          = 100
	MaxQuantity       = 10_000
	MaxUnitPriceCents = 1_000_000_000
	MaxIDLength       = 64
	MaxReasonLength   = 500
)

// NewOrder is what a client asks for when it creates an order.
type NewOrder struct {
	CustomerID string
	Currency   string
	Items      []Item
	// CustomerTier is the tier the client named, empty for the default (standard). It is left
	// empty for the default so that a request's idempotency fingerprint, taken over NewOrder, is
	// what it was before tiers existed: a client retrying across the upgrade gets its replay.
	CustomerTier string `json:",omitempty"`
}

// Tier is the order's customer tier: the one named, or standard.
func (n NewOrder) Tier() string {
	if n.CustomerTier == "" {
		return TierStandard
	}
	return n.CustomerTier
}

// Total is the sum of the items' prices; Validate guarantees it cannot overflow.
func (n NewOrder) Total() int64 {
	var t int64
	for _, it := range n.Items {
		t += it.Quantity * it.UnitPriceCents
	}
	return t
}

// Quantities sums the quantity per SKU, so an order naming a SKU twice reserves it once.
func (n NewOrder) Quantities() map[string]int64 {
	q := make(map[string]int64, len(n.Items))
	for _, it := range n.Items {
		q[it.SKU] += it.Quantity
	}
	return q
}

// Action is a state change requested on an existing order.
type Action string

const (
	ActionCancel  Action = "cancel"
	ActionFulfill Action = "fulfill"
)

// Target is the status an action leads to.
func (a Action) Target() Status {
	if a == ActionCancel {
		return StatusCancelled
	}
	return StatusFulfilled
}

// Event is the event type an action emits.
func (a Action) Event() string {
	if a == ActionCancel {
		return EventOrderCancelled
	}
	return EventOrderFulfilled
}

// Error codes. They are stable: the API turns each into a problem type URI, clients match on it.
const (
	ECodeValidation         = "validation-failed"
	ECodeNotFound           = "order-not-found"
	ECodeInsufficientStock  = "insufficient-stock"
	ECodeInvalidTransition  = "invalid-transition"
	ECodeKeyReused          = "idempotency-key-reused"
	ECodeStockBelowReserved = "stock-below-reserved"
	ECodeInternal           = "internal"
)

// Error is a domain error: a stable code, a message for humans, and for validation errors the
// problem with each field.
type Error struct {
	Code    string
	Message string
	Fields  []FieldProblem
	// SKUs names the items that could not be reserved (insufficient-stock only).
	SKUs []string
}

// FieldProblem says what is wrong with one field, named by a JSON pointer (RFC 6901).
type FieldProblem struct {
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf returns a domain error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first domain error in err's chain, or ECodeInternal.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ECodeInternal
}

// IdempotencyKey identifies one client request that must take effect at most once: the
// client's key plus a fingerprint of what was asked, so a key reused for another request
// is recognised and refused.
type IdempotencyKey struct {
	ClientID    string
	Key         string
	Fingerprint []byte
}

// Response is the answer stored with an idempotency key and replayed byte for byte.
type Response struct {
	Status   int
	Body     []byte
	Location string
	// Replayed is true when the response comes from an earlier request with the same key.
	Replayed bool
}

// Responder renders the outcome of a request, an order or a domain error, into the response
// that is stored with the idempotency key in the same transaction as the change itself.
type Responder func(o *Order, err error) Response

// Role is what an API key may do. Roles do not nest: an admin key runs the admin routes and
// nothing else, a fulfiller key fulfills and cancels and nothing else, so a leaked key gives
// away exactly one kind of power.
type Role string

const (
	// RoleClient creates orders and reads or changes only its own.
	RoleClient Role = "client"
	// RoleFulfiller is the fulfillment partner: it may fulfill or cancel any order.
	RoleFulfiller Role = "fulfiller"
	// RoleAdmin runs the admin routes (webhook endpoints, dead letters, inventory).
	RoleAdmin Role = "admin"
)

// Roles lists every role, in the order the docs and the CLI name them.
var Roles = []Role{RoleClient, RoleFulfiller, RoleAdmin}

// Valid reports whether r is one of Roles.
func (r Role) Valid() bool {
	for _, v := range Roles {
		if r == v {
			return true
		}
	}
	return false
}

// Client is an authenticated API key: the client it acts for and its role. Several keys may
// act for one client (a rotation, a second service); orders and idempotency keys belong to
// the client, not to the key.
type Client struct {
	ID    string
	KeyID string
	Role  Role
}

// APIKey is an API key as operators list it: never the key itself, which is stored only as
// a digest and shown once, when it is created.
type APIKey struct {
	ID        string     `json:"id"`
	ClientID  string     `json:"client_id"`
	Role      Role       `json:"role"`
	Name      string     `json:"name"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// Scope says whose orders a read or a change may touch. The zero Scope matches no order at
// all, so a caller that forgets to set one fails closed instead of seeing every client's
// orders.
type Scope struct {
	owner string
	any   bool
}

// OwnedBy is the scope of one client's own orders.
func OwnedBy(clientID string) Scope { return Scope{owner: clientID} }

// AnyClient is the scope of every order, for the fulfiller and for operators' tools.
var AnyClient = Scope{any: true}

// All reports whether the scope covers every client's orders.
func (s Scope) All() bool { return s.any }

// Owner is the client whose orders the scope covers when it does not cover all; "" matches
// no order.
func (s Scope) Owner() string { return s.owner }

// Stock is one SKU's inventory.
type Stock struct {
	SKU       string `json:"sku"`
	Stock     int64  `json:"stock"`
	Reserved  int64  `json:"reserved"`
	Available int64  `json:"available"`
}

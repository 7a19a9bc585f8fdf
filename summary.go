package orderflow

import (
	"errors"
	"time"
)

// Summary is one row of the order_summary read model: the order as of Version, and the event
// that put it there.
type Summary struct {
	OrderID       string    `json:"order_id"`
	CustomerID    string    `json:"customer_id"`
	Status        Status    `json:"status"`
	TotalCents    int64     `json:"total_cents"`
	ItemCount     int64     `json:"item_count"`
	Currency      string    `json:"currency"`
	Version       int       `json:"version"`
	CancelReason  string    `json:"cancel_reason,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
	LastEventID   string    `json:"last_event_id"`
	LastEventType string    `json:"last_event_type"`
	LastEventAt   time.Time `json:"last_event_at"`
	ProjectedAt   time.Time `json:"projected_at"`
}

// ErrNotProjected is returned by a summary store when the order exists but the projector has not
// written its summary yet.
var ErrNotProjected = errors.New("order not projected yet")

// SummaryCursor is a position in a customer's listing: the last row of the previous page.
type SummaryCursor struct {
	CreatedAt time.Time `json:"t"`
	OrderID   string    `json:"id"`
}

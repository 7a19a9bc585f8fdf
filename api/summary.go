package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"orderflow"
)

// codeSummaryNotProjected: the order exists but the projector has not written its summary
// yet. Distinct from order-not-found so a client knows to retry rather than give up.
const codeSummaryNotProjected = "summary-not-projected"

// FreshnessObjective is the projector's freshness objective: every order change committed
// longer ago than this is expected to be in the read model. The summary endpoint reports it
// as max_lag_seconds, and reconcile's default freshness SLA is the same value.
const FreshnessObjective = 5 * time.Second

// notProjectedRetryAfter is the Retry-After of summary-not-projected, in seconds: the
// projector usually applies an event well within a second.
const notProjectedRetryAfter = 1

// freshness tells a client how far it can trust a summary. See docs/PROJECTOR.md.
type freshness struct {
	// LastEventAt is the time of the event the summary reflects: the commit-time timestamp of
	// the order change. ProjectedAt is when the projector wrote it.
	LastEventAt time.Time `json:"last_event_at"`
	ProjectedAt time.Time `json:"projected_at"`
	// LagMS is ProjectedAt - LastEventAt: how far behind the projector was when it applied
	// the event.
	LagMS int64 `json:"lag_ms"`
	// MaxLagSeconds is the freshness objective: changes older than this are expected to be
	// reflected.
	MaxLagSeconds float64 `json:"max_lag_seconds"`
	// SourceVersion is the order's version in the source of truth at the time of this read;
	// Stale is true when it is newer than the summary's version (a change is in flight).
	SourceVersion int  `json:"source_version"`
	Stale         bool `json:"stale"`
}

type summaryResponse struct {
	Data      orderflow.Summary `json:"data"`
	Freshness freshness         `json:"freshness"`
}

func (s *Server) handleGetSummary() http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		sum, sourceVersion, err := s.store.OrderSummary(r.Context(), scopeOf(clientFrom(r.Context())), mux.Vars(r)["id"])
		if errors.Is(err, orderflow.ErrNotProjected) {
			w.Header().Set("Retry-After", strconv.Itoa(notProjectedRetryAfter))
			return orderflow.Errorf(codeSummaryNotProjected,
				"the order exists but its summary is not projected yet; retry after %d s or read /v1/orders/{id}", notProjectedRetryAfter)
		}
		if err != nil {
			return err
		}
		w.Header().Set("Cache-Control", "no-store")
		encode(w, http.StatusOK, summaryResponse{Data: sum, Freshness: freshness{
			LastEventAt:   sum.LastEventAt,
			ProjectedAt:   sum.ProjectedAt,
			LagMS:         max(sum.ProjectedAt.Sub(sum.LastEventAt).Milliseconds(), 0),
			MaxLagSeconds: FreshnessObjective.Seconds(),
			SourceVersion: sourceVersion,
			Stale:         sourceVersion > sum.Version,
		}})
		return nil
	})
}

// Page sizes of GET /v1/customers/{id}/orders.
const (
	defaultPageSize = 50
	maxPageSize     = 200
)

type customerOrdersResponse struct {
	Data []orderflow.Summary `json:"data"`
	// NextCursor is absent on the last page.
	NextCursor string `json:"next_cursor,omitempty"`
}

func (s *Server) handleListCustomerOrders() http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		limit := defaultPageSize
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxPageSize {
				return &orderflow.Error{Code: orderflow.ECodeValidation, Message: "invalid query parameter",
					Fields: []orderflow.FieldProblem{{Pointer: "#/query/limit", Detail: "must be an integer from 1 to " + strconv.Itoa(maxPageSize)}}}
			}
			limit = n
		}
		customerID := mux.Vars(r)["id"]
		// Only what PostgreSQL would refuse with a 500; a merely unknown id lists nothing.
		// len(customerID) as the limit never binds, since runes never outnumber bytes.
		if p := orderflow.ValidateText(customerID, len(customerID)); p != "" {
			return &orderflow.Error{Code: orderflow.ECodeValidation, Message: "invalid customer id",
				Fields: []orderflow.FieldProblem{{Pointer: "#/path/id", Detail: p}}}
		}
		var after *orderflow.SummaryCursor
		if v := q.Get("cursor"); v != "" {
			c, err := decodeCursor(v)
			if err != nil {
				return &orderflow.Error{Code: orderflow.ECodeValidation, Message: "invalid query parameter",
					Fields: []orderflow.FieldProblem{{Pointer: "#/query/cursor", Detail: "is not a cursor this API returned"}}}
			}
			after = &c
		}
		// One row more than the page tells whether there is a next page without a count.
		rows, err := s.store.CustomerSummaries(r.Context(), scopeOf(clientFrom(r.Context())), customerID, after, limit+1)
		if err != nil {
			return err
		}
		if rows == nil {
			// An empty page is an empty list, as the document says, whatever the store returns.
			rows = []orderflow.Summary{}
		}
		resp := customerOrdersResponse{Data: rows}
		if len(rows) > limit {
			resp.Data = rows[:limit]
			last := resp.Data[limit-1]
			resp.NextCursor = encodeCursor(orderflow.SummaryCursor{CreatedAt: last.CreatedAt, OrderID: last.OrderID})
		}
		w.Header().Set("Cache-Control", "no-store")
		encode(w, http.StatusOK, resp)
		return nil
	})
}

// Cursors are opaque to clients: base64url of the last row's position. They are not signed;
// a forged cursor can only select another position in the same customer's listing.
func encodeCursor(c orderflow.SummaryCursor) string {
	b, _ := json.Marshal(c) // a time and a string
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (orderflow.SummaryCursor, error) {
	var c orderflow.SummaryCursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, err
	}
	if c.CreatedAt.IsZero() || c.OrderID == "" {
		return c, errors.New("incomplete cursor")
	}
	return c, nil
}

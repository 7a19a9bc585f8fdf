package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gorilla/mux"

	"orderflow"
)

// Limits of the attempt listings.
const (
	defaultAttempts = 50
	maxAttempts     = 500
)

// handleListAttempts pages through the attempts at one endpoint's deliveries (byEndpoint) or at
// one event's, newest first; next_before is the cursor for the following page.
func (s *Server) handleListAttempts(byEndpoint bool) http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		a, err := s.webhooks()
		if err != nil {
			return err
		}
		q := r.URL.Query()
		var ps []orderflow.FieldProblem
		query := orderflow.AttemptQuery{Limit: defaultAttempts}
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxAttempts {
				ps = append(ps, orderflow.FieldProblem{Pointer: "#/query/limit", Detail: fmt.Sprintf("must be an integer from 1 to %d", maxAttempts)})
			}
			query.Limit = n
		}
		if v := q.Get("before"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1 {
				ps = append(ps, orderflow.FieldProblem{Pointer: "#/query/before", Detail: "must be an attempt id (a positive integer)"})
			}
			query.Before = n
		}
		if len(ps) > 0 {
			return validationError(ps)
		}
		id := mux.Vars(r)["id"]
		if byEndpoint {
			query.EndpointID = id
		} else {
			if p := orderflow.ValidateText(id, 200); p != "" {
				return validationError([]orderflow.FieldProblem{{Pointer: "#/path/event_id", Detail: p}})
			}
			query.EventID = id
		}
		attempts, err := a.Attempts(r.Context(), query)
		if err != nil {
			return err
		}
		body := map[string]any{"data": attempts}
		if attempts == nil {
			body["data"] = []orderflow.DeliveryAttempt{}
		}
		if len(attempts) == query.Limit {
			last := strconv.FormatInt(attempts[len(attempts)-1].ID, 10)
			n := url.Values{}
			for k, v := range q {
				n[k] = v
			}
			n.Set("before", last)
			body["next_before"] = attempts[len(attempts)-1].ID
			body["next"] = r.URL.Path + "?" + n.Encode()
		}
		encode(w, http.StatusOK, body)
		return nil
	})
}

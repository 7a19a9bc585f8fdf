package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"orderflow"
	"orderflow/webhook"
)

// webhookAdmin is what the webhook admin routes need. The store given to New provides it when
// it can (postgres.DB does), so New keeps its one store argument and a store without webhooks
// still serves orders.
type webhookAdmin interface {
	CreateEndpoint(ctx context.Context, url string, eventTypes []string, secret string) (orderflow.Endpoint, error)
	Endpoints(ctx context.Context) ([]orderflow.Endpoint, error)
	DisableEndpoint(ctx context.Context, id, reason string) (orderflow.Endpoint, error)
	EnableEndpoint(ctx context.Context, id string) (orderflow.Endpoint, error)
	RotateEndpointSecret(ctx context.Context, id, secret string, grace time.Duration) (orderflow.Endpoint, error)
	DeadLetters(ctx context.Context, endpointID, after string, limit int) ([]orderflow.DeadLetter, error)
	ReplayDeadLetter(ctx context.Context, id string) (orderflow.DeadLetter, error)
}

// Limits of the webhook admin API.
const (
	maxEventTypes       = 20
	defaultRotateGrace  = 24 * time.Hour
	maxRotateGrace      = 7 * 24 * time.Hour
	defaultDeadLetters  = 50
	maxDeadLettersLimit = 500
)

// eventTypePattern follows Standard Webhooks' advice for event type names: dot-separated
// identifiers of [a-zA-Z0-9_]. "*" subscribes to every type.
var eventTypePattern = regexp.MustCompile(`^[a-zA-Z0-9_]+(\.[a-zA-Z0-9_]+)*$`)

var errNoWebhookStore = errors.New("the store does not manage webhooks")

func (s *Server) webhooks() (webhookAdmin, error) {
	a, ok := s.store.(webhookAdmin)
	if !ok {
		return nil, errNoWebhookStore
	}
	return a, nil
}

type createEndpointRequest struct {
	URL        string   `json:"url"`
	EventTypes []string `json:"event_types"`
}

func (req createEndpointRequest) problems() []orderflow.FieldProblem {
	var ps []orderflow.FieldProblem
	if !orderflow.ValidEndpointURL(req.URL) {
		ps = append(ps, orderflow.FieldProblem{Pointer: "/url", Detail: "must be an absolute http or https URL of at most 2048 characters"})
	}
	if len(req.EventTypes) == 0 || len(req.EventTypes) > maxEventTypes {
		ps = append(ps, orderflow.FieldProblem{Pointer: "/event_types", Detail: fmt.Sprintf("must list 1 to %d event types", maxEventTypes)})
	}
	seen := map[string]bool{}
	for i, t := range req.EventTypes {
		switch {
		case t != "*" && (!eventTypePattern.MatchString(t) || len(t) > 100):
			ps = append(ps, orderflow.FieldProblem{Pointer: fmt.Sprintf("/event_types/%d", i), Detail: `must be like "order.created", or "*" for every type`})
		case seen[t]:
			ps = append(ps, orderflow.FieldProblem{Pointer: fmt.Sprintf("/event_types/%d", i), Detail: "is listed twice"})
		}
		seen[t] = true
	}
	return ps
}

func validationError(ps []orderflow.FieldProblem) error {
	e := orderflow.Errorf(orderflow.ECodeValidation, "%d field(s) are not valid", len(ps))
	e.Fields = ps
	return e
}

// handleCreateEndpoint registers an endpoint and shows its secret, the only time it is shown
// apart from a rotation.
func (s *Server) handleCreateEndpoint() http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		a, err := s.webhooks()
		if err != nil {
			return err
		}
		var req createEndpointRequest
		if err := decode(r, &req, false); err != nil {
			return err
		}
		if ps := req.problems(); len(ps) > 0 {
			return validationError(ps)
		}
		secret, err := webhook.NewSecret()
		if err != nil {
			return err
		}
		ep, err := a.CreateEndpoint(r.Context(), req.URL, req.EventTypes, secret)
		if err != nil {
			return err
		}
		s.log.Info("webhook endpoint created", "endpoint_id", ep.ID, "event_types", ep.EventTypes, "client_id", clientFrom(r.Context()).ID)
		w.Header().Set("Location", "/v1/admin/endpoints/"+ep.ID)
		encode(w, http.StatusCreated, ep)
		return nil
	})
}

func (s *Server) handleListEndpoints() http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		a, err := s.webhooks()
		if err != nil {
			return err
		}
		eps, err := a.Endpoints(r.Context())
		if err != nil {
			return err
		}
		if eps == nil {
			eps = []orderflow.Endpoint{}
		}
		encode(w, http.StatusOK, map[string]any{"data": eps})
		return nil
	})
}

type disableEndpointRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) handleDisableEndpoint() http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		a, err := s.webhooks()
		if err != nil {
			return err
		}
		var req disableEndpointRequest
		if err := decode(r, &req, true); err != nil {
			return err
		}
		if len(req.Reason) > orderflow.MaxReasonLength {
			return validationError([]orderflow.FieldProblem{{Pointer: "/reason", Detail: fmt.Sprintf("must be at most %d characters", orderflow.MaxReasonLength)}})
		}
		if req.Reason == "" {
			req.Reason = "disabled by an administrator"
		}
		ep, err := a.DisableEndpoint(r.Context(), mux.Vars(r)["id"], req.Reason)
		if err != nil {
			return err
		}
		s.log.Info("webhook endpoint disabled", "endpoint_id", ep.ID, "client_id", clientFrom(r.Context()).ID)
		encode(w, http.StatusOK, ep)
		return nil
	})
}

func (s *Server) handleEnableEndpoint() http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		a, err := s.webhooks()
		if err != nil {
			return err
		}
		ep, err := a.EnableEndpoint(r.Context(), mux.Vars(r)["id"])
		if err != nil {
			return err
		}
		s.log.Info("webhook endpoint enabled", "endpoint_id", ep.ID, "client_id", clientFrom(r.Context()).ID)
		encode(w, http.StatusOK, ep)
		return nil
	})
}

type rotateSecretRequest struct {
	GraceSeconds *intField `json:"grace_seconds"`
}

// handleRotateSecret issues a new secret. The old one keeps signing next to it for the grace
// period (default a day), so the partner can switch whenever it likes within it.
func (s *Server) handleRotateSecret() http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		a, err := s.webhooks()
		if err != nil {
			return err
		}
		var req rotateSecretRequest
		if err := decode(r, &req, true); err != nil {
			return err
		}
		grace := defaultRotateGrace
		if req.GraceSeconds != nil {
			if p := req.GraceSeconds.problem(0, int64(maxRotateGrace/time.Second)); p != "" {
				return validationError([]orderflow.FieldProblem{{Pointer: "/grace_seconds", Detail: p}})
			}
			grace = time.Duration(req.GraceSeconds.n) * time.Second
		}
		secret, err := webhook.NewSecret()
		if err != nil {
			return err
		}
		ep, err := a.RotateEndpointSecret(r.Context(), mux.Vars(r)["id"], secret, grace)
		if err != nil {
			return err
		}
		s.log.Info("webhook secret rotated", "endpoint_id", ep.ID, "grace", grace, "client_id", clientFrom(r.Context()).ID)
		encode(w, http.StatusOK, ep)
		return nil
	})
}

// handleListDeadLetters pages through dead letters in the order they died; next_after is the
// cursor for the following page.
func (s *Server) handleListDeadLetters() http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		a, err := s.webhooks()
		if err != nil {
			return err
		}
		q := r.URL.Query()
		limit := defaultDeadLetters
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxDeadLettersLimit {
				return validationError([]orderflow.FieldProblem{{Pointer: "limit", Detail: fmt.Sprintf("must be an integer from 1 to %d", maxDeadLettersLimit)}})
			}
			limit = n
		}
		letters, err := a.DeadLetters(r.Context(), q.Get("endpoint_id"), q.Get("after"), limit)
		if err != nil {
			return err
		}
		body := map[string]any{"data": letters}
		if letters == nil {
			body["data"] = []orderflow.DeadLetter{}
		}
		if len(letters) == limit {
			body["next_after"] = letters[len(letters)-1].ID
			body["next"] = "/v1/admin/dead-letters?" + nextQuery(q, letters[len(letters)-1].ID)
		}
		encode(w, http.StatusOK, body)
		return nil
	})
}

func nextQuery(q url.Values, after string) string {
	n := url.Values{}
	for k, v := range q {
		n[k] = v
	}
	n.Set("after", after)
	return n.Encode()
}

// handleReplayDeadLetter queues a dead letter again with a fresh budget of attempts. It is
// idempotent: replaying a delivery that is already pending again changes nothing.
func (s *Server) handleReplayDeadLetter() http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		a, err := s.webhooks()
		if err != nil {
			return err
		}
		l, err := a.ReplayDeadLetter(r.Context(), mux.Vars(r)["id"])
		if err != nil {
			return err
		}
		s.log.Info("dead letter replayed", "delivery_id", l.ID, "event_id", l.EventID, "endpoint_id", l.EndpointID, "client_id", clientFrom(r.Context()).ID)
		encode(w, http.StatusAccepted, l)
		return nil
	})
}

package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/gorilla/mux"

	"orderflow"
	"orderflow/internal/httpserver"
)

// routes is the API's whole surface in one place.
func (s *Server) routes() http.Handler {
	r := mux.NewRouter()
	r.Use(s.metrics.instrument, s.traced)

	r.Handle("/healthz", s.handleHealthz()).Methods(http.MethodGet)
	r.Handle("/readyz", s.handleReadyz()).Methods(http.MethodGet)
	r.Handle("/openapi.json", OpenAPIHandler()).Methods(http.MethodGet)
	// Registered before the /v1 subrouter: what the events look like is public.
	r.Handle("/v1/event-types", s.handleEventTypes()).Methods(http.MethodGet)
	r.Handle("/v1/schemas/{type}/{version:[0-9]+}.json", s.handleSchema()).Methods(http.MethodGet)

	v1 := r.PathPrefix("/v1").Subrouter()
	v1.Use(s.requireClient)
	// After authentication, so a client over its rate is answered 429 without taking a slot.
	v1.Use(s.admit)
	client := s.allow(orderflow.RoleClient)
	changer := s.allow(orderflow.RoleClient, orderflow.RoleFulfiller)
	admin := s.allow(orderflow.RoleAdmin)
	v1.Handle("/orders", client(s.handleCreateOrder())).Methods(http.MethodPost)
	v1.Handle("/orders/{id}", client(s.handleGetOrder())).Methods(http.MethodGet)
	v1.Handle("/orders/{id}/summary", client(s.handleGetSummary())).Methods(http.MethodGet)
	v1.Handle("/customers/{id}/orders", client(s.handleListCustomerOrders())).Methods(http.MethodGet)
	v1.Handle("/orders/{id}/cancel", changer(s.handleChangeOrder("cancel"))).Methods(http.MethodPost)
	v1.Handle("/orders/{id}/fulfill", changer(s.handleChangeOrder("fulfill"))).Methods(http.MethodPost)
	v1.Handle("/inventory/{sku}", admin(s.handleSetStock())).Methods(http.MethodPut)
	v1.Handle("/admin/endpoints", admin(s.handleCreateEndpoint())).Methods(http.MethodPost)
	v1.Handle("/admin/endpoints", admin(s.handleListEndpoints())).Methods(http.MethodGet)
	v1.Handle("/admin/endpoints/{id}", admin(s.handleGetEndpoint())).Methods(http.MethodGet)
	v1.Handle("/admin/endpoints/{id}", admin(s.handleUpdateEndpoint())).Methods(http.MethodPatch)
	v1.Handle("/admin/endpoints/{id}", admin(s.handleDeleteEndpoint())).Methods(http.MethodDelete)
	v1.Handle("/admin/endpoints/{id}/disable", admin(s.handleDisableEndpoint())).Methods(http.MethodPost)
	v1.Handle("/admin/endpoints/{id}/enable", admin(s.handleEnableEndpoint())).Methods(http.MethodPost)
	v1.Handle("/admin/endpoints/{id}/rotate-secret", admin(s.handleRotateSecret())).Methods(http.MethodPost)
	v1.Handle("/admin/endpoints/{id}/test", admin(s.handleSendTestEvent())).Methods(http.MethodPost)
	v1.Handle("/admin/endpoints/{id}/recover", admin(s.handleRecoverDeadLetters())).Methods(http.MethodPost)
	v1.Handle("/admin/endpoints/{id}/attempts", admin(s.handleListAttempts(true))).Methods(http.MethodGet)
	v1.Handle("/admin/events/{id}/attempts", admin(s.handleListAttempts(false))).Methods(http.MethodGet)
	v1.Handle("/admin/dead-letters", admin(s.handleListDeadLetters())).Methods(http.MethodGet)
	v1.Handle("/admin/dead-letters/{id}/replay", admin(s.handleReplayDeadLetter())).Methods(http.MethodPost)

	r.NotFoundHandler = s.metrics.instrument(s.handleUnmatched(r))
	r.MethodNotAllowedHandler = s.metrics.instrument(s.handleProblem(codeMethodNotAllowed))
	return r
}

// OpsHandler serves what operators scrape and probe, /metrics, /healthz and /readyz, for a
// listener of its own: the public listener does not serve /metrics, so clients and whoever
// reaches the API from outside cannot read it.
func (s *Server) OpsHandler() http.Handler {
	return httpserver.OpsHandler(s.reg, func(ctx context.Context) error {
		if err := s.store.Ping(ctx); err != nil {
			// Say what is down, not the driver's error, which may name hosts and users.
			return errors.New("database unavailable")
		}
		return nil
	}, nil)
}

// handler is the shape of every handler: it writes the success itself and returns an error
// for everything else, which is rendered as a problem.
func (s *Server) handle(h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			writeError(w, r, s.log, err)
		}
	})
}

// handleUnmatched answers a request no route took: 405 when the path exists for another
// method, else 404. gorilla/mux 1.8.1 reports a method mismatch inside the /v1 subrouter as
// not found (a later route sharing the /v1 prefix clears it), so the router is asked again
// with each method the API serves.
func (s *Server) handleUnmatched(root *mux.Router) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			var match mux.RouteMatch
			if root.Match(probe, &match) && match.MatchErr == nil {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeProblem(w, s.log, newProblem(codeMethodNotAllowed, "", r.URL.Path))
			return
		}
		writeProblem(w, s.log, newProblem(codeRouteNotFound, "", r.URL.Path))
	})
}

func (s *Server) handleProblem(code string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, s.log, newProblem(code, "", r.URL.Path))
	})
}

package api

import (
	"net/http"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"orderflow"
)

// routes is the API's whole surface in one place.
func (s *Server) routes() http.Handler {
	r := mux.NewRouter()
	r.Use(s.metrics.instrument)

	r.Handle("/healthz", s.handleHealthz()).Methods(http.MethodGet)
	r.Handle("/readyz", s.handleReadyz()).Methods(http.MethodGet)
	r.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})).Methods(http.MethodGet)
	r.Handle("/openapi.json", OpenAPIHandler()).Methods(http.MethodGet)
	// Registered before the /v1 subrouter: what the events look like is public.
	r.Handle("/v1/event-types", s.handleEventTypes()).Methods(http.MethodGet)
	r.Handle("/v1/schemas/{type}/{version:[0-9]+}.json", s.handleSchema()).Methods(http.MethodGet)

	v1 := r.PathPrefix("/v1").Subrouter()
	v1.Use(s.requireClient)
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
	v1.Handle("/admin/endpoints/{id}/disable", admin(s.handleDisableEndpoint())).Methods(http.MethodPost)
	v1.Handle("/admin/endpoints/{id}/enable", admin(s.handleEnableEndpoint())).Methods(http.MethodPost)
	v1.Handle("/admin/endpoints/{id}/rotate-secret", admin(s.handleRotateSecret())).Methods(http.MethodPost)
	v1.Handle("/admin/dead-letters", admin(s.handleListDeadLetters())).Methods(http.MethodGet)
	v1.Handle("/admin/dead-letters/{id}/replay", admin(s.handleReplayDeadLetter())).Methods(http.MethodPost)

	r.NotFoundHandler = s.metrics.instrument(s.handleProblem(codeRouteNotFound))
	r.MethodNotAllowedHandler = s.metrics.instrument(s.handleProblem(codeMethodNotAllowed))
	return r
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

func (s *Server) handleProblem(code string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, s.log, newProblem(code, "", r.URL.Path))
	})
}

package api

import (
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"orderflow/schemas"
)

type eventTypeSchema struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	URL     string `json:"url"`
}

type eventType struct {
	Type          string            `json:"type"`
	LatestVersion int               `json:"latest_version"`
	Schemas       []eventTypeSchema `json:"schemas"`
}

// handleEventTypes lists the event types and where their schemas are, so a consumer can
// discover what the topic and the webhooks carry.
func (s *Server) handleEventTypes() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var out []eventType
		for _, et := range schemas.EventTypes() {
			t := eventType{Type: et.Type, LatestVersion: et.Latest()}
			for _, v := range et.Versions {
				t.Schemas = append(t.Schemas, eventTypeSchema{Version: v, ID: schemas.ID(et.Type, v), URL: schemas.Path(et.Type, v)})
			}
			out = append(out, t)
		}
		encode(w, http.StatusOK, map[string]any{"data": out})
	})
}

// handleSchema serves one schema. A published schema never changes, so it may be cached for
// as long as a client likes.
func (s *Server) handleSchema() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := strconv.Atoi(mux.Vars(r)["version"])
		b, ok := schemas.Schema(mux.Vars(r)["type"], v)
		if err != nil || !ok {
			writeProblem(w, s.log, newProblem(codeRouteNotFound, "no schema for this event type and version; GET /v1/event-types lists them", r.URL.Path))
			return
		}
		w.Header().Set("Content-Type", "application/schema+json")
		w.Header().Set("Cache-Control", "public, max-age=86400, immutable")
		_, _ = w.Write(b)
	})
}

package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"orderflow"
)

// The rest of a webhook endpoint's life after its registration (admin.go): read one, change it,
// delete it, send it a test event, recover its dead letters.

func (s *Server) handleGetEndpoint() http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		a, err := s.webhooks()
		if err != nil {
			return err
		}
		ep, err := a.Endpoint(r.Context(), mux.Vars(r)["id"])
		if err != nil {
			return err
		}
		ep.URL = redactURL(ep.URL)
		encode(w, http.StatusOK, ep)
		return nil
	})
}

// updateEndpointRequest is a JSON merge patch (RFC 7396) of an endpoint: a member left out stays
// as it is, rate_limit null removes the limit. The members are kept raw to tell the two apart.
type updateEndpointRequest struct {
	URL        json.RawMessage `json:"url"`
	EventTypes json.RawMessage `json:"event_types"`
	RateLimit  json.RawMessage `json:"rate_limit"`
}

var jsonNull = []byte("null")

// endpointChange checks the patch and turns it into the store's change; the URL is checked against the
// egress policy after its text is.
func (s *Server) endpointChange(req updateEndpointRequest) (orderflow.EndpointChange, error) {
	var (
		c  orderflow.EndpointChange
		ps []orderflow.FieldProblem
	)
	notNull := func(raw json.RawMessage, pointer string) bool {
		if bytes.Equal(raw, jsonNull) {
			ps = append(ps, orderflow.FieldProblem{Pointer: pointer, Detail: "cannot be removed; leave it out to keep it"})
			return false
		}
		return raw != nil
	}
	if notNull(req.URL, "/url") {
		var u string
		if err := json.Unmarshal(req.URL, &u); err != nil {
			return c, orderflow.Errorf(codeMalformed, "url must be a string")
		}
		ps = append(ps, urlProblems(u)...)
		c.URL = &u
	}
	if notNull(req.EventTypes, "/event_types") {
		if err := json.Unmarshal(req.EventTypes, &c.EventTypes); err != nil {
			return c, orderflow.Errorf(codeMalformed, "event_types must be an array of strings")
		}
		ps = append(ps, eventTypesProblems(c.EventTypes)...)
	}
	if req.RateLimit != nil {
		c.SetRateLimit = true
		if !bytes.Equal(req.RateLimit, jsonNull) {
			var f intField
			_ = f.UnmarshalJSON(req.RateLimit)
			if p := f.problem(1, maxRateLimit); p != "" {
				ps = append(ps, orderflow.FieldProblem{Pointer: "/rate_limit", Detail: p + ", or null for no limit"})
			}
			limit := int(f.n)
			c.RateLimit = &limit
		}
	}
	if len(ps) > 0 {
		return c, validationError(ps)
	}
	if c.URL != nil {
		u, err := s.checkEndpointURL(*c.URL)
		if err != nil {
			return c, err
		}
		c.URL = &u
	}
	return c, nil
}

// handleUpdateEndpoint changes an endpoint's URL (under the same rules as at registration),
// event types or rate limit. The secret stays.
func (s *Server) handleUpdateEndpoint() http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		a, err := s.webhooks()
		if err != nil {
			return err
		}
		var req updateEndpointRequest
		if err := decode(r, &req, false); err != nil {
			return err
		}
		c, err := s.endpointChange(req)
		if err != nil {
			return err
		}
		ep, err := a.UpdateEndpoint(r.Context(), mux.Vars(r)["id"], c)
		if err != nil {
			return err
		}
		s.log.Info("webhook endpoint updated", "endpoint_id", ep.ID, "url_changed", c.URL != nil,
			"event_types", ep.EventTypes, "rate_limit", ep.RateLimit, "client_id", clientFrom(r.Context()).ID)
		ep.URL = redactURL(ep.URL)
		encode(w, http.StatusOK, ep)
		return nil
	})
}

// handleDeleteEndpoint deletes an endpoint: nothing more is sent to it and it is not found from
// then on (its delivery history stays for the audit trail).
func (s *Server) handleDeleteEndpoint() http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		a, err := s.webhooks()
		if err != nil {
			return err
		}
		id := mux.Vars(r)["id"]
		if err := a.DeleteEndpoint(r.Context(), id); err != nil {
			return err
		}
		s.log.Info("webhook endpoint deleted", "endpoint_id", id, "client_id", clientFrom(r.Context()).ID)
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

// testEventSource is the CloudEvents source of test events: an administrator, not the outbox.
const testEventSource = "/orderflow/admin"

// testEvent is the CloudEvent a test sends: structured JSON like every webhook body, signed
// like every delivery, of type webhook.test with its own schema.
func testEvent(endpointID string, now time.Time) (orderflow.WebhookEvent, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return orderflow.WebhookEvent{}, fmt.Errorf("making test event id: %w", err)
	}
	data, err := json.Marshal(orderflow.WebhookTestData{EndpointID: endpointID,
		Message: "a test event sent by an orderflow administrator; answer 2xx to show the endpoint works"})
	if err != nil {
		return orderflow.WebhookEvent{}, fmt.Errorf("encoding test event: %w", err)
	}
	ev := orderflow.CloudEvent{
		SpecVersion: "1.0", ID: id.String(), Source: testEventSource, Type: orderflow.EventWebhookTest,
		Subject: endpointID, Time: now.UTC(), DataContentType: orderflow.ContentTypeJSON,
		DataSchema: orderflow.DataSchema(orderflow.EventWebhookTest, 1), SchemaVersion: 1, Data: data,
	}
	return orderflow.WebhookEvent{ID: ev.ID, Type: ev.Type, Subject: ev.Subject, Time: ev.Time,
		Payload: orderflow.AppendCloudEvent(nil, &ev)}, nil
}

// deliveryResponder renders a queued delivery, or a domain error, for storage with its key.
func deliveryResponder(r *http.Request) orderflow.DeliveryResponder {
	return func(d orderflow.DeadLetter, err error) orderflow.Response {
		if err != nil {
			p := problemFromError(err, r.URL.Path)
			return orderflow.Response{Status: p.Status, Body: p.encode()}
		}
		d.EndpointURL = redactURL(d.EndpointURL)
		body, mErr := json.Marshal(d)
		if mErr != nil {
			// DeadLetter holds only plain values; this cannot fail.
			panic(mErr)
		}
		return orderflow.Response{Status: http.StatusAccepted, Body: body,
			Location: "/v1/admin/events/" + d.EventID + "/attempts"}
	}
}

// handleSendTestEvent queues a webhook.test event for one endpoint. The answer is the queued
// delivery; its attempts show how the endpoint answered (Location). With an Idempotency-Key a
// retried request queues one event, not two.
func (s *Server) handleSendTestEvent() http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		a, err := s.webhooks()
		if err != nil {
			return err
		}
		if err := decode(r, &struct{}{}, true); err != nil {
			return err
		}
		client := clientFrom(r.Context())
		k, err := adminKey(r, client, struct{}{})
		if err != nil {
			return err
		}
		id := mux.Vars(r)["id"]
		ev, err := testEvent(id, time.Now())
		if err != nil {
			return err
		}
		resp, err := a.QueueTestEventOnce(r.Context(), k, id, ev, deliveryResponder(r))
		if err != nil {
			return err
		}
		if !resp.Replayed && resp.Status == http.StatusAccepted {
			s.log.Info("webhook test event queued", "endpoint_id", id, "event_id", ev.ID, "client_id", client.ID)
		}
		writeResponse(w, resp)
		return nil
	})
}

type recoverRequest struct {
	Since string `json:"since"`
}

// handleRecoverDeadLetters replays every dead letter of an endpoint that died since a time, the
// call to make after fixing an endpoint that was down (or disabled automatically).
func (s *Server) handleRecoverDeadLetters() http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		a, err := s.webhooks()
		if err != nil {
			return err
		}
		var req recoverRequest
		if err := decode(r, &req, false); err != nil {
			return err
		}
		since, err := time.Parse(time.RFC3339Nano, req.Since)
		if err != nil {
			return validationError([]orderflow.FieldProblem{{Pointer: "/since", Detail: "is required: an RFC 3339 time such as 2026-01-02T15:04:05Z"}})
		}
		id := mux.Vars(r)["id"]
		n, err := a.RecoverDeadLetters(r.Context(), id, since)
		if err != nil {
			return err
		}
		s.log.Info("dead letters recovered", "endpoint_id", id, "since", since, "recovered", n, "client_id", clientFrom(r.Context()).ID)
		encode(w, http.StatusAccepted, map[string]any{"endpoint_id": id, "since": since.UTC(), "recovered": n})
		return nil
	})
}

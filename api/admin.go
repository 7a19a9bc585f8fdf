package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"orderflow"
	"orderflow/internal/egress"
	"orderflow/webhook"
)

// webhookAdmin is what the webhook admin routes need. The store given to New provides it when
// it can (postgres.DB does), so New keeps its one store argument and a store without webhooks
// still serves orders.
type webhookAdmin interface {
	CreateEndpointOnce(ctx context.Context, k *orderflow.IdempotencyKey, n orderflow.NewEndpoint, secret string, respond orderflow.EndpointResponder) (orderflow.Response, error)
	Endpoints(ctx context.Context) ([]orderflow.Endpoint, error)
	Endpoint(ctx context.Context, id string) (orderflow.Endpoint, error)
	UpdateEndpoint(ctx context.Context, id string, c orderflow.EndpointChange) (orderflow.Endpoint, error)
	DeleteEndpoint(ctx context.Context, id string) error
	DisableEndpoint(ctx context.Context, id, reason string) (orderflow.Endpoint, error)
	EnableEndpoint(ctx context.Context, id string) (orderflow.Endpoint, error)
	RotateEndpointSecretOnce(ctx context.Context, k *orderflow.IdempotencyKey, id, secret string, grace time.Duration, respond orderflow.EndpointResponder) (orderflow.Response, error)
	QueueTestEventOnce(ctx context.Context, k *orderflow.IdempotencyKey, id string, ev orderflow.WebhookEvent, respond orderflow.DeliveryResponder) (orderflow.Response, error)
	Attempts(ctx context.Context, q orderflow.AttemptQuery) ([]orderflow.DeliveryAttempt, error)
	DeadLetters(ctx context.Context, endpointID, after string, limit int) ([]orderflow.DeadLetter, error)
	ReplayDeadLetter(ctx context.Context, id string) (orderflow.DeadLetter, error)
	RecoverDeadLetters(ctx context.Context, id string, since time.Time) (int64, error)
}

// Limits of the webhook admin API.
const (
	maxEventTypes       = 20
	defaultRotateGrace  = 24 * time.Hour
	maxRotateGrace      = 7 * 24 * time.Hour
	defaultDeadLetters  = 50
	maxDeadLettersLimit = 500
	// maxRateLimit is the most deliveries per second an endpoint may be limited to (the
	// webhook_endpoints check); above it, set no limit.
	maxRateLimit = 10000
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
	URL        string    `json:"url"`
	EventTypes []string  `json:"event_types"`
	RateLimit  *intField `json:"rate_limit,omitempty"`
}

// maxURLLength bounds an endpoint URL (before normalization).
const maxURLLength = 2048

// problems lists what is wrong with the request's fields as text. Whether the URL is an
// acceptable destination is the egress policy's call, made after these checks pass.
func (req createEndpointRequest) problems() []orderflow.FieldProblem {
	ps := urlProblems(req.URL)
	ps = append(ps, eventTypesProblems(req.EventTypes)...)
	if req.RateLimit != nil {
		if p := req.RateLimit.problem(1, maxRateLimit); p != "" {
			ps = append(ps, orderflow.FieldProblem{Pointer: "/rate_limit", Detail: p})
		}
	}
	return ps
}

// urlProblems checks an endpoint URL as text.
func urlProblems(raw string) []orderflow.FieldProblem {
	switch {
	case strings.TrimSpace(raw) == "":
		return []orderflow.FieldProblem{{Pointer: "/url", Detail: "is required: an absolute https URL"}}
	case len(raw) > maxURLLength:
		return []orderflow.FieldProblem{{Pointer: "/url", Detail: fmt.Sprintf("must be at most %d characters", maxURLLength)}}
	}
	if p := orderflow.ValidateText(raw, maxURLLength); p != "" {
		return []orderflow.FieldProblem{{Pointer: "/url", Detail: p}}
	}
	return nil
}

// eventTypesProblems checks an endpoint's subscription.
func eventTypesProblems(types []string) []orderflow.FieldProblem {
	var ps []orderflow.FieldProblem
	if len(types) == 0 || len(types) > maxEventTypes {
		ps = append(ps, orderflow.FieldProblem{Pointer: "/event_types", Detail: fmt.Sprintf("must list 1 to %d event types", maxEventTypes)})
	}
	seen := map[string]bool{}
	for i, t := range types {
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

// newEndpoint is the checked request as the store takes it.
func (req createEndpointRequest) newEndpoint() orderflow.NewEndpoint {
	n := orderflow.NewEndpoint{URL: req.URL, EventTypes: req.EventTypes}
	if req.RateLimit != nil {
		limit := int(req.RateLimit.n)
		n.RateLimit = &limit
	}
	return n
}

// checkEndpointURL applies the egress policy to a registered URL and returns it normalized
// (scheme and host in lower case, no trailing dot, IPv4-mapped literals unmapped), the form
// that is stored. A refusal is a 422 whose type names the reason.
func (s *Server) checkEndpointURL(raw string) (string, error) {
	u, err := egress.CheckURL(raw, s.egress)
	var refused egress.ErrRefused
	if errors.As(err, &refused) {
		e := orderflow.Errorf(urlRefusedCode(refused.Reason), "%s", refused.Error())
		e.Fields = []orderflow.FieldProblem{{Pointer: "/url", Detail: refused.Error()}}
		return "", e
	}
	if err != nil {
		return "", err
	}
	if out := u.String(); len(out) <= maxURLLength {
		return out, nil
	}
	return "", validationError([]orderflow.FieldProblem{{Pointer: "/url", Detail: fmt.Sprintf("must be at most %d characters", maxURLLength)}})
}

func validationError(ps []orderflow.FieldProblem) error {
	e := orderflow.Errorf(orderflow.ECodeValidation, "%d field(s) are not valid", len(ps))
	e.Fields = ps
	return e
}

// adminKey reads the optional Idempotency-Key of an admin POST. With one, a retried create
// or rotate answers as the first did (secret included) instead of acting twice.
func adminKey(r *http.Request, client orderflow.Client, canonical any) (*orderflow.IdempotencyKey, error) {
	if len(r.Header.Values("Idempotency-Key")) == 0 {
		return nil, nil
	}
	key, err := idempotencyKey(r)
	if err != nil {
		return nil, err
	}
	fp, err := fingerprint(r, canonical)
	if err != nil {
		return nil, err
	}
	return &orderflow.IdempotencyKey{ClientID: client.ID, Key: key, Fingerprint: fp}, nil
}

// newSecret makes a webhook secret and seals it for storage.
func (s *Server) newSecret() (secret, sealed string, err error) {
	if s.secrets == nil {
		return "", "", orderflow.Errorf(codeSecretsUnavailable,
			"this API has no key ring to encrypt webhook secrets with (set WEBHOOK_KEYRING or WEBHOOK_KEYRING_FILE)")
	}
	if secret, err = webhook.NewSecret(); err != nil {
		return "", "", err
	}
	if sealed, err = s.secrets.Seal([]byte(secret)); err != nil {
		return "", "", err
	}
	return secret, sealed, nil
}

// endpointResponder renders an admin outcome that shows secret. The rendered body is sealed
// too, since it is stored with the idempotency key: a replay must show the same secret, and
// the database must not hold it in clear.
func (s *Server) endpointResponder(r *http.Request, status int, secret string, location bool) orderflow.EndpointResponder {
	return func(e orderflow.Endpoint, err error) orderflow.Response {
		if err != nil {
			p := problemFromError(err, r.URL.Path)
			return orderflow.Response{Status: p.Status, Body: p.encode()}
		}
		e.Secret = secret
		body, mErr := json.Marshal(e)
		if mErr != nil {
			// Endpoint holds only plain values; this cannot fail.
			panic(mErr)
		}
		resp := orderflow.Response{Status: status}
		if location {
			resp.Location = "/v1/admin/endpoints/" + e.ID
		}
		sealed, sErr := s.secrets.Seal(body)
		if sErr != nil {
			// Without randomness nothing can be sealed; refuse rather than store in clear.
			p := newProblem(orderflow.ECodeInternal, "", r.URL.Path)
			return orderflow.Response{Status: p.Status, Body: p.encode()}
		}
		resp.Body = []byte(sealed)
		return resp
	}
}

// writeSealedResponse opens a response rendered by endpointResponder and sends it.
func (s *Server) writeSealedResponse(w http.ResponseWriter, resp orderflow.Response) error {
	if bytes.HasPrefix(resp.Body, []byte("v1:")) {
		body, err := s.secrets.Open(string(resp.Body))
		if err != nil {
			return fmt.Errorf("opening a stored admin response: %w", err)
		}
		resp.Body = body
	}
	w.Header().Set("Cache-Control", "no-store")
	writeResponse(w, resp)
	return nil
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
		if req.URL, err = s.checkEndpointURL(req.URL); err != nil {
			return err
		}
		client := clientFrom(r.Context())
		k, err := adminKey(r, client, req)
		if err != nil {
			return err
		}
		secret, sealed, err := s.newSecret()
		if err != nil {
			return err
		}
		resp, err := a.CreateEndpointOnce(r.Context(), k, req.newEndpoint(), sealed, s.endpointResponder(r, http.StatusCreated, secret, true))
		if err != nil {
			return err
		}
		if !resp.Replayed && resp.Status == http.StatusCreated {
			s.log.Info("webhook endpoint created", "endpoint", resp.Location, "event_types", req.EventTypes, "client_id", client.ID)
		}
		return s.writeSealedResponse(w, resp)
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
		for i := range eps {
			eps[i].URL = redactURL(eps[i].URL)
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
		if p := orderflow.ValidateText(req.Reason, orderflow.MaxReasonLength); p != "" {
			return validationError([]orderflow.FieldProblem{{Pointer: "/reason", Detail: p}})
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
		client := clientFrom(r.Context())
		k, err := adminKey(r, client, req)
		if err != nil {
			return err
		}
		secret, sealed, err := s.newSecret()
		if err != nil {
			return err
		}
		id := mux.Vars(r)["id"]
		resp, err := a.RotateEndpointSecretOnce(r.Context(), k, id, sealed, grace, s.endpointResponder(r, http.StatusOK, secret, false))
		if err != nil {
			return err
		}
		if !resp.Replayed && resp.Status == http.StatusOK {
			s.log.Info("webhook secret rotated", "endpoint_id", id, "grace", grace, "client_id", client.ID)
		}
		return s.writeSealedResponse(w, resp)
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
				return validationError([]orderflow.FieldProblem{{Pointer: "#/query/limit", Detail: fmt.Sprintf("must be an integer from 1 to %d", maxDeadLettersLimit)}})
			}
			limit = n
		}
		letters, err := a.DeadLetters(r.Context(), q.Get("endpoint_id"), q.Get("after"), limit)
		if err != nil {
			return err
		}
		for i := range letters {
			raw := letters[i].EndpointURL
			letters[i].EndpointURL = redactURL(raw)
			letters[i].LastError = strings.ReplaceAll(letters[i].LastError, raw, letters[i].EndpointURL)
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
		raw := l.EndpointURL
		l.EndpointURL = redactURL(raw)
		l.LastError = strings.ReplaceAll(l.LastError, raw, l.EndpointURL)
		s.log.Info("dead letter replayed", "delivery_id", l.ID, "event_id", l.EventID, "endpoint_id", l.EndpointID, "client_id", clientFrom(r.Context()).ID)
		encode(w, http.StatusAccepted, l)
		return nil
	})
}

// redactURL hides the credentials of a URL registered before they were refused, so no
// listing shows them.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = url.User("redacted")
	return u.String()
}

package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"orderflow"
	"orderflow/internal/egress"
)

// ProblemTypeBase prefixes every problem type. The URIs identify problems; they are stable
// and documented in docs/API.md.
const ProblemTypeBase = "https://orderflow.dev/problems/"

// Problem type codes the HTTP layer adds to the domain's codes.
const (
	codeUnauthorized     = "unauthorized"
	codeForbidden        = "forbidden"
	codeKeyMissing       = "idempotency-key-missing"
	codeKeyInvalid       = "idempotency-key-invalid"
	codeMalformed        = "malformed-request"
	codeTooLarge         = "request-too-large"
	codeUnsupportedMedia = "unsupported-media-type"
	codeRouteNotFound    = "not-found"
	codeMethodNotAllowed = "method-not-allowed"
	codeNotReady         = "not-ready"
	// codeSecretsUnavailable: the API has no key ring, so it cannot store a webhook secret.
	codeSecretsUnavailable = "webhook-secrets-unavailable"
	// codeRateLimited: the client (or, before authentication, the address) is over its rate.
	codeRateLimited = "rate-limited"
	// codeOverloaded: the API is at capacity and shed the request before doing anything.
	codeOverloaded = "overloaded"
)

// urlRefusedCodes are the problem types of webhook URLs the egress policy refuses, one per
// reason, so a client can tell "not https" from "a private address" without parsing text.
var urlRefusedCodes = map[string]string{
	egress.ReasonInvalidURL:   "endpoint-invalid-url",
	egress.ReasonScheme:       "endpoint-scheme-not-https",
	egress.ReasonCredentials:  "endpoint-credentials-in-url",
	egress.ReasonInvalidHost:  "endpoint-invalid-host",
	egress.ReasonPrivate:      "endpoint-private-address",
	egress.ReasonMetadata:     "endpoint-metadata-address",
	egress.ReasonUnresolvable: "endpoint-unresolvable-host",
	egress.ReasonNetwork:      "endpoint-unsupported-network",
}

// urlRefusedCode is the problem type of an egress refusal reason.
func urlRefusedCode(reason string) string {
	if c, ok := urlRefusedCodes[reason]; ok {
		return c
	}
	return "endpoint-url-refused"
}

func isURLRefusedCode(code string) bool {
	if code == "endpoint-url-refused" {
		return true
	}
	for _, c := range urlRefusedCodes {
		if c == code {
			return true
		}
	}
	return false
}

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type     string                   `json:"type"`
	Title    string                   `json:"title"`
	Status   int                      `json:"status"`
	Detail   string                   `json:"detail,omitempty"`
	Instance string                   `json:"instance,omitempty"`
	Errors   []orderflow.FieldProblem `json:"errors,omitempty"`
	SKUs     []string                 `json:"skus,omitempty"`
}

// problemStatus maps every problem code to its HTTP status and title. It is the one place
// where domain error codes meet HTTP.
func problemStatus(code string) (int, string) {
	switch code {
	case orderflow.ECodeValidation:
		return http.StatusUnprocessableEntity, "The request is not valid"
	case orderflow.ECodeKeyReused:
		return http.StatusUnprocessableEntity, "Idempotency-Key reused with a different request"
	case orderflow.ECodeNotFound:
		return http.StatusNotFound, "Order not found"
	case orderflow.ECodeInsufficientStock:
		return http.StatusConflict, "Insufficient stock"
	case orderflow.ECodeInvalidTransition:
		return http.StatusConflict, "Invalid state transition"
	case orderflow.ECodeStockBelowReserved:
		return http.StatusConflict, "Stock below reserved quantity"
	case orderflow.ECodeEndpointNotFound:
		return http.StatusNotFound, "Webhook endpoint not found"
	case orderflow.ECodeDeadLetterNotFound:
		return http.StatusNotFound, "Dead letter not found"
	case orderflow.ECodeEndpointDisabled:
		return http.StatusConflict, "Webhook endpoint disabled"
	case orderflow.ECodeNotDeadLetter:
		return http.StatusConflict, "Delivery is not a dead letter"
	case codeUnauthorized:
		return http.StatusUnauthorized, "Authentication required"
	case codeForbidden:
		return http.StatusForbidden, "Not allowed for this key's role"
	case codeKeyMissing:
		return http.StatusBadRequest, "Idempotency-Key header required"
	case codeKeyInvalid:
		return http.StatusBadRequest, "Idempotency-Key header invalid"
	case codeMalformed:
		return http.StatusBadRequest, "Malformed request body"
	case codeTooLarge:
		return http.StatusRequestEntityTooLarge, "Request body too large"
	case codeUnsupportedMedia:
		return http.StatusUnsupportedMediaType, "Content-Type must be application/json"
	case codeRouteNotFound:
		return http.StatusNotFound, "Not found"
	case codeMethodNotAllowed:
		return http.StatusMethodNotAllowed, "Method not allowed"
	case codeNotReady:
		return http.StatusServiceUnavailable, "Not ready"
	case codeSummaryNotProjected:
		return http.StatusNotFound, "Summary not projected yet"
	case codeSecretsUnavailable:
		return http.StatusServiceUnavailable, "Webhook secrets cannot be stored"
	case codeRateLimited:
		return http.StatusTooManyRequests, "Too many requests"
	case codeOverloaded:
		return http.StatusServiceUnavailable, "Server overloaded"
	default:
		if isURLRefusedCode(code) {
			return http.StatusUnprocessableEntity, "Webhook endpoint URL refused"
		}
		return http.StatusInternalServerError, "Internal error"
	}
}

// newProblem builds the problem for code; detail is for humans.
func newProblem(code, detail, instance string) Problem {
	status, title := problemStatus(code)
	return Problem{Type: ProblemTypeBase + code, Title: title, Status: status, Detail: detail, Instance: instance}
}

// problemFromError renders any error: domain errors keep their code and details, anything
// else becomes a 500 whose detail reveals nothing internal.
func problemFromError(err error, instance string) Problem {
	var de *orderflow.Error
	if !errors.As(err, &de) {
		return newProblem(orderflow.ECodeInternal, "the server could not complete the request; it is safe to retry with the same Idempotency-Key", instance)
	}
	p := newProblem(de.Code, de.Message, instance)
	p.Errors = de.Fields
	p.SKUs = de.SKUs
	return p
}

func (p Problem) encode() []byte {
	b, err := json.Marshal(p)
	if err != nil {
		// A Problem holds only strings and ints.
		panic(err)
	}
	return b
}

func writeProblem(w http.ResponseWriter, log *slog.Logger, p Problem) {
	// A shed request is no failure of the server's: it is counted (orderflow_api_shed_total)
	// and not logged, which under overload would cost what the API lacks.
	if p.Status >= 500 && p.Type != ProblemTypeBase+codeOverloaded {
		log.Error("request failed", "type", p.Type, "instance", p.Instance)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_, _ = w.Write(p.encode())
}

// writeError renders err as a problem, logging the cause of internal errors (never the body).
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	p := problemFromError(err, r.URL.Path)
	if p.Status >= 500 {
		log.Error("internal error", "err", err, "method", r.Method, "path", r.URL.Path)
	}
	writeProblem(w, log, p)
}

func isJSONContentType(ct string) bool {
	mt := strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

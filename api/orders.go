package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gorilla/mux"

	"orderflow"
)

const maxKeyLength = 255

type createOrderRequest struct {
	CustomerID string        `json:"customer_id"`
	Currency   string        `json:"currency"`
	Items      []itemRequest `json:"items"`
	// CustomerTier is optional: left out, the order is standard.
	CustomerTier *string `json:"customer_tier"`
}

type itemRequest struct {
	SKU            string   `json:"sku"`
	Quantity       intField `json:"quantity"`
	UnitPriceCents intField `json:"unit_price_cents"`
}

// newOrder turns the request into the domain's NewOrder and lists every field problem.
func (req createOrderRequest) newOrder() (orderflow.NewOrder, []orderflow.FieldProblem) {
	n := orderflow.NewOrder{CustomerID: req.CustomerID, Currency: req.Currency, Items: make([]orderflow.Item, len(req.Items))}
	var ps []orderflow.FieldProblem
	switch {
	case req.CustomerTier == nil, *req.CustomerTier == orderflow.TierStandard:
		// The default stays implicit, so the request's fingerprint is the one it had before tiers.
	case *req.CustomerTier == "":
		ps = append(ps, orderflow.FieldProblem{Pointer: "/customer_tier", Detail: "must be one of " + strings.Join(orderflow.CustomerTiers, ", ") + ", or left out for standard"})
	default:
		n.CustomerTier = *req.CustomerTier
	}
	for i, it := range req.Items {
		if i >= orderflow.MaxItems {
			break
		}
		if p := it.Quantity.problem(1, orderflow.MaxQuantity); p != "" {
			ps = append(ps, orderflow.FieldProblem{Pointer: fmt.Sprintf("/items/%d/quantity", i), Detail: p})
		}
		if p := it.UnitPriceCents.problem(0, orderflow.MaxUnitPriceCents); p != "" {
			ps = append(ps, orderflow.FieldProblem{Pointer: fmt.Sprintf("/items/%d/unit_price_cents", i), Detail: p})
		}
		n.Items[i] = orderflow.Item{SKU: it.SKU, Quantity: it.Quantity.n, UnitPriceCents: it.UnitPriceCents.n}
	}
	if len(ps) > 0 {
		// Keep only the problems the number checks cannot see, so each field is named once.
		for _, p := range n.Validate() {
			if !strings.HasSuffix(p.Pointer, "/quantity") && !strings.HasSuffix(p.Pointer, "/unit_price_cents") {
				ps = append(ps, p)
			}
		}
		return n, ps
	}
	return n, n.Validate()
}

// idempotencyKey reads and checks the Idempotency-Key header.
func idempotencyKey(r *http.Request) (string, error) {
	vals := r.Header.Values("Idempotency-Key")
	if len(vals) == 0 || strings.TrimSpace(vals[0]) == "" {
		return "", orderflow.Errorf(codeKeyMissing, "send a unique Idempotency-Key header with every POST, and the same one when you retry")
	}
	k := vals[0]
	switch {
	case len(vals) > 1:
		return "", orderflow.Errorf(codeKeyInvalid, "send exactly one Idempotency-Key header")
	case utf8.RuneCountInString(k) > maxKeyLength:
		return "", orderflow.Errorf(codeKeyInvalid, "the Idempotency-Key is longer than %d characters", maxKeyLength)
	case !utf8.ValidString(k) || strings.IndexByte(k, 0) >= 0:
		e := orderflow.Errorf(codeKeyInvalid, "the Idempotency-Key must be valid UTF-8 without NUL characters")
		e.Fields = []orderflow.FieldProblem{{Pointer: "#/header/Idempotency-Key", Detail: "must be valid UTF-8 without NUL characters"}}
		return "", e
	}
	return k, nil
}

// fingerprint identifies a request independently of its JSON formatting: the method, the
// route with its variables, and the canonical re-encoding of the decoded body.
func fingerprint(r *http.Request, canonical any) ([]byte, error) {
	var body []byte
	var err error
	if n, ok := canonical.(orderflow.NewOrder); ok {
		body, err = marshalNewOrder(n)
	} else {
		body, err = json.Marshal(canonical)
	}
	if err != nil {
		return nil, fmt.Errorf("encoding request fingerprint: %w", err)
	}
	h := sha256.New()
	// Byte for byte what fmt.Fprintf(h, "%s %s\n", method, path) wrote: stored keys keep
	// their fingerprints.
	_, _ = io.WriteString(h, r.Method)
	_, _ = io.WriteString(h, " ")
	_, _ = io.WriteString(h, r.URL.Path)
	_, _ = io.WriteString(h, "\n")
	h.Write(body)
	return h.Sum(nil), nil
}

// writeResponse sends a response produced (or replayed) under an idempotency key.
func writeResponse(w http.ResponseWriter, resp orderflow.Response) {
	ct := "application/json"
	if resp.Status >= 400 {
		ct = "application/problem+json"
	}
	w.Header().Set("Content-Type", ct)
	if resp.Location != "" {
		w.Header().Set("Location", resp.Location)
	}
	if resp.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}

// responder renders an outcome for storage with the key. successStatus is 201 for create.
func (s *Server) responder(r *http.Request, successStatus int, location bool) orderflow.Responder {
	return func(o *orderflow.Order, err error) orderflow.Response {
		if err != nil {
			p := problemFromError(err, r.URL.Path)
			return orderflow.Response{Status: p.Status, Body: p.encode()}
		}
		body, mErr := marshalOrder(o)
		if mErr != nil {
			// Order holds only plain values; this cannot fail.
			panic(mErr)
		}
		resp := orderflow.Response{Status: successStatus, Body: body}
		if location {
			resp.Location = "/v1/orders/" + o.ID
		}
		return resp
	}
}

func (s *Server) countOutcome(resp orderflow.Response, created func()) {
	switch {
	case resp.Replayed:
		s.metrics.replays.Inc()
	case resp.Status == http.StatusConflict:
		s.metrics.stockConflicts.Inc()
	case resp.Status < 300:
		created()
	}
}

func (s *Server) handleCreateOrder() http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		key, err := idempotencyKey(r)
		if err != nil {
			return err
		}
		var req createOrderRequest
		if err := decode(r, &req, false); err != nil {
			return err
		}
		n, problems := req.newOrder()
		if len(problems) > 0 {
			// Refused before execution: nothing is stored, so a corrected retry with the same
			// key runs normally.
			e := orderflow.Errorf(orderflow.ECodeValidation, "%d field(s) are not valid", len(problems))
			e.Fields = problems
			return e
		}
		fp, err := fingerprint(r, n)
		if err != nil {
			return err
		}
		k := orderflow.IdempotencyKey{ClientID: clientFrom(r.Context()).ID, Key: key, Fingerprint: fp}
		resp, err := s.store.CreateOrder(r.Context(), k, n, s.responder(r, http.StatusCreated, true))
		if err != nil {
			if orderflow.ErrorCode(err) == orderflow.ECodeKeyReused {
				s.metrics.keyConflicts.Inc()
			}
			return err
		}
		s.countOutcome(resp, s.metrics.ordersCreated.Inc)
		writeResponse(w, resp)
		return nil
	})
}

type changeOrderRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) handleChangeOrder(action orderflow.Action) http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		key, err := idempotencyKey(r)
		if err != nil {
			return err
		}
		var req changeOrderRequest
		if err := decode(r, &req, true); err != nil {
			return err
		}
		if action == orderflow.ActionFulfill && req.Reason != "" {
			e := orderflow.Errorf(orderflow.ECodeValidation, "fulfill takes no reason")
			e.Fields = []orderflow.FieldProblem{{Pointer: "/reason", Detail: "only cancel takes a reason"}}
			return e
		}
		if p := orderflow.ValidateText(req.Reason, orderflow.MaxReasonLength); p != "" {
			e := orderflow.Errorf(orderflow.ECodeValidation, "the reason is not valid")
			e.Fields = []orderflow.FieldProblem{{Pointer: "/reason", Detail: p}}
			return e
		}
		fp, err := fingerprint(r, req)
		if err != nil {
			return err
		}
		k := orderflow.IdempotencyKey{ClientID: clientFrom(r.Context()).ID, Key: key, Fingerprint: fp}
		resp, err := s.store.ChangeOrder(r.Context(), scopeOf(clientFrom(r.Context())), k, mux.Vars(r)["id"], action, req.Reason, s.responder(r, http.StatusOK, false))
		if err != nil {
			if orderflow.ErrorCode(err) == orderflow.ECodeKeyReused {
				s.metrics.keyConflicts.Inc()
			}
			return err
		}
		s.countOutcome(resp, s.metrics.transitions.WithLabelValues(string(action)).Inc)
		writeResponse(w, resp)
		return nil
	})
}

func (s *Server) handleGetOrder() http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		o, err := s.store.Order(r.Context(), scopeOf(clientFrom(r.Context())), mux.Vars(r)["id"])
		if err != nil {
			return err
		}
		encode(w, http.StatusOK, o)
		return nil
	})
}

type setStockRequest struct {
	Stock intField `json:"stock"`
}

// MaxStock bounds a SKU's stock so sums over many SKUs stay far inside int64.
const MaxStock = 1_000_000_000_000

func (s *Server) handleSetStock() http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		sku := mux.Vars(r)["sku"]
		var req setStockRequest
		if err := decode(r, &req, false); err != nil {
			return err
		}
		var ps []orderflow.FieldProblem
		if p := orderflow.ValidateID(sku); p != "" {
			ps = append(ps, orderflow.FieldProblem{Pointer: "/sku", Detail: "the SKU in the path " + p})
		}
		if p := req.Stock.problem(0, MaxStock); p != "" {
			ps = append(ps, orderflow.FieldProblem{Pointer: "/stock", Detail: p})
		}
		if len(ps) > 0 {
			e := orderflow.Errorf(orderflow.ECodeValidation, "%d field(s) are not valid", len(ps))
			e.Fields = ps
			return e
		}
		st, err := s.store.SetStock(r.Context(), sku, req.Stock.n)
		if err != nil {
			return err
		}
		encode(w, http.StatusOK, st)
		return nil
	})
}

func (s *Server) handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encode(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

func (s *Server) handleReadyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.store.Ping(ctx); err != nil {
			writeProblem(w, s.log, newProblem(codeNotReady, "the database does not answer", r.URL.Path))
			return
		}
		encode(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}

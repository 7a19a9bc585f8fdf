package partner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"orderflow"
	"orderflow/internal/httpserver"
	"orderflow/internal/tracing"
	"orderflow/webhook"
)

var tracer = tracing.Tracer("orderflow/partner")

const maxBody = 1 << 20

// Handler serves POST /partner-hook, the admin routes (admin.go), /healthz, /readyz and
// /metrics.
func (p *Partner) Handler() http.Handler {
	return httpserver.OpsHandler(p.reg, func(ctx context.Context) error {
		err := p.pool.Ping(ctx)
		p.dbOK.Store(err == nil)
		if err != nil {
			// /readyz says what is down, not the driver's error, which may name hosts and users.
			return errors.New("database unavailable; retrying")
		}
		return nil
	}, func(mux *http.ServeMux) {
		mux.Handle("POST /partner-hook", p.handleHook())
		p.adminRoutes(mux)
	})
}

type hookAnswer struct {
	WebhookID string `json:"webhook_id"`
	Duplicate bool   `json:"duplicate"`
	Action    string `json:"action,omitempty"`
	// DeadLetter is true when the webhook was verified but its values could not be stored:
	// it is kept in partner.dead_letters with the reason instead.
	DeadLetter bool `json:"dead_letter,omitempty"`
}

func (p *Partner) handleHook() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// The partner continues the webhook request's trace (a new one when it carries no valid
		// traceparent); the callback it schedules keeps this span, so the API call it makes
		// later is in the same trace.
		parent, _ := tracing.Parse(r.Header.Get(tracing.Header))
		ctx, span := tracing.Start(r.Context(), tracer, "POST /partner-hook", parent,
			trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
				attribute.String("http.request.method", http.MethodPost), attribute.String("http.route", "/partner-hook"),
				attribute.String("orderflow.webhook_id", safeID(r.Header.Get(webhook.HeaderID)))))
		status := p.serveHook(w, r.WithContext(ctx))
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 || status == 0 {
			span.SetStatus(codes.Error, "HTTP "+fmt.Sprint(status))
		}
		span.End()
		p.m.hookDuration.WithLabelValues(fmt.Sprint(status)).Observe(time.Since(start).Seconds())
	})
}

func (p *Partner) serveHook(w http.ResponseWriter, r *http.Request) int {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return problem(w, http.StatusRequestEntityTooLarge, "request-too-large", "the body is unreadable or larger than 1 MiB")
	}
	id := r.Header.Get(webhook.HeaderID)
	err = webhook.Verify(p.cfg.Secrets, id, r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, time.Now(), p.cfg.Tolerance)
	if err != nil {
		// The reason is counted and logged; the signature and body never are.
		p.m.rejected.WithLabelValues(rejectReason(err)).Inc()
		p.log.Warn("webhook refused", "webhook_id", safeID(id), "reason", err.Error())
		return problem(w, http.StatusUnauthorized, "webhook-unverified", "the webhook signature or timestamp is not valid")
	}
	// Signed by orderflow or not, text PostgreSQL would refuse must be a 400 the sender can
	// see, not a failed insert answered 503 and retried until it dies.
	if d := hookIDProblem(id); d != "" {
		p.m.rejected.WithLabelValues("invalid_id").Inc()
		return problem(w, http.StatusBadRequest, "webhook-id-invalid", "webhook-id "+d)
	}
	f := *p.faults.Load()
	if f.Latency > 0 {
		select {
		case <-r.Context().Done():
			return 0
		case <-time.After(f.Latency):
		}
	}
	if f.TimeoutRate > 0 && p.cfg.Random() < f.TimeoutRate {
		p.fault(r.Context(), id, "timeout")
		select {
		case <-r.Context().Done():
		case <-p.stopping():
		case <-time.After(f.Hang):
		}
		return problem(w, http.StatusGatewayTimeout, "injected-fault", "injected timeout")
	}
	if f.ErrorRate > 0 && p.cfg.Random() < f.ErrorRate {
		p.fault(r.Context(), id, "error")
		return problem(w, http.StatusInternalServerError, "injected-fault", "injected error")
	}
	ev, err := orderflow.DecodeCloudEvent(body)
	if err != nil {
		p.m.rejected.WithLabelValues("undecodable").Inc()
		return problem(w, http.StatusBadRequest, "webhook-body-invalid", "the body is not a CloudEvent")
	}
	if d := eventTextProblem(body, ev); d != "" {
		p.m.rejected.WithLabelValues("undecodable").Inc()
		return problem(w, http.StatusBadRequest, "webhook-body-invalid", d)
	}
	commitThen500 := f.CommitThen500Rate > 0 && p.cfg.Random() < f.CommitThen500Rate
	ans, err := p.receive(r.Context(), id, ev, commitThen500)
	if refused(err) {
		// A verified webhook whose values the database refuses would be refused on every
		// retry: it is parked with the reason and acknowledged, so the sender stops.
		if err = p.deadLetter(r.Context(), id, ev, err); err == nil {
			ans = hookAnswer{WebhookID: id, DeadLetter: true}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_ = json.NewEncoder(w).Encode(ans)
			return http.StatusOK
		}
	}
	if err != nil {
		p.dbOK.Store(false)
		p.log.Error("storing webhook receipt", "webhook_id", id, "err", err)
		return problem(w, http.StatusServiceUnavailable, "receipt-not-stored", "could not store the receipt; retry")
	}
	p.m.receipts.WithLabelValues(ev.Type, fmt.Sprint(ans.Duplicate)).Inc()
	if ans.Action != "" {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	if commitThen500 {
		p.m.faults.WithLabelValues("commit_then_500").Inc()
		return problem(w, http.StatusInternalServerError, "injected-fault", "injected error after commit")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(ans)
	return http.StatusOK
}

func rejectReason(err error) string {
	switch {
	case errors.Is(err, webhook.ErrMissingHeaders):
		return "missing_headers"
	case errors.Is(err, webhook.ErrBadTimestamp), errors.Is(err, webhook.ErrTimestampTooOld):
		return "timestamp"
	default:
		return "signature"
	}
}

// receive stores the receipt and, only when it is new, the work it asks for, atomically. The
// receipt's keys are what make a retried, replayed or repaired webhook harmless: the second
// INSERT does nothing and no second callback is scheduled.
//
// It is one statement (its own transaction): the receipt, the callback only if the receipt is
// new (it selects from the receipt's RETURNING), and the injected fault's record; webhooks
// that arrive together share it (receipts.go). Four round trips (BEGIN, two INSERTs, COMMIT)
// held a pooled connection for four network waits per webhook; the commit's WAL flush stays
// (synchronous_commit on): a receipt answered 2xx is durable, or the deliverer would stop
// sending an event the partner then forgets.
func (p *Partner) receive(ctx context.Context, id string, ev *orderflow.CloudEvent, commitThen500 bool) (hookAnswer, error) {
	var evTime *time.Time
	if !ev.Time.IsZero() {
		evTime = &ev.Time
	}
	var version *int32
	if v := orderflow.FactVersion(ev); v > 0 {
		v32 := int32(v)
		version = &v32
	}
	// The decision is made before we know whether the webhook is new; a duplicate's is
	// dropped with its callback row.
	var orderID, action, reason *string
	if ev.Type == orderflow.EventOrderCreated {
		o, err := orderflow.OrderFromEvent(ev)
		if err == nil && orderflow.ValidateText(o.ID, orderflow.MaxIDLength) != "" {
			err = errors.New("the order id is not storable text")
		}
		if err != nil {
			// Store the receipt anyway: a retry would not make this event readable.
			p.log.Warn("order.created without a readable order", "webhook_id", id, "err", err)
		} else {
			a, r := p.decide(o)
			orderID, action, reason = &o.ID, &a, nullable(orderflow.StorableText(r, orderflow.MaxReasonLength))
		}
	}
	// The statement (receipts.go) is shared with the webhooks that arrive meanwhile.
	return p.receipts.store(ctx, receiptRow{id: id, eventType: ev.Type, subject: ev.Subject, eventTime: evTime, version: version,
		orderID: orderID, action: action, reason: reason, commitThen500: commitThen500,
		// The callback continues this request's trace (docs/TRACING.md).
		traceParent: nullable(tracing.StringFromContext(ctx))}, p.writeReceipts)
}

// decide is the partner's business rule: it cannot supply SKUs it does not carry, and it
// turns down a configured share of the rest.
func (p *Partner) decide(o *orderflow.Order) (action, reason string) {
	if p.cfg.UnknownSKU != nil {
		var unknown []string
		for _, it := range o.Items {
			if p.cfg.UnknownSKU.MatchString(it.SKU) {
				unknown = append(unknown, it.SKU)
			}
		}
		if len(unknown) > 0 {
			return string(orderflow.ActionCancel), "partner does not carry " + strings.Join(unknown, ", ")
		}
	}
	if p.cfg.RejectRatio > 0 && p.cfg.Random() < p.cfg.RejectRatio {
		return string(orderflow.ActionCancel), "partner rejected the order"
	}
	return string(orderflow.ActionFulfill), ""
}

// refused reports whether PostgreSQL refused a write for its values (SQLSTATE class 22 or 23,
// or an index row too large): the same webhook would be refused on every retry.
func refused(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) &&
		(strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23") || pgErr.Code == "54000")
}

// deadLetter keeps a webhook whose values could not be stored, with the reason. Every field is
// made storable first: the webhook may be malformed in any of them.
func (p *Partner) deadLetter(ctx context.Context, id string, ev *orderflow.CloudEvent, cause error) error {
	_, err := p.pool.Exec(ctx, `INSERT INTO partner.dead_letters (webhook_id, event_type, subject, reason)
		VALUES ($1, $2, $3, $4) ON CONFLICT (webhook_id) DO NOTHING`,
		orderflow.StorableText(id, 200), orderflow.StorableText(ev.Type, 200), orderflow.StorableText(ev.Subject, 200),
		orderflow.StorableText(cause.Error(), 2000))
	if err != nil {
		return fmt.Errorf("recording a dead letter: %w", err)
	}
	p.m.deadLetters.Inc()
	p.log.Warn("webhook dead-lettered: its values cannot be stored", "webhook_id", orderflow.StorableText(id, 200), "err", cause)
	return nil
}

func (p *Partner) fault(ctx context.Context, id, kind string) {
	p.m.faults.WithLabelValues(kind).Inc()
	if _, err := p.pool.Exec(ctx, `INSERT INTO partner.faults (webhook_id, kind) VALUES ($1, $2)`, id, kind); err != nil {
		p.log.Warn("recording injected fault", "webhook_id", id, "err", err)
	}
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// problemBase prefixes the partner's problem types, the same namespace the API uses.
const problemBase = "https://orderflow.dev/problems/"

// problem answers an RFC 9457 problem titled by its status and returns the status, so a
// sender, or an operator reading a dead letter, can tell the reasons apart by type.
func problem(w http.ResponseWriter, status int, code, detail string) int {
	writeProblem(w, status, code, http.StatusText(status), detail)
	return status
}

// maxHookIDLength bounds webhook-id; orderflow sends UUIDs.
const maxHookIDLength = 255

// hookIDProblem says what is wrong with a webhook-id as a stored key, or "".
func hookIDProblem(id string) string {
	if len(id) > maxHookIDLength {
		return fmt.Sprintf("must be at most %d bytes", maxHookIDLength)
	}
	return orderflow.ValidateText(id, maxHookIDLength)
}

// eventTextProblem says which of the event's stored fields is not storable text, or "".
// encoding/json turns invalid UTF-8 into U+FFFD silently, so the raw body is checked too.
func eventTextProblem(body []byte, ev *orderflow.CloudEvent) string {
	if !utf8.Valid(body) {
		return "the body is not valid UTF-8"
	}
	for name, v := range map[string]string{"type": ev.Type, "subject": ev.Subject} {
		if len(v) > maxHookIDLength {
			return fmt.Sprintf("the event's %s must be at most %d bytes", name, maxHookIDLength)
		}
		if d := orderflow.ValidateText(v, maxHookIDLength); d != "" {
			return "the event's " + name + " " + d
		}
	}
	return ""
}

// safeID is a webhook-id fit for a log line: an unverified request's id is attacker text.
func safeID(id string) string {
	return orderflow.StorableText(id, 100)
}

package partner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"orderflow"
	"orderflow/internal/backoff"
	"orderflow/internal/tracing"
)

// callbackBatch is how many callbacks are claimed at once; at the benchmark's 2,000 orders/s
// and a few milliseconds per API call, 64 keeps the loop ahead.
const callbackBatch = 64

// callbackConcurrency is how many of a batch's calls are in flight at once. The API admits
// -max-in-flight requests (20 by default) and queues 32 more for at most 50 ms; all 64 calls
// of a batch at once overflowed that, and once the partner reused its connections they came
// as one burst: in a make bench run at 150 orders/s 28,763 callbacks were answered 503 and
// retried a second later, and a tenth of the load generator's orders were refused with them.
// A well-behaved client keeps a few calls open: 16 carry 16 / 20 ms = 800 calls/s even when
// the API answers slowly under load, and leave most of its queue to other clients.
const callbackConcurrency = 16

// Callback states, stored in partner.callbacks.state.
const (
	callbackPending = "pending"
	callbackDone    = "done"
	callbackFailed  = "failed"
)

type callback struct {
	webhookID string
	orderID   string
	action    string
	reason    string
	attempts  int // including this one
	// cycleStarted is when the callback was first due, or replayed: the retry horizon counts
	// from it.
	cycleStarted time.Time
	// traceParent is the span of the webhook request that scheduled the callback, "" for none.
	traceParent string
}

// answer is what one call to the API came back with.
type answer struct {
	status     int
	retryAfter time.Duration
	err        error
}

// RunCallbacks calls the API for due callbacks until ctx ends. Callbacks live in the
// partner's tables, so a restart between the 2xx and the call loses nothing; the event id as
// Idempotency-Key makes a repeated call (the partner died after the API answered) a replay.
func (p *Partner) RunCallbacks(ctx context.Context) error {
	t := time.NewTicker(p.cfg.CallbackPoll)
	defer t.Stop()
	go p.stopWhenDone(ctx)
	// While the database is away claims fail; they are retried with a capped backoff, and the
	// loop never gives up: the callbacks are safe in the table meanwhile.
	wait := backoff.New(p.cfg.CallbackPoll, 5*time.Second)
	for {
		due, err := p.claimCallbacks(ctx, callbackBatch)
		if ctx.Err() != nil {
			return nil
		}
		p.dbOK.Store(err == nil)
		if err != nil {
			pause := wait.Next()
			p.log.Warn("claiming callbacks failed; retrying", "err", err, "failures", wait.Failures(), "backoff", pause)
			if !backoff.Sleep(ctx, pause) {
				return nil
			}
			continue
		}
		wait.Reset()
		var wg sync.WaitGroup
		outcomes := make([]outcome, len(due))
		next := make(chan int, len(due))
		for i := range due {
			next <- i
		}
		close(next)
		for range min(callbackConcurrency, len(due)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					outcomes[i] = p.callBack(ctx, due[i])
				}
			}()
		}
		wg.Wait()
		p.recordOutcomes(context.WithoutCancel(ctx), outcomes)
		if len(due) > 0 {
			continue
		}
		p.refreshPending(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-p.wake:
		case <-t.C:
		}
	}
}

// claimCallbacks takes due callbacks and pushes them past the call's timeout: if the partner
// dies mid-call, the callback is due again once that lease passes.
func (p *Partner) claimCallbacks(ctx context.Context, n int) ([]callback, error) {
	rows, err := p.pool.Query(ctx, `
		WITH due AS (
			SELECT webhook_id FROM partner.callbacks
			WHERE state = 'pending' AND due_at <= now()
			ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)
		UPDATE partner.callbacks c SET due_at = now() + make_interval(secs => $2), attempts = c.attempts + 1
		FROM due WHERE c.webhook_id = due.webhook_id
		RETURNING c.webhook_id, c.order_id, c.action, coalesce(c.reason, ''), c.attempts, c.cycle_started_at,
		          coalesce(c.traceparent, '')`,
		n, (p.cfg.CallbackTimeout + 5*time.Second).Seconds())
	if err != nil {
		return nil, fmt.Errorf("claiming callbacks: %w", err)
	}
	defer rows.Close()
	var out []callback
	for rows.Next() {
		var c callback
		if err := rows.Scan(&c.webhookID, &c.orderID, &c.action, &c.reason, &c.attempts, &c.cycleStarted, &c.traceParent); err != nil {
			return nil, fmt.Errorf("reading callback: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// nextStep decides what follows one call: the callback is done, retried after a delay, or
// failed for good with a reason. It is the whole retry policy, kept free of I/O.
//
// An answer a retry cannot change — the order does not exist (404), the request is invalid
// (400, 422) — fails at once. Everything else a retry can change is retried with a backoff
// doubling from CallbackBackoff up to CallbackMaxBackoff (or the API's Retry-After) for as
// long as CallbackMaxAge from the cycle's start (12 h by default): the API down for hours
// (network errors, 5xx), overloaded (429, 503), slow (408, timeouts), or refusing the
// partner's key (401, 403: a credentials problem an operator fixes, not a property of the
// order). Past the horizon it fails too, and waits in the replayable list.
func (p *Partner) nextStep(c callback, a answer, now time.Time) (state string, delay time.Duration, reason string) {
	switch {
	case a.err == nil && a.status >= 200 && a.status < 300:
		return callbackDone, 0, ""
	case a.err == nil && a.status == http.StatusConflict:
		// The order already ended the other way (a customer cancelled it first): nothing
		// left for the partner to do.
		return callbackDone, 0, ""
	case a.err == nil && permanent(a.status):
		return callbackFailed, 0, fmt.Sprintf("the API answered %d: a retry would get the same answer", a.status)
	}
	what := "no answer: " + fmt.Sprint(a.err)
	if a.err == nil {
		what = "the API answered " + strconv.Itoa(a.status)
	}
	if p.cfg.CallbackMaxAttempts > 0 && c.attempts >= p.cfg.CallbackMaxAttempts {
		return callbackFailed, 0, fmt.Sprintf("%s; gave up after %d attempts", what, c.attempts)
	}
	delay = min(p.cfg.CallbackBackoff<<min(c.attempts-1, 30), p.cfg.CallbackMaxBackoff)
	if a.retryAfter > 0 {
		delay = min(a.retryAfter, p.cfg.CallbackMaxBackoff)
	}
	if now.Add(delay).Sub(c.cycleStarted) > p.cfg.CallbackMaxAge {
		return callbackFailed, 0, fmt.Sprintf("%s; gave up after %d attempts over %s (the retry horizon)",
			what, c.attempts, now.Sub(c.cycleStarted).Round(time.Second))
	}
	return callbackPending, delay, what
}

// permanent reports whether an answer says the request itself is wrong, so that no retry can
// succeed.
func permanent(status int) bool {
	switch status {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusGone, http.StatusUnprocessableEntity,
		http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		return true
	}
	return false
}

// outcome is what one call came back with, to be written to partner.callbacks; a zero
// outcome (shutting down) writes nothing.
type outcome struct {
	webhookID string
	state     string
	status    *int
	reason    *string
	next      time.Duration
}

// callBack makes one call and decides what follows; RunCallbacks writes the outcomes of a
// whole batch in one statement.
func (p *Partner) callBack(ctx context.Context, c callback) outcome {
	a := p.callAPI(ctx, c)
	if ctx.Err() != nil {
		return outcome{} // shutting down: the lease brings the callback back
	}
	p.apiOK.Store(a.err == nil && a.status < 500)
	state, next, reason := p.nextStep(c, a, time.Now())
	p.m.callbacks.WithLabelValues(c.action, state).Inc()
	log := p.log.With("webhook_id", c.webhookID, "order_id", c.orderID, "action", c.action, "attempt", c.attempts, "status", a.status)
	switch state {
	case callbackDone:
		// One line per order at Info was a write(2) and a JSON encoding per order; failures
		// stay at Warn and Error, the metric counts every outcome.
		log.Debug("order called back")
	case callbackFailed:
		log.Error("callback failed for good; it waits in the replayable list", "reason", reason)
	default:
		log.Warn("callback failed, will retry", "reason", reason, "in", next)
	}
	var st *int
	if a.status != 0 {
		st = &a.status
	}
	return outcome{webhookID: c.webhookID, state: state, status: st, reason: nullable(orderflow.StorableText(reason, 1000)), next: next}
}

// recordOutcomes writes a batch's outcomes in one statement: one commit (and WAL flush) per
// batch instead of one per callback, which at the pipeline's rates was a commit per order.
// Nothing is lost if it fails or the partner dies first: each callback's claim lapses and the
// call is made again, a replay for the API (the event id is its Idempotency-Key).
func (p *Partner) recordOutcomes(ctx context.Context, outs []outcome) {
	var (
		ids, states, reasons []*string
		statuses             []*int
		nexts                []float64
	)
	for _, o := range outs {
		if o.webhookID == "" {
			continue
		}
		ids, states, statuses, reasons = append(ids, &o.webhookID), append(states, &o.state), append(statuses, o.status), append(reasons, o.reason)
		nexts = append(nexts, o.next.Seconds())
	}
	if len(ids) == 0 {
		return
	}
	// One pipeline, one implicit transaction. The set_config keeps the UPDATE on its generic
	// plan (the same nested loop over the arrays with the primary key): priced at the default
	// 10 array rows it lost to the custom plan of the real few, and two calls in three were
	// planned anew (pg_stat_statements' track_planning at 300 orders/s).
	b := &pgx.Batch{}
	b.Queue(`SELECT set_config('plan_cache_mode', 'force_generic_plan', true)`)
	b.Queue(`UPDATE partner.callbacks c SET state = u.state, last_status = u.status, last_error = u.reason,
			due_at = CASE WHEN u.state = 'pending' THEN now() + make_interval(secs => u.next) ELSE c.due_at END,
			done_at = CASE WHEN u.state <> 'pending' THEN now() END
		FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::float8[]) AS u(webhook_id, state, status, reason, next)
		WHERE c.webhook_id = u.webhook_id`, ids, states, statuses, reasons, nexts)
	if err := p.pool.SendBatch(ctx, b).Close(); err != nil {
		p.log.Error("recording callback outcomes; their calls are made again once the claims lapse", "callbacks", len(ids), "err", err)
	}
}

func (p *Partner) callAPI(ctx context.Context, c callback) answer {
	// A client span of the webhook's trace; the API continues it from the traceparent header, so
	// its handler span, and the event the call emits, are in the order's trace.
	parent, _ := tracing.Parse(c.traceParent)
	ctx, span := tracing.Start(ctx, tracer, "callback "+c.action, parent, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("orderflow.order_id", c.orderID), attribute.String("orderflow.webhook_id", c.webhookID),
			attribute.Int("orderflow.attempt", c.attempts)))
	a := p.doCallAPI(ctx, c)
	if a.status != 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", a.status))
	}
	if a.err != nil {
		span.SetStatus(codes.Error, a.err.Error())
	} else if a.status >= 500 {
		span.SetStatus(codes.Error, "HTTP "+strconv.Itoa(a.status))
	}
	span.End()
	return a
}

func (p *Partner) doCallAPI(ctx context.Context, c callback) answer {
	var body io.Reader
	if c.action == "cancel" {
		b, err := json.Marshal(map[string]string{"reason": c.reason})
		if err != nil {
			return answer{err: fmt.Errorf("encoding cancel reason: %w", err)}
		}
		body = bytes.NewReader(b)
	}
	url := strings.TrimRight(p.cfg.APIURL, "/") + "/v1/orders/" + c.orderID + "/" + c.action
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
	if err != nil {
		return answer{err: fmt.Errorf("building callback request: %w", err)}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+p.cfg.APIKey)
	req.Header.Set("Idempotency-Key", c.webhookID)
	if tp, ok := tracing.FromContext(ctx); ok {
		req.Header.Set(tracing.Header, tp.String())
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return answer{err: fmt.Errorf("calling %s: %w", c.action, err)}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	a := answer{status: resp.StatusCode}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		a.retryAfter = time.Duration(s) * time.Second
	}
	return a
}

func (p *Partner) refreshPending(ctx context.Context) {
	var pending, failed int64
	if err := p.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM partner.callbacks WHERE state = 'pending'),
		(SELECT count(*) FROM partner.callbacks WHERE state = 'failed')`).Scan(&pending, &failed); err == nil {
		p.m.pendingCallbacks.Set(float64(pending))
		p.m.failedCallbacks.Set(float64(failed))
	}
}

package partner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"orderflow/internal/backoff"
)

// callbackBatch is how many callbacks are claimed and made concurrently; at the benchmark's
// 2,000 orders/s and a few milliseconds per API call, 64 keeps the loop ahead.
const callbackBatch = 64

type callback struct {
	webhookID string
	orderID   string
	action    string
	reason    string
	attempts  int // including this one
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
		for _, c := range due {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.callBack(ctx, c)
			}()
		}
		wg.Wait()
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
		RETURNING c.webhook_id, c.order_id, c.action, coalesce(c.reason, ''), c.attempts`,
		n, (p.cfg.CallbackTimeout + 5*time.Second).Seconds())
	if err != nil {
		return nil, fmt.Errorf("claiming callbacks: %w", err)
	}
	defer rows.Close()
	var out []callback
	for rows.Next() {
		var c callback
		if err := rows.Scan(&c.webhookID, &c.orderID, &c.action, &c.reason, &c.attempts); err != nil {
			return nil, fmt.Errorf("reading callback: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (p *Partner) callBack(ctx context.Context, c callback) {
	status, err := p.callAPI(ctx, c)
	if ctx.Err() != nil {
		return // shutting down: the lease brings the callback back
	}
	p.apiOK.Store(err == nil && status < 500)
	var state string
	var next time.Duration
	switch {
	case err == nil && status >= 200 && status < 300:
		state = "done"
	case err == nil && status == http.StatusConflict:
		// The order already ended the other way (a customer cancelled it first): nothing
		// left for the partner to do.
		state = "done"
	case err == nil && status >= 400 && status < 500 && status != http.StatusTooManyRequests && status != http.StatusRequestTimeout:
		// Unauthorized, not found, invalid: a retry would get the same answer.
		state = "failed"
	case c.attempts >= p.cfg.CallbackMaxAttempts:
		state = "failed"
	default:
		state = "pending"
		next = min(p.cfg.CallbackBackoff<<min(c.attempts-1, 20), p.cfg.CallbackMaxBackoff)
	}
	outcome := state
	errText := ""
	if err != nil {
		errText = err.Error()
	} else if state != "done" || status >= 300 {
		errText = fmt.Sprintf("HTTP %d", status)
	}
	p.m.callbacks.WithLabelValues(c.action, outcome).Inc()
	log := p.log.With("webhook_id", c.webhookID, "order_id", c.orderID, "action", c.action, "attempt", c.attempts, "status", status)
	switch state {
	case "done":
		log.Info("order called back")
	case "failed":
		log.Error("callback failed for good", "err", errText)
	default:
		log.Warn("callback failed, will retry", "err", errText, "in", next)
	}
	var st *int
	if status != 0 {
		st = &status
	}
	_, dbErr := p.pool.Exec(context.WithoutCancel(ctx), `UPDATE partner.callbacks SET state = $2, last_status = $3, last_error = $4,
			due_at = CASE WHEN $2 = 'pending' THEN now() + make_interval(secs => $5) ELSE due_at END,
			done_at = CASE WHEN $2 <> 'pending' THEN now() END
		WHERE webhook_id = $1`, c.webhookID, state, st, nullable(errText), next.Seconds())
	if dbErr != nil {
		log.Error("recording callback outcome", "err", dbErr)
	}
}

func (p *Partner) callAPI(ctx context.Context, c callback) (int, error) {
	var body io.Reader
	if c.action == "cancel" {
		b, err := json.Marshal(map[string]string{"reason": c.reason})
		if err != nil {
			return 0, fmt.Errorf("encoding cancel reason: %w", err)
		}
		body = bytes.NewReader(b)
	}
	url := strings.TrimRight(p.cfg.APIURL, "/") + "/v1/orders/" + c.orderID + "/" + c.action
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
	if err != nil {
		return 0, fmt.Errorf("building callback request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+p.cfg.APIKey)
	req.Header.Set("Idempotency-Key", c.webhookID)
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("calling %s: %w", c.action, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}

func (p *Partner) refreshPending(ctx context.Context) {
	var n int64
	if err := p.pool.QueryRow(ctx, `SELECT count(*) FROM partner.callbacks WHERE state = 'pending'`).Scan(&n); err == nil {
		p.m.pendingCallbacks.Set(float64(n))
	}
}

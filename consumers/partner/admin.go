package partner

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The admin routes keep the callbacks that failed for good replayable (issue 12, part 4):
//
//	GET  /admin/callbacks/failed?limit=&after=   the replayable list, oldest failure first
//	POST /admin/callbacks/{webhook_id}/replay     one callback: a new cycle, due now
//	POST /admin/callbacks/failed/replay           every failed callback
//
// They need `Authorization: Bearer <AdminToken>`; without a configured token they are off.
// Refusals are RFC 9457 problems with the stable types below.

// Problem codes of the admin routes.
const (
	codeUnauthorized     = "unauthorized"
	codeAdminDisabled    = "admin-disabled"
	codeCallbackNotFound = "callback-not-found"
	codeCallbackDone     = "callback-done"
	codeValidation       = "validation-failed"
)

type problemDoc struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

func writeProblem(w http.ResponseWriter, status int, code, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problemDoc{Type: problemBase + code, Title: title, Status: status, Detail: detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Callback is a callback as the admin routes show it.
type Callback struct {
	WebhookID      string     `json:"webhook_id"`
	OrderID        string     `json:"order_id"`
	Action         string     `json:"action"`
	Reason         string     `json:"reason,omitempty"`
	State          string     `json:"state"`
	Attempts       int        `json:"attempts"`
	LastStatus     *int       `json:"last_status,omitempty"`
	LastError      string     `json:"last_error,omitempty"`
	CycleStartedAt time.Time  `json:"cycle_started_at"`
	DoneAt         *time.Time `json:"done_at,omitempty"`
	Replays        int        `json:"replays"`
}

const callbackColumns = `webhook_id, order_id, action, coalesce(reason, ''), state, attempts, last_status,
	coalesce(last_error, ''), cycle_started_at, done_at, replays`

func scanCallback(row pgx.Row) (Callback, error) {
	var c Callback
	err := row.Scan(&c.WebhookID, &c.OrderID, &c.Action, &c.Reason, &c.State, &c.Attempts, &c.LastStatus,
		&c.LastError, &c.CycleStartedAt, &c.DoneAt, &c.Replays)
	return c, err
}

// admin wraps an admin route with the token check.
func (p *Partner) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p.cfg.AdminToken == "" {
			writeProblem(w, http.StatusForbidden, codeAdminDisabled, "Admin routes disabled",
				"start the partner with -admin-token (PARTNER_ADMIN_TOKEN) to use them")
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(p.cfg.AdminToken)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="partner-admin"`)
			writeProblem(w, http.StatusUnauthorized, codeUnauthorized, "Authentication required", "")
			return
		}
		h(w, r)
	}
}

func (p *Partner) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin/callbacks/failed", p.admin(p.handleFailedCallbacks))
	mux.HandleFunc("POST /admin/callbacks/failed/replay", p.admin(p.handleReplayFailed))
	mux.HandleFunc("POST /admin/callbacks/{webhook_id}/replay", p.admin(p.handleReplayCallback))
}

func (p *Partner) handleFailedCallbacks(w http.ResponseWriter, r *http.Request) {
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			writeProblem(w, http.StatusUnprocessableEntity, codeValidation, "The request is not valid", "limit must be 1-500")
			return
		}
		limit = n
	}
	after := r.URL.Query().Get("after")
	rows, err := p.pool.Query(r.Context(), `SELECT `+callbackColumns+` FROM partner.callbacks
		WHERE state = 'failed' AND ($1 = '' OR (done_at, webhook_id) > (SELECT done_at, webhook_id FROM partner.callbacks WHERE webhook_id = $1))
		ORDER BY done_at, webhook_id LIMIT $2`, after, limit)
	if err != nil {
		p.unavailable(w, err)
		return
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Callback, error) { return scanCallback(row) })
	if err != nil {
		p.unavailable(w, err)
		return
	}
	page := map[string]any{"data": out}
	if len(out) == limit {
		page["next_after"] = out[len(out)-1].WebhookID
	}
	if out == nil {
		page["data"] = []Callback{}
	}
	writeJSON(w, http.StatusOK, page)
}

func (p *Partner) handleReplayCallback(w http.ResponseWriter, r *http.Request) {
	c, err := p.ReplayCallback(r.Context(), r.PathValue("webhook_id"))
	switch {
	case errors.Is(err, errCallbackNotFound):
		writeProblem(w, http.StatusNotFound, codeCallbackNotFound, "Callback not found", "")
	case errors.Is(err, errCallbackDone):
		writeProblem(w, http.StatusConflict, codeCallbackDone, "Callback already done", "the order was called back; there is nothing to replay")
	case err != nil:
		p.unavailable(w, err)
	default:
		writeJSON(w, http.StatusAccepted, c)
	}
}

func (p *Partner) handleReplayFailed(w http.ResponseWriter, r *http.Request) {
	n, err := p.ReplayFailedCallbacks(r.Context())
	if err != nil {
		p.unavailable(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]int64{"replayed": n})
}

func (p *Partner) unavailable(w http.ResponseWriter, err error) {
	p.log.Error("admin route", "err", err)
	writeProblem(w, http.StatusServiceUnavailable, "unavailable", "Database unavailable", "")
}

var (
	errCallbackNotFound = errors.New("no such callback")
	errCallbackDone     = errors.New("the callback is done")
)

// ReplayCallback starts a new cycle for a callback that failed for good: attempts from zero,
// due now, a new retry horizon; the Idempotency-Key stays the webhook id, so the API takes a
// call it already served as a replay. A callback still pending is left as it is.
func (p *Partner) ReplayCallback(ctx context.Context, webhookID string) (Callback, error) {
	c, err := scanCallback(p.pool.QueryRow(ctx, `UPDATE partner.callbacks SET state = 'pending', attempts = 0, due_at = now(),
			cycle_started_at = now(), done_at = NULL, replays = replays + 1
		WHERE webhook_id = $1 AND state = 'failed' RETURNING `+callbackColumns, webhookID))
	if errors.Is(err, pgx.ErrNoRows) {
		c, err = scanCallback(p.pool.QueryRow(ctx, `SELECT `+callbackColumns+` FROM partner.callbacks WHERE webhook_id = $1`, webhookID))
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return c, errCallbackNotFound
		case err == nil && c.State == callbackDone:
			return c, errCallbackDone
		}
	}
	if err != nil {
		return c, fmt.Errorf("replaying callback: %w", err)
	}
	p.wakeUp()
	return c, nil
}

// ReplayFailedCallbacks replays every callback that failed for good (after an outage longer
// than the retry horizon, say) and returns how many.
func (p *Partner) ReplayFailedCallbacks(ctx context.Context) (int64, error) {
	tag, err := p.pool.Exec(ctx, `UPDATE partner.callbacks SET state = 'pending', attempts = 0, due_at = now(),
			cycle_started_at = now(), done_at = NULL, replays = replays + 1
		WHERE state = 'failed'`)
	if err != nil {
		return 0, fmt.Errorf("replaying failed callbacks: %w", err)
	}
	p.wakeUp()
	return tag.RowsAffected(), nil
}

func (p *Partner) wakeUp() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

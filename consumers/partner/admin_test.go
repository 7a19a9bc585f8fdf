package partner_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"orderflow/consumers/partner"
	"orderflow/internal/testenv"
)

// adminCall sends an admin request and returns the status, the Content-Type and the body.
func adminCall(t *testing.T, method, url, token string) (int, string, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	testenv.Must(t, err, "building request")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	testenv.Must(t, err, method+" "+url)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, resp.Header.Get("Content-Type"), m
}

// An API that stays away longer than the retry horizon leaves the callback failed for good,
// in a list an operator can read and replay from; once replayed, the callback is made. The
// admin routes refuse without the token and for what cannot be replayed, as RFC 9457 problems,
// and change nothing then.
func TestFailedCallbacksCanBeListedAndReplayed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var up atomic.Bool
	api := newFakeAPI(t, func(string, int) int {
		if up.Load() {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	})
	cfg := e.partnerConfig()
	cfg.APIURL, cfg.FulfillDelay, cfg.AdminToken = api.srv.URL, 0, "admin-secret"
	cfg.CallbackBackoff, cfg.CallbackMaxBackoff, cfg.CallbackMaxAge = 20*time.Millisecond, 50*time.Millisecond, 300*time.Millisecond
	p, err := partner.New(context.Background(), cfg)
	testenv.Must(t, err, "creating partner")
	t.Cleanup(p.Close)
	testenv.Start(t, "partner", p.Run)
	base := "http://" + e.addr
	eventually(t, "partner ready", 10*time.Second, func() bool { code, _ := getURL(base + "/readyz"); return code == 200 })

	order, other := uuid.NewString(), uuid.NewString()
	id, body := hookEvent(order)
	otherID, otherBody := hookEvent(other)
	for _, w := range [][2]any{{id, body}, {otherID, otherBody}} {
		if st := postHook(t, base, e.secret, w[0].(string), w[1].([]byte)); st != 200 {
			t.Fatalf("webhook answered %d", st)
		}
	}
	eventually(t, "both callbacks failed past the horizon", 30*time.Second, func() bool {
		return e.count(`SELECT count(*) FROM partner.callbacks WHERE state = 'failed' AND last_error LIKE '%retry horizon%'`) == 2
	})
	state := func(id string) string {
		var s string
		testenv.Must(t, e.sql.QueryRow(context.Background(), `SELECT state || '/' || attempts || '/' || replays FROM partner.callbacks WHERE webhook_id = $1`, id).Scan(&s), "reading callback")
		return s
	}
	before := state(id)

	// Refusals: each a problem, none changes anything.
	for _, c := range []struct {
		method, path, token string
		status              int
		typ                 string
	}{
		{http.MethodGet, "/admin/callbacks/failed", "", 401, "unauthorized"},
		{http.MethodPost, "/admin/callbacks/" + id + "/replay", "wrong", 401, "unauthorized"},
		{http.MethodPost, "/admin/callbacks/" + uuid.NewString() + "/replay", "admin-secret", 404, "callback-not-found"},
		{http.MethodGet, "/admin/callbacks/failed?limit=0", "admin-secret", 422, "validation-failed"},
	} {
		st, ct, m := adminCall(t, c.method, base+c.path, c.token)
		if st != c.status || ct != "application/problem+json" || m["type"] != "https://orderflow.dev/problems/"+c.typ {
			t.Errorf("%s %s: %d %s %v, want %d problem %s", c.method, c.path, st, ct, m, c.status, c.typ)
		}
	}
	if got := state(id); got != before {
		t.Fatalf("a refused request changed the callback: %s, was %s", got, before)
	}

	st, _, m := adminCall(t, http.MethodGet, base+"/admin/callbacks/failed", "admin-secret")
	if data, _ := m["data"].([]any); st != 200 || len(data) != 2 {
		t.Fatalf("failed list: %d %v, want both callbacks", st, m)
	}
	up.Store(true)
	st, _, m = adminCall(t, http.MethodPost, base+"/admin/callbacks/"+id+"/replay", "admin-secret")
	if st != http.StatusAccepted || m["state"] != "pending" || m["replays"] != float64(1) {
		t.Fatalf("replay: %d %v, want 202 and the callback pending again", st, m)
	}
	eventually(t, "the replayed callback made", 30*time.Second, func() bool { return strings.HasPrefix(state(id), "done/") })
	if api.callsFor(order) == 0 {
		t.Fatal("the API never got the replayed callback")
	}
	st, _, m = adminCall(t, http.MethodPost, base+"/admin/callbacks/"+id+"/replay", "admin-secret")
	if st != http.StatusConflict || m["type"] != "https://orderflow.dev/problems/callback-done" {
		t.Fatalf("replaying a done callback: %d %v, want 409 callback-done", st, m)
	}
	st, _, m = adminCall(t, http.MethodPost, base+"/admin/callbacks/failed/replay", "admin-secret")
	if st != http.StatusAccepted || m["replayed"] != float64(1) {
		t.Fatalf("replaying every failed callback: %d %v, want the other one", st, m)
	}
	eventually(t, "every callback made", 30*time.Second, func() bool {
		return e.count(`SELECT count(*) FROM partner.callbacks WHERE state = 'done'`) == 2
	})
}

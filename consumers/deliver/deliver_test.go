package deliver_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"orderflow"
	"orderflow/consumers/deliver"
	"orderflow/internal/testenv"
	"orderflow/webhook"
)

func TestDeliversSignedEventsToEachSubscribedEndpointOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	created := newReceiver(t, nil)
	all := newReceiver(t, nil)
	epCreated := e.endpoint(created.srv.URL+"/hook", "order.created")
	epAll := e.endpoint(all.srv.URL+"/hook", "*")
	created.setSecrets(epCreated.Secret)
	all.setSecrets(epAll.Secret)

	ev1, b1 := event(t, "order.created")
	ev2, b2 := event(t, "order.cancelled")
	ev3, b3 := event(t, "order.created")
	// ev1 twice: a record Kafka delivers again must not become a second delivery, even when
	// the second copy is a structured record from before the switch to binary mode.
	e.produce(b1, b2)
	e.produceLegacy(b3, b1)
	svc := e.start(nil)

	eventually(t, "all deliveries succeeded", 60*time.Second, func() bool {
		return e.count("SELECT count(*) FROM webhook_deliveries WHERE state = 'succeeded'") == 5
	})
	if n := e.count("SELECT count(*) FROM webhook_deliveries"); n != 5 {
		t.Fatalf("%d deliveries, want 5 (2 for order.created, 3 for *)", n)
	}
	_, acc, bad := created.snapshot()
	if len(acc) != 2 || acc[ev1.ID] != 1 || acc[ev3.ID] != 1 || bad != 0 {
		t.Fatalf("order.created endpoint accepted %v (bad signatures %d), want %s and %s once", acc, bad, ev1.ID, ev3.ID)
	}
	_, acc, bad = all.snapshot()
	if len(acc) != 3 || acc[ev2.ID] != 1 || bad != 0 {
		t.Fatalf("* endpoint accepted %v (bad signatures %d), want all three once", acc, bad)
	}
	// The body is the whole event in structured JSON (from a binary record) and the
	// webhook-id is the event id.
	all.mu.Lock()
	got := all.bodies[ev2.ID]
	all.mu.Unlock()
	if !bytes.Equal(got, b2) {
		t.Fatalf("body\n%s\nwant the whole event in structured JSON\n%s", got, b2)
	}
	// An old structured record's body is the record value byte for byte.
	all.mu.Lock()
	got = all.bodies[ev3.ID]
	all.mu.Unlock()
	if !bytes.Equal(got, b3) {
		t.Fatalf("body\n%s\nwant the old record's value\n%s", got, b3)
	}
	if n := e.count("SELECT count(*) FROM webhook_delivery_attempts WHERE outcome = 'success' AND status = 204"); n != 5 {
		t.Fatalf("%d successful attempts logged, want 5", n)
	}
	// What an operator sees: five successes, nothing pending, and the group caught up with
	// all four records.
	metrics := httptest.NewServer(svc.Handler())
	defer metrics.Close()
	eventually(t, "metrics show the deliveries and no lag", 30*time.Second, func() bool {
		resp, err := http.Get(metrics.URL + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if !lagZero(string(body)) {
			return false
		}
		for _, want := range []string{
			`orderflow_deliver_attempts_total{outcome="success"} 5`,
			"orderflow_deliver_pending 0",
			"orderflow_deliver_deliveries_enqueued_total 5",
			"orderflow_deliver_event_to_delivered_seconds_count 5",
		} {
			if !strings.Contains(string(body), want) {
				return false
			}
		}
		// Lag is one series per partition: every one of them must be at zero.
		lagSeries := 0
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "orderflow_deliver_consumer_lag{") {
				lagSeries++
				if !strings.HasSuffix(line, " 0") {
					return false
				}
			}
		}
		return lagSeries != 0
	})
}

func TestFailingEndpointIsRetriedUntilItRecovers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Every event fails three times (500, 503 with Retry-After, a hang past the timeout),
	// then succeeds.
	r := newReceiver(t, func(id string, n int) int {
		switch n {
		case 1:
			return http.StatusInternalServerError
		case 2:
			return http.StatusServiceUnavailable
		case 3:
			return -1
		}
		return http.StatusOK
	})
	ep := e.endpoint(r.srv.URL, "order.created")
	r.setSecrets(ep.Secret)
	var ids []string
	for range 5 {
		ev, b := event(t, "order.created")
		ids = append(ids, ev.ID)
		e.produce(b)
	}
	e.start(func(c *deliver.Config) { c.Policy.Timeout = 300 * time.Millisecond })

	eventually(t, "every event delivered", 60*time.Second, func() bool { return r.acceptedCount() == 5 })
	calls, acc, _ := r.snapshot()
	for _, id := range ids {
		if acc[id] != 1 || calls[id] != 4 {
			t.Fatalf("event %s: %d calls, %d accepted; want 4 calls and 1 accepted", id, calls[id], acc[id])
		}
	}
	eventually(t, "attempts recorded", 10*time.Second, func() bool {
		return e.count("SELECT count(*) FROM webhook_deliveries WHERE state = 'succeeded' AND attempts = 4") == 5
	})
	for outcome, want := range map[string]int64{"http_5xx": 10, "timeout": 5, "success": 5} {
		if n := e.count("SELECT count(*) FROM webhook_delivery_attempts WHERE outcome = $1", outcome); n != want {
			t.Errorf("%d %s attempts logged, want %d", n, outcome, want)
		}
	}
}

func TestDeadEndpointDoesNotHoldUpTheOthers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	hanging := newReceiver(t, func(string, int) int { return -1 })
	failing := newReceiver(t, func(string, int) int { return http.StatusInternalServerError })
	healthy := newReceiver(t, nil)
	for _, r := range []*receiver{hanging, failing, healthy} {
		ep := e.endpoint(r.srv.URL, "order.created")
		r.setSecrets(ep.Secret)
	}
	const n = 40
	values := make([][]byte, n)
	for i := range values {
		_, values[i] = event(t, "order.created")
	}
	e.produce(values...)
	// Two slots per endpoint out of four: the hanging and the failing endpoint can take at most
	// two each, the healthy one always finds a free slot. The timeout outlasts the test, so the
	// hanging endpoint holds its slots throughout.
	e.start(func(c *deliver.Config) {
		c.Workers, c.PerEndpoint = 6, 2
		c.Policy.Timeout = 5 * time.Minute
	})
	eventually(t, "healthy endpoint receives every event", 60*time.Second, func() bool { return healthy.acceptedCount() == n })
	if hanging.acceptedCount() != 0 || failing.acceptedCount() != 0 {
		t.Fatal("a dead endpoint accepted something")
	}
	hangCalls, _, _ := hanging.snapshot()
	if len(hangCalls) > 2 {
		t.Fatalf("%d requests in flight to the hanging endpoint, want at most its 2 slots", len(hangCalls))
	}
	// Kafka did not wait either: every event has its deliveries persisted and its offset committed.
	if got := e.count("SELECT count(*) FROM webhook_deliveries"); got != 3*n {
		t.Fatalf("%d deliveries persisted, want %d", got, 3*n)
	}
}

func TestExhaustedDeliveryIsADeadLetterUntilReplayed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var healthy bool
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	r := newReceiver(t, func(string, int) int {
		<-mu
		defer func() { mu <- struct{}{} }()
		if healthy {
			return http.StatusOK
		}
		return http.StatusBadGateway
	})
	ep := e.endpoint(r.srv.URL, "order.created")
	r.setSecrets(ep.Secret)
	ev, b := event(t, "order.created")
	e.produce(b)
	e.start(func(c *deliver.Config) { c.Policy.MaxAttempts = 3 })

	ctx := context.Background()
	var letters []orderflow.DeadLetter
	eventually(t, "a dead letter", 60*time.Second, func() bool {
		var err error
		letters, err = e.db.DeadLetters(ctx, "", "", 10)
		testenv.Must(t, err, "listing dead letters")
		return len(letters) == 1
	})
	l := letters[0]
	if l.EventID != ev.ID || l.EndpointID != ep.ID || l.Attempts != 3 || l.LastStatus == nil || *l.LastStatus != 502 || l.LastError == "" {
		t.Fatalf("dead letter %+v, want event %s, endpoint %s, 3 attempts, last status 502", l, ev.ID, ep.ID)
	}
	<-mu
	healthy = true
	mu <- struct{}{}
	if _, err := e.db.ReplayDeadLetter(ctx, l.ID); err != nil {
		t.Fatalf("replay: %v", err)
	}
	eventually(t, "replayed delivery succeeds", 30*time.Second, func() bool { return r.acceptedCount() == 1 })
	eventually(t, "delivery recorded as succeeded", 10*time.Second, func() bool {
		return e.count("SELECT count(*) FROM webhook_deliveries WHERE state = 'succeeded' AND replays = 1") == 1
	})
	if n := e.count("SELECT count(*) FROM webhook_delivery_attempts"); n != 4 {
		t.Fatalf("%d attempts in the audit log, want 3 + 1", n)
	}
	if letters, _ := e.db.DeadLetters(ctx, "", "", 10); len(letters) != 0 {
		t.Fatalf("dead letters after a successful replay: %+v", letters)
	}
}

func TestGoneDisablesTheEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := newReceiver(t, func(string, int) int { return http.StatusGone })
	ep := e.endpoint(r.srv.URL, "order.created")
	r.setSecrets(ep.Secret)
	_, b := event(t, "order.created")
	e.produce(b)
	e.start(nil)
	eventually(t, "endpoint disabled", 60*time.Second, func() bool {
		return e.count("SELECT count(*) FROM webhook_endpoints WHERE disabled_at IS NOT NULL AND disabled_reason LIKE '%410%'") == 1
	})
	if n := e.count("SELECT count(*) FROM webhook_deliveries WHERE state = 'dead' AND attempts = 1"); n != 1 {
		t.Fatalf("%d dead deliveries after one attempt, want 1", n)
	}
	// Later events are not even queued for it.
	_, b2 := event(t, "order.created")
	e.produce(b2)
	time.Sleep(time.Second) // give the intake a chance to (wrongly) enqueue
	if n := e.count("SELECT count(*) FROM webhook_deliveries"); n != 1 {
		t.Fatalf("%d deliveries, want only the first", n)
	}
	calls, _, _ := r.snapshot()
	if len(calls) != 1 {
		t.Fatalf("%d requests to a disabled endpoint", len(calls))
	}
}

func TestRotationSignsWithBothSecretsUntilTheGraceEnds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := newReceiver(t, nil)
	ep := e.endpoint(r.srv.URL, "order.created")
	rotated, err := e.db.RotateEndpointSecret(context.Background(), ep.ID, mustSecret(t), time.Hour)
	testenv.Must(t, err, "rotating")
	// The receiver has not switched yet: the old secret alone must still verify.
	r.setSecrets(ep.Secret)
	ev, b := event(t, "order.created")
	e.produce(b)
	e.start(nil)
	eventually(t, "delivered during the rotation", 60*time.Second, func() bool { return r.acceptedCount() == 1 })
	r.mu.Lock()
	sig := r.sigs[ev.ID]
	r.mu.Unlock()
	if len(strings.Fields(sig)) != 2 {
		t.Fatalf("signature header %q, want two signatures during the rotation", sig)
	}
	// After the grace period only the new secret signs.
	_, err = e.db.RotateEndpointSecret(context.Background(), ep.ID, rotated.Secret, 0)
	testenv.Must(t, err, "ending the grace period")
	r.setSecrets(rotated.Secret)
	ev2, b2 := event(t, "order.created")
	e.produce(b2)
	eventually(t, "delivered after the rotation", 60*time.Second, func() bool { return r.acceptedCount() == 2 })
	r.mu.Lock()
	sig = r.sigs[ev2.ID]
	r.mu.Unlock()
	if len(strings.Fields(sig)) != 1 {
		t.Fatalf("signature header %q, want one signature after the grace period", sig)
	}
}

func TestACrashedDeliverersClaimComesBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := newReceiver(t, nil)
	ep := e.endpoint(r.srv.URL, "order.created")
	r.setSecrets(ep.Secret)
	ctx := context.Background()
	ev, b := event(t, "order.created")
	_, _, err := e.db.EnqueueAndClaimDeliveries(ctx, []orderflow.WebhookEvent{{ID: ev.ID, Type: ev.Type, Subject: ev.Subject, Time: ev.Time, Payload: b}}, orderflow.DeliveryClaim{})
	testenv.Must(t, err, "enqueueing")
	// A deliverer claims the delivery and dies without reporting back.
	crashed, err := e.db.ClaimDeliveries(ctx, orderflow.DeliveryClaim{Limit: 10, PerEndpoint: 10, Lease: 500 * time.Millisecond})
	if err != nil || len(crashed) != 1 {
		t.Fatalf("claim: %v %v", crashed, err)
	}
	if again, _ := e.db.ClaimDeliveries(ctx, orderflow.DeliveryClaim{Limit: 10, PerEndpoint: 10, Lease: time.Second}); len(again) != 0 {
		t.Fatalf("a claimed delivery was claimed twice: %v", again)
	}
	e.start(nil)
	eventually(t, "delivered once the lease ran out", 30*time.Second, func() bool {
		return e.count("SELECT count(*) FROM webhook_deliveries WHERE state = 'succeeded'") == 1
	})
	// The dead deliverer's late write-back must not overwrite the outcome.
	owned, err := e.db.RecordAttempts(ctx, []orderflow.DeliveryReport{{Delivery: crashed[0],
		Attempt: orderflow.Attempt{Number: 1, StartedAt: time.Now(), Outcome: "network", Error: "late"},
		Result:  orderflow.DeliveryResult{State: orderflow.DeliveryDead}}})
	if err != nil || len(owned) != 1 || owned[0] {
		t.Fatalf("late write-back from an expired claim: owned=%v err=%v, want it refused", owned, err)
	}
	if n := e.count("SELECT count(*) FROM webhook_deliveries WHERE state = 'succeeded'"); n != 1 {
		t.Fatal("the late write-back changed the delivery")
	}
	if _, acc, _ := r.snapshot(); acc[ev.ID] != 1 {
		t.Fatalf("accepted %v, want the event once", acc)
	}
}

func mustSecret(t *testing.T) string {
	t.Helper()
	s, err := webhook.NewSecret()
	testenv.Must(t, err, "making secret")
	return s
}

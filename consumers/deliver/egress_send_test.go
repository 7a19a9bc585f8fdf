package deliver_test

import (
	"context"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"orderflow"
	"orderflow/consumers/deliver"
	"orderflow/internal/egress"
	"orderflow/internal/testenv"
)

// rebinder is DNS that an attacker controls: the name looked public when it was registered,
// and resolves to loopback, where the test's receiver listens, when the webhook is sent.
type rebinder struct{ lookups atomic.Int64 }

func (r *rebinder) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.lookups.Add(1)
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}

// TestARebindingNameIsRefusedAtSendTime: an https endpoint whose name resolves to a private
// address when the webhook is sent is never connected to; its delivery becomes a dead letter
// whose reason names the refusal.
func TestARebindingNameIsRefusedAtSendTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	recv := newReceiver(t, nil)
	port := recv.srv.URL[strings.LastIndex(recv.srv.URL, ":")+1:]
	// Registration would accept this URL: a public-looking name, https.
	_, err := egress.CheckURL("https://rebind.example:"+port+"/hook", egress.Policy{})
	testenv.Must(t, err, "the URL passes the registration check")
	ep := e.endpoint("https://rebind.example:"+port+"/hook", orderflow.EventOrderCreated)
	dns := &rebinder{}
	e.start(func(c *deliver.Config) {
		c.Egress = egress.Policy{} // the production default: nothing private
		c.Resolver = dns
		c.Policy.MaxAttempts = 2
	})
	_, v := event(t, orderflow.EventOrderCreated)
	e.produce(v)
	eventually(t, "the delivery is a dead letter", 60*time.Second, func() bool {
		return e.count(`SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND state = 'dead'`, ep.ID) == 1
	})
	var lastError string
	testenv.Must(t, e.sql.QueryRow(context.Background(), `SELECT last_error FROM webhook_deliveries WHERE endpoint_id = $1`, ep.ID).Scan(&lastError), "reading the dead letter")
	if !strings.Contains(lastError, "refused by the egress policy (private-address)") {
		t.Errorf("dead letter reason %q, want the egress refusal named", lastError)
	}
	if strings.Contains(lastError, "127.0.0.1") || strings.Contains(lastError, port) {
		t.Errorf("dead letter reason %q reveals the address it resolved to", lastError)
	}
	if calls, _, _ := recv.snapshot(); len(calls) != 0 || dns.lookups.Load() == 0 {
		t.Fatalf("the receiver behind the rebinding name got %d requests (lookups %d)", len(calls), dns.lookups.Load())
	}
}

// TestDeadLettersDoNotMapTheNetwork: a connection that fails at an allowed address records
// that it failed, not which address and port refused it.
func TestDeadLettersDoNotMapTheNetwork(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ep := e.endpoint("http://127.0.0.1:1/hook", orderflow.EventOrderCreated)
	e.start(func(c *deliver.Config) { c.Policy.MaxAttempts = 1 })
	_, v := event(t, orderflow.EventOrderCreated)
	e.produce(v)
	eventually(t, "the delivery is a dead letter", 60*time.Second, func() bool {
		return e.count(`SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND state = 'dead'`, ep.ID) == 1
	})
	var lastError string
	testenv.Must(t, e.sql.QueryRow(context.Background(), `SELECT last_error FROM webhook_deliveries WHERE endpoint_id = $1`, ep.ID).Scan(&lastError), "reading the dead letter")
	if lastError != "connecting to webhook endpoint: failed" {
		t.Errorf("dead letter reason %q, want one that names no address or port", lastError)
	}
}

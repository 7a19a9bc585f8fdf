package deliver_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"orderflow/consumers/deliver"
	"orderflow/internal/tcpproxy"
	"orderflow/internal/testenv"
	"orderflow/postgres"
)

// outage is how long a dependency stays away: longer than any retry budget the deliverer
// ever had (it used to exit 2 s after Kafka went away).
const outage = 20 * time.Second

// TestDelivererRidesOutKafkaAndPostgresOutages takes Kafka and then PostgreSQL away from a
// running deliverer for longer than any retry budget. It must stay up and say so on /readyz
// and in its metrics; while Kafka is away the sender must keep sending what PostgreSQL
// already holds; once each dependency is back, events produced during and after the outage
// are delivered without anyone restarting it.
func TestDelivererRidesOutKafkaAndPostgresOutages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var open atomic.Bool // the receiver refuses everything until open
	r := newReceiver(t, func(string, int) int {
		if open.Load() {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	})
	ep := e.endpoint(r.srv.URL, "order.created")
	r.setSecrets(ep.Secret)

	kafkaProxy := tcpproxy.Start(t, e.brokers[0])
	pgProxy, proxied := testenv.NewDatabaseProxy(t, e.dsn)
	db, err := postgres.Open(context.Background(), proxied, 10)
	testenv.Must(t, err, "opening the database through the proxy")
	t.Cleanup(db.Close)
	cfg := deliver.Config{Brokers: e.brokers, Topic: e.topic, GroupID: e.group, Policy: fastPolicy(),
		Workers: 8, PerEndpoint: 4, Poll: 50 * time.Millisecond, StatsEvery: 200 * time.Millisecond,
		Lease: time.Second, Logger: quietLogger(), Dial: kafkaProxy.Dial, Egress: loopbackOnly(t)}
	svc, err := deliver.New(cfg, db)
	testenv.Must(t, err, "creating deliverer")
	run := testenv.Start(t, "deliverer", svc.Run)
	ops := httptest.NewServer(svc.Handler())
	defer ops.Close()
	alive := func(during string) {
		t.Helper()
		select {
		case <-run.Done():
			t.Fatalf("the deliverer stopped %s: %v", during, run.Err())
		default:
		}
	}
	rideOut := func(name string, px *tcpproxy.Proxy) {
		t.Helper()
		eventually(t, name+" reported away on /readyz and in the metrics", 30*time.Second, func() bool {
			code, _ := get(ops.URL + "/readyz")
			_, metrics := get(ops.URL + "/metrics")
			return code == http.StatusServiceUnavailable &&
				strings.Contains(metrics, `orderflow_deliver_dependency_up{dependency="`+name+`"} 0`)
		})
		deadline := time.Now().Add(outage)
		for time.Now().Before(deadline) {
			alive("while " + name + " was away")
			time.Sleep(500 * time.Millisecond)
		}
		px.Restore()
	}

	// A delivery the sender holds in PostgreSQL, failing while the receiver refuses.
	held, b := event(t, "order.created")
	e.produce(b)
	eventually(t, "a failing delivery in the database", 60*time.Second, func() bool {
		return e.count(`SELECT count(*) FROM webhook_deliveries WHERE event_id = $1 AND attempts >= 1`, held.ID) == 1
	})

	kafkaProxy.Cut()
	during, b := event(t, "order.created")
	e.produce(b) // straight to the broker: only the deliverer is cut off
	// The sender does not need Kafka: the held delivery goes out during the outage.
	open.Store(true)
	eventually(t, "the held delivery sent while Kafka is away", 30*time.Second, func() bool {
		_, acc, _ := r.snapshot()
		return acc[held.ID] == 1
	})
	rideOut("kafka", kafkaProxy)
	after, b := event(t, "order.created")
	e.produce(b)
	eventually(t, "events of and after the Kafka outage delivered", 2*time.Minute, func() bool {
		_, acc, _ := r.snapshot()
		return acc[during.ID] == 1 && acc[after.ID] == 1
	})

	pgProxy.Cut()
	duringPG, b := event(t, "order.created")
	e.produce(b)
	rideOut("postgres", pgProxy)
	afterPG, b := event(t, "order.created")
	e.produce(b)
	eventually(t, "events of and after the PostgreSQL outage delivered", 2*time.Minute, func() bool {
		_, acc, _ := r.snapshot()
		return acc[duringPG.ID] == 1 && acc[afterPG.ID] == 1
	})
	eventually(t, "ready again", 30*time.Second, func() bool {
		code, _ := get(ops.URL + "/readyz")
		return code == http.StatusOK
	})
	alive("after both outages")
	// The attempt reports of sends made while PostgreSQL was away are written when it returns
	// (the sender retries them): the receiver already has every event, the states follow.
	eventually(t, "the 5 deliveries recorded as succeeded", time.Minute, func() bool {
		return e.count(`SELECT count(*) FROM webhook_deliveries WHERE state = 'succeeded'`) == 5
	})
	// Every event reached the receiver. A send whose report could not be written while
	// PostgreSQL was away may be sent again once its lease lapses: delivery is at least once,
	// under the same webhook-id, which is what the partner dedupes on.
	_, acc, _ := r.snapshot()
	for _, ev := range []string{held.ID, during.ID, after.ID, duringPG.ID, afterPG.ID} {
		if acc[ev] == 0 {
			t.Errorf("event %s never accepted by the receiver", ev)
		}
	}
}

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

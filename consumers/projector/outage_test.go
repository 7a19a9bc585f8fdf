package projector

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"orderflow/internal/tcpproxy"
	"orderflow/internal/testenv"
)

// outage is how long a dependency stays away in the outage tests: longer than any retry
// budget the projector ever had (it used to exit 14 s after Kafka went away).
const outage = 20 * time.Second

// TestProjectorRidesOutKafkaAndPostgresOutages takes Kafka and then PostgreSQL away from a
// running projector for longer than any retry budget: it must stay up, say so on /readyz and
// in its metrics, and project by itself the events that arrive once each is back.
func TestProjectorRidesOutKafkaAndPostgresOutages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	kafkaProxy := tcpproxy.Start(t, e.brokers[0])
	pgProxy, proxied := testenv.NewDatabaseProxy(t, e.dsn)
	cfg := e.config()
	cfg.Dial = kafkaProxy.Dial
	r := start(t, cfg, mustOpenDB(t, proxied))
	ops := httptest.NewServer(r.p.Handler())
	defer ops.Close()

	first := eventFor(newOrder("cust-outage"))
	e.produce(t, first)
	waitFor(t, "the first summary", 60*time.Second, func() (bool, error) { return e.summaries(t)[first.order.ID].Version == 1, nil })
	waitFor(t, "ready", 30*time.Second, func() (bool, error) { return readyz(ops.URL) == http.StatusOK, nil })

	for _, dep := range []struct {
		name  string
		proxy *tcpproxy.Proxy
	}{{dependencyKafka, kafkaProxy}, {dependencyPostgres, pgProxy}} {
		dep.proxy.Cut()
		during := eventFor(newOrder("cust-outage-" + dep.name))
		e.produce(t, during) // straight to the broker: only the projector is cut off
		waitFor(t, dep.name+" reported away", 30*time.Second, func() (bool, error) {
			up, err := gaugeValue(r.p.metrics.registry, "orderflow_projector_dependency_up", map[string]string{"dependency": dep.name})
			return up == 0 && readyz(ops.URL) == http.StatusServiceUnavailable, err
		})
		deadline := time.Now().Add(outage)
		for time.Now().Before(deadline) {
			select {
			case <-r.Done():
				t.Fatalf("the projector stopped while %s was away: %v", dep.name, r.Err())
			case <-time.After(500 * time.Millisecond):
			}
		}
		dep.proxy.Restore()
		after := eventFor(newOrder("cust-after-" + dep.name))
		e.produce(t, after)
		waitFor(t, "events of and after the "+dep.name+" outage projected", 2*time.Minute, func() (bool, error) {
			got := e.summaries(t)
			return got[during.order.ID].Version == 1 && got[after.order.ID].Version == 1, nil
		})
		waitFor(t, "ready again after the "+dep.name+" outage", 30*time.Second, func() (bool, error) {
			up, err := gaugeValue(r.p.metrics.registry, "orderflow_projector_dependency_up", map[string]string{"dependency": dep.name})
			return up == 1 && readyz(ops.URL) == http.StatusOK, err
		})
	}
	select {
	case <-r.Done():
		t.Fatalf("the projector stopped: %v", r.Err())
	default:
	}
	if n := counterValue(r.p.metrics.kafkaErrors); n == 0 {
		t.Error("no Kafka error counted during the Kafka outage")
	}
}

func readyz(base string) int {
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

package capture_test

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"orderflow/capture"
	"orderflow/internal/tcpproxy"
)

// silentNetworkBound is what issue 12 asks of every service: a silent network noticed within
// 30 s.
const silentNetworkBound = 30 * time.Second

// viaProxy is dsn with its host and port replaced by addr.
func viaProxy(t *testing.T, dsn, addr string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	mustOK(t, err)
	u.Host = addr
	return u.String()
}

func hostPort(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	mustOK(t, err)
	return u.Host
}

// silenceDrill runs capture as cfg says, makes the path behind px silent while nothing is
// written (the hardest case: nobody waits for an answer), and checks that /readyz fails within
// the bound. Rows are then committed straight into the database while the path is silent, and
// once it returns /readyz answers again and every row reaches the topic exactly once.
func silenceDrill(t *testing.T, e *env, cfg capture.Config, px *tcpproxy.Proxy) {
	t.Helper()
	r := startCapture(t, cfg)
	r.waitStreaming(t)
	srv := httptest.NewServer(r.c.Handler())
	defer srv.Close()
	ready := func() bool { code, err := httpGet(srv.URL + "/readyz"); return err == nil && code == http.StatusOK }
	waitFor(t, "capture to be ready", 30*time.Second, func() (bool, error) { return ready(), nil })

	w := newWriter()
	keys := keysN(20)
	write := func(d time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		writePaced(t, ctx, e.dsn, w, keys, math.MaxInt, 5*time.Millisecond)
	}
	write(time.Second)
	waitDrained(t, e, int64(len(w.committed)), time.Minute)

	px.Blackhole()
	silent := time.Now()
	waitFor(t, "/readyz to fail", 2*silentNetworkBound, func() (bool, error) { return !ready(), nil })
	detected := time.Since(silent)
	t.Logf("silent network noticed after %s", detected.Round(100*time.Millisecond))
	if detected > silentNetworkBound {
		t.Errorf("noticed after %s, want within %s", detected.Round(100*time.Millisecond), silentNetworkBound)
	}
	write(2 * time.Second) // rows keep coming while the path is silent
	px.Restore()
	restored := time.Now()
	waitFor(t, "/readyz to answer again", 2*time.Minute, func() (bool, error) { return ready(), nil })
	t.Logf("ready again %s after the path returned", time.Since(restored).Round(100*time.Millisecond))
	write(time.Second)
	waitDrained(t, e, int64(len(w.committed)), 2*time.Minute)
	checkExactlyOnce(t, e, readTopic(t, e.brokers, e.topic()), w.committed)
}

// TestSilentDatabaseIsNoticed: the network between capture and PostgreSQL stops forwarding
// without closing anything. Capture notices within 30 s (a reply it asked the walsender for does
// not come), /readyz fails, and once the path is back it reconnects and loses and duplicates
// nothing. (Before, it stayed ready until the kernel gave up on the connection.)
func TestSilentDatabaseIsNoticed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	px := tcpproxy.Start(t, hostPort(t, e.dsn))
	cfg := e.config()
	cfg.DatabaseURL = viaProxy(t, e.dsn, px.Addr())
	silenceDrill(t, e, cfg, px)
}

// TestSilentKafkaIsNoticed: the same with the network between capture and Kafka.
func TestSilentKafkaIsNoticed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	px := tcpproxy.Start(t, e.brokers[0])
	cfg := e.config()
	cfg.Kafka.Dial = px.Dial
	silenceDrill(t, e, cfg, px)
}

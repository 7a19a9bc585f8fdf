package testenv

import (
	"net/url"
	"testing"

	"orderflow/internal/tcpproxy"
)

// NewDatabaseProxy puts a tcpproxy in front of the server of dsn and returns it with the URL
// that connects through it, so a test can take PostgreSQL away from one component (Cut) or
// make it silent (Blackhole) without stopping the shared server.
func NewDatabaseProxy(tb testing.TB, dsn string) (*tcpproxy.Proxy, string) {
	tb.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		tb.Fatalf("parsing %s: %v", dsn, err)
	}
	p := tcpproxy.Start(tb, u.Host)
	u.Host = p.Addr()
	return p, u.String()
}

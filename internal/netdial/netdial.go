// Package netdial opens the TCP connections of every orderflow client of PostgreSQL and Kafka,
// so that a peer that goes silent without closing the connection (a black-holed route, a
// failover that leaves the old address dead) is noticed in seconds, not after the kernel's
// default retransmission timeout of about 15 minutes:
//
//   - keepalive probes on an idle connection: idle KeepAliveIdle, then every
//     KeepAliveInterval, given up after KeepAliveCount unanswered;
//   - a TCP user timeout on Linux: data unacknowledged for UserTimeout fails the connection,
//     also while the application keeps writing (status updates, requests).
//
// Both only see a dead path. A peer whose kernel still answers but whose process does not (or a
// proxy that stops forwarding) is for the protocol timeouts of each client to notice: read
// deadlines, request timeouts, pings.
package netdial

import (
	"context"
	"net"
	"time"
)

// The settings every orderflow client uses; a silent path fails a connection within about
// UserTimeout when data is in flight and within KeepAliveIdle + KeepAliveCount ×
// KeepAliveInterval when it is idle.
const (
	ConnectTimeout    = 10 * time.Second
	KeepAliveIdle     = 10 * time.Second
	KeepAliveInterval = 5 * time.Second
	KeepAliveCount    = 3
	UserTimeout       = 20 * time.Second
)

// Dialer returns a dialer with the settings above.
func Dialer() *net.Dialer {
	return &net.Dialer{
		Timeout: ConnectTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: KeepAliveIdle, Interval: KeepAliveInterval, Count: KeepAliveCount,
		},
		Control: setUserTimeout,
	}
}

// DialContext dials with Dialer; it has the signature pgconn's DialFunc and kafka-go's dial
// hooks expect.
func DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return Dialer().DialContext(ctx, network, address)
}

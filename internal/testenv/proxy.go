package testenv

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// Proxy forwards TCP connections to a real server until it is cut: then it closes every
// connection and refuses new ones, which is what a client sees while the server is down. Tests
// use it to take PostgreSQL or Kafka away from one component without stopping the shared
// servers everyone else uses.
type Proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]struct{}
}

// NewProxy listens on a free port of 127.0.0.1 and forwards to target (host:port) until the
// test ends.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listening for a proxy: %v", err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	tb.Cleanup(func() { ln.Close(); p.Cut() })
	go p.serve()
	return p
}

// Addr is where the proxy listens.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Dial connects to the proxy whatever address is asked for: a Kafka client told to dial
// through it reaches the broker only through the proxy, even at the addresses the broker
// advertises in its metadata.
func (p *Proxy) Dial(ctx context.Context, network, _ string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, p.Addr())
}

// NewDatabaseProxy puts a proxy in front of the server of dsn and returns it with the URL
// that connects through it.
func NewDatabaseProxy(tb testing.TB, dsn string) (*Proxy, string) {
	tb.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		tb.Fatalf("parsing %s: %v", dsn, err)
	}
	p := NewProxy(tb, u.Host)
	u.Host = p.Addr()
	return p, u.String()
}

// Cut drops every connection and refuses new ones until Restore.
func (p *Proxy) Cut() { p.set(true) }

// Restore forwards new connections again.
func (p *Proxy) Restore() { p.set(false) }

func (p *Proxy) set(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
		p.conns = map[net.Conn]struct{}{}
	}
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close(); c.Close() }()
		go func() { _, _ = io.Copy(c, up); up.Close(); c.Close() }()
	}
}

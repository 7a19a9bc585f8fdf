// Package tcpproxy is a TCP proxy for tests that break the network between a client and a
// real server:
//
//   - Cut closes every connection and refuses new ones: the server went away.
//   - Blackhole stops forwarding in both directions without closing anything: a silent network
//     (a black-holed route, a frozen peer). New connections are accepted and held silent too.
//     Only the clients' own timeouts can notice.
//   - Restore forwards again; connections held silent resume where they stopped, as TCP's
//     retransmissions would make them. What a side sent into the hole and then closed its
//     connection on is never delivered: its kernel gives such a connection up (TCP user
//     timeout, orphan retries), so a request a client abandoned does not reach the server
//     minutes later.
package tcpproxy

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

type state int

const (
	forwarding state = iota
	cut
	blackholed
)

// Proxy forwards the connections it accepts on 127.0.0.1 to one target.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	state  state
	resume chan struct{} // closed when a black hole ends (or turns into a cut)
	conns  map[net.Conn]struct{}
}

// Start listens on a free port of 127.0.0.1 and forwards to target until the test ends.
func Start(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("tcpproxy: %v", err)
	}
	p := &Proxy{ln: ln, target: target, resume: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	tb.Cleanup(func() { ln.Close(); p.Cut() })
	go p.serve()
	return p
}

// Addr is the proxy's address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Dial connects to the proxy whatever address it is asked for: for clients, such as Kafka's,
// that follow the addresses a server advertises instead of the one they were given.
func (p *Proxy) Dial(ctx context.Context, network, _ string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, p.Addr())
}

// Cut closes every connection and refuses new ones until Restore.
func (p *Proxy) Cut() { p.set(cut) }

// Blackhole stops forwarding without closing anything until Restore or Cut.
func (p *Proxy) Blackhole() { p.set(blackholed) }

// Restore forwards again.
func (p *Proxy) Restore() { p.set(forwarding) }

func (p *Proxy) set(s state) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == blackholed && s != blackholed {
		close(p.resume)
		p.resume = make(chan struct{})
	}
	p.state = s
	if s == cut {
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
		if p.state == cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.mu.Unlock()
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.state == cut {
			p.mu.Unlock()
			c.Close()
			up.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go p.forward(up, c)
		go p.forward(c, up)
	}
}

// forward copies src to dst, holding what it reads while the proxy is black-holed.
func (p *Proxy) forward(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	type chunk struct {
		b    []byte
		held bool
	}
	chunks := make(chan chunk, 64)
	// gaveUp: src closed while the path was black-holed.
	var gaveUp atomic.Bool
	go func() {
		defer close(chunks)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				chunks <- chunk{buf[:n], p.blackholed()}
			}
			if err != nil {
				if p.blackholed() {
					gaveUp.Store(true)
				}
				return
			}
		}
	}()
	for c := range chunks {
		waited, open := p.wait(src)
		if !open {
			return
		}
		if (c.held || waited) && gaveUp.Load() {
			return
		}
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}

func (p *Proxy) blackholed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state == blackholed
}

// wait blocks while the proxy is black-holed, and reports whether it did and whether c is
// still open after.
func (p *Proxy) wait(c net.Conn) (waited, open bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.state == blackholed {
		waited = true
		ch := p.resume
		p.mu.Unlock()
		<-ch
		p.mu.Lock()
	}
	_, open = p.conns[c]
	return waited, open
}

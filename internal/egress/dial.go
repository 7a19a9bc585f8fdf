package egress

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Resolver is what Dialer needs from DNS; *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// DialFunc dials a network address; (*net.Dialer).DialContext is one, and Dialer returns
// one for http.Transport.DialContext.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

var _ Resolver = (*net.Resolver)(nil)

// DialError is a failed connection to an allowed address. Its message names neither the
// address nor the port; Unwrap gives the underlying error for logs that may hold it.
type DialError struct {
	err error
}

func (e *DialError) Error() string {
	var ne net.Error
	switch {
	case errors.Is(e.err, context.Canceled):
		return "connecting to webhook endpoint: cancelled"
	case errors.Is(e.err, context.DeadlineExceeded), errors.As(e.err, &ne) && ne.Timeout():
		return "connecting to webhook endpoint: timed out"
	default:
		return "connecting to webhook endpoint: failed"
	}
}

func (e *DialError) Unwrap() error { return e.err }

// Dialer returns a DialContext for http.Transport that resolves the host with r, refuses
// the connection if ANY resolved address is not allowed by p, and otherwise dials the
// checked IP literals (in order, until one connects) through dial. Dialing the literal is
// what defeats DNS rebinding: the address checked is the address connected to, with no
// second lookup in between. Refusing when any address is forbidden, rather than skipping
// it, keeps a name that mixes public and private answers from being usable at all.
func Dialer(p Policy, r Resolver, dial DialFunc) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		ipNetwork, ok := map[string]string{"tcp": "ip", "tcp4": "ip4", "tcp6": "ip6"}[network]
		if !ok {
			return nil, ErrRefused{Reason: ReasonNetwork}
		}
		host, portText, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, ErrRefused{Reason: ReasonInvalidHost}
		}
		port, err := strconv.ParseUint(portText, 10, 16)
		if err != nil || port == 0 {
			return nil, ErrRefused{Reason: ReasonInvalidHost}
		}
		addrs, err := resolve(ctx, p, r, ipNetwork, host)
		if err != nil {
			return nil, err
		}
		var last error
		for _, a := range addrs {
			conn, err := dial(ctx, network, netip.AddrPortFrom(a, uint16(port)).String())
			if err == nil {
				return conn, nil
			}
			last = err
			if ctx.Err() != nil {
				break
			}
		}
		return nil, &DialError{err: last}
	}
}

// resolve returns the addresses to dial for host, each checked against p.
func resolve(ctx context.Context, p Policy, r Resolver, network, host string) ([]netip.Addr, error) {
	a, numeric, canonical := parseHostAddr(host)
	switch {
	case a.IsValid():
		// A non-canonical spelling would go to DNS as a name, and getaddrinfo reads
		// 2130706433 as 127.0.0.1; the check below judges the address it means either way.
		if err := p.CheckAddr(a); err != nil {
			return nil, err
		}
		if !canonical {
			return nil, ErrRefused{Reason: ReasonInvalidHost}
		}
		return []netip.Addr{a.WithZone("").Unmap()}, nil
	case numeric:
		return nil, ErrRefused{Reason: ReasonInvalidHost}
	}
	name, ok := normalizeName(host)
	if !ok {
		return nil, ErrRefused{Reason: ReasonInvalidHost}
	}
	trusted := p.allowsName(name)
	if r := nameReason(name); r != "" && !trusted {
		return nil, ErrRefused{Reason: r}
	}
	// Look up the name as given (possibly with its trailing dot, which stops search-domain
	// expansion), but never a name we did not validate.
	if strings.HasSuffix(host, ".") {
		name += "."
	}
	addrs, err := r.LookupNetIP(ctx, network, name)
	if err != nil || len(addrs) == 0 {
		if ctx.Err() != nil {
			return nil, &DialError{err: ctx.Err()}
		}
		return nil, ErrRefused{Reason: ReasonUnresolvable}
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		a = a.WithZone("").Unmap()
		if !trusted {
			if err := p.CheckAddr(a); err != nil {
				return nil, err
			}
		}
		out = append(out, a)
	}
	return out, nil
}

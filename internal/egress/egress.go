// Package egress guards outbound requests to client-supplied webhook URLs against
// server-side request forgery: a client must not be able to make orderflow talk to its own
// network (databases, the metadata service, admin ports) by registering an endpoint there.
//
// The guard has two halves, and both are needed:
//
//   - CheckURL runs when an endpoint is registered. It refuses what is wrong in the URL
//     itself (scheme, credentials, literal addresses in any spelling a parser might accept)
//     so the client gets an immediate 422 naming the reason.
//   - Dialer runs on every connection. It resolves the host itself, checks every address,
//     and dials the checked IP literal. A name that resolved to a public address at
//     registration can resolve to 127.0.0.1 at send time (DNS rebinding), so a check at
//     registration alone protects nothing.
//
// Refusals are ErrRefused values with a stable Reason code. Their messages never carry the
// resolved addresses or ports: a dead letter that said "10.0.0.5:5432 connection refused"
// would turn the webhook feature into a port scanner.
package egress

import (
	"fmt"
	"net/netip"
	"strings"
)

// Reason codes of ErrRefused. They are stable: the API renders them as problem types.
const (
	ReasonInvalidURL   = "invalid-url"
	ReasonScheme       = "scheme-not-https"
	ReasonCredentials  = "credentials-in-url"
	ReasonInvalidHost  = "invalid-host"
	ReasonPrivate      = "private-address"
	ReasonMetadata     = "metadata-address"
	ReasonUnresolvable = "unresolvable-host"
	ReasonNetwork      = "unsupported-network"
)

// ErrRefused is a refused webhook endpoint. Its message is safe to show to the client and
// to store in a dead letter.
type ErrRefused struct {
	Reason string
}

func (e ErrRefused) Error() string {
	switch e.Reason {
	case ReasonInvalidURL:
		return "webhook endpoint is not a valid absolute http(s) URL"
	case ReasonScheme:
		return "webhook endpoint must use https"
	case ReasonCredentials:
		return "webhook endpoint URL must not carry credentials"
	case ReasonInvalidHost:
		return "webhook endpoint host is not a valid ASCII host name or canonical IP address"
	case ReasonPrivate:
		return "webhook endpoint resolves to a private address"
	case ReasonMetadata:
		return "webhook endpoint resolves to a cloud metadata address"
	case ReasonUnresolvable:
		return "webhook endpoint host does not resolve"
	case ReasonNetwork:
		return "webhook endpoint must be reached over tcp"
	default:
		return "webhook endpoint refused: " + e.Reason
	}
}

// Policy says which destinations are exempt from the rules. The zero Policy exempts
// nothing: https only, public addresses only.
type Policy struct {
	hosts    map[string]bool
	prefixes []netip.Prefix
}

// NewPolicy builds a policy whose allowlist holds host names ("localhost"), addresses
// ("127.0.0.1", "::1") and CIDRs ("127.0.0.0/8"). An allowlisted destination may use plain
// http and private addresses: the local stack's partner listens on loopback. A host
// allowlisted by name is trusted with whatever it resolves to, since the operator vouched
// for it; allowlist addresses instead where DNS is not trusted.
func NewPolicy(allow ...string) (Policy, error) {
	p := Policy{hosts: map[string]bool{}}
	for _, a := range allow {
		a = strings.TrimSpace(a)
		switch {
		case a == "":
			continue
		case strings.Contains(a, "/"):
			pfx, err := netip.ParsePrefix(a)
			if err != nil {
				return Policy{}, fmt.Errorf("parsing egress allowlist entry %q: %w", a, err)
			}
			p.prefixes = append(p.prefixes, pfx.Masked())
		default:
			if ip, err := netip.ParseAddr(a); err == nil {
				p.prefixes = append(p.prefixes, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
				continue
			}
			h, ok := normalizeName(a)
			if !ok {
				return Policy{}, fmt.Errorf("parsing egress allowlist entry %q: not a host, address or CIDR", a)
			}
			p.hosts[h] = true
		}
	}
	return p, nil
}

func (p Policy) allowsName(host string) bool { return p.hosts[host] }

func (p Policy) allowsAddr(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, pfx := range p.prefixes {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// CheckAddr refuses an address the policy does not allow and that is not public.
func (p Policy) CheckAddr(a netip.Addr) error {
	if p.allowsAddr(a) {
		return nil
	}
	if r := classify(a); r != "" {
		return ErrRefused{Reason: r}
	}
	return nil
}

// forbiddenNames are refused as hosts whatever they resolve to: cloud metadata services
// answer on them inside the provider's network.
var forbiddenNames = map[string]string{
	"metadata.google.internal":   ReasonMetadata,
	"metadata.goog":              ReasonMetadata,
	"metadata":                   ReasonMetadata,
	"instance-data":              ReasonMetadata,
	"instance-data.ec2.internal": ReasonMetadata,
	"localhost":                  ReasonPrivate,
	"localhost.localdomain":      ReasonPrivate,
}

func nameReason(host string) string {
	if r, ok := forbiddenNames[host]; ok {
		return r
	}
	if strings.HasSuffix(host, ".localhost") {
		return ReasonPrivate
	}
	return ""
}

// normalizeName lowercases an ASCII host name and drops one trailing dot, and reports
// whether it is a syntactically valid name. Non-ASCII names are refused: IDNA mapping
// turns fullwidth digits and dots into ASCII ones ("１２７。０。０。１"), so a Unicode name
// can become an address after this check; clients register the punycode (xn--) form.
func normalizeName(s string) (string, bool) {
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	if s == "" || len(s) > 253 {
		return "", false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", false
			}
		}
	}
	return s, true
}

package egress

import (
	"net/netip"
	"strconv"
	"strings"
)

var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"), // AWS, GCP, Azure, OpenStack
	netip.MustParseAddr("fd00:ec2::254"),   // AWS over IPv6
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
}

// forbiddenV4 is every IPv4 range that is not the public internet (IANA special-purpose
// registry), so an endpoint can never reach the host's own network through it.
var forbiddenV4 = mustPrefixes(
	"0.0.0.0/8",       // "this network", 0.0.0.0 reaches loopback on Linux
	"10.0.0.0/8",      // RFC 1918
	"100.64.0.0/10",   // CGNAT, often the cloud's internal network
	"127.0.0.0/8",     // loopback
	"169.254.0.0/16",  // link-local, metadata services
	"172.16.0.0/12",   // RFC 1918
	"192.0.0.0/24",    // IETF protocol assignments
	"192.0.2.0/24",    // TEST-NET-1
	"192.88.99.0/24",  // 6to4 relay anycast
	"192.168.0.0/16",  // RFC 1918
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // TEST-NET-2
	"203.0.113.0/24",  // TEST-NET-3
	"224.0.0.0/4",     // multicast
	"240.0.0.0/4",     // reserved and broadcast
)

// forbiddenV6 lists the ranges inside 2000::/3 (the only global unicast block) that are
// not public; everything outside 2000::/3 is refused anyway (loopback, unspecified, ULA,
// link-local, site-local, multicast, discard).
var forbiddenV6 = mustPrefixes(
	"2001:db8::/32", // documentation
	"2001:10::/28",  // ORCHID
	"2001:20::/28",  // ORCHIDv2
	"3fff::/20",     // documentation
)

var (
	nat64      = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour  = netip.MustParsePrefix("2002::/16")
	teredo     = netip.MustParsePrefix("2001::/32")
	globalV6   = netip.MustParsePrefix("2000::/3")
	v4Compat   = netip.MustParsePrefix("::/96")
	v4MappedV6 = netip.MustParsePrefix("::ffff:0:0/96")
)

func mustPrefixes(ss ...string) []netip.Prefix {
	ps := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		ps[i] = netip.MustParsePrefix(s)
	}
	return ps
}

// classify returns the refusal reason for an address, or "" for a public one. Addresses
// that embed an IPv4 address (mapped, NAT64, 6to4, Teredo) are judged by the embedded one,
// because a translator on the path delivers them there.
func classify(a netip.Addr) string {
	a = a.WithZone("").Unmap()
	for _, m := range metadataAddrs {
		if a == m {
			return ReasonMetadata
		}
	}
	if a.Is4() {
		for _, p := range forbiddenV4 {
			if p.Contains(a) {
				return ReasonPrivate
			}
		}
		return ""
	}
	b := a.As16()
	switch {
	case nat64.Contains(a), v4Compat.Contains(a), v4MappedV6.Contains(a):
		return classify(netip.AddrFrom4([4]byte(b[12:16])))
	case sixToFour.Contains(a):
		return classify(netip.AddrFrom4([4]byte(b[2:6])))
	case teredo.Contains(a):
		// The client address is stored inverted in the last 32 bits.
		return classify(netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}))
	case !globalV6.Contains(a):
		return ReasonPrivate
	}
	for _, p := range forbiddenV6 {
		if p.Contains(a) {
			return ReasonPrivate
		}
	}
	return ""
}

// parseHostAddr reads host as an IP address the way the most permissive parser on the
// path would: canonical IPv4 and IPv6, and the inet_aton spellings curl, browsers and
// getaddrinfo accept (2130706433, 0x7f000001, 0177.0.0.1, 127.1). numeric reports that the
// host looks like an address at all (its last label is a number), so a malformed one such
// as 1.2.3.4.5 or 1.2.3.256 is refused instead of being sent to DNS as a name. canonical reports
// whether host is the plain form Go's own dialer understands.
func parseHostAddr(host string) (a netip.Addr, numeric, canonical bool) {
	if strings.Contains(host, ":") {
		a, err := netip.ParseAddr(host)
		if err != nil || a.Zone() != "" {
			return netip.Addr{}, true, false
		}
		return a, true, true
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a, true, true
	}
	trimmed := strings.TrimSuffix(host, ".")
	labels := strings.Split(trimmed, ".")
	if !isNumericLabel(labels[len(labels)-1]) {
		return netip.Addr{}, false, false
	}
	a, _ = parseInetAton(labels)
	return a, true, false
}

func isNumericLabel(l string) bool {
	if l == "" {
		return false
	}
	if len(l) >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X') {
		l = l[2:]
		for i := 0; i < len(l); i++ {
			if !isHex(l[i]) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// parseInetAton implements inet_aton: one to four parts, each decimal, 0x-hex or 0-octal;
// the last part fills all remaining bytes.
func parseInetAton(labels []string) (netip.Addr, bool) {
	if len(labels) == 0 || len(labels) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(labels))
	for i, l := range labels {
		if l == "" {
			return netip.Addr{}, false
		}
		base := 10
		switch {
		case len(l) >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X'):
			base, l = 16, l[2:]
			if l == "" {
				l = "0"
			}
		case len(l) > 1 && l[0] == '0':
			base, l = 8, l[1:]
		}
		if len(l) > 32 {
			return netip.Addr{}, false
		}
		v, err := strconv.ParseUint(l, base, 64)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	last := len(vals) - 1
	var n uint64
	for _, v := range vals[:last] {
		if v > 0xff {
			return netip.Addr{}, false
		}
		n = n<<8 | v
	}
	restBits := uint(8 * (4 - last))
	if vals[last] >= 1<<restBits {
		return netip.Addr{}, false
	}
	n = n<<restBits | vals[last]
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

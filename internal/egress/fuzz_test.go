package egress

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{
		"https://example.com/hook", "HTTPS://Example.COM./x", "http://127.0.0.1:8091/hooks",
		"https://2130706433/", "https://0x7f000001/", "https://0177.0.0.1/", "https://127.1/",
		"https://[::ffff:127.0.0.1]/", "https://[::ffff:7f00:1]/", "https://[64:ff9b::a00:1]/",
		"https://[fe80::1%25eth0]/", "https://user:pass@example.com/", "https://metadata/",
		"https://1.2.3.4.5/", "https://１２７.０.０.１/", "http://localhost:1/", "https://:0/",
	} {
		f.Add(s)
	}
	p := mustPolicy(f, "127.0.0.1", "localhost")
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := CheckURL(raw, p)
		if err != nil {
			if u != nil {
				t.Fatalf("refused %q but returned %v", raw, u)
			}
			return
		}
		host := u.Hostname()
		allowlisted := host == "localhost" || host == "127.0.0.1"
		if u.Scheme != "https" && !allowlisted {
			t.Fatalf("accepted %q with scheme %q", raw, u.Scheme)
		}
		if u.User != nil {
			t.Fatalf("accepted %q with credentials", raw)
		}
		// Judge the accepted host with parsers independent of the guard's own.
		if ip := net.ParseIP(host); ip != nil && !allowlisted {
			a, _ := netip.AddrFromSlice(ip)
			if a = a.Unmap(); a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() || classify(a) != "" {
				t.Fatalf("accepted %q with forbidden address %s", raw, a)
			}
		}
		if a, ok := parseInetAton(strings.Split(strings.TrimSuffix(host, "."), ".")); ok && !allowlisted && classify(a) != "" {
			t.Fatalf("accepted %q whose host reads as forbidden %s", raw, a)
		}
		if _, err := CheckURL(u.String(), p); err != nil {
			t.Fatalf("accepted %q but refused its normal form %q: %v", raw, u, err)
		}
	})
}

package egress

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

func mustPolicy(tb testing.TB, allow ...string) Policy {
	tb.Helper()
	p, err := NewPolicy(allow...)
	if err != nil {
		tb.Fatalf("policy: %v", err)
	}
	return p
}

func reasonOf(err error) string {
	var r ErrRefused
	if errors.As(err, &r) {
		return r.Reason
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return ""
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	strict := mustPolicy(t)
	local := mustPolicy(t, "127.0.0.1", "localhost", "::1")
	cases := []struct {
		name   string
		url    string
		policy Policy
		reason string // "" means accepted
		want   string // normalized URL when accepted
	}{
		{"public https", "https://example.com/hook", strict, "", "https://example.com/hook"},
		{"upper-case scheme and host, trailing dot", "HTTPS://Example.COM./x", strict, "", "https://example.com/x"},
		{"public https with port", "https://example.com:8443/x", strict, "", "https://example.com:8443/x"},
		{"public IPv4 literal", "https://8.8.8.8/x", strict, "", "https://8.8.8.8/x"},
		{"public IPv6 literal", "https://[2606:4700::1111]/x", strict, "", "https://[2606:4700::1111]/x"},
		{"NAT64 of public", "https://[64:ff9b::808:808]/", strict, "", "https://[64:ff9b::808:808]/"},
		{"plain http", "http://example.com/hook", strict, ReasonScheme, ""},
		{"ftp", "ftp://example.com/", strict, ReasonScheme, ""},
		{"javascript", "javascript:alert(1)", strict, ReasonInvalidURL, ""},
		{"relative", "/hook", strict, ReasonInvalidURL, ""},
		{"no host", "https:///x", strict, ReasonInvalidURL, ""},
		{"port only", "https://:443/x", strict, ReasonInvalidHost, ""},
		{"port zero", "https://example.com:0/", strict, ReasonInvalidURL, ""},
		{"port too big", "https://example.com:65536/", strict, ReasonInvalidURL, ""},
		{"userinfo", "https://user:pass@example.com/", strict, ReasonCredentials, ""},
		{"user only", "https://user@example.com/", strict, ReasonCredentials, ""},
		{"empty userinfo", "https://@example.com/", strict, ReasonCredentials, ""},
		{"loopback", "https://127.0.0.1/", strict, ReasonPrivate, ""},
		{"loopback elsewhere in 127/8", "https://127.9.9.9/", strict, ReasonPrivate, ""},
		{"loopback trailing dot", "https://127.0.0.1./", strict, ReasonPrivate, ""},
		{"loopback decimal", "https://2130706433/", strict, ReasonPrivate, ""},
		{"loopback hex", "https://0x7f000001/", strict, ReasonPrivate, ""},
		{"loopback hex upper", "https://0X7F000001/", strict, ReasonPrivate, ""},
		{"loopback octal", "https://0177.0.0.1/", strict, ReasonPrivate, ""},
		{"loopback short", "https://127.1/", strict, ReasonPrivate, ""},
		{"loopback mixed bases", "https://0x7f.0.1/", strict, ReasonPrivate, ""},
		{"loopback octal dword", "https://017700000001/", strict, ReasonPrivate, ""},
		{"unspecified", "https://0.0.0.0/", strict, ReasonPrivate, ""},
		{"unspecified short", "https://0/", strict, ReasonPrivate, ""},
		{"RFC1918 10/8", "https://10.1.2.3/", strict, ReasonPrivate, ""},
		{"RFC1918 172.16/12", "https://172.31.255.255/", strict, ReasonPrivate, ""},
		{"RFC1918 192.168/16", "https://192.168.0.1/", strict, ReasonPrivate, ""},
		{"RFC1918 decimal", "https://3232235521/", strict, ReasonPrivate, ""},
		{"CGNAT", "https://100.64.0.1/", strict, ReasonPrivate, ""},
		{"link-local", "https://169.254.1.1/", strict, ReasonPrivate, ""},
		{"metadata", "https://169.254.169.254/latest/meta-data/", strict, ReasonMetadata, ""},
		{"metadata decimal", "https://2852039166/", strict, ReasonMetadata, ""},
		{"metadata IPv6", "https://[fd00:ec2::254]/", strict, ReasonMetadata, ""},
		{"metadata name", "https://metadata.google.internal/computeMetadata/v1/", strict, ReasonMetadata, ""},
		{"metadata name trailing dot", "https://METADATA.google.internal./", strict, ReasonMetadata, ""},
		{"metadata short name", "https://metadata/", strict, ReasonMetadata, ""},
		{"multicast", "https://224.0.0.1/", strict, ReasonPrivate, ""},
		{"broadcast", "https://255.255.255.255/", strict, ReasonPrivate, ""},
		{"IPv6 loopback", "https://[::1]/", strict, ReasonPrivate, ""},
		{"IPv6 unspecified", "https://[::]/", strict, ReasonPrivate, ""},
		{"IPv6 link-local", "https://[fe80::1]/", strict, ReasonPrivate, ""},
		{"IPv6 link-local with zone", "https://[fe80::1%25eth0]/", strict, ReasonInvalidHost, ""},
		{"IPv6 unique-local", "https://[fd12:3456::1]/", strict, ReasonPrivate, ""},
		{"IPv6 multicast", "https://[ff02::1]/", strict, ReasonPrivate, ""},
		{"IPv4-mapped loopback", "https://[::ffff:127.0.0.1]/", strict, ReasonPrivate, ""},
		{"IPv4-mapped loopback hex", "https://[::ffff:7f00:1]/", strict, ReasonPrivate, ""},
		{"IPv4-mapped metadata", "https://[::ffff:a9fe:a9fe]/", strict, ReasonMetadata, ""},
		{"IPv4-compatible loopback", "https://[::127.0.0.1]/", strict, ReasonPrivate, ""},
		{"NAT64 of private", "https://[64:ff9b::a00:1]/", strict, ReasonPrivate, ""},
		{"NAT64 of loopback dotted", "https://[64:ff9b::127.0.0.1]/", strict, ReasonPrivate, ""},
		{"6to4 of private", "https://[2002:c0a8:1::1]/", strict, ReasonPrivate, ""},
		{"documentation IPv6", "https://[2001:db8::1]/", strict, ReasonPrivate, ""},
		{"localhost name", "https://localhost/", strict, ReasonPrivate, ""},
		{"localhost subdomain", "https://a.LOCALHOST./", strict, ReasonPrivate, ""},
		{"too many parts", "https://1.2.3.4.5/", strict, ReasonInvalidHost, ""},
		{"part out of range", "https://1.2.3.256/", strict, ReasonInvalidHost, ""},
		{"bad octal digit", "https://08.0.0.1/", strict, ReasonInvalidHost, ""},
		{"public in non-canonical spelling", "https://134744072/", strict, ReasonInvalidHost, ""},
		{"public with trailing dot", "https://8.8.8.8./", strict, ReasonInvalidHost, ""},
		{"non-ASCII fullwidth digits", "https://１２７.０.０.１/", strict, ReasonInvalidHost, ""},
		{"double trailing dot", "https://example.com../", strict, ReasonInvalidHost, ""},
		{"empty label", "https://a..b/", strict, ReasonInvalidHost, ""},
		{"underscore name allowed", "https://my_host.example.com/", strict, "", "https://my_host.example.com/"},
		{"allowlisted loopback over http", "http://127.0.0.1:8091/hooks", local, "", "http://127.0.0.1:8091/hooks"},
		{"allowlisted localhost over http", "http://LocalHost:8091/", local, "", "http://localhost:8091/"},
		{"allowlisted IPv6 loopback", "http://[::1]:8091/", local, "", "http://[::1]:8091/"},
		{"allowlist does not cover other loopback", "http://127.0.0.2/", local, ReasonPrivate, ""},
		{"allowlist does not cover decimal spelling", "http://2130706433/", local, ReasonPrivate, ""},
		{"allowlist does not allow http elsewhere", "http://example.com/", local, ReasonScheme, ""},
		{"CIDR allowlist", "http://127.0.0.5/", mustPolicy(t, "127.0.0.0/8"), "", "http://127.0.0.5/"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			u, err := CheckURL(c.url, c.policy)
			if got := reasonOf(err); got != c.reason {
				t.Fatalf("CheckURL(%q) reason %q, want %q", c.url, got, c.reason)
			}
			if err != nil {
				if u != nil {
					t.Fatalf("refused URL returned %v", u)
				}
				return
			}
			if u.String() != c.want {
				t.Fatalf("CheckURL(%q) = %q, want %q", c.url, u, c.want)
			}
		})
	}
}

func TestRefusalMessagesRevealNothing(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{"https://10.9.8.7:5432/", "https://[::ffff:10.9.8.7]:6379/", "https://169.254.169.254:80/"} {
		_, err := CheckURL(raw, Policy{})
		if err == nil {
			t.Fatalf("%s accepted", raw)
		}
		if msg := err.Error(); strings.ContainsAny(msg, "0123456789") {
			t.Fatalf("refusal of %s reveals internals: %q", raw, msg)
		}
	}
}

// fakeResolver maps test names to addresses; any other name fails, so no test can reach
// real DNS.
type fakeResolver map[string][]string

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	ss, ok := f[strings.TrimSuffix(host, ".")]
	if !ok {
		return nil, errors.New("lookup " + host + " on 10.0.0.2:53: no such host")
	}
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

// recordingDial records every attempt and never connects, so a broken guard still cannot
// reach anything.
type recordingDial struct {
	mu       sync.Mutex
	attempts []string
}

var errNotDialing = errors.New("test dialer never connects")

func (d *recordingDial) dial(_ context.Context, _, addr string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.attempts = append(d.attempts, addr)
	return nil, errNotDialing
}

func TestDialer(t *testing.T) {
	t.Parallel()
	names := fakeResolver{
		"public.test":        {"93.184.216.34"},
		"dual.test":          {"2606:2800:220:1::1", "93.184.216.34"},
		"rebind.test":        {"127.0.0.1"},
		"private.test":       {"10.0.0.5"},
		"mixed.test":         {"93.184.216.34", "192.168.1.1"},
		"mapped.test":        {"::ffff:127.0.0.1"},
		"mapped-public.test": {"::ffff:93.184.216.34"},
		"metadata.test":      {"169.254.169.254"},
		"ula.test":           {"fd00::1"},
		"cgnat.test":         {"100.64.1.1"},
		"nat64.test":         {"64:ff9b::a9fe:a9fe"},
		"localhost":          {"127.0.0.1", "::1"},
		"partner.test":       {"127.0.0.1"},
		"empty.test":         {},
	}
	strict := mustPolicy(t)
	cases := []struct {
		name     string
		policy   Policy
		network  string
		addr     string
		reason   string   // "" means allowed, so the dial is attempted
		attempts []string // what the lower-level dial saw
	}{
		{"public name", strict, "tcp", "public.test:443", "", []string{"93.184.216.34:443"}},
		{"public name trailing dot", strict, "tcp", "PUBLIC.test.:443", "", []string{"93.184.216.34:443"}},
		{"dual stack tries each in order", strict, "tcp", "dual.test:443", "", []string{"[2606:2800:220:1::1]:443", "93.184.216.34:443"}},
		{"mapped public is dialed unmapped", strict, "tcp", "mapped-public.test:443", "", []string{"93.184.216.34:443"}},
		{"public literal", strict, "tcp", "93.184.216.34:443", "", []string{"93.184.216.34:443"}},
		{"rebinding to loopback", strict, "tcp", "rebind.test:443", ReasonPrivate, nil},
		{"private name", strict, "tcp", "private.test:443", ReasonPrivate, nil},
		{"one private answer among public", strict, "tcp", "mixed.test:443", ReasonPrivate, nil},
		{"mapped loopback answer", strict, "tcp", "mapped.test:443", ReasonPrivate, nil},
		{"metadata answer", strict, "tcp", "metadata.test:80", ReasonMetadata, nil},
		{"unique-local answer", strict, "tcp", "ula.test:443", ReasonPrivate, nil},
		{"CGNAT answer", strict, "tcp", "cgnat.test:443", ReasonPrivate, nil},
		{"NAT64 of metadata answer", strict, "tcp", "nat64.test:443", ReasonMetadata, nil},
		{"loopback literal", strict, "tcp", "127.0.0.1:5432", ReasonPrivate, nil},
		{"decimal literal", strict, "tcp", "2130706433:443", ReasonPrivate, nil},
		{"IPv6 loopback literal", strict, "tcp6", "[::1]:443", ReasonPrivate, nil},
		{"metadata name", strict, "tcp", "metadata.google.internal:80", ReasonMetadata, nil},
		{"localhost name", strict, "tcp", "localhost:8091", ReasonPrivate, nil},
		{"unknown name", strict, "tcp", "nowhere.test:443", ReasonUnresolvable, nil},
		{"no answers", strict, "tcp", "empty.test:443", ReasonUnresolvable, nil},
		{"udp", strict, "udp", "public.test:443", ReasonNetwork, nil},
		{"no port", strict, "tcp", "public.test", ReasonInvalidHost, nil},
		{"invalid name", strict, "tcp", "bad name.test:443", ReasonInvalidHost, nil},
		{"allowlisted literal", mustPolicy(t, "127.0.0.0/8"), "tcp", "127.0.0.1:8091", "", []string{"127.0.0.1:8091"}},
		{"allowlisted CIDR covers resolved", mustPolicy(t, "127.0.0.0/8"), "tcp", "partner.test:8091", "", []string{"127.0.0.1:8091"}},
		{"allowlisted name", mustPolicy(t, "localhost"), "tcp", "localhost:8091", "", []string{"127.0.0.1:8091", "[::1]:8091"}},
		{"allowlist of one address only", mustPolicy(t, "127.0.0.1"), "tcp", "127.0.0.2:8091", ReasonPrivate, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rec := &recordingDial{}
			conn, err := Dialer(c.policy, names, rec.dial)(context.Background(), c.network, c.addr)
			if conn != nil {
				t.Fatal("the test dialer returned a connection")
			}
			if c.reason == "" {
				var de *DialError
				if !errors.As(err, &de) || !errors.Is(err, errNotDialing) {
					t.Fatalf("dial %s: %v, want the recording dialer's error", c.addr, err)
				}
			} else if got := reasonOf(err); got != c.reason {
				t.Fatalf("dial %s: reason %q, want %q", c.addr, got, c.reason)
			}
			if strings.Join(rec.attempts, " ") != strings.Join(c.attempts, " ") {
				t.Fatalf("dial attempts %v, want %v", rec.attempts, c.attempts)
			}
			if msg := err.Error(); strings.ContainsAny(msg, "0123456789") {
				t.Fatalf("error reveals addresses or ports: %q", msg)
			}
		})
	}
}

func TestDialerSendsCheckedNameToResolver(t *testing.T) {
	t.Parallel()
	var asked []string
	r := resolverFunc(func(_ context.Context, network, host string) ([]netip.Addr, error) {
		asked = append(asked, network+" "+host)
		return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil
	})
	rec := &recordingDial{}
	_, _ = Dialer(Policy{}, r, rec.dial)(context.Background(), "tcp4", "Example.COM.:443")
	if strings.Join(asked, ",") != "ip4 example.com." {
		t.Fatalf("resolver asked %v", asked)
	}
}

type resolverFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

func (f resolverFunc) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return f(ctx, network, host)
}

func TestNewPolicyRefusesGarbage(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"127.0.0.0/33", "not a host", "http://x"} {
		if _, err := NewPolicy(bad); err == nil {
			t.Errorf("NewPolicy(%q) accepted", bad)
		}
	}
}

func TestCheckRedirect(t *testing.T) {
	t.Parallel()
	p := mustPolicy(t)
	for raw, ok := range map[string]bool{"https://example.com/next": true, "http://example.com/next": false, "https://127.0.0.1/": false} {
		req, err := http.NewRequest(http.MethodPost, raw, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.CheckRedirect(req, nil); (err == nil) != ok {
			t.Errorf("redirect to %s: %v", raw, err)
		}
	}
}

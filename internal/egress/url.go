package egress

import (
	"net/url"
	"strconv"
	"strings"
)

// CheckURL parses a webhook endpoint URL and refuses it unless it is an absolute https URL
// without credentials whose host is a valid name or a public address (or allowlisted by
// p, which also permits http). It returns the URL with scheme and host normalized (lower
// case, no trailing dot). Names are not resolved here; Dialer checks what they resolve to
// at every connection.
func CheckURL(raw string, p Policy) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Opaque != "" || u.Host == "" {
		return nil, ErrRefused{Reason: ReasonInvalidURL}
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, ErrRefused{Reason: ReasonScheme}
	}
	if u.User != nil {
		return nil, ErrRefused{Reason: ReasonCredentials}
	}
	port := u.Port()
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, ErrRefused{Reason: ReasonInvalidURL}
		}
	}
	host, allowed, err := checkHost(u.Hostname(), p)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "https" && !allowed {
		return nil, ErrRefused{Reason: ReasonScheme}
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	u.Host = host
	return u, nil
}

// checkHost normalizes a URL's host name or literal address and reports whether the
// policy allowlists it; it refuses forbidden literals and names.
func checkHost(h string, p Policy) (host string, allowed bool, err error) {
	a, numeric, canonical := parseHostAddr(h)
	switch {
	case a.IsValid():
		a = a.Unmap() // the address a mapped literal reaches; one spelling to store and allowlist
		if p.allowsAddr(a) && canonical {
			return a.String(), true, nil
		}
		if r := classify(a); r != "" {
			return "", false, ErrRefused{Reason: r}
		}
		if !canonical {
			// Go's dialer would send 0x08080808 to DNS as a name; insist on the one spelling
			// every parser reads the same way.
			return "", false, ErrRefused{Reason: ReasonInvalidHost}
		}
		return a.String(), false, nil
	case numeric:
		return "", false, ErrRefused{Reason: ReasonInvalidHost}
	}
	name, ok := normalizeName(h)
	if !ok {
		return "", false, ErrRefused{Reason: ReasonInvalidHost}
	}
	if p.allowsName(name) {
		return name, true, nil
	}
	if r := nameReason(name); r != "" {
		return "", false, ErrRefused{Reason: r}
	}
	return name, false, nil
}

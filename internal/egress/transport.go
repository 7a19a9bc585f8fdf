package egress

import (
	"errors"
	"net"
	"net/http"
	"time"
)

// Transport returns an http.Transport for webhook deliveries that dials only through the
// guard. It uses no proxy: a proxy would connect on our behalf to addresses the guard never
// saw.
func Transport(p Policy) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = Dialer(p, net.DefaultResolver, (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext)
	return t
}

// CheckRedirect is for http.Client.CheckRedirect: a redirect target must pass CheckURL
// (the dialer checks its addresses anyway, but not its scheme), and at most 3 are followed.
func (p Policy) CheckRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 3 {
		return errors.New("webhook endpoint redirected too many times")
	}
	_, err := CheckURL(req.URL.String(), p)
	return err
}

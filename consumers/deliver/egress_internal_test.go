package deliver

import (
	"net"
	"net/http"

	"orderflow/internal/egress"
)

// loopbackPolicy lets the package's own tests reach their httptest receivers on 127.0.0.1,
// which the default policy refuses.
func loopbackPolicy() egress.Policy {
	p, err := egress.NewPolicy("127.0.0.0/8", "::1")
	if err != nil {
		panic(err)
	}
	return p
}

func testHTTPClient(perEndpoint int) *http.Client {
	return newHTTPClient(perEndpoint, loopbackPolicy(), net.DefaultResolver)
}

package partner_test

import (
	"testing"

	"orderflow/internal/egress"
)

// loopbackOnly is the egress policy that lets the deliverer reach the partner on 127.0.0.1,
// which the default policy refuses.
func loopbackOnly(t testing.TB) egress.Policy {
	t.Helper()
	p, err := egress.NewPolicy("127.0.0.0/8", "::1")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

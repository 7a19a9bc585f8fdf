package orderflow_test

import (
	"testing"

	"github.com/google/uuid"

	"orderflow"
)

// The id is a published formula: other programs (and Python's uuid.uuid5, which gives these
// same values) recompute it, so its output never changes.
func TestStateEventIDIsStable(t *testing.T) {
	t.Parallel()
	const order = "01956f7e-5c2a-7b3e-9a41-0c2d4e6f8a10"
	if got := orderflow.StateEventID(order, 2, orderflow.EventOrderFulfilled); got != "30cf939d-5675-5eb1-a2d0-4c08b6ff47e6" {
		t.Errorf("StateEventID = %s, the published value is 30cf939d-5675-5eb1-a2d0-4c08b6ff47e6", got)
	}
	if got := orderflow.StateEventID("01956F7E-5C2A-7B3E-9A41-0C2D4E6F8A10", 2, orderflow.EventOrderFulfilled); got != "30cf939d-5675-5eb1-a2d0-4c08b6ff47e6" {
		t.Errorf("an upper-case order id gave %s: one order must have one id per fact", got)
	}
	u, err := uuid.Parse(orderflow.StateEventID(order, 1, orderflow.EventOrderCreated))
	if err != nil || u.Version() != 5 {
		t.Errorf("not a UUIDv5: %v %v", u, err)
	}
	seen := map[string]string{}
	for _, tc := range []struct {
		order string
		v     int
		typ   string
	}{
		{order, 1, orderflow.EventOrderCreated}, {order, 2, orderflow.EventOrderCreated},
		{order, 2, orderflow.EventOrderCancelled}, {order, 2, orderflow.EventOrderFulfilled},
		{"01956f7e-5c2a-7b3e-9a41-0c2d4e6f8a11", 2, orderflow.EventOrderFulfilled},
		{"o1\n2", 3, "t"}, {"o1", 23, "t"},
	} {
		id := orderflow.StateEventID(tc.order, tc.v, tc.typ)
		if prev, ok := seen[id]; ok {
			t.Errorf("%v has the id of %s", tc, prev)
		}
		seen[id] = tc.order
	}
}

// The namespace is what its comment says: the UUIDv5 of the URL in the RFC 9562 URL namespace.
func TestStateEventNamespace(t *testing.T) {
	t.Parallel()
	ns := uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://orderflow.dev/state-event"))
	if ns.String() != "67f69c36-a896-59a6-aa4b-3a270c95a3cb" {
		t.Errorf("namespace %s", ns)
	}
	want := uuid.NewSHA1(ns, []byte("01956f7e-5c2a-7b3e-9a41-0c2d4e6f8a10\n7\norder.cancelled")).String()
	if got := orderflow.StateEventID("01956f7e-5c2a-7b3e-9a41-0c2d4e6f8a10", 7, orderflow.EventOrderCancelled); got != want {
		t.Errorf("StateEventID = %s, google/uuid's NewSHA1 gives %s", got, want)
	}
}

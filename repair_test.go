package orderflow

import "testing"

func TestRepairEventIDIsOnePerFact(t *testing.T) {
	t.Parallel()
	a := RepairEventID("5f2c1c9e-0000-4000-8000-000000000001", 2, EventOrderFulfilled)
	if a != RepairEventID("5f2c1c9e-0000-4000-8000-000000000001", 2, EventOrderFulfilled) {
		t.Fatal("the same fact got two ids")
	}
	for _, other := range []string{
		RepairEventID("5f2c1c9e-0000-4000-8000-000000000001", 1, EventOrderFulfilled),
		RepairEventID("5f2c1c9e-0000-4000-8000-000000000001", 2, EventOrderCancelled),
		RepairEventID("5f2c1c9e-0000-4000-8000-000000000002", 2, EventOrderFulfilled),
	} {
		if other == a {
			t.Fatalf("two facts share the id %s", a)
		}
	}
}

// The id is a standard UUIDv5 of the fact: the same as any RFC 9562 implementation computes.
func TestRepairEventIDIsAUUIDv5(t *testing.T) {
	t.Parallel()
	// uuid.NewSHA1(uuid.MustParse("5b0f4bfc-7c4f-4d59-9f6e-0b3e6a1c1c57"), []byte("o-1/2/order.fulfilled"))
	if got, want := RepairEventID("o-1", 2, EventOrderFulfilled), "d42c397b-e33f-50a5-9d04-f3881dd7986e"; got != want {
		t.Fatalf("RepairEventID = %s, want %s", got, want)
	}
}

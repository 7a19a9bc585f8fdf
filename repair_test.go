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

// A repair id is published at most once ever, so its derivation may never change: the value
// below is Python's uuid.uuid5(UUID("5b0f4bfc-7c4f-4d59-9f6e-0b3e6a1c1c57"),
// "5f2c1c9e-0000-4000-8000-000000000001/2/order.fulfilled"), computed outside this code.
func TestRepairEventIDIsPinned(t *testing.T) {
	if got := RepairEventID("5f2c1c9e-0000-4000-8000-000000000001", 2, EventOrderFulfilled); got != "a1f840c5-a736-5f67-a350-ea459165b6d0" {
		t.Errorf("RepairEventID = %s, want a1f840c5-a736-5f67-a350-ea459165b6d0", got)
	}
}

package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"orderflow"
	"orderflow/internal/testenv"
)

func summary(id string, version int, status orderflow.Status) orderflow.Summary {
	at := time.Date(2026, 1, 1, 0, 0, version, 0, time.UTC)
	return orderflow.Summary{OrderID: id, CustomerID: "c", Status: status, TotalCents: 100, ItemCount: 1,
		Currency: "EUR", Version: version, CreatedAt: at, UpdatedAt: at, LastEventID: uuid.NewString(),
		LastEventType: orderflow.EventOrderCreated, LastEventAt: at}
}

func TestApplySummariesKeepsTheNewestVersion(t *testing.T) {
	t.Parallel()
	db, _ := mustDB(t)
	cases := []struct {
		name    string
		applies []int // versions, in arrival order
		applied []bool
		final   int
	}{
		{"in order", []int{1, 2, 3}, []bool{true, true, true}, 3},
		{"duplicate", []int{1, 1}, []bool{true, false}, 1},
		{"older after newer", []int{2, 1}, []bool{true, false}, 2},
		{"replay of everything", []int{1, 2, 1, 2}, []bool{true, true, false, false}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := uuid.NewString()
			var ss []orderflow.Summary
			for _, v := range tc.applies {
				ss = append(ss, summary(id, v, orderflow.StatusPending))
			}
			// One batch, as the projector sends it: the statements run in order.
			got, err := db.ApplySummaries(context.Background(), ss, nil)
			testenv.Must(t, err, "applying")
			for i := range got {
				if got[i] != tc.applied[i] {
					t.Errorf("apply %d (v%d): applied %v, want %v", i, tc.applies[i], got[i], tc.applied[i])
				}
			}
			list, err := db.CustomerSummaries(context.Background(), orderflow.AnyClient, "c", nil, 1000)
			testenv.Must(t, err, "listing")
			for _, s := range list {
				if s.OrderID == id && s.Version != tc.final {
					t.Errorf("final version %d, want %d", s.Version, tc.final)
				}
			}
		})
	}
}

package reconcile

import (
	"testing"
	"time"

	"orderflow"
	"orderflow/postgres"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	cfg := Config{}
	cfg.defaults()
	old := now.Add(-time.Minute)
	ancient := now.Add(-48 * time.Hour)
	fresh := now.Add(-time.Second)
	cases := []struct {
		name string
		o    postgres.OrderState
		want []Kind
	}{
		{"in sync", postgres.OrderState{Status: "pending", Version: 1, CreatedAt: old, UpdatedAt: old,
			HasSummary: true, SummaryStatus: "pending", SummaryVersion: 1}, nil},
		{"missing past the SLA", postgres.OrderState{Status: "pending", Version: 1, CreatedAt: old, UpdatedAt: old}, []Kind{KindMissingSummary}},
		{"missing within the SLA is not drift yet", postgres.OrderState{Status: "pending", Version: 1, CreatedAt: fresh, UpdatedAt: fresh}, nil},
		{"older version", postgres.OrderState{Status: "fulfilled", Version: 2, CreatedAt: old, UpdatedAt: old,
			HasSummary: true, SummaryStatus: "pending", SummaryVersion: 1}, []Kind{KindStaleSummary}},
		{"older version within the SLA", postgres.OrderState{Status: "fulfilled", Version: 2, CreatedAt: old, UpdatedAt: fresh,
			HasSummary: true, SummaryStatus: "pending", SummaryVersion: 1}, nil},
		{"same version, other status", postgres.OrderState{Status: "cancelled", Version: 2, CreatedAt: old, UpdatedAt: old,
			HasSummary: true, SummaryStatus: "fulfilled", SummaryVersion: 2}, []Kind{KindStaleSummary}},
		{"pending past the fulfillment SLA", postgres.OrderState{Status: "pending", Version: 1, CreatedAt: ancient, UpdatedAt: ancient,
			HasSummary: true, SummaryStatus: "pending", SummaryVersion: 1}, []Kind{KindOpenPastSLA}},
		{"fulfilled long ago is fine", postgres.OrderState{Status: orderflow.StatusFulfilled, Version: 2, CreatedAt: ancient, UpdatedAt: ancient,
			HasSummary: true, SummaryStatus: "fulfilled", SummaryVersion: 2}, nil},
		{"both", postgres.OrderState{Status: "pending", Version: 1, CreatedAt: ancient, UpdatedAt: ancient}, []Kind{KindMissingSummary, KindOpenPastSLA}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := classify(tc.o, now, cfg)
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want kinds %v", got, tc.want)
			}
			for i, d := range got {
				if d.Kind != tc.want[i] {
					t.Errorf("finding %d: %s, want %s", i, d.Kind, tc.want[i])
				}
			}
		})
	}
}

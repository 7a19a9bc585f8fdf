package deliver

import (
	"context"
	"time"

	"orderflow/internal/retention"
)

// Default retention windows of the deliverer's tables (docs/RETENTION.md).
const (
	// DefaultRetainSucceeded keeps a succeeded delivery, and its attempts, three days. What
	// needs it: the intake's fact key (a repair of a fact the endpoint already got creates no
	// delivery while the original's row exists) and reconcile's delivery check, which looks back
	// two days by default (-lookback). Keep this above reconcile's -lookback, or an event older
	// than the window looks undelivered and is repaired.
	DefaultRetainSucceeded = 72 * time.Hour
	// DefaultRetainDead keeps a dead letter, and an intake dead letter, fourteen days: they are
	// work an operator still has to do (replay, or decide to drop), so they outlive the
	// succeeded deliveries by far.
	DefaultRetainDead = 14 * 24 * time.Hour
	// DefaultPurgeEvery is how often the purge runs.
	DefaultPurgeEvery = time.Minute
)

// retentionStore is what the deliverer's retention needs from the database.
type retentionStore interface {
	PurgeSucceededDeliveries(ctx context.Context, keep time.Duration, limit int) (int64, error)
	OldestSucceededDelivery(ctx context.Context) (time.Duration, error)
	PurgeDeadDeliveries(ctx context.Context, keep time.Duration, limit int) (int64, error)
	OldestDeadDelivery(ctx context.Context) (time.Duration, error)
	PurgeIntakeDeadLetters(ctx context.Context, keep time.Duration, limit int) (int64, error)
	OldestIntakeDeadLetter(ctx context.Context) (time.Duration, error)
}

func retentionRules(st retentionStore, succeeded, dead time.Duration) []retention.Rule {
	return []retention.Rule{
		{Name: "webhook_deliveries_succeeded", Keep: succeeded, Purge: st.PurgeSucceededDeliveries, OldestAge: st.OldestSucceededDelivery},
		{Name: "webhook_deliveries_dead", Keep: dead, Purge: st.PurgeDeadDeliveries, OldestAge: st.OldestDeadDelivery},
		{Name: "webhook_intake_dead_letters", Keep: dead, Purge: st.PurgeIntakeDeadLetters, OldestAge: st.OldestIntakeDeadLetter},
	}
}

package deliver_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"orderflow/consumers/deliver"
	"orderflow/internal/testenv"
)

// The deliverer's retention purges, in small batches, succeeded deliveries and dead letters
// older than their windows, with their attempts, and nothing else: younger rows, pending
// deliveries of any age and other states stay. The metrics say how many rows went and how old
// the oldest kept one is.
func TestRetentionPurgesOnlyWhatIsPastItsWindow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ep := e.endpoint("http://127.0.0.1:1/hook", "*")
	ctx := context.Background()
	insert := func(state, age string, n int) {
		t.Helper()
		_, err := e.sql.Exec(ctx, `WITH d AS (
				INSERT INTO webhook_deliveries (event_id, endpoint_id, event_type, subject, payload, state, attempts,
					succeeded_at, dead_at, next_attempt_at, cycle_started_at, created_at)
				SELECT gen_random_uuid()::text, $1, 'order.created', gen_random_uuid()::text, '{}', $2, 1,
					CASE WHEN $2 = 'succeeded' THEN now() - $3::interval END, CASE WHEN $2 = 'dead' THEN now() - $3::interval END,
					now() + interval '1 hour', now() - $3::interval, now() - $3::interval
				FROM generate_series(1, $4) RETURNING id)
			INSERT INTO webhook_delivery_attempts (delivery_id, attempt, started_at, latency_ms, outcome)
			SELECT id, 1, now(), 1, 'success' FROM d`, ep.ID, state, age, n)
		testenv.Must(t, err, "inserting deliveries")
	}
	insert("succeeded", "2 hours", 7)
	insert("succeeded", "10 minutes", 3)
	insert("dead", "5 hours", 5)
	insert("dead", "2 hours", 2) // past the succeeded window, within the dead one
	insert("pending", "30 hours", 4)
	_, err := e.sql.Exec(ctx, `INSERT INTO webhook_intake_dead_letters (topic, kafka_partition, kafka_offset, error, attempts, dead_at)
		SELECT 't', 0, g, 'x', 1, now() - CASE WHEN g <= 3 THEN interval '5 hours' ELSE interval '1 minute' END FROM generate_series(1, 5) g`)
	testenv.Must(t, err, "inserting intake dead letters")

	svc := e.start(func(c *deliver.Config) {
		c.RetainSucceeded, c.RetainDead, c.PurgeEvery, c.PurgeBatch = time.Hour, 3*time.Hour, 100*time.Millisecond, 2
	})
	eventually(t, "the purge", 30*time.Second, func() bool {
		return e.count(`SELECT count(*) FROM webhook_deliveries`) == 3+2+4 && e.count(`SELECT count(*) FROM webhook_intake_dead_letters`) == 2
	})
	for state, want := range map[string]int64{"succeeded": 3, "dead": 2, "pending": 4} {
		if n := e.count(`SELECT count(*) FROM webhook_deliveries WHERE state = $1`, state); n != want {
			t.Errorf("%d %s deliveries kept, want %d", n, state, want)
		}
	}
	if n := e.count(`SELECT count(*) FROM webhook_delivery_attempts`); n != 9 {
		t.Errorf("%d attempts kept, want the 9 of the kept deliveries", n)
	}
	eventually(t, "the retention metrics", 30*time.Second, func() bool {
		_, m := get(metricsURL(t, svc))
		ok := strings.Contains(m, `orderflow_deliver_retention_purged_rows_total{rule="webhook_deliveries_succeeded"} 7`) &&
			strings.Contains(m, `orderflow_deliver_retention_purged_rows_total{rule="webhook_deliveries_dead"} 5`) &&
			strings.Contains(m, `orderflow_deliver_retention_purged_rows_total{rule="webhook_intake_dead_letters"} 3`)
		for _, line := range strings.Split(m, "\n") {
			if strings.HasPrefix(line, `orderflow_deliver_retention_oldest_row_age_seconds{rule="webhook_deliveries_succeeded"}`) {
				ok = ok && strings.HasPrefix(strings.Fields(line)[1], "6") // 10 minutes: 600 s and a bit
			}
		}
		return ok
	})
}

package partner_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"orderflow/consumers/partner"
	"orderflow/internal/testenv"
)

// The partner's retention purges receipts past their window with their callbacks, but never a
// receipt whose callback is still pending or failed recently (the replayable list needs it);
// dead letters and the fault log go after their own windows.
func TestRetentionKeepsWhatDedupeAndReplayNeed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	receipt := func(id, age, callback, doneAge string) {
		t.Helper()
		_, err := e.sql.Exec(ctx, `INSERT INTO partner.receipts (webhook_id, event_type, subject, received_at)
			VALUES ($1, 'order.created', $1, now() - $2::interval)`, id, age)
		testenv.Must(t, err, "inserting receipt")
		if callback == "" {
			return
		}
		_, err = e.sql.Exec(ctx, `INSERT INTO partner.callbacks (webhook_id, order_id, action, due_at, state, done_at)
			VALUES ($1, $1, 'fulfill', now(), $2, CASE WHEN $2 <> 'pending' THEN now() - $3::interval END)`, id, callback, doneAge)
		testenv.Must(t, err, "inserting callback")
	}
	receipt("old-none", "3 hours", "", "")
	receipt("old-done", "3 hours", "done", "3 hours")
	receipt("old-failed-long-ago", "5 hours", "failed", "5 hours")
	receipt("old-pending", "3 hours", "pending", "0")
	receipt("old-failed-recently", "3 hours", "failed", "30 minutes")
	receipt("young-done", "10 minutes", "done", "10 minutes")
	_, err := e.sql.Exec(ctx, `INSERT INTO partner.dead_letters (webhook_id, reason, received_at)
		VALUES ('dl-old', 'x', now() - interval '5 hours'), ('dl-young', 'x', now() - interval '10 minutes');
		INSERT INTO partner.faults (webhook_id, kind, at) VALUES ('f-old', 'error', now() - interval '2 hours'), ('f-young', 'error', now())`)
	testenv.Must(t, err, "inserting dead letters and faults")

	cfg := e.partnerConfig()
	cfg.RetainReceipts, cfg.RetainFailed, cfg.RetainFaults = time.Hour, 2*time.Hour, time.Hour
	cfg.PurgeEvery, cfg.PurgeBatch = 100*time.Millisecond, 2
	p, err := partner.New(ctx, cfg)
	testenv.Must(t, err, "creating partner")
	t.Cleanup(p.Close)
	testenv.Start(t, "partner", p.Run)
	eventually(t, "the purge", 30*time.Second, func() bool {
		return e.count(`SELECT count(*) FROM partner.receipts`) == 3 && e.count(`SELECT count(*) FROM partner.faults`) == 1 &&
			e.count(`SELECT count(*) FROM partner.dead_letters`) == 1
	})
	var kept []string
	rows, err := e.sql.Query(ctx, `SELECT webhook_id FROM partner.receipts ORDER BY webhook_id`)
	testenv.Must(t, err, "reading receipts")
	for rows.Next() {
		var id string
		testenv.Must(t, rows.Scan(&id), "scanning")
		kept = append(kept, id)
	}
	if strings.Join(kept, " ") != "old-failed-recently old-pending young-done" {
		t.Errorf("receipts kept: %v", kept)
	}
	if n := e.count(`SELECT count(*) FROM partner.callbacks`); n != 3 {
		t.Errorf("%d callbacks kept, want the 3 of the kept receipts", n)
	}
	eventually(t, "the metrics", 10*time.Second, func() bool {
		_, m := getURL("http://" + e.addr + "/metrics")
		return strings.Contains(m, `orderflow_partner_retention_purged_rows_total{rule="partner_receipts"} 3`)
	})
}

package partner

import (
	"context"
	"fmt"
	"time"

	"orderflow"
	"orderflow/internal/retention"
)

// Default retention windows of the partner's tables (docs/RETENTION.md).
const (
	// DefaultRetainReceipts keeps a receipt sixteen days. The receipt is the partner's dedupe
	// on webhook-id, so it must outlive every resend of that id: a delivery cycle retries for
	// up to the deliverer's -max-age (24 h), and a dead letter the deliverer keeps (-retain-dead,
	// 14 days) may be replayed with the same id, starting one more cycle. 14 days + 24 h < 16
	// days. A receipt whose callback is still pending, or failed and still in the replayable
	// list, is kept as long as that callback.
	DefaultRetainReceipts = 16 * 24 * time.Hour
	// DefaultRetainFailed keeps a callback that failed for good, and a dead-lettered webhook,
	// fourteen days: they wait for an operator's replay or decision.
	DefaultRetainFailed = 14 * 24 * time.Hour
	// DefaultRetainFaults keeps the injected-fault log three days: it only explains drills.
	DefaultRetainFaults = 72 * time.Hour
)

// minReceipts is the shortest receipt window that still dedupes every retry of one delivery
// cycle at the deliverer's default horizon.
const minReceipts = orderflow.DefaultDeliveryMaxAge + time.Hour

// RetentionRules are the partner's retention rules with its configured windows; Run runs them,
// and the periodic-query benchmark times them.
func (p *Partner) RetentionRules() []retention.Rule {
	return []retention.Rule{
		{Name: "partner_receipts", Keep: p.cfg.RetainReceipts, Purge: p.purgeReceipts,
			OldestAge: p.oldest(`SELECT min(received_at) FROM partner.receipts`)},
		{Name: "partner_dead_letters", Keep: p.cfg.RetainFailed, Purge: p.purger(`partner.dead_letters`, `received_at`),
			OldestAge: p.oldest(`SELECT min(received_at) FROM partner.dead_letters`)},
		{Name: "partner_faults", Keep: p.cfg.RetainFaults, Purge: p.purger(`partner.faults`, `at`),
			OldestAge: p.oldest(`SELECT min(at) FROM partner.faults`)},
	}
}

// purgeReceipts deletes a batch of receipts older than keep, with their callbacks, except
// those whose callback is still pending, or failed less than RetainFailed ago (the replayable
// list needs its receipt).
func (p *Partner) purgeReceipts(ctx context.Context, keep time.Duration, limit int) (int64, error) {
	// The batch's ids travel as one array, so both deletes are index probes.
	tag, err := p.pool.Exec(ctx, `
		WITH doomed AS (
			SELECT ARRAY(SELECT r.webhook_id FROM partner.receipts r LEFT JOIN partner.callbacks c ON c.webhook_id = r.webhook_id
			             WHERE r.received_at < now() - make_interval(secs => $1)
			               AND (c.webhook_id IS NULL OR c.state = 'done'
			                    OR (c.state = 'failed' AND c.done_at < now() - make_interval(secs => $3)))
			             ORDER BY r.received_at LIMIT $2 FOR UPDATE OF r SKIP LOCKED) AS ids
		), callbacks AS (
			DELETE FROM partner.callbacks WHERE webhook_id = ANY ((SELECT ids FROM doomed)::text[])
		)
		DELETE FROM partner.receipts WHERE webhook_id = ANY ((SELECT ids FROM doomed)::text[])`,
		keep.Seconds(), limit, max(p.cfg.RetainFailed, 0).Seconds())
	if err != nil {
		return 0, fmt.Errorf("purging receipts: %w", err)
	}
	return tag.RowsAffected(), nil
}

func (p *Partner) purger(table, column string) func(context.Context, time.Duration, int) (int64, error) {
	return func(ctx context.Context, keep time.Duration, limit int) (int64, error) {
		tag, err := p.pool.Exec(ctx, `DELETE FROM `+table+` WHERE ctid = ANY (ARRAY(SELECT ctid FROM `+table+`
			WHERE `+column+` < now() - make_interval(secs => $1) ORDER BY `+column+` LIMIT $2))`, keep.Seconds(), limit)
		if err != nil {
			return 0, fmt.Errorf("purging %s: %w", table, err)
		}
		return tag.RowsAffected(), nil
	}
}

func (p *Partner) oldest(query string) func(context.Context) (time.Duration, error) {
	return func(ctx context.Context) (time.Duration, error) {
		var secs float64
		if err := p.pool.QueryRow(ctx, `SELECT coalesce(extract(epoch FROM now() - (`+query+`)), 0)::float8`).Scan(&secs); err != nil {
			return 0, fmt.Errorf("reading the oldest row: %w", err)
		}
		return time.Duration(secs * float64(time.Second)), nil
	}
}

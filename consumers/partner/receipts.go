package partner

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Group commit of receipts. Every webhook's receipt was its own statement and its own commit:
// per order a round trip, a statement's executor start-up and a WAL flush in the partner's
// PostgreSQL backend (0.4 ms of its CPU per order at 200-350 orders/s on the two-core box).
// Up to receiptWriters statements run at once; webhooks that arrive while all of them run wait
// for the first to end and are written together in the next one. A webhook that finds a
// writer free is written at once, as before: nothing lingers, so at a low rate nothing
// changes, and under load the batch grows with the queue. (One writer at a time batched more,
// 0.11-0.2 statements per order, but each webhook then waited for the statement before its
// own, which doubled the partner's answer time on the loaded box: 25-75 ms against 10-45, and
// the deliverer's 32 slots per endpoint carry 32 / answer time.)
//
// Each webhook is still answered only after the statement that holds its receipt committed,
// so a 2xx still means "stored" (the deliverer stops sending on it). A batch the database
// refuses for its values holds a bad webhook: it is then written webhook by webhook, so only
// that one is refused (and dead-lettered by the handler) and the others are stored.

// maxReceiptBatch bounds the receipts of one statement; receiptWriters bounds the statements
// running at once.
const (
	maxReceiptBatch = 64
	receiptWriters  = 4
)

// receiptReq is one webhook's receipt on its way to the database.
type receiptReq struct {
	r    receiptRow
	ans  hookAnswer
	err  error
	done chan struct{}
	// lead is closed when this request is to write the queue itself; leading says it was
	// (under receiptQueue.mu).
	lead    chan struct{}
	leading bool
}

// receiptRow is what receive stores for one webhook.
type receiptRow struct {
	id            string
	eventType     string
	subject       string
	eventTime     *time.Time
	version       *int32
	orderID       *string
	action        *string
	reason        *string
	commitThen500 bool
	traceParent   *string
}

// receiptQueue lets up to receiptWriters requests lead at once: a leader takes the waiting
// requests, writes them in one statement and, if more arrived meanwhile, hands its lead to the
// oldest of them.
type receiptQueue struct {
	mu      sync.Mutex
	pending []*receiptReq
	leaders int
}

// store writes r, grouped with whatever else is waiting, and returns its answer once the
// statement holding it committed. write runs in at most receiptWriters goroutines at once.
func (q *receiptQueue) store(ctx context.Context, r receiptRow, write func(context.Context, []*receiptReq)) (hookAnswer, error) {
	req := &receiptReq{r: r, done: make(chan struct{}), lead: make(chan struct{})}
	q.mu.Lock()
	q.pending = append(q.pending, req)
	if q.leaders < receiptWriters {
		q.leaders++
		req.leading = true
		close(req.lead)
	}
	q.mu.Unlock()
	for {
		select {
		case <-req.done:
			// Written by another leader; a lead handed to it meanwhile is passed on.
			q.mu.Lock()
			if req.leading {
				req.leading = false
				q.release()
			}
			q.mu.Unlock()
			return req.ans, req.err
		case <-req.lead:
		}
		q.mu.Lock()
		batch := q.take()
		q.mu.Unlock()
		if len(batch) > 0 { // empty when a newer leader took this request along
			// The statement is not cancelled with this request: it carries other webhooks too,
			// each of which is answered after it.
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			write(wctx, batch)
			cancel()
			for _, b := range batch {
				close(b.done)
			}
		}
		q.mu.Lock()
		req.leading = false
		// This request may still wait: take leaves a second webhook with an id already in the
		// batch for the next statement. It must then be able to lead again, or the lead that
		// release hands to the oldest waiting request (perhaps this one) would never be used
		// and every webhook behind it would wait forever (a test with each id twice hung so).
		// (Returning at once when it is done matters too: its old lead channel is closed, and
		// going round the loop could take that for a new lead and release it twice.)
		select {
		case <-req.done:
			q.release()
			q.mu.Unlock()
			return req.ans, req.err
		default:
		}
		req.lead = make(chan struct{})
		q.release()
		q.mu.Unlock()
	}
}

// release ends a lead: it passes to the oldest waiting request, so a lead never lapses while
// requests wait, or the writer's place is given back. Called with mu held.
func (q *receiptQueue) release() {
	if len(q.pending) > 0 && !q.pending[0].leading {
		q.pending[0].leading = true
		close(q.pending[0].lead)
		return
	}
	q.leaders--
}

// take removes up to maxReceiptBatch waiting requests with distinct webhook ids (two deliveries
// of one webhook in one statement would both look new); the rest wait for the next statement.
// Called with mu held.
func (q *receiptQueue) take() []*receiptReq {
	seen := make(map[string]bool, len(q.pending))
	var batch, rest []*receiptReq
	for _, p := range q.pending {
		if len(batch) == maxReceiptBatch || seen[p.r.id] {
			rest = append(rest, p)
			continue
		}
		seen[p.r.id] = true
		batch = append(batch, p)
	}
	q.pending = rest
	return batch
}

// writeReceipts stores a batch of receipts, with their callbacks and fault records, in one
// statement; on a refusal of its values it stores them one by one.
func (p *Partner) writeReceipts(ctx context.Context, batch []*receiptReq) {
	p.m.receiptBatch.Observe(float64(len(batch)))
	if len(batch) > 1 {
		err := p.insertReceipts(ctx, batch)
		if err == nil || !refused(err) {
			for _, b := range batch {
				b.err = err
			}
			return
		}
	}
	for _, b := range batch {
		b.err = p.insertReceipts(ctx, []*receiptReq{b})
	}
}

// insertReceipts is receive's statement for many webhooks: every receipt, the callback only
// for receipts that are new (selected from the receipts' RETURNING), the injected faults.
// Either key makes a webhook a duplicate: its webhook-id (a retry, a replay) or its fact
// (subject, type, data.version: a reconcile repair of an event already received, which
// carries an id of its own).
func (p *Partner) insertReceipts(ctx context.Context, batch []*receiptReq) error {
	n := len(batch)
	var (
		ids, types, subjects, orderIDs, actions, reasons, traces = make([]string, n), make([]string, n), make([]string, n),
			make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
		times    = make([]*time.Time, n)
		versions = make([]*int32, n)
		faults   = make([]bool, n)
	)
	for i, b := range batch {
		r := b.r
		ids[i], types[i], subjects[i], times[i], versions[i] = r.id, r.eventType, r.subject, r.eventTime, r.version
		orderIDs[i], actions[i], reasons[i], faults[i], traces[i] = r.orderID, r.action, r.reason, r.commitThen500, r.traceParent
	}
	rows, err := p.pool.Query(ctx, `WITH w AS (
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::int[], $6::text[], $7::text[],
			    $8::text[], $9::boolean[], $10::text[]) WITH ORDINALITY
			    AS w(webhook_id, event_type, subject, event_time, fact_version, order_id, action, reason, fault, traceparent, n)),
		r AS (
			INSERT INTO partner.receipts (webhook_id, event_type, subject, event_time, fact_version)
			SELECT webhook_id, event_type, subject, event_time, fact_version FROM w ORDER BY n
			ON CONFLICT DO NOTHING RETURNING webhook_id),
		c AS (
			INSERT INTO partner.callbacks (webhook_id, order_id, action, reason, due_at, traceparent)
			SELECT w.webhook_id, w.order_id, w.action, w.reason, now() + make_interval(secs => $11), w.traceparent
			FROM w JOIN r ON r.webhook_id = w.webhook_id WHERE w.action IS NOT NULL),
		f AS (
			INSERT INTO partner.faults (webhook_id, kind) SELECT webhook_id, 'commit_then_500' FROM w WHERE fault)
		SELECT webhook_id FROM r`,
		ids, types, subjects, times, versions, orderIDs, actions, reasons, faults, traces, p.cfg.FulfillDelay.Seconds())
	if err != nil {
		return fmt.Errorf("storing receipts: %w", err)
	}
	defer rows.Close()
	inserted := make(map[string]bool, n)
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return fmt.Errorf("reading stored receipts: %w", err)
		}
		inserted[id] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("storing receipts: %w", err)
	}
	for _, b := range batch {
		b.ans = hookAnswer{WebhookID: b.r.id, Duplicate: !inserted[b.r.id]}
		if !b.ans.Duplicate && b.r.action != nil {
			b.ans.Action = *b.r.action
		}
	}
	return nil
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
)

// result is what the drill found once the pipeline settled.
type result struct {
	converge    time.Duration
	orders      int64 // orders of this drill in the database
	accepted    int64 // distinct order ids the API answered 201 with
	events      int64 // records on the topic
	distinct    int64 // distinct ce_id on the topic
	lost        int64 // outbox rows with no record on the topic
	drillShort  int64 // events missing for this drill's orders: sum(version) - records
	summaries   int64 // summaries that differ from their order (-1: no projector)
	receipts    int64 // partner receipts for this drill's events (-1: no partner)
	undelivered int64 // order.created events without a receipt
	deadLetters int64
	drift       int64 // what reconcile reports (-1: not run)
	stockBad    int64 // SKUs whose stock or reservations are off
	slotLag     int64
	broken      []string
}

const slotName = "orderflow_capture"

// settle waits until the pipeline is quiet: capture has confirmed the WAL written so far, no
// delivery or partner callback is pending, every summary matches its order, and the outbox
// stopped growing (the partner's callbacks write new events). Past the timeout the checks
// run anyway and say what is missing.
func (d *drill) settle(ctx context.Context) (*result, error) {
	c, err := d.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close(ctx)
	d.logf("settle: waiting for the pipeline to go quiet (at most %s)", d.cfg.settle)
	deadline := time.Now().Add(d.cfg.settle)
	var lastOutbox int64 = -1
	var target string
	quiet := 0
	for {
		busy := d.busy(ctx, c, target)
		n := d.count(ctx, c, "SELECT count(*) FROM outbox")
		if busy == "" && n != lastOutbox {
			busy = "the outbox is still growing"
		}
		// Lag gauges refresh every few seconds: quiet must hold three looks in a row.
		if busy == "" {
			quiet++
		} else {
			quiet = 0
		}
		if quiet >= 3 {
			break
		}
		lastOutbox = n
		if time.Now().After(deadline) {
			d.logf("settle: gave up: %s", busy)
			break
		}
		_ = c.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&target)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	return d.check(ctx, c)
}

// busy says what is still moving, or "" when nothing is.
func (d *drill) busy(ctx context.Context, c *pgx.Conn, target string) string {
	if target == "" {
		return "starting"
	}
	var confirmed bool
	if err := c.QueryRow(ctx, `SELECT coalesce(confirmed_flush_lsn >= $1::pg_lsn, false) FROM pg_replication_slots WHERE slot_name = $2`,
		target, slotName).Scan(&confirmed); err != nil || !confirmed {
		return "capture has not confirmed " + target
	}
	for _, svc := range []string{"project", "deliver"} {
		if !d.hasService(svc) {
			continue
		}
		if lag, err := d.consumerLag(ctx, svc); err != nil || lag != 0 {
			return fmt.Sprintf("%s consumer lag %v (err %v)", svc, lag, err)
		}
	}
	if d.hasService("deliver") {
		if n := d.count(ctx, c, "SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'"); n != 0 {
			return fmt.Sprintf("%d deliveries pending", n)
		}
	}
	if d.hasService("partner") {
		if n := d.count(ctx, c, "SELECT count(*) FROM partner.callbacks WHERE state = 'pending'"); n != 0 {
			return fmt.Sprintf("%d partner callbacks pending", n)
		}
	}
	if d.hasService("project") {
		if n := d.count(ctx, c, `SELECT count(*) FROM orders o LEFT JOIN order_summary s ON s.order_id = o.id
			WHERE s.version IS DISTINCT FROM o.version`); n != 0 {
			return fmt.Sprintf("%d summaries behind", n)
		}
	}
	return ""
}

// consumerLag sums a consumer's lag gauge as its /metrics reports it to an operator.
func (d *drill) consumerLag(ctx context.Context, svc string) (float64, error) {
	url := d.cfg.env[strings.ToUpper(svc)+"_METRICS_URL"]
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var sum float64
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "orderflow_") || !strings.Contains(line, "_consumer_lag") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, err
		}
		sum += v
		found = true
	}
	if !found {
		return 0, fmt.Errorf("%s reports no consumer lag", svc)
	}
	return sum, nil
}

func (d *drill) count(ctx context.Context, c *pgx.Conn, q string, args ...any) int64 {
	var n int64
	if err := c.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		d.logf("query failed: %v: %s", err, q)
		return -1
	}
	return n
}

func (d *drill) check(ctx context.Context, c *pgx.Conn) (*result, error) {
	r := &result{}
	// Every service must have ridden out the faults by itself: the drill restarts only what it
	// killed, so one that is not running now died on its own.
	for _, svc := range d.services() {
		if err := exec.CommandContext(ctx, d.cfg.root+"/deploy/local/stack.sh", "running", svc).Run(); err != nil {
			r.broken = append(r.broken, fmt.Sprintf("service %s found dead at settle", svc))
		}
	}
	var ids []string
	d.accepted.Range(func(k, _ any) bool { ids = append(ids, k.(string)); return true })
	r.accepted = int64(len(ids))
	r.orders = d.count(ctx, c, "SELECT count(*) FROM orders WHERE id = ANY($1::uuid[])", ids)
	drillOrders := d.count(ctx, c, "SELECT count(*) FROM orders WHERE customer_id LIKE 'drill-cust-%' AND created_at >= $1", d.started)
	if r.orders != r.accepted || drillOrders != r.accepted {
		r.broken = append(r.broken, fmt.Sprintf("%d accepted orders; %d of them in the database; %d drill orders in all", r.accepted, r.orders, drillOrders))
	}

	// Each version of an order is one event: created is version 1, every change adds one.
	var versions int64
	if err := c.QueryRow(ctx, "SELECT coalesce(sum(version), 0)::bigint FROM orders WHERE id = ANY($1::uuid[])", ids).Scan(&versions); err != nil {
		return nil, fmt.Errorf("summing versions: %w", err)
	}
	// The topic, read whole after the database snapshot above: every outbox row exactly once.
	rows, err := c.Query(ctx, "SELECT id::text FROM outbox WHERE created_at >= $1", d.started)
	if err != nil {
		return nil, fmt.Errorf("reading outbox: %w", err)
	}
	outbox, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("reading outbox: %w", err)
	}
	seen, err := d.readTopic(ctx, "orderflow.order")
	if err != nil {
		return nil, err
	}
	r.distinct = int64(len(seen.ids))
	r.events = seen.records
	if r.events != r.distinct {
		r.broken = append(r.broken, fmt.Sprintf("%d records but %d distinct ce_id: %d duplicates", r.events, r.distinct, r.events-r.distinct))
	}
	for _, id := range outbox {
		if _, ok := seen.ids[id]; !ok {
			r.lost++
		}
	}
	if r.lost > 0 {
		r.broken = append(r.broken, fmt.Sprintf("%d outbox rows never reached the topic", r.lost))
	}
	var onTopic int64
	for _, id := range ids {
		onTopic += seen.bySubject[id]
	}
	// A reconcile repair restates a version under an id of its own, once per fact
	// (docs/RECONCILE.md): one more record of its order, never a duplicate ce_id.
	repairs := d.count(ctx, c, "SELECT count(*) FROM reconcile_repairs WHERE state = 'published' AND order_id = ANY($1::uuid[])", ids)
	r.drillShort = versions + max(repairs, 0) - onTopic
	if r.drillShort != 0 {
		r.broken = append(r.broken, fmt.Sprintf("this drill's orders have %d versions but %d events on the topic", versions, onTopic))
	}

	r.summaries = -1
	if d.hasService("project") {
		r.summaries = d.count(ctx, c, `SELECT count(*) FROM orders o LEFT JOIN order_summary s ON s.order_id = o.id
			WHERE s.version IS DISTINCT FROM o.version OR s.status IS DISTINCT FROM o.status`)
		if r.summaries != 0 {
			r.broken = append(r.broken, fmt.Sprintf("%d summaries differ from their order", r.summaries))
		}
	}

	r.stockBad = d.count(ctx, c, `
		WITH open AS (SELECT i.sku, sum(i.quantity) AS q FROM order_items i JOIN orders o ON o.id = i.order_id
		              WHERE o.status = 'pending' GROUP BY i.sku)
		SELECT count(*) FROM inventory v LEFT JOIN open ON open.sku = v.sku
		WHERE v.stock < 0 OR v.reserved < 0 OR v.reserved <> coalesce(open.q, 0)`)
	if r.stockBad != 0 {
		r.broken = append(r.broken, fmt.Sprintf("%d SKUs with negative stock or reservations that do not match open orders", r.stockBad))
	}

	r.receipts, r.undelivered, r.deadLetters = -1, -1, -1
	if d.hasService("deliver") && d.hasService("partner") {
		// Every order.created of this drill reached the partner, which stored exactly one receipt
		// for it (webhook-id is the receipt's key; retries and commit-then-500 add none).
		// The receipt may be of a repair of the event's fact (subject, type, version).
		r.undelivered = d.count(ctx, c, `SELECT count(*) FROM outbox x WHERE x.created_at >= $1 AND x.event_type = 'order.created'
			AND NOT EXISTS (SELECT 1 FROM partner.receipts r WHERE r.webhook_id = x.id::text OR (r.subject = x.aggregate_id
			    AND r.event_type = x.event_type AND r.fact_version = (x.payload->>'version')::int))`, d.started)
		r.receipts = d.count(ctx, c, `SELECT count(*) FROM partner.receipts r JOIN outbox x ON x.id::text = r.webhook_id
			WHERE x.created_at >= $1`, d.started)
		delivered := d.count(ctx, c, `SELECT count(DISTINCT d.event_id) FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
			JOIN outbox x ON x.id::text = d.event_id WHERE d.state = 'succeeded' AND e.url LIKE '%/partner-hook' AND x.created_at >= $1`, d.started)
		r.deadLetters = d.count(ctx, c, `SELECT count(*) FROM webhook_deliveries WHERE state = 'dead' AND created_at >= $1`, d.started)
		if r.undelivered != 0 {
			r.broken = append(r.broken, fmt.Sprintf("%d order.created events have no partner receipt", r.undelivered))
		}
		if delivered != r.receipts {
			r.broken = append(r.broken, fmt.Sprintf("%d events delivered to the partner but %d receipts", delivered, r.receipts))
		}
		if r.deadLetters != 0 {
			r.broken = append(r.broken, fmt.Sprintf("%d deliveries dead-lettered", r.deadLetters))
		}
	}

	// The reconciliation job, as an operator would run it, must find nothing.
	r.drift = -1
	if d.hasService("reconcile") {
		cmd := exec.CommandContext(ctx, d.cfg.root+"/bin/orderflow", "reconcile", "-json", "-quiet")
		cmd.Env = append(os.Environ(), "DATABASE_URL="+d.cfg.env["DATABASE_URL"])
		out, err := cmd.Output()
		var rep struct {
			Counts map[string]int64 `json:"counts"`
		}
		if err != nil || json.Unmarshal(out, &rep) != nil {
			r.broken = append(r.broken, fmt.Sprintf("orderflow reconcile failed: %v", err))
		} else {
			r.drift = 0
			for _, n := range rep.Counts {
				r.drift += n
			}
			if r.drift != 0 {
				r.broken = append(r.broken, fmt.Sprintf("reconcile reports %d drift: %v", r.drift, rep.Counts))
			}
		}
	}

	// Slot lag: capture advances the slot when idle, so it must fall under 1 MB.
	deadline := time.Now().Add(60 * time.Second)
	for {
		r.slotLag = d.count(ctx, c, `SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), -1)::bigint
			FROM pg_replication_slots WHERE slot_name = $1`, slotName)
		if (r.slotLag >= 0 && r.slotLag < 1<<20) || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	if r.slotLag < 0 || r.slotLag >= 1<<20 {
		r.broken = append(r.broken, fmt.Sprintf("slot lag %d bytes, want under 1 MB", r.slotLag))
	}
	return r, nil
}

type topicSeen struct {
	records   int64
	ids       map[string]struct{}
	bySubject map[string]int64
}

// readTopic reads every partition from its first to its last offset over a plain connection
// to the leader (a kafka.Reader's Close can hang waiting on its background fetchers).
func (d *drill) readTopic(ctx context.Context, topic string) (*topicSeen, error) {
	brokers := strings.Split(d.cfg.env["KAFKA_BROKERS"], ",")
	conn, err := kafka.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return nil, fmt.Errorf("dialing kafka: %w", err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		return nil, fmt.Errorf("reading partitions of %s: %w", topic, err)
	}
	seen := &topicSeen{ids: map[string]struct{}{}, bySubject: map[string]int64{}}
	for _, p := range parts {
		if err := d.readPartition(ctx, brokers[0], topic, p.ID, seen); err != nil {
			return nil, err
		}
	}
	return seen, nil
}

func (d *drill) readPartition(ctx context.Context, broker, topic string, partition int, seen *topicSeen) error {
	lc, err := kafka.DialLeader(ctx, "tcp", broker, topic, partition)
	if err != nil {
		return fmt.Errorf("dialing leader of %s/%d: %w", topic, partition, err)
	}
	defer lc.Close()
	first, last, err := lc.ReadOffsets()
	if err != nil {
		return fmt.Errorf("reading offsets of %s/%d: %w", topic, partition, err)
	}
	if _, err := lc.Seek(first, kafka.SeekAbsolute); err != nil {
		return fmt.Errorf("seeking %s/%d: %w", topic, partition, err)
	}
	next := first
	for stalls := 0; next < last; {
		before := next
		_ = lc.SetReadDeadline(time.Now().Add(30 * time.Second))
		batch := lc.ReadBatch(1, 10<<20)
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			next = m.Offset + 1
			seen.records++
			for _, h := range m.Headers {
				if h.Key == "ce_id" {
					seen.ids[string(h.Value)] = struct{}{}
				}
			}
			seen.bySubject[string(m.Key)]++
			if next >= last {
				break
			}
		}
		if err := batch.Close(); err != nil && next < last {
			return fmt.Errorf("reading %s/%d at %d: %w", topic, partition, next, err)
		}
		if next == before {
			if stalls++; stalls > 5 {
				return fmt.Errorf("reading %s/%d: no progress at offset %d of %d", topic, partition, next, last)
			}
		}
	}
	return nil
}

func (d *drill) report(r *result) error {
	counts := map[string]int{}
	for _, f := range d.injected {
		counts[f]++
	}
	var faults []string
	for f, n := range counts {
		faults = append(faults, fmt.Sprintf("%s ×%d", f, n))
	}
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "drill\t")
	fmt.Fprintf(tw, "faults injected\t%s\n", strings.Join(faults, ", "))
	fmt.Fprintf(tw, "orders accepted (API 201)\t%d\n", r.accepted)
	fmt.Fprintf(tw, "orders in the database\t%d\n", r.orders)
	fmt.Fprintf(tw, "client resends answered by replay\t%d\n", d.replays.Load())
	fmt.Fprintf(tw, "requests retried after errors\t%d\n", d.retries.Load())
	fmt.Fprintf(tw, "records on orderflow.order\t%d\n", r.events)
	fmt.Fprintf(tw, "lost (outbox rows not on the topic)\t%d\n", r.lost)
	fmt.Fprintf(tw, "duplicated (records - distinct ce_id)\t%d\n", r.events-r.distinct)
	fmt.Fprintf(tw, "events missing for this drill's orders\t%d\n", r.drillShort)
	if r.summaries >= 0 {
		fmt.Fprintf(tw, "summaries off their order\t%d\n", r.summaries)
	} else {
		fmt.Fprintf(tw, "summaries off their order\tnot checked: no projector\n")
	}
	if r.receipts >= 0 {
		fmt.Fprintf(tw, "partner receipts for this drill's events\t%d\n", r.receipts)
		fmt.Fprintf(tw, "order.created without a receipt\t%d\n", r.undelivered)
		fmt.Fprintf(tw, "webhook dead letters\t%d\n", r.deadLetters)
	}
	if r.drift >= 0 {
		fmt.Fprintf(tw, "reconcile drift\t%d\n", r.drift)
	}
	fmt.Fprintf(tw, "SKUs with bad stock\t%d\n", r.stockBad)
	fmt.Fprintf(tw, "slot lag after settling\t%s bytes\n", strconv.FormatInt(r.slotLag, 10))
	fmt.Fprintf(tw, "time to converge\t%s\n", r.converge.Round(time.Second))
	for _, l := range d.notes {
		fmt.Fprintln(tw, l)
	}
	tw.Flush()
	if len(r.broken) > 0 {
		for _, b := range r.broken {
			fmt.Fprintf(d.out, "BROKEN: %s\n", b)
		}
		return fmt.Errorf("%w: %d", errBroken, len(r.broken))
	}
	fmt.Fprintln(d.out, "all invariants hold")
	return nil
}

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	ofsql "orderflow/sql"
)

func randHex(n int) string {
	p := make([]byte, n)
	_, _ = rand.Read(p)
	return hex.EncodeToString(p)
}

func (b *bench) createDatabase(ctx context.Context) error {
	b.dbName = "ofbench_capture_" + randHex(3)
	admin, err := pgx.Connect(ctx, b.adminURL)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+b.dbName); err != nil {
		return fmt.Errorf("creating database: %w", err)
	}
	u, err := url.Parse(b.adminURL)
	if err != nil {
		return err
	}
	u.Path = "/" + b.dbName
	b.dsn = u.String()
	if err := ofsql.Migrate(ctx, b.dsn, io.Discard); err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	_, err = b.exec(ctx, `CREATE PUBLICATION ofbench FOR TABLE outbox WITH (publish = 'insert')`)
	return err
}

func (b *bench) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, b.adminURL)
	if err == nil {
		// A walsender outlives the capture process that just exited by a moment, and an
		// active slot can be dropped by nobody: wait for it, or the slot (global, by name)
		// and the database stay and the next run fails to create cap_latency.
		for i := 0; i < 100; i++ {
			var left int
			_ = admin.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = $1`, b.dbName).Scan(&left)
			if left == 0 {
				break
			}
			_, _ = admin.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`, b.dbName)
			time.Sleep(100 * time.Millisecond)
		}
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+b.dbName+" WITH (FORCE)")
		admin.Close(ctx)
	}
	c := &kafka.Client{Addr: kafka.TCP(strings.Split(b.brokers, ",")...)}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return
	}
	var names []string
	for _, t := range md.Topics {
		if strings.HasPrefix(t.Name, b.prefix) {
			names = append(names, t.Name)
		}
	}
	if len(names) > 0 {
		_, _ = c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: names})
	}
}

func (b *bench) exec(ctx context.Context, sql string, args ...any) (int64, error) {
	c, err := pgx.Connect(ctx, b.dsn)
	if err != nil {
		return 0, err
	}
	defer c.Close(ctx)
	tag, err := c.Exec(ctx, sql, args...)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", strings.Fields(sql)[0], err)
	}
	return tag.RowsAffected(), nil
}

func (b *bench) lsn(ctx context.Context) (string, error) {
	c, err := pgx.Connect(ctx, b.dsn)
	if err != nil {
		return "", err
	}
	defer c.Close(ctx)
	var s string
	err = c.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&s)
	return s, err
}

func (b *bench) createSlots(ctx context.Context, names ...string) error {
	for _, n := range names {
		if _, err := b.exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, n); err != nil {
			return err
		}
	}
	return nil
}

// waitConfirmed waits until slot confirmed target and returns when that was first seen.
func (b *bench) waitConfirmed(ctx context.Context, slot, target string, alive func() error) (time.Time, error) {
	c, err := pgx.Connect(ctx, b.dsn)
	if err != nil {
		return time.Time{}, err
	}
	defer c.Close(ctx)
	deadline := time.Now().Add(30 * time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var ok bool
		if err := c.QueryRow(ctx, `SELECT coalesce(confirmed_flush_lsn >= $2::pg_lsn, false) FROM pg_replication_slots WHERE slot_name = $1`,
			slot, target).Scan(&ok); err != nil {
			return time.Time{}, err
		}
		if ok {
			return time.Now(), nil
		}
		if alive != nil {
			if err := alive(); err != nil {
				return time.Time{}, err
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("slot %s did not reach %s", slot, target)
}

// writeBacklog commits n single-row transactions (synchronous_commit off: the backlog's
// speed is not what is measured). Each event is order-sized: 1 to maxItems line items of about
// itemBytes each, spread evenly, so produce requests fill up the way they do with real orders
// (tiny events hid that requests were sized on values alone).
func (b *bench) writeBacklog(ctx context.Context, n int) error {
	desc := max(b.itemBytes-80, 0) // the rest of a line item's JSON is about 80 bytes
	_, err := b.exec(ctx, `
		DO $$
		BEGIN
			SET LOCAL synchronous_commit = off;
			FOR i IN 1..`+strconv.Itoa(n)+` LOOP
				INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, schema_version, payload)
				SELECT gen_random_uuid(), 'order', gen_random_uuid()::text, 'order.created', 1,
					jsonb_build_object('customer_id', 'c-' || (i % 1000), 'currency', 'EUR', 'total_cents', i,
						'items', jsonb_agg(jsonb_build_object('sku', 'SKU-' || ((i + j) % 500), 'quantity', 1 + j % 3,
							'unit_price_cents', 1999, 'description', left(repeat(md5((i * 31 + j)::text), `+strconv.Itoa(desc/32+1)+`), `+strconv.Itoa(desc)+`))))
				FROM generate_series(1, 1 + (i::bigint * 7919) % `+strconv.Itoa(max(b.maxItems, 1))+`) AS j;
				COMMIT;
				SET LOCAL synchronous_commit = off;
			END LOOP;
		END $$`)
	return err
}

// avgEventBytes is the mean size of the backlog's payloads as PostgreSQL prints them.
func (b *bench) avgEventBytes(ctx context.Context) (float64, error) {
	c, err := pgx.Connect(ctx, b.dsn)
	if err != nil {
		return 0, err
	}
	defer c.Close(ctx)
	var avg float64
	err = c.QueryRow(ctx, `SELECT coalesce(avg(octet_length(payload::text)), 0) FROM (SELECT payload FROM outbox LIMIT 10000) s`).Scan(&avg)
	return avg, err
}

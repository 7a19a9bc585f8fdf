package projector

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"orderflow"
	"orderflow/internal/testenv"
)

// TestRecordsTheDatabaseRefusesAreDeadLetteredAmongGoodOnes feeds records crafted to fail on
// write (numbers out of range, a value too large for an index, a record whose key and id are
// invalid UTF-8 with a NUL) between good ones: the good ones are applied, each bad one is a
// dead letter with its reason (on the DLQ topic and in projector_dead_letters), and the group
// commits past all of them. Before, the row describing the last one was refused forever
// (SQLSTATE 22021) and stalled the partition.
func TestRecordsTheDatabaseRefusesAreDeadLetteredAmongGoodOnes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)

	bigVersion := newOrder("cust-poison")
	bigVersion.Version = 1 << 31 // integer column: 22003
	manyUnits := newOrder("cust-poison")
	manyUnits.Items = []orderflow.Item{{SKU: "s", Quantity: 3_000_000_000, UnitPriceCents: 0}} // item_count: 22003
	hugeCustomer := newOrder(randomText(t, 100<<10))                                           // index row too large: 54000
	badBytes := event{id: "bad-\xff\x00-id", typ: orderflow.EventOrderCreated, raw: []byte("\x00\xffnot json"),
		order: orderflow.Order{ID: "key-\xff\x00"}}

	var good []event
	for range 6 {
		good = append(good, eventFor(newOrder("cust-good")))
	}
	bad := []event{eventFor(bigVersion), eventFor(manyUnits), eventFor(hugeCustomer), badBytes}
	e.produce(t, good[0], good[1], bad[0], good[2], bad[1], good[3], bad[2], good[4], bad[3], good[5])

	cfg := e.config()
	cfg.BatchSize = 4
	r := start(t, cfg, mustOpenDB(t, e.dsn))
	e.waitCaughtUp(t, 2*time.Minute)

	got := e.summaries(t)
	if len(got) != len(good) {
		t.Errorf("%d summaries, want the %d good events", len(got), len(good))
	}
	for _, g := range good {
		if got[g.order.ID].Version != 1 {
			t.Errorf("good event %s not applied", g.id)
		}
	}
	if n := testenv.Count(t, e.conn, `SELECT count(*) FROM projector_dead_letters WHERE topic = $1`, e.topic); n != int64(len(bad)) {
		t.Fatalf("%d dead-letter rows, want %d", n, len(bad))
	}
	for _, want := range []string{"out of range", "out of range", "index row", "decoding cloudevent"} {
		if n := testenv.Count(t, e.conn, `SELECT count(*) FROM projector_dead_letters WHERE error LIKE '%' || $1 || '%'`, want); n == 0 {
			t.Errorf("no dead letter gives the reason %q", want)
		}
	}
	dlq := e.readAll(t, DLQTopic(e.topic))
	if len(dlq) != len(bad) {
		t.Errorf("%d records on the DLQ topic, want %d", len(dlq), len(bad))
	}
	if n := counterValue(r.p.metrics.events.WithLabelValues(outcomeDeadLettered)); n != float64(len(bad)) {
		t.Errorf("dead_lettered = %v, want %d", n, len(bad))
	}
}

// randomText is n characters that do not compress, so PostgreSQL cannot shrink them into an
// index row.
func randomText(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n/2)
	_, err := rand.Read(b)
	testenv.Must(t, err, "reading random bytes")
	return hex.EncodeToString(b)
}

// The projector's retention purges projector_dead_letters rows past their window, in small
// batches, and keeps the younger ones; the metrics say how many went and how old the oldest
// kept one is.
func TestRetentionPurgesOldDeadLetterRows(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	_, err := e.conn.Exec(context.Background(), `INSERT INTO projector_dead_letters (topic, kafka_partition, kafka_offset, error, attempts, dead_at)
		SELECT 't', 0, g, 'x', 3, now() - CASE WHEN g <= 5 THEN interval '3 hours' ELSE interval '5 minutes' END FROM generate_series(1, 8) g`)
	testenv.Must(t, err, "inserting dead letters")
	cfg := e.config()
	cfg.RetainDeadLetters, cfg.PurgeEvery, cfg.PurgeBatch = time.Hour, 100*time.Millisecond, 2
	r := start(t, cfg, mustOpenDB(t, e.dsn))
	waitFor(t, "the purge", 30*time.Second, func() (bool, error) {
		return testenv.Count(t, e.conn, `SELECT count(*) FROM projector_dead_letters`) == 3, nil
	})
	waitFor(t, "the metrics", 30*time.Second, func() (bool, error) {
		age, err := gaugeValue(r.p.metrics.registry, "orderflow_projector_retention_oldest_row_age_seconds", map[string]string{"rule": "projector_dead_letters"})
		return age >= 300 && age < 3600, err
	})
	if n := testenv.Count(t, e.conn, `SELECT count(*) FROM projector_dead_letters WHERE dead_at < now() - interval '1 hour'`); n != 0 {
		t.Errorf("%d rows older than the window kept", n)
	}
}

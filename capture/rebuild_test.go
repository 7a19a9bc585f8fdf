package capture_test

import (
	"context"
	"math"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"orderflow/internal/tcpproxy"
	"orderflow/internal/testenv"
)

// TestDroppedSlotIsRebuiltUnderLoad: capture is killed while two writers keep committing, its
// slot is dropped while it is down, and the writers go on. The restarted capture rebuilds the
// slot from the outbox table by itself, and in the end every outbox row is on the topic exactly
// once, each key's events in commit order. (Before, capture stopped with ErrSlotLost and
// waited for an operator.)
func TestDroppedSlotIsRebuiltUnderLoad(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := startProc(t, e)
	p.waitReady(t)

	w := newWriter()
	ctx, stopWriting := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		keys := keysN(40)
		go func() {
			defer wg.Done()
			writePaced(t, ctx, e.dsn, w, keys, math.MaxInt, time.Millisecond)
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	p.kill()
	dropSlot(t, e) // retries while the killed walsender lets go of it
	time.Sleep(time.Second)
	t0 := time.Now()
	p = startProc(t, e)
	p.waitReady(t)
	t.Logf("capture rebuilt the slot and streams %s after its start", time.Since(t0).Round(time.Millisecond))
	time.Sleep(time.Second)
	stopWriting()
	wg.Wait()

	waitDrained(t, e, int64(len(w.committed)), 2*time.Minute)
	checkExactlyOnce(t, e, readTopic(t, e.brokers, e.topic()), w.committed)
	republished, _ := metricValue(t, p.addr, "orderflow_capture_republished_events_total")
	complete, _ := metricValue(t, p.addr, `orderflow_capture_slot_rebuilds_total{outcome="complete"}`)
	lostTo, _ := metricValue(t, p.addr, "orderflow_capture_lost_events_to_timestamp_seconds")
	t.Logf("%d rows written, %.0f re-published from the table by the rebuild", len(w.committed), republished)
	if republished == 0 || complete != 1 || lostTo != 0 {
		t.Errorf("republished %v, complete rebuilds %v, lost range end %v; want >0, 1, 0", republished, complete, lostTo)
	}
}

// TestSlotRebuildNamesPurgedRows: the slot is dropped while capture is down, and retention
// deletes rows before capture is back, including some that never reached Kafka. Capture says
// exactly which created_at range may be lost (as metrics), publishes the rows that are left
// exactly once, and goes on streaming.
func TestSlotRebuildNamesPurgedRows(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	r := startCapture(t, cfg)
	r.waitStreaming(t)
	bg := context.Background()
	onTopic, purged, kept := newWriter(), newWriter(), newWriter()
	writeOrders(t, bg, e.dsn, onTopic, keysN(20), 300, 3, 1)
	waitDrained(t, e, 300, time.Minute)
	mustOK(t, r.Stop(t))
	dropSlot(t, e)

	// Written while capture is down, in single-row transactions on keys of their own, so that
	// the retention cut below splits them cleanly.
	writeOrders(t, bg, e.dsn, purged, keysN(10), 100, 1, 2)
	keptKeys := keysN(10)
	writeOrders(t, bg, e.dsn, kept, keptKeys, 100, 1, 3)
	var cut time.Time
	mustOK(t, e.db.QueryRow(bg, `SELECT min(created_at) FROM outbox WHERE id = ANY($1::uuid[])`, ids(kept.committed)).Scan(&cut))
	_, err := e.db.Exec(bg, `DELETE FROM outbox WHERE created_at < $1`, cut) // what retention does
	mustOK(t, err)

	// The range starts at the earliest of the partitions' last records.
	var from time.Time
	last := map[int]record{}
	for _, rec := range readTopic(t, e.brokers, e.topic()) {
		last[rec.partition] = rec
	}
	for _, rec := range last {
		at, err := time.Parse(time.RFC3339Nano, rec.ce.Time)
		mustOK(t, err)
		if from.IsZero() || at.Before(from) {
			from = at
		}
	}

	r = startCapture(t, cfg)
	r.waitStreaming(t)
	after := &writer{versions: kept.versions, committed: kept.committed}
	writeOrders(t, bg, e.dsn, after, keptKeys, 50, 3, 4)
	srv := httptest.NewServer(r.c.Handler())
	defer srv.Close()
	maddr := srv.Listener.Addr().String()

	want := append(append([]order{}, onTopic.committed...), after.committed...)
	waitDrained(t, e, int64(len(want)), time.Minute)
	recs := readTopic(t, e.brokers, e.topic())
	seen := map[string]int{}
	for _, rec := range recs {
		seen[rec.headers["ce_id"]]++
	}
	for _, o := range want {
		if seen[o.id] != 1 {
			t.Errorf("event %s is on the topic %d times, want once", o.id, seen[o.id])
		}
	}
	for _, o := range purged.committed {
		if seen[o.id] != 0 {
			t.Errorf("purged event %s is on the topic", o.id)
		}
	}
	if len(recs) != len(want) {
		t.Errorf("%d records, want %d", len(recs), len(want))
	}
	checkPerKeyOrder(t, recs)

	gotFrom, _ := metricValue(t, maddr, "orderflow_capture_lost_events_from_timestamp_seconds")
	gotTo, _ := metricValue(t, maddr, "orderflow_capture_lost_events_to_timestamp_seconds")
	gap, _ := metricValue(t, maddr, `orderflow_capture_slot_rebuilds_total{outcome="gap"}`)
	republished, _ := metricValue(t, maddr, "orderflow_capture_republished_events_total")
	if math.Abs(gotFrom-unix(from)) > 1e-3 || math.Abs(gotTo-unix(cut)) > 1e-3 {
		t.Errorf("lost range [%v, %v), want [%v, %v)", gotFrom, gotTo, unix(from), unix(cut))
	}
	if gap != 1 || republished != 100 {
		t.Errorf("gap rebuilds %v, republished %v; want 1 and 100", gap, republished)
	}
}

// TestSlotRebuildSurvivesKafkaOutage cuts Kafka off in the middle of a rebuild's re-publishing.
// The rebuild fails, no slot is left behind that would skip the rest, and the rebuild that
// follows once Kafka is back publishes only what is missing: exactly once.
func TestSlotRebuildSurvivesKafkaOutage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	px := tcpproxy.Start(t, e.brokers[0])
	cfg := e.config()
	cfg.Kafka.RequestTimeout = 3 * time.Second
	// One record per request, one at a time: slow enough to cut in the middle.
	cfg.Kafka.MaxBatch, cfg.Kafka.QueueSize = 1, 1
	cfg.Kafka.Dial = px.Dial
	r := startCapture(t, cfg)
	r.waitStreaming(t)
	bg := context.Background()
	w := newWriter()
	writeOrders(t, bg, e.dsn, w, keysN(20), 50, 3, 1)
	waitDrained(t, e, 50, time.Minute)
	mustOK(t, r.Stop(t))
	dropSlot(t, e)
	writeOrders(t, bg, e.dsn, w, keysN(20), 3000, 3, 2)

	r = startCapture(t, cfg)
	srv := httptest.NewServer(r.c.Handler())
	defer srv.Close()
	maddr := srv.Listener.Addr().String()
	waitFor(t, "the rebuild to re-publish 200 rows", time.Minute, func() (bool, error) {
		n, _ := metricValue(t, maddr, "orderflow_capture_republished_events_total")
		return n >= 200, nil
	})
	px.Cut()
	var n int
	waitFor(t, "the rebuild to fail", time.Minute, func() (bool, error) {
		v, _ := metricValue(t, maddr, "orderflow_capture_reconnects_total")
		return v > 0, nil
	})
	mustOK(t, e.db.QueryRow(bg, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, e.slot).Scan(&n))
	if n != 0 {
		t.Fatalf("a failed rebuild left slot %s behind: the rows it did not publish would be skipped", e.slot)
	}
	px.Restore()
	r.waitStreaming(t)
	waitDrained(t, e, int64(len(w.committed)), 2*time.Minute)
	checkExactlyOnce(t, e, readTopic(t, e.brokers, e.topic()), w.committed)
}

func ids(os []order) []string {
	out := make([]string, len(os))
	for i, o := range os {
		out[i] = o.id
	}
	return out
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// TestSlotInvalidatedDuringKafkaOutageIsRebuilt runs its own PostgreSQL with a 4 MB
// max_slot_wal_keep_size and cuts Kafka off while outbox rows and other WAL keep coming: the
// WAL budget metrics show the slot running out, PostgreSQL invalidates it (wal_status lost),
// and once Kafka is back capture rebuilds the slot and every outbox row is on the topic
// exactly once, each key in commit order.
func TestSlotInvalidatedDuringKafkaOutageIsRebuilt(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	const limit = 4 << 20
	base := testenv.StartPostgres(t, "max_slot_wal_keep_size = 4MB\nwal_keep_size = 0\nmin_wal_size = 4MB\nmax_wal_size = 64MB", "--wal-segsize=1")
	e := &env{
		dsn: testenv.NewDatabaseOn(t, base), brokers: brokers,
		slot: testenv.UniqueName("ofslot"), publication: testenv.UniqueName("ofpub"), prefix: testenv.UniqueName("ofcap"),
	}
	t.Cleanup(func() { deleteTopics(t, e) })
	e.db = testenv.Connect(t, e.dsn)
	px := tcpproxy.Start(t, brokers[0])
	cfg := e.config()
	cfg.SlotStatsInterval = 100 * time.Millisecond
	cfg.Kafka.RequestTimeout = 3 * time.Second
	cfg.Kafka.Dial = px.Dial
	r := startCapture(t, cfg)
	r.waitStreaming(t)
	srv := httptest.NewServer(r.c.Handler())
	defer srv.Close()
	maddr := srv.Listener.Addr().String()
	bg := context.Background()
	w := newWriter()
	keys := keysN(30)
	writeOrders(t, bg, e.dsn, w, keys, 200, 3, 1)
	waitDrained(t, e, 200, time.Minute)
	waitFor(t, "the WAL budget metrics", 30*time.Second, func() (bool, error) {
		l, _ := metricValue(t, maddr, "orderflow_capture_slot_wal_keep_limit_bytes")
		safe, _ := metricValue(t, maddr, "orderflow_capture_slot_safe_wal_bytes")
		reserved, _ := metricValue(t, maddr, `orderflow_capture_slot_wal_status{status="reserved"}`)
		return l == limit && safe > 0 && reserved == 1, nil
	})

	px.Cut()
	_, err := e.db.Exec(bg, `CREATE TABLE filler (x text)`)
	mustOK(t, err)
	var sawUnsafe bool
	for i := 0; ; i++ {
		writeOrders(t, bg, e.dsn, w, keys, 20, 3, 10+i)
		_, err := e.db.Exec(bg, `INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 1000)`)
		mustOK(t, err)
		time.Sleep(3 * cfg.SlotStatsInterval)
		if safe, _ := metricValue(t, maddr, "orderflow_capture_slot_safe_wal_bytes"); safe < limit/2 {
			sawUnsafe = true
		}
		_, err = e.db.Exec(bg, `CHECKPOINT`)
		mustOK(t, err)
		var status string
		mustOK(t, e.db.QueryRow(bg, `SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1`, e.slot).Scan(&status))
		if status == "lost" {
			t.Logf("slot invalidated after %d rounds of 1 MB", i+1)
			break
		}
		if i == 200 {
			t.Fatalf("slot still %s after 200 MB of WAL", status)
		}
	}
	waitFor(t, "wal_status lost on /metrics", 30*time.Second, func() (bool, error) {
		lost, _ := metricValue(t, maddr, `orderflow_capture_slot_wal_status{status="lost"}`)
		return lost == 1, nil
	})
	if !sawUnsafe {
		t.Errorf("orderflow_capture_slot_safe_wal_bytes never fell below half the limit before the slot was lost")
	}
	writeOrders(t, bg, e.dsn, w, keys, 100, 3, 2)
	px.Restore()
	r.waitStreaming(t)
	writeOrders(t, bg, e.dsn, w, keys, 100, 3, 3)
	waitDrained(t, e, int64(len(w.committed)), 2*time.Minute)
	checkExactlyOnce(t, e, readTopic(t, e.brokers, e.topic()), w.committed)
	if n, _ := metricValue(t, maddr, `orderflow_capture_slot_rebuilds_total{outcome="complete"}`); n != 1 {
		t.Errorf("complete rebuilds = %v, want 1", n)
	}
}

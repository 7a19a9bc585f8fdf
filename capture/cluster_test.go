package capture_test

import (
	"context"
	"math"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"orderflow/internal/testenv"
)

// TestBrokerKilledUnderLoad runs capture against a private three-node KRaft cluster with
// replication factor 3 and min.insync.replicas 2, kills -9 the broker that leads the most
// partitions while two writers commit, and starts it again later. Every partition takes new
// records again after the leader change, and in the end every outbox row is on the topic
// exactly once, each key in commit order.
func TestBrokerKilledUnderLoad(t *testing.T) {
	t.Parallel()
	kc := testenv.StartKafka(t, testenv.KafkaOptions{Nodes: 3})
	dsn := testenv.NewDatabase(t)
	e := &env{
		dsn: dsn, brokers: kc.Brokers(),
		slot: testenv.UniqueName("ofslot"), publication: testenv.UniqueName("ofpub"), prefix: testenv.UniqueName("ofcap"),
	}
	t.Cleanup(func() { dropSlot(t, e) })
	e.db = testenv.Connect(t, dsn)
	cfg := e.config()
	cfg.Kafka.ReplicationFactor, cfg.Kafka.MinInsyncReplicas = 3, 2
	r := startCapture(t, cfg)
	r.waitStreaming(t)
	srv := httptest.NewServer(r.c.Handler())
	defer srv.Close()

	ctx := context.Background()
	client := &kafka.Client{Addr: kafka.TCP(kc.Brokers()...), Timeout: 10 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{e.topic()}})
	mustOK(t, err)
	for _, p := range md.Topics[0].Partitions {
		if len(p.Replicas) != 3 {
			t.Fatalf("partition %d has %d replicas, want 3", p.ID, len(p.Replicas))
		}
	}

	w := newWriter()
	wctx, stopWriting := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		keys := keysN(40)
		go func() {
			defer wg.Done()
			writePaced(t, wctx, e.dsn, w, keys, math.MaxInt, 5*time.Millisecond)
		}()
	}
	time.Sleep(2 * time.Second)

	leaders, err := kc.Leaders(ctx, e.topic())
	mustOK(t, err)
	led := map[int]int{}
	victim := 0
	for _, node := range leaders {
		led[node]++
		if victim == 0 || led[node] > led[victim] {
			victim = node
		}
	}
	var atKill string
	mustOK(t, e.db.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&atKill))
	kc.Kill(victim)
	killed := time.Now()
	t.Logf("killed node %d, leader of %d of %d partitions", victim, led[victim], len(leaders))
	// Confirmed past the kill: everything committed before it is acknowledged by the two
	// brokers left, on every partition, including those the dead one led.
	waitFor(t, "capture to confirm what was committed before the kill", 2*time.Minute, func() (bool, error) {
		var ok bool
		err := e.db.QueryRow(ctx, `SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_replication_slots WHERE slot_name = $2`, atKill, e.slot).Scan(&ok)
		return ok, err
	})
	t.Logf("capture confirmed everything committed before the kill %s after it", time.Since(killed).Round(100*time.Millisecond))
	time.Sleep(2 * time.Second)
	kc.Start(victim)
	kc.WaitNode(victim, 2*time.Minute)
	t.Logf("node %d back %s after the kill", victim, time.Since(killed).Round(100*time.Millisecond))
	time.Sleep(2 * time.Second)
	stopWriting()
	wg.Wait()

	waitDrained(t, e, int64(len(w.committed)), 2*time.Minute)
	checkExactlyOnce(t, e, readTopic(t, e.brokers, e.topic()), w.committed)
	errs, _ := metricValue(t, srv.Listener.Addr().String(), "orderflow_capture_produce_errors_total")
	t.Logf("%d rows written; %v failed produce requests", len(w.committed), errs)
}

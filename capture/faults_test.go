package capture_test

import (
	"context"
	"math/rand/v2"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"orderflow/internal/tcpproxy"
)

// TestKillNineWhileWriting kills the capture process with SIGKILL at ten random moments while
// 20,000 orders are written by two writers (disjoint keys), restarting it each time; afterwards
// every committed row is on the topic exactly once and each key's events are in commit order.
func TestKillNineWhileWriting(t *testing.T) {
	t.Parallel()
	const orders, kills = 20_000, 10
	e := newEnv(t)
	p := startProc(t, e)
	p.waitReady(t)

	w := newWriter()
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		keys := keysN(50)
		go func() {
			defer wg.Done()
			writePaced(t, context.Background(), e.dsn, w, keys, orders/2, 0)
		}()
	}
	writing := make(chan struct{})
	go func() { wg.Wait(); close(writing) }()

	killedWhileWriting := 0
	for i := 0; i < kills; i++ {
		time.Sleep(time.Duration(100+rand.IntN(700)) * time.Millisecond)
		select {
		case <-writing:
		default:
			killedWhileWriting++
		}
		p.kill()
		p = startProc(t, e)
		p.waitReady(t)
	}
	<-writing
	waitDrained(t, e, int64(len(w.committed)), 2*time.Minute)

	// SIGTERM: stop reading, wait for the acks, final status, exit 0.
	mustOK(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatal("capture did not exit within 60 s of SIGTERM")
	}
	if p.err != nil {
		t.Errorf("capture exited with %v after SIGTERM, want status 0", p.err)
	}
	t.Logf("%d orders written; %d of %d kills happened while writing", len(w.committed), killedWhileWriting, kills)
	checkExactlyOnce(t, e, readTopic(t, e.brokers, e.topic()), w.committed)
}

// writePaced writes transactions of 1-5 rows over keys, pausing between them, until ctx is
// cancelled or max rows were written.
func writePaced(t *testing.T, ctx context.Context, dsn string, w *writer, keys []string, max int, pause time.Duration) {
	db, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Errorf("writer connect: %v", err)
		return
	}
	defer db.Close(context.Background())
	written := 0
	for i := 0; written < max && ctx.Err() == nil; i++ {
		n := min(1+i%5, max-written)
		batch := make([]string, n)
		for j := range batch {
			batch[j] = keys[rand.IntN(len(keys))]
		}
		// Background, not ctx: a commit cut off half-way would leave the test unsure
		// whether the row exists.
		if err := w.insertTx(context.Background(), db, batch); err != nil {
			t.Errorf("writing outbox: %v", err)
			return
		}
		written += n
		if pause > 0 && !sleepCtx(ctx, pause) {
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// TestStandbyTakesOver runs two capture processes on one slot: the second waits as a standby
// and takes over when the first is killed, without losing or duplicating anything.
func TestStandbyTakesOver(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := startProc(t, e)
	a.waitReady(t)
	b := startProc(t, e)
	waitFor(t, "standby to answer /healthz", 30*time.Second, func() (bool, error) {
		resp, err := httpGet("http://" + b.addr + "/healthz")
		return err == nil && resp == 200, nil
	})
	if b.ready() {
		t.Fatalf("standby reports ready while the first capture holds the slot")
	}

	w := newWriter()
	ctx, stopWriting := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		writePaced(t, ctx, e.dsn, w, keysN(30), 3000, 2*time.Millisecond)
	}()
	time.Sleep(time.Second) // let some events flow through the first capture
	a.kill()
	killed := time.Now()
	b.waitReady(t)
	t.Logf("standby took over %s after the kill", time.Since(killed).Round(10*time.Millisecond))
	time.Sleep(500 * time.Millisecond) // and some through the second
	stopWriting()
	wg.Wait()
	waitDrained(t, e, int64(len(w.committed)), 2*time.Minute)
	checkExactlyOnce(t, e, readTopic(t, e.brokers, e.topic()), w.committed)
}

// TestWalsenderTerminated kills the server side of the replication connection several times
// mid-stream (what a PostgreSQL restart does to capture, without restarting the cluster other
// tests share): capture reconnects with backoff and resumes.
func TestWalsenderTerminated(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	r := startCapture(t, cfg)
	r.waitStreaming(t)
	w := newWriter()
	ctx, stopWriting := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		writePaced(t, ctx, e.dsn, w, keysN(30), 3000, 2*time.Millisecond)
	}()
	for i := 0; i < 4; i++ {
		time.Sleep(time.Duration(200+rand.IntN(400)) * time.Millisecond)
		_, err := e.db.Exec(context.Background(),
			`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`, e.slot)
		mustOK(t, err)
		waitFor(t, "capture to reconnect", 60*time.Second, func() (bool, error) {
			return r.c.Streaming(), nil
		})
	}
	stopWriting()
	wg.Wait()
	waitDrained(t, e, int64(len(w.committed)), 2*time.Minute)
	checkExactlyOnce(t, e, readTopic(t, e.brokers, e.topic()), w.committed)
	srv := httptest.NewServer(r.c.Handler())
	defer srv.Close()
	if v, _ := metricValue(t, srv.Listener.Addr().String(), "orderflow_capture_reconnects_total"); v < 1 {
		t.Errorf("reconnects = %v, want at least 1", v)
	}
}

// TestKafkaUnreachable cuts capture off from Kafka mid-stream (through a proxy in front of the
// shared broker): capture keeps retrying, confirms nothing it could not deliver, shows the lag
// growing, and delivers everything exactly once when Kafka is back.
func TestKafkaUnreachable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	px := tcpproxy.Start(t, e.brokers[0])
	cfg := e.config()
	cfg.SlotStatsInterval = 200 * time.Millisecond
	cfg.Kafka.RequestTimeout = 3 * time.Second
	cfg.Kafka.Dial = px.Dial
	r := startCapture(t, cfg)
	r.waitStreaming(t)
	srv := httptest.NewServer(r.c.Handler())
	defer srv.Close()
	maddr := srv.Listener.Addr().String()

	ctx := context.Background()
	before := newWriter()
	writeOrders(t, ctx, e.dsn, before, keysN(20), 300, 5, 1)
	waitDrained(t, e, 300, time.Minute)

	px.Cut()
	during := newWriter()
	writeOrders(t, ctx, e.dsn, during, keysN(20), 300, 5, 2)
	waitFor(t, "a produce error and a growing lag", time.Minute, func() (bool, error) {
		errs, _ := metricValue(t, maddr, "orderflow_capture_produce_errors_total")
		reconnects, _ := metricValue(t, maddr, "orderflow_capture_reconnects_total")
		lag, _ := metricValue(t, maddr, "orderflow_capture_slot_lag_bytes")
		return (errs > 0 || reconnects > 0) && lag > 0, nil
	})
	var confirmedDuringOutage pglogrepl.LSN
	for i := 0; i < 10; i++ { // sample the slot for a while to catch any confirmation
		var s string
		mustOK(t, e.db.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, e.slot).Scan(&s))
		l, err := pglogrepl.ParseLSN(s)
		mustOK(t, err)
		confirmedDuringOutage = max(confirmedDuringOutage, l)
		time.Sleep(100 * time.Millisecond)
	}
	px.Restore()
	waitDrained(t, e, 600, 2*time.Minute)

	recs := readTopic(t, e.brokers, e.topic())
	all := append(append([]order{}, before.committed...), during.committed...)
	checkExactlyOnce(t, e, recs, all)
	duringIDs := map[string]bool{}
	for _, o := range during.committed {
		duringIDs[o.id] = true
	}
	var firstOutageCommit pglogrepl.LSN
	for _, rec := range recs {
		if duringIDs[rec.headers["ce_id"]] {
			if l := position(t, rec).LSN; firstOutageCommit == 0 || l < firstOutageCommit {
				firstOutageCommit = l
			}
		}
	}
	if confirmedDuringOutage > firstOutageCommit {
		t.Errorf("slot confirmed %s during the outage, past the first undelivered commit %s", confirmedDuringOutage, firstOutageCommit)
	}
}

func httpGet(url string) (int, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Command capture-bench measures orderflow capture against pg_recvlogical on the same machine,
// in the same run: two slots created together, one backlog of single-event transactions,
// drained once by `orderflow capture` (acks=all, LSN confirmed) and once by pg_recvlogical
// (pgoutput to /dev/null). It also measures decode-only mode (no Kafka), peak RSS for a
// backlog and for one big transaction, and commit-to-Kafka-ack latency at a steady rate.
//
// It prints "RESULT key value" lines on stdout for bench/run.sh and a table on stderr.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	ofsql "orderflow/sql"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "capture-bench:", err)
		os.Exit(1)
	}
}

type bench struct {
	bin, adminURL, dsn, dbName, brokers, prefix string
	log                                         io.Writer
	results                                     [][2]string
}

func (b *bench) result(key string, v float64, format string) {
	b.results = append(b.results, [2]string{key, fmt.Sprintf(format, v)})
}

func (b *bench) say(format string, args ...any) { fmt.Fprintf(b.log, format+"\n", args...) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("capture-bench", flag.ContinueOnError)
	backlog := fs.Int("backlog", 200_000, "single-event transactions in the backlog that both readers drain (0 to skip)")
	bigTxn := fs.Int("big-txn", 1_000_000, "rows in the one-transaction RSS case (0 to skip)")
	small := fs.Int("backlog-100k", 100_000, "a backlog drained by capture alone, for RSS at 100,000 (0 to skip)")
	big := fs.Int("backlog-2m", 2_000_000, "a larger backlog drained by capture alone: RSS must stay flat (0 to skip)")
	rate := fs.Int("rate", 2000, "events/s for the latency run")
	latencyFor := fs.Duration("latency-duration", 20*time.Second, "length of the latency run (0 to skip)")
	bin := fs.String("bin", "bin/orderflow", "orderflow binary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b := &bench{
		bin: *bin, adminURL: os.Getenv("DATABASE_URL"), brokers: os.Getenv("KAFKA_BROKERS"), log: stderr,
		prefix: "ofbench_" + randHex(4),
	}
	if b.adminURL == "" || b.brokers == "" {
		return errors.New("DATABASE_URL and KAFKA_BROKERS must be set (eval \"$(deploy/local/stack.sh env)\")")
	}
	if err := b.createDatabase(ctx); err != nil {
		return err
	}
	defer b.cleanup()

	b.say("capture bench: %s, %d cores, load average %s; backlog %d single-event transactions", cpuModel(), numCPU(), loadavg(), *backlog)
	defer func() {
		b.say("  load average at the end: %s (other work on the machine skews every number)", loadavg())
	}()
	if *backlog > 0 {
		if err := b.backlogRun(ctx, *backlog, "backlog", true); err != nil {
			return err
		}
	}
	if *small > 0 {
		if err := b.backlogRun(ctx, *small, "backlog_small", false); err != nil {
			return err
		}
	}
	if *big > 0 {
		if err := b.backlogRun(ctx, *big, "backlog_2m", false); err != nil {
			return err
		}
	}
	if *bigTxn > 0 {
		if err := b.bigTxnRun(ctx, *bigTxn); err != nil {
			return err
		}
	}
	if *latencyFor > 0 {
		if err := b.latencyRun(ctx, *rate, *latencyFor); err != nil {
			return err
		}
	}
	for _, r := range b.results {
		fmt.Fprintf(stdout, "RESULT %s %s\n", r[0], r[1])
	}
	return nil
}

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
		_, _ = admin.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, b.dbName)
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
// speed is not what is measured).
func (b *bench) writeBacklog(ctx context.Context, n int) error {
	_, err := b.exec(ctx, `
		DO $$
		BEGIN
			SET LOCAL synchronous_commit = off;
			FOR i IN 1..`+strconv.Itoa(n)+` LOOP
				INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, schema_version, payload)
				VALUES (gen_random_uuid(), 'order', gen_random_uuid()::text, 'order.created', 1,
					jsonb_build_object('customer_id', 'c-' || (i % 1000), 'currency', 'EUR', 'total_cents', i,
						'items', jsonb_build_array(jsonb_build_object('sku', 'SKU-' || (i % 500), 'quantity', 1, 'unit_price_cents', 1999))));
				COMMIT;
				SET LOCAL synchronous_commit = off;
			END LOOP;
		END $$`)
	return err
}

// proc is a process under measurement.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	peak int64 // VmHWM in kB, sampled
}

func start(name string, args []string, env []string, logPath string) (*proc, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	if logPath != "" {
		f, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %v", p.cmd.Path, p.err)
	default:
	}
	if kb := readHWM(p.cmd.Process.Pid); kb > p.peak {
		p.peak = kb
	}
	return nil
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func readHWM(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), "VmHWM:") {
			n, _ := strconv.ParseInt(strings.Fields(s.Text())[1], 10, 64)
			return n
		}
	}
	return 0
}

func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer ln.Close()
	return ln.Addr().String()
}

// drainWithCapture starts orderflow capture on slot and returns the seconds until the slot
// confirmed target, the peak RSS in MB, and the capture's metrics address.
func (b *bench) drainWithCapture(ctx context.Context, slot, target string, discard bool, keep bool) (secs, rssMB float64, p *proc, addr string, err error) {
	addr = freePort()
	args := []string{"capture", "-slot", slot, "-publication", "ofbench", "-topic-prefix", b.prefix + "_" + slot,
		"-http-addr", addr, "-retention", "0"}
	if discard {
		args = append(args, "-discard")
	}
	if prof := os.Getenv("CAPTURE_BENCH_CPUPROFILE_DIR"); prof != "" {
		args = append(args, "-cpuprofile", filepath.Join(prof, slot+".pprof"))
	}
	logPath := filepath.Join(os.TempDir(), "ofbench-"+slot+".log")
	t0 := time.Now()
	p, err = start(b.bin, args, []string{"DATABASE_URL=" + b.dsn, "KAFKA_BROKERS=" + b.brokers, "LOG_LEVEL=info"}, logPath)
	if err != nil {
		return 0, 0, nil, "", err
	}
	t1, err := b.waitConfirmed(ctx, slot, target, p.alive)
	if err != nil {
		p.stop()
		return 0, 0, nil, "", fmt.Errorf("%w (log %s)", err, logPath)
	}
	_ = p.alive()
	if !keep {
		p.stop()
	}
	return t1.Sub(t0).Seconds(), float64(p.peak) / 1024, p, addr, nil
}

// drainWithRecvlogical runs pg_recvlogical until it reaches target (--endpos) and exits.
func (b *bench) drainWithRecvlogical(ctx context.Context, slot, target string) (float64, error) {
	logPath := filepath.Join(os.TempDir(), "ofbench-"+slot+".log")
	t0 := time.Now()
	p, err := start("pg_recvlogical", []string{"-d", b.dsn, "--slot", slot, "--start", "--endpos", target,
		"-o", "proto_version=1", "-o", "publication_names=ofbench", "-f", "/dev/null", "--no-loop", "-s", "1", "-F", "1"}, nil, logPath)
	if err != nil {
		return 0, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		p.stop()
		return 0, ctx.Err()
	}
	secs := time.Since(t0).Seconds()
	if p.err != nil {
		return 0, fmt.Errorf("pg_recvlogical: %v (log %s)", p.err, logPath)
	}
	return secs, nil
}

func (b *bench) backlogRun(ctx context.Context, n int, name string, compare bool) error {
	slots := []string{"cap_" + name}
	if compare {
		slots = append(slots, "recv_"+name, "discard_"+name)
	}
	if err := b.createSlots(ctx, slots...); err != nil {
		return err
	}
	t0 := time.Now()
	if err := b.writeBacklog(ctx, n); err != nil {
		return err
	}
	target, err := b.lsn(ctx)
	if err != nil {
		return err
	}
	b.say("  wrote %d transactions in %.1fs; draining to %s", n, time.Since(t0).Seconds(), target)

	capSecs, capRSS, cp, caddr, err := b.drainWithCapture(ctx, slots[0], target, false, true)
	if err != nil {
		return err
	}
	if _, rc, err := histogram(caddr, "orderflow_capture_produce_request_seconds"); err == nil {
		b.say("  (%d events in %.0f produce requests; streaming began %.2fs after start)", n, rc, startupSecs(caddr))
	}
	cp.stop()
	capRate := float64(n) / capSecs
	b.say("  %-44s %8.0f events/s  %6.2fs  peak RSS %5.1f MB", "orderflow capture (Kafka acks=all, confirmed)", capRate, capSecs, capRSS)
	if !compare {
		b.result("capture_events_per_s_"+sizeKey(n), capRate, "%.0f")
		b.result("capture_rss_mb_"+sizeKey(n), capRSS, "%.1f")
		return nil
	}
	recvSecs, err := b.drainWithRecvlogical(ctx, slots[1], target)
	if err != nil {
		return err
	}
	recvRate := float64(n) / recvSecs
	b.say("  %-44s %8.0f events/s  %6.2fs", "pg_recvlogical (pgoutput to /dev/null)", recvRate, recvSecs)
	dSecs, dRSS, _, _, err := b.drainWithCapture(ctx, slots[2], target, true, false)
	if err != nil {
		return err
	}
	dRate := float64(n) / dSecs
	b.say("  %-44s %8.0f events/s  %6.2fs  peak RSS %5.1f MB", "orderflow capture -discard (decode only)", dRate, dSecs, dRSS)
	b.say("  ratio capture / pg_recvlogical: %.2f   (goal >= 1.0); decode-only / pg_recvlogical: %.2f", capRate/recvRate, dRate/recvRate)
	b.result("capture_events_per_s", capRate, "%.0f")
	b.result("recvlogical_events_per_s", recvRate, "%.0f")
	b.result("capture_discard_events_per_s", dRate, "%.0f")
	b.result("capture_vs_recvlogical_ratio", capRate/recvRate, "%.2f")
	b.result("capture_rss_mb_"+sizeKey(n), capRSS, "%.1f")
	if n != 100_000 {
		b.result("capture_backlog_events", float64(n), "%.0f")
	}
	return nil
}

func (b *bench) bigTxnRun(ctx context.Context, n int) error {
	slot := "cap_bigtxn"
	if err := b.createSlots(ctx, slot); err != nil {
		return err
	}
	t0 := time.Now()
	if _, err := b.exec(ctx, `INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, schema_version, payload)
		SELECT gen_random_uuid(), 'order', 'key-' || (i % 10000), 'order.created', 1,
		       jsonb_build_object('seq', i, 'currency', 'EUR', 'total_cents', i)
		FROM generate_series(1, $1) AS i`, n); err != nil {
		return err
	}
	target, err := b.lsn(ctx)
	if err != nil {
		return err
	}
	b.say("  wrote one transaction of %d rows in %.1fs", n, time.Since(t0).Seconds())
	secs, rss, _, _, err := b.drainWithCapture(ctx, slot, target, false, false)
	if err != nil {
		return err
	}
	b.say("  %-44s %8.0f events/s  %6.2fs  peak RSS %5.1f MB (goal <= 150)", fmt.Sprintf("capture, one %d-row transaction", n), float64(n)/secs, secs, rss)
	b.result("capture_rss_mb_big_txn", rss, "%.1f")
	b.result("capture_big_txn_events_per_s", float64(n)/secs, "%.0f")
	return nil
}

// latencyRun writes single-event transactions at a steady rate while capture runs and reads
// capture's commit-to-ack histogram afterwards.
func (b *bench) latencyRun(ctx context.Context, rate int, d time.Duration) error {
	slot := "cap_latency"
	if err := b.createSlots(ctx, slot); err != nil {
		return err
	}
	target, err := b.lsn(ctx)
	if err != nil {
		return err
	}
	_, _, p, addr, err := b.drainWithCapture(ctx, slot, target, false, true)
	if err != nil {
		return err
	}
	defer p.stop()
	// Four writers, each committing one row every 4/rate seconds on a fixed schedule.
	const writers = 4
	interval := time.Duration(float64(time.Second) * writers / float64(rate))
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	end := time.Now().Add(d)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgx.Connect(ctx, b.dsn)
			if err != nil {
				errc <- err
				return
			}
			defer c.Close(ctx)
			next := time.Now()
			for i := 0; time.Now().Before(end); i++ {
				if _, err := c.Exec(ctx, `INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, schema_version, payload)
					VALUES (gen_random_uuid(), 'order', gen_random_uuid()::text, 'order.created', 1, '{"bench": true}')`); err != nil {
					errc <- err
					return
				}
				next = next.Add(interval)
				time.Sleep(time.Until(next))
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	target, err = b.lsn(ctx)
	if err != nil {
		return err
	}
	if _, err := b.waitConfirmed(ctx, slot, target, p.alive); err != nil {
		return err
	}
	buckets, count, err := histogram(addr, "orderflow_capture_commit_to_ack_seconds")
	if err != nil {
		return err
	}
	p50, p99 := quantile(buckets, count, 0.50)*1000, quantile(buckets, count, 0.99)*1000
	if rb, rc, err := histogram(addr, "orderflow_capture_commit_to_receive_seconds"); err == nil {
		b.say("  of which commit -> Commit message received: p50 %.1f ms, p99 %.1f ms", quantile(rb, rc, 0.5)*1000, quantile(rb, rc, 0.99)*1000)
	}
	if rb, rc, err := histogram(addr, "orderflow_capture_produce_request_seconds"); err == nil {
		b.say("  produce requests: %.0f, p50 %.1f ms, p99 %.1f ms", rc, quantile(rb, rc, 0.5)*1000, quantile(rb, rc, 0.99)*1000)
	}
	b.say("  commit -> Kafka ack at %d events/s for %s (%0.f events): p50 %.1f ms, p99 %.1f ms (goal p99 <= 25 ms)", rate, d, count, p50, p99)
	b.result("commit_to_kafka_p50_ms", p50, "%.1f")
	b.result("commit_to_kafka_p99_ms", p99, "%.1f")
	return nil
}

// startupSecs is how long capture took from process start to streaming, from its metrics.
func startupSecs(addr string) float64 {
	start, _ := gauge(addr, "process_start_time_seconds")
	streaming, _ := gauge(addr, "orderflow_capture_streaming_since_seconds")
	if start == 0 || streaming == 0 {
		return 0
	}
	return streaming - start
}

func gauge(addr, name string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		if f := strings.Fields(s.Text()); len(f) == 2 && f[0] == name {
			return strconv.ParseFloat(f[1], 64)
		}
	}
	return 0, fmt.Errorf("no metric %s", name)
}

type bucket struct{ le, n float64 }

func histogram(addr, name string) ([]bucket, float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	var bs []bucket
	var count float64
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		line := s.Text()
		switch {
		case strings.HasPrefix(line, name+"_bucket{le=\""):
			rest := strings.TrimPrefix(line, name+"_bucket{le=\"")
			i := strings.Index(rest, "\"")
			le, err := strconv.ParseFloat(rest[:i], 64)
			if err != nil {
				le = math.Inf(1)
			}
			f := strings.Fields(rest)
			n, _ := strconv.ParseFloat(f[len(f)-1], 64)
			bs = append(bs, bucket{le, n})
		case strings.HasPrefix(line, name+"_count "):
			count, _ = strconv.ParseFloat(strings.Fields(line)[1], 64)
		}
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if count == 0 {
		return nil, 0, errors.New("no latency observations")
	}
	return bs, count, nil
}

// quantile interpolates linearly inside the bucket, as Prometheus' histogram_quantile does.
func quantile(bs []bucket, count, q float64) float64 {
	rank := q * count
	prevLE, prevN := 0.0, 0.0
	for _, b := range bs {
		if b.n >= rank {
			if math.IsInf(b.le, 1) {
				return prevLE
			}
			return prevLE + (b.le-prevLE)*(rank-prevN)/(b.n-prevN)
		}
		prevLE, prevN = b.le, b.n
	}
	return prevLE
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown cpu"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") {
			return strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
		}
	}
	return "unknown cpu"
}

func numCPU() int {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

// sizeKey names a backlog size in result keys: 100000 -> 100k, 2000000 -> 2m.
func sizeKey(n int) string {
	if n >= 1_000_000 && n%1_000_000 == 0 {
		return fmt.Sprintf("%dm", n/1_000_000)
	}
	return fmt.Sprintf("%dk", n/1000)
}

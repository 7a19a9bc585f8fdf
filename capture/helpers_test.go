package capture_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"orderflow"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"orderflow/capture"
	"orderflow/internal/cetest"
	"orderflow/internal/testenv"
)

// env is one test's private world: a database, a slot, a publication and a topic prefix.
type env struct {
	dsn, slot, publication, prefix string
	brokers                        []string
	db                             *pgx.Conn
}

func (e *env) topic() string { return e.prefix + ".order" }

func newEnv(t *testing.T) *env {
	t.Helper()
	brokers := testenv.KafkaBrokers(t)
	dsn := testenv.NewDatabase(t)
	e := &env{
		dsn: dsn, brokers: brokers,
		slot:        testenv.UniqueName("ofslot"),
		publication: testenv.UniqueName("ofpub"),
		prefix:      testenv.UniqueName("ofcap"),
	}
	// Registered after NewDatabase, so it runs before the database is dropped.
	t.Cleanup(func() { dropSlot(t, e); deleteTopics(t, e) })
	e.db = testenv.Connect(t, dsn)
	return e
}

func dropSlot(t *testing.T, e *env) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, e.dsn)
	if err != nil {
		t.Logf("dropping slot: %v", err)
		return
	}
	defer c.Close(ctx)
	for ctx.Err() == nil {
		_, err = c.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, e.slot)
		if err == nil {
			return
		}
		// Still active: the walsender of a killed capture takes a moment to notice.
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("dropping slot %s: %v", e.slot, err)
}

func deleteTopics(t *testing.T, e *env) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := &kafka.Client{Addr: kafka.TCP(e.brokers...)}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		t.Logf("listing topics: %v", err)
		return
	}
	var names []string
	for _, tp := range md.Topics {
		if strings.HasPrefix(tp.Name, e.prefix+".") {
			names = append(names, tp.Name)
		}
	}
	if len(names) > 0 {
		if _, err := c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: names}); err != nil {
			t.Logf("deleting topics %v: %v", names, err)
		}
	}
}

func (e *env) config() capture.Config {
	return capture.Config{
		DatabaseURL: e.dsn, Slot: e.slot, Publication: e.publication, TopicPrefix: e.prefix,
		Kafka:  capture.KafkaConfig{Brokers: e.brokers, Partitions: 6, ReplicationFactor: 1},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// running is a capture started in-process.
type running struct {
	c *capture.Capture
	*testenv.Running
}

func startCapture(t *testing.T, cfg capture.Config) *running {
	t.Helper()
	c, err := capture.New(cfg)
	if err != nil {
		t.Fatalf("capture.New: %v", err)
	}
	return &running{c: c, Running: testenv.Start(t, "capture", c.Run)}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return
		}
		if err != nil {
			lastErr = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// createSlot starts capture once on the empty outbox and stops it: the slot then exists, so
// rows committed next are a backlog the slot holds (a slot created after them would start
// past them).
func createSlot(t *testing.T, e *env) {
	t.Helper()
	r := startCapture(t, e.config())
	r.waitStreaming(t)
	mustOK(t, r.Stop(t))
}

func (r *running) waitStreaming(t *testing.T) {
	t.Helper()
	waitFor(t, "capture to stream", 60*time.Second, func() (bool, error) {
		select {
		case <-r.Done():
			t.Fatalf("capture stopped: %v", r.Err())
		default:
		}
		return r.c.Streaming(), nil
	})
}

// order is one outbox row a test wrote, with a version per aggregate so that per-key order
// can be checked on the topic.
type order struct {
	id, key string
	version int
}

// writer inserts outbox rows in transactions of random size and remembers what it committed.
type writer struct {
	mu        sync.Mutex
	committed []order
	versions  map[string]int
}

func newWriter() *writer { return &writer{versions: map[string]int{}} }

// insertTx inserts one transaction of outbox rows for the given keys.
func (w *writer) insertTx(ctx context.Context, db *pgx.Conn, keys []string) error {
	w.mu.Lock()
	rows := make([]order, len(keys))
	for i, k := range keys {
		w.versions[k]++
		rows[i] = order{id: uuid.NewString(), key: k, version: w.versions[k]}
	}
	w.mu.Unlock()
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	for _, o := range rows {
		if err := insertOutbox(ctx, tx, o); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		// The commit may or may not have happened; this helper only runs against a
		// healthy database, so treat it as fatal for the test.
		return err
	}
	w.mu.Lock()
	w.committed = append(w.committed, rows...)
	w.mu.Unlock()
	return nil
}

// insertOutbox writes o as the API would, a real order at o's version, so that the records
// capture makes of it validate against their schema: version 1 is order.created, later ones
// order.fulfilled (the load tests need any number of versions per key, and the schemas bound
// only each type's version).
func insertOutbox(ctx context.Context, tx pgx.Tx, o order) error {
	typ, status := orderflow.EventOrderCreated, orderflow.StatusPending
	if o.version > 1 {
		typ, status = orderflow.EventOrderFulfilled, orderflow.StatusFulfilled
	}
	payload, err := json.Marshal(realOrder(o.key, o.version, status))
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, schema_version, payload)
		VALUES ($1, 'order', $2, $3, $4, $5)`, o.id, o.key, typ, orderflow.OrderSchemaVersion, payload)
	return err
}

// realOrder is an order as the outbox stores it, with text that needs escaping.
func realOrder(id string, version int, status orderflow.Status) orderflow.Order {
	created := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)
	o := orderflow.Order{
		ID: id, CustomerID: "cust-\"ü\"", Currency: "EUR", Status: status, Version: version,
		Items:      []orderflow.Item{{SKU: "MUG", Quantity: 2, UnitPriceCents: 1450}, {SKU: "TEA", Quantity: 1, UnitPriceCents: 0}},
		TotalCents: 2900, CreatedAt: created, UpdatedAt: created.Add(time.Duration(version) * time.Minute),
	}
	if status == orderflow.StatusCancelled {
		o.CancelReason = "line\nbreak \"quoted\" ü"
	}
	return o
}

// writeOrders writes n events in transactions of 1..maxTx rows over the given keys.
func writeOrders(t *testing.T, ctx context.Context, dsn string, w *writer, keys []string, n, maxTx int, seed int) {
	t.Helper()
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Errorf("writer connect: %v", err)
		return
	}
	defer db.Close(context.Background())
	written := 0
	for i := 0; written < n; i++ {
		size := 1 + (i*7+seed)%maxTx
		size = min(size, n-written)
		batch := make([]string, size)
		for j := range batch {
			batch[j] = keys[(i*31+j*17+seed)%len(keys)]
		}
		if err := w.insertTx(ctx, db, batch); err != nil {
			if ctx.Err() != nil {
				return
			}
			t.Errorf("writing outbox: %v", err)
			return
		}
		written += size
	}
}

func keysN(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = uuid.NewString()
	}
	return out
}

// record is a topic record as a test sees it.
type record struct {
	partition int
	offset    int64
	key       string
	value     []byte
	headers   map[string]string
	ce        cloudEvent
	event     *event.Event // as the CloudEvents SDK decoded it
}

type cloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            string          `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	DataSchema      string          `json:"dataschema"`
	SchemaVersion   int             `json:"schemaversion"`
	Data            json.RawMessage `json:"data"`
}

// readTopic reads every record of every partition of topic.
func readTopic(t *testing.T, brokers []string, topic string) []record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := &kafka.Client{Addr: kafka.TCP(brokers...)}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 || md.Topics[0].Error != nil {
		t.Fatalf("metadata of %s: %v %+v", topic, err, md)
	}
	var out []record
	for _, p := range md.Topics[0].Partitions {
		lo, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
			topic: {kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID)}}})
		if err != nil {
			t.Fatalf("list offsets: %v", err)
		}
		po := lo.Topics[topic][0]
		for off := po.FirstOffset; off < po.LastOffset; {
			resp, err := c.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: p.ID, Offset: off, MinBytes: 1, MaxBytes: 8 << 20, MaxWait: time.Second})
			if err != nil || resp.Error != nil {
				t.Fatalf("fetch %s[%d]@%d: %v %v", topic, p.ID, off, err, resp.Error)
			}
			for {
				r, err := resp.Records.ReadRecord()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("read record: %v", err)
				}
				if r.Offset < off {
					continue
				}
				rec := record{partition: p.ID, offset: r.Offset, headers: map[string]string{}}
				if r.Key != nil {
					b, _ := io.ReadAll(r.Key)
					rec.key = string(b)
				}
				rec.value, _ = io.ReadAll(r.Value)
				hs := make([]orderflow.Header, len(r.Headers))
				for i, h := range r.Headers {
					rec.headers[h.Key] = string(h.Value)
					hs[i] = orderflow.Header(h)
				}
				// Every record any capture test reads goes through a CloudEvents SDK's
				// Kafka binding, as a data engineer's reader would.
				ev, err := cetest.Decode(hs, rec.value)
				if err != nil {
					t.Fatalf("record %s[%d]@%d: the CloudEvents SDK refused it: %v", topic, p.ID, r.Offset, err)
				}
				rec.ce = cloudEvent{
					SpecVersion: ev.SpecVersion(), ID: ev.ID(), Source: ev.Source(), Type: ev.Type(), Subject: ev.Subject(),
					Time: rec.headers[orderflow.HeaderTime], DataContentType: ev.DataContentType(), DataSchema: ev.DataSchema(),
					Data: ev.Data(),
				}
				rec.ce.SchemaVersion, err = strconv.Atoi(fmt.Sprint(ev.Extensions()["schemaversion"]))
				if err != nil {
					t.Fatalf("record %s[%d]@%d: schemaversion: %v", topic, p.ID, r.Offset, err)
				}
				rec.event = ev
				out = append(out, rec)
				off = r.Offset + 1
			}
		}
	}
	return out
}

// topicCount is the number of records in topic (0 if it does not exist).
func topicCount(ctx context.Context, brokers []string, topic string) (int64, error) {
	c := &kafka.Client{Addr: kafka.TCP(brokers...)}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, err
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return 0, nil
	}
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	lo, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return 0, err
	}
	var n int64
	for _, po := range lo.Topics[topic] {
		if po.Error != nil {
			return 0, po.Error
		}
		n += po.LastOffset - po.FirstOffset
	}
	return n, nil
}

// waitDrained waits until the slot confirmed everything written so far and the topic holds
// want records.
func waitDrained(t *testing.T, e *env, want int64, timeout time.Duration) {
	t.Helper()
	var target string
	if err := e.db.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&target); err != nil {
		t.Fatal(err)
	}
	waitFor(t, fmt.Sprintf("slot %s to confirm %s and topic to hold %d records", e.slot, target, want), timeout, func() (bool, error) {
		var ok bool
		if err := e.db.QueryRow(context.Background(),
			`SELECT coalesce(confirmed_flush_lsn >= $2::pg_lsn, false) FROM pg_replication_slots WHERE slot_name = $1`,
			e.slot, target).Scan(&ok); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return false, err
		}
		if !ok {
			return false, nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n, err := topicCount(ctx, e.brokers, e.topic())
		return n >= want, err
	})
}

// checkExactlyOnce is the invariant every test ends with: the topic holds each committed
// outbox row once, and each key's events in the order they were committed.
func checkExactlyOnce(t *testing.T, e *env, recs []record, committed []order) {
	t.Helper()
	rows := testenv.Count(t, e.db, `SELECT count(*) FROM outbox`)
	seen := map[string]int{}
	for _, r := range recs {
		seen[r.headers["ce_id"]]++
	}
	dups := 0
	for id, n := range seen {
		if n > 1 {
			dups++
			if dups < 5 {
				t.Errorf("event %s is on the topic %d times", id, n)
			}
		}
	}
	missing := 0
	for _, o := range committed {
		if seen[o.id] == 0 {
			missing++
			if missing < 5 {
				t.Errorf("event %s (key %s version %d) is missing", o.id, o.key, o.version)
			}
		}
	}
	if len(recs) != len(seen) || int64(len(seen)) != rows || (committed != nil && len(committed) != len(recs)) {
		t.Errorf("records %d, distinct ce_id %d, outbox rows %d, committed %d (duplicates %d, missing %d)",
			len(recs), len(seen), rows, len(committed), dups, missing)
	}
	checkPerKeyOrder(t, recs)
}

// checkPerKeyOrder checks that within a partition each key's versions grow by one and that
// positions grow.
func checkPerKeyOrder(t *testing.T, recs []record) {
	t.Helper()
	type pk struct {
		p int
		k string
	}
	last := map[pk]int{}
	lastPos := map[int]capture.Position{}
	bad := 0
	for _, r := range recs {
		var data struct {
			Version int `json:"version"`
		}
		_ = json.Unmarshal(r.ce.Data, &data)
		k := pk{r.partition, r.key}
		if data.Version != 0 && data.Version != last[k]+1 {
			bad++
			if bad < 5 {
				t.Errorf("key %s: version %d follows %d on partition %d", r.key, data.Version, last[k], r.partition)
			}
		}
		last[k] = data.Version
		pos := position(t, r)
		if prev, ok := lastPos[r.partition]; ok && !pos.After(prev) {
			t.Errorf("partition %d: position %s after %s", r.partition, pos, prev)
		}
		lastPos[r.partition] = pos
	}
}

func position(t *testing.T, r record) capture.Position {
	t.Helper()
	lsn, err := pglogrepl.ParseLSN(r.headers["pg_lsn"])
	if err != nil {
		t.Fatalf("pg_lsn header %q: %v", r.headers["pg_lsn"], err)
	}
	seq, err := strconv.ParseUint(r.headers["pg_seq"], 10, 32)
	if err != nil {
		t.Fatalf("pg_seq header %q: %v", r.headers["pg_seq"], err)
	}
	return capture.Position{LSN: lsn, Seq: uint32(seq)}
}

// --- the real binary -------------------------------------------------------------------

// orderflowBin is the real binary, built once per test process.
func orderflowBin(t *testing.T) string {
	t.Helper()
	return testenv.Binary(t)
}

// proc is a capture running as its own process.
type proc struct {
	cmd  *exec.Cmd
	addr string
	log  *os.File
	done chan struct{}
	err  error
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startProc(t *testing.T, e *env, extra ...string) *proc {
	t.Helper()
	bin := orderflowBin(t)
	addr := freeAddr(t)
	logf, err := os.CreateTemp(t.TempDir(), "capture-*.log")
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"capture", "-slot", e.slot, "-publication", e.publication, "-topic-prefix", e.prefix,
		"-http-addr", addr, "-retention", "0"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+e.dsn, "KAFKA_BROKERS="+strings.Join(e.brokers, ","), "LOG_LEVEL=debug")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, addr: addr, log: logf, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("capture log (pid %d, tail):\n%s", cmd.Process.Pid, b)
		}
	})
	return p
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func (p *proc) ready() bool {
	code, err := httpGet("http://" + p.addr + "/readyz")
	return err == nil && code == http.StatusOK
}

func (p *proc) waitReady(t *testing.T) {
	t.Helper()
	waitFor(t, "capture process to be ready", 60*time.Second, func() (bool, error) {
		if p.exited() {
			t.Fatalf("capture exited: %v", p.err)
		}
		return p.ready(), nil
	})
}

func metricValue(t *testing.T, addr, name string) (float64, bool) {
	t.Helper()
	resp, err := httpClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

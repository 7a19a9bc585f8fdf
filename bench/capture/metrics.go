package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

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

// hist is one scrape of a cumulative Prometheus histogram.
type hist struct {
	buckets []bucket
	count   float64
}

func (h hist) q(q float64) float64 {
	if h.count == 0 {
		return 0
	}
	return quantile(h.buckets, h.count, q)
}

// maxBucket names the upper edge of the highest bucket that received an observation.
func (h hist) maxBucket() string {
	prev := 0.0
	top := "none"
	for _, b := range h.buckets {
		if b.n > prev {
			top = "<= " + strconv.FormatFloat(b.le*1000, 'f', -1, 64) + " ms"
			if math.IsInf(b.le, 1) {
				top = "+Inf"
			}
		}
		prev = b.n
	}
	return top
}

// histDiff is what a cumulative histogram observed between two scrapes.
func histDiff(now, before hist) hist {
	d := hist{count: now.count - before.count}
	for i, b := range now.buckets {
		n := b.n
		if i < len(before.buckets) && before.buckets[i].le == b.le {
			n -= before.buckets[i].n
		}
		d.buckets = append(d.buckets, bucket{b.le, n})
	}
	return d
}

// parseHistograms reads the named histograms from one scrape of a /metrics page.
func parseHistograms(addr string, names ...string) (map[string]hist, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := make(map[string]hist, len(names))
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		line := s.Text()
		for _, name := range names {
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
				h := out[name]
				h.buckets = append(h.buckets, bucket{le, n})
				out[name] = h
			case strings.HasPrefix(line, name+"_count "):
				h := out[name]
				h.count, _ = strconv.ParseFloat(strings.Fields(line)[1], 64)
				out[name] = h
			}
		}
	}
	for name, h := range out {
		sort.Slice(h.buckets, func(i, j int) bool { return h.buckets[i].le < h.buckets[j].le })
		out[name] = h
	}
	return out, s.Err()
}

// pgSnap is one reading of capture's latency histograms and of the server's WAL and
// checkpoint counters.
type pgSnap struct {
	at                             time.Time
	ack, recv, req                 hist
	walRecords, walFPI, walBytes   float64
	checkpoints, buffersCheckpoint float64
	// walSyncs and walSyncMs count the WAL flushes and their time (track_wal_io_timing).
	walSyncs, walSyncMs float64
	// sentBehind is how far the walsenders' sent position trails the flushed WAL: decoding
	// (or a capture that does not read) rather than the commit.
	sentBehind float64
}

func snapshot(ctx context.Context, conn *pgx.Conn, addr string) (pgSnap, error) {
	s := pgSnap{at: time.Now()}
	hs, err := parseHistograms(addr, "orderflow_capture_commit_to_ack_seconds", "orderflow_capture_commit_to_receive_seconds",
		"orderflow_capture_produce_request_seconds")
	if err != nil {
		return s, fmt.Errorf("reading capture's metrics: %w", err)
	}
	s.ack, s.recv, s.req = hs["orderflow_capture_commit_to_ack_seconds"], hs["orderflow_capture_commit_to_receive_seconds"],
		hs["orderflow_capture_produce_request_seconds"]
	err = conn.QueryRow(ctx, `SELECT w.wal_records, w.wal_fpi, w.wal_bytes, w.wal_sync, w.wal_sync_time,
			b.checkpoints_timed + b.checkpoints_req, b.buffers_checkpoint
		FROM pg_stat_wal w, pg_stat_bgwriter b`).Scan(&s.walRecords, &s.walFPI, &s.walBytes, &s.walSyncs, &s.walSyncMs,
		&s.checkpoints, &s.buffersCheckpoint)
	if err != nil {
		return s, fmt.Errorf("reading pg_stat_wal: %w", err)
	}
	err = conn.QueryRow(ctx, `SELECT coalesce(max(pg_current_wal_flush_lsn() - sent_lsn), 0)::float8 FROM pg_stat_replication`).Scan(&s.sentBehind)
	if err != nil {
		return s, fmt.Errorf("reading pg_stat_replication: %w", err)
	}
	return s, nil
}

// timeline prints, for every second of a latency run, capture's p99 and the server's WAL:
// only the seconds over the goal, unless all is set. It is how a slow second is tied to a
// checkpoint (a burst of full-page images right after one starts) or to the machine.
func (b *bench) timeline(ctx context.Context, addr string, prev pgSnap, commits *commitLog, stop <-chan struct{}, all bool) {
	conn, err := pgx.Connect(ctx, b.dsn)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s, err := snapshot(ctx, conn, addr)
		if err != nil {
			continue
		}
		ack, recv, req := histDiff(s.ack, prev.ack), histDiff(s.recv, prev.recv), histDiff(s.req, prev.req)
		rec, fpi := s.walRecords-prev.walRecords, s.walFPI-prev.walFPI
		c99, cmax := commits.take()
		if all || ack.q(0.99) > 0.025 || s.checkpoints != prev.checkpoints {
			b.say("      %s %5.0f acks p99 %6.1f ms (max %s) | PG side p99 %6.1f ms, commit round trip p99 %5.1f max %5.1f ms, walsender behind flush %6.0f kB | produce p99 %5.1f ms | WAL %5.2f MB, FPI %3.0f%% of records | checkpoints done %+.0f, buffers %+.0f | load %s",
				s.at.Format("15:04:05"), ack.count, ack.q(0.99)*1000, ack.maxBucket(), recv.q(0.99)*1000, c99, cmax, s.sentBehind/1024, req.q(0.99)*1000,
				(s.walBytes-prev.walBytes)/1e6, 100*fpi/max(rec, 1), s.checkpoints-prev.checkpoints,
				s.buffersCheckpoint-prev.buffersCheckpoint, loadavg())
		}
		prev = s
	}
}

// checkpointLines are the server log's checkpoint and autovacuum lines (the latter need
// log_autovacuum_min_duration, which the local stack sets) between from and to, when the bench
// runs beside the local stack's log (ORDERFLOW_PG_LOG or .local/log/postgres.log).
func checkpointLines(from, to time.Time) []string {
	path := os.Getenv("ORDERFLOW_PG_LOG")
	if path == "" {
		path = filepath.Join(".local", "log", "postgres.log")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		line := s.Text()
		if !strings.Contains(line, "checkpoint") && !strings.Contains(line, "automatic vacuum") && !strings.Contains(line, "automatic analyze") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		t, err := time.Parse("2006-01-02 15:04:05.000 MST", f[0]+" "+f[1]+" "+f[2])
		if err != nil || t.Before(from.Add(-time.Second)) || t.After(to) {
			continue
		}
		out = append(out, line)
	}
	return out
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

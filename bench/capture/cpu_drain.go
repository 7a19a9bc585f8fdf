package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// cpuSeconds is the user+system CPU time a process used so far, from /proc/PID/stat; 0 if
// it cannot be read.
func cpuSeconds(pid int) float64 {
	t, _ := procCPU(pid, false)
	return t
}

// kafkaPID is the local broker's pid (deploy/local/stack.sh writes it), 0 if unknown: the
// broker's CPU during a drain is half of what produce costs on a two-core machine.
func kafkaPID() int {
	path := os.Getenv("BENCH_KAFKA_PID_FILE")
	if path == "" {
		path = ".local/run/kafka.pid"
	}
	return pidFile(path)
}

// cpuWatch measures the CPU seconds the walsender serving a slot, the broker and (if set)
// the reader process spend during a drain. The walsender exits with its client, so its time
// is sampled while it runs.
type cpuWatch struct {
	stop   context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	wal    map[int]float64 // walsender pid -> latest CPU seconds seen
	kafka  int
	kafka0 float64
	reader int
	read0  float64
}

func (b *bench) watchCPU(ctx context.Context, slot string) *cpuWatch {
	ctx, cancel := context.WithCancel(ctx)
	w := &cpuWatch{stop: cancel, done: make(chan struct{}), wal: map[int]float64{}, kafka: kafkaPID()}
	if w.kafka != 0 {
		w.kafka0 = cpuSeconds(w.kafka)
	}
	go func() {
		defer close(w.done)
		c, err := pgx.Connect(ctx, b.dsn)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			var pid *int32
			if err := c.QueryRow(ctx, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&pid); err == nil && pid != nil {
				if s := cpuSeconds(int(*pid)); s > 0 {
					w.mu.Lock()
					w.wal[int(*pid)] = s
					w.mu.Unlock()
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// setReader starts counting the reader process's CPU.
func (w *cpuWatch) setReader(pid int) { w.reader, w.read0 = pid, cpuSeconds(pid) }

// cpuUse is what a drain cost in CPU seconds.
type cpuUse struct{ walsender, kafka, reader float64 }

// end samples once more (the reader must still be running) and stops the watch.
func (w *cpuWatch) end() cpuUse {
	var u cpuUse
	if w.reader != 0 {
		u.reader = cpuSeconds(w.reader) - w.read0
	}
	if w.kafka != 0 {
		u.kafka = cpuSeconds(w.kafka) - w.kafka0
	}
	w.stop()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.wal {
		u.walsender += s
	}
	return u
}

// String is the CPU microseconds per event of each part of a drain of n events.
func (u cpuUse) per(n int) string {
	us := func(s float64) float64 { return s * 1e6 / float64(n) }
	s := fmt.Sprintf("CPU/event: walsender %.1f us", us(u.walsender))
	if u.reader > 0 {
		s += fmt.Sprintf(", reader %.1f us", us(u.reader))
	}
	if u.kafka > 0 {
		s += fmt.Sprintf(", broker %.1f us", us(u.kafka))
	}
	return s
}

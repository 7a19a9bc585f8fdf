package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

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

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// drainWithRecvlogical runs pg_recvlogical until it reaches target (--endpos) and exits.
func (b *bench) drainWithRecvlogical(ctx context.Context, slot, target string) (float64, cpuUse, error) {
	logPath := filepath.Join(os.TempDir(), "ofbench-"+slot+".log")
	w := b.watchCPU(ctx, slot)
	t0 := time.Now()
	p, err := start("pg_recvlogical", []string{"-d", b.dsn, "--slot", slot, "--start", "--endpos", target,
		"-o", "proto_version=1", "-o", "publication_names=ofbench", "-f", "/dev/null", "--no-loop", "-s", "1", "-F", "1"}, nil, logPath)
	if err != nil {
		w.end()
		return 0, cpuUse{}, err
	}
	w.setReader(p.cmd.Process.Pid)
	var use cpuUse
	select {
	case <-p.done:
		// The process is gone: its CPU time is in the rusage Wait collected.
		use = w.end()
		use.reader = p.cmd.ProcessState.UserTime().Seconds() + p.cmd.ProcessState.SystemTime().Seconds()
	case <-ctx.Done():
		w.end()
		p.stop()
		return 0, cpuUse{}, ctx.Err()
	}
	secs := time.Since(t0).Seconds()
	if p.err != nil {
		return 0, cpuUse{}, fmt.Errorf("pg_recvlogical: %v (log %s)", p.err, logPath)
	}
	return secs, use, nil
}

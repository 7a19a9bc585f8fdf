package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

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

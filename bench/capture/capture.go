package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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
	prof := os.Getenv("CAPTURE_BENCH_CPUPROFILE_DIR")
	pprofAddr := ""
	if prof != "" {
		args = append(args, "-cpuprofile", filepath.Join(prof, slot+".pprof"))
		if !b.useBase { // a baseline binary may predate -pprof-addr
			pprofAddr = freePort()
			args = append(args, "-pprof-addr", pprofAddr)
		}
	}
	logPath := filepath.Join(os.TempDir(), "ofbench-"+slot+".log")
	w := b.watchCPU(ctx, slot)
	t0 := time.Now()
	bin := b.bin
	if b.useBase {
		bin = b.baseBin
	}
	p, err = start(bin, args, []string{"DATABASE_URL=" + b.dsn, "KAFKA_BROKERS=" + b.brokers, "LOG_LEVEL=info"}, logPath)
	if err != nil {
		w.end()
		return 0, 0, nil, "", err
	}
	w.setReader(p.cmd.Process.Pid)
	t1, err := b.waitConfirmed(ctx, slot, target, p.alive)
	p.cpu = w.end()
	if err == nil && pprofAddr != "" {
		// Allocations since the start, i.e. over the whole drain.
		if err := fetchProfile("http://"+pprofAddr+"/debug/pprof/allocs", filepath.Join(prof, slot+".allocs.pprof")); err != nil {
			b.say("  (no allocation profile: %v)", err)
		}
	}
	if err != nil {
		p.stop()
		return 0, 0, nil, "", fmt.Errorf("%w (log %s)", err, logPath)
	}
	_ = p.alive()
	if !discard {
		if err := produceErrors(p.log); err != nil {
			p.stop()
			return 0, 0, nil, "", err
		}
	}
	if !keep {
		p.stop()
	}
	return t1.Sub(t0).Seconds(), float64(p.peak) / 1024, p, addr, nil
}

// produceErrors fails when capture's log shows a refused produce request or an event too
// large for its topic: each one tears the replication session down and reconnects after a
// backoff, so a drain that had one measured the backoff, not capture.
func produceErrors(logPath string) error {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return fmt.Errorf("reading capture's log: %w", err)
	}
	var bad []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "producing to ") || strings.Contains(line, "larger than the topic") {
			bad = append(bad, line)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("FAILED: capture logged %d produce errors during a measured drain, the figure is not valid (log %s); first: %s",
		len(bad), logPath, bad[0])
}

// fetchProfile saves the profile at url to path.
func fetchProfile(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

package reconcile

import (
	"context"
	"time"

	"orderflow/internal/backoff"
)

// RunEvery reconciles every interval until ctx is cancelled; each report goes to emit. The
// first pass and then one every FullScanEvery are full, the others incremental. It also runs
// the retention of reconcile_repairs. A failed pass (the database away) is logged and
// counted, /readyz answers 503, and the pass is retried with a capped backoff (at most the
// interval) until one succeeds: the daemon never exits because its database is away.
func (r *Reconciler) RunEvery(ctx context.Context, every time.Duration, emit func(*Report)) error {
	go func() { _ = r.purger.Run(ctx, r.cfg.PurgeEvery) }()
	wait := backoff.New(min(time.Second, every), every)
	for {
		var (
			rep *Report
			err error
		)
		if r.inc.lastFull.IsZero() || time.Since(r.inc.lastFull) >= r.cfg.FullScanEvery {
			rep, err = r.Run(ctx)
		} else {
			rep, err = r.RunIncremental(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		pause := every
		if err != nil {
			r.lastOK.Store(false)
			r.metrics.failures.Inc()
			pause = wait.Next()
			r.cfg.Logger.Warn("reconciliation failed; retrying", "err", err, "failures", wait.Failures(), "backoff", pause)
		} else {
			wait.Reset()
			r.lastOK.Store(true)
			emit(rep)
		}
		if !backoff.Sleep(ctx, pause) {
			return nil
		}
	}
}

// Package periodic runs a function now and then every interval until its context ends: the
// loop behind every purge, stats refresh and reconciliation pass, written once.
package periodic

import (
	"context"
	"time"
)

// Run calls fn at once and then every interval until ctx is cancelled; it returns nil then.
// fn's error is handed to onErr (if not nil) and the loop goes on: a periodic job that fails
// once must try again at its next tick, not stop the service. A call that overruns the
// interval delays the next one instead of stacking calls up.
func Run(ctx context.Context, every time.Duration, fn func(context.Context) error, onErr func(error)) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := fn(ctx); err != nil && ctx.Err() == nil && onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

package capture

import (
	"context"
	"time"
)

// eventSink is what the stream needs from the place events go.
type eventSink interface {
	// open prepares the topics and reads their dedupe positions.
	open(ctx context.Context, topics []string) error
	hasRecords(ctx context.Context, topics []string) (bool, error)
	publish(ctx context.Context, ev *outEvent, wait time.Duration) (publishResult, error)
	failed() <-chan struct{}
	err() error
	finish(abort bool) error
	// lastUnanswered is the send time of the latest request that timed out (zero if none):
	// until the network gives such a request up, it may still reach a broker.
	lastUnanswered() time.Time
	// hadFailures reports whether a produce request of this sink failed.
	hadFailures() bool
}

// publishResult is what became of an event handed to publish.
type publishResult int

const (
	resQueued  publishResult = iota + 1 // on its way; the sink acknowledges it later
	resSkipped                          // its partition already holds it (replay after a restart)
	resFull                             // no room within the wait: call again
)

// discardSink acknowledges everything at once: decode-only mode.
type discardSink struct{ onAck func(*outEvent) }

func (d *discardSink) open(context.Context, []string) error { return nil }
func (d *discardSink) hasRecords(context.Context, []string) (bool, error) {
	return false, nil
}
func (d *discardSink) publish(_ context.Context, ev *outEvent, _ time.Duration) (publishResult, error) {
	d.onAck(ev)
	return resQueued, nil
}
func (d *discardSink) failed() <-chan struct{}   { return nil }
func (d *discardSink) err() error                { return nil }
func (d *discardSink) finish(bool) error         { return nil }
func (d *discardSink) lastUnanswered() time.Time { return time.Time{} }
func (d *discardSink) hadFailures() bool         { return false }

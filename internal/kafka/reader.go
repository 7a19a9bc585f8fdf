package kafka

import (
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// Settings every consumer-group reader of orderflow shares (the projector's, the deliverer's).
const (
	// ReaderMaxWait bounds one fetch. kafka-go sets the connection's read deadline to it and
	// asks the broker to answer an empty fetch at three quarters of it, so a reply later than
	// the last quarter (a GC pause, a busy CPU, a slow broker) is an i/o timeout: the
	// connection is closed, redialed and the offsets looked up again, a latency spike of
	// hundreds of milliseconds on a loaded machine. At 250 ms that slack was 62 ms and spikes
	// were routine; at 2 s it is 500 ms. It costs nothing while records flow (the broker
	// answers a fetch as soon as it has one), only a reader's Close or a rebalance may wait
	// for an idle fetch to come back (at most 1.5 s).
	ReaderMaxWait = 2 * time.Second
	// JoinGroupBackoff is the pause after a failed join. kafka-go's default is 5 s, and on a
	// fresh cluster the first join always fails while the broker creates __consumer_offsets:
	// with it the first order after 'make up' waited seconds for a consumer.
	JoinGroupBackoff = 200 * time.Millisecond
)

// Assignment tracks how many partitions a consumer-group reader holds, so that readiness can
// say "consuming" only once the group gave it partitions. kafka-go has no assignment
// callback; it logs each generation's subscription and the end of its commit loop through
// ReaderConfig.Logger, which Assignment takes (Logger) and reads. Messages it does not know
// are passed on to next.
type Assignment struct {
	n    atomic.Int64
	next kafkago.Logger
}

// Logger is the ReaderConfig.Logger that keeps a count; next, if not nil, gets every message.
func (a *Assignment) Logger(next kafkago.Logger) kafkago.Logger {
	a.next = next
	return kafkago.LoggerFunc(a.printf)
}

// Partitions is the number of partitions held since the last subscription; 0 before the first
// and between a generation's end and the next one's subscription.
func (a *Assignment) Partitions() int { return int(a.n.Load()) }

func (a *Assignment) printf(msg string, args ...any) {
	switch {
	// reader.go subscribe: "subscribed to topics and partitions: %+v" with the map of the
	// generation's partitions to their offsets.
	case strings.HasPrefix(msg, "subscribed to topics and partitions"):
		if len(args) == 1 {
			if v := reflect.ValueOf(args[0]); v.Kind() == reflect.Map {
				a.n.Store(int64(v.Len()))
			}
		}
	// reader.go commitLoop: "stopped commit for group %s", when the generation ends (a
	// rebalance, a lost coordinator, Close).
	case strings.HasPrefix(msg, "stopped commit for group"):
		a.n.Store(0)
	}
	if a.next != nil {
		a.next.Printf(msg, args...)
	}
}

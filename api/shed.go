package api

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Defaults of the admission limit (WithAdmission). The queue is short on purpose: past its
// capacity the API answers 503 at once instead of queueing, so the requests it accepts keep
// the latency they have below capacity (docs/API.md, "Overload"). 32 queued behind 20 in
// flight is about one more round of requests (a few milliseconds each when the database
// keeps up), and 50 ms is several of those rounds.
const (
	DefaultMaxInFlight  = 20
	DefaultMaxQueued    = 32
	DefaultQueueTimeout = 50 * time.Millisecond
	// overloadRetryAfter is the Retry-After of a shed request, in seconds: an overload
	// lasts longer than a queue timeout, so coming back at once would only be shed again.
	overloadRetryAfter = 1
)

// admission bounds the requests that work against the database at once. Every request
// after authentication takes a slot; without a free one it waits, FIFO, at most timeout and
// behind at most maxQueued others, and is otherwise shed: answered 503 before it has read
// or written anything. The pool then never has more requests than connections, so an
// accepted request waits for a connection no longer than the queue timeout, whereas without
// the bound every request queues in the pool and, offered more than the API can do, all of
// them wait ever longer (the overload bench measured a p99 of 36 s before this bound).
type admission struct {
	slots     chan struct{}
	queued    atomic.Int64
	maxQueued int64
	timeout   time.Duration
}

func newAdmission(maxInFlight, maxQueued int, timeout time.Duration) *admission {
	if maxInFlight <= 0 {
		return nil
	}
	return &admission{slots: make(chan struct{}, maxInFlight), maxQueued: int64(max(maxQueued, 0)), timeout: max(timeout, 0)}
}

// WithAdmission lets at most maxInFlight requests run at once; others wait for a slot in a
// FIFO queue of at most maxQueued for at most timeout, and beyond either bound are answered
// 503 overloaded with Retry-After. maxInFlight 0 or less removes the bound.
func WithAdmission(maxInFlight, maxQueued int, timeout time.Duration) Option {
	return func(s *Server) { s.admission = newAdmission(maxInFlight, maxQueued, timeout) }
}

// Reasons a request is shed, the values of orderflow_api_shed_total's reason label.
const (
	shedQueueFull    = "queue_full"
	shedQueueTimeout = "queue_timeout"
)

// admit runs next within the admission limit, or sheds the request.
func (s *Server) admit(next http.Handler) http.Handler {
	if s.admission == nil {
		return next
	}
	a := s.admission
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case a.slots <- struct{}{}:
		default:
			if a.queued.Add(1) > a.maxQueued {
				a.queued.Add(-1)
				s.shed(w, r, shedQueueFull)
				return
			}
			t := time.NewTimer(a.timeout)
			select {
			case a.slots <- struct{}{}:
				a.queued.Add(-1)
				t.Stop()
			case <-t.C:
				a.queued.Add(-1)
				s.shed(w, r, shedQueueTimeout)
				return
			case <-r.Context().Done():
				// The client is gone; nobody reads an answer.
				a.queued.Add(-1)
				t.Stop()
				return
			}
		}
		defer func() { <-a.slots }()
		next.ServeHTTP(w, r)
	})
}

// shed answers 503 overloaded. It is counted, not logged: under overload a log line per shed
// request would spend on logging what the API lacks for requests.
func (s *Server) shed(w http.ResponseWriter, r *http.Request, reason string) {
	s.metrics.shed.WithLabelValues(reason).Inc()
	w.Header().Set("Retry-After", strconv.Itoa(overloadRetryAfter))
	writeProblem(w, s.log, newProblem(codeOverloaded, "the server is at capacity; nothing was done, retry after the Retry-After seconds with the same Idempotency-Key", r.URL.Path))
}

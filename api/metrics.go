package api

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

type metrics struct {
	duration *prometheus.HistogramVec
	// observers caches duration's child per label set (observerKey -> prometheus.Observer):
	// WithLabelValues hashes the three values and takes a lock on every request. The label
	// sets are a fixed few (see instrument), so the cache stays small.
	observers      sync.Map
	ordersCreated  prometheus.Counter
	replays        prometheus.Counter
	keyConflicts   prometheus.Counter
	stockConflicts prometheus.Counter
	transitions    *prometheus.CounterVec
	rateLimited    *prometheus.CounterVec
	shed           *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orderflow_api_request_duration_seconds",
			Help:    "HTTP request duration by route template, method and status.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method", "status"}),
		ordersCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_api_orders_created_total", Help: "Orders created (replays not counted).",
		}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_api_idempotent_replays_total", Help: "Requests answered from a stored response.",
		}),
		keyConflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_api_idempotency_conflicts_total", Help: "Idempotency keys reused with a different request (422).",
		}),
		stockConflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_api_insufficient_stock_total", Help: "Orders refused for insufficient stock (409).",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_api_order_transitions_total", Help: "Order state changes by action (cancel, fulfill).",
		}, []string{"action"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_api_rate_limited_total", Help: "Requests answered 429: a client over its rate (client), an address sending unknown keys (auth_failures).",
		}, []string{"reason"}),
	}
	m.shed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orderflow_api_shed_total", Help: "Requests answered 503 overloaded without being run: the admission queue was full (queue_full) or the wait for a slot passed the queue timeout (queue_timeout).",
	}, []string{"reason"})
	for _, r := range []string{"client", "auth_failures"} {
		m.rateLimited.WithLabelValues(r)
	}
	for _, r := range []string{shedQueueFull, shedQueueTimeout} {
		m.shed.WithLabelValues(r)
	}
	reg.MustRegister(m.duration, m.ordersCreated, m.replays, m.keyConflicts, m.stockConflicts, m.transitions, m.rateLimited, m.shed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// registerAdmission exposes how full the admission limit is.
func registerAdmission(reg prometheus.Registerer, a *admission) {
	if a == nil {
		return
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "orderflow_api_requests_in_flight", Help: "Requests holding an admission slot (at most -max-in-flight).",
		}, func() float64 { return float64(len(a.slots)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "orderflow_api_requests_queued", Help: "Requests waiting for an admission slot (at most -max-queued).",
		}, func() float64 { return float64(a.queued.Load()) }),
	)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// instrument records each request's duration labelled by its route template, never the raw
// path, so order ids do not explode the series count. Every label comes from a fixed set, so
// nothing a client sends, authenticated or not, can add series: unmatched paths share one
// route label, methods outside the standard ones share one method label, and statuses are
// the ones the handlers write.
func (m *metrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		route := "unmatched"
		if cr := mux.CurrentRoute(r); cr != nil {
			if t, err := cr.GetPathTemplate(); err == nil {
				route = t
			}
		}
		m.observer(route, methodLabel(r.Method), rec.status).Observe(time.Since(start).Seconds())
	})
}

type observerKey struct {
	route, method string
	status        int
}

// observer is duration's child for a request's labels.
func (m *metrics) observer(route, method string, status int) prometheus.Observer {
	if status < 100 || status > 599 {
		status = 0 // statusLabel's "other"
	}
	k := observerKey{route: route, method: method, status: status}
	if o, ok := m.observers.Load(k); ok {
		return o.(prometheus.Observer)
	}
	o := m.duration.WithLabelValues(route, method, statusLabel(status))
	m.observers.Store(k, o)
	return o
}

// methodLabel is the method, or "other" for anything but the methods of RFC 9110 and PATCH.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return method
	}
	return "other"
}

// statusLabel is the status code; a code outside 100-599 (none is written today) would be
// "other".
func statusLabel(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code)
}

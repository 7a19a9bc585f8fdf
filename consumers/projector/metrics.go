package projector

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Outcomes of an event, the label of orderflow_projector_events_total.
const (
	outcomeApplied      = "applied"
	outcomeStale        = "skipped_stale"
	outcomeUnknownType  = "skipped_unknown_type"
	outcomeDeadLettered = "dead_lettered"
)

type metrics struct {
	registry     *prometheus.Registry
	events       *prometheus.CounterVec
	applyLatency prometheus.Histogram
	lag          *prometheus.GaugeVec
	dbErrors     prometheus.Counter
	phase        *prometheus.HistogramVec
	batchSize    prometheus.Histogram
}

func newMetrics() *metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &metrics{
		registry: r,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_projector_events_total",
			Help: "Events by outcome: applied (the summary changed), skipped_stale (the summary already had this version or a newer one), skipped_unknown_type, dead_lettered.",
		}, []string{"outcome"}),
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orderflow_projector_apply_latency_seconds",
			Help:    "From the event's time (the order change's commit-time timestamp) to the database commit that applied it to order_summary.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "orderflow_projector_consumer_lag",
			Help: "Records in the partition the group has not committed: log end offset - committed offset (log start offset before the first commit), refreshed every 2 s.",
		}, []string{"group", "topic", "partition"}),
		dbErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_projector_db_errors_total",
			Help: "Failed attempts to apply a batch (each is retried).",
		}),
	}
	m.phase = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "orderflow_projector_batch_phase_seconds",
		Help:    "Time per batch spent applying it to the database (apply) and committing its offsets (commit).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
	}, []string{"phase"})
	m.batchSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "orderflow_projector_batch_size",
		Help:    "Events per batch.",
		Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500},
	})
	for _, o := range []string{outcomeApplied, outcomeStale, outcomeUnknownType, outcomeDeadLettered} {
		m.events.WithLabelValues(o)
	}
	r.MustRegister(m.events, m.applyLatency, m.lag, m.dbErrors, m.phase, m.batchSize)
	return m
}

// Handler serves /healthz (the process is up), /readyz (the last checks reached PostgreSQL
// and Kafka) and /metrics.
func (p *Projector) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !p.Ready() {
			http.Error(w, "not connected to PostgreSQL and Kafka", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.metrics.registry, promhttp.HandlerOpts{}))
	return mux
}

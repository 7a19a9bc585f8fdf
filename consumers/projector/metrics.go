package projector

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"orderflow/internal/kafka"

	"orderflow/internal/httpserver"
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
	dbErrors     prometheus.Counter
	kafkaErrors  prometheus.Counter
	phase        *prometheus.HistogramVec
	batchSize    prometheus.Histogram
}

// Dependencies, the label of orderflow_projector_dependency_up.
const (
	dependencyPostgres = "postgres"
	dependencyKafka    = "kafka"
)

// newMetrics registers the service's metrics, lag included, in a registry of its own. up
// reports whether the last check reached a dependency.
func newMetrics(lag *kafka.Lag, up func(dependency string) bool) *metrics {
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
		dbErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_projector_db_errors_total",
			Help: "Failed attempts to apply a batch (each is retried).",
		}),
		kafkaErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_projector_kafka_errors_total",
			Help: "Failed fetches from Kafka and failed creations of the dead-letter topic (each is retried with backoff).",
		}),
	}
	httpserver.RegisterDependencyUp(r, "projector", "1 while the last check reached the dependency (postgres, kafka), 0 while it is away; the projector keeps running and retries either way.", up, dependencyPostgres, dependencyKafka)
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
	r.MustRegister(m.events, m.applyLatency, lag, m.dbErrors, m.kafkaErrors, m.phase, m.batchSize)
	return m
}

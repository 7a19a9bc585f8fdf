package deliver

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"orderflow/internal/httpserver"
)

type metrics struct {
	attempts       *prometheus.CounterVec
	attemptTime    prometheus.Histogram
	eventToSuccess prometheus.Histogram
	enqueued       prometheus.Counter
	// claimed counts claims by how they were made: "intake" at insert, "claim" by the claim
	// query (deliveries the intake left for lack of room, retries, replays).
	claimed      *prometheus.CounterVec
	skipped      *prometheus.CounterVec
	deadLettered prometheus.Counter
	disabled     prometheus.Counter
	pending      prometheus.Gauge
	retrying     prometheus.Gauge
	dead         prometheus.Gauge
	inFlight     prometheus.Gauge
	kafkaErrors  prometheus.Counter
	// intakeDeadLettered counts records recorded in webhook_intake_dead_letters.
	intakeDeadLettered prometheus.Counter
}

// Dependencies, the label of orderflow_deliver_dependency_up.
const (
	dependencyPostgres = "postgres"
	dependencyKafka    = "kafka"
)

func newMetrics(reg prometheus.Registerer, up func(dependency string) bool) *metrics {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_deliver_attempts_total", Help: "Webhook POST attempts by outcome (success, http_3xx, http_4xx, http_5xx, timeout, network).",
		}, []string{"outcome"}),
		attemptTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "orderflow_deliver_attempt_duration_seconds", Help: "Duration of one webhook POST, any outcome.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		eventToSuccess: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "orderflow_deliver_event_to_delivered_seconds", Help: "From the event's time (its commit) to the partner's 2xx.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400},
		}),
		enqueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_deliver_deliveries_enqueued_total", Help: "Deliveries created by the intake (duplicates not counted).",
		}),
		claimed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_deliver_claimed_total", Help: "Deliveries claimed for sending, by how: at insert by the intake (intake) or by the claim query (claim).",
		}, []string{"by"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_deliver_records_skipped_total", Help: "Kafka records the intake could not use, by reason (undecodable, refused by the database).",
		}, []string{"reason"}),
		deadLettered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_deliver_dead_lettered_total", Help: "Deliveries that became dead letters.",
		}),
		disabled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_deliver_endpoints_disabled_total", Help: "Endpoints disabled because they answered 410 Gone.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderflow_deliver_pending", Help: "Deliveries waiting for a successful attempt.",
		}),
		retrying: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderflow_deliver_pending_retries", Help: "Pending deliveries that already failed at least once.",
		}),
		dead: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderflow_deliver_dead_letters", Help: "Dead letters waiting for a replay.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderflow_deliver_in_flight", Help: "Webhook POSTs in flight.",
		}),
		intakeDeadLettered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_deliver_intake_dead_lettered_total", Help: "Records the intake gave up on (undecodable, or refused by the database for their values), recorded in webhook_intake_dead_letters.",
		}),
		kafkaErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_deliver_kafka_errors_total", Help: "Failed reads from Kafka by the intake (each is retried with backoff).",
		}),
	}
	httpserver.RegisterDependencyUp(reg, "deliver", "1 while the last contact with the dependency (postgres, kafka) worked, 0 while it is away; the deliverer keeps running and retries either way.", up, dependencyPostgres, dependencyKafka)
	reg.MustRegister(m.attempts, m.attemptTime, m.eventToSuccess, m.enqueued, m.claimed, m.skipped, m.deadLettered, m.disabled,
		m.pending, m.retrying, m.dead, m.inFlight, m.kafkaErrors, m.intakeDeadLettered,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.claimed.WithLabelValues("intake")
	m.claimed.WithLabelValues("claim")
	for _, o := range []string{OutcomeSuccess, OutcomeRedirect, OutcomeClientErr, OutcomeServerErr, OutcomeTimeout, OutcomeNetwork} {
		m.attempts.WithLabelValues(o)
	}
	return m
}

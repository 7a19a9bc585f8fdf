package capture

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

type metrics struct {
	registry       *prometheus.Registry
	produced       *prometheus.CounterVec
	skipped        prometheus.Counter
	confirmedLSN   prometheus.Gauge
	slotLag        prometheus.Gauge
	retainedWAL    prometheus.Gauge
	commitToAck    prometheus.Histogram
	commitToRecv   prometheus.Histogram
	produceSeconds prometheus.Histogram
	batchSize      prometheus.Histogram
	produceErrors  prometheus.Counter
	oversized      prometheus.Counter
	reconnects     prometheus.Counter
	active         prometheus.Gauge
	streamingSince prometheus.Gauge
	inflightTxns   prometheus.Gauge
}

var latencyBuckets = []float64{.0005, .001, .002, .003, .004, .005, .0075, .01, .015, .02, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

func newMetrics() *metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &metrics{
		registry: r,
		produced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_capture_events_produced_total",
			Help: "Events Kafka acknowledged, by event type.",
		}, []string{"type"}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_capture_events_skipped_total",
			Help: "Replayed events dropped because their partition already held them (dedupe after a restart).",
		}),
		confirmedLSN: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderflow_capture_confirmed_lsn",
			Help: "The LSN last confirmed to the replication slot, as a number.",
		}),
		slotLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderflow_capture_slot_lag_bytes",
			Help: "pg_current_wal_lsn() - confirmed_flush_lsn of the slot.",
		}),
		retainedWAL: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderflow_capture_retained_wal_bytes",
			Help: "pg_current_wal_lsn() - restart_lsn of the slot: WAL the server keeps for it.",
		}),
		commitToAck: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orderflow_capture_commit_to_ack_seconds",
			Help:    "From the transaction's commit time (Commit message) to Kafka's acknowledgement of its event.",
			Buckets: latencyBuckets,
		}),
		commitToRecv: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orderflow_capture_commit_to_receive_seconds",
			Help:    "From a transaction's commit time to capture receiving its Commit message: the PostgreSQL side of commit_to_ack.",
			Buckets: latencyBuckets,
		}),
		produceSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orderflow_capture_produce_request_seconds",
			Help:    "Duration of one produce request (acks=all), one partition's batch.",
			Buckets: latencyBuckets,
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orderflow_capture_produce_batch_records",
			Help:    "Records per produce request.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		produceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_capture_produce_errors_total",
			Help: "Produce requests that failed (each one restarts the session and its dedupe).",
		}),
		oversized: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_capture_oversized_events_total",
			Help: "Sessions stopped on an event whose record is larger than its topic's max.message.bytes; capture retries it, never skips it.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_capture_reconnects_total",
			Help: "Replication sessions that ended with an error and were started again.",
		}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderflow_capture_active",
			Help: "1 while this instance holds the slot and streams, 0 while it is a standby or reconnecting.",
		}),
		streamingSince: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderflow_capture_streaming_since_seconds",
			Help: "Unix time at which the current replication session started streaming.",
		}),
		inflightTxns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderflow_capture_inflight_transactions",
			Help: "Transactions received but not yet fully acknowledged by Kafka.",
		}),
	}
	r.MustRegister(m.produced, m.skipped, m.confirmedLSN, m.slotLag, m.retainedWAL, m.commitToAck, m.commitToRecv, m.produceSeconds, m.batchSize,
		m.produceErrors, m.oversized, m.reconnects, m.active, m.streamingSince, m.inflightTxns)
	return m
}

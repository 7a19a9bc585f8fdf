package capture

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

type metrics struct {
	registry *prometheus.Registry
	produced *prometheus.CounterVec
	// producedByType caches produced's children: looking a label value up hashes it, and
	// every acknowledged event counts.
	producedByType sync.Map // event type -> prometheus.Counter
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
	// queuedBytes is what the session's byte budget holds (byteBudget), read by its gauge.
	queuedBytes atomic.Int64
	queueWait   prometheus.Counter

	// The slot's WAL budget (background.go) and its rebuilds (rebuild.go).
	walKeepLimit prometheus.Gauge
	safeWAL      prometheus.Gauge
	walStatus    *prometheus.GaugeVec
	walWritten   prometheus.Gauge
	rebuilds     *prometheus.CounterVec
	republished  prometheus.Counter
	lostFrom     prometheus.Gauge
	lostTo       prometheus.Gauge
}

// walStatuses are the values of pg_replication_slots.wal_status.
var walStatuses = []string{"reserved", "extended", "unreserved", "lost"}

// latencyBuckets are fine up to 250 ms: the commit-to-ack goal is p99 <= 25 ms, and with
// nothing between 100 and 250 ms an interpolated p99 anywhere in that range was a guess
// (issue 13 reported 97.8 ms and 229 ms from the same two bucket edges).
var latencyBuckets = []float64{.0005, .001, .002, .003, .004, .005, .0075, .01, .0125, .015, .0175, .02, .025, .03, .04, .05, .075,
	.1, .125, .15, .2, .25, .5, 1, 2.5, 5, 10, 30, 60}

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
			Help:    "Duration of one produce request (acks=all): a topic's batches for every partition with events.",
			Buckets: latencyBuckets,
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orderflow_capture_produce_batch_records",
			Help:    "Records per produce request (all partitions of its topic).",
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
	m.walKeepLimit = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "orderflow_capture_slot_wal_keep_limit_bytes",
		Help: "max_slot_wal_keep_size in bytes: retained WAL beyond it gets the slot invalidated; -1 when unlimited.",
	})
	m.safeWAL = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "orderflow_capture_slot_safe_wal_bytes",
		Help: "pg_replication_slots.safe_wal_size: WAL that can still be written before the slot is at risk of invalidation; -1 when max_slot_wal_keep_size is unlimited, 0 once lost.",
	})
	m.walStatus = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "orderflow_capture_slot_wal_status",
		Help: "1 for the slot's current pg_replication_slots.wal_status (reserved, extended, unreserved, lost), 0 for the others.",
	}, []string{"status"})
	m.walWritten = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "orderflow_capture_server_wal_lsn_bytes",
		Help: "pg_current_wal_lsn() as a number: its rate is the server's WAL rate.",
	})
	m.rebuilds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orderflow_capture_slot_rebuilds_total",
		Help: "Lost or dropped slots rebuilt from the outbox table, by outcome: complete, or gap (rows were deleted before they could be re-published).",
	}, []string{"outcome"})
	m.republished = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "orderflow_capture_republished_events_total",
		Help: "Outbox rows re-published from the table by slot rebuilds (acknowledged by Kafka).",
	})
	m.lostFrom = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "orderflow_capture_lost_events_from_timestamp_seconds",
		Help: "Start of the created_at range of outbox rows that may be lost (deleted before a slot rebuild could re-publish them); 0 when none.",
	})
	m.lostTo = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "orderflow_capture_lost_events_to_timestamp_seconds",
		Help: "End (exclusive) of the created_at range of outbox rows that may be lost; 0 when none.",
	})
	for _, o := range []string{"complete", "gap"} {
		m.rebuilds.WithLabelValues(o)
	}
	m.queueWait = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "orderflow_capture_queue_wait_seconds_total",
		Help: "Time the replication stream waited for room (the byte budget or a topic's queue) before queueing an event; the walsender waits meanwhile.",
	})
	r.MustRegister(m.queueWait, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "orderflow_capture_queued_bytes",
		Help: "Bytes of events queued for Kafka or in flight, not yet acknowledged: bounded by -queue-bytes.",
	}, func() float64 { return float64(m.queuedBytes.Load()) }))
	r.MustRegister(m.walKeepLimit, m.safeWAL, m.walStatus, m.walWritten, m.rebuilds, m.republished, m.lostFrom, m.lostTo)
	r.MustRegister(m.produced, m.skipped, m.confirmedLSN, m.slotLag, m.retainedWAL, m.commitToAck, m.commitToRecv, m.produceSeconds, m.batchSize,
		m.produceErrors, m.oversized, m.reconnects, m.active, m.streamingSince, m.inflightTxns)
	return m
}

// producedOf is the produced counter of an event type.
func (m *metrics) producedOf(eventType string) prometheus.Counter {
	if c, ok := m.producedByType.Load(eventType); ok {
		return c.(prometheus.Counter)
	}
	c := m.produced.WithLabelValues(eventType)
	m.producedByType.Store(eventType, c)
	return c
}

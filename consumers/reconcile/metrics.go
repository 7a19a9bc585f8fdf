package reconcile

import (
	"context"
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"orderflow/internal/httpserver"
)

type metrics struct {
	registry *prometheus.Registry
	drift    *prometheus.GaugeVec
	repairs  *prometheus.CounterVec
	runs     prometheus.Counter
	passes   *prometheus.CounterVec
	failures prometheus.Counter
	lastRun  prometheus.Gauge
	duration prometheus.Histogram
}

func newMetrics(dbUp func() bool) *metrics {
	r := prometheus.NewRegistry()
	httpserver.RegisterDependencyUp(r, "reconcile", "1 while the last reconciliation reached the dependency (postgres), 0 while it is away; the daemon keeps retrying.", func(string) bool { return dbUp() }, "postgres")
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &metrics{
		registry: r,
		drift: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "orderflow_reconcile_drift",
			Help: "Findings of the last reconciliation, by kind.",
		}, []string{"kind"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_reconcile_repairs_total",
			Help: "Repairs by outcome: published (a repair event written), in_flight (the fact's repair is younger than the grace; per run), not_cleared (a repair did not clear its finding; once per fact), refused (the database refused the repair; once per fact), skipped (the run reached -max-repairs), failed (retried next run).",
		}, []string{"outcome"}),
		runs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_reconcile_runs_total",
			Help: "Completed reconciliations.",
		}),
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_reconcile_passes_total",
			Help: "Completed reconciliations by mode: full (every order) or incremental (what changed since the last pass, and open findings).",
		}, []string{"mode"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_reconcile_failures_total",
			Help: "Reconciliations that failed (retried at the next interval).",
		}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderflow_reconcile_last_run_timestamp_seconds",
			Help: "Database time of the last completed reconciliation.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orderflow_reconcile_duration_seconds",
			Help:    "Duration of a reconciliation.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}),
	}
	for _, k := range Kinds {
		m.drift.WithLabelValues(string(k))
	}
	for _, o := range []string{RepairPublished, RepairInFlight, RepairNotCleared, RepairRefused, RepairSkipped, RepairFailed} {
		m.repairs.WithLabelValues(o)
	}
	for _, mode := range []string{"full", "incremental"} {
		m.passes.WithLabelValues(mode)
	}
	r.MustRegister(m.drift, m.repairs, m.runs, m.passes, m.failures, m.lastRun, m.duration)
	return m
}

// Handler serves /healthz, /readyz (the last reconciliation succeeded) and /metrics, for the
// --every daemon.
func (r *Reconciler) Handler() http.Handler {
	return httpserver.OpsHandler(r.metrics.registry, func(context.Context) error {
		if !r.lastOK.Load() {
			return errors.New("the last reconciliation failed or none ran yet; retrying")
		}
		return nil
	}, nil)
}

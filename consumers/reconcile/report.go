package reconcile

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// WriteTable prints the report for people: a summary line per kind, then one row per finding.
func WriteTable(w io.Writer, rep *Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "reconciled at %s: %d orders scanned", rep.At.Format(time.RFC3339), rep.OrdersScanned)
	if !rep.Deliveries {
		fmt.Fprint(tw, " (no delivery tables: delivery check skipped)")
	}
	fmt.Fprintln(tw)
	for _, k := range Kinds {
		fmt.Fprintf(tw, "  %s\t%d\n", k, rep.Counts[k])
	}
	if len(rep.Drift) == 0 {
		fmt.Fprintln(tw, "no drift")
		return tw.Flush()
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "KIND\tORDER\tSTATUS\tSUMMARY\tSINCE\tDETAIL\tREPAIR")
	for _, d := range rep.Drift {
		status, summary := "-", "-"
		if d.Status != "" {
			status = fmt.Sprintf("%s v%d", d.Status, d.Version)
		}
		if d.SummaryStatus != "" {
			summary = fmt.Sprintf("%s v%d", d.SummaryStatus, d.SummaryVersion)
		}
		detail := d.Detail
		if d.EventID != "" {
			detail += " (event " + d.EventID + ", endpoint " + d.EndpointID + ")"
		}
		repair := "-"
		if d.Repair != "" {
			repair = d.Repair
			if d.RepairEventID != "" {
				repair += " " + d.RepairEventID
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Kind, d.OrderID, status, summary,
			d.Since.Format(time.RFC3339), detail, repair)
	}
	if rep.Truncated {
		fmt.Fprintf(tw, "... more drift than listed; the counts above are complete\n")
	}
	return tw.Flush()
}

// WriteJSON prints the report for machines, one JSON object.
func WriteJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

type metrics struct {
	registry *prometheus.Registry
	drift    *prometheus.GaugeVec
	repairs  *prometheus.CounterVec
	runs     prometheus.Counter
	failures prometheus.Counter
	lastRun  prometheus.Gauge
	duration prometheus.Histogram
}

func newMetrics() *metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &metrics{
		registry: r,
		drift: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "orderflow_reconcile_drift",
			Help: "Findings of the last reconciliation, by kind.",
		}, []string{"kind"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_reconcile_repairs_total",
			Help: "Repairs by outcome: published (a repair event written to the outbox), in_flight (an earlier repair of the same order version is recent), skipped (the run reached -max-repairs), failed.",
		}, []string{"outcome"}),
		runs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_reconcile_runs_total",
			Help: "Completed reconciliations.",
		}),
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
	for _, o := range []string{"published", "in_flight", "skipped", "failed"} {
		m.repairs.WithLabelValues(o)
	}
	r.MustRegister(m.drift, m.repairs, m.runs, m.failures, m.lastRun, m.duration)
	return m
}

// Handler serves /healthz, /readyz (the last reconciliation succeeded) and /metrics, for the
// --every daemon.
func (r *Reconciler) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !r.lastOK.Load() {
			http.Error(w, "no successful reconciliation yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.metrics.registry, promhttp.HandlerOpts{}))
	return mux
}

// ProgressPrinter returns a Progress function that writes "scanned n/total" lines to w.
func ProgressPrinter(w io.Writer) func(scanned, total int64) {
	return func(scanned, total int64) {
		fmt.Fprintf(w, "reconcile: scanned %s/%s orders (%d%%)\n",
			strconv.FormatInt(scanned, 10), strconv.FormatInt(total, 10), 100*scanned/max(total, 1))
	}
}

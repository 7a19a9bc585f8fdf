package partner

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"orderflow/internal/httpserver"
)

type metrics struct {
	hookDuration     *prometheus.HistogramVec
	receipts         *prometheus.CounterVec
	rejected         *prometheus.CounterVec
	faults           *prometheus.CounterVec
	callbacks        *prometheus.CounterVec
	pendingCallbacks prometheus.Gauge
	failedCallbacks  prometheus.Gauge
	deadLetters      prometheus.Counter
	receiptBatch     prometheus.Histogram
}

// Dependencies, the label of orderflow_partner_dependency_up.
const (
	dependencyPostgres = "postgres"
	dependencyAPI      = "api"
)

func (p *Partner) dependencyUp(dep string) bool {
	if dep == dependencyAPI {
		return p.apiOK.Load()
	}
	return p.dbOK.Load()
}

func newMetrics(reg prometheus.Registerer, up func(dependency string) bool) *metrics {
	m := &metrics{
		hookDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "orderflow_partner_hook_duration_seconds", Help: "Webhook requests by answered status.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"status"}),
		receipts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_partner_receipts_total", Help: "Verified webhooks stored, by event type and whether the webhook-id was seen before.",
		}, []string{"type", "duplicate"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_partner_rejected_total", Help: "Webhooks refused, by reason (signature, timestamp, missing_headers, undecodable).",
		}, []string{"reason"}),
		faults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_partner_faults_injected_total", Help: "Faults injected on purpose, by kind.",
		}, []string{"kind"}),
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_partner_callbacks_total", Help: "Calls back to the API by action and outcome (done, pending, failed).",
		}, []string{"action", "outcome"}),
		pendingCallbacks: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderflow_partner_callbacks_pending", Help: "Callbacks not yet made.",
		}),
		failedCallbacks: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderflow_partner_callbacks_failed", Help: "Callbacks that failed for good and wait in the replayable list (POST /admin/callbacks/failed/replay).",
		}),
		receiptBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "orderflow_partner_receipt_batch_size", Help: "Receipts written per statement: webhooks that arrive together share one.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
		}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_partner_dead_letters_total", Help: "Verified webhooks whose values the database refused, kept in partner.dead_letters and acknowledged.",
		}),
	}
	httpserver.RegisterDependencyUp(reg, "partner", "1 while the last contact with the dependency (postgres, api) worked, 0 while it is away; the partner keeps running and retries either way.", up, dependencyPostgres, dependencyAPI)
	reg.MustRegister(m.hookDuration, m.receipts, m.rejected, m.faults, m.callbacks, m.pendingCallbacks, m.failedCallbacks, m.deadLetters, m.receiptBatch,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// stopping is closed once the partner's run context ends, so injected hangs end with it
// instead of holding the HTTP server's graceful shutdown.
func (p *Partner) stopping() <-chan struct{} { return p.stop }

func (p *Partner) stopWhenDone(ctx context.Context) {
	<-ctx.Done()
	p.stopOnce.Do(func() { close(p.stop) })
}

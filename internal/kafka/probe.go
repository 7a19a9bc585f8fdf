package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"
)

// Probe tells whether the cluster answers. Every interval it sends an ApiVersions request with
// a deadline over the client's connection to the cluster, so a cluster that stops answering,
// whether the connection closes or goes silent, turns it unreachable within interval +
// timeout, and the next answer turns it back. (Not a metadata request: kafka-go answers those
// from its cache.) A service's /readyz consults Err; the gauge shows the same on /metrics.
//
// Probe is a prometheus.Collector: register it in the service's registry.
type Probe struct {
	client   *kafkago.Client
	interval time.Duration
	timeout  time.Duration
	gauge    prometheus.Gauge

	mu  sync.Mutex
	err error
}

// ErrNotProbed is Err before the first probe answered.
var ErrNotProbed = errors.New("kafka: not reached yet")

// NewProbe probes the cluster of c every interval (5 s when 0), each probe bounded by timeout
// (5 s when 0), and exports the result as the gauge metricName.
func NewProbe(metricName string, c *kafkago.Client, interval, timeout time.Duration) *Probe {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Probe{
		client: c, interval: interval, timeout: timeout, err: ErrNotProbed,
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: metricName,
			Help: "1 while the last metadata request to Kafka answered within its deadline, 0 otherwise.",
		}),
	}
}

// Describe implements prometheus.Collector.
func (p *Probe) Describe(ch chan<- *prometheus.Desc) { p.gauge.Describe(ch) }

// Collect implements prometheus.Collector.
func (p *Probe) Collect(ch chan<- prometheus.Metric) { p.gauge.Collect(ch) }

// Err is nil while the cluster answers, and says why not otherwise.
func (p *Probe) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Run probes until ctx ends.
func (p *Probe) Run(ctx context.Context) error {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		p.Once(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Once probes one time and records the result.
func (p *Probe) Once(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	resp, err := p.client.ApiVersions(pctx, &kafkago.ApiVersionsRequest{})
	if err == nil && resp.Error != nil {
		err = resp.Error
	}
	if err != nil {
		err = fmt.Errorf("probing kafka: %w", err)
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return // stopping, not a verdict on the cluster
	}
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
	if err != nil {
		p.gauge.Set(0)
	} else {
		p.gauge.Set(1)
	}
}

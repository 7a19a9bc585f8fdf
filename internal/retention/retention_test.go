package retention

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func value(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	_ = (<-ch).Write(&m)
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// A rule purges in bounded batches until one comes back short, never more than MaxBatches per
// cycle, and a failing rule does not stop the others.
func TestOnceBatchesAndBounds(t *testing.T) {
	t.Parallel()
	backlog := int64(23)
	var limits []int
	rows := Rule{Name: "rows", Keep: time.Hour,
		Purge: func(_ context.Context, keep time.Duration, limit int) (int64, error) {
			if keep != time.Hour {
				t.Errorf("keep %s, want 1h", keep)
			}
			limits = append(limits, limit)
			n := min(backlog, int64(limit))
			backlog -= n
			return n, nil
		},
		OldestAge: func(context.Context) (time.Duration, error) { return 42 * time.Minute, nil }}
	broken := Rule{Name: "broken", Keep: time.Hour,
		Purge: func(context.Context, time.Duration, int) (int64, error) { return 0, errors.New("away") }}
	off := Rule{Name: "off", Purge: func(context.Context, time.Duration, int) (int64, error) {
		t.Error("a rule with Keep 0 ran")
		return 0, nil
	}}
	reg := prometheus.NewRegistry()
	p, err := New("test", reg, Config{Batch: 5, MaxBatches: 3, Pause: time.Millisecond}, broken, rows, off)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Once(context.Background())
	if err == nil || !strings.Contains(err.Error(), "broken") {
		t.Errorf("err %v, want the broken rule's", err)
	}
	if got["rows"] != 15 || len(limits) != 3 {
		t.Fatalf("purged %d rows in %d batches, want 15 in 3 (MaxBatches)", got["rows"], len(limits))
	}
	got, _ = p.Once(context.Background())
	if got["rows"] != 8 {
		t.Fatalf("second cycle purged %d, want the 8 left (a short batch ends it)", got["rows"])
	}
	if v := value(p.purged.WithLabelValues("rows")); v != 23 {
		t.Errorf("purged counter %v, want 23", v)
	}
	if v := value(p.oldest.WithLabelValues("rows")); v != 42*60 {
		t.Errorf("oldest gauge %v, want 2520", v)
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// dropSlotWhileCaptureDown is the lost-slot fault: capture is killed -9, its replication slot
// dropped while it is down and the load goes on, and capture started again. It must rebuild
// the slot from the outbox table by itself (docs/CAPTURE.md); the invariants then show that
// nothing was lost or duplicated, and the report says how many rows the rebuild re-published.
func (d *drill) dropSlotWhileCaptureDown() fault {
	return fault{"slot dropped while capture is down", func(ctx context.Context) {
		d.kill9("capture")
		c, err := d.connect(ctx)
		if err != nil {
			d.logf("fault: %v", err)
			return
		}
		defer c.Close(context.Background())
		// The killed capture's walsender lets go of the slot a moment later.
		for range 100 {
			if _, err = c.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slotName); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			d.logf("fault: dropping the slot: %v", err)
			return
		}
		time.Sleep(2 * time.Second) // rows keep coming while there is no slot
		d.stack(ctx, "start", "capture")
		n, err := d.metric(ctx, "capture", "orderflow_capture_republished_events_total")
		if err != nil {
			d.logf("fault: reading capture's metrics: %v", err)
			return
		}
		d.logf("fault: capture rebuilt the slot and re-published %.0f rows from the outbox table", n)
		d.mu.Lock()
		d.notes = append(d.notes, fmt.Sprintf("rows re-published after the slot was dropped\t%.0f", n))
		d.mu.Unlock()
	}}
}

// metric reads one unlabelled metric from a service's /metrics, as an operator would.
func (d *drill) metric(ctx context.Context, svc, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.cfg.env[strings.ToUpper(svc)+"_METRICS_URL"], nil)
	if err != nil {
		return 0, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s reports no %s", svc, name)
}

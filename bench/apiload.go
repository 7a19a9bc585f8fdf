// Package bench holds orderflow's load generators. The benchmarks themselves are driven by
// bench/run.sh, which measures the limits (pgbench, pg_recvlogical) in the same run and
// prints ratios; nothing here asserts a speed.
package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// APILoad is a create-order load, every request with a fresh Idempotency-Key. Closed loop by
// default: Concurrency workers each send one request at a time. With Rate set it is open
// loop: requests are scheduled at Rate per second and their latency counts from the scheduled
// time, so a server that falls behind is charged for the queue (no coordinated omission);
// Concurrency then caps the requests in flight.
type APILoad struct {
	URL         string
	Key         string
	Concurrency int
	Rate        float64
	Warmup      time.Duration
	Duration    time.Duration
	SKUs        int
	// Progress, if set, is called about once a second with the requests completed so far.
	Progress func(done int64, elapsed time.Duration)
}

// LoadResult is what a load run measured.
type LoadResult struct {
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
}

// Run drives the load and returns what was measured after the warm-up.
func (l APILoad) Run(ctx context.Context) (LoadResult, error) {
	if l.Concurrency < 1 || l.Duration <= 0 || l.SKUs < 1 {
		return LoadResult{}, fmt.Errorf("api load needs concurrency, duration and skus above zero")
	}
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns: l.Concurrency * 2, MaxIdleConnsPerHost: l.Concurrency * 2, IdleConnTimeout: time.Minute,
		},
	}
	prefix := make([]byte, 6)
	_, _ = rand.Read(prefix)
	runID := hex.EncodeToString(prefix)

	start := time.Now()
	measureFrom := start.Add(l.Warmup)
	end := measureFrom.Add(l.Duration)
	var (
		mu        sync.Mutex
		latencies []time.Duration
		errs      int64
		firstErr  error
		done      atomic.Int64
	)
	// In open loop the pacer hands out scheduled send times; closed loop sends at once.
	var tickets chan time.Time
	if l.Rate > 0 {
		tickets = make(chan time.Time, 1<<16)
		go func() {
			defer close(tickets)
			interval := time.Duration(float64(time.Second) / l.Rate)
			for next := start; next.Before(end) && ctx.Err() == nil; next = next.Add(interval) {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				tickets <- next
			}
		}()
	}
	var wg sync.WaitGroup
	for w := range l.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			local := make([]time.Duration, 0, 1<<14)
			var localErrs int64
			var localFirst error
			for i := 0; ctx.Err() == nil; i++ {
				t0 := time.Now()
				if tickets != nil {
					var ok bool
					if t0, ok = <-tickets; !ok {
						break
					}
				} else if !t0.Before(end) {
					break
				}
				body := fmt.Sprintf(`{"customer_id":"cust-%d","currency":"EUR","items":[{"sku":"SKU-%d","quantity":1,"unit_price_cents":1250}]}`,
					rng.IntN(100000), 1+rng.IntN(l.SKUs))
				err := post(ctx, client, l.URL+"/v1/orders", l.Key, fmt.Sprintf("bench-%s-%d-%d", runID, w, i), body)
				d := time.Since(t0)
				if t0.Before(measureFrom) {
					continue
				}
				if err != nil {
					localErrs++
					if localFirst == nil {
						localFirst = err
					}
					continue
				}
				local = append(local, d)
				done.Add(1)
			}
			mu.Lock()
			latencies = append(latencies, local...)
			errs += localErrs
			if firstErr == nil {
				firstErr = localFirst
			}
			mu.Unlock()
		}()
	}
	if l.Progress != nil {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					l.Progress(done.Load(), time.Since(start))
				}
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return LoadResult{}, ctx.Err()
	}
	// An open-loop run whose server fell behind finishes after its schedule: the rate it
	// achieved is over the time it really took.
	res := summarize(latencies, max(l.Duration, time.Since(measureFrom)))
	res.Errors = errs
	if errs > 0 && len(latencies) == 0 {
		return res, fmt.Errorf("every request failed, first: %w", firstErr)
	}
	return res, nil
}

func post(ctx context.Context, c *http.Client, url, key, idemKey, body string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewBufferString(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", idemKey)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("status %d: %.200s", resp.StatusCode, b)
	}
	return nil
}

func summarize(lat []time.Duration, over time.Duration) LoadResult {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r := LoadResult{Requests: int64(len(lat)), Seconds: over.Seconds()}
	r.PerSecond = float64(len(lat)) / over.Seconds()
	r.P50Ms = ms(quantile(lat, 0.50))
	r.P99Ms = ms(quantile(lat, 0.99))
	if len(lat) > 0 {
		r.MaxMs = ms(lat[len(lat)-1])
	}
	return r
}

// quantile of sorted durations, nearest rank.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

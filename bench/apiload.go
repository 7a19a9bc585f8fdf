// Package bench holds orderflow's load generators. The benchmarks themselves are driven by
// bench/run.sh, which measures the limits (pgbench, pg_recvlogical) in the same run and
// prints ratios; nothing here asserts a speed.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"sort"
	"strconv"
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
	// FulfillIDs, if set, makes it a fulfill load instead: each request fulfills the next of
	// these orders (POST /v1/orders/{id}/fulfill, Key a fulfiller's), closed loop, until the
	// list or the duration runs out. The orders must be pending.
	FulfillIDs []string
	// Progress, if set, is called about once a second with the requests completed so far.
	Progress func(done int64, elapsed time.Duration)
}

// LoadResult is what a load run measured. Requests and the latencies are of the accepted
// (201) requests; Errors counts every other answer or failure, refusals included.
type LoadResult struct {
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
	// Refused are the errors that were the server shedding load on purpose: 503 or 429 with
	// Retry-After. RefusedP99Ms is how long a refusal took to come back.
	Refused      int64   `json:"refused"`
	RefusedPerS  float64 `json:"refused_per_s"`
	RefusedP99Ms float64 `json:"refused_p99_ms"`
	// OfferedPerS is the rate asked for in open loop (0 in closed loop). SendLagP99Ms is how
	// late the generator itself sent its requests after their scheduled time: the part of the
	// latencies above that the server is not to blame for (a generator short of CPU or of
	// connections).
	OfferedPerS  float64 `json:"offered_per_s"`
	SendLagP99Ms float64 `json:"send_lag_p99_ms"`
	SendLagMaxMs float64 `json:"send_lag_max_ms"`
}

// errRefused is an answer 503 or 429 with Retry-After: load shed by the server.
type errRefused struct{ status int }

func (e errRefused) Error() string { return fmt.Sprintf("refused with status %d", e.status) }

// Run drives the load and returns what was measured after the warm-up.
func (l APILoad) Run(ctx context.Context) (LoadResult, error) {
	if l.Concurrency < 1 || l.Duration <= 0 || l.SKUs < 1 {
		return LoadResult{}, fmt.Errorf("api load needs concurrency, duration and skus above zero")
	}
	if l.FulfillIDs != nil && l.Rate > 0 {
		return LoadResult{}, fmt.Errorf("the fulfill load is closed loop only")
	}
	var nextFulfill atomic.Int64
	if _, err := newHTTPConn(l.URL); err != nil {
		return LoadResult{}, err
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
		refusals  []time.Duration
		lags      []time.Duration
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
	auth := "Bearer " + l.Key
	var wg sync.WaitGroup
	for w := range l.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			conn, _ := newHTTPConn(l.URL) // checked above
			defer conn.close()
			headers := []string{"Authorization", auth, "Content-Type", "application/json", "Idempotency-Key", ""}
			body := make([]byte, 0, 128)
			local := make([]time.Duration, 0, 1<<14)
			var localRefused, localLags []time.Duration
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
				path := "/v1/orders"
				if l.FulfillIDs != nil {
					n := nextFulfill.Add(1) - 1
					if n >= int64(len(l.FulfillIDs)) {
						break
					}
					path = "/v1/orders/" + l.FulfillIDs[n] + "/fulfill"
					body = body[:0]
				} else {
					body = append(body[:0], `{"customer_id":"cust-`...)
					body = strconv.AppendInt(body, int64(rng.IntN(100000)), 10)
					body = append(body, `","currency":"EUR","items":[{"sku":"SKU-`...)
					body = strconv.AppendInt(body, int64(1+rng.IntN(l.SKUs)), 10)
					body = append(body, `","quantity":1,"unit_price_cents":1250}]}`...)
				}
				headers[5] = fmt.Sprintf("bench-%s-%d-%d", runID, w, i)
				lag := time.Since(t0)
				err := post(ctx, conn, path, headers, body)
				d := time.Since(t0)
				if t0.Before(measureFrom) {
					continue
				}
				if tickets != nil {
					localLags = append(localLags, lag)
				}
				if err != nil {
					localErrs++
					var refused errRefused
					if errors.As(err, &refused) {
						localRefused = append(localRefused, d)
						continue
					}
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
			refusals = append(refusals, localRefused...)
			lags = append(lags, localLags...)
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
	over := max(l.Duration, time.Since(measureFrom))
	if l.FulfillIDs != nil {
		// A fulfill load ends when its orders run out, often before the duration.
		over = time.Since(measureFrom)
	}
	res := summarize(latencies, over)
	res.Errors = errs
	refused := summarize(refusals, over)
	res.Refused, res.RefusedPerS, res.RefusedP99Ms = refused.Requests, refused.PerSecond, refused.P99Ms
	res.OfferedPerS = l.Rate
	lag := summarize(lags, over)
	res.SendLagP99Ms, res.SendLagMaxMs = lag.P99Ms, lag.MaxMs
	if errs > 0 && len(latencies) == 0 {
		return res, fmt.Errorf("every request failed, first: %w", firstErr)
	}
	return res, nil
}

// post creates or fulfills one order; a refusal by the server (503 or 429 with Retry-After)
// is errRefused.
func post(ctx context.Context, c *httpConn, path string, headers []string, body []byte) error {
	resp, err := c.post(ctx, path, headers, body)
	switch {
	case err != nil:
		return err
	case resp.status == http.StatusCreated, resp.status == http.StatusOK:
		return nil
	case (resp.status == http.StatusServiceUnavailable || resp.status == http.StatusTooManyRequests) && resp.retryAfter:
		return errRefused{status: resp.status}
	}
	return fmt.Errorf("status %d: %.200s", resp.status, resp.body)
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

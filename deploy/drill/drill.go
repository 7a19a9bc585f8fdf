package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// errBroken marks a run whose invariants did not hold.
var errBroken = errors.New("invariants broken")

type config struct {
	root        string
	orders      int
	clients     int
	resendRatio float64
	faults      bool
	settle      time.Duration
	duration    time.Duration
	env         map[string]string
	// soak, when set, replaces the fault schedule with one Kafka outage this long (soak.go),
	// under rate orders per second.
	soak time.Duration
	rate float64
}

type drill struct {
	cfg config
	out io.Writer
	log io.Writer

	accepted sync.Map // order id -> struct{}
	created  atomic.Int64
	replays  atomic.Int64
	retries  atomic.Int64
	injected []string
	mu       sync.Mutex
	started  time.Time
	svcOnce  sync.Once
	svcs     []string
	// svcEnv is the extra environment a service runs with during the drill (the partner's
	// faults, the deliverer's short timeouts); every restart passes it again.
	svcEnv map[string][]string
	// notes are figures of the faults and the soak for the report, "name\tvalue" (under mu).
	notes []string
}

// drillEnv makes the partner fail the way issue 5 asks (30% 5xx, 10% timeouts, some
// commit-then-500, 5% rejected orders) and gives the deliverer timeouts and backoffs short
// enough that a drill converges in minutes rather than hours.
var drillEnv = map[string][]string{
	"partner": {"PARTNER_ERROR_RATE=0.3", "PARTNER_TIMEOUT_RATE=0.1", "PARTNER_COMMIT_THEN_500_RATE=0.05",
		"PARTNER_REJECT_RATIO=0.05", "PARTNER_HANG=5s", "PARTNER_FULFILL_DELAY=200ms"},
	"deliver": {"DELIVER_TIMEOUT=2s", "DELIVER_BASE_BACKOFF=200ms", "DELIVER_MAX_BACKOFF=5s", "DELIVER_PER_ENDPOINT=64",
		"DELIVER_POLL=100ms"},
}

func (d *drill) logf(format string, args ...any) {
	fmt.Fprintf(d.log, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func (d *drill) run(ctx context.Context) error {
	start := time.Now()
	d.started = start.Add(-time.Second).UTC() // the database clock may be a little behind
	if err := d.stock(ctx); err != nil {
		return err
	}
	d.svcEnv = map[string][]string{}
	if d.cfg.faults {
		for svc, env := range drillEnv {
			if d.hasService(svc) {
				d.svcEnv[svc] = env
				d.logf("restarting %s with %s", svc, strings.Join(env, " "))
				d.stack(ctx, "stop", svc)
				d.stack(ctx, "start", svc)
			}
		}
		// Whatever happens, leave the stack as 'make up' runs it.
		defer func() {
			d.svcEnv = nil
			for svc := range drillEnv {
				if d.hasService(svc) {
					d.stack(context.Background(), "stop", svc)
					d.stack(context.Background(), "start", svc)
				}
			}
		}()
	}
	loadCtx, cancelLoad := context.WithCancel(ctx)
	defer cancelLoad()
	faultsDone := make(chan struct{})
	go func() {
		defer close(faultsDone)
		switch {
		case d.cfg.soak > 0:
			d.soakKafkaOutage(loadCtx)
		case d.cfg.faults:
			d.injectFaults(loadCtx)
		}
	}()
	d.logf("load: %d orders from %d clients over %s, %.0f%% sent twice", d.cfg.orders, d.cfg.clients, d.cfg.duration, d.cfg.resendRatio*100)
	if err := d.load(ctx); err != nil {
		return err
	}
	<-faultsDone
	loadTime := time.Since(start)
	d.logf("load done in %s: %d created, %d replays, %d retried requests", loadTime.Round(time.Second),
		d.created.Load(), d.replays.Load(), d.retries.Load())
	// Every fault restarts what it stopped. The servers are started once more in case a
	// restart of the drill's own failed; the services never are: one that died by itself must
	// be found dead at settle (issue 12: a harness never heals what it tests).
	d.stack(ctx, "start", "postgres", "kafka")
	settleStart := time.Now()
	res, err := d.settle(ctx)
	if err != nil {
		return err
	}
	res.converge = time.Since(settleStart)
	return d.report(res)
}

// services is the stack's service list, asked of stack.sh once: the settle loop consults it
// every two seconds and must not fork a shell each time.
func (d *drill) services() []string {
	d.svcOnce.Do(func() {
		out, err := exec.Command(d.cfg.root+"/deploy/local/stack.sh", "services").Output()
		if err != nil {
			d.svcs = []string{"api", "capture"}
			return
		}
		d.svcs = strings.Fields(string(out))
	})
	return d.svcs
}

func (d *drill) hasService(name string) bool {
	for _, s := range d.services() {
		if s == name {
			return true
		}
	}
	return false
}

// stack runs deploy/local/stack.sh with args, logging its output.
func (d *drill) stack(ctx context.Context, args ...string) {
	cmd := exec.CommandContext(ctx, d.cfg.root+"/deploy/local/stack.sh", args...)
	cmd.Env = os.Environ()
	if len(args) > 0 && args[0] == "start" {
		for _, svc := range args[1:] {
			cmd.Env = append(cmd.Env, d.svcEnv[svc]...)
		}
	}
	out, err := cmd.CombinedOutput()
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			d.logf("  stack: %s", l)
		}
	}
	if err != nil {
		d.logf("  stack %v: %v", args, err)
	}
}

// pid is the pid in NAME's pid file, 0 if there is none.
func (d *drill) pid(name string) int {
	b, err := os.ReadFile(d.cfg.root + "/.local/run/" + name + ".pid")
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	return pid
}

func (d *drill) kill9(name string) {
	pid := d.pid(name)
	if pid <= 0 {
		d.logf("fault: %s has no pid file", name)
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	// Wait until it is gone (or a zombie), so the restart that follows does not see it alive.
	for range 100 {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		if f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:])); len(f) > 0 && (f[0] == "Z" || f[0] == "X") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.logf("fault: %s (pid %d) still alive 5 s after SIGKILL", name, pid)
}

type fault struct {
	name string
	do   func(ctx context.Context)
}

// injectFaults spreads the schedule over the expected length of the load: each fault waits
// until its share of the orders has been created.
func (d *drill) injectFaults(ctx context.Context) {
	var schedule []fault
	killAndRestart := func(svc string) fault {
		return fault{"kill -9 " + svc, func(ctx context.Context) {
			killed := d.pid(svc)
			d.kill9(svc)
			time.Sleep(time.Duration(500+rand.IntN(1500)) * time.Millisecond)
			// Restart what this fault killed, until it is a new process: a clean-clone run
			// once saw stack.sh take the killed deliverer for a running one ("deliver:
			// running" with the killed pid), and the drill then waited for a pipeline
			// without a deliverer.
			for range 20 {
				d.stack(ctx, "start", svc)
				if p := d.pid(svc); p != killed || ctx.Err() != nil {
					return
				}
				d.logf("fault: %s still shows the killed pid %d; starting it again", svc, killed)
				time.Sleep(500 * time.Millisecond)
			}
		}}
	}
	for range 10 {
		schedule = append(schedule, killAndRestart("capture"))
	}
	for _, svc := range []string{"project", "deliver"} {
		if d.hasService(svc) {
			n := map[string]int{"project": 5, "deliver": 3}[svc]
			for range n {
				schedule = append(schedule, killAndRestart(svc))
			}
		}
	}
	if d.kafkaNodes() == 3 {
		for range 2 {
			schedule = append(schedule, d.killPartitionLeader())
		}
	}
	schedule = append(schedule, d.dropSlotWhileCaptureDown())
	for range 2 {
		schedule = append(schedule, fault{"kafka stop/start", func(ctx context.Context) {
			d.stack(ctx, "stop", "kafka")
			time.Sleep(5 * time.Second)
			d.stack(ctx, "start", "kafka")
		}})
	}
	schedule = append(schedule, fault{"postgres restart", func(ctx context.Context) {
		d.stack(ctx, "stop", "postgres")
		time.Sleep(2 * time.Second)
		d.stack(ctx, "start", "postgres")
	}})
	rand.Shuffle(len(schedule), func(i, j int) { schedule[i], schedule[j] = schedule[j], schedule[i] })
	for i, f := range schedule {
		threshold := int64(float64(d.cfg.orders) * float64(i+1) / float64(len(schedule)+1))
		for d.created.Load() < threshold {
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		d.logf("fault %d/%d at %d orders: %s", i+1, len(schedule), d.created.Load(), f.name)
		f.do(ctx)
		d.mu.Lock()
		d.injected = append(d.injected, f.name)
		d.mu.Unlock()
	}
}

func (d *drill) api(ctx context.Context, method, path, key, idemKey, body string) (int, []byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, method, d.cfg.env["API_URL"]+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header, err
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

const drillSKUs = 50

func (d *drill) stock(ctx context.Context) error {
	for i := 1; i <= drillSKUs; i++ {
		st, b, _, err := d.api(ctx, http.MethodPut, fmt.Sprintf("/v1/inventory/DRILL-%d", i), d.cfg.env["ADMIN_API_KEY"], "", `{"stock": 1000000000}`)
		if err != nil || st != http.StatusOK {
			return fmt.Errorf("stocking DRILL-%d: %d %s %v", i, st, b, err)
		}
	}
	return nil
}

// createWithRetry is what a careful client does: on a network error or a 5xx it retries with
// the same key until it gets an answer, so an outage never makes a second order.
func (d *drill) createWithRetry(ctx context.Context, key, body string) (string, bool, error) {
	deadline := time.Now().Add(3 * time.Minute)
	backoff := 100 * time.Millisecond
	for {
		st, b, h, err := d.api(ctx, http.MethodPost, "/v1/orders", d.cfg.env["API_KEY"], key, body)
		if err == nil && st == http.StatusCreated {
			var o struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(b, &o); err != nil || o.ID == "" {
				return "", false, fmt.Errorf("201 without an order id: %s", b)
			}
			return o.ID, h.Get("Idempotent-Replayed") == "true", nil
		}
		if err == nil && st < 500 {
			return "", false, fmt.Errorf("order %s refused: %d %s", key, st, b)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "", false, fmt.Errorf("order %s: no answer after retries: %d %v", key, st, err)
		}
		d.retries.Add(1)
		time.Sleep(backoff)
		backoff = min(backoff*2, 2*time.Second)
	}
}

func (d *drill) load(ctx context.Context) error {
	run := strconv.FormatInt(time.Now().Unix(), 36)
	jobs := make(chan int)
	errc := make(chan error, d.cfg.clients)
	var wg sync.WaitGroup
	for range d.cfg.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range jobs {
				key := fmt.Sprintf("drill-%s-%d", run, n)
				body := fmt.Sprintf(`{"customer_id":"drill-cust-%d","currency":"EUR","items":[{"sku":"DRILL-%d","quantity":%d,"unit_price_cents":%d}]}`,
					n%500, 1+n%drillSKUs, 1+n%3, 100+n%900)
				id, _, err := d.createWithRetry(ctx, key, body)
				if err != nil {
					errc <- err
					return
				}
				d.accepted.Store(id, struct{}{})
				d.created.Add(1)
				if rand.Float64() < d.cfg.resendRatio {
					id2, replayed, err := d.createWithRetry(ctx, key, body)
					if err != nil {
						errc <- err
						return
					}
					if id2 != id || !replayed {
						errc <- fmt.Errorf("resend of %s answered order %s (replayed=%v), want %s", key, id2, replayed, id)
						return
					}
					d.replays.Add(1)
				}
			}
		}()
	}
	// The load is paced over cfg.duration so the fault schedule, spread by order count,
	// lands while orders are still being written rather than after.
	interval := d.cfg.duration / time.Duration(max(1, d.cfg.orders))
	began := time.Now()
	for n := 0; n < d.cfg.orders; n++ {
		if wait := time.Until(began.Add(time.Duration(n) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		select {
		case jobs <- n:
		case err := <-errc:
			close(jobs)
			wg.Wait()
			return err
		case <-ctx.Done():
			close(jobs)
			wg.Wait()
			return ctx.Err()
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func (d *drill) connect(ctx context.Context) (*pgx.Conn, error) {
	var err error
	for range 60 {
		var c *pgx.Conn
		if c, err = pgx.Connect(ctx, d.cfg.env["DATABASE_URL"]); err == nil {
			return c, nil
		}
		time.Sleep(time.Second)
	}
	return nil, fmt.Errorf("connecting to the database: %w", err)
}

func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "export ") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok {
			env[k] = strings.Trim(v, `'"`)
		}
	}
	return env, sc.Err()
}

func envInt(getenv func(string) string, name string, def int) int {
	if n, err := strconv.Atoi(getenv(name)); err == nil {
		return n
	}
	return def
}

// Command drill is orderflow's failure drill (make drill): it drives orders through the real
// stack that 'make up' started while killing and restarting its parts, waits for the pipeline
// to settle, and checks the promises against the database and the topic, never the logs.
//
//	go run ./deploy/drill -orders 20000
//
// It exits 1 naming every broken invariant.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "drill: %v\n", err)
		if errors.Is(err, errBroken) {
			os.Exit(1)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("drill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config{}
	fs.StringVar(&cfg.root, "root", ".", "the orderflow checkout whose stack 'make up' started")
	fs.IntVar(&cfg.orders, "orders", envInt(getenv, "DRILL_ORDERS", 20000), "orders to create (env DRILL_ORDERS)")
	fs.IntVar(&cfg.clients, "clients", 16, "concurrent clients")
	fs.Float64Var(&cfg.resendRatio, "resend", 0.1, "share of orders whose request is sent twice with the same key")
	fs.BoolVar(&cfg.faults, "faults", true, "inject the fault schedule")
	fs.DurationVar(&cfg.settle, "settle-timeout", 5*time.Minute, "longest wait for the pipeline to settle after the load")
	fs.DurationVar(&cfg.duration, "duration", 0, "spread the orders over this long (default: 100 orders/s, at least 90 s, so the 21 faults land during the load)")
	fs.DurationVar(&cfg.soak, "soak-kafka-outage", envDuration(getenv, "SOAK_OUTAGE", 0), "soak instead of the fault schedule: stop Kafka this long during a steady load, then check everything and report the catch-up (env SOAK_OUTAGE; make soak)")
	fs.Float64Var(&cfg.rate, "rate", envFloat(getenv, "SOAK_RATE", 100), "orders per second during a soak (env SOAK_RATE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.soak > 0 {
		// The soak's one fault is the outage: no partner faults, and as many orders as the
		// rate makes over the warmup, the outage and the cooldown.
		cfg.faults = false
		cfg.duration = soakLength(cfg.soak)
		cfg.orders = int(cfg.rate * cfg.duration.Seconds())
	}
	if cfg.duration <= 0 {
		cfg.duration = max(90*time.Second, time.Duration(cfg.orders)*10*time.Millisecond)
	}
	env, err := readEnv(cfg.root + "/.local/env")
	if err != nil {
		return fmt.Errorf("reading the stack's environment (run 'make up' first): %w", err)
	}
	cfg.env = env
	d := &drill{cfg: cfg, out: stdout, log: stderr}
	return d.run(ctx)
}

func envDuration(getenv func(string) string, name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(getenv(name)); err == nil {
		return d
	}
	return def
}

func envFloat(getenv func(string) string, name string, def float64) float64 {
	if f, err := strconv.ParseFloat(getenv(name), 64); err == nil {
		return f
	}
	return def
}

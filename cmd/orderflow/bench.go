package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"orderflow/bench"
)

// runBench runs one load generator and prints its result as JSON on stdout; bench/run.sh
// drives the whole benchmark, limits included.
func runBench(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: orderflow bench api [flags]   (the full benchmark is 'make bench')")
		return errUsage
	}
	switch args[0] {
	case "api":
		return runBenchAPI(ctx, args[1:], getenv, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "orderflow bench: unknown benchmark %q\n", args[0])
		return errUsage
	}
}

func runBenchAPI(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench api", stderr)
	l := bench.APILoad{}
	fs.StringVar(&l.URL, "api-url", getenv("API_URL"), "API base URL (env API_URL)")
	fs.StringVar(&l.Key, "api-key", getenv("API_KEY"), "client API key (env API_KEY)")
	fs.IntVar(&l.Concurrency, "concurrency", 16, "concurrent clients, each with one request in flight (with -rate: the most in flight)")
	fs.Float64Var(&l.Rate, "rate", 0, "open loop: requests per second, latency counted from the scheduled time (0: closed loop)")
	fs.DurationVar(&l.Duration, "duration", 20*time.Second, "measured duration")
	fs.DurationVar(&l.Warmup, "warmup", 3*time.Second, "unmeasured warm-up")
	fs.IntVar(&l.SKUs, "skus", 1000, "SKUs to spread orders over (SKU-1 .. SKU-n, stocked beforehand)")
	fulfillFile := fs.String("fulfill-ids", "", "fulfill instead: a file of pending order ids, one a line, each fulfilled once (closed loop; -api-key a fulfiller's)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireFlag("api-url", l.URL, "API_URL"); err != nil {
		return err
	}
	if *fulfillFile != "" {
		b, err := os.ReadFile(*fulfillFile)
		if err != nil {
			return fmt.Errorf("reading order ids: %w", err)
		}
		l.FulfillIDs = strings.Fields(string(b))
	}
	l.Progress = func(done int64, elapsed time.Duration) {
		fmt.Fprintf(stderr, "\r  api load: %6.0fs  %8d orders", elapsed.Seconds(), done)
	}
	res, err := l.Run(ctx)
	fmt.Fprintln(stderr)
	if err != nil {
		return fmt.Errorf("running api load: %w", err)
	}
	return json.NewEncoder(stdout).Encode(res)
}

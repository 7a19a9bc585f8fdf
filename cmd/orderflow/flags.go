package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// newFlagSet returns a flag set that reports to stderr and never exits the process.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("orderflow "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args and turns -h and bad flags into errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errUsage
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	return nil
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// newLogger logs JSON to stderr at the level named by LOG_LEVEL (debug, info, warn, error).
func newLogger(getenv func(string) string, stderr io.Writer, component string) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(envOr(getenv, "LOG_LEVEL", "info")))
	return slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})).With("component", component)
}

func requireFlag(name, value, env string) error {
	if value == "" {
		return fmt.Errorf("%w: -%s is required (or set %s)", errUsage, name, env)
	}
	return nil
}

// envInt, envFloat and envDuration give flags their environment defaults. A malformed value
// falls back to def; commands that cannot afford that (capture) validate their variables.
func envInt(getenv func(string) string, name string, def int) int {
	if n, err := strconv.Atoi(getenv(name)); err == nil {
		return n
	}
	return def
}

func envFloat(getenv func(string) string, name string, def float64) float64 {
	if f, err := strconv.ParseFloat(getenv(name), 64); err == nil {
		return f
	}
	return def
}

func envDuration(getenv func(string) string, name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(getenv(name)); err == nil {
		return d
	}
	return def
}

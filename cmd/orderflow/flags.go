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

// envDefaults gives flags their defaults from the environment. Every command treats a malformed
// value the same way: it is a usage error naming the variable, never silently replaced by the
// built-in default, because a setting the operator believes is in force must be in force. The
// methods return def for a malformed value and remember the error; check err before parsing.
type envDefaults struct {
	getenv func(string) string
	errs   []error
}

func newEnvDefaults(getenv func(string) string) *envDefaults {
	return &envDefaults{getenv: getenv}
}

// lookup returns the variable's value, or ok false when it is unset or empty.
func (e *envDefaults) lookup(name string) (string, bool) {
	v := e.getenv(name)
	return v, v != ""
}

func (e *envDefaults) malformed(name, value, want string) {
	e.errs = append(e.errs, fmt.Errorf("%s=%q: %s", name, value, want))
}

func (e *envDefaults) Int(name string, def int) int {
	v, ok := e.lookup(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.malformed(name, v, "not an integer")
		return def
	}
	return n
}

func (e *envDefaults) Float(name string, def float64) float64 {
	v, ok := e.lookup(name)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		e.malformed(name, v, "not a number")
		return def
	}
	return f
}

func (e *envDefaults) Duration(name string, def time.Duration) time.Duration {
	v, ok := e.lookup(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.malformed(name, v, "not a duration (such as 250ms, 10s or 1h)")
		return def
	}
	return d
}

func (e *envDefaults) Bool(name string, def bool) bool {
	v, ok := e.lookup(name)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.malformed(name, v, "not a boolean (true or false)")
		return def
	}
	return b
}

// err reports every malformed variable read so far as one usage error.
func (e *envDefaults) err() error {
	if len(e.errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", errUsage, errors.Join(e.errs...))
}

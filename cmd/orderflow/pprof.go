package main

import (
	"context"
	"flag"
	"log/slog"
	"net/http"
	"net/http/pprof"

	"orderflow/internal/httpserver"
)

// pprofHandler serves the runtime profiles on their own listener, never on a public port.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// pprofFlag declares a service's -pprof-addr (api, capture, project, deliver, partner).
func pprofFlag(fs *flag.FlagSet, getenv func(string) string) *string {
	return fs.String("pprof-addr", getenv("PPROF_ADDR"), "serve /debug/pprof on this separate address (e.g. 127.0.0.1:6062), for profiling; off when empty (env PPROF_ADDR)")
}

// servePprof serves the profiles on addr until ctx ends; with no addr it returns at once.
func servePprof(ctx context.Context, addr string, log *slog.Logger) error {
	if addr == "" {
		return nil
	}
	return httpserver.Serve(ctx, addr, pprofHandler(), log.With("server", "pprof"), nil)
}

package main

import (
	"context"
	"log/slog"
	"time"

	"orderflow/internal/tracing"
)

// startTracing installs the OpenTelemetry SDK for the service when the standard OTEL_*
// environment names a collector (docs/TRACING.md); otherwise nothing starts. The returned stop
// flushes the spans still buffered, within a bound, and must run before the command returns:
// the last spans of a run are the ones a shutdown would otherwise lose.
func startTracing(ctx context.Context, service string, getenv func(string) string, log *slog.Logger) (stop func(), err error) {
	shutdown, err := tracing.Setup(ctx, "orderflow-"+service, getenv)
	if err != nil {
		return nil, err
	}
	if tracing.Enabled() {
		log.Info("exporting spans over OTLP/HTTP")
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			log.Warn("flushing spans", "err", err)
		}
	}, nil
}

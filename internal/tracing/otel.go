package tracing

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Setup installs the OpenTelemetry SDK for serviceName, exporting spans over OTLP/HTTP, when the
// standard environment asks for it:
//
//   - OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the full URL, such as http://collector:4318/v1/traces)
//     or OTEL_EXPORTER_OTLP_ENDPOINT (the base URL; /v1/traces is appended) names the collector;
//   - OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turn it off;
//   - OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf if set (grpc is not built in);
//   - OTEL_SERVICE_NAME overrides serviceName; the exporter and sampler read the other
//     OTEL_EXPORTER_OTLP_* and OTEL_TRACES_SAMPLER* variables themselves.
//
// Without an endpoint it does nothing at all: no goroutine, no connection, and the global
// tracer provider stays OpenTelemetry's no-op one, so instrumented code costs next to nothing.
// The traceparent still travels (see FromContext). It returns the function that flushes the
// spans still buffered and stops the exporter; call it before the process exits.
func Setup(ctx context.Context, serviceName string, getenv func(string) string) (shutdown func(context.Context) error, err error) {
	off := func(context.Context) error { return nil }
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") || getenv("OTEL_TRACES_EXPORTER") == "none" {
		return off, nil
	}
	endpoint := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if endpoint == "" {
		if base := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); base != "" {
			endpoint = strings.TrimSuffix(base, "/") + "/v1/traces"
		}
	}
	if endpoint == "" {
		return off, nil
	}
	if p := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"); p != "" && p != "http/protobuf" {
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=%q: only http/protobuf is supported", p)
	}
	if p := getenv("OTEL_EXPORTER_OTLP_PROTOCOL"); p != "" && p != "http/protobuf" && getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") == "" {
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: only http/protobuf is supported", p)
	}
	if name := getenv("OTEL_SERVICE_NAME"); name != "" {
		serviceName = name
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		return nil, fmt.Errorf("creating the OTLP exporter for %s: %w", endpoint, err)
	}
	res, err := resource.Merge(resource.Default(),
		resource.NewSchemaless(attribute.String("service.name", serviceName)))
	if err != nil && !errors.Is(err, resource.ErrSchemaURLConflict) {
		return nil, fmt.Errorf("describing the service to OpenTelemetry: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	enabled.Store(true)
	return func(ctx context.Context) error {
		enabled.Store(false)
		return tp.Shutdown(ctx)
	}, nil
}

// enabled is whether Setup installed an exporting provider.
var enabled atomic.Bool

// Enabled reports whether spans are exported. Hot paths (capture's produce loop, the projector's
// batches) ask it before making a span at all, so that with tracing off they pay one atomic load
// and allocate nothing.
func Enabled() bool { return enabled.Load() }

// Start starts the span name with tracer as the child of tp, or of a new trace when tp is not
// valid (absent or malformed upstream). With the SDK off it returns OpenTelemetry's non-recording
// span, and the returned context still carries a traceparent (tp, or a new one) for FromContext,
// so what is sent on continues the same trace either way.
func Start(ctx context.Context, tracer trace.Tracer, name string, tp TraceParent, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	switch {
	case tp.IsValid():
		ctx = ContextWith(ctx, tp)
	case !Enabled():
		ctx = ContextWith(ctx, New())
	default:
		// The SDK makes a root span, whose ids are the new trace's.
		ctx = trace.ContextWithSpanContext(ctx, trace.SpanContext{})
	}
	return tracer.Start(ctx, name, opts...)
}

// Tracer is the OpenTelemetry tracer of one orderflow component, such as "orderflow/capture".
// It follows the global provider, so a tracer taken before Setup exports once Setup ran.
func Tracer(component string) trace.Tracer { return otel.Tracer(component) }

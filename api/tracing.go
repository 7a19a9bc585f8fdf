package api

import (
	"net/http"

	"github.com/gorilla/mux"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"orderflow/internal/tracing"
)

// HeaderTraceResponse answers every traced request with the traceparent of the API's own span
// for it (W3C Trace Context Level 2's traceresponse): a client that sent no traceparent learns
// the trace its order's events carry, and one that did learns its span's child.
const HeaderTraceResponse = "traceresponse"

var tracer = tracing.Tracer("orderflow/api")

// traced runs each routed request in a server span named by its route template (never the raw
// path), continuing the request's traceparent when it is valid and starting a new trace
// otherwise, as W3C Trace Context asks of a receiver. The handler's context carries the span, so
// an outbox row written for the request stores its traceparent (postgres.queueEvent) and the
// event continues this trace down the pipeline. With the SDK off the span is a no-op and the
// context still carries the traceparent.
func (s *Server) traced(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var parent tracing.TraceParent
		if h := r.Header.Get(tracing.Header); h != "" {
			parent, _ = tracing.Parse(h)
		}
		if !tracing.Enabled() {
			// No span to make: the request's traceparent (or a new one) is all that travels.
			if !parent.IsValid() {
				parent = tracing.New()
			}
			w.Header()[HeaderTraceResponse] = []string{parent.String()}
			next.ServeHTTP(w, r.WithContext(tracing.ContextWith(r.Context(), parent)))
			return
		}
		route := "unmatched"
		if cr := mux.CurrentRoute(r); cr != nil {
			if t, err := cr.GetPathTemplate(); err == nil {
				route = t
			}
		}
		ctx, span := tracing.Start(r.Context(), tracer, r.Method+" "+route, parent,
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", methodLabel(r.Method)), attribute.String("http.route", route)))
		defer span.End()
		if tp, ok := tracing.FromContext(ctx); ok {
			w.Header().Set(HeaderTraceResponse, tp.String())
		}
		if !span.IsRecording() {
			next.ServeHTTP(w, r.WithContext(ctx))
			return
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r.WithContext(ctx))
		span.SetAttributes(attribute.Int("http.response.status_code", rec.status))
		if rec.status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(rec.status))
		}
	})
}

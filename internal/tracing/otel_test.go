package tracing

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

func env(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }

// Off by default: without an endpoint Setup starts nothing, changes no global, and spans are
// not recorded. Not parallel, so that the goroutine count is this test's alone.
func TestSetupWithoutEndpointStartsNothing(t *testing.T) {
	for _, vars := range []map[string]string{
		{},
		{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
		{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
	} {
		before := otel.GetTracerProvider()
		goroutines := runtime.NumGoroutine()
		shutdown, err := Setup(context.Background(), "orderflow-test", env(vars))
		if err != nil {
			t.Fatalf("%v: %v", vars, err)
		}
		_, span := otel.Tracer("test").Start(ContextWith(context.Background(), New()), "work")
		recording := span.IsRecording()
		span.End()
		if err := shutdown(context.Background()); err != nil {
			t.Errorf("%v: shutdown: %v", vars, err)
		}
		if otel.GetTracerProvider() != before {
			t.Errorf("%v: the global tracer provider changed", vars)
		}
		if recording {
			t.Errorf("%v: a span was recorded with tracing off", vars)
		}
		if n := runtime.NumGoroutine(); n > goroutines {
			t.Errorf("%v: %d goroutines after Setup, %d before", vars, n, goroutines)
		}
	}
}

func TestSetupRefusesAProtocolItCannotSpeak(t *testing.T) {
	t.Parallel()
	for _, vars := range []map[string]string{
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
	} {
		if _, err := Setup(context.Background(), "x", env(vars)); err == nil || !strings.Contains(err.Error(), "http/protobuf") {
			t.Errorf("%v: %v, want a refusal naming http/protobuf", vars, err)
		}
	}
}

// receiver is a minimal OTLP/HTTP collector: it keeps every span exported to it.
type receiver struct {
	mu    sync.Mutex
	paths []string
	spans []*tracepb.ResourceSpans
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.paths = append(rc.paths, r.Method+" "+r.URL.Path)
	rc.spans = append(rc.spans, req.ResourceSpans...)
	rc.mu.Unlock()
	resp, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp)
}

// With an endpoint, spans reach the collector, in the trace the traceparent names, as children of
// the span it names, under the service's name. Not parallel: it sets the global provider.
func TestSetupExportsSpansToTheCollector(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	before := otel.GetTracerProvider()
	t.Cleanup(func() { otel.SetTracerProvider(before) })

	shutdown, err := Setup(context.Background(), "orderflow-test", env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL + "/"}))
	if err != nil {
		t.Fatal(err)
	}
	parent := New()
	ctx, span := otel.Tracer("orderflow/test").Start(ContextWith(context.Background(), parent), "projection")
	next, ok := FromContext(ctx)
	if !ok || next.TraceID != parent.TraceID || next.SpanID == parent.SpanID || next.SpanID != span.SpanContext().SpanID() {
		t.Errorf("FromContext inside a recording span = %v, want the span (trace %s, a new span id)", next, parent.TraceIDString())
	}
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.paths) == 0 || rc.paths[0] != "POST /v1/traces" {
		t.Fatalf("collector got %v, want POST /v1/traces", rc.paths)
	}
	var found bool
	for _, rs := range rc.spans {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				if s.Name != "projection" {
					continue
				}
				found = true
				if string(s.TraceId) != string(parent.TraceID[:]) || string(s.ParentSpanId) != string(parent.SpanID[:]) {
					t.Errorf("span in trace %x under %x, want trace %x under %x", s.TraceId, s.ParentSpanId, parent.TraceID, parent.SpanID)
				}
				if service != "orderflow-test" {
					t.Errorf("service.name %q, want orderflow-test", service)
				}
			}
		}
	}
	if !found {
		t.Fatal("the span never reached the collector")
	}
}

// With the SDK off, Start passes a valid traceparent on unchanged and starts a new trace for an
// invalid one, so every hop still sends one; nothing is recorded. Not parallel: it reads the
// global provider.
func TestStartWithTheSDKOff(t *testing.T) {
	if Enabled() {
		t.Fatal("tracing enabled without Setup")
	}
	tr := Tracer("orderflow/test")
	in := New()
	ctx, span := Start(context.Background(), tr, "work", in)
	if got, ok := FromContext(ctx); !ok || got != in || span.IsRecording() {
		t.Errorf("Start(valid) carries %v (%v), recording %v; want %v unchanged, not recording", got, ok, span.IsRecording(), in)
	}
	span.End()
	ctx, span = Start(context.Background(), tr, "work", TraceParent{})
	if got, ok := FromContext(ctx); !ok || !got.IsValid() || got.TraceID == in.TraceID {
		t.Errorf("Start(invalid) carries %v (%v), want a new trace", got, ok)
	}
	span.End()
	if _, ok := FromContext(context.Background()); ok {
		t.Error("FromContext of an empty context found a trace")
	}
	if s := StringFromContext(context.Background()); s != "" {
		t.Errorf("StringFromContext of an empty context = %q", s)
	}
}

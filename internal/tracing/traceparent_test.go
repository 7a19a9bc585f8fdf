package tracing

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

const sample = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestParse(t *testing.T) {
	t.Parallel()
	tp, err := Parse(sample)
	if err != nil {
		t.Fatal(err)
	}
	if tp.TraceIDString() != "4bf92f3577b34da6a3ce929d0e0e4736" || !tp.Sampled() || tp.String() != sample {
		t.Errorf("parsed %+v, formats as %s", tp, tp)
	}
	unsampled, err := Parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	if err != nil || unsampled.Sampled() {
		t.Errorf("flags 00: %+v %v", unsampled, err)
	}
	// A later version may add fields; what this version knows is read, the rest ignored.
	future, err := Parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-brings")
	if err != nil || future.String() != sample {
		t.Errorf("future version: %v %v", future, err)
	}
	for _, bad := range []struct{ in, why string }{
		{"", "malformed"},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", "malformed"},
		{sample + "-00", "malformed"}, // version 00 has exactly four fields
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version"},
		{"0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version"},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "lower-case"},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01", "lower-case"},
		{"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", "lower-case"},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x", "flags"},
		{"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "malformed"},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", "all-zero"},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "all-zero"},
		{"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", "malformed"},
	} {
		if tp, err := Parse(bad.in); err == nil || !strings.Contains(err.Error(), bad.why) || tp.IsValid() {
			t.Errorf("Parse(%q) = %v, %v; want an error saying %s", bad.in, tp, err, bad.why)
		}
	}
	if _, err := Parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01"); !errors.Is(err, ErrZeroID) {
		t.Errorf("all-zero trace id: %v, want ErrZeroID", err)
	}
}

func TestNewChildAndParseOrNew(t *testing.T) {
	t.Parallel()
	a, b := New(), New()
	if !a.IsValid() || !a.Sampled() || a.TraceID == b.TraceID || a.SpanID == b.SpanID {
		t.Errorf("New gave %v and %v: want valid, sampled, random", a, b)
	}
	if back, err := Parse(a.String()); err != nil || back != a {
		t.Errorf("round trip of %v: %v %v", a, back, err)
	}
	c := a.Child()
	if c.TraceID != a.TraceID || c.SpanID == a.SpanID || c.Flags != a.Flags {
		t.Errorf("Child of %v is %v: want the same trace, a new span", a, c)
	}
	if got := ParseOrNew(sample); got.String() != sample {
		t.Errorf("ParseOrNew(valid) = %v", got)
	}
	if got := ParseOrNew("garbage"); !got.IsValid() {
		t.Errorf("ParseOrNew(garbage) = %v, want a new trace", got)
	}
}

func TestContext(t *testing.T) {
	t.Parallel()
	if _, ok := FromContext(context.Background()); ok {
		t.Error("an empty context carries a traceparent")
	}
	tp, _ := Parse(sample)
	ctx := ContextWith(context.Background(), tp)
	if got, ok := FromContext(ctx); !ok || got != tp {
		t.Errorf("FromContext = %v %v, want %v", got, ok, tp)
	}
	// OpenTelemetry sees the same trace as a remote parent, so SDK spans become its children.
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsRemote() || sc.TraceID() != tp.TraceID || sc.SpanID() != tp.SpanID || !sc.IsSampled() {
		t.Errorf("span context %+v, want %v as a remote parent", sc, tp)
	}
	if back, ok := FromSpanContext(tp.SpanContext()); !ok || back != tp {
		t.Errorf("FromSpanContext(SpanContext()) = %v %v", back, ok)
	}
	if _, ok := FromSpanContext(trace.SpanContext{}); ok {
		t.Error("an invalid span context became a traceparent")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(sample)
	f.Add("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
	f.Add("00-00000000000000000000000000000000-00f067aa0ba902b7-01")
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := Parse(s)
		if err != nil {
			return
		}
		if !tp.IsValid() {
			t.Fatalf("accepted %q with a zero id", s)
		}
		if back, err := Parse(tp.String()); err != nil || back != tp {
			t.Fatalf("%q -> %v does not round-trip: %v %v", s, tp, back, err)
		}
		if s[:2] == "00" && tp.String() != s {
			t.Fatalf("version 00 %q formats as %q", s, tp)
		}
	})
}

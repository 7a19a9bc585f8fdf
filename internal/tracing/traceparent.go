// Package tracing carries one order's trace through the pipeline: the W3C Trace Context
// traceparent (parse, format, new, and through a context), and the OpenTelemetry SDK with an
// OTLP exporter, which stays off unless the standard OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) names a collector.
//
// The traceparent is what travels: the API takes it from the request (or makes one), stores it
// with the outbox row, capture sends it as the ce_traceparent header (the CloudEvents
// distributed tracing extension), the projector and the deliverer continue it, and the webhook
// carries it to the partner. It works with the SDK off, so ids line up across services whether
// or not spans are exported.
package tracing

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/trace"
)

// TraceParent is a W3C Trace Context traceparent (https://www.w3.org/TR/trace-context/):
// the trace id shared by every span of one order's journey, the id of the span that is the
// parent of the next one, and the flags (bit 0: sampled).
type TraceParent struct {
	TraceID [16]byte
	SpanID  [8]byte
	Flags   byte
}

// Header is the HTTP header of W3C Trace Context that carries a traceparent.
const Header = "traceparent"

// FlagSampled is the sampled bit of the trace flags.
const FlagSampled = 0x01

// Errors of Parse.
var (
	ErrMalformed = errors.New("malformed traceparent")
	ErrZeroID    = errors.New("traceparent with an all-zero id")
)

// Parse reads a traceparent header value. Version 00 must be exactly
// 00-<32 hex>-<16 hex>-<2 hex>; a later version may append fields after a dash, which are
// ignored, as the specification asks. Hex must be lower-case. Version ff and all-zero ids are
// invalid. A caller that gets an error starts a new trace (New) rather than failing the
// request.
func Parse(s string) (TraceParent, error) {
	var tp TraceParent
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return tp, fmt.Errorf("%w: %q", ErrMalformed, s)
	}
	version, ok := lowerHexByte(s[0:2])
	switch {
	case !ok || version == 0xff:
		return tp, fmt.Errorf("%w: version %q", ErrMalformed, s[0:2])
	case version == 0 && len(s) != 55:
		return tp, fmt.Errorf("%w: version 00 with %d characters, want 55", ErrMalformed, len(s))
	case len(s) > 55 && s[55] != '-':
		return tp, fmt.Errorf("%w: %q", ErrMalformed, s)
	}
	if !decodeLowerHex(tp.TraceID[:], s[3:35]) || !decodeLowerHex(tp.SpanID[:], s[36:52]) {
		return TraceParent{}, fmt.Errorf("%w: ids must be lower-case hex: %q", ErrMalformed, s)
	}
	flags, ok := lowerHexByte(s[53:55])
	if !ok {
		return TraceParent{}, fmt.Errorf("%w: flags %q", ErrMalformed, s[53:55])
	}
	tp.Flags = flags
	if tp.TraceID == ([16]byte{}) || tp.SpanID == ([8]byte{}) {
		return TraceParent{}, fmt.Errorf("%w: %q", ErrZeroID, s)
	}
	return tp, nil
}

// String formats tp as a version 00 traceparent, the only version this package writes.
func (tp TraceParent) String() string {
	var b [55]byte
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], tp.TraceID[:])
	b[35] = '-'
	hex.Encode(b[36:52], tp.SpanID[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{tp.Flags})
	return string(b[:])
}

// IsValid reports whether tp has non-zero ids, as every parsed or new traceparent has.
func (tp TraceParent) IsValid() bool {
	return tp.TraceID != ([16]byte{}) && tp.SpanID != ([8]byte{})
}

// Sampled reports the sampled flag.
func (tp TraceParent) Sampled() bool { return tp.Flags&FlagSampled != 0 }

// TraceIDString is the trace id in hex, the form trace backends search by.
func (tp TraceParent) TraceIDString() string { return hex.EncodeToString(tp.TraceID[:]) }

// New starts a trace: random trace and span ids, sampled.
func New() TraceParent {
	tp := TraceParent{Flags: FlagSampled}
	for !tp.IsValid() {
		var b [24]byte
		_, _ = rand.Read(b[:])
		copy(tp.TraceID[:], b[:16])
		copy(tp.SpanID[:], b[16:])
	}
	return tp
}

// Child continues tp's trace with a new span id: the traceparent a component sends on after
// doing its own work under tp.
func (tp TraceParent) Child() TraceParent {
	c := TraceParent{TraceID: tp.TraceID, Flags: tp.Flags}
	for c.SpanID == ([8]byte{}) {
		_, _ = rand.Read(c.SpanID[:])
	}
	return c
}

// ParseOrNew continues the trace of a header value, or starts a new one when the header is
// absent or malformed, which W3C Trace Context asks of a receiver.
func ParseOrNew(s string) TraceParent {
	if tp, err := Parse(s); err == nil {
		return tp
	}
	return New()
}

// SpanContext is tp as OpenTelemetry's remote span context.
func (tp TraceParent) SpanContext() trace.SpanContext {
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tp.TraceID, SpanID: tp.SpanID, TraceFlags: trace.TraceFlags(tp.Flags), Remote: true,
	})
}

// FromSpanContext is an OpenTelemetry span context as a traceparent.
func FromSpanContext(sc trace.SpanContext) (TraceParent, bool) {
	if !sc.IsValid() {
		return TraceParent{}, false
	}
	return TraceParent{TraceID: sc.TraceID(), SpanID: sc.SpanID(), Flags: byte(sc.TraceFlags())}, true
}

// ContextWith returns ctx carrying tp as OpenTelemetry's remote span context, so a span started
// from the returned context (SDK on) is tp's child, and FromContext returns tp (SDK off).
func ContextWith(ctx context.Context, tp TraceParent) context.Context {
	return trace.ContextWithRemoteSpanContext(ctx, tp.SpanContext())
}

// FromContext is the traceparent to send on from ctx: the current span's (SDK on, so the next
// hop becomes its child; sampled or not, its ids are real), or the traceparent ContextWith put
// there, which a span of the no-op provider (SDK off) carries on unchanged. ok is false when ctx
// carries no trace.
func FromContext(ctx context.Context) (TraceParent, bool) {
	return FromSpanContext(trace.SpanContextFromContext(ctx))
}

// StringFromContext is FromContext formatted, or "" when ctx carries no trace: the value a
// nullable traceparent column or an optional header takes.
func StringFromContext(ctx context.Context) string {
	if tp, ok := FromContext(ctx); ok {
		return tp.String()
	}
	return ""
}

func lowerHexByte(s string) (byte, bool) {
	var b [1]byte
	if !decodeLowerHex(b[:], s) {
		return 0, false
	}
	return b[0], true
}

// decodeLowerHex decodes s into dst; upper-case hex is refused, as the specification asks.
func decodeLowerHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	_, err := hex.Decode(dst, []byte(s))
	return err == nil
}

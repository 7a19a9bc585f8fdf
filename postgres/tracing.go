package postgres

import (
	"context"

	"orderflow/internal/tracing"
)

// traceParent is the traceparent an outbox row written under ctx stores (its nullable
// traceparent column, docs/TRACING.md): the span of the request or job that made the change, or
// NULL when ctx carries no trace. Capture sends it on as the record's ce_traceparent.
func traceParent(ctx context.Context) *string {
	s := tracing.StringFromContext(ctx)
	if s == "" {
		return nil
	}
	return &s
}

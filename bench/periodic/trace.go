package main

import (
	"context"
	"sync"

	"github.com/jackc/pgx/v5"
)

// statement is one query as the code under test ran it.
type statement struct {
	sql  string
	args []any
}

// recorder is a pgx tracer that keeps the statements run while it records: the benchmark
// EXPLAINs exactly what the services send, not a copy that could drift from it.
type recorder struct {
	mu    sync.Mutex
	on    bool
	stmts []statement
}

func (r *recorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	if r.on {
		r.stmts = append(r.stmts, statement{sql: d.SQL, args: append([]any(nil), d.Args...)})
	}
	r.mu.Unlock()
	return ctx
}

func (r *recorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// record runs fn and returns the statements it ran.
func (r *recorder) record(fn func()) []statement {
	r.mu.Lock()
	r.on, r.stmts = true, nil
	r.mu.Unlock()
	fn()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on = false
	return r.stmts
}

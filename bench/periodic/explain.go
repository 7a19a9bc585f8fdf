package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// plan is what EXPLAIN (ANALYZE) says of one statement.
type plan struct {
	execMS float64
	// seqScans names the large tables the plan reads whole: a periodic query must not.
	seqScans []string
	summary  string
}

// explain runs EXPLAIN (ANALYZE, FORMAT JSON) of s in a transaction it rolls back, so a
// statement that writes (a claim, a purge batch) can be measured again and again on the same
// rows. large lists the tables a sequential scan of which is a finding.
func explain(ctx context.Context, c *pgx.Conn, s statement, large []string) (plan, error) {
	tx, err := c.Begin(ctx)
	if err != nil {
		return plan{}, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var raw []byte
	if err := tx.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+s.sql, s.args...).Scan(&raw); err != nil {
		return plan{}, fmt.Errorf("explaining %q: %w", oneLine(s.sql), err)
	}
	var out []struct {
		Plan          map[string]any `json:"Plan"`
		ExecutionTime float64        `json:"Execution Time"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || len(out) != 1 {
		return plan{}, errors.Join(errors.New("reading the plan"), err)
	}
	p := plan{execMS: out[0].ExecutionTime}
	var nodes []string
	var walk func(n map[string]any)
	walk = func(n map[string]any) {
		typ, _ := n["Node Type"].(string)
		rel, _ := n["Relation Name"].(string)
		idx, _ := n["Index Name"].(string)
		switch {
		case idx != "":
			nodes = append(nodes, typ+" "+idx)
		case rel != "":
			nodes = append(nodes, typ+" "+rel)
		}
		if typ == "Seq Scan" && slices.Contains(large, rel) {
			p.seqScans = append(p.seqScans, rel)
		}
		if kids, ok := n["Plans"].([]any); ok {
			for _, k := range kids {
				if m, ok := k.(map[string]any); ok {
					walk(m)
				}
			}
		}
	}
	walk(out[0].Plan)
	p.summary = strings.Join(nodes, ", ")
	return p, nil
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 90 {
		s = s[:90] + "…"
	}
	return s
}

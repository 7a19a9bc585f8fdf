package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"orderflow/internal/testenv"
)

// TestFailingSinceFollowsTheAttempts: the trigger on webhook_delivery_attempts keeps each
// endpoint's failing_since at the start of its current run of failures, batch by batch, and
// DisableFailingEndpoints disables an endpoint once that run is old enough, once.
func TestFailingSinceFollowsTheAttempts(t *testing.T) {
	t.Parallel()
	db, dsn := mustDB(t)
	ctx := context.Background()
	c := testenv.Connect(t, dsn)
	a, err := db.CreateEndpoint(ctx, "https://a.example/hook", []string{"*"}, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	testenv.Must(t, err, "creating endpoint a")
	b, err := db.CreateEndpoint(ctx, "https://b.example/hook", []string{"*"}, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	testenv.Must(t, err, "creating endpoint b")
	delivery := map[string]string{}
	for name, ep := range map[string]string{"a": a.ID, "b": b.ID} {
		var id string
		testenv.Must(t, c.QueryRow(ctx, `INSERT INTO webhook_deliveries (event_id, endpoint_id, event_type, subject, payload)
			VALUES ($1, $2, 'order.created', 'o', '{}') RETURNING id::text`, "ev-"+name, ep).Scan(&id), "seeding a delivery")
		delivery[name] = id
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(minutes int) time.Time { return t0.Add(time.Duration(minutes) * time.Minute) }
	type attempt struct {
		endpoint string
		minute   int
		ok       bool
	}
	// record inserts a batch of attempts in one statement, as RecordAttempts does.
	record := func(batch ...attempt) {
		t.Helper()
		var ids, outcomes []string
		var starts []time.Time
		for _, x := range batch {
			outcome := "http_5xx"
			if x.ok {
				outcome = "success"
			}
			ids, outcomes, starts = append(ids, delivery[x.endpoint]), append(outcomes, outcome), append(starts, at(x.minute))
		}
		_, err := c.Exec(ctx, `INSERT INTO webhook_delivery_attempts (delivery_id, attempt, started_at, latency_ms, outcome)
			SELECT d, 1, s, 1, o FROM unnest($1::uuid[], $2::timestamptz[], $3::text[]) AS x(d, s, o)`, ids, starts, outcomes)
		testenv.Must(t, err, "recording attempts")
	}
	failingSince := func(id string) *time.Time {
		t.Helper()
		var fs *time.Time
		testenv.Must(t, c.QueryRow(ctx, `SELECT failing_since FROM webhook_endpoints WHERE id = $1`, id).Scan(&fs), "reading failing_since")
		return fs
	}
	for _, step := range []struct {
		name  string
		batch []attempt
		wantA *int // minute, nil for NULL
	}{
		{"a first failure starts the run", []attempt{{"a", 1, false}}, ptr(1)},
		{"more failures keep it", []attempt{{"a", 2, false}, {"a", 3, false}}, ptr(1)},
		{"a success ends it", []attempt{{"a", 4, true}}, nil},
		{"a failure after the batch's success starts a new one", []attempt{{"a", 6, false}, {"a", 5, true}, {"a", 7, false}}, ptr(6)},
		{"a success after the failures ends it", []attempt{{"a", 8, false}, {"a", 9, true}}, nil},
		{"another endpoint's failure is its own", []attempt{{"a", 10, true}, {"b", 10, false}}, nil},
	} {
		record(step.batch...)
		got := failingSince(a.ID)
		switch {
		case step.wantA == nil && got != nil:
			t.Fatalf("%s: failing_since %v, want none", step.name, got)
		case step.wantA != nil && (got == nil || !got.Equal(at(*step.wantA))):
			t.Fatalf("%s: failing_since %v, want %v", step.name, got, at(*step.wantA))
		}
	}
	if fs := failingSince(b.ID); fs == nil || !fs.Equal(at(10)) {
		t.Fatalf("b failing since %v, want %v", fs, at(10))
	}

	// b has failed since minute 10 of 2026-03-01: far longer than an hour.
	_, err = c.Exec(ctx, `INSERT INTO webhook_deliveries (event_id, endpoint_id, event_type, subject, payload) VALUES ('ev-b2', $1, 'order.created', 'o', '{}')`, b.ID)
	testenv.Must(t, err, "seeding a pending delivery")
	disabled, err := db.DisableFailingEndpoints(ctx, time.Hour)
	testenv.Must(t, err, "disabling failing endpoints")
	if len(disabled) != 1 || disabled[0].ID != b.ID || !disabled[0].Disabled || disabled[0].DisabledReason != "disabled automatically: every attempt failed since 2026-03-01T12:10:00Z" {
		t.Fatalf("disabled %+v, want b alone", disabled)
	}
	if n := testenv.Count(t, c, `SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND state = 'pending'`, b.ID); n != 0 {
		t.Fatalf("%d pending deliveries of the disabled endpoint", n)
	}
	if again, err := db.DisableFailingEndpoints(ctx, time.Hour); err != nil || len(again) != 0 {
		t.Fatalf("a second pass disabled %v (%v)", again, err)
	}
	// Enabled again, it starts with a clean record: no immediate second disable.
	ep, err := db.EnableEndpoint(ctx, b.ID)
	testenv.Must(t, err, "enabling b")
	if ep.FailingSince != nil {
		t.Fatalf("enabled endpoint still failing since %v", ep.FailingSince)
	}
	if again, err := db.DisableFailingEndpoints(ctx, time.Hour); err != nil || len(again) != 0 {
		t.Fatalf("the enabled endpoint was disabled again at once: %v (%v)", again, err)
	}
}

func ptr(n int) *int { return &n }

// TestLifecycleGrants: the API may queue test deliveries and read attempts; the deliverer may
// move an endpoint's schedule and failure record, and nothing else of what an admin sets.
func TestLifecycleGrants(t *testing.T) {
	t.Parallel()
	db, dsn := mustDB(t)
	ctx := context.Background()
	ep, err := db.CreateEndpoint(ctx, "https://a.example/hook", []string{"*"}, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	testenv.Must(t, err, "creating endpoint")
	cases := map[string][]struct {
		sql     string
		allowed bool
	}{
		"orderflow_api": {
			{`INSERT INTO webhook_deliveries (event_id, endpoint_id, event_type, subject, payload) VALUES ('t', '` + ep.ID + `', 'webhook.test', 's', '{}')`, true},
			{`SELECT count(*) FROM webhook_delivery_attempts`, true},
			{`UPDATE webhook_endpoints SET rate_limit = 3, deleted_at = now(), disabled_at = now()`, true},
			{`DELETE FROM webhook_endpoints`, false},
			{`INSERT INTO webhook_delivery_attempts (delivery_id, attempt, started_at, latency_ms, outcome) SELECT id, 1, now(), 1, 'success' FROM webhook_deliveries`, false},
		},
		"orderflow_deliver": {
			{`UPDATE webhook_endpoints SET rate_next_at = now(), failing_since = now()`, true},
			{`UPDATE webhook_endpoints SET rate_limit = 10000`, false},
			{`UPDATE webhook_endpoints SET deleted_at = now()`, false},
		},
	}
	for role, checks := range cases {
		c := testenv.Connect(t, testenv.AsRole(t, dsn, role))
		for _, ch := range checks {
			err := tryRolledBack(ctx, c, ch.sql)
			var pgErr *pgconn.PgError
			refused := errors.As(err, &pgErr) && pgErr.Code == "42501"
			switch {
			case ch.allowed && err != nil:
				t.Errorf("%s may not: %s: %v", role, ch.sql, err)
			case !ch.allowed && !refused:
				t.Errorf("%s was not refused (err %v): %s", role, err, ch.sql)
			}
		}
	}
}

// Package testenv finds the real PostgreSQL and Kafka that integration tests run against and
// gives each test resources of its own.
//
// Outside CI a missing variable skips the test with the variable's name; with CI=true it fails
// it, so CI can never pass by skipping.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	ofsql "orderflow/sql"
)

const (
	DatabaseURLVar  = "ORDERFLOW_TEST_DATABASE_URL"
	KafkaBrokersVar = "ORDERFLOW_TEST_KAFKA_BROKERS"
)

func require(tb testing.TB, name string) string {
	tb.Helper()
	v := os.Getenv(name)
	if v != "" {
		return v
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s is not set: integration tests need it in CI (run them with 'make test')", name)
	}
	tb.Skipf("%s is not set: run 'make test' to start PostgreSQL and Kafka and run this test", name)
	return ""
}

// DatabaseURL is the owner's connection to the shared test cluster's maintenance database.
func DatabaseURL(tb testing.TB) string {
	tb.Helper()
	return require(tb, DatabaseURLVar)
}

// KafkaBrokers is the list of test brokers.
func KafkaBrokers(tb testing.TB) []string {
	tb.Helper()
	return strings.Split(require(tb, KafkaBrokersVar), ",")
}

// UniqueName returns prefix plus a random suffix that is a valid PostgreSQL identifier and
// Kafka topic name.
func UniqueName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

// NewDatabase creates a fresh database with the orderflow schema applied, drops it when the
// test ends, and returns its URL. Replication slots on it must be dropped by their owners'
// cleanups, which run before this one.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	return NewDatabaseOn(tb, DatabaseURL(tb))
}

// NewDatabaseOn is NewDatabase on the cluster whose maintenance database is at base, such as
// one from StartPostgres.
func NewDatabaseOn(tb testing.TB, base string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	name := UniqueName("oft")
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("connecting to %s: %v", DatabaseURLVar, err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("creating test database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Logf("dropping test database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		// Slots pin a database; drop any a failed test left behind.
		_, _ = c.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE database = $1 AND NOT active`, name)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Logf("dropping test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("parsing %s: %v", DatabaseURLVar, err)
	}
	u.Path = "/" + name
	dsn := u.String()
	if err := ofsql.Migrate(ctx, dsn, io.Discard); err != nil {
		tb.Fatalf("migrating test database: %v", err)
	}
	return dsn
}

// Connect opens a connection for the test's own checks and closes it at the end.
func Connect(tb testing.TB, dsn string) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatalf("connecting: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// Count runs a count query and fails the test on error.
func Count(tb testing.TB, c *pgx.Conn, query string, args ...any) int64 {
	tb.Helper()
	var n int64
	if err := c.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	return n
}

// Must fails the test on err.
func Must(tb testing.TB, err error, what string) {
	tb.Helper()
	if err != nil {
		tb.Fatalf("%s: %v", what, err)
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary builds the orderflow binary once per test process and returns its path, for the
// tests that run the real commands as users do (signals, kill -9, exit codes).
func Binary(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "orderflow-test-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "orderflow")
		if out, err := exec.Command("go", "build", "-o", binPath, "orderflow/cmd/orderflow").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	return binPath
}

// Running is a component's Run(ctx) on a goroutine of its own, for in-process tests.
type Running struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// Start runs run until Stop or the end of the test.
func Start(tb testing.TB, name string, run func(context.Context) error) *Running {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{name: name, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = run(ctx)
		close(r.done)
	}()
	tb.Cleanup(func() { _ = r.Stop(tb) })
	return r
}

// Done is closed when Run has returned; Err then says what it returned.
func (r *Running) Done() <-chan struct{} { return r.done }

// Err is what Run returned; call it after Done is closed.
func (r *Running) Err() error { return r.err }

// Stop cancels Run's context and returns what Run returned; calling it again is harmless.
func (r *Running) Stop(tb testing.TB) error {
	tb.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(60 * time.Second):
		tb.Fatalf("%s did not stop within 60 s", r.name)
		return nil
	}
}

// AsRole returns dsn with its user replaced by role and no password: how a service connects
// with its own least-privilege role (sql/migrations/00008_service_roles.sql) to the test
// cluster, which trusts local connections.
func AsRole(tb testing.TB, dsn, role string) string {
	tb.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		tb.Fatalf("parsing %s: %v", dsn, err)
	}
	u.User = url.User(role)
	return u.String()
}

// Variables of the stack's TLS path to PostgreSQL and its SASL_SSL Kafka listener
// (deploy/local/stack.sh); make test sets them.
const (
	DatabaseTLSURLVar        = "ORDERFLOW_TEST_DATABASE_TLS_URL"
	KafkaSASLBrokersVar      = "ORDERFLOW_TEST_KAFKA_SASL_BROKERS"
	KafkaSASLCAFileVar       = "ORDERFLOW_TEST_KAFKA_SASL_CA_FILE"
	KafkaSASLUsernameVar     = "ORDERFLOW_TEST_KAFKA_SASL_USERNAME"
	KafkaSASLPasswordFileVar = "ORDERFLOW_TEST_KAFKA_SASL_PASSWORD_FILE"
)

// DatabaseTLSURL is the owner's connection to the test cluster's maintenance database over
// TLS, verifying the server's certificate (sslmode=verify-full with the stack's CA).
func DatabaseTLSURL(tb testing.TB) string {
	tb.Helper()
	return require(tb, DatabaseTLSURLVar)
}

// KafkaSASL is the stack's SASL_SSL listener: brokers, the CA that signed their certificate,
// and a SCRAM-SHA-512 user.
type KafkaSASL struct {
	Brokers            []string
	CAFile             string
	Username, Password string
}

// KafkaSASLListener returns the SASL_SSL listener's settings.
func KafkaSASLListener(tb testing.TB) KafkaSASL {
	tb.Helper()
	k := KafkaSASL{
		Brokers:  strings.Split(require(tb, KafkaSASLBrokersVar), ","),
		CAFile:   require(tb, KafkaSASLCAFileVar),
		Username: require(tb, KafkaSASLUsernameVar),
	}
	b, err := os.ReadFile(require(tb, KafkaSASLPasswordFileVar))
	if err != nil {
		tb.Fatalf("reading %s: %v", KafkaSASLPasswordFileVar, err)
	}
	k.Password = strings.TrimSpace(string(b))
	return k
}

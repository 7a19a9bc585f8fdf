package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// PostgresBinVar names the directory of PostgreSQL's server binaries (initdb, pg_ctl), as for
// deploy/local/stack.sh; without it the usual Debian and source-install places are searched.
const PostgresBinVar = "ORDERFLOW_PG_BIN"

// StartPostgres starts a private PostgreSQL cluster for one test: initdb into a temporary
// directory, wal_level=logical, fsync off, listening on a free port of 127.0.0.1 only, with
// conf appended to postgresql.conf, and initdb run with initdbArgs too. It is stopped and
// deleted when the test ends. It returns the owner's URL of the maintenance database.
//
// Tests use it for what they must not do to the shared cluster: settings such as a small
// max_slot_wal_keep_size, or stopping the server. As root, the cluster belongs to the
// postgres user (PostgreSQL refuses to run as root), as in the local stack.
func StartPostgres(tb testing.TB, conf string, initdbArgs ...string) string {
	tb.Helper()
	bin := postgresBin()
	if bin == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("PostgreSQL server binaries not found: set %s", PostgresBinVar)
		}
		tb.Skipf("PostgreSQL server binaries not found: set %s to run this test", PostgresBinVar)
	}
	dir, err := os.MkdirTemp("", "orderflow-test-pg-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	var owner *user.User
	if os.Getuid() == 0 {
		if owner, err = user.Lookup("postgres"); err != nil {
			tb.Skipf("running as root and there is no postgres user to own a private cluster: %v", err)
		}
		uid, _ := strconv.Atoi(owner.Uid)
		gid, _ := strconv.Atoi(owner.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			tb.Fatal(err)
		}
	}
	run := func(name string, args ...string) ([]byte, error) {
		path := filepath.Join(bin, name)
		if owner != nil {
			args = append([]string{"-u", owner.Username, "--", path}, args...)
			path = "runuser"
		}
		cmd := exec.Command(path, args...)
		cmd.Dir = dir
		return cmd.CombinedOutput()
	}
	data := filepath.Join(dir, "data")
	args := append([]string{"-D", data, "-U", "orderflow", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "-N"}, initdbArgs...)
	if out, err := run("initdb", args...); err != nil {
		tb.Fatalf("initdb: %v\n%s", err, out)
	}
	port := freePort(tb)
	base := fmt.Sprintf(`
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = ''
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
max_connections = 50
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
log_min_messages = warning
`, port)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	_, err = f.WriteString(base + conf + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		tb.Fatal(err)
	}
	logFile := filepath.Join(dir, "postgres.log")
	if out, err := run("pg_ctl", "-D", data, "-l", logFile, "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(logFile)
		tb.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	tb.Cleanup(func() {
		if out, err := run("pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "60", "stop"); err != nil {
			tb.Logf("stopping the private PostgreSQL: %v\n%s", err, out)
		}
		if tb.Failed() {
			if log, err := os.ReadFile(logFile); err == nil {
				tb.Logf("private PostgreSQL log:\n%s", tail(log, 4000))
			}
		}
	})
	return fmt.Sprintf("postgres://orderflow@127.0.0.1:%d/postgres?sslmode=disable", port)
}

func postgresBin() string {
	// The same search as deploy/local/stack.sh's pg_bin.
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	dirs := append(append([]string{os.Getenv(PostgresBinVar)}, matches...), "/usr/local/pgsql/bin")
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	return ""
}

// freePort returns a TCP port of 127.0.0.1 that nothing listened on a moment ago.
func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// WaitFor polls cond every 50 ms until it returns true, failing the test after timeout with
// what and the last error cond returned.
func WaitFor(tb testing.TB, what string, timeout time.Duration, cond func() (bool, error)) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return
		}
		if err != nil {
			lastErr = err
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

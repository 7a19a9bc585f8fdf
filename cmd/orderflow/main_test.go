package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"orderflow/internal/testenv"
)

func TestCommandsRefuseToStartWithoutTheirConfiguration(t *testing.T) {
	t.Parallel()
	empty := func(string) string { return "" }
	for _, cmd := range []string{"api", "capture", "project", "deliver", "partner", "reconcile", "migrate"} {
		var stderr bytes.Buffer
		err := run(context.Background(), []string{cmd}, empty, &bytes.Buffer{}, &stderr)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "DATABASE_URL") {
			t.Errorf("%s with an empty environment: %v, want a usage error naming DATABASE_URL", cmd, err)
		}
	}
	var stderr bytes.Buffer
	if err := run(context.Background(), []string{"bogus"}, empty, &bytes.Buffer{}, &stderr); !errors.Is(err, errUsage) ||
		!strings.Contains(stderr.String(), "unknown command") {
		t.Errorf("unknown command: %v %q", err, stderr.String())
	}
	if err := run(context.Background(), nil, empty, &bytes.Buffer{}, &stderr); !errors.Is(err, errUsage) {
		t.Errorf("no command: %v", err)
	}
}

func TestMigrateIsRepeatable(t *testing.T) {
	dsn := testenv.NewDatabase(t) // already migrated once
	var out bytes.Buffer
	if err := run(context.Background(), []string{"migrate", "-database-url", dsn}, os.Getenv, &out, &out); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if strings.Contains(out.String(), "applied") || !strings.Contains(out.String(), "schema at version") {
		t.Fatalf("second migrate printed %q, want no migration applied", out.String())
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitReady(t *testing.T, url string, exited <-chan error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			t.Fatalf("process exited before it was ready: %v", err)
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready within 30 s", url)
}

func TestAPIProcessStopsGracefullyOnSIGTERM(t *testing.T) {
	dsn := testenv.NewDatabase(t)
	bin := testenv.Binary(t)
	addr := freeAddr(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "api")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dsn, "HTTP_ADDR="+addr, "OPS_ADDR="+freeAddr(t))
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	waitReady(t, fmt.Sprintf("http://%s/readyz", addr), exited)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("api exited with %v after SIGTERM; logs:\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("api did not exit within 30 s of SIGTERM")
	}
	if _, err := http.Get(fmt.Sprintf("http://%s/healthz", addr)); err == nil {
		t.Fatal("api still answers after it exited")
	}
}

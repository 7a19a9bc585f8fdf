package tcpproxy

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// echo serves lines back to the sender until the test ends.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, r *bufio.Reader, msg string, wait time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return "", err
	}
	s, err := r.ReadString('\n')
	return strings.TrimSpace(s), err
}

func TestBlackholeHoldsAndRestoreResumes(t *testing.T) {
	t.Parallel()
	p := Start(t, echo(t))
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if got, err := roundTrip(c, r, "one", 5*time.Second); err != nil || got != "one" {
		t.Fatalf("before: %q %v", got, err)
	}
	p.Blackhole()
	if got, err := roundTrip(c, r, "two", 300*time.Millisecond); err == nil {
		t.Fatalf("black hole forwarded %q", got)
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("black hole: %v, want a timeout (the connection must stay open)", err)
	}
	p.Restore()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || strings.TrimSpace(got) != "two" {
		t.Fatalf("after restore: %q %v, want the held message", got, err)
	}
	if got, err := roundTrip(c, r, "three", 5*time.Second); err != nil || got != "three" {
		t.Fatalf("after restore: %q %v", got, err)
	}
}

func TestCutClosesAndRefuses(t *testing.T) {
	t.Parallel()
	p := Start(t, echo(t))
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	p.Cut()
	if _, err := roundTrip(c, r, "one", 5*time.Second); err == nil {
		t.Fatal("a cut connection still answers")
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err == nil {
		defer c2.Close()
		if _, err := roundTrip(c2, bufio.NewReader(c2), "x", 5*time.Second); err == nil {
			t.Fatal("a new connection through a cut proxy answers")
		}
	}
	p.Restore()
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got, err := roundTrip(c3, bufio.NewReader(c3), "back", 5*time.Second); err != nil || got != "back" {
		t.Fatalf("after restore: %q %v", got, err)
	}
}

// TestAbandonedInTheHoleIsNotDelivered: a client that sends into the black hole and closes
// before the path returns delivers nothing, like a connection its kernel gave up on.
func TestAbandonedInTheHoleIsNotDelivered(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	p := Start(t, ln.Addr().String())
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	p.Blackhole()
	if _, err := c.Write([]byte("late request")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	c.Close()
	time.Sleep(100 * time.Millisecond)
	p.Restore()
	select {
	case b := <-got:
		if len(b) != 0 {
			t.Fatalf("the server received %q from a client that gave up in the hole", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server's connection was not closed")
	}
}

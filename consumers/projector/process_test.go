package projector

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"orderflow"
	"orderflow/internal/testenv"
)

// process is the real orderflow binary running 'project'.
type process struct {
	cmd    *exec.Cmd
	addr   string
	logs   *bytes.Buffer
	exited chan error
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.Must(t, err, "listening")
	defer ln.Close()
	return ln.Addr().String()
}

func (e *env) startProcess(t *testing.T, bin string) *process {
	t.Helper()
	p := &process{addr: freeAddr(t), logs: &bytes.Buffer{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(bin, "project", "-topic", e.topic, "-group", e.group, "-batch-size", "20", "-session-timeout", "6s")
	p.cmd.Env = append(os.Environ(), "DATABASE_URL="+e.dsn, "KAFKA_BROKERS="+strings.Join(e.brokers, ","), "HTTP_ADDR="+p.addr)
	p.cmd.Stderr = p.logs
	testenv.Must(t, p.cmd.Start(), "starting orderflow project")
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	waitFor(t, "/readyz", 30*time.Second, func() (bool, error) {
		select {
		case err := <-p.exited:
			t.Fatalf("project exited before it was ready: %v\n%s", err, p.logs)
		default:
		}
		resp, err := http.Get("http://" + p.addr + "/readyz")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	return p
}

func TestKilledProjectorResumesWithoutMissingEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3)
	bin := testenv.Binary(t)

	want := map[string]summaryRow{}
	var first, second []event
	for i := 0; i < 300; i++ {
		o := newOrder(fmt.Sprintf("cust-%d", i%7))
		created := eventFor(o)
		first = append(first, created)
		want[o.ID] = summaryRow{Status: "pending", Version: 1, EventID: created.id}
		if i%3 == 0 {
			continue
		}
		status := orderflow.StatusFulfilled
		if i%3 == 2 {
			status = orderflow.StatusCancelled
		}
		changed := eventFor(next(o, status))
		second = append(second, changed, created) // a late duplicate of the older event too
		want[o.ID] = summaryRow{Status: string(status), Version: 2, EventID: changed.id}
	}
	e.produce(t, first...)

	p := e.startProcess(t, bin)
	waitFor(t, "some summaries", 60*time.Second, func() (bool, error) {
		return testenv.Count(t, e.conn, `SELECT count(*) FROM order_summary`) >= 40, nil
	})
	testenv.Must(t, p.cmd.Process.Signal(syscall.SIGKILL), "killing the projector")
	<-p.exited
	t.Logf("killed with %d of %d orders projected, committed offsets %v",
		testenv.Count(t, e.conn, `SELECT count(*) FROM order_summary`), len(first), e.committed(t))
	e.produce(t, second...)

	p = e.startProcess(t, bin)
	e.waitCaughtUp(t, 90*time.Second)
	got := e.summaries(t)
	if len(got) != len(want) {
		t.Fatalf("%d summaries, want %d", len(got), len(want))
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("summary of %s = %+v, want %+v", id, got[id], w)
		}
	}

	testenv.Must(t, p.cmd.Process.Signal(syscall.SIGTERM), "stopping the projector")
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("project exited with %v after SIGTERM; logs:\n%s", err, p.logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("project did not exit within 30 s of SIGTERM")
	}
}

package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// proc is a process under measurement.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	peak int64  // VmHWM in kB, sampled
	log  string // where its output goes
	cpu  cpuUse // what a drain cost, set by drainWithCapture
}

func start(name string, args []string, env []string, logPath string) (*proc, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	if logPath != "" {
		f, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %v", p.cmd.Path, p.err)
	default:
	}
	if kb := readHWM(p.cmd.Process.Pid); kb > p.peak {
		p.peak = kb
	}
	return nil
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func readHWM(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), "VmHWM:") {
			n, _ := strconv.ParseInt(strings.Fields(s.Text())[1], 10, 64)
			return n
		}
	}
	return 0
}

func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer ln.Close()
	return ln.Addr().String()
}

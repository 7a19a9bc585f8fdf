package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// cpuTimes is CPU seconds used so far, by part of the pipeline: the latency figure is only as
// good as the CPU these parts get, and on a shared two-core machine the share they need at a
// given rate tells what a quiet machine can hold.
type cpuTimes map[string]float64

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// procCPU reads utime+stime (and, with children, cutime+cstime) of pid in seconds.
func procCPU(pid int, children bool) (float64, string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, ""
	}
	f := strings.Fields(s[i+2:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return 0, ""
	}
	field := func(n int) float64 { v, _ := strconv.ParseFloat(f[n-3], 64); return v }
	t := field(14) + field(15)
	if children {
		t += field(16) + field(17)
	}
	ppid := strings.TrimSpace(f[1])
	return t / clockTicks, ppid
}

func pidFile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	return n
}

// sampleCPU reads the CPU time of capture, of the local stack's Kafka, of the bench itself,
// and of PostgreSQL split into the walsenders, the WAL writer and checkpointer, and everything
// else (the writers' backends, also those that already exited, through the postmaster's
// cutime).
func sampleCPU(capturePid int) cpuTimes {
	c := cpuTimes{}
	c["capture"], _ = procCPU(capturePid, false)
	c["bench"], _ = procCPU(os.Getpid(), false)
	c[waitKey+"capture"], c[slicesKey+"capture"] = schedstat(capturePid)
	if pid := pidFile(filepath.Join(".local", "run", "kafka.pid")); pid > 0 {
		c["kafka"], _ = procCPU(pid, true)
		c[waitKey+"kafka"], c[slicesKey+"kafka"] = schedstat(pid)
	}
	pm := pidFile(filepath.Join(".local", "run", "postgres.pid"))
	if pm == 0 {
		return c
	}
	c["pg backends"], _ = procCPU(pm, true)
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		t, ppid := procCPU(pid, false)
		if ppid != strconv.Itoa(pm) {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		switch name := string(cmd); {
		case strings.Contains(name, "walsender"):
			c["pg walsender"] += t
			w, n := schedstat(pid)
			c[waitKey+"pg walsender"] += w
			c[slicesKey+"pg walsender"] += n
		case strings.Contains(name, "walwriter"), strings.Contains(name, "checkpointer"), strings.Contains(name, "background writer"):
			c["pg wal+checkpoint"] += t
		default:
			c["pg backends"] += t
		}
	}
	return c
}

// waitKey prefixes the run-queue delays in a cpuTimes, slicesKey the number of times the
// threads got a CPU (so that wait/slices is the mean wait each time one became runnable).
const (
	waitKey   = "wait "
	slicesKey = "slices "
)

// schedstat sums, over pid's threads, the seconds spent waiting in the run queue
// (/proc/pid/task/*/schedstat, second field: what other work on the machine costs a part of
// the pipeline, as opposed to the CPU it uses itself) and the number of times they were given
// a CPU (third field: wakeups, which per event say how much hand-off work a part does,
// whatever the load).
func schedstat(pid int) (waitSecs, slices float64) {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) >= 3 {
			ns, _ := strconv.ParseFloat(f[1], 64)
			n, _ := strconv.ParseFloat(f[2], 64)
			waitSecs += ns / 1e9
			slices += n
		}
	}
	return waitSecs, slices
}

// since formats the CPU used between two samples as a share of one core, and the time the
// long-lived parts waited for a CPU, summed over their threads, as a share of the interval.
func (c cpuTimes) since(before cpuTimes, secs float64) string {
	var names, waits []string
	for k := range c {
		switch {
		case strings.HasPrefix(k, waitKey):
			waits = append(waits, k)
		case strings.HasPrefix(k, slicesKey):
		default:
			names = append(names, k)
		}
	}
	sort.Strings(waits)
	var w []string
	for _, k := range waits {
		name := strings.TrimPrefix(k, waitKey)
		part := fmt.Sprintf("%s %.0f%%", name, 100*(c[k]-before[k])/secs)
		if n := c[slicesKey+name] - before[slicesKey+name]; n > 0 {
			part += fmt.Sprintf(" (%.2f ms per wait)", 1000*(c[k]-before[k])/n)
		}
		w = append(w, part)
	}
	sort.Strings(names)
	var parts []string
	total := 0.0
	for _, k := range names {
		d := (c[k] - before[k]) / secs
		total += d
		parts = append(parts, fmt.Sprintf("%s %.0f%%", k, 100*d))
	}
	return fmt.Sprintf("%.0f%% of one core: %s; waiting for a CPU (run queue, all threads): %s", 100*total, strings.Join(parts, ", "), strings.Join(w, ", "))
}

// perEvent is the CPU time and the number of times each long-lived part was given a CPU
// between two samples, per event: figures of the work per event that, unlike the shares of
// a core above, hold whatever else runs on the machine.
func (c cpuTimes) perEvent(before cpuTimes, events int) string {
	if events <= 0 {
		return "no events"
	}
	var parts []string
	for _, name := range []string{"capture", "kafka", "pg walsender"} {
		us := 1e6 * (c[name] - before[name]) / float64(events)
		part := fmt.Sprintf("%s %.0f us", name, us)
		if n, ok := c[slicesKey+name]; ok {
			part += fmt.Sprintf(" and %.1f wakeups", (n-before[slicesKey+name])/float64(events))
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, ", ")
}
